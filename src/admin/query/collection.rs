//! The collection body around a page: `pagination`, `sort`, `sortLinks`,
//! `filters` and `createTypes`, with links that keep the query.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::filter::Modifier;
use super::{DEFAULT_LIMIT, Page, Query};
use crate::admin::error::ApiError;
use crate::admin::schema::Schema;

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

impl Query {
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
