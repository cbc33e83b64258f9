//! The OpenAPI 3 description of the admin endpoint. Its paths are written
//! by hand beside the routes (`openapi.json`; a test checks that the two
//! match); every type in it, and every collection's query parameters, are
//! generated here from the same schemas `/v1/schemas` serves and requests
//! are checked against.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::schema::{Field, Schema, Ty, find, types};
use super::{Admin, reply};

pub async fn serve(State(a): State<Admin>) -> Response {
    reply(StatusCode::OK, document(&a.driver))
}

/// `apiVersion` → `ApiVersion`.
pub fn component(id: &str) -> String {
    let mut c = id.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

pub fn document(driver: &str) -> Value {
    let mut doc: Value =
        serde_json::from_str(include_str!("openapi.json")).expect("openapi.json is valid JSON");
    let mut comps = Map::new();
    for s in types::SCHEMAS {
        comps.insert(component(s.id), object(s, |_| true, driver, s.collection.is_some()));
    }
    let writable = |s: &'static Schema, pick: fn(&Field) -> bool| object(s, pick, driver, false);
    comps.insert("VolumeCreate".into(), writable(&types::VOLUME, |f| f.create));
    comps.insert("VolumeUpdate".into(), writable(&types::VOLUME, |f| f.update));
    comps.insert("BackupCreate".into(), writable(&types::BACKUP, |f| f.create));
    comps.insert("ScheduleInput".into(), writable(&types::VOLUME_SCHEDULE, |f| f.create));
    comps.insert("ApiRoot".into(), json!({ "$ref": "#/components/schemas/ApiVersion" }));
    for (name, s) in [
        ("ActionInput", &types::VOLUME),
        ("SnapshotActionInput", &types::SNAPSHOT),
        ("BackupActionInput", &types::BACKUP),
    ] {
        let inputs: Vec<Value> = s
            .resource_actions
            .iter()
            .filter_map(|a| a.input)
            .map(|i| json!({ "$ref": format!("#/components/schemas/{}", component(i)) }))
            .collect();
        comps.insert(name.into(), json!({ "anyOf": inputs }));
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.extend(comps);
    }
    for s in types::SCHEMAS.iter().filter(|s| s.collection.is_some()) {
        let path = format!("/v1/{}", s.collection.unwrap_or_default());
        if let Some(get) = doc["paths"][&path].get_mut("get") {
            get["parameters"] = Value::Array(parameters(s, driver));
        }
    }
    doc
}

/// A JSON Schema object of the fields `pick` keeps. Resources that live
/// in a collection also carry `links` and `actions`.
fn object(s: &Schema, pick: fn(&Field) -> bool, driver: &str, resource: bool) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in s.fields.iter().filter(|f| pick(f)) {
        props.insert(f.name.into(), property(f, driver));
        if f.required && f.default_value(driver).is_none() {
            required.push(f.name);
        }
    }
    if resource {
        props.insert("links".into(), json!({ "$ref": "#/components/schemas/Links" }));
        props.insert(
            "actions".into(),
            json!({
                "type": "object",
                "description": "the actions valid now, each with its URL",
                "additionalProperties": { "type": "string" },
            }),
        );
    }
    let mut o = json!({ "type": "object", "properties": props });
    if !s.description.is_empty() {
        o["description"] = json!(s.description);
    }
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

fn property(f: &Field, driver: &str) -> Value {
    let mut p = match f.ty {
        Ty::String | Ty::Enum => json!({ "type": "string" }),
        Ty::Reference(t) => json!({ "type": "string", "description": format!("the id of a {t}") }),
        Ty::Date => json!({ "type": "string", "format": "date-time" }),
        Ty::Int => json!({ "type": "integer" }),
        Ty::Boolean => json!({ "type": "boolean" }),
        Ty::Map => json!({ "type": "object", "additionalProperties": { "type": "string" } }),
        Ty::Array => json!({ "type": "array", "items": { "type": "string" } }),
        Ty::Object(t) => {
            let target = find(t).map(|s| component(s.id)).unwrap_or_default();
            // A $ref cannot carry siblings in OpenAPI 3.0: wrap it.
            json!({ "allOf": [{ "$ref": format!("#/components/schemas/{target}") }] })
        }
    };
    let options = f.option_values(driver);
    if !options.is_empty() {
        p["enum"] = json!(options);
    }
    if let Some(n) = f.min_length {
        p["minLength"] = json!(n);
    }
    if let Some(n) = f.max_length {
        p["maxLength"] = json!(n);
    }
    if let Some(n) = f.min {
        p["minimum"] = json!(n);
    }
    if let Some(n) = f.max {
        p["maximum"] = json!(n);
    }
    if let Some(c) = f.valid_chars {
        p["pattern"] = json!(format!("^[{c}]*$"));
    }
    if let Some(d) = f.default_value(driver) {
        p["default"] = d;
    }
    if f.nullable {
        p["nullable"] = json!(true);
    }
    if !f.description.is_empty() && p.get("description").is_none() {
        p["description"] = json!(f.description);
    }
    p
}

/// A collection's query parameters: each filter under each of its
/// modifiers, then the sort and the page.
fn parameters(s: &Schema, driver: &str) -> Vec<Value> {
    let query = |name: String, description: String, schema: Value| {
        json!({ "name": name, "in": "query", "required": false,
                "description": description, "schema": schema })
    };
    let mut out = Vec::new();
    for f in s.queryable() {
        for m in f.ty.modifiers() {
            let name = if *m == "eq" { f.name.to_string() } else { format!("{}_{m}", f.name) };
            let schema = match f.ty {
                // `null` and `notnull` take any value (usually none).
                _ if matches!(*m, "null" | "notnull") => json!({ "type": "string" }),
                Ty::Int => json!({ "type": "integer" }),
                Ty::Boolean => json!({ "type": "boolean" }),
                _ => {
                    let options = f.option_values(driver);
                    if options.is_empty() || !matches!(*m, "eq" | "ne") {
                        json!({ "type": "string" })
                    } else {
                        json!({ "type": "string", "enum": options })
                    }
                }
            };
            out.push(query(name, format!("keep rows whose `{}` is {m} this", f.name), schema));
        }
    }
    let sortable: Vec<&str> = s.queryable().map(|f| f.name).collect();
    out.push(query(
        "sort".into(),
        format!("the field to sort on (default `{}`); ties go by id", s.default_sort),
        json!({ "type": "string", "enum": sortable }),
    ));
    out.push(query(
        "order".into(),
        "asc (default) or desc".into(),
        json!({ "type": "string", "enum": ["asc", "desc"] }),
    ));
    out.push(query(
        "limit".into(),
        format!(
            "rows per page, default {}, at most {}",
            super::query::DEFAULT_LIMIT,
            super::query::MAX_LIMIT
        ),
        json!({ "type": "integer", "minimum": 0 }),
    ));
    out.push(query(
        "marker".into(),
        "opaque: where a page starts, from `pagination.next`/`previous`".into(),
        json!({ "type": "string" }),
    ));
    out
}
