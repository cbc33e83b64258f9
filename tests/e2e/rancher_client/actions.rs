//! A volume updated by sending back what was read, walked through every
//! action its schema lists, and each kind of error the spec describes.

use std::collections::BTreeSet;
use std::time::Instant;

use serde_json::{Map, Value, json};

use super::{Client, compare, config, data, text, with_query};
use crate::harness::{Daemon, root_or_skip};

/// The route a volume takes through every action: each must be in the
/// volume's `actions` map when its turn comes, and the volume ends in the
/// state that docs/design.md's state table gives. `backup` is the
/// snapshot's action (restore and deallocate need a backup newer than the
/// last write).
const ROUTE: [(&str, &str); 13] = [
    ("allocate", "inactive"),
    ("activate", "active"),
    ("deactivate", "inactive"),
    ("snapshot", "inactive"),
    ("reverttosnapshot", "inactive"),
    ("snapshot", "inactive"),
    ("backup", "inactive"),
    ("deallocate", "requested"),
    ("restorefrombackup", "inactive"),
    ("remove", "removed"),
    ("restore", "inactive"),
    ("remove", "removed"),
    ("purge", "purged"),
];

impl Client {
    /// The newest settled resource of type `ty` among the collections
    /// `resource` links to.
    fn related(&mut self, resource: &Value, ty: &str) -> Value {
        let mut found: Vec<Value> = Vec::new();
        for link in resource["links"].as_object().unwrap().values() {
            let v = self.get(text(link));
            if v["type"] == "collection" && v["resourceType"] == ty {
                found.extend(data(&v).iter().filter(|r| r["transitioning"] == "no").cloned());
            }
        }
        found.sort_by(|a, b| compare("date", &a["created"], &b["created"]));
        found.pop().unwrap_or_else(|| panic!("no {ty} linked from {resource}"))
    }

    /// An action's input from its input schema: defaults, and for a
    /// required reference the newest resource of that type that
    /// `resource` links to.
    fn input(&mut self, resource: &Value, input: &str) -> Value {
        let mut body = Map::new();
        for (name, f) in self.fields(input) {
            if f["create"] != true {
                continue;
            }
            let ty = text(&f["type"]);
            if let Some(default) = f.get("default") {
                body.insert(name, default.clone());
            } else if f["required"] == true {
                let v = match ty.strip_prefix("reference[") {
                    Some(of) => self.related(resource, of.trim_end_matches(']'))["id"].clone(),
                    None => self.value_for(&name, &f),
                };
                body.insert(name, v);
            }
        }
        Value::Object(body)
    }

    /// Runs `action` of `resource` at the URL its `actions` map gives,
    /// with an input built from the schema, and waits for the output to
    /// settle. Returns the output settled; a second POST of the same URL,
    /// when the action is no longer offered, is refused.
    fn act(&mut self, resource: &Value, action: &str) -> Value {
        let ty = text(&resource["type"]).to_string();
        let def = self.schema(&ty)["resourceActions"][action].clone();
        assert!(def.is_object(), "{ty} has no action {action}");
        let url = resource["actions"][action]
            .as_str()
            .unwrap_or_else(|| panic!("{action} is not offered: {}", resource["actions"]))
            .to_string();
        let body = match def["input"].as_str() {
            Some(input) => self.input(resource, input),
            None => json!({}),
        };
        let (status, out) = self.http.call("POST", &url, Some(&body));
        assert!(status == 200 || status == 202, "{action} {body}: {status} {out}");
        assert_eq!(out["type"], def["output"], "{action}: {out}");
        let out = self.http.settle(text(&out["links"]["self"]));
        self.check(&out);
        assert_eq!(out["transitioning"], "no", "{action}: {out}");
        let now = self.get(text(&resource["links"]["self"]));
        if now["actions"].get(action).is_none() {
            let (status, v) = self.http.call("POST", &url, Some(&body));
            assert_eq!((status, v["code"].as_str()), (409, Some("ActionNotAvailable")), "{v}");
            self.stale_refused += 1;
        }
        out
    }
}

