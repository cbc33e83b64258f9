//! A query's page: the rows kept, sorted with ties broken by id, and cut
//! after the marker, an opaque token naming the last row of the page
//! before.

use std::borrow::Cow;
use std::cmp::Ordering;

use base64::Engine;
use serde_json::{Value, json};

use super::{Cell, Query, Row, bad, truncate};
use crate::admin::error::ApiError;

/// The rows of one page, and where it lies in the whole.
pub struct Page<R> {
    pub rows: Vec<R>,
    pub total: usize,
    /// `Some(None)`: the previous page is the first.
    pub(super) prev: Option<Option<String>>,
    pub(super) next: Option<String>,
    /// Rows were left out (before or after this page).
    pub(super) partial: bool,
}

impl Cell<'_> {
    fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => json!(b),
            Cell::Int(n) => json!(n),
            Cell::Str(s) => json!(s),
            Cell::List(l) => json!(l),
        }
    }

    fn from_json(v: &Value) -> Option<Cell<'static>> {
        Some(match v {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(*b),
            Value::Number(n) => Cell::Int(n.as_i64()?),
            Value::String(s) => Cell::Str(Cow::Owned(s.clone())),
            Value::Array(a) => Cell::List(
                a.iter()
                    .map(|i| i.as_str().map(|s| Cow::Owned(s.to_string())))
                    .collect::<Option<_>>()?,
            ),
            Value::Object(_) => return None,
        })
    }
}

impl Query {
    fn keep(&self, row: &impl Row) -> bool {
        self.filters.iter().all(|f| f.matches(&row.cell(f.field), &self.budget))
    }

    fn order(&self, a: (&Cell, &Cell), b: (&Cell, &Cell)) -> Ordering {
        let o = a.0.cmp(b.0).then_with(|| a.1.cmp(b.1));
        if self.desc { o.reverse() } else { o }
    }

    fn key<'r>(&self, row: &'r impl Row) -> (Cell<'r>, Cell<'r>) {
        let sort = if self.sort == "id" { row.id_key() } else { row.cell(self.sort) };
        (sort, row.id_key())
    }

    /// Filters, sorts and cuts `rows` to the page asked for.
    pub fn page<R: Row>(&self, rows: Vec<R>) -> Result<Page<R>, ApiError> {
        let mut rows: Vec<Option<R>> =
            rows.into_iter().filter(|r| self.keep(r)).map(Some).collect();
        if self.budget.get() == 0 {
            return Err(ApiError::field(
                "InvalidFilter",
                "like",
                "these LIKE filters take too long to match; use fewer `%` or a longer prefix",
            ));
        }
        let total = rows.len();
        let (order, prev, next) = {
            let mut keyed: Vec<(Cell, Cell, usize)> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let (s, id) = self.key(r.as_ref().expect("every row is there until taken"));
                    (s, id, i)
                })
                .collect();
            keyed.sort_by(|a, b| self.order((&a.0, &a.1), (&b.0, &b.1)));
            let start = match &self.marker {
                None => 0,
                Some((s, id)) => {
                    keyed.partition_point(|k| self.order((&k.0, &k.1), (s, id)).is_le())
                }
            };
            let end = (start + self.limit).min(total);
            let marker_at = |i: usize| self.encode_marker(&keyed[i].0, &keyed[i].1);
            let prev = (start > 0 && self.limit > 0).then(|| {
                let p = start.saturating_sub(self.limit);
                (p > 0).then(|| marker_at(p - 1))
            });
            let next = (end < total && end > start).then(|| marker_at(end - 1));
            let order: Vec<usize> = keyed[start..end].iter().map(|k| k.2).collect();
            (order, prev, next)
        };
        let rows: Vec<R> = order.into_iter().filter_map(|i| rows[i].take()).collect();
        let partial = rows.len() < total;
        Ok(Page { rows, total, prev, next, partial })
    }

    fn encode_marker(&self, sort: &Cell, id: &Cell) -> String {
        let m = json!([
            self.sort,
            if self.desc { "desc" } else { "asc" },
            sort.to_json(),
            id.to_json()
        ]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m.to_string())
    }

    pub(super) fn decode_marker(
        &self,
        m: &str,
    ) -> Result<(Cell<'static>, Cell<'static>), ApiError> {
        let wrong = || {
            bad("marker", format!("marker {:?} is not one this server gave", truncate(m)))
                .detail("follow the `pagination` links of a collection; markers are opaque")
        };
        let bytes =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(m).map_err(|_| wrong())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| wrong())?;
        let order = if self.desc { "desc" } else { "asc" };
        if v[0].as_str() != Some(self.sort) || v[1].as_str() != Some(order) {
            return Err(bad(
                "marker",
                "the marker belongs to another sort or order; start again from the first page"
                    .into(),
            ));
        }
        let sort = Cell::from_json(&v[2]).ok_or_else(wrong)?;
        let id = Cell::from_json(&v[3]).ok_or_else(wrong)?;
        Ok((sort, id))
    }
}
