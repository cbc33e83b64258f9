//! A client that knows nothing of ballast but the root URL and Rancher's
//! API spec. It finds the version root and the schemas from the answers
//! (`links.latest`, `X-API-Schemas`), and from the schemas alone (each
//! type's collection link, `resourceFields`, methods, `resourceActions`
//! and `collectionFilters`) it creates volumes, filters them with every
//! modifier a field offers and checks the answers against its own reading
//! of the full list, pages through 250 and more in several sorts, both
//! ways, updates one by sending back what it read, walks one through every
//! action the schema lists, and provokes each kind of error the spec
//! describes. Every answer must carry `X-API-Schemas`, every failure an
//! error resource, and every resource only fields its schema declares,
//! with values of the declared types.
//!
//! It talks over TCP with basic auth rather than the Unix socket: links
//! are then real URLs, on the address the client reached, that it follows
//! exactly as given.
//!
//! This file holds the client and its reading of answers; `filters.rs`:
//! filters, sorts and pages; `actions.rs`: updates, every action and the
//! errors; `go_types.rs`: the volume as Rancher's typed Go client reads
//! it.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::backup::{repo_in, target};
use crate::harness::Http;

mod actions;
mod filters;
mod go_types;

struct Client {
    http: Http,
    schemas: BTreeMap<String, Value>,
    /// Where each type is created, from its collection's `createTypes`.
    create_at: HashMap<String, String>,
    /// Names made up so far.
    made: usize,
    /// Action URLs POSTed again once no longer offered, and refused.
    stale_refused: usize,
}

/// `url` with `pairs` added to its query.
fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{}", q.finish())
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter().map(|r| text(&r["id"]).to_string()).collect()
}

fn data(collection: &Value) -> &Vec<Value> {
    collection["data"].as_array().unwrap_or_else(|| panic!("no data: {collection}"))
}

