//! The names a restore refuses, one by one.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::super::walk::refuse;

fn refused(path: &str, name: &[u8]) -> bool {
    refuse(Path::new(path), OsStr::from_bytes(name)).is_some()
}

#[test]
fn only_plain_names_below_the_root_pass() {
    assert!(!refused("a/b", b"b"));
    assert!(!refused("...", b"..."));
    assert!(!refused("a/.hidden", b".hidden"));
    assert!(!refused("a/\\x", b"\\x"));
    assert!(refused("", b""));
    assert!(refused(".", b"."));
    assert!(refused("a/..", b".."));
    assert!(refused("a/b/c", b"b/c"));
    assert!(refused("a/b\0", b"b\0"));
    assert!(refused("/etc", b"etc"), "an absolute path");
}
