//! `/v1/schemas`, the OpenAPI document and the resources actually served
//! describe the same API: every type's fields, their types and options,
//! what a create and an update take, and every collection's filters.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::backup::{repo_in, target};
use crate::harness::{Daemon, root_or_skip};

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn component(id: &str) -> String {
    let mut c = id.chars();
    c.next().unwrap().to_ascii_uppercase().to_string() + c.as_str()
}

/// The OpenAPI type a schema field type must have.
fn openapi_type(spec_type: &str) -> &'static str {
    match spec_type {
        "string" | "enum" | "date" => "string",
        "int" => "integer",
        "boolean" => "boolean",
        "map[string]" => "object",
        "array[string]" => "array",
        t if t.starts_with("reference[") => "string",
        _ => "",
    }
}

#[test]
fn schemas_openapi_and_resources_agree() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let d = Daemon::private_with("admin-schemas", &target("t", &repo, &key, ""));
    let schemas = d.admin_ok("GET", "/v1/schemas", Value::Null, 200);
    let doc = d.admin_ok("GET", "/v1/openapi.json", Value::Null, 200);
    let comps = &doc["components"]["schemas"];
    let ids: BTreeSet<String> = schemas["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().into())
        .collect();
    for want in [
        "volume",
        "snapshot",
        "backup",
        "storagePool",
        "backupTarget",
        "apiVersion",
        "error",
        "volumeSnapshotInput",
        "revertToSnapshotInput",
        "restoreFromBackupInput",
    ] {
        assert!(ids.contains(want), "no schema {want}: {ids:?}");
    }

    for s in schemas["data"].as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let one = d.admin_ok("GET", &format!("/v1/schemas/{id}"), Value::Null, 200);
        assert_eq!(&one, s, "/v1/schemas/{id} is its entry in the collection");
        // Every action's input and output is a schema too.
        for (name, io) in s["resourceActions"].as_object().unwrap() {
            for end in ["input", "output"] {
                if let Some(t) = io[end].as_str() {
                    assert!(ids.contains(t), "{id}.{name}: {end} {t} has no schema");
                }
            }
        }
        // Every reference names a type that has a schema, so that a typed
        // client can resolve each field's type (`imageId`, `instanceId`).
        for (name, f) in s["resourceFields"].as_object().unwrap() {
            let ty = f["type"].as_str().unwrap();
            if let Some(to) = ty.strip_prefix("reference[").and_then(|t| t.strip_suffix(']')) {
                assert!(ids.contains(to), "{id}.{name} is a {ty}, and {to} has no schema");
            }
        }
        // The OpenAPI component of the same name has the same fields,
        // types, options and nullability.
        let c = &comps[component(id)];
        let fields = &s["resourceFields"];
        let mut want = keys(fields);
        if s["links"]["collection"].is_string() {
            want.extend(["links".to_string(), "actions".to_string()]);
        }
        assert_eq!(keys(&c["properties"]), want, "OpenAPI {} vs schema {id}", component(id));
        for (name, f) in fields.as_object().unwrap() {
            let p = &c["properties"][name];
            let t = f["type"].as_str().unwrap();
            if openapi_type(t).is_empty() {
                let r = p["allOf"][0]["$ref"].as_str().unwrap_or_default();
                assert_eq!(r, format!("#/components/schemas/{}", component(t)), "{id}.{name}");
                continue;
            }
            assert_eq!(p["type"], openapi_type(t), "{id}.{name}");
            assert_eq!(p.get("enum"), f.get("options"), "{id}.{name} options");
            assert_eq!(
                p["nullable"].as_bool().unwrap_or(false),
                f["nullable"] == true,
                "{id}.{name}"
            );
            assert_eq!(p.get("maxLength"), f.get("maxLength"), "{id}.{name}");
        }
        // A collection's GET takes exactly the filters the schema lists,
        // under each of their modifiers, and the sort and page.
        if let Some(url) = s["links"]["collection"].as_str() {
            let path = &url[url.find("/v1/").unwrap()..];
            let mut want: BTreeSet<String> =
                ["sort", "order", "limit", "marker"].iter().map(|s| s.to_string()).collect();
            for (field, filter) in s["collectionFilters"].as_object().unwrap() {
                for m in filter["modifiers"].as_array().unwrap() {
                    let m = m.as_str().unwrap();
                    want.insert(if m == "eq" { field.clone() } else { format!("{field}_{m}") });
                }
            }
            let got: BTreeSet<String> = doc["paths"][path]["get"]["parameters"]
                .as_array()
                .unwrap_or(&Vec::new())
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(got, want, "GET {path} parameters vs {id}'s collectionFilters");
            // And the server takes each of them.
            for p in &want {
                let value = if p.ends_with("_null") || p.ends_with("_notnull") { "" } else { "1" };
                let (status, body) = d.admin("GET", &format!("{path}?{p}={value}"), Value::Null);
                assert!(
                    status == 200 || body["fieldName"] == p.as_str() || p == "marker",
                    "{path}?{p}: {status} {body}"
                );
            }
        }
    }
    // Every request body may be JSON or a form, and any other media type
    // is documented as a 415.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (verb, op) in item.as_object().unwrap() {
            let Some(content) = op["requestBody"]["content"].as_object() else { continue };
            let types: BTreeSet<&str> = content.keys().map(String::as_str).collect();
            let want = BTreeSet::from(["application/json", "application/x-www-form-urlencoded"]);
            assert_eq!(types, want, "{verb} {path}");
            assert!(op["responses"]["415"].is_object(), "{verb} {path} documents no 415");
        }
    }
    // What a create and an update take.
    let volume = &schemas["data"].as_array().unwrap().iter().find(|s| s["id"] == "volume").unwrap();
    let writable = |flag: &str| -> BTreeSet<String> {
        volume["resourceFields"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, f)| f[flag] == true)
            .map(|(k, _)| k.clone())
            .collect()
    };
    assert_eq!(keys(&comps["VolumeCreate"]["properties"]), writable("create"));
    assert_eq!(keys(&comps["VolumeUpdate"]["properties"]), writable("update"));
    assert_eq!(writable("update"), ["description", "schedule"].map(String::from).into());

    // The resources served carry exactly the fields their schema lists
    // (less the create-only `allocate`), plus links and actions.
    let v = d.admin_ok("POST", "/v1/volumes", json!({ "name": "v" }), 201);
    let snap = d.admin_ok("POST", "/v1/volumes/v?action=snapshot", json!({ "name": "s" }), 202);
    let snap = d.settle(&format!("/v1/snapshots/{}", snap["id"].as_str().unwrap()));
    let backup = d.admin_ok("POST", "/v1/backups", json!({ "volumeId": "v" }), 202);
    let backup = d.settle(&format!("/v1/backups/{}", backup["id"].as_str().unwrap()));
    let pool = d.admin_ok("GET", "/v1/storagepools/default", Value::Null, 200);
    let t = d.admin_ok("GET", "/v1/backuptargets/t", Value::Null, 200);
    let version = d.admin_ok("GET", "/v1", Value::Null, 200);
    let err = d.admin("GET", "/v1/volumes/nope", Value::Null).1;
    for (resource, id) in [
        (&v, "volume"),
        (&snap, "snapshot"),
        (&backup, "backup"),
        (&pool, "storagePool"),
        (&t, "backupTarget"),
        (&version, "apiVersion"),
        (&err, "error"),
    ] {
        let s = schemas["data"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap();
        let mut want = keys(&s["resourceFields"]);
        want.remove("allocate");
        let mut got = keys(resource);
        for extra in ["links", "actions", "deprecated"] {
            got.remove(extra);
        }
        if id == "error" {
            want.remove("fieldName");
        }
        assert_eq!(got, want, "a served {id} vs its schema");
        assert_eq!(resource["type"], id);
    }
}
