//! Collections as the spec serves them: `{field}_{modifier}` filters
//! (AND-ed, a repeated key included), `sort`/`order` with ties broken by
//! id so that every order is stable, and `limit`/`marker` pages whose
//! marker names the last row returned (so a page never repeats or skips a
//! row when others come and go before it), with the collection's
//! `pagination`, `sort`, `sortLinks`, `filters` and `createTypes`.
//!
//! Rows are filtered and sorted on [`Cell`]s read straight from the
//! records; only the page returned is rendered.

use std::borrow::Cow;
use std::cmp::Ordering;

use axum::http::StatusCode;
use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::schema::{Field, Schema, Ty};

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
        && let Some(digits) = ["1v", "1s", "1b"].iter().find_map(|p| s.strip_prefix(p))
        && !digits.starts_with('0')
        && let Ok(n) = digits.parse::<i64>()
    {
        return Cell::Int(n);
    }
    id
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modifier {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    Prefix,
    Like,
    NotLike,
    Null,
    NotNull,
}

impl Modifier {
    fn parse(s: &str) -> Option<Modifier> {
        Some(match s {
            "eq" => Modifier::Eq,
            "ne" => Modifier::Ne,
            "lt" => Modifier::Lt,
            "lte" => Modifier::Lte,
            "gt" => Modifier::Gt,
            "gte" => Modifier::Gte,
            "prefix" => Modifier::Prefix,
            "like" => Modifier::Like,
            "notlike" => Modifier::NotLike,
            "null" => Modifier::Null,
            "notnull" => Modifier::NotNull,
            _ => return None,
        })
    }
}

/// What a filter compares with, parsed once for the field's type.
#[derive(Debug)]
enum Want {
    None,
    Bool(bool),
    Int(i64),
    Str(String),
}

#[derive(Debug)]
struct Filter {
    field: &'static str,
    modifier: Modifier,
    modifier_name: &'static str,
    want: Want,
    /// The LIKE pattern, compiled once.
    pattern: Vec<P>,
    raw: String,
}

impl Filter {
    /// As in SQL, a null field matches no comparison but `null`: `ne` and
    /// `notlike` leave null rows out too.
    fn matches(&self, cell: &Cell, budget: &std::cell::Cell<u64>) -> bool {
        use Modifier::*;
        match self.modifier {
            Null => is_null(cell),
            NotNull => !is_null(cell),
            _ if matches!(cell, Cell::Null) => false,
            Ne => !self.compare(cell, Eq, budget),
            NotLike => !self.compare(cell, Like, budget),
            m if self.field == "id" && matches!(m, Lt | Lte | Gt | Gte) => {
                // Ids order as `sort=id` does: 1v9 before 1v10.
                let want = id_key(Cell::Str(Cow::Borrowed(self.raw.as_str())));
                ordered(id_key(cell.clone()).cmp(&want), m)
            }
            m => self.compare(cell, m, budget),
        }
    }

    fn compare(&self, cell: &Cell, m: Modifier, budget: &std::cell::Cell<u64>) -> bool {
        match cell {
            Cell::List(items) => {
                items.iter().any(|i| self.compare(&Cell::Str(Cow::Borrowed(i.as_ref())), m, budget))
            }
            Cell::Null => false,
            Cell::Bool(b) => matches!(self.want, Want::Bool(w) if m == Modifier::Eq && *b == w),
            Cell::Int(n) => match self.want {
                Want::Int(w) => ordered(n.cmp(&w), m),
                _ => false,
            },
            Cell::Str(s) => match &self.want {
                Want::Str(w) => match m {
                    Modifier::Prefix => s.starts_with(w.as_str()),
                    Modifier::Like => like_in(&self.pattern, s, budget),
                    m => ordered(s.as_ref().cmp(w.as_str()), m),
                },
                _ => false,
            },
        }
    }
}

fn is_null(cell: &Cell) -> bool {
    match cell {
        Cell::Null => true,
        Cell::List(l) => l.is_empty(),
        _ => false,
    }
}

fn ordered(o: Ordering, m: Modifier) -> bool {
    match m {
        Modifier::Eq => o.is_eq(),
        Modifier::Lt => o.is_lt(),
        Modifier::Lte => o.is_le(),
        Modifier::Gt => o.is_gt(),
        Modifier::Gte => o.is_ge(),
        _ => false,
    }
}

