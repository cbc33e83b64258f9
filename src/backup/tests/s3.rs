//! The S3 backend against a real S3 server (s3s-fs): rustic's backend
//! calls, credentials, an unreachable store, and a rustic repository's
//! init, backup and restore through it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rustic_core::{
    BackupOptions, ConfigOptions, Credentials, FileType, Id, KeyOptions, LocalDestination,
    LsOptions, PathList, ReadBackend, Repository, RepositoryBackends, RepositoryOptions,
    RestoreOptions, SnapshotOptions, WriteBackend, repofile::SnapshotFile,
};

use super::super::Error;
use super::super::s3::{S3Backend, Tuning, backend};
use crate::config::BackupTarget;
use ballast_test_support::s3server::{ACCESS_KEY, S3Server, SECRET_KEY};

fn target(url: &str, endpoint: &str) -> BackupTarget {
    BackupTarget {
        name: "s3test".into(),
        url: url.into(),
        endpoint: Some(endpoint.into()),
        region: None,
        access_key: Some(ACCESS_KEY.into()),
        secret_key: Some(SECRET_KEY.into()),
        password_file: None,
        keep_last: None,
        keep_daily: None,
        keep_weekly: None,
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn id(byte: u8) -> Id {
    format!("{byte:02x}{}", "ab".repeat(31)).parse().unwrap()
}

/// Every rustic backend call, then where the objects are on the server.
fn round_trip(server: &S3Server, url: &str, dir_in_bucket: &Path) {
    let be = backend(&target(url, &server.endpoint)).unwrap();
    be.create().unwrap();
    assert!(be.list_with_size(FileType::Config).unwrap().is_empty());
    assert!(be.list(FileType::Key).unwrap().is_empty());

    let pack: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    be.write_bytes(FileType::Config, &Id::default(), false, b"config!".to_vec().into()).unwrap();
    be.write_bytes(FileType::Key, &id(1), false, b"key one".to_vec().into()).unwrap();
    be.write_bytes(FileType::Pack, &id(2), false, pack.clone().into()).unwrap();
    let mut two_parts = rustic_core::BytesList::default();
    two_parts.add(bytes::Bytes::from_static(b"index, "));
    two_parts.add(bytes::Bytes::from_static(b"in two parts"));
    be.write_bytes(FileType::Index, &id(3), true, two_parts).unwrap();

    assert_eq!(be.list_with_size(FileType::Config).unwrap(), vec![(Id::default(), 7)]);
    assert_eq!(be.list_with_size(FileType::Key).unwrap(), vec![(id(1), 7)]);
    assert_eq!(be.list_with_size(FileType::Pack).unwrap(), vec![(id(2), 100_000)]);
    assert_eq!(be.list_with_size(FileType::Index).unwrap(), vec![(id(3), 19)]);
    assert!(be.list(FileType::Snapshot).unwrap().is_empty());

    assert_eq!(&be.read_full(FileType::Config, &Id::default()).unwrap()[..], b"config!");
    assert_eq!(&be.read_full(FileType::Index, &id(3)).unwrap()[..], b"index, in two parts");
    assert_eq!(be.read_full(FileType::Pack, &id(2)).unwrap(), pack);
    let part = be.read_partial(FileType::Pack, &id(2), false, 70_000, 1234).unwrap();
    assert_eq!(&part[..], &pack[70_000..71_234]);
    let err = be.read_full(FileType::Key, &id(9)).unwrap_err().display_log();
    assert!(err.contains("not found") && err.contains(&server.endpoint), "{err}");

    // The layout restic expects, under the prefix.
    let hex2 = id(2).to_hex();
    assert!(dir_in_bucket.join("config").is_file());
    assert!(dir_in_bucket.join("keys").join(&*id(1).to_hex()).is_file());
    assert!(dir_in_bucket.join("data").join(&hex2[..2]).join(&*hex2).is_file());

    be.remove(FileType::Pack, &id(2), false).unwrap();
    be.remove(FileType::Key, &id(1), false).unwrap();
    assert!(be.list(FileType::Pack).unwrap().is_empty());
    assert!(be.list(FileType::Key).unwrap().is_empty());
    assert_eq!(be.list(FileType::Index).unwrap(), vec![id(3)]);
}

#[test]
fn backend_round_trip_without_prefix() {
    let Some(server) = S3Server::start() else { return };
    let bucket = server.bucket("plain");
    round_trip(&server, "s3://plain", &bucket);
}

#[test]
fn backend_round_trip_with_prefix() {
    let Some(server) = S3Server::start() else { return };
    let bucket = server.bucket("deep");
    round_trip(&server, "s3://deep/some/prefix/", &bucket.join("some/prefix"));
    assert_eq!(std::fs::read_dir(&bucket).unwrap().count(), 1, "only some/ in the bucket");
}

#[test]
fn credentials_from_the_environment() {
    let Some(server) = S3Server::start() else { return };
    server.bucket("env");
    let t = BackupTarget { access_key: None, secret_key: None, ..target("s3://env/p", "") };
    let t = BackupTarget { endpoint: Some(server.endpoint.clone()), ..t };
    let env = |name: &str| match name {
        "AWS_ACCESS_KEY_ID" => Some(ACCESS_KEY.to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some(SECRET_KEY.to_string()),
        _ => None,
    };
    let be = S3Backend::new(&t, &env, &Tuning::DEFAULT).unwrap();
    be.write_bytes(FileType::Key, &id(5), false, b"k".to_vec().into()).unwrap();
    assert_eq!(be.list(FileType::Key).unwrap(), vec![id(5)]);
}

#[test]
fn missing_credentials_are_refused() {
    let t = BackupTarget {
        access_key: None,
        secret_key: None,
        ..target("s3://b/p", "http://127.0.0.1:9")
    };
    let half = |name: &str| (name == "AWS_ACCESS_KEY_ID").then(|| "AKIA".to_string());
    for env in [&no_env as &dyn Fn(&str) -> Option<String>, &half] {
        let Err(Error::Unavailable(msg)) = S3Backend::new(&t, env, &Tuning::DEFAULT) else {
            panic!("no credentials were accepted")
        };
        assert!(msg.contains("no S3 credentials") && msg.contains("AWS_ACCESS_KEY_ID"), "{msg}");
        assert!(msg.contains("s3test"), "names the target: {msg}");
    }
}

#[test]
fn wrong_credentials_fail_clearly_without_showing_them() {
    let Some(server) = S3Server::start() else { return };
    server.bucket("locked");
    let wrong_secret = "not-the-secret-7d2e";
    for (ak, sk) in [(ACCESS_KEY, wrong_secret), ("unknown-access-key-1e8", SECRET_KEY)] {
        let t = BackupTarget {
            access_key: Some(ak.into()),
            secret_key: Some(sk.into()),
            ..target("s3://locked/repo", &server.endpoint)
        };
        let be = backend(&t).unwrap();
        let started = Instant::now();
        for err in [
            be.create().unwrap_err(),
            be.list_with_size(FileType::Config).unwrap_err(),
            be.write_bytes(FileType::Key, &id(1), false, b"x".to_vec().into()).unwrap_err(),
        ] {
            let msg = format!("{err}\n{}", err.display_log());
            assert!(msg.contains(&server.endpoint), "names the store: {msg}");
            assert!(msg.contains("403") || msg.contains("denied"), "says why: {msg}");
            for secret in [ak, sk] {
                assert!(!msg.contains(secret), "shows a credential: {msg}");
            }
        }
        // A refusal is no transient error: no retries.
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
}

#[test]
fn a_missing_bucket_fails_init_clearly() {
    let Some(server) = S3Server::start() else { return };
    let be = backend(&target("s3://nowhere/repo", &server.endpoint)).unwrap();
    let started = Instant::now();
    let err = be.create().unwrap_err().display_log();
    assert!(err.contains("bucket `nowhere`") && err.contains("NoSuchBucket"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn unreachable_store_fails_in_bounded_time() {
    // A port nothing listens on: connections are refused at once, and
    // every request is retried with backoff before giving up.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let be = backend(&target("s3://gone/p", &endpoint)).unwrap();
    let started = Instant::now();
    let err = be.list_with_size(FileType::Config).unwrap_err().display_log();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(err.contains(&endpoint), "names the endpoint: {err}");
    assert!(err.contains("Connection refused"), "says why: {err}");
    assert!(!err.contains(SECRET_KEY) && !err.contains(ACCESS_KEY), "{err}");
}

#[test]
fn silent_store_times_out() {
    // Accepts connections and never answers; held open until the test ends.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    let tuning = Tuning {
        read_timeout: Duration::from_secs(1),
        retries: 2,
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(200),
        ..Tuning::DEFAULT
    };
    let be = S3Backend::new(&target("s3://mute/p", &endpoint), &no_env, &tuning).unwrap();
    let started = Instant::now();
    let err = be.read_full(FileType::Key, &id(1)).unwrap_err().display_log();
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(10), "took {took:?}");
    assert!(err.contains(&endpoint) && err.contains("timed out"), "{err}");
}

#[test]
fn bad_urls_and_endpoints_are_refused() {
    let Err(Error::Failed(msg)) =
        S3Backend::new(&target("s3:///p", "http://x"), &no_env, &Tuning::DEFAULT)
    else {
        panic!("an url with no bucket was accepted")
    };
    assert!(msg.contains("s3://bucket/prefix"), "{msg}");
    let Err(Error::Failed(msg)) =
        S3Backend::new(&target("s3://b", "ftp://x"), &no_env, &Tuning::DEFAULT)
    else {
        panic!("an ftp endpoint was accepted")
    };
    assert!(msg.contains("http://host"), "{msg}");
}

fn write_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("hello.txt"), "hello, world\n").unwrap();
    std::fs::write(root.join("empty"), "").unwrap();
    let big: Vec<u8> =
        (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0]).collect();
    std::fs::write(root.join("sub/big.bin"), &big).unwrap();
    std::fs::write(root.join("sub/deeper/note"), "deep").unwrap();
    std::os::unix::fs::symlink("../hello.txt", root.join("sub/link")).unwrap();
}

/// Relative path → file content, symlink target (`-> …`) or `dir`.
fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_symlink() {
                let to = std::fs::read_link(&path).unwrap();
                out.insert(rel, format!("-> {}", to.display()).into_bytes());
            } else if meta.is_dir() {
                out.insert(rel, b"dir".to_vec());
                walk(root, &path, out);
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A rustic repository on the server: init, back up a tree, open it
/// again, restore the backup and compare.
fn rustic_round_trip(endpoint: String, dir: &Path) {
    type Res<T> = Result<T, Box<dyn std::error::Error>>;
    let password = Credentials::password("correct horse battery staple");
    let src = dir.join("src");
    write_tree(&src);
    let open = || -> Res<Repository<()>> {
        let be = backend(&target("s3://repos/vol1", &endpoint))?;
        let backends = RepositoryBackends::new(be, None);
        Ok(Repository::new(&RepositoryOptions::default().no_cache(true), &backends)?)
    };

    let repo = open()
        .unwrap()
        .init(&password, &KeyOptions::default(), &ConfigOptions::default())
        .unwrap()
        .to_indexed_ids()
        .unwrap();
    let sources = PathList::from_string(src.to_str().unwrap()).unwrap().sanitize().unwrap();
    let snap = SnapshotFile::from_options(&SnapshotOptions::default()).unwrap();
    let snap = repo.backup(&BackupOptions::default(), &sources, snap).unwrap();
    let summary = snap.summary.as_ref().unwrap();
    assert!(summary.files_new >= 4 && summary.data_added > 3_000_000, "{summary:?}");

    let wrong = open().unwrap().open(&Credentials::password("wrong"));
    assert!(wrong.is_err(), "a wrong password opened the repository");

    let repo = open().unwrap().open(&password).unwrap().to_indexed().unwrap();
    let src_in_snap = format!("{}:{}", snap.id, src.canonicalize().unwrap().display());
    let node = repo.node_from_snapshot_path(&src_in_snap, |_| true).unwrap();
    let ls = repo.ls(&node, &LsOptions::default()).unwrap();
    let dest_dir = dir.join("restored");
    let dest = LocalDestination::new(dest_dir.to_str().unwrap(), true, !node.is_dir()).unwrap();
    let opts = RestoreOptions::default();
    let plan = repo.prepare_restore(&opts, ls.clone(), &dest, false).unwrap();
    repo.restore(plan, &opts, ls, &dest).unwrap();

    assert_eq!(read_tree(&dest_dir), read_tree(&src));
}

#[test]
fn rustic_repository_round_trip_from_a_plain_thread() {
    let Some(server) = S3Server::start() else { return };
    server.bucket("repos");
    let dir = tempfile::tempdir().unwrap();
    rustic_round_trip(server.endpoint.clone(), dir.path());
}

/// As the core calls it: from `spawn_blocking` inside a tokio runtime.
#[test]
fn rustic_repository_round_trip_from_spawn_blocking() {
    let Some(server) = S3Server::start() else { return };
    server.bucket("repos");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let endpoint = server.endpoint.clone();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    rt.unwrap()
        .block_on(async move {
            tokio::task::spawn_blocking(move || rustic_round_trip(endpoint, &path)).await
        })
        .unwrap();
}
