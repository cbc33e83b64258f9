//! The browsable HTML API and the dashboard in a real headless Chromium,
//! driven over WebDriver as a person would use them, behind the TCP
//! listener's basic auth.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::harness::{Daemon, root_or_skip, skip};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const KEY: &str = "ops";
const SECRET: &str = "s3cr3t-key";
const HOSTILE: &str =
    r#"</script><script>window.pwned=1</script><img src=x onerror="window.pwned=2">"#;
/// Generous: the machine may be busy, and Chromium is slow to start.
const PATIENCE: Duration = Duration::from_secs(20);

/// chromedriver on a free loopback port, in a process group of its own so
/// that it and the Chromium it starts go together on drop.
struct Driver {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", dir.path().join("chromedriver.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting chromedriver");
        let d = Driver { child, port, dir };
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen: {}", d.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    fn profile(&self) -> std::path::PathBuf {
        self.dir.path().join("profile")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail = &log[log.len().saturating_sub(8000)..];
            eprintln!("--- chromedriver log (tail) ---\n{tail}");
        }
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over TCP: status, lower-cased head, body.
fn http(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let out = String::from_utf8_lossy(&out).to_string();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn authorized<'a>(auth: &'a str, headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = headers.to_vec();
    all.push(("Authorization", auth));
    all
}