/// Whether `c` is in a `validChars` set (ranges like `a-z`, a `-` first
/// or last is itself).
fn valid_char(set: &str, c: char) -> bool {
    let set: Vec<char> = set.chars().collect();
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == '-' {
            if (set[i]..=set[i + 2]).contains(&c) {
                return true;
            }
            i += 3;
        } else {
            if set[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

fn date(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{s:?} is not a date: {e}"))
}

/// Two non-null values of a field of type `ty`, in the field's own order:
/// numbers as numbers, dates in time, strings by their characters.
fn compare(ty: &str, a: &Value, b: &Value) -> Ordering {
    match ty {
        "int" => a.as_i64().unwrap().cmp(&b.as_i64().unwrap()),
        "boolean" => a.as_bool().unwrap().cmp(&b.as_bool().unwrap()),
        "date" => date(text(a)).cmp(&date(text(b))),
        _ => text(a).cmp(text(b)),
    }
}

fn is_null(v: &Value) -> bool {
    v.is_null() || v.as_array().is_some_and(Vec::is_empty)
}

impl Client {
    /// Starts from the root URL alone: `links.latest` is the version root,
    /// and its `X-API-Schemas` the schemas.
    fn discover(mut http: Http) -> Client {
        let root = format!("{}/", http.base());
        let versions = http.get(&root);
        assert_eq!(versions["type"], "collection", "{versions}");
        let latest = text(&versions["links"]["latest"]).to_string();
        let answer = http.send("GET", &latest, &[], b"");
        let version = http.spec_body(&latest, &answer);
        assert_eq!(
            (answer.status, version["type"].as_str()),
            (200, Some("apiVersion")),
            "{version}"
        );
        let schemas_url = answer.header("x-api-schemas").unwrap().to_string();
        let all = http.get(&schemas_url);
        assert!(
            all["links"].as_object().unwrap().values().any(|l| *l == latest),
            "the schemas link back to the version root: {}",
            all["links"]
        );
        let mut schemas = BTreeMap::new();
        for s in data(&all) {
            assert_eq!(s["type"], "schema", "{s}");
            assert_eq!(http.get(text(&s["links"]["self"])), *s);
            schemas.insert(text(&s["id"]).to_string(), s.clone());
        }
        // Every collection the version root links to is some type's.
        for (name, link) in version["links"].as_object().unwrap() {
            let typed = schemas.values().any(|s| s["links"]["collection"] == *link);
            assert!(
                typed || ["self", "openapi", "schemas"].contains(&name.as_str()),
                "{name}: {link}"
            );
        }
        Client { http, schemas, create_at: HashMap::new(), made: 0, stale_refused: 0 }
    }

    fn schema(&self, id: &str) -> &Value {
        self.schemas.get(id).unwrap_or_else(|| panic!("no schema {id:?}"))
    }

    fn fields(&self, id: &str) -> Map<String, Value> {
        self.schema(id)["resourceFields"].as_object().unwrap().clone()
    }

    fn collection(&self, id: &str) -> String {
        text(&self.schema(id)["links"]["collection"]).to_string()
    }

    fn get(&mut self, url: &str) -> Value {
        let v = self.http.get(url);
        self.check(&v);
        v
    }

    /// A resource (or each resource of a collection) has a type with a
    /// schema, and only fields that schema declares, of the declared
    /// types.
    fn check(&self, v: &Value) {
        if v["type"] == "collection" {
            data(v).iter().for_each(|r| self.check(r));
            return;
        }
        let fields = self.fields(text(&v["type"]));
        for (name, value) in v.as_object().unwrap() {
            if name == "links" || name == "actions" {
                continue;
            }
            let f = fields.get(name).unwrap_or_else(|| panic!("{name} is not in the schema: {v}"));
            if value.is_null() {
                assert_eq!(f["nullable"], true, "{name} is null: {v}");
                continue;
            }
            let ty = text(&f["type"]);
            let ok = match ty {
                "string" => value.is_string(),
                "int" => value.is_i64(),
                "boolean" => value.is_boolean(),
                "date" => {
                    value.as_str().is_some_and(|s| OffsetDateTime::parse(s, &Rfc3339).is_ok())
                }
                "enum" => f["options"].as_array().unwrap().contains(value),
                "map[string]" => {
                    value.as_object().is_some_and(|m| m.values().all(Value::is_string))
                }
                "array[string]" => value.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
                t if t.starts_with("reference[") => value.is_string(),
                t => value.is_object() && self.schemas.contains_key(t),
            };
            assert!(ok, "{name} is not a {ty}: {v}");
        }
    }

    /// Every resource of the collection at `url`, following
    /// `pagination.next`.
    fn all(&mut self, url: &str) -> Vec<Value> {
        let mut rows = Vec::new();
        let mut next = Some(url.to_string());
        while let Some(url) = next {
            let page = self.get(&url);
            rows.extend(data(&page).iter().cloned());
            next = page["pagination"]["next"].as_str().map(str::to_string);
        }
        let unique: BTreeSet<String> = ids(&rows).into_iter().collect();
        assert_eq!(unique.len(), rows.len(), "a row twice in {url}");
        rows
    }

    /// A value for a field that must have one: what its type, options and
    /// constraints allow.
    fn value_for(&mut self, name: &str, f: &Value) -> Value {
        let ty = text(&f["type"]);
        if let Some(options) = f["options"].as_array() {
            return options[0].clone();
        }
        match ty {
            "string" => {
                self.made += 1;
                let mut s = format!("made{}", self.made);
                let min =
                    f["minLength"].as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
                while s.len() < min {
                    s.push('0');
                }
                if let Some(valid) = f["validChars"].as_str() {
                    assert!(s.chars().all(|c| valid_char(valid, c)), "{name}: {s} vs {valid}");
                }
                assert!(f["maxLength"].as_u64().is_none_or(|m| s.len() as u64 <= m));
                json!(s)
            }
            "int" => json!(f["min"].as_i64().unwrap_or(0)),
            "boolean" => json!(false),
            "map[string]" => json!({}),
            "array[string]" => json!([]),
            t if t.starts_with("reference[") => {
                let of = t.trim_start_matches("reference[").trim_end_matches(']');
                let url = self.collection(of);
                let first = self.all(&url).into_iter().next();
                first.unwrap_or_else(|| panic!("{name}: no {of} to refer to"))["id"].clone()
            }
            t => panic!("{name}: the client cannot make a {t}"),
        }
    }

    /// The body of a create (or an action's input) of type `ty`: `set`,
    /// then every `create` field with a default, then a value for every
    /// required one left. `set` is the user's data: `create` fields only,
    /// within their options.
    fn body(&mut self, ty: &str, set: &Value) -> Value {
        let fields = self.fields(ty);
        let mut body = Map::new();
        for (name, value) in set.as_object().unwrap() {
            let f = &fields[name];
            assert_eq!(f["create"], true, "{ty}.{name} cannot be set on create");
            if let Some(options) = f["options"].as_array() {
                assert!(options.contains(value), "{ty}.{name}: {value} is not in {options:?}");
            }
            body.insert(name.clone(), value.clone());
        }
        for (name, f) in &fields {
            if f["create"] != true || body.contains_key(name) {
                continue;
            }
            if let Some(default) = f.get("default") {
                body.insert(name.clone(), default.clone());
            } else if f["required"] == true {
                let v = self.value_for(name, f);
                body.insert(name.clone(), v);
            }
        }
        Value::Object(body)
    }

    /// Where a `ty` is created: its collection's `createTypes` say.
    fn create_url(&mut self, ty: &str) -> String {
        if !self.create_at.contains_key(ty) {
            let methods = &self.schema(ty)["collectionMethods"];
            assert!(methods.as_array().unwrap().contains(&json!("POST")), "{ty}: {methods}");
            // The collection's metadata alone: `limit=0`.
            let meta = self.get(&with_query(&self.collection(ty), &[("limit", "0")]));
            assert_eq!(data(&meta).len(), 0, "{meta}");
            let url = text(&meta["createTypes"][ty]).to_string();
            self.create_at.insert(ty.to_string(), url);
        }
        self.create_at[ty].clone()
    }

    /// Creates a `ty` from [`Client::body`]; returns it.
    fn create(&mut self, ty: &str, set: Value) -> Value {
        let body = self.body(ty, &set);
        let url = self.create_url(ty);
        let made = self.http.ok("POST", &url, Some(&body), 201);
        self.check(&made);
        for (name, sent) in body.as_object().unwrap() {
            if let Some(got) = made.get(name) {
                assert_eq!(got, sent, "{ty}.{name}: {made}");
            }
        }
        made
    }
}

fn config(dir: &std::path::Path) -> String {
    let (repo, key) = repo_in(dir);
    let roots = dir.join("roots");
    std::fs::create_dir_all(roots.join("h1")).unwrap();
    std::fs::create_dir_all(roots.join("h2")).unwrap();
    std::fs::create_dir_all(dir.join("pools")).unwrap();
    format!(
        "host_path_roots = [\"{roots}\"]\n\n\
         [[pool]]\nname = \"default\"\nbackend = \"dir\"\npath = \"{dir}/pools/default\"\ndefault = true\n\n\
         [[pool]]\nname = \"quota\"\nbackend = \"loop\"\npath = \"{dir}/pools/quota\"\ndefault_size = \"64M\"\n\n{}",
        target("nas", &repo, &key, ""),
        roots = roots.display(),
        dir = dir.display(),
    )
}
