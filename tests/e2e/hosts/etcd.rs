//! A three-member etcd cluster on loopback, and the per-host TCP proxies
//! in front of it that cut one host off (see the note of `hosts`).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::harness::{spawn_until_exit, stop_child};

/// How long a start may take on a loaded machine.
const START: Duration = Duration::from_secs(90);

/// Free loopback ports: each bound to port 0 at once and let go. Another
/// process could take one before etcd binds it; the kernel hands out
/// ephemeral ports round robin, so that would take a very busy machine.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

struct Member {
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// Three etcd members (Debian's etcd-server, 3.4) with their data in a
/// temporary directory, stopped when dropped.
pub struct Etcd {
    dir: tempfile::TempDir,
    members: Vec<Member>,
}

impl Etcd {
    /// Starts the three members and waits until each says it is healthy.
    pub fn start() -> Etcd {
        let dir = tempfile::Builder::new().prefix("ballast-etcd-").tempdir().unwrap();
        let ports = free_ports(6);
        let members = (0..3)
            .map(|i| Member { client: ports[2 * i], peer: ports[2 * i + 1], child: None })
            .collect();
        let mut etcd = Etcd { dir, members };
        etcd.start_all();
        etcd
    }

    /// The members' client URLs.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| format!("http://{}", self.client_addr(i))).collect()
    }

    pub fn client_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.members[i].client))
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("m{i}.log"))).unwrap_or_default()
    }

    fn spawn(&mut self, i: usize) {
        if self.members[i].child.is_some() {
            return;
        }
        let cluster: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .map(|(j, m)| format!("m{j}=http://127.0.0.1:{}", m.peer))
            .collect();
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let data = self.dir.path().join(format!("m{i}"));
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("m{i}.log")))
            .unwrap();
        // The token is the directory's unique name, so that members of
        // another run can never join this cluster. The initial-cluster
        // flags only matter on the first start (later starts read the
        // data directory). Heartbeat and election timeouts are twice the
        // defaults: on a loaded two-core machine the defaults make the
        // leader flap.
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "TERM", "--", "etcd", "--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-state", "new"])
            .arg("--initial-cluster-token")
            .arg(self.dir.path().file_name().unwrap())
            .args(["--heartbeat-interval", "200", "--election-timeout", "2000"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.members[i].child = Some(spawn_until_exit(cmd));
    }

    /// Starts member `i` again (on its data) and waits until it is healthy.
    pub fn start_member(&mut self, i: usize) {
        self.spawn(i);
        self.wait_healthy();
    }

    /// Stops member `i` (SIGTERM, as systemd does) and waits for its exit.
    pub fn stop_member(&mut self, i: usize) {
        let Some(child) = self.members[i].child.take() else { return };
        stop_child(child, Duration::from_secs(30));
    }

    pub fn start_all(&mut self) {
        // All at once: a lone first member waits for a quorum.
        for i in 0..self.members.len() {
            self.spawn(i);
        }
        self.wait_healthy();
    }

    pub fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }

    pub fn running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Whether member `i` says it is healthy (it has a leader, so a
    /// quorum) on its `/health` endpoint.
    pub fn healthy(&self, i: usize) -> bool {
        healthy_at(self.client_addr(i), Duration::from_secs(5))
    }

    /// Waits until every running member is healthy.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + START;
        for i in (0..self.members.len()).filter(|&i| self.running(i)) {
            while !self.healthy(i) {
                assert!(
                    Instant::now() < deadline,
                    "etcd member m{i} not healthy within {START:?}: {}",
                    self.log(i)
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }

    /// Puts `key` = `value` through member `i` (the v3 JSON gateway).
    pub fn put(&self, i: usize, key: &str, value: &str) -> std::io::Result<()> {
        put_at(self.client_addr(i), key, value)
    }

    /// The value of `key` read through member `i` (a linearizable read:
    /// it needs a quorum).
    pub fn get(&self, i: usize, key: &str) -> std::io::Result<Option<String>> {
        get_at(self.client_addr(i), key)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..self.members.len() {
                eprintln!("--- etcd m{i} log ---\n{}", self.log(i));
            }
        }
        self.stop_all();
    }
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(s: &str) -> String {
    use base64::Engine;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
}

/// Whether the etcd member (or proxy) at `addr` answers `/health` with
/// `"health":"true"` within `timeout`.
pub fn healthy_at(addr: SocketAddr, timeout: Duration) -> bool {
    http(addr, "GET", "/health", "", timeout)
        .is_ok_and(|(status, body)| status == 200 && body.contains(r#""health":"true""#))
}

pub fn put_at(addr: SocketAddr, key: &str, value: &str) -> std::io::Result<()> {
    let body = serde_json::json!({ "key": b64(key), "value": b64(value) }).to_string();
    let (status, answer) = http(addr, "POST", "/v3/kv/put", &body, Duration::from_secs(20))?;
    if status == 200 {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("put {key}: {status} {answer}")))
    }
}

pub fn get_at(addr: SocketAddr, key: &str) -> std::io::Result<Option<String>> {
    let body = serde_json::json!({ "key": b64(key) }).to_string();
    let (status, answer) = http(addr, "POST", "/v3/kv/range", &body, Duration::from_secs(20))?;
    if status != 200 {
        return Err(std::io::Error::other(format!("get {key}: {status} {answer}")));
    }
    let v: serde_json::Value = serde_json::from_str(&answer).map_err(std::io::Error::other)?;
    Ok(v["kvs"][0]["value"].as_str().map(unb64))
}

/// One HTTP/1.1 request on a new connection (`Connection: close`), every
/// step bounded by `timeout`: the status and the body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    send(&mut s, method, path, body, timeout)?;
    answer(&mut s)
}

/// Writes one request (`Connection: close`) on `s`, whose reads then time
/// out after `timeout`.
pub fn send(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: etcd\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Reads the answer to [`send`] until the server closes: status and body
/// (chunked bodies decoded).
pub fn answer(s: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    let text = String::from_utf8_lossy(&all).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("no answer: {text:?}"))
    })?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Ok((status, if chunked { dechunk(body) } else { body.to_string() }))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A host's way to etcd: one loopback listener per member, forwarding
