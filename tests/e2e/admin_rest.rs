//! The admin REST surface: collections, filters, updates and errors, TCP
//! credentials, the socket's group, Prometheus metrics and the OpenAPI
//! document.

use std::os::unix::fs::MetadataExt;

use serde_json::{Value, json};

use crate::admin_actions::volume_in;
use crate::harness::{Conn, Daemon, root_or_skip};

#[test]
fn collections_filters_updates_and_errors() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("admin-rest");
    let root = d.admin_ok("GET", "/v1", Value::Null, 200);
    for c in ["volumes", "snapshots", "backups", "storagepools", "backuptargets"] {
        assert!(root["links"][c].as_str().unwrap().ends_with(&format!("/v1/{c}")), "{root}");
        let col = d.admin_ok("GET", &format!("/v1/{c}"), Value::Null, 200);
        assert_eq!(col["type"], "collection", "{c}");
    }
    d.admin_ok("POST", "/v1/volumes", json!({ "name": "a", "description": "first" }), 201);
    d.admin_ok(
        "POST",
        "/v1/volumes",
        json!({ "name": "b", "driverOpts": { "mode": "0700" } }),
        201,
    );
    let b = d.admin_ok("GET", "/v1/volumes/b", Value::Null, 200);
    assert_eq!(b["type"], "volume");
    assert_eq!(b["driver"], "admin-rest");
    assert_eq!(b["storagePoolId"], "default");
    assert!(
        b["links"]["self"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/volumes/{}", b["id"].as_str().unwrap()))
    );
    d.admin_ok("POST", "/v1/volumes/b?action=activate", Value::Null, 200);

    let names = |q: &str| -> Vec<String> {
        let col = d.admin_ok("GET", &format!("/v1/volumes{q}"), Value::Null, 200);
        col["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(""), ["a", "b"]);
    assert_eq!(names("?name=a"), ["a"]);
    assert_eq!(names("?state=active"), ["b"]);
    assert_eq!(names("?state=inactive&name=b"), Vec::<String>::new());
    let (status, body) = d.admin("GET", "/v1/volumes?colour=red", Value::Null);
    assert_eq!((status, body["code"].as_str()), (422, Some("InvalidFilter")));
    assert_eq!(body["fieldName"], "colour");

    // Description (and the schedule) are what an update changes; the
    // other fields of a whole resource sent back are ignored.
    let a = d.admin_ok("PUT", "/v1/volumes/a", json!({ "description": "changed" }), 200);
    assert_eq!(a["description"], "changed");
    let mut whole = a.clone();
    whole["name"] = json!("z");
    whole["state"] = json!("active");
    whole["description"] = json!("again");
    let a = d.admin_ok("PUT", "/v1/volumes/a", whole, 200);
    assert_eq!((a["name"].as_str(), a["description"].as_str()), (Some("a"), Some("again")));
    assert_eq!(a["state"], "inactive");
    let (status, body) = d.admin("PUT", "/v1/volumes/a", json!({ "description": 5 }));
    assert_eq!((status, body["code"].as_str()), (422, Some("InvalidFormat")), "{body}");
    assert_eq!(body["fieldName"], "description");
    assert_eq!(names(""), ["a", "b"]);

    let cases: [(&str, &str, Value, u16, &str); 7] = [
        ("GET", "/v1/volumes/nope", Value::Null, 404, "NotFound"),
        ("GET", "/v1/nothing", Value::Null, 404, "NotFound"),
        (
            "POST",
            "/v1/volumes",
            json!({ "name": "a", "driverOpts": { "mode": "0755" } }),
            409,
            "NotUnique",
        ),
        ("POST", "/v1/volumes", json!({ "name": "../x" }), 422, "InvalidFormat"),
        ("POST", "/v1/volumes", json!({ "name": "c", "driver": "local" }), 422, "InvalidOption"),
        (
            "POST",
            "/v1/volumes",
            json!({ "name": "c", "driverOpts": { "colour": "red" } }),
            422,
            "InvalidFormat",
        ),
        (
            "POST",
            "/v1/volumes/a?action=reverttosnapshot",
            json!({ "snapshotId": "1s999" }),
            422,
            "InvalidReference",
        ),
    ];
    for (verb, path, body, status, code) in cases {
        let (got, v) = d.admin(verb, path, body);
        assert_eq!((got, v["code"].as_str()), (status, Some(code)), "{verb} {path}: {v}");
        assert_eq!(v["type"], "error");
        assert_eq!(v["status"], status);
        assert!(v["detail"].is_string(), "{v}");
    }
    let (status, _, text) = Conn::new(&d.admin_socket).request("POST", "/v1/volumes", "{not json");
    assert_eq!(status, 422, "{text}");
    assert_eq!(names(""), ["a", "b"], "no error changed anything");

    let pools = d.admin_ok("GET", "/v1/storagepools", Value::Null, 200);
    let p = &pools["data"][0];
    assert_eq!(
        (p["name"].as_str(), p["backend"].as_str(), p["volumeCount"].as_u64()),
        (Some("default"), Some("dir"), Some(2))
    );
    assert!(p["capacityBytes"].as_u64().unwrap() > 0);
}

#[test]
fn tcp_admin_needs_the_configured_credentials() {
    if !root_or_skip() {
        return;
    }
    let port = 20000 + (std::process::id() % 20000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let config = "[admin]\naccess_key = \"ops\"\nsecret_key = \"s3cr3t-key\"\n";
    let d = Daemon::private_with_args("admin-tcp", config, &["--admin-listen", &addr]);
    let get = |auth: Option<&str>| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        use std::io::{Read, Write};
        let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
        write!(s, "GET /v1/volumes HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split(' ').nth(1).unwrap().parse::<u16>().unwrap()
    };
    use base64::Engine;
    let enc = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
    assert_eq!(get(None), 401);
    assert_eq!(get(Some(&enc("ops:wrong"))), 401);
    assert_eq!(get(Some(&enc("ops:s3cr3t-key2"))), 401);
    assert_eq!(get(Some(&enc("ops:s3cr3t-key"))), 200);
    // The scheme's case does not matter (RFC 9110): curl and Go send
    // `Basic`, some clients `basic`.
    let token = enc("ops:s3cr3t-key").split_off("Basic ".len());
    assert_eq!(get(Some(&format!("basic {token}"))), 200);
    assert_eq!(get(Some(&format!("BASIC {token}"))), 200);
    assert_eq!(get(Some(&format!("Bearer {token}"))), 401);
    // The Unix socket is guarded by its mode instead.
    assert_eq!(std::fs::metadata(&d.admin_socket).unwrap().mode() & 0o777, 0o600);
    d.admin_ok("GET", "/v1/volumes", Value::Null, 200);

    // Without credentials configured, the TCP listener is refused at start.
    let dir = tempfile::tempdir().unwrap();
    let err = crate::harness::serve_must_fail(
        dir.path(),
        &["--admin-listen".as_ref(), "127.0.0.1:1".as_ref()],
        &[],
    );
    assert!(err.contains("needs [admin] access_key and secret_key"), "{err}");
}

#[test]
fn the_admin_socket_can_be_shared_with_a_group() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private_with("admin-group", "[admin]\nsocket_group = \"4242\"\n");
    let meta = std::fs::metadata(&d.admin_socket).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, 4242));
    assert_eq!(
        std::fs::metadata(&d.plugin_socket).unwrap().mode() & 0o777,
        0o600,
        "the plugin socket stays root-only"
    );
}

