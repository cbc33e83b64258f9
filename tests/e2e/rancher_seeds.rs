//! The examples of Rancher's `volume` API pages (v1.0 and v1.1, the
//! pages the model comes from, copied into `seeds/`), read from the pages
//! at test time and replayed as written against the TCP admin listener:
//! only the host, port, credentials and ids are filled in, and bodies go
//! byte for byte, tabs and newlines included. The pages' placeholder
//! values (`"driver": "string"`, `{"key": "value-pairs"}`) are refused
//! with errors that say what to send instead; with real values in their
//! place, create, snapshot, reverttosnapshot, restorefrombackup and delete
//! do what the pages say, and `/v1/volume`, `/v1/volumes` and
//! `/v1/projects/1a5/volumes` create alike.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::backup::{repo_in, target};
use crate::harness::{ACCESS_KEY, Answer, Daemon, Http, SECRET_KEY, root_or_skip};

/// The pages, in the repository so that a clean clone has them.
const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/seeds");

/// One example request of a page, as written there.
#[derive(Debug)]
struct Example {
    /// The operation's heading (`Create`, `Delete`, an action's name).
    name: String,
    method: String,
    /// The URL or path, placeholders and all.
    target: String,
    /// curl's `-u`, when the example is a curl command.
    user: Option<String>,
    headers: Vec<(String, String)>,
    body: String,
}

/// The examples of a page: each operation heading with its method and
/// path, and the request of its `highlight` block, either a curl command
/// (whose method, URL, headers and `-d` body it is) or a bare JSON body.
fn examples(page: &str) -> Vec<Example> {
    let text = std::fs::read_to_string(format!("{SEEDS}/{page}"))
        .unwrap_or_else(|e| panic!("{SEEDS}/{page}: {e}"));
    let mut found = Vec::new();
    for part in text.split("class=\"header\">").skip(1) {
        let name = part[..part.find('<').unwrap()].trim().to_string();
        let right = between(part, "class=\"headerright\">", "</code>");
        let (method, path) = right.split_once(":").unwrap();
        let (method, path) = (method.trim(), path.trim().trim_start_matches("<code>"));
        let block = part
            .split_once("{% highlight json %}")
            .map(|(_, rest)| rest.split_once("{% endhighlight %}").unwrap().0.trim());
        let ex = match block {
            Some(cmd) if cmd.starts_with("curl ") => {
                let ex = curl(&name, cmd);
                assert_eq!(ex.method, method, "{page} {name}: the heading's method");
                assert!(ex.target.ends_with(path), "{page} {name}: {} vs {path}", ex.target);
                ex
            }
            block => Example {
                name,
                method: method.to_string(),
                target: path.to_string(),
                user: None,
                headers: Vec::new(),
                body: block.unwrap_or("").to_string(),
            },
        };
        found.push(ex);
    }
    found
}

fn between<'t>(text: &'t str, start: &str, end: &str) -> &'t str {
    let from = text.find(start).unwrap_or_else(|| panic!("no {start:?} in {text}")) + start.len();
    &text[from..from + text[from..].find(end).unwrap()]
}

/// The words of a shell command: quotes removed, `\` + newline a space.
fn shell_words(cmd: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = cmd.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let w = word.get_or_insert_with(String::new);
                let mut closed = false;
                for q in chars.by_ref() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    w.push(q);
                }
                assert!(closed, "an unterminated quote in {cmd}");
            }
            '\\' if chars.peek() == Some(&'\n') => {
                chars.next();
                words.extend(word.take());
            }
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// A curl command's request.
fn curl(name: &str, cmd: &str) -> Example {
    let words = shell_words(cmd);
    assert_eq!(words[0], "curl");
    let mut ex = Example {
        name: name.to_string(),
        method: "GET".into(),
        target: String::new(),
        user: None,
        headers: Vec::new(),
        body: String::new(),
    };
    let mut args = words[1..].iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} without a value")).clone();
        match arg.as_str() {
            "-u" => ex.user = Some(value()),
            "-X" => ex.method = value(),
            "-H" => {
                let h = value();
                let (k, v) = h.split_once(':').unwrap();
                ex.headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            "-d" => ex.body = value(),
            flag if flag.starts_with('-') => panic!("curl flag {flag} not understood: {cmd}"),
            url => ex.target = url.to_string(),
        }
    }
    ex
}

