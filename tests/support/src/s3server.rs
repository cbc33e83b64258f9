//! A real S3 server for tests: `s3s-fs` (crates.io), which serves each
//! directory of its root as a bucket and checks AWS signatures.
//!
//! The binary is `$BALLAST_TEST_S3FS` (scripts/test installs it into
//! cargo's bin directory and sets it), else `s3s-fs` in `$CARGO_HOME/bin`
//! or `~/.cargo/bin`. When there is none the test prints SKIPPED, or
//! fails under CI=true.
//!
//! It runs as
//! `RUST_LOG=s3s_fs=info s3s-fs --host 127.0.0.1 --port 0
//! --access-key KEY --secret-key SECRET ROOT`, which binds a free port
//! and logs `server is running at http://127.0.0.1:PORT`; the log goes to
//! a file beside ROOT, read until that line appears.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The keys the server accepts.
pub const ACCESS_KEY: &str = "ballast-test-access";
pub const SECRET_KEY: &str = "ballast-test-secret-3f9a1c";

/// How long the server may take to start on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running s3s-fs, killed on drop.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    root: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BALLAST_TEST_S3FS").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "BALLAST_TEST_S3FS={} is not a file", path.display());
        return Some(path);
    }
    let cargo_home = std::env::var_os("CARGO_HOME").map(PathBuf::from);
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo"));
    [cargo_home, home].into_iter().flatten().map(|d| d.join("bin/s3s-fs")).find(|p| p.is_file())
}

impl S3Server {
    /// Starts a server with an empty root, or returns `None` after printing
    /// SKIPPED when there is no s3s-fs binary (a failure under CI=true).
    pub fn start() -> Option<S3Server> {
        let Some(bin) = binary() else {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "CI=true and no s3s-fs: set BALLAST_TEST_S3FS (scripts/test does)");
            eprintln!("SKIPPED: no s3s-fs (run scripts/test, or set BALLAST_TEST_S3FS)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let log = dir.path().join("s3s-fs.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&root)
            .env("RUST_LOG", "s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut server = S3Server { child, endpoint: String::new(), root, log, _dir: dir };
        server.endpoint = server.wait_ready();
        Some(server)
    }

    /// Reads the log until the server says where it listens.
    fn wait_ready(&mut self) -> String {
        const MARK: &str = "server is running at ";
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(at) = text.find(MARK) {
                let url: String =
                    text[at + MARK.len()..].chars().take_while(|c| !c.is_whitespace()).collect();
                let addr = url.trim_start_matches("http://");
                if std::net::TcpStream::connect(addr).is_ok() {
                    return url;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("s3s-fs exited ({status}) before serving:\n{text}");
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "s3s-fs did not start within {START_TIMEOUT:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes bucket `name` (a directory of the root); returns its directory.
    pub fn bucket(&self, name: &str) -> PathBuf {
        let path = self.root.join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// The directory the server serves, one subdirectory per bucket.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
