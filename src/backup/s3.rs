//! rustic's backend traits over opendal's S3 service.
//!
//! A target `s3://bucket/prefix` keeps the repository under `prefix/` in
//! `bucket` (`config`, `keys/ID`, `data/ID[..2]/ID`, …). With an
//! `endpoint` (an S3-compatible server) requests use path-style
//! addressing; without one they go to AWS, virtual-hosted style.
//!
//! rustic's traits are synchronous and are called from many threads at
//! once (the core's blocking threads, rustic's own worker threads). Each
//! call is spawned onto one small runtime owned by this module and waited
//! for on a plain channel, so a call works from any thread: a tokio
//! `spawn_blocking` thread, a thread of another runtime's pool, or a
//! plain thread (inside an async task it works too, but holds that worker
//! until the store answers).
//!
//! Credentials never appear in messages: every error text is scrubbed of
//! the access key, secret key and session token before it leaves.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use opendal::layers::RetryLayer;
use opendal::options::{ListOptions, ReadOptions};
use opendal::services::S3;
use opendal::{HttpTransporter, OperationContext, Operator};
use opendal_http_transport_reqwest::ReqwestTransport;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

use super::{Error, Result};
use crate::config::BackupTarget;

/// How requests give up and retry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tuning {
    /// How long a TCP (and TLS) connection may take to open.
    pub connect_timeout: Duration,
    /// How long the store may stay silent while we wait for its answer.
    pub read_timeout: Duration,
    /// Retries of a request that failed in a way that may pass (a refused
    /// or dropped connection, a timeout, a 5xx or a 429), with backoff
    /// doubling from `min_delay` up to `max_delay`, jittered.
    pub retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Tuning {
    /// An unreachable store (refused, or dropping packets) fails a request
    /// after at most 5 × 4 s + 7.5 s of backoff; one that accepts but
    /// never answers after 5 × 15 s + 7.5 s.
    pub const DEFAULT: Tuning = Tuning {
        connect_timeout: Duration::from_secs(4),
        read_timeout: Duration::from_secs(15),
        retries: 4,
        min_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(8),
    };
}

/// The repository backend of an `s3://` target. Makes no request: a store
/// that cannot be reached fails the first operation.
pub(super) fn backend(target: &BackupTarget) -> Result<Arc<dyn WriteBackend>> {
    let env = |name: &str| std::env::var(name).ok();
    Ok(Arc::new(S3Backend::new(target, &env, &Tuning::DEFAULT)?))
}

/// Reads an environment variable (a stand-in in tests).
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Where an `s3://bucket/prefix` url points.
#[derive(Debug, PartialEq, Eq)]
struct Location {
    bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's root.
    prefix: String,
}

fn parse_url(url: &str) -> Option<Location> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    let prefix: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    Some(Location { bucket: bucket.to_string(), prefix: prefix.join("/") })
}

struct Credentials {
    access_key: String,
    secret_key: String,
    session_token: Option<String>,
}

/// The daemon's environment variables that hold S3 credentials for a
/// target without its own (the configuration reference names them).
pub(crate) const ACCESS_KEY_VAR: &str = "AWS_ACCESS_KEY_ID";
pub(crate) const SECRET_KEY_VAR: &str = "AWS_SECRET_ACCESS_KEY";

/// The region requests are signed for when the target names none.
pub(crate) const DEFAULT_REGION: &str = "us-east-1";

/// Where a target without an `endpoint` is: AWS's own S3 in `region`.
pub(crate) fn aws_endpoint(region: &str) -> String {
    format!("https://s3.{region}.amazonaws.com")
}

/// The target's keys, else the standard AWS environment variables.
fn credentials(target: &BackupTarget, env: Env<'_>) -> Option<Credentials> {
    if let (Some(access_key), Some(secret_key)) = (&target.access_key, &target.secret_key) {
        return Some(Credentials {
            access_key: access_key.clone(),
            secret_key: secret_key.clone(),
            session_token: None,
        });
    }
    let var = |name| env(name).filter(|v| !v.is_empty());
    Some(Credentials {
        access_key: var(ACCESS_KEY_VAR)?,
        secret_key: var(SECRET_KEY_VAR)?,
        session_token: var("AWS_SESSION_TOKEN"),
    })
}

/// The runtime every S3 request runs on: process-wide, so that no
/// backend owns a runtime it might drop inside another's async context.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ballast-s3")
            .enable_all()
            .build()
            .expect("cannot start the S3 client's runtime")
    })
}