/// One element of a LIKE pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
enum P {
    Any,
    One,
    Lit(char),
}

/// SQL's LIKE pattern: `%` any run, `_` one character, `\%` `\_` `\\`
/// themselves.
fn compile(pattern: &str) -> Vec<P> {
    let mut pat = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        pat.push(match c {
            '%' => P::Any,
            '_' => P::One,
            '\\' => P::Lit(chars.next().unwrap_or('\\')),
            c => P::Lit(c),
        });
    }
    pat
}

/// Whether `text` matches `pat`: the classic two-pointer match with one
/// backtrack point, linear in space. Each step spends one unit of
/// `budget`; when it runs out the answer is false and the budget stays at
/// zero, which the caller reports, so that no pattern can make a request
/// run for long.
fn like_in(pat: &[P], text: &str, budget: &std::cell::Cell<u64>) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while t < text.len() {
        let left = budget.get();
        if left == 0 {
            return false;
        }
        budget.set(left - 1);
        match pat.get(p) {
            Some(P::Any) => {
                back = Some((p, t));
                p += 1;
            }
            Some(P::One) => {
                p += 1;
                t += 1;
            }
            Some(P::Lit(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match back {
                Some((bp, bt)) => {
                    back = Some((bp, bt + 1));
                    p = bp + 1;
                    t = bt + 1;
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|x| *x == P::Any)
}

#[cfg(test)]
pub fn like(pattern: &str, text: &str) -> bool {
    like_in(&compile(pattern), text, &std::cell::Cell::new(u64::MAX))
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

    fn decode_marker(&self, m: &str) -> Result<(Cell<'static>, Cell<'static>), ApiError> {
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

    /// The query string that keeps these filters (and, if asked, the
    /// sort and limit) for the links of the collection.
    fn query_string(
        &self,
        sort: Option<(&str, bool)>,
        limit: bool,
        marker: Option<&str>,
    ) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for f in &self.filters {
            let key = if f.modifier == Modifier::Eq {
                f.field.to_string()
            } else {
                format!("{}_{}", f.field, f.modifier_name)
            };
            s.append_pair(&key, &f.raw);
        }
        if let Some((name, desc)) = sort {
            s.append_pair("sort", name);
            if desc {
                s.append_pair("order", "desc");
            }
        }
        if limit && self.limit != DEFAULT_LIMIT {
            s.append_pair("limit", &self.limit.to_string());
        }
        if let Some(m) = marker {
            s.append_pair("marker", m);
        }
        let s = s.finish();
        if s.is_empty() { s } else { format!("?{s}") }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

fn names(schema: &Schema) -> String {
    schema.queryable().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

fn parse_filter(
    schema: &'static Schema,
    key: &str,
    value: &str,
    driver: &str,
) -> Result<Filter, ApiError> {
    let (field, modifier_name) = match schema.queryable().find(|f| f.name == key) {
        Some(f) => (f, "eq"),
        None => {
            let split = key.rsplit_once('_');
            let found = split.and_then(|(name, m)| {
                let f = schema.queryable().find(|f| f.name == name)?;
                let m = f.ty.modifiers().iter().find(|x| **x == m)?;
                Some((f, *m))
            });
            found.ok_or_else(|| unknown_filter(schema, key))?
        }
    };
    let modifier = Modifier::parse(modifier_name).expect("the schema lists known modifiers");
    // A bad value is blamed on the query key the client sent.
    let want = want(field, modifier, value, driver).map_err(|mut e| {
        e.field = Some(key.to_string());
        e
    })?;
    let pattern = if matches!(modifier, Modifier::Like | Modifier::NotLike) {
        compile(value)
    } else {
        Vec::new()
    };
    Ok(Filter { field: field.name, modifier, modifier_name, want, pattern, raw: value.to_string() })
}

fn unknown_filter(schema: &Schema, key: &str) -> ApiError {
    let mut e = ApiError::field(
        "InvalidFilter",
        key,
        format!("unknown filter field {key:?}; filterable fields: {}", names(schema)),
    );
    e.detail = format!(
        "filters are FIELD=VALUE or FIELD_MODIFIER=VALUE; /v1/schemas/{} lists each field's \
         modifiers under collectionFilters",
        schema.id
    );
    e.status = StatusCode::UNPROCESSABLE_ENTITY;
    e
}

fn want(f: &Field, m: Modifier, value: &str, driver: &str) -> Result<Want, ApiError> {
    if matches!(m, Modifier::Null | Modifier::NotNull) {
        return Ok(Want::None);
    }
    Ok(match f.ty {
        Ty::Int => {
            Want::Int(value.parse().map_err(|_| {
                bad(f.name, format!("filter {}: {value:?} is not an integer", f.name))
            })?)
        }
        Ty::Boolean => Want::Bool(match value {
            "true" => true,
            "false" => false,
            _ => {
                return Err(bad(
                    f.name,
                    format!("filter {}: {value:?} is not true or false", f.name),
                ));
            }
        }),
        _ => {
            let options = f.option_values(driver);
            if matches!(m, Modifier::Eq | Modifier::Ne)
                && !options.is_empty()
                && !options.iter().any(|o| o == value)
            {
                return Err(ApiError::field(
                    "InvalidOption",
                    f.name,
                    format!("filter {}: {value:?} is not one of {}", f.name, options.join(", ")),
                ));
            }
            Want::Str(value.to_string())
        }
    })
}

/// The rows of one page, and where it lies in the whole.
pub struct Page<R> {
    pub rows: Vec<R>,
    pub total: usize,
    /// `Some(None)`: the previous page is the first.
    prev: Option<Option<String>>,
    next: Option<String>,
    /// Rows were left out (before or after this page).
    partial: bool,
}

/// A collection as the spec has it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Collection<T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    resource_type: &'static str,
    links: Map<String, Value>,
    create_types: Map<String, Value>,
    actions: Map<String, Value>,
    pagination: Value,
    sort: Value,
    sort_links: Map<String, Value>,
    filters: Map<String, Value>,
    data: Vec<T>,
}

/// The collection of `schema` at `{base}/v1/{segment}` around `data`, the
/// rendered rows of `page`.
pub fn collection<T: Serialize, R>(
    base: &str,
    q: &Query,
    page: &Page<R>,
    data: Vec<T>,
) -> Collection<T> {
    let schema = q.schema;
    let path = format!("{base}/v1/{}", schema.collection.unwrap_or(schema.id));
    let sort = (q.sort_given || q.desc).then_some((q.sort, q.desc));
    let here = |marker: Option<&str>| format!("{path}{}", q.query_string(sort, true, marker));
    let mut links = Map::new();
    links.insert("self".into(), json!(here(q.marker_raw.as_deref())));
    let mut pagination = json!({
        "limit": q.limit,
        "total": page.total,
        "partial": page.partial,
    });
    if let Some(prev) = &page.prev {
        pagination["first"] = json!(here(None));
        pagination["previous"] = json!(here(prev.as_deref()));
    }
    if let Some(next) = &page.next {
        pagination["next"] = json!(here(Some(next)));
    }
    let sort_links = schema
        .queryable()
        .map(|f| {
            (
                f.name.to_string(),
                json!(format!("{path}{}", q.query_string(Some((f.name, false)), false, None))),
            )
        })
        .collect();
    let filters = schema
        .queryable()
        .map(|f| {
            let applied: Vec<Value> = q
                .filters
                .iter()
                .filter(|x| x.field == f.name)
                .map(|x| json!({ "modifier": x.modifier_name, "value": x.raw }))
                .collect();
            (f.name.to_string(), if applied.is_empty() { Value::Null } else { json!(applied) })
        })
        .collect();
    let mut create_types = Map::new();
    if schema.collection_methods.contains(&"POST") {
        create_types.insert(schema.id.into(), json!(path));
    }
    Collection {
        kind: "collection",
        resource_type: schema.id,
        links,
        create_types,
        actions: Map::new(),
        pagination,
        sort: json!({
            "name": q.sort,
            "order": if q.desc { "desc" } else { "asc" },
            "reverse": format!("{path}{}", q.query_string(Some((q.sort, !q.desc)), false, None)),
        }),
        sort_links,
        filters,
        data,
    }
}

/// A collection of already rendered resources (the small types), filtered,
/// sorted and paged by the query in `pairs`.
pub fn of_values(
    base: &str,
    schema: &'static Schema,
    pairs: &[(String, String)],
    values: Vec<Value>,
) -> Result<Collection<Value>, ApiError> {
    let q = Query::parse(schema, pairs, "")?;
    let mut page = q.page(values)?;
    let data = std::mem::take(&mut page.rows);
    Ok(collection(base, &q, &page, data))
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