const CHROME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                         Chrome/120.0 Safari/537.36";
const NAVIGATION: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// Polls a JavaScript expression in the page until it is truthy; returns
/// its value. A page half-way through loading counts as not yet.
async fn until(c: &Client, what: &str, expr: &str) -> Value {
    let script = format!("return ({expr});");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = c.execute(&script, vec![]).await;
        match got {
            Ok(v) if !matches!(v, Value::Null | Value::Bool(false)) && v != "" && v != 0 => {
                return v;
            }
            last => {
                if Instant::now() > deadline {
                    let url = c.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                    let text = c
                        .execute("return document.body && document.body.innerText", vec![])
                        .await
                        .unwrap_or_default();
                    panic!(
                        "timed out waiting for {what} ({expr}): last {last:?}\nat {url}:\n{text}"
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn fill(c: &Client, css: &str, text: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(text)
        .await
        .unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
}

/// The text of the rows of the table on the page.
const ROWS: &str =
    "[...document.querySelectorAll('table.list tbody tr')].map(r => r.innerText).join('\\n')";

#[test]
fn the_browsable_api_and_dashboard_in_chromium() {
    if !root_or_skip() {
        return;
    }
    for tool in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(tool).exists() {
            skip(&format!("{tool} is missing (apt-get install chromium chromium-driver)"));
            return;
        }
    }
    let port = 50000 + (std::process::id() % 10000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let config = format!("[admin]\naccess_key = \"{KEY}\"\nsecret_key = \"{SECRET}\"\n");
    let d = Daemon::private_with_args("browser-ui", &config, &["--admin-listen", &addr]);
    let hostile = d.admin_ok(
        "POST",
        "/v1/volumes",
        json!({ "name": "hostile", "description": HOSTILE }),
        201,
    );
    let hostile_id = hostile["id"].as_str().unwrap().to_string();
    over_http(&addr, &hostile_id);

    let driver = Driver::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = session(&driver).await;
        let origin = format!("http://127.0.0.1:{port}");
        // Logged in through the URL, as a person pasting it would.
        c.goto(&format!("http://{KEY}:{SECRET}@127.0.0.1:{port}/v1/volumes")).await.unwrap();
        create_and_snapshot(&c).await;
        filter_and_edit(&c).await;
        hostile_text(&c, &origin, &hostile_id).await;
        let pool = d.admin_ok("GET", "/v1/storagepools", Value::Null, 200)["data"][0]["name"]
            .as_str()
            .unwrap()
            .to_string();
        c.goto(&format!("{origin}/")).await.unwrap();
        dashboard(&c, &pool, || {
            d.admin_ok("POST", "/v1/volumes", json!({ "name": "late-comer" }), 201);
        })
        .await;
        c.close().await.unwrap();
    });
}

/// What the browser's requests get, seen raw: 401 without credentials,
/// the page's source, and JSON for clients that do not ask for a page.
fn over_http(addr: &str, hostile_id: &str) {
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:{SECRET}"))
    );
    let browser = [("Accept", NAVIGATION), ("User-Agent", CHROME_UA)];
    for path in ["/v1/volumes", "/"] {
        let (status, head, _) = http(addr, path, &browser);
        assert_eq!(status, 401, "{path}: {head}");
        assert!(head.contains("www-authenticate: basic"), "{path}: {head}");
    }

    // The hostile text is in the page only as escaped data.
    let (status, head, page) =
        http(addr, &format!("/v1/volumes/{hostile_id}"), &authorized(&auth, &browser));
    assert_eq!(status, 200, "{page}");
    assert!(head.contains("content-type: text/html; charset=utf-8"), "{head}");
    assert!(head.contains("content-security-policy: default-src 'none'"), "{head}");
    assert!(head.contains("x-api-schemas: http://"), "{head}");
    assert!(!page.contains(HOSTILE) && !page.contains("<img"), "not escaped: {page}");
    assert!(page.contains(r"\u003c\/script\u003e\u003cscript\u003ewindow.pwned=1"), "{page}");
    assert_eq!(page.matches("<script").count(), 3, "schemas, data, code");

    let paths = ["/v1/volumes", &format!("/v1/volumes/{hostile_id}"), "/v1/snapshots", "/"];
    for path in paths {
        for accept in [None, Some("application/json")] {
            let mut h = vec![("User-Agent", CHROME_UA)];
            h.extend(accept.map(|a| ("Accept", a)));
            let (status, head, body) = http(addr, path, &authorized(&auth, &h));
            assert_eq!(status, 200, "{path}: {body}");
            assert!(head.contains("content-type: application/json"), "{path} {accept:?}: {head}");
            serde_json::from_str::<Value>(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        }
    }
}

async fn session(driver: &Driver) -> Client {
    let profile = format!("--user-data-dir={}", driver.profile().display());
    let options = json!({
        "binary": CHROMIUM,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-crash-reporter", "--window-size=1280,1000", profile],
    });
    let caps = serde_json::Map::from_iter([("goog:chromeOptions".to_string(), options)]);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session")
}

/// On the volumes page: a refused name, then a volume made with the
/// Create form; on its page, a snapshot through the action's form; the
/// snapshot in its collection.
async fn create_and_snapshot(c: &Client) {
    let name = "section.create input[name=name]";
    until(c, "the create form", &format!("document.querySelector('{name}')")).await;
    // The inline style applied too: its hash matched the CSP.
    let styled = "getComputedStyle(document.querySelector('nav.top')).display === 'flex'";
    until(c, "the style", styled).await;

    fill(c, name, "bad name!").await;
    click(c, "section.create button[type=submit]").await;
    let code = "document.querySelector('section.create .error .err-code')?.textContent";
    assert_eq!(until(c, "the error shown", code).await, "InvalidFormat");
    until(c, "the field marked", &format!("document.querySelector('{name}[aria-invalid=true]')"))
        .await;
    c.find(Locator::Css(name)).await.unwrap().clear().await.unwrap();
    // Hints show code as code, not between backticks.
    let hint = "[...document.querySelectorAll('section.create small')]
        .find(s => s.textContent.includes('leaves the new volume'))?.innerHTML";
    let hint = until(c, "the allocate hint", hint).await;
    assert_eq!(hint, "false leaves the new volume <code>requested</code>");
    fill(c, name, "web-data").await;
    click(c, "section.create button[type=submit]").await;
    until(c, "the new volume listed", &format!("{ROWS}.includes('web-data')")).await;

    let row = "[...document.querySelectorAll('table.list tbody tr')]
        .find(r => r.innerText.includes('web-data'))?.dataset.id";
    let id = until(c, "the new volume's row", row).await;
    let id = id.as_str().unwrap();
    let name_link = format!(
        "[...document.querySelectorAll(\"tr[data-id='{id}'] td a\")]
            .some(a => a.textContent === 'web-data' && a.pathname === '/v1/volumes/{id}')"
    );
    assert_eq!(until(c, "the name's link", &name_link).await, true);
    click(c, &format!("tr[data-id='{id}'] td a")).await;
    let page = format!(
        "location.pathname === '/v1/volumes/{id}'
         && document.querySelector('button[data-action=snapshot]')"
    );
    until(c, "the volume page", &page).await;
    // Actions read as words, and remove and Delete say what each does.
    let labels = "[...document.querySelectorAll('.bar button')]
        .map(b => b.dataset.action + '=' + b.textContent + '|' + b.title)";
    let labels = until(c, "the action buttons", labels).await;
    let labels: Vec<&str> = labels.as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let label =
        |action: &str| labels.iter().find(|l| l.starts_with(&format!("{action}="))).copied();
    assert_eq!(label("snapshot").map(|l| l.split('|').next().unwrap()), Some("snapshot=Snapshot"));
    assert!(
        label("remove")
            .unwrap()
            .starts_with("remove=Remove (to trash)|Moves the volume to the trash"),
        "{labels:?}"
    );
    assert!(
        label("delete").unwrap().starts_with("delete=Delete (to trash)|The same as Remove"),
        "{labels:?}"
    );
    click(c, "button[data-action=snapshot]").await;
    until(c, "the snapshot form", "document.querySelector('.panel input[name=name]')").await;
    fill(c, ".panel input[name=name]", "first-snap").await;
    click(c, ".panel button[type=submit]").await;
    until(c, "the snapshot's page", "location.pathname.startsWith('/v1/snapshots/')").await;
    // The volume's page lists its snapshots (and backups), each a link.
    c.execute(&format!("location.assign('/v1/volumes/{id}')"), vec![]).await.unwrap();
    let snaps = "[...document.querySelectorAll('section[data-related=snapshots] td a')]
        .some(a => a.textContent === 'first-snap' && a.pathname.startsWith('/v1/snapshots/'))";
    until(c, "the volume's snapshots", snaps).await;
    until(
        c,
        "the volume's backups",
        "document.querySelector('section[data-related=backups]')?.innerText.includes('none')",
    )
    .await;
    click(c, "nav.top a[href$='/v1/snapshots']").await;
    let listed = format!("location.pathname === '/v1/snapshots' && {ROWS}.includes('first-snap')");
    until(c, "the snapshot listed", &listed).await;
}

/// The filter bar narrows the volumes to one; its Edit form changes the
/// description.
async fn filter_and_edit(c: &Client) {
    click(c, "nav.top a[href$='/v1/volumes']").await;
    let bar = "location.pathname === '/v1/volumes'
        && document.querySelector('form.filter select[name=field]')";
    until(c, "the volumes' filter bar", bar).await;
    let field = c.find(Locator::Css("form.filter select[name=field]")).await.unwrap();
    field.select_by_value("name").await.unwrap();
    let modifier = c.find(Locator::Css("form.filter select[name=modifier]")).await.unwrap();
    modifier.select_by_value("prefix").await.unwrap();
    fill(c, "form.filter input[name=value]", "web").await;
    click(c, "form.filter button[type=submit]").await;
    let narrowed = format!(
        "location.search === '?name_prefix=web'
         && {ROWS}.includes('web-data') && !{ROWS}.includes('hostile')"
    );
    until(c, "the filtered list", &narrowed).await;

    click(c, "table.list tbody tr td a").await;
    until(c, "the Edit button", "document.querySelector('button[data-action=edit]')").await;
    click(c, "button[data-action=edit]").await;
    until(c, "the Edit form", "document.querySelector('.panel input[name=description]')").await;
    fill(c, ".panel input[name=description]", "made in a browser").await;
    click(c, ".panel button[type=submit]").await;
    let saved = "document.querySelector('tr[data-field=description] td')?.textContent
        === 'made in a browser'";
    until(c, "the description saved", saved).await;
}

/// A description written to break out of the page is shown as text and
/// runs nothing.
async fn hostile_text(c: &Client, origin: &str, id: &str) {
    c.goto(&format!("{origin}/v1/volumes/{id}")).await.unwrap();
    let cell = "document.querySelector('tr[data-field=description] td')?.textContent";
    assert_eq!(until(c, "the description", cell).await, HOSTILE);
    assert_eq!(c.execute("return typeof window.pwned", vec![]).await.unwrap(), "undefined");
    assert_eq!(c.execute("return document.images.length", vec![]).await.unwrap(), 0);

    // The same browser without credentials is refused.
    let fetch = "return fetch('/v1/volumes', { credentials: 'omit' }).then(r => r.status)";
    assert_eq!(c.execute(fetch, vec![]).await.unwrap(), 401);
}

/// The dashboard: the pool with its capacity bar, the volumes, and a
/// volume that `meanwhile` makes appearing by itself.
async fn dashboard(c: &Client, pool: &str, meanwhile: impl FnOnce()) {
    let bar = format!(
        "[...document.querySelectorAll('#pools tbody tr')]
            .some(r => r.innerText.includes('{pool}') && r.querySelector('meter.capacity'))"
    );
    until(c, "the pool's capacity bar", &bar).await;
    let volumes = "document.querySelector('#volumes').innerText";
    until(c, "the volumes", &format!("['web-data', 'hostile'].every(n => {volumes}.includes(n))"))
        .await;
    meanwhile();
    until(c, "the dashboard refreshed", &format!("{volumes}.includes('late-comer')")).await;
    assert_eq!(c.execute("return typeof window.pwned", vec![]).await.unwrap(), "undefined");
}
