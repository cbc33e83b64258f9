//! Plugin-protocol calls over a Unix socket, as Docker makes them.

#[allow(unused_imports)]
use super::*;

/// Docker's plugin client (no Content-Type).
pub struct Conn {
    stream: std::io::BufReader<UnixStream>,
}

impl Conn {
    pub fn new(socket: &Path) -> Conn {
        let s = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("connecting {}: {e}", socket.display()));
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Conn { stream: std::io::BufReader::new(s) }
    }

    /// Sends one request and reads one response: status, headers, body.
    pub fn request(&mut self, verb: &str, path: &str, body: &str) -> (u16, String, String) {
        write!(
            self.stream.get_mut(),
            "{verb} {path} HTTP/1.1\r\nHost: plugin\r\nUser-Agent: Go-http-client/1.1\r\n\
             Content-Length: {}\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let (status, head, body) =
            read_response(&mut self.stream).expect("connection closed mid-response");
        (status, head, String::from_utf8(body).unwrap())
    }

    /// A plugin-protocol call; checks the media type and parses the body.
    pub fn call(&mut self, method: &str, body: &str) -> (u16, Value) {
        let (status, head, body) = self.request("POST", &format!("/{method}"), body);
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/vnd.docker.plugins.v1.2+json"),
            "{method}: missing plugin media type in {head}"
        );
        (
            status,
            serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{method}: body is not JSON ({e}): {body}")),
        )
    }
}

/// One plugin-protocol call on a fresh connection.
pub fn call(socket: &Path, method: &str, body: &str) -> (u16, Value) {
    Conn::new(socket).call(method, body)
}

/// Reads one HTTP/1.1 response that has a Content-Length: status, head
/// and body; `None` when the connection ends before the response begins.
pub(super) fn read_response(r: &mut impl BufRead) -> Option<(u16, String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            assert!(head.is_empty(), "connection closed mid-response: {head}");
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a Content-Length");
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    Some((status, head, body))
}
