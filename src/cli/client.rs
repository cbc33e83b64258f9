//! The CLI's HTTP client for the admin endpoint: the Unix socket by
//! default (hyperlocal), or `http://host:port` with basic auth.

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use hyperlocal::{UnixClientExt, UnixConnector};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// Where the daemon is, and how to reach it.
pub enum Client {
    Unix { socket: String, http: HttpClient<UnixConnector, Full<Bytes>> },
    Tcp { base: String, auth: Option<String>, http: HttpClient<HttpConnector, Full<Bytes>> },
}

impl Client {
    /// `unix:///path` or `http://host:port`; credentials for TCP come from
    /// `BALLAST_ACCESS_KEY` and `BALLAST_SECRET_KEY`.
    pub fn new(admin: &str) -> Result<Client, String> {
        if let Some(path) = admin.strip_prefix("unix://") {
            return Ok(Client::Unix { socket: path.to_string(), http: HttpClient::unix() });
        }
        if admin.starts_with("http://") {
            let auth =
                match (std::env::var("BALLAST_ACCESS_KEY"), std::env::var("BALLAST_SECRET_KEY")) {
                    (Ok(a), Ok(s)) => Some(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!("{a}:{s}"))
                    )),
                    _ => None,
                };
            let http = HttpClient::builder(TokioExecutor::new()).build_http();
            return Ok(Client::Tcp { base: admin.trim_end_matches('/').to_string(), auth, http });
        }
        Err(format!("--admin {admin:?}: expected unix:///path/to/admin.sock or http://host:port"))
    }

    /// A whole collection, every page of it (following
    /// `pagination.next`), as one collection.
    pub async fn list(&self, path: &str) -> Result<Value, String> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut all = self.call(Method::GET, &format!("{path}{sep}limit=1000"), None).await?;
        let mut next = all["pagination"]["next"].as_str().map(str::to_string);
        while let Some(url) = next.take() {
            // Links are absolute; the request goes to the same daemon.
            let pq = url.splitn(4, '/').nth(3).map(|rest| format!("/{rest}")).unwrap_or_default();
            let page = self.call(Method::GET, &pq, None).await?;
            let rows = page["data"].as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                break;
            }
            if let Some(data) = all["data"].as_array_mut() {
                data.extend(rows);
            }
            next = page["pagination"]["next"].as_str().map(str::to_string);
        }
        Ok(all)
    }

    /// One request; returns the JSON body of a 2xx answer, or the error
    /// message of any other.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let builder = Request::builder().method(method).header("content-type", "application/json");
        let result = match self {
            Client::Unix { socket, http } => {
                let uri: hyper::Uri = hyperlocal::Uri::new(socket, path).into();
                let req = builder
                    .uri(uri)
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|e| e.to_string())?;
                http.request(req).await.map_err(|e| unreachable(&format!("unix://{socket}"), &e))
            }
            Client::Tcp { base, auth, http } => {
                let mut builder = builder.uri(format!("{base}{path}"));
                if let Some(auth) = auth {
                    builder = builder.header("authorization", auth);
                }
                let req = builder.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
                http.request(req).await.map_err(|e| unreachable(base, &e))
            }
        };
        let resp = result?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
            format!("unexpected answer ({status}): {}", String::from_utf8_lossy(&bytes))
        })?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(value["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{status}: {value}")))
        }
    }
}

/// Why the daemon could not be reached, and what to do about it.
fn unreachable(admin: &str, e: &(dyn std::error::Error + 'static)) -> String {
    let mut source = Some(e);
    let mut io = None;
    while let Some(err) = source {
        if let Some(found) = err.downcast_ref::<std::io::Error>() {
            io = Some(found.kind());
        }
        source = err.source();
    }
    let start = "start the daemon with `ballast serve` (or `systemctl start ballast`), or point \
                 --admin / BALLAST_ADMIN at the one that runs";
    match io {
        Some(std::io::ErrorKind::NotFound) => {
            format!("no ballast daemon at {admin}: the socket does not exist; {start}")
        }
        Some(std::io::ErrorKind::ConnectionRefused) => {
            format!("nothing answers at {admin}: the daemon is not running; {start}")
        }
        Some(std::io::ErrorKind::PermissionDenied) => format!(
            "not allowed to use {admin}: run as root, or as a member of the group named by \
             [admin] socket_group in the daemon's config"
        ),
        _ => format!("cannot reach ballast at {admin}: {e}"),
    }
}

/// A path segment made safe for a URL.
pub fn seg(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}