/// each connection to its member, until [`EtcdProxy::partition`].
pub struct EtcdProxy {
    addrs: Vec<SocketAddr>,
    flags: Arc<Flags>,
    acceptors: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct Flags {
    partitioned: AtomicBool,
    stop: AtomicBool,
}

impl Flags {
    /// Waits while partitioned; false once the proxy stops.
    fn pass(&self) -> bool {
        while self.partitioned.load(Ordering::SeqCst) && !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        !self.stop.load(Ordering::SeqCst)
    }
}

impl EtcdProxy {
    pub fn start(etcd: &Etcd) -> EtcdProxy {
        let flags = Arc::new(Flags::default());
        let mut addrs = Vec::new();
        let mut acceptors = Vec::new();
        for i in 0..etcd.members.len() {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            addrs.push(listener.local_addr().unwrap());
            let (upstream, flags) = (etcd.client_addr(i), flags.clone());
            acceptors.push(std::thread::spawn(move || accept(listener, upstream, &flags)));
        }
        EtcdProxy { addrs, flags, acceptors }
    }

    /// The URLs a host's ballast is given instead of the members' own.
    pub fn endpoints(&self) -> Vec<String> {
        self.addrs.iter().map(|a| format!("http://{a}")).collect()
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }

    /// Cuts the host off: no byte moves either way on any connection, and
    /// no new connection is accepted (the kernel still completes the
    /// handshake of up to a backlog of them, which then carry nothing).
    /// Nothing is closed, so clients notice only by their timeouts and
    /// keepalives, as with a pulled cable.
    pub fn partition(&self) {
        self.flags.partitioned.store(true, Ordering::SeqCst);
    }

    /// Reconnects the host: held bytes flow on (as TCP retransmits after
    /// a short outage) and waiting connections are accepted.
    pub fn heal(&self) {
        self.flags.partitioned.store(false, Ordering::SeqCst);
    }
}

impl Drop for EtcdProxy {
    fn drop(&mut self) {
        self.flags.stop.store(true, Ordering::SeqCst);
        for t in self.acceptors.drain(..) {
            let _ = t.join();
        }
    }
}

fn accept(listener: TcpListener, upstream: SocketAddr, flags: &Arc<Flags>) {
    listener.set_nonblocking(true).unwrap();
    while flags.pass() {
        match listener.accept() {
            Ok((client, _)) => {
                let flags = flags.clone();
                std::thread::spawn(move || forward(client, upstream, &flags));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Connects `client` to its member and pumps both ways; a member that
/// is down closes the client's connection, as a refused connect would.
fn forward(client: TcpStream, upstream: SocketAddr, flags: &Arc<Flags>) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else {
        return;
    };
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let back = {
        let flags = flags.clone();
        std::thread::spawn(move || pump(s2, c2, &flags))
    };
    pump(client, server, flags);
    let _ = back.join();
}

/// Copies `from` to `to` while the proxy runs, holding each chunk while
/// partitioned; half-closes `to` at the end of `from`.
fn pump(mut from: TcpStream, mut to: TcpStream, flags: &Flags) {
    // Short read timeouts only so that a stopped proxy ends its threads.
    let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0; 64 << 10];
    loop {
        if flags.stop.load(Ordering::SeqCst) {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if !flags.pass() || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
