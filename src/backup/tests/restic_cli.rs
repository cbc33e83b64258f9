//! The repository is a plain restic one: the restic program lists and
//! restores what ballast wrote, byte for byte.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use ballast_test_support::noise;

use super::{Fixture, backup, describe};

/// The restic program, or None (after saying why) when it is not
/// installed, which CI=true turns into a failure.
fn restic() -> Option<&'static str> {
    if Command::new("restic").arg("version").output().is_ok_and(|o| o.status.success()) {
        return Some("restic");
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "CI=true and the restic program is missing (apt-get install restic)");
    eprintln!("SKIPPED: the restic program is not installed");
    None
}

fn run(fx: &Fixture, args: &[&str]) -> Vec<u8> {
    let repo = fx.path("repo");
    let out = Command::new("restic")
        .arg("--repo")
        .arg(&repo)
        .arg("--password-file")
        .arg(fx.target.password_file.as_ref().unwrap())
        .args(["--no-cache", "--quiet"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "restic {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// What the restic program must reproduce: types, contents, link targets.
fn contents(root: &Path) -> Vec<(String, String)> {
    describe(root)
        .into_iter()
        .map(|(path, d)| {
            let keep: Vec<_> = d.split(' ').skip_while(|w| *w != "->" && *w != "size").collect();
            (path.display().to_string(), keep.join(" "))
        })
        .collect()
}

#[test]
fn the_restic_program_lists_and_restores_a_ballast_backup() {
    let Some(_) = restic() else { return };
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    fs::write(src.join("big"), noise(5, 5 << 20)).unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    fs::create_dir_all(src.join("a/b")).unwrap();
    fs::write(src.join("a/b/note"), b"nested\n").unwrap();
    symlink("../big", src.join("a/link")).unwrap();
    let info = backup(&*fx.open(), &src, "shared");

    let listed: serde_json::Value =
        serde_json::from_slice(&run(&fx, &["snapshots", "--json"])).unwrap();
    let snaps = listed.as_array().unwrap();
    assert_eq!(snaps.len(), 1, "{listed}");
    assert_eq!(snaps[0]["id"], info.id.as_str());
    let tags: Vec<_> =
        snaps[0]["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(tags.contains(&"ballast") && tags.contains(&"volume=shared"), "{tags:?}");
    assert_eq!(snaps[0]["hostname"], "host-a");

    let dest = fx.mkdir("by-restic");
    run(&fx, &["restore", &info.id, "--target", dest.to_str().unwrap()]);
    assert_eq!(contents(&dest), contents(&src));
}