/// Runs `fut` on the S3 runtime and waits for it from this thread.
fn run<T: Send + 'static>(
    fut: impl Future<Output = opendal::Result<T>> + Send + 'static,
) -> opendal::Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(opendal::Error::new(opendal::ErrorKind::Unexpected, "the S3 request's task panicked"))
    })
}

fn http_client(tuning: &Tuning) -> std::result::Result<reqwest::Client, String> {
    // reqwest is built without a TLS provider of its own (aws-lc takes
    // long to build); ring is the one. Fails only if another is in place.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(tuning.connect_timeout)
        .read_timeout(tuning.read_timeout)
        .pool_idle_timeout(Duration::from_secs(50))
        .tcp_keepalive(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

pub(super) struct S3Backend {
    op: Operator,
    /// `s3:ENDPOINT/BUCKET/PREFIX`, for rustic.
    location: String,
    /// `S3 store ENDPOINT, bucket `B``: what messages start with.
    store: String,
    /// The prefix with a trailing `/`, or empty.
    prefix: String,
    /// What every message is scrubbed of.
    secrets: Vec<String>,
}

impl S3Backend {
    pub(super) fn new(target: &BackupTarget, env: Env<'_>, tuning: &Tuning) -> Result<S3Backend> {
        let at = format!("backup target {:?}", target.name);
        let loc = parse_url(&target.url).ok_or_else(|| {
            Error::Failed(format!("{at}: {:?} is not s3://bucket/prefix", target.url))
        })?;
        let creds = credentials(target, env).ok_or_else(|| {
            Error::Unavailable(format!(
                "{at}: no S3 credentials: set access_key and secret_key in the target, \
                 or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in ballast's environment"
            ))
        })?;
        let region = target.region.as_deref().filter(|r| !r.is_empty()).unwrap_or(DEFAULT_REGION);

        let mut builder = S3::default()
            .bucket(&loc.bucket)
            .root(&format!("/{}", loc.prefix))
            .region(region)
            .access_key_id(&creds.access_key)
            .secret_access_key(&creds.secret_key)
            // Nothing from ~/.aws or the environment beyond the keys
            // above, and never the instance metadata service.
            .disable_config_load()
            .disable_ec2_metadata();
        if let Some(token) = &creds.session_token {
            builder = builder.session_token(token);
        }
        let endpoint = match target.endpoint.as_deref().map(|e| e.trim_end_matches('/')) {
            Some(e) if e.starts_with("http://") || e.starts_with("https://") => {
                // S3-compatible servers (on loopback above all) serve
                // path-style requests, the opendal default.
                builder = builder.endpoint(e);
                e.to_string()
            }
            Some(e) => {
                return Err(Error::Failed(format!(
                    "{at}: endpoint {e:?} is not http://host[:port] or https://host[:port]"
                )));
            }
            None => {
                if !loc.bucket.contains('.') {
                    builder = builder.enable_virtual_host_style();
                }
                aws_endpoint(region)
            }
        };

        let mut secrets = vec![creds.access_key.clone(), creds.secret_key.clone()];
        secrets.extend(creds.session_token.clone());
        let secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        let scrub = |msg: String| redact(msg, &secrets);

        let client = http_client(tuning).map_err(|e| Error::Failed(format!("{at}: {e}")))?;
        let transport = HttpTransporter::new(ReqwestTransport::new(client));
        let op = Operator::new(builder)
            .map_err(|e| Error::Failed(scrub(format!("{at}: invalid S3 settings: {e}"))))?
            .with_context(OperationContext::new().with_http_transport(transport))
            .layer(
                RetryLayer::new()
                    .with_max_times(tuning.retries)
                    .with_min_delay(tuning.min_delay)
                    .with_max_delay(tuning.max_delay)
                    .with_factor(2.0)
                    .with_jitter(),
            );
        let location = match loc.prefix.as_str() {
            "" => format!("s3:{endpoint}/{}", loc.bucket),
            p => format!("s3:{endpoint}/{}/{p}", loc.bucket),
        };
        let prefix = match loc.prefix.as_str() {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let store = format!("S3 store {endpoint}, bucket `{}`", loc.bucket);
        Ok(S3Backend { op, location, store, prefix, secrets })
    }

    /// The object's key below the prefix.
    fn path(tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        match tpe {
            FileType::Config => "config".to_string(),
            FileType::Pack => format!("data/{}/{}", &hex[..2], &*hex),
            _ => format!("{}/{}", tpe.dirname(), &*hex),
        }
    }

    /// A rustic error for a failed `what` (`reading `keys/…``), naming the
    /// store and every cause; never holds a credential.
    fn error(&self, what: &str, err: &opendal::Error) -> Box<RusticError> {
        let mut why = match err.kind() {
            opendal::ErrorKind::PermissionDenied => "access denied (check the credentials): ",
            opendal::ErrorKind::NotFound => "not found: ",
            _ => "",
        }
        .to_string();
        why.push_str(&err.to_string());
        // opendal shows the first cause; the one that tells (a refused
        // connection, a timeout) is often further down.
        let mut cause = std::error::Error::source(err);
        while let Some(c) = cause {
            let text = c.to_string();
            if !why.contains(&text) {
                why = format!("{why}: {text}");
            }
            cause = c.source();
        }
        let msg = format!("{}: {what} failed: {why}", self.store);
        RusticError::new(ErrorKind::Backend, redact(msg, &self.secrets))
    }

    fn list_files(&self, dir: &str) -> opendal::Result<Vec<opendal::Entry>> {
        let op = self.op.clone();
        let dir = dir.to_string();
        let opts = ListOptions { recursive: true, ..Default::default() };
        run(async move { op.list_options(&dir, opts).await })
    }
}

/// `msg` with every secret replaced by `***`.
fn redact(mut msg: String, secrets: &[String]) -> String {
    for s in secrets {
        if msg.contains(s.as_str()) {
            msg = msg.replace(s.as_str(), "***");
        }
    }
    msg
}

impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            let op = self.op.clone();
            return match run(async move { op.stat("config").await }) {
                Ok(meta) => {
                    let size = u32::try_from(meta.content_length()).unwrap_or(u32::MAX);
                    Ok(vec![(Id::default(), size)])
                }
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(self.error(&format!("reading `{}config`", self.prefix), &e)),
            };
        }
        let dir = format!("{}/", tpe.dirname());
        let entries = self
            .list_files(&dir)
            .map_err(|e| self.error(&format!("listing `{}{dir}`", self.prefix), &e))?;
        let mut found = Vec::with_capacity(entries.len());
        for entry in entries {
            let meta = entry.metadata();
            if !meta.is_file() {
                continue;
            }
            let Some(id) = Id::parse_some(entry.name(), tpe) else { continue };
            let size = u32::try_from(meta.content_length()).map_err(|_| {
                RusticError::new(
                    ErrorKind::Backend,
                    format!(
                        "{}: `{}{}` is larger than 4 GiB, which no repository file is",
                        self.store,
                        self.prefix,
                        entry.path()
                    ),
                )
            })?;
            found.push((id, size));
        }
        Ok(found)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let path = Self::path(tpe, id);
        let op = self.op.clone();
        let key = path.clone();
        run(async move { op.read(&key).await })
            .map(|buf| buf.to_bytes())
            .map_err(|e| self.error(&format!("reading `{}{path}`", self.prefix), &e))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let path = Self::path(tpe, id);
        let op = self.op.clone();
        let key = path.clone();
        let range = u64::from(offset)..u64::from(offset) + u64::from(length);
        let opts = ReadOptions { range: range.into(), ..Default::default() };
        run(async move { op.read_options(&key, opts).await }).map(|buf| buf.to_bytes()).map_err(
            |e| {
                self.error(
                    &format!("reading {length} bytes at {offset} of `{}{path}`", self.prefix),
                    &e,
                )
            },
        )
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        format!("{}{}", self.prefix, Self::path(tpe, id))
    }
}

impl WriteBackend for S3Backend {
    /// S3 has no directories to make; checks that the bucket is there and
    /// the credentials let us list it, so that `init` fails early and
    /// clearly.
    fn create(&self) -> RusticResult<()> {
        let op = self.op.clone();
        let opts = ListOptions { limit: Some(1), ..Default::default() };
        run(async move { op.list_options("", opts).await })
            .map(|_| ())
            .map_err(|e| self.error("listing the bucket", &e))
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let path = Self::path(tpe, id);
        let op = self.op.clone();
        let key = path.clone();
        let buf = opendal::Buffer::from(content.into_vec());
        run(async move { op.write(&key, buf).await })
            .map(|_| ())
            .map_err(|e| self.error(&format!("writing `{}{path}`", self.prefix), &e))
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let path = Self::path(tpe, id);
        let op = self.op.clone();
        let key = path.clone();
        run(async move { op.delete(&key).await })
            .map_err(|e| self.error(&format!("removing `{}{path}`", self.prefix), &e))
    }
}
