//! Hostile peers on the sockets: a flood of half-sent requests, invented
//! methods and paths, bodies too large, paths that do not decode, empty
//! credentials. Private daemons only (no Docker engine); every request
//! goes to a Unix socket of the test or to 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use crate::harness::{Conn, Daemon, root_or_skip};

/// How long an answer may take on a busy machine.
const PATIENCE: Duration = Duration::from_secs(10);

const CREDENTIALS: &str = "[admin]\naccess_key = \"ops\"\nsecret_key = \"s3cr3t-key\"\n";

/// A private daemon with the TCP admin listener on a free loopback port,
/// and that port's address (from the daemon's log).
fn with_tcp(name: &str, soft_nofile: Option<u64>) -> (Daemon, SocketAddr) {
    let args = ["--admin-listen", "127.0.0.1:0"];
    let d = Daemon::private_with_args_and_nofile(name, CREDENTIALS, &args, soft_nofile);
    let addr = d.tcp_admin_addr();
    (d, addr)
}

/// One authenticated admin GET over TCP; its status.
fn tcp_get(addr: SocketAddr, path: &str) -> u16 {
    let auth = base64::engine::general_purpose::STANDARD.encode("ops:s3cr3t-key");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Runs `f` on a thread; fails the test unless it returns within `limit`.
fn within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: failed (see above)"),
    }
}

/// This process holds the flood's sockets: its soft open-files limit goes
/// up to the hard one.
fn raise_own_nofile() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let _ = setrlimit(Resource::Nofile, Rlimit { current: now.maximum, maximum: now.maximum });
}

/// The soft and hard open-files limits of a process.
fn nofile(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[3].to_string(), f[4].to_string())
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// Connection attempts: far more than the TCP listener's budget (256)
/// and its listen backlog together.
const FLOOD: usize = 2000;

#[test]
fn a_flood_of_half_requests_on_tcp_starves_neither_socket() {
    if !root_or_skip() {
        return;
    }
    raise_own_nofile();
    // Started with a soft limit of 256, as a service manager might: a
    // daemon that kept it could not hold the flood below.
    let (d, addr) = with_tcp("net-flood", Some(256));
    let pid = d.pid().unwrap();
    let (soft, hard) = nofile(pid);
    assert_eq!(soft, hard, "the daemon did not raise its soft open-files limit");

    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        // Once the daemon's budget and the kernel's backlog are full,
        // connects go unanswered: the flood is then as large as it gets.
        // (3 s lets the kernel resend a SYN that came before the daemon
        // caught up with its accepts.)
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
            break;
        };
        s.write_all(b"GET /v1/volumes HTTP/1.1\r\nHost: x\r\nAuthorization: Ba").unwrap();
        flood.push(s);
    }
    let stalled = flood.len();
    assert!(stalled > 300, "only {stalled} connections could be opened");

    // While the flood holds on, both Unix sockets answer, and the daemon
    // holds a bounded number of descriptors.
    let plugin = d.plugin_socket.clone();
    let (status, list) = within("VolumeDriver.List during the flood", PATIENCE, move || {
        crate::harness::call(&plugin, "VolumeDriver.List", "")
    });
    assert_eq!(status, 200, "{list}");
    let admin = d.admin_socket.clone();
    let (status, _, body) = within("/healthz on the admin socket during the flood", PATIENCE, {
        move || Conn::new(&admin).request("GET", "/healthz", "")
    });
    assert_eq!(status, 200, "{body}");
    let fds = open_fds(pid);
    eprintln!("{stalled} stalled connections; the daemon holds {fds} descriptors");
    assert!(fds < 256 + 100, "the daemon holds {fds} descriptors for {stalled} stalled peers");

    // Past the header timeout the daemon closes every stalled connection;
    // those the backlog held get their turn, and their timeout, as places
    // free up.
    let deadline = Instant::now() + Duration::from_secs(180);
    for (i, s) in flood.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        let mut got = Vec::new();
        match s.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("stalled connection {i} of {stalled} is still open ({e})"),
        }
        let got = String::from_utf8_lossy(&got);
        assert!(!got.starts_with("HTTP/1.1 200"), "half a request was answered: {got}");
    }
    assert_eq!(
        within("the TCP listener after the flood", PATIENCE, move || tcp_get(addr, "/v1")),
        200
    );
}

#[test]
fn empty_admin_keys_are_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("access_key = \"\"\nsecret_key = \"\"", "access_key"),
        ("access_key = \"ops\"\nsecret_key = \"\"", "secret_key"),
    ];
    for (keys, key) in cases {
        let config = dir.path().join("keys.toml");
        std::fs::write(&config, format!("[admin]\n{keys}\n")).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ballast"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--admin-listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--plugin-socket")
            .arg(dir.path().join("p.sock"))
            .arg("--admin-socket")
            .arg(dir.path().join("a.sock"))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ballast started with an empty `{key}`");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(&format!("key `{key}` is empty")), "{err}");
        assert!(!dir.path().join("p.sock").exists(), "nothing half-started");
    }
}