#[test]
fn a_schema_driven_client_updates_runs_every_action_and_reads_errors() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_d, http) = Daemon::private_with_tcp("rancher-client-act", &config(dir.path()));
    let mut c = Client::discover(http);
    let volumes = c.collection("volume");
    let fields = c.fields("volume");

    // A create of the required fields without defaults alone: the
    // others take their defaults.
    let create_url = c.create_url("volume");
    let mut body = c.body("volume", &json!({}));
    let defaults: Vec<&String> =
        fields.keys().filter(|n| fields[*n].get("default").is_some()).collect();
    for name in &defaults {
        body.as_object_mut().unwrap().remove(name.as_str());
    }
    let v = c.http.ok("POST", &create_url, Some(&body), 201);
    let shown: Vec<&&String> = defaults.iter().filter(|n| v.get(n.as_str()).is_some()).collect();
    assert!(!shown.is_empty(), "{defaults:?}");
    for name in shown {
        assert_eq!(v[name.as_str()], fields[name.as_str()]["default"], "{name}");
    }

    // An update sends back the whole resource as read, with the
    // updatable text fields changed: those change and nothing else.
    let methods = c.schema("volume")["resourceMethods"].clone();
    assert!(methods.as_array().unwrap().contains(&json!("PUT")), "{methods}");
    let url = text(&v["links"]["self"]).to_string();
    let before = c.get(&url);
    let mut changed = before.clone();
    let updatable: Vec<&String> = fields
        .iter()
        .filter(|(_, f)| f["update"] == true && f["type"] == "string")
        .map(|(n, _)| n)
        .collect();
    assert!(!updatable.is_empty());
    for name in &updatable {
        changed[name.as_str()] = json!(format!("{name} changed by the client"));
    }
    let answer = c.http.ok("PUT", &url, Some(&changed), 200);
    let after = c.get(&url);
    assert_eq!(answer, after);
    assert_eq!(after, changed, "only the updatable fields changed");

    // Every action of the schema, along a route through the states.
    let started = Instant::now();
    let mut vol = c.create("volume", json!({ "name": "walker", "allocate": false }));
    let vurl = text(&vol["links"]["self"]).to_string();
    let mut done = BTreeSet::new();
    for (action, state) in ROUTE {
        let offered: BTreeSet<&String> = vol["actions"].as_object().unwrap().keys().collect();
        let declared = c.schema("volume")["resourceActions"].as_object().unwrap().clone();
        assert!(offered.iter().all(|a| declared.contains_key(*a)), "{offered:?}");
        if action == "backup" {
            let snap = c.related(&vol, "snapshot");
            let b = c.act(&snap, "backup");
            assert_eq!(b["state"], "created", "{b}");
        } else {
            c.act(&vol, action);
            done.insert(action);
        }
        vol = c.http.settle(&vurl);
        assert_eq!(
            (text(&vol["state"]), text(&vol["transitioning"])),
            (state, "no"),
            "after {action}"
        );
    }
    let declared: BTreeSet<&str> = c.schema("volume")["resourceActions"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(done, declared, "the route ran every action the schema lists");
    eprintln!("the action route: {:?}", started.elapsed());

    assert!(c.stale_refused >= 5, "{} stale action URLs refused", c.stale_refused);

    // Errors, each of the kind the spec's codes name: a required field
    // left out, a value outside a field's options.
    let good = c.body("volume", &json!({}));
    let mut refused = BTreeSet::new();
    for (name, f) in &fields {
        if f["create"] == true && f["required"] == true && f.get("default").is_none() {
            let mut body = good.clone();
            body.as_object_mut().unwrap().remove(name);
            let (status, e) = c.http.call("POST", &create_url, Some(&body));
            assert_eq!(
                (status, &e["code"], &e["fieldName"]),
                (422, &json!("MissingRequired"), &json!(name))
            );
            refused.insert("MissingRequired");
        }
        if let Some(options) = f["options"].as_array().filter(|_| f["create"] == true) {
            let wrong: Vec<&str> = options.iter().map(text).collect();
            let mut body = good.clone();
            body[name] = json!(format!("not-{}", wrong.join("-")));
            let (status, e) = c.http.call("POST", &create_url, Some(&body));
            assert_eq!(
                (status, &e["code"], &e["fieldName"]),
                (422, &json!("InvalidOption"), &json!(name))
            );
            assert!(wrong.iter().all(|o| text(&e["message"]).contains(o)), "{e}");
            refused.insert("InvalidOption");
        }
    }
    assert_eq!(refused, BTreeSet::from(["InvalidOption", "MissingRequired"]));
    assert_eq!(c.all(&volumes).len(), 1, "no refused create made a volume");

    // Filters the schema does not offer: an unknown field, a modifier the
    // field does not take, a value outside the field's options.
    let filters = c.schema("volume")["collectionFilters"].clone();
    assert!(filters.get("colour").is_none());
    let (status, e) = c.http.call("GET", &with_query(&volumes, &[("colour", "red")]), None);
    assert_eq!((status, &e["fieldName"]), (422, &json!("colour")), "{e}");
    let (field, _) = filters
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, f)| !f["modifiers"].as_array().unwrap().contains(&json!("like")))
        .unwrap();
    let key = format!("{field}_like");
    let (status, e) = c.http.call("GET", &with_query(&volumes, &[(&key, "x%")]), None);
    assert_eq!((status, &e["fieldName"]), (422, &json!(key)), "{e}");
    let (field, _) =
        filters.as_object().unwrap().iter().find(|(_, f)| f["options"].is_array()).unwrap();
    let (status, e) = c.http.call("GET", &with_query(&volumes, &[(field, "no-such-option")]), None);
    assert_eq!(
        (status, &e["code"], &e["fieldName"]),
        (422, &json!("InvalidOption"), &json!(field)),
        "{e}"
    );
    // (The one URL the client makes up: a volume's own with another id.)
    let missing = format!("{}/no-such-volume", url.rsplit_once('/').unwrap().0);
    let (status, e) = c.http.call("GET", &missing, None);
    assert_eq!((status, &e["code"]), (404, &json!("NotFound")), "{e}");

    // A method a type's schema does not list, on its collection or on one
    // of its resources, is a 405 whose Allow header lists those it does.
    let types: Vec<String> = c.schemas.keys().cloned().collect();
    let mut not_allowed = 0;
    for id in types {
        let s = c.schema(&id).clone();
        let Some(collection) = s["links"]["collection"].as_str() else { continue };
        let listed = |key: &str| -> Vec<String> {
            s[key].as_array().unwrap().iter().map(|m| text(m).to_string()).collect()
        };
        let one = data(&c.get(collection)).first().map(|r| text(&r["links"]["self"]).to_string());
        // (A resource takes POST for its actions.)
        let mut targets = vec![(collection.to_string(), listed("collectionMethods"), false)];
        targets.extend(one.map(|url| (url, listed("resourceMethods"), true)));
        for (url, methods, actions) in targets {
            for m in ["GET", "POST", "PUT", "DELETE"] {
                if methods.iter().any(|x| x == m) || (m == "POST" && actions) {
                    continue;
                }
                let a = c.http.send(m, &url, &[], b"");
                let e = c.http.spec_body(&format!("{m} {url}"), &a);
                assert_eq!(
                    (a.status, &e["code"]),
                    (405, &json!("MethodNotAllowed")),
                    "{m} {url}: {e}"
                );
                let allow: Vec<&str> =
                    a.header("allow").unwrap().split(',').map(str::trim).collect();
                assert!(!allow.contains(&m), "{m} {url}: {allow:?}");
                assert!(
                    methods.iter().all(|x| allow.contains(&x.as_str())),
                    "{url}: {allow:?} vs {methods:?}"
                );
                not_allowed += 1;
            }
        }
    }
    assert!(not_allowed >= 10, "only {not_allowed} methods tried");
}
