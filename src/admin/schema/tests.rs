use serde_json::json;

use super::*;
use crate::admin::schema::types::{REVERT_TO_SNAPSHOT_INPUT, VOLUME};

fn create(body: Value) -> Result<Map<String, Value>, crate::admin::ApiError> {
    accept(&VOLUME, &body, Mode::Create, "ballast")
}

#[test]
fn a_create_takes_what_it_may_and_fills_defaults() {
    let got = create(json!({ "name": "db", "type": "volume", "id": "1v9", "state": "active",
                             "links": {}, "colour": "red" }))
    .unwrap();
    assert_eq!(got["name"], "db");
    assert_eq!(got["driver"], "ballast", "the driver defaults to this plugin");
    assert_eq!(got["allocate"], true);
    for dropped in ["type", "id", "state", "links", "colour"] {
        assert!(!got.contains_key(dropped), "{dropped} is read-only or unknown");
    }
}

#[test]
fn each_wrong_field_is_named_with_its_code() {
    let code = |body: Value| {
        let e = create(body).unwrap_err();
        (e.code, e.field.unwrap_or_default())
    };
    assert_eq!(code(json!({})), ("MissingRequired", "name".into()));
    assert_eq!(code(json!({ "name": null })), ("MissingRequired", "name".into()));
    assert_eq!(code(json!({ "name": 7 })), ("InvalidFormat", "name".into()));
    assert_eq!(code(json!({ "name": "a/b" })), ("InvalidFormat", "name".into()));
    assert_eq!(code(json!({ "name": "-a" })), ("InvalidFormat", "name".into()), "the real rule");
    assert_eq!(code(json!({ "name": "a".repeat(256) })), ("InvalidFormat", "name".into()));
    assert_eq!(
        code(json!({ "name": "a", "driver": "string" })),
        ("InvalidOption", "driver".into())
    );
    assert_eq!(
        code(json!({ "name": "a", "driverOpts": { "size": 1 } })),
        ("InvalidFormat", "driverOpts".into())
    );
    assert_eq!(
        code(json!({ "name": "a", "allocate": "yes" })),
        ("InvalidFormat", "allocate".into())
    );
    assert_eq!(code(json!([1])), ("InvalidFormat", "".into()));
    let e = create(json!({ "name": "a", "driver": "local" })).unwrap_err();
    assert!(e.message.contains("valid: ballast"), "{}", e.message);
}

#[test]
fn an_update_takes_only_updatable_fields_and_checks_nested_ones() {
    let upd = |body: Value| accept(&VOLUME, &body, Mode::Update, "ballast");
    let got = upd(json!({ "name": "other", "description": "d", "driver": "x", "schedule": null }))
        .unwrap();
    assert_eq!(got.keys().collect::<Vec<_>>(), ["description", "schedule"]);
    let got = upd(json!({ "schedule": { "snapshotEvery": "1h", "lastSnapshot": "x" } })).unwrap();
    assert_eq!(got["schedule"], json!({ "snapshotEvery": "1h" }));
    let e = upd(json!({ "schedule": { "snapshotKeep": 0 } })).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("schedule.snapshotKeep"));
    let e = upd(json!({ "description": null })).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("InvalidFormat", Some("description")));
    let e = upd(json!({ "description": 5 })).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("InvalidFormat", Some("description")));
}

#[test]
fn inputs_require_their_references() {
    let e = accept(&REVERT_TO_SNAPSHOT_INPUT, &json!({}), Mode::Input, "b").unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("MissingRequired", Some("snapshotId")));
}

#[test]
fn valid_chars_read_ranges() {
    use super::check::in_ranges;
    for c in ['a', 'Z', '0', '_', '.', '-'] {
        assert!(in_ranges("A-Za-z0-9_.-", c), "{c}");
    }
    for c in ['/', ' ', 'é', '~'] {
        assert!(!in_ranges("A-Za-z0-9_.-", c), "{c}");
    }
}

#[test]
fn every_schema_is_consistent() {
    for s in SCHEMAS {
        for f in s.fields {
            if let Ty::Object(t) | Ty::Reference(t) = f.ty {
                assert!(t == "image" || find(t).is_some(), "{}.{}: no schema {t}", s.id, f.name);
            }
        }
        for a in s.resource_actions {
            assert!(find(a.output).is_some(), "{}: action {} output", s.id, a.name);
            if let Some(i) = a.input {
                assert!(find(i).is_some(), "{}: action {} input {i}", s.id, a.name);
            }
        }
        if s.collection.is_some() {
            assert!(s.queryable().any(|f| f.name == s.default_sort), "{}", s.id);
        }
    }
}
