//! A repository written by a hostile key holder: tree entries named
//! `..`, holding `/`, or twice the same. rustic writes whatever a tree
//! says, so these snapshots are made with rustic's own archiver fed a
//! source that invents the names.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use rustic_core::repofile::{Metadata, Node, NodeType};
use rustic_core::{
    BackupOptions, ReadSource, ReadSourceEntry, ReadSourceOpen, RusticResult, SnapshotOptions,
};

use super::super::meta::Description;
use super::super::progress::Bars;
use super::super::{Error, restic};
use super::{Fixture, meta, quiet};

/// Entries as `(path below /src, node name, content or None for a dir)`.
#[derive(Clone)]
struct Invented(Vec<(&'static str, &'static str, Option<&'static [u8]>)>);

struct Content(&'static [u8]);

impl ReadSourceOpen for Content {
    type Reader = Cursor<&'static [u8]>;
    fn open(self) -> RusticResult<Self::Reader> {
        Ok(Cursor::new(self.0))
    }
}

impl ReadSource for Invented {
    type Open = Content;
    type Iter = std::vec::IntoIter<RusticResult<ReadSourceEntry<Content>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        let entry = |(path, name, data): &(&str, &str, Option<&'static [u8]>)| {
            let (kind, mode, size) = match data {
                Some(d) => (NodeType::File, 0o644, d.len() as u64),
                None => (NodeType::Dir, 0o755, 0),
            };
            let meta = Metadata { mode: Some(mode), size, ..Default::default() };
            let mut node = Node::new_node(Path::new(name).as_os_str(), kind, meta);
            // `new_node` escapes; these names are meant raw.
            node.name = (*name).to_string();
            Ok(ReadSourceEntry {
                path: Path::new("/src").join(path),
                node,
                open: data.map(Content),
            })
        };
        self.0.iter().map(entry).collect::<Vec<_>>().into_iter()
    }
}

/// A ballast snapshot of the invented entries; its id.
fn craft(fx: &Fixture, entries: Invented) -> String {
    let r = restic::open(&fx.target, &fx.path("state")).unwrap();
    let repo = r.repo(&Bars::default(), "crafting", true).unwrap().to_indexed_ids().unwrap();
    let desc = Description { meta: meta("evil", "1v666"), root: None };
    let snap = SnapshotOptions::default().description(desc.to_json()).add_tags("ballast").unwrap();
    let opts = BackupOptions::default().as_path(PathBuf::from("/"));
    let snap = repo
        .archive(&opts, &entries, snap.to_snapshot().unwrap(), &[PathBuf::from("/src")])
        .unwrap();
    snap.id.to_hex().as_str().to_string()
}

/// Restores `entries`; asserts it is refused with nothing written in or
/// beside the destination.
fn assert_refused(entries: Invented, why: &str) {
    let fx = Fixture::new();
    let id = craft(&fx, entries);
    let dest = fx.mkdir("box/dest");
    match fx.open().restore(&id, &dest, &quiet) {
        Err(Error::Refused(m)) => assert!(m.contains(why), "{m}"),
        other => panic!("restore of a hostile tree: {other:?}"),
    }
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0, "wrote into the destination");
    let beside: Vec<_> =
        std::fs::read_dir(fx.path("box")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(beside, ["dest"], "wrote beside the destination");
}

#[test]
fn a_directory_named_dot_dot_is_refused() {
    let evil = Invented(vec![("sub", "..", None), ("sub/f", "escaped", Some(b"pwned"))]);
    assert_refused(evil, "a name that is . or ..");
}

#[test]
fn a_name_with_a_slash_is_refused() {
    let evil = Invented(vec![("ok", "fine", Some(b"ok")), ("f", "../escaped", Some(b"pwned"))]);
    assert_refused(evil, "a name containing /");
}

#[test]
fn a_name_twice_in_one_directory_is_refused() {
    let evil = Invented(vec![("a", "same", Some(b"one")), ("b", "same", Some(b"two"))]);
    assert_refused(evil, "names \"same\" twice");
}

#[test]
fn an_empty_name_is_refused() {
    assert_refused(Invented(vec![("a", "", Some(b"x"))]), "an empty name");
}

#[test]
fn the_same_crafting_with_plain_names_restores() {
    // The crafting itself is sound: with ordinary names it restores.
    let fx = Fixture::new();
    let id = craft(&fx, Invented(vec![("sub", "sub", None), ("sub/f", "f", Some(b"fine"))]));
    let dest = fx.mkdir("dest");
    fx.open().restore(&id, &dest, &quiet).unwrap();
    assert_eq!(std::fs::read(dest.join("sub/f")).unwrap(), b"fine");
}
