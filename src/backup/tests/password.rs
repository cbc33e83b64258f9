//! The repository password: given, generated, wrong; and two first uses
//! at once.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use super::super::{Error, Repository};
use super::{Fixture, backup, meta, quiet, target};

#[test]
fn a_wrong_password_is_unavailable_and_names_its_file() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    backup(&*fx.open(), &src, "v");

    let wrong = fx.path("wrong");
    fs::write(&wrong, "not it\n").unwrap();
    let t = target(&fx.path("repo"), Some(wrong.clone()));
    let repo = super::super::open(&t, &fx.path("state2")).unwrap();
    match repo.list() {
        Err(Error::Unavailable(m)) => {
            assert!(m.contains(&wrong.display().to_string()), "{m}");
            assert!(m.contains("does not open the repository"), "{m}");
            assert!(!m.contains("not it"), "the message shows the password: {m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_empty_password_file_is_refused_by_name() {
    let fx = Fixture::new();
    let empty = fx.path("empty");
    fs::write(&empty, "\n").unwrap();
    let t = target(&fx.path("repo"), Some(empty.clone()));
    match super::super::open(&t, &fx.path("state")) {
        Err(Error::Unavailable(m)) => assert!(m.contains(&empty.display().to_string()), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn without_a_password_file_a_key_is_generated_once() {
    let fx = Fixture::new();
    let t = target(&fx.path("repo"), None);
    let state = fx.path("state");
    let src = fx.mkdir("src");
    fs::write(src.join("x"), b"x").unwrap();
    let first = super::super::open(&t, &state).unwrap();
    backup(&*first, &src, "v");

    let key = state.join("backup-keys/nas.key");
    let text = fs::read_to_string(&key).unwrap();
    assert_eq!(text.trim_end().len(), 64, "{text:?}");
    assert!(text.trim_end().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);

    // Opened again, the same key opens the same repository.
    let again = super::super::open(&t, &state).unwrap();
    assert_eq!(again.list().unwrap().len(), 1);
    assert_eq!(fs::read_to_string(&key).unwrap(), text);

    // Another state directory generates another key, which does not open it.
    let stranger = super::super::open(&t, &fx.path("elsewhere")).unwrap();
    assert!(matches!(stranger.list(), Err(Error::Unavailable(_))));
}

#[test]
fn two_first_uses_at_once_make_one_repository() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    fs::write(src.join("x"), b"x").unwrap();
    let repo: Arc<dyn Repository> = fx.open();
    std::thread::scope(|s| {
        for v in ["a", "b", "c"] {
            let (repo, src) = (&repo, &src);
            s.spawn(move || repo.backup(src, &meta(v, v), None, &quiet).unwrap());
        }
    });
    assert_eq!(repo.list().unwrap().len(), 3);
    assert_eq!(fs::read_dir(fx.path("repo/keys")).unwrap().count(), 1);
}

#[test]
fn a_missing_store_is_unavailable() {
    let fx = Fixture::new();
    let t = target(&fx.path("not/mounted/repo"), fx.target.password_file.clone());
    let repo = super::super::open(&t, &fx.path("state")).unwrap();
    match repo.list() {
        Err(Error::Unavailable(m)) => assert!(m.contains("not reachable"), "{m}"),
        other => panic!("{other:?}"),
    }
}