/// A small xorshift generator: tokens nobody would use as labels.
struct Rng(u64);

impl Rng {
    #[allow(clippy::cast_possible_truncation, reason = "the seed is the clock's low 64 bits")]
    fn seeded() -> Rng {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        Rng(t.as_nanos() as u64 ^ u64::from(std::process::id()) | 1)
    }

    fn token(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                char::from(b'a' + (self.0 % 26) as u8)
            })
            .collect()
    }
}

#[test]
fn invented_methods_and_paths_never_become_metrics_labels() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("net-labels");
    let mut rng = Rng::seeded();
    let mut invented = Vec::new();
    for i in 0..200 {
        let method = rng.token(9).to_uppercase();
        let token = rng.token(10);
        let path = match i % 4 {
            0 => format!("/v1/volumes/{token}"),
            1 => format!("/{token}/x"),
            2 => format!("/VolumeDriver.{token}"),
            _ => format!("/v1/{token}"),
        };
        // Every kind of path goes to both sockets in turn.
        let socket = if (i / 4) % 2 == 0 { &d.plugin_socket } else { &d.admin_socket };
        let (status, _, body) = Conn::new(socket).request(&method, &path, "");
        assert!(status >= 400, "{method} {path}: {status} {body}");
        invented.push(method);
        invented.push(token);
    }
    let (status, _, text) = Conn::new(&d.admin_socket).request("GET", "/metrics", "");
    assert_eq!(status, 200);
    for word in &invented {
        assert!(!text.to_lowercase().contains(&word.to_lowercase()), "{word} is a label:\n{text}");
    }
    let series = text.lines().filter(|l| l.starts_with("ballast_requests_total{")).count();
    assert!(series <= 10, "{series} request series after 200 invented requests:\n{text}");
    assert!(text.len() < 64 << 10, "/metrics is {} bytes", text.len());
}

/// One request on a fresh connection that asks to close, its body sent
/// from another thread (the server may answer before reading it all);
/// returns the status, the lower-cased head and the body.
fn exchange(socket: &Path, verb: &str, path: &str, body: Vec<u8>) -> (u16, String, String) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "{verb} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(head.as_bytes()).and_then(|()| w.write_all(&body));
    });
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    drop(s);
    let _ = writer.join();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{answer}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn json(what: &str, head: &str, body: &str) -> Value {
    assert!(head.contains("content-type: application/"), "{what}: no JSON media type: {head}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"))
}

#[test]
fn every_failure_on_either_socket_is_a_json_error() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("net-errors");
    let big = format!("{{\"Name\":\"big\",\"x\":\"{}\"}}", "x".repeat(3 << 20)).into_bytes();

    // The plugin socket: Docker's `{"Err"}`, in the plugin media type.
    let (status, head, body) =
        exchange(&d.plugin_socket, "POST", "/VolumeDriver.Create", big.clone());
    assert_eq!(status, 413, "{body}");
    assert!(head.contains("content-type: application/vnd.docker.plugins.v1.2+json"), "{head}");
    let v = json("plugin 413", &head, &body);
    assert!(!v["Err"].as_str().unwrap_or("").is_empty(), "{v}");

    // The admin socket: Rancher error bodies, whatever failed.
    let cases: [(&str, &str, Vec<u8>, u16, &str); 5] = [
        ("POST", "/v1/volumes", big, 413, "RequestTooLarge"),
        ("GET", "/v1/volumes/%FF", Vec::new(), 400, "InvalidFormat"),
        ("PATCH", "/v1/volumes", Vec::new(), 405, "MethodNotAllowed"),
        ("DELETE", "/v1/snapshots", Vec::new(), 405, "MethodNotAllowed"),
        ("GET", "/v1/nothing", Vec::new(), 404, "NotFound"),
    ];
    for (verb, path, body, want, code) in cases {
        let what = format!("{verb} {path}");
        let (status, head, body) = exchange(&d.admin_socket, verb, path, body);
        assert_eq!(status, want, "{what}: {body}");
        let v = json(&what, &head, &body);
        assert_eq!((v["type"].as_str(), v["code"].as_str()), (Some("error"), Some(code)), "{v}");
        assert_eq!(v["status"], want, "{v}");
        assert!(!v["message"].as_str().unwrap_or("").is_empty(), "{what}: {v}");
        if want == 405 {
            assert!(head.contains("allow: "), "{what}: no Allow header: {head}");
        }
    }
    assert!(d.names().is_empty(), "no failure created anything");
}
