//! Volumes decoded into the types Rancher's typed Go client declares.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{data, date, ids, text};
use crate::harness::{Daemon, root_or_skip};

/// A volume as Rancher's typed Go client declares it (the fields it
/// shares with this API): a reference is a string, a date a string, a
/// progress an integer; Go decodes a JSON null into any of them as the
/// zero value, so those that may be null are options here, and anything
/// else of another type (a list where a string is declared) fails the
/// whole decode.
#[derive(serde::Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct GoVolume {
    id: String,
    #[serde(rename = "type")]
    ty: String,
    kind: String,
    uuid: String,
    name: String,
    state: String,
    description: String,
    driver: String,
    driver_opts: BTreeMap<String, String>,
    external_id: String,
    image_id: Option<String>,
    instance_id: Option<String>,
    is_host_path: bool,
    uri: Option<String>,
    access_mode: String,
    created: Option<String>,
    removed: Option<String>,
    remove_time: Option<String>,
    transitioning: String,
    transitioning_message: String,
    transitioning_progress: Option<i64>,
    links: BTreeMap<String, String>,
    actions: BTreeMap<String, String>,
}

/// The common fields Rancher's typed clients read on every resource.
#[derive(serde::Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct GoResource {
    id: String,
    kind: String,
    uuid: String,
    remove_time: Option<String>,
    transitioning_progress: Option<i64>,
}

fn go_volume(d: &Daemon, id: &str) -> GoVolume {
    let v = d.admin_ok("GET", &format!("/v1/volumes/{id}"), Value::Null, 200);
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("Go's client fails on {v}: {e}"))
}

#[test]
fn volumes_decode_into_the_types_of_rancher_s_go_client_mounted_or_not() {
    if !root_or_skip() {
        return;
    }
    let mut d = Daemon::private_with("typed-go", "trash_retention = \"1h\"\n");
    let made = d.admin_ok("POST", "/v1/volumes", json!({ "name": "typed-go-a" }), 201);
    let id = text(&made["id"]).to_string();
    let other = d.admin_ok("POST", "/v1/volumes", json!({ "name": "typed-go-b" }), 201);

    let v = go_volume(&d, &id);
    assert_eq!((v.ty.as_str(), v.kind.as_str()), ("volume", "volume"));
    assert_eq!((v.instance_id, v.image_id, v.remove_time), (None, None, None));
    assert_eq!((v.transitioning.as_str(), v.transitioning_progress), ("no", None));
    assert_ne!(v.uuid, text(&other["uuid"]), "each volume has its own uuid");
    let by_uuid = d.admin_ok("GET", &format!("/v1/volumes?uuid={}", v.uuid), Value::Null, 200);
    assert_eq!(ids(data(&by_uuid)), [id.as_str()], "a uuid finds its volume");

    // Two containers: the seed's one instance is the first, and every
    // mount ID is in `mountIds`.
    for mount in ["c2-second", "c1-first"] {
        d.call_ok("VolumeDriver.Mount", &json!({ "Name": "typed-go-a", "ID": mount }).to_string());
    }
    let mounted = go_volume(&d, &id);
    assert_eq!(mounted.instance_id.as_deref(), Some("c1-first"));
    let raw = d.admin_ok("GET", &format!("/v1/volumes/{id}"), Value::Null, 200);
    assert_eq!(raw["mountIds"], json!(["c1-first", "c2-second"]), "{raw}");
    let one = d.admin_ok("GET", "/v1/volumes?instanceId=c1-first", Value::Null, 200);
    assert_eq!(ids(data(&one)), [id.as_str()]);
    let listed = d.admin_ok("GET", "/v1/volumes?mountIds=c2-second", Value::Null, 200);
    assert_eq!(ids(data(&listed)), [id.as_str()]);
    for mount in ["c2-second", "c1-first"] {
        let body = json!({ "Name": "typed-go-a", "ID": mount }).to_string();
        d.call_ok("VolumeDriver.Unmount", &body);
    }

    // The uuid survives a restart of the daemon.
    d.restart();
    assert_eq!(go_volume(&d, &id).uuid, v.uuid, "the uuid changed across a restart");

    // In the trash, `removeTime` says when the purge comes.
    d.admin_ok("POST", &format!("/v1/volumes/{id}?action=remove"), Value::Null, 200);
    let removed = go_volume(&d, &id);
    let (at, purge) = (date(&removed.removed.unwrap()), date(&removed.remove_time.unwrap()));
    assert_eq!(purge - at, time::Duration::hours(1), "removeTime is removed + the retention");

    // A snapshot's common fields decode too, with its own uuid.
    let snap = d.admin_ok(
        "POST",
        &format!("/v1/volumes/{}?action=snapshot", text(&other["id"])),
        json!({}),
        202,
    );
    let snap = d.settle(&format!("/v1/snapshots/{}", text(&snap["id"])));
    let s: GoResource = serde_json::from_value(snap.clone()).unwrap();
    assert_eq!(
        (s.kind.as_str(), s.remove_time, s.transitioning_progress),
        ("snapshot", None, None)
    );
    assert_eq!(s.id, text(&snap["id"]));
    assert!(![v.uuid.as_str(), text(&other["uuid"])].contains(&s.uuid.as_str()), "{snap}");
}
