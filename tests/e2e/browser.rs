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
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:{SECRET}"))
    );
    let browser = [("Accept", NAVIGATION), ("User-Agent", CHROME_UA)];

    // A browser without credentials is asked for them, page or not.
    let (status, head, _) = http(&addr, "/v1/volumes", &browser);
    assert_eq!(status, 401, "{head}");
    assert!(head.contains("www-authenticate: basic"), "{head}");
    let (status, _, _) = http(&addr, "/", &browser);
    assert_eq!(status, 401);

    let hostile = d.admin_ok(
        "POST",
        "/v1/volumes",
        json!({ "name": "hostile", "description": HOSTILE }),
        201,
    );
    let hostile_id = hostile["id"].as_str().unwrap().to_string();
    let pool = d.admin_ok("GET", "/v1/storagepools", Value::Null, 200)["data"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();

    // The page's source: the hostile text only as escaped data.
    let with_auth = |h: &[(&'static str, &'static str)]| authorized(&auth, h);
    let (status, head, page) =
        http(&addr, &format!("/v1/volumes/{hostile_id}"), &with_auth(&browser));
    assert_eq!(status, 200, "{page}");
    assert!(head.contains("content-type: text/html; charset=utf-8"), "{head}");
    assert!(head.contains("content-security-policy: default-src 'none'"), "{head}");
    assert!(!page.contains(HOSTILE) && !page.contains("<img"), "not escaped: {page}");
    assert!(page.contains(r"\u003c\/script\u003e\u003cscript\u003ewindow.pwned=1"), "{page}");
    assert_eq!(page.matches("<script").count(), 3, "schemas, data, code");

    // JSON clients get JSON from the same URLs.
    for path in ["/v1/volumes", &format!("/v1/volumes/{hostile_id}"), "/v1/snapshots"] {
        for accept in [None, Some("application/json")] {
            let mut h = vec![("User-Agent", CHROME_UA)];
            h.extend(accept.map(|a| ("Accept", a)));
            let (status, head, body) = http(&addr, path, &with_auth(&h));
            assert_eq!(status, 200, "{path}: {body}");
            assert!(head.contains("content-type: application/json"), "{path} {accept:?}: {head}");
            serde_json::from_str::<Value>(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        }
    }
    let (_, head, _) = http(&addr, "/", &with_auth(&[("Accept", "application/json")]));
    assert!(head.contains("content-type: application/json"), "{head}");

    let driver = Driver::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        let profile = format!("--user-data-dir={}", driver.profile().display());
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000", profile],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let c = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .expect("a WebDriver session");
        let origin = format!("http://127.0.0.1:{port}");

        // The volumes collection, logged in through the URL.
        c.goto(&format!("http://{KEY}:{SECRET}@127.0.0.1:{port}/v1/volumes")).await.unwrap();
        until(&c, "the create form", "document.querySelector('section.create input[name=name]')")
            .await;
        // The inline style ran too (its hash matched the CSP).
        until(&c, "the style", "getComputedStyle(document.querySelector('nav.top')).display === 'flex'")
            .await;
        fill(&c, "section.create input[name=name]", "web-data").await;
        click(&c, "section.create button[type=submit]").await;
        until(&c, "the new volume listed", &format!("{ROWS}.includes('web-data')")).await;

        // Open it and take a snapshot through the action's form.
        let id = until(
            &c,
            "the new volume's row",
            "[...document.querySelectorAll('table.list tbody tr')]
                .find(r => r.innerText.includes('web-data'))?.dataset.id",
        )
        .await;
        let id = id.as_str().unwrap().to_string();
        click(&c, &format!("tr[data-id='{id}'] td a")).await;
        until(
            &c,
            "the volume page",
            &format!("location.pathname === '/v1/volumes/{id}' && document.querySelector('button[data-action=snapshot]')"),
        )
        .await;
        click(&c, "button[data-action=snapshot]").await;
        until(&c, "the snapshot form", "document.querySelector('.panel input[name=name]')").await;
        fill(&c, ".panel input[name=name]", "first-snap").await;
        click(&c, ".panel button[type=submit]").await;
        until(&c, "the snapshot's page", "location.pathname.startsWith('/v1/snapshots/')").await;
        click(&c, "nav.top a[href$='/v1/snapshots']").await;
        until(&c, "the snapshot listed", &format!("location.pathname === '/v1/snapshots' && {ROWS}.includes('first-snap')")).await;

        // The hostile description, shown as text and never run.
        c.goto(&format!("{origin}/v1/volumes/{hostile_id}")).await.unwrap();
        let shown = until(
            &c,
            "the description",
            "document.querySelector('tr[data-field=description] td')?.textContent",
        )
        .await;
        assert_eq!(shown, HOSTILE);
        let pwned = c.execute("return typeof window.pwned", vec![]).await.unwrap();
        assert_eq!(pwned, "undefined");
        let imgs = c.execute("return document.images.length", vec![]).await.unwrap();
        assert_eq!(imgs, 0);

        // Without credentials, the same browser is refused.
        let refused = c
            .execute(
                "return fetch('/v1/volumes', { credentials: 'omit' }).then(r => r.status)",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(refused, 401);

        // The dashboard: the pool with its capacity bar, the volumes, and
        // a volume made meanwhile appearing by itself.
        c.goto(&format!("{origin}/")).await.unwrap();
        until(&c, "the pool's capacity bar", &format!(
            "[...document.querySelectorAll('#pools tbody tr')].some(r => r.innerText.includes('{pool}') && r.querySelector('meter.capacity'))"
        ))
        .await;
        until(&c, "the volumes", "['web-data', 'hostile'].every(n => document.querySelector('#volumes').innerText.includes(n))").await;
        d.admin_ok("POST", "/v1/volumes", json!({ "name": "late-comer" }), 201);
        until(&c, "the dashboard refreshed", "document.querySelector('#volumes').innerText.includes('late-comer')").await;
        let pwned = c.execute("return typeof window.pwned", vec![]).await.unwrap();
        assert_eq!(pwned, "undefined");

        c.close().await.unwrap();
    });
}
