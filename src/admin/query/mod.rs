//! Collections as the spec serves them: `{field}_{modifier}` filters
//! (AND-ed, a repeated key included), `sort`/`order` with ties broken by
//! id so that every order is stable, and `limit`/`marker` pages whose
//! marker names the last row returned (so a page never repeats or skips a
//! row when others come and go before it), with the collection's
//! `pagination`, `sort`, `sortLinks`, `filters` and `createTypes`.
//!
//! Rows are filtered and sorted on [`Cell`]s read straight from the
//! records; only the page returned is rendered. This file parses a
//! query; `filter.rs`: one `{field}_{modifier}` filter, with `like.rs`,
//! SQL's LIKE under a step budget; `page.rs`: sorting, cutting a page and
//! its opaque marker; `collection.rs`: the collection body and its links.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use super::error::ApiError;
use super::schema::Schema;

mod collection;
mod filter;
mod like;
mod page;

pub use collection::{Collection, collection, of_values};
pub use page::Page;

use filter::{Filter, parse_filter};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// One field of one row, as filters and sorts see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Str(Cow<'a, str>),
    List(Vec<Cow<'a, str>>),
}

impl Cell<'_> {
    fn rank(&self) -> u8 {
        match self {
            Cell::Null => 0,
            Cell::Bool(_) => 1,
            Cell::Int(_) => 2,
            Cell::Str(_) => 3,
            Cell::List(_) => 4,
        }
    }

    fn cmp(&self, other: &Cell) -> Ordering {
        match (self, other) {
            (Cell::Bool(a), Cell::Bool(b)) => a.cmp(b),
            (Cell::Int(a), Cell::Int(b)) => a.cmp(b),
            (Cell::Str(a), Cell::Str(b)) => a.cmp(b),
            (Cell::List(a), Cell::List(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// A row of a collection: its cells by field name.
pub trait Row {
    fn cell(&self, field: &str) -> Cell<'_>;

    /// The id as an order (ties are broken by it).
    fn id_key(&self) -> Cell<'_> {
        id_key(self.cell("id"))
    }
}

/// Rendered resources (the small collections) are rows as they are.
impl Row for Value {
    fn cell(&self, field: &str) -> Cell<'_> {
        match &self[field] {
            Value::Bool(b) => Cell::Bool(*b),
            Value::Number(n) => n.as_i64().map_or(Cell::Null, Cell::Int),
            Value::String(s) => Cell::Str(Cow::Borrowed(s)),
            Value::Array(a) => {
                Cell::List(a.iter().filter_map(|i| i.as_str().map(Cow::Borrowed)).collect())
            }
            _ => Cell::Null,
        }
    }
}

/// The id as an order: `1v9` before `1v10` (volume, snapshot and backup
/// ids, which are `1v`, `1s` or `1b` and a number); names (pools,
/// targets) as they are, so that no two ids share a key.
fn id_key<'a>(id: Cell<'a>) -> Cell<'a> {
    if let Cell::Str(s) = &id
        && let Some(digits) =
            crate::public_id::Kind::ALL.iter().find_map(|k| s.strip_prefix(k.prefix()))
        && !digits.starts_with('0')
        && let Ok(n) = digits.parse::<i64>()
    {
        return Cell::Int(n);
    }
    id
}

/// Steps of LIKE matching one request may take (tens of milliseconds).
const LIKE_BUDGET: u64 = 20_000_000;
/// At most this many filters, each value at most this long: a query's
/// cost stays bounded whatever the URL holds.
const MAX_FILTERS: usize = 32;
const MAX_FILTER_VALUE: usize = 1024;

/// A parsed `?…` of a collection request.
#[derive(Debug)]
pub struct Query {
    schema: &'static Schema,
    filters: Vec<Filter>,
    sort: &'static str,
    desc: bool,
    sort_given: bool,
    limit: usize,
    marker: Option<(Cell<'static>, Cell<'static>)>,
    marker_raw: Option<String>,
    budget: std::cell::Cell<u64>,
}

fn bad(field: &str, message: String) -> ApiError {
    ApiError::field("InvalidFormat", field, message)
}

impl Query {
    /// `driver` is the driver name this endpoint serves (the one option
    /// of the volume's `driver` field).
    pub fn parse(
        schema: &'static Schema,
        pairs: &[(String, String)],
        driver: &str,
    ) -> Result<Query, ApiError> {
        let mut q = Query {
            schema,
            filters: Vec::new(),
            sort: schema.default_sort,
            desc: false,
            sort_given: false,
            limit: DEFAULT_LIMIT,
            marker: None,
            marker_raw: None,
            budget: std::cell::Cell::new(LIKE_BUDGET),
        };
        let mut marker = None;
        for (key, value) in pairs {
            match key.as_str() {
                "sort" => {
                    let f = schema.queryable().find(|f| f.name == value).ok_or_else(|| {
                        bad(
                            "sort",
                            format!("cannot sort on {value:?}; sortable: {}", names(schema)),
                        )
                    })?;
                    q.sort = f.name;
                    q.sort_given = true;
                }
                "order" => {
                    q.desc = match value.as_str() {
                        "asc" => false,
                        "desc" => true,
                        _ => return Err(bad("order", format!("order {value:?}: asc or desc"))),
                    }
                }
                "limit" => {
                    let n: usize = value.parse().map_err(|_| {
                        bad("limit", format!("limit {value:?}: a number from 0 to {MAX_LIMIT}"))
                    })?;
                    q.limit = n.min(MAX_LIMIT);
                }
                "marker" => marker = Some(value.clone()),
                // The action of a POST travels in the query too; the
                // spec reserves `_format`, `_method`… for itself.
                "action" => {}
                k if k.starts_with('_') => {}
                _ => {
                    if q.filters.len() == MAX_FILTERS || value.chars().count() > MAX_FILTER_VALUE {
                        return Err(bad(
                            key,
                            format!(
                                "at most {MAX_FILTERS} filters of at most {MAX_FILTER_VALUE} \
                                 characters each"
                            ),
                        ));
                    }
                    q.filters.push(parse_filter(schema, key, value, driver)?)
                }
            }
        }
        if let Some(m) = marker {
            q.marker = Some(q.decode_marker(&m)?);
            q.marker_raw = Some(m);
        }
        Ok(q)
    }

    /// Whether any filter names `field` (the volume list shows the trash
    /// only to a query about `state` or `removed`).
    pub fn filters_on(&self, field: &str) -> bool {
        self.filters.iter().any(|f| f.field == field)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

fn names(schema: &Schema) -> String {
    schema.queryable().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests;