fn example<'e>(all: &'e [Example], name: &str) -> &'e Example {
    let mut it = all.iter().filter(|e| e.name == name);
    let ex = it.next().unwrap_or_else(|| panic!("no example {name:?} in {all:#?}"));
    assert!(it.next().is_none(), "two examples {name:?}");
    ex
}

/// `text` with each placeholder replaced; each must be there.
fn fill(text: &str, subs: &[(&str, &str)]) -> String {
    subs.iter().fold(text.to_string(), |t, (from, to)| {
        assert!(t.contains(from), "{from:?} is not in {t:?}");
        t.replace(from, to)
    })
}

impl Example {
    /// Sends the example to `url` (its target, placeholders filled in)
    /// with its body, placeholders `subs` replaced; the answer, checked
    /// against the spec, and its body.
    fn send(&self, http: &mut Http, url: &str, subs: &[(&str, &str)]) -> (Answer, Value) {
        if let Some(user) = &self.user {
            // The credentials are the configured keys, which `http` sends.
            let user = fill(
                user,
                &[("${RANCHER_ACCESS_KEY}", ACCESS_KEY), ("${RANCHER_SECRET_KEY}", SECRET_KEY)],
            );
            assert_eq!(user, format!("{ACCESS_KEY}:{SECRET_KEY}"));
        }
        let mut headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if self.user.is_none() && !self.body.is_empty() {
            // A bare body on the page: sent as its `highlight json` says.
            headers.push(("Content-Type", "application/json"));
        }
        let body = fill(&self.body, subs);
        let answer = http.send(&self.method, url, &headers, body.as_bytes());
        let v = http.spec_body(&format!("{} {url} {body}", self.method), &answer);
        (answer, v)
    }

    /// The example's URL on this listener: its host and port, and `id`.
    fn url(&self, base: &str, id: &str) -> String {
        let url = fill(&self.target, &[("http://${RANCHER_URL}:8080", base)]);
        if id.is_empty() { url } else { fill(&url, &[("${ID}", id)]) }
    }
}

