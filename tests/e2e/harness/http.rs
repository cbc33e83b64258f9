//! The admin API over TCP, with basic auth.

#[allow(unused_imports)]
use super::*;

pub const ACCESS_KEY: &str = "ops";
pub const SECRET_KEY: &str = "s3cr3t-key";

impl Daemon {
    /// A private daemon that also serves the admin API on a free loopback
    /// TCP port, with basic auth by [`ACCESS_KEY`] and [`SECRET_KEY`];
    /// `config` is the rest of its configuration. Returns it and a client
    /// of that port.
    pub fn private_with_tcp(name: &str, config: &str) -> (Daemon, Http) {
        let config = format!(
            "{config}\n[admin]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n"
        );
        let d = Daemon::private_with_args(name, &config, &["--admin-listen", "127.0.0.1:0"]);
        let http = Http::new(d.tcp_admin_addr(), ACCESS_KEY, SECRET_KEY);
        (d, http)
    }

    /// Where the TCP admin listener is (from the log: it may have been
    /// asked for port 0).
    pub fn tcp_admin_addr(&self) -> SocketAddr {
        let find = |log: &str| -> Option<SocketAddr> {
            let line = log.lines().find(|l| l.contains("admin endpoint on TCP"))?;
            line.split("addr=").nth(1)?.split_whitespace().next()?.parse().ok()
        };
        wait_until("the TCP admin listener", || find(&self.log()).is_some());
        find(&self.log()).unwrap()
    }
}

/// An answer over TCP: status, head and body.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// The first value of header `name` (compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A keep-alive HTTP/1.1 client of the TCP admin listener, talking as
/// curl or a Rancher client library does: basic auth on every request,
/// absolute URLs (links are followed as given, and each must lead back
/// to the listener), and every answer checked against the spec.
pub struct Http {
    addr: SocketAddr,
    authorization: String,
    conn: Option<std::io::BufReader<TcpStream>>,
}

impl Http {
    pub fn new(addr: SocketAddr, access_key: &str, secret_key: &str) -> Http {
        use base64::Engine;
        let pair = format!("{access_key}:{secret_key}");
        let authorization =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
        Http { addr, authorization, conn: None }
    }

    /// What every link of this listener starts with.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends one request to the absolute `url` with `headers` and `body`
    /// (a Content-Length when there is a body or the method takes one, as
    /// curl does); returns the answer unchecked.
    pub fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let base = self.base();
        let target = url.strip_prefix(&base).unwrap_or_else(|| panic!("{url} is not on {base}"));
        let target = if target.is_empty() { "/" } else { target };
        assert!(target.starts_with('/'), "{url} is not on {base}");
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\
             User-Agent: ballast-e2e\r\nAccept: */*\r\n",
            self.addr, self.authorization
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        // A kept-alive connection that the server closed meanwhile ends
        // before any answer: then once more, on a new connection.
        for _ in 0..2 {
            let reused = self.conn.is_some();
            let conn = self.conn.get_or_insert_with(|| {
                let s = TcpStream::connect(self.addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                std::io::BufReader::new(s)
            });
            let answer = conn.get_mut().write_all(&request).ok().and_then(|()| read_response(conn));
            let Some((status, head, body)) = answer else {
                self.conn = None;
                assert!(reused, "{method} {url}: the connection closed without an answer");
                continue;
            };
            let answer = Answer { status, head, body: String::from_utf8(body).unwrap() };
            if answer.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
                self.conn = None;
            }
            return answer;
        }
        panic!("{method} {url}: no answer on a new connection either");
    }

    /// Checks an answer against the spec: JSON, `X-API-Schemas` naming
    /// this listener's schemas, and on a failure an error resource with
    /// `type`, `status`, `code`, `message` and `detail`. Returns the body.
    pub fn spec_body(&self, what: &str, a: &Answer) -> Value {
        let schemas = format!("{}/v1/schemas", self.base());
        assert_eq!(a.header("x-api-schemas"), Some(schemas.as_str()), "{what}: {}", a.head);
        let json = a.header("content-type").is_some_and(|t| t.starts_with("application/json"));
        assert!(json, "{what}: not JSON: {}", a.head);
        let v: Value = serde_json::from_str(&a.body)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", a.body));
        if a.status >= 400 {
            assert_eq!(
                (v["type"].as_str(), v["status"].as_u64()),
                (Some("error"), Some(a.status.into())),
                "{what}: {v}"
            );
            for key in ["code", "message"] {
                assert!(v[key].as_str().is_some_and(|s| !s.is_empty()), "{what}: no {key}: {v}");
            }
            assert!(v["detail"].is_string(), "{what}: no detail: {v}");
        }
        v
    }

    /// A request with a JSON body (or none), its answer checked by
    /// [`Http::spec_body`]: the status and the body.
    pub fn call(&mut self, method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let json = [("Content-Type", "application/json")];
        let headers: &[(&str, &str)] = if body.is_empty() { &[] } else { &json };
        let a = self.send(method, url, headers, body.as_bytes());
        let v = self.spec_body(&format!("{method} {url}"), &a);
        (a.status, v)
    }

    /// A call that must answer `status`; the body.
    pub fn ok(&mut self, method: &str, url: &str, body: Option<&Value>, status: u16) -> Value {
        let (got, v) = self.call(method, url, body);
        assert_eq!(got, status, "{method} {url}: {v}");
        v
    }

    pub fn get(&mut self, url: &str) -> Value {
        self.ok("GET", url, None, 200)
    }

    /// Polls the resource at `url` until it is no longer transitioning;
    /// returns it.
    pub fn settle(&mut self, url: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.get(url);
            if v["transitioning"] != "yes" {
                return v;
            }
            assert!(Instant::now() < deadline, "{url} still transitioning: {v}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