#[test]
fn metrics_are_prometheus_text_and_count_what_happened() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("admin-metrics");
    let id = volume_in(&d, "m1", "active");
    volume_in(&d, "m2", "removed");
    d.call_ok("VolumeDriver.Get", r#"{"Name":"m1"}"#);
    d.call("VolumeDriver.Get", r#"{"Name":"ghost"}"#);
    let (status, head, text) = Conn::new(&d.admin_socket).request("GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            let kind = comment.split_whitespace().next().unwrap_or("");
            assert!(["HELP", "TYPE", "UNIT", "EOF"].contains(&kind), "bad comment line: {line}");
            continue;
        }
        // name{labels} value
        let (series, value) =
            line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line: {line}"));
        value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.is_empty(),
            "bad metric name in: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        samples.insert(series.to_string(), value.to_string());
    }
    assert_eq!(text.lines().last(), Some("# EOF"));
    let get = |k: &str| samples.get(k).unwrap_or_else(|| panic!("no {k} in\n{text}")).as_str();
    assert_eq!(get(r#"ballast_volumes{state="active"}"#), "1");
    assert_eq!(get(r#"ballast_volumes{state="removed"}"#), "1");
    assert_eq!(get(r#"ballast_snapshots{state="created"}"#), "2");
    assert_eq!(
        get(
            r#"ballast_requests_total{listener="plugin",endpoint="VolumeDriver.Get",status="200"}"#
        ),
        "1"
    );
    assert_eq!(
        get(
            r#"ballast_requests_total{listener="plugin",endpoint="VolumeDriver.Get",status="500"}"#
        ),
        "1"
    );
    let posts =
        get(r#"ballast_requests_total{listener="admin",endpoint="POST /v1/volumes",status="201"}"#);
    assert_eq!(posts, "2");
    assert_eq!(get("ballast_snapshot_duration_seconds_count"), "2");
    assert!(get(r#"ballast_pool_capacity_bytes{pool="default"}"#).parse::<f64>().unwrap() > 0.0);
    assert_eq!(get(r#"ballast_pool_volumes{pool="default"}"#), "1");
    let _ = id;
}

#[test]
fn the_openapi_document_validates_and_matches_the_routes() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("admin-openapi");
    let doc = d.admin_ok("GET", "/v1/openapi.json", Value::Null, 200);
    let file = d.dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    match std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named") => {
            crate::harness::skip(
                "openapi-spec-validator is not installed (pip install openapi-spec-validator)",
            )
        }
        Ok(out) => {
            panic!("the OpenAPI document is invalid: {}", String::from_utf8_lossy(&out.stdout))
        }
        Err(e) => crate::harness::skip(&format!("python3: {e}")),
    }
    // Every route of the admin endpoint is documented, and nothing else.
    let mut documented: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for verb in ["get", "put", "post", "delete"] {
            if item.get(verb).is_some() {
                documented.push(format!("{} {path}", verb.to_uppercase()));
            }
        }
    }
    documented.sort();
    let mut expected = vec![
        "GET /",
        "GET /v1/schemas",
        "GET /v1/schemas/{id}",
        "GET /v1/projects",
        "GET /v1/projects/{id}",
        "GET /healthz",
        "GET /metrics",
        "GET /v1",
        "GET /v1/openapi.json",
        "GET /v1/volumes",
        "POST /v1/volumes",
        "GET /v1/volumes/{id}",
        "PUT /v1/volumes/{id}",
        "DELETE /v1/volumes/{id}",
        "POST /v1/volumes/{id}",
        "GET /v1/snapshots",
        "GET /v1/snapshots/{id}",
        "DELETE /v1/snapshots/{id}",
        "POST /v1/snapshots/{id}",
        "GET /v1/backups",
        "GET /v1/backups/{id}",
        "DELETE /v1/backups/{id}",
        "POST /v1/backups",
        "POST /v1/backups/{id}",
        "GET /v1/storagepools",
        "GET /v1/storagepools/{id}",
        "GET /v1/backuptargets",
        "GET /v1/backuptargets/{id}",
        "GET /v1/clusternodes",
        "POST /v1/backuptargets/{id}",
    ];
    expected.sort();
    assert_eq!(documented, expected);
    // And every documented operation is routed: no "no route", no 405.
    for op in &documented {
        let (verb, path) = op.split_once(' ').unwrap();
        let path = path.replace("{id}", "zz-missing");
        let (status, _, body) = Conn::new(&d.admin_socket).request(verb, &path, "");
        assert_ne!(status, 405, "{op} is documented but not routed");
        assert!(!body.contains("no route"), "{op} is documented but not routed: {body}");
    }
}

#[test]
fn tcp_admin_with_a_certificate_speaks_https_only_and_plain_http_stays_on_loopback() {
    if !root_or_skip() {
        return;
    }
    // A certificate made now, as an operator's CA would make one.
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("admin.crt"), dir.path().join("admin.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let config = format!(
        "[admin]\naccess_key = \"ops\"\nsecret_key = \"s3cr3t-key\"\ntls_cert = \"{}\"\n\
         tls_key = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let d = Daemon::private_with_args("admin-tls", &config, &["--admin-listen", "127.0.0.1:0"]);
    let port = d.tcp_admin_addr().port();
    let curl = |url: &str, extra: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "30", "-u", "ops:s3cr3t-key"])
            .args(extra)
            .arg(url)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let https = format!("https://localhost:{port}/v1/volumes");
    let (ok, body) = curl(&https, &["--cacert", cert.to_str().unwrap()]);
    assert!(ok, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert!(list["links"]["self"].as_str().unwrap().starts_with("https://localhost:"), "{list}");
    // The keys never go in clear: plain HTTP gets no answer, and a client
    // that cannot check the certificate stops before sending them.
    let (ok, body) = curl(&format!("http://localhost:{port}/v1/volumes"), &[]);
    assert!(!ok && body.is_empty(), "{body}");
    let (ok, _) = curl(&https, &[]);
    assert!(!ok, "curl trusted a certificate it had no way to check");

    // Without TLS, a listener other hosts can reach is refused at start.
    let run = tempfile::tempdir().unwrap();
    let file = run.path().join("ballast.toml");
    std::fs::write(&file, "[admin]\naccess_key = \"ops\"\nsecret_key = \"s3cr3t-key\"\n").unwrap();
    let err = crate::harness::serve_must_fail(
        run.path(),
        &["--config".as_ref(), file.as_os_str(), "--admin-listen".as_ref(), "0.0.0.0:0".as_ref()],
        &[],
    );
    assert!(err.contains("tls_cert") && err.contains("insecure = true"), "{err}");
}

#[test]
fn form_bodies_work_like_json_and_other_media_types_get_415() {
    if !root_or_skip() {
        return;
    }
    let (_d, mut http) = Daemon::private_with_tcp("admin-forms", "");
    let base = http.base();
    let volumes = format!("{base}/v1/volumes");
    let form = [("Content-Type", "application/x-www-form-urlencoded")];

    // A create as an HTML form or `curl -d` sends it: every field typed
    // as the JSON body would have it.
    let body =
        b"name=form-made&description=made+from+a+form&allocate=false&driverOpts%5Bmode%5D=0700";
    let a = http.send("POST", &volumes, &form, body);
    let v = http.spec_body("form create", &a);
    assert_eq!(a.status, 201, "{v}");
    assert_eq!(
        (&v["name"], &v["description"], &v["state"], &v["driverOpts"]["mode"]),
        (&json!("form-made"), &json!("made from a form"), &json!("requested"), &json!("0700")),
        "{v}"
    );
    // An action's input as a form.
    let id = v["id"].as_str().unwrap().to_string();
    http.ok("POST", &format!("{volumes}/{id}?action=allocate"), None, 200);
    let a = http.send("POST", &format!("{volumes}/{id}?action=snapshot"), &form, b"name=form-snap");
    let s = http.spec_body("form action", &a);
    assert_eq!((a.status, &s["name"]), (202, &json!("form-snap")), "{s}");
    // A value that is not of the field's type is named, as in JSON.
    let a = http.send("POST", &volumes, &form, b"name=form-bad&allocate=maybe");
    let e = http.spec_body("form with a bad boolean", &a);
    assert_eq!((a.status, &e["fieldName"]), (422, &json!("allocate")), "{e}");
    // JSON with a charset is JSON.
    let json_utf8 = [("Content-Type", "application/json; charset=utf-8")];
    let a = http.send("POST", &volumes, &json_utf8, br#"{"name":"json-charset"}"#);
    assert_eq!(a.status, 201, "{}", a.body);

    // Anything else is a 415 naming what is read, and changes nothing.
    for media in ["text/plain", "application/xml"] {
        let a = http.send("POST", &volumes, &[("Content-Type", media)], br#"{"name":"not-made"}"#);
        let e = http.spec_body(media, &a);
        assert_eq!((a.status, &e["code"]), (415, &json!("UnsupportedMediaType")), "{e}");
        let message = e["message"].as_str().unwrap();
        for named in [media, "application/json", "application/x-www-form-urlencoded"] {
            assert!(message.contains(named), "{media}: {message}");
        }
    }
    let left = http.get(&format!("{volumes}?name=not-made"));
    assert_eq!(left["data"], json!([]), "{left}");
    // An empty body has nothing to misread, whatever its type.
    let plain = [("Content-Type", "text/plain")];
    let a = http.send("POST", &format!("{volumes}/{id}?action=activate"), &plain, b"");
    assert_eq!(a.status, 200, "{}", a.body);
}