fn assert_error(v: &Value, status: u16, code: &str, field: Option<&str>) {
    assert_eq!(v["status"], status, "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["fieldName"].as_str(), field, "{v}");
}

/// Where a volume's files are, from its `uri`.
fn files(v: &Value) -> PathBuf {
    let uri = v["uri"].as_str().unwrap_or_else(|| panic!("no uri: {v}"));
    PathBuf::from(uri.split_once("://").unwrap().1)
}

fn ids(collection: &Value) -> Vec<&str> {
    collection["data"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect()
}

#[test]
fn the_seed_pages_examples_work_as_written() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let (d, mut http) = Daemon::private_with_tcp("rancher-seeds", &target("nas", &repo, &key, ""));
    let base = http.base();
    let v10 = examples("volume-v1.0.md");
    let v11 = examples("volume-v1.1.md");
    let names = |all: &[Example]| all.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&v11),
        ["Create", "Delete", "restorefrombackup", "reverttosnapshot", "snapshot"]
    );
    let create10 = example(&v10, "Create");
    assert_eq!((create10.method.as_str(), create10.target.as_str()), ("POST", "/v1/volume"));
    let create11 = example(&v11, "Create");
    let project =
        http.get(&format!("{base}/v1/projects"))["data"][0]["id"].as_str().unwrap().to_string();
    let at_v10 = format!("{base}{}", create10.target);
    let at_v11 = create11.url(&base, "");
    let at_project = format!("{base}/v1/projects/{project}/volumes");
    assert_eq!(at_v11, format!("{base}/v1/volumes"));

    // As written: the driver "string" is refused, with the one valid
    // driver named, at every create URL alike.
    let mut answers = Vec::new();
    for (ex, url) in [(create10, &at_v10), (create11, &at_v11), (create11, &at_project)] {
        let (a, v) = ex.send(&mut http, url, &[]);
        assert_eq!(a.status, 422, "{url}: {v}");
        assert_error(&v, 422, "InvalidOption", Some("driver"));
        let message = v["message"].as_str().unwrap();
        assert!(message.contains("\"string\"") && message.contains(&d.driver), "{v}");
        answers.push(v);
    }
    assert!(answers.iter().all(|v| *v == answers[0]), "{answers:#?}");

    // The driver put right, the driverOpts placeholder is refused, its
    // key named and the valid keys listed.
    let driver = format!("\"driver\": \"{}\"", d.driver);
    let real_driver = [("\"driver\": \"string\"", driver.as_str())];
    for (ex, url, key) in [(create10, &at_v10, "key1"), (create11, &at_project, "key")] {
        let (_, v) = ex.send(&mut http, url, &real_driver);
        assert_error(&v, 422, "InvalidFormat", Some("driverOpts"));
        let message = v["message"].as_str().unwrap();
        assert!(message.contains(&format!("\"{key}\"")) && message.contains("mode"), "{v}");
    }
    assert_eq!(ids(&http.get(&at_v11)), Vec::<&str>::new(), "no refused create made a volume");

    // With real values in place of the placeholders (the driver, and
    // driverOpts keys of docs/design.md), the v1.0 body creates at /v1/volume.
    let real10 = [
        real_driver[0],
        ("\"key1\": \"value1\"", "\"mode\": \"0750\""),
        ("\"key2\": \"value2\"", "\"uid\": \"1234\""),
        ("\"keyN\": \"valueN\"", "\"gid\": \"5678\""),
    ];
    let (a, first) = create10.send(&mut http, &at_v10, &real10);
    assert_eq!(a.status, 201, "{first}");
    let first_self = first["links"]["self"].as_str().unwrap().to_string();
    assert_eq!(a.header("location"), Some(first_self.as_str()));
    assert_eq!(
        (&first["name"], &first["description"], &first["driver"], &first["state"]),
        (&json!("string"), &json!("string"), &json!(d.driver), &json!("inactive")),
        "{first}"
    );
    assert_eq!(first["driverOpts"], json!({ "mode": "0750", "uid": "1234", "gid": "5678" }));
    let meta = std::fs::metadata(files(&first)).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o750, 1234, 5678));
    let id = first["id"].as_str().unwrap();
    for url in [
        first_self.clone(),
        format!("{base}/v1/volume/{id}"),
        format!("{base}/v1/projects/{project}/volumes/{id}"),
    ] {
        assert_eq!(http.get(&url), first, "{url}");
    }

    // The v1.1 body with real values: the name is taken (with other
    // options), at either URL.
    let real11 = [real_driver[0], ("\"key\": \"value-pairs\"", "\"mode\": \"0700\"")];
    for url in [&at_v11, &at_project] {
        let (_, v) = create11.send(&mut http, url, &real11);
        assert_error(&v, 409, "NotUnique", Some("name"));
        assert!(v["message"].as_str().unwrap().contains("\"string\""), "{v}");
    }

    // v1.0's Delete, at `${links.self}`: the volume goes to the trash and
    // its name is free again.
    let delete10 = example(&v10, "Delete");
    assert_eq!((delete10.method.as_str(), delete10.body.as_str()), ("DELETE", ""));
    let url = fill(&delete10.target, &[("${links.self}", &first_self)]);
    let (a, gone) = delete10.send(&mut http, &url, &[]);
    assert_eq!(a.status, 200, "{gone}");
    assert_eq!((gone["id"].as_str(), gone["state"].as_str()), (Some(id), Some("removed")));
    assert!(gone["removed"].is_string(), "{gone}");
    assert_eq!(ids(&http.get(&at_v11)), Vec::<&str>::new());

    // Now the v1.1 body creates, at /v1/volumes.
    let (a, vol) = create11.send(&mut http, &at_v11, &real11);
    assert_eq!(a.status, 201, "{vol}");
    let vid = vol["id"].as_str().unwrap().to_string();
    let vself = vol["links"]["self"].as_str().unwrap().to_string();
    assert_ne!(vid, id, "ids are never reused");
    assert_eq!(vol["driverOpts"], json!({ "mode": "0700" }));
    let root = files(&vol);
    assert_eq!(std::fs::metadata(&root).unwrap().mode() & 0o7777, 0o700);

    // snapshot, as written (its name is "string").
    std::fs::write(root.join("before"), "kept").unwrap();
    let snapshot = example(&v11, "snapshot");
    let (a, snap) = snapshot.send(&mut http, &snapshot.url(&base, &vid), &[]);
    assert_eq!(a.status, 202, "{snap}");
    assert_eq!((snap["type"].as_str(), snap["name"].as_str()), (Some("snapshot"), Some("string")));
    assert_eq!(snap["volumeId"], vid.as_str());
    let snap = http.settle(snap["links"]["self"].as_str().unwrap());
    assert_eq!(snap["state"], "created", "{snap}");
    let sid = snap["id"].as_str().unwrap();

    // reverttosnapshot: as written, the placeholder names no snapshot;
    // with the snapshot's id, the content becomes the snapshot's.
    std::fs::write(root.join("after"), "goes").unwrap();
    let revert = example(&v11, "reverttosnapshot");
    let (_, v) = revert.send(&mut http, &revert.url(&base, &vid), &[]);
    assert_error(&v, 422, "InvalidReference", Some("snapshotId"));
    assert!(root.join("after").exists(), "a refused revert changed nothing");
    let (a, v) = revert.send(&mut http, &revert.url(&base, &vid), &[("reference[snapshot]", sid)]);
    assert_eq!(a.status, 202, "{v}");
    assert_eq!((v["type"].as_str(), v["id"].as_str()), (Some("volume"), Some(vid.as_str())));
    let v = http.settle(&vself);
    assert_eq!((v["state"].as_str(), v["transitioning"].as_str()), (Some("inactive"), Some("no")));
    assert!(!root.join("after").exists(), "the revert kept a later file");
    assert_eq!(std::fs::read_to_string(root.join("before")).unwrap(), "kept");

    // restorefrombackup: as written and with an id that names nothing,
    // refused; from a real backup, the content becomes the backup's.
    let restore = example(&v11, "restorefrombackup");
    for subs in [&[][..], &[("reference[backup]", "1b999")][..]] {
        let (_, v) = restore.send(&mut http, &restore.url(&base, &vid), subs);
        assert_error(&v, 422, "InvalidReference", Some("backupId"));
    }
    let backups = http.get(&format!("{base}/v1"))["links"]["backups"].as_str().unwrap().to_string();
    let b = http.ok("POST", &backups, Some(&json!({ "volumeId": vid })), 202);
    let b = http.settle(b["links"]["self"].as_str().unwrap());
    assert_eq!(b["state"], "created", "{b}");
    std::fs::remove_file(root.join("before")).unwrap();
    std::fs::write(root.join("junk"), "goes").unwrap();
    let bid = b["id"].as_str().unwrap();
    let (a, v) = restore.send(&mut http, &restore.url(&base, &vid), &[("reference[backup]", bid)]);
    assert_eq!(a.status, 202, "{v}");
    let v = http.settle(&vself);
    assert_eq!((v["state"].as_str(), v["transitioning"].as_str()), (Some("inactive"), Some("no")));
    assert_eq!(std::fs::read_to_string(root.join("before")).unwrap(), "kept");
    assert!(!root.join("junk").exists(), "the restore kept a later file");

    // Delete, as written.
    let delete = example(&v11, "Delete");
    let (a, v) = delete.send(&mut http, &delete.url(&base, &vid), &[]);
    assert_eq!(a.status, 200, "{v}");
    assert_eq!((v["id"].as_str(), v["state"].as_str()), (Some(vid.as_str()), Some("removed")));
    assert_eq!(http.get(&vself)["state"], "removed");

    // And the project-scoped URL creates too, and lists the same.
    let (a, vol) = create11.send(&mut http, &at_project, &real11);
    assert_eq!(a.status, 201, "{vol}");
    let cid = vol["id"].as_str().unwrap();
    assert_eq!(
        http.get(&format!("{at_project}/{cid}")),
        http.get(vol["links"]["self"].as_str().unwrap())
    );
    assert_eq!(ids(&http.get(&at_project)), [cid]);
    assert_eq!(http.get(&at_project)["data"], http.get(&at_v11)["data"]);
}
