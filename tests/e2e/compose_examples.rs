//! The compose files in `examples/`, brought up and down with Debian's
//! `docker-compose` against the private engine, as a user would run
//! them; only the images are swapped (an override file) for the offline
//! test image, with commands that use the data the way the real services
//! would. Data is checked on the volumes themselves.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::docker::run;
use crate::harness::{Daemon, Engine, IMAGE, ScratchFs, engine, skip, wait_until};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name).join("compose.yaml")
}

/// `docker-compose -p PROJECT -f FILE… ARGS` on the engine, which must
/// succeed.
pub(crate) fn compose(e: &Engine, project: &str, files: &[&Path], args: &[&str]) {
    // Compose names its volumes and containers after the project.
    crate::harness::claim(&e.host, &format!("compose project {project}"));
    let mut cmd = Command::new("docker-compose");
    cmd.args(["-p", project]);
    for file in files {
        cmd.arg("-f").arg(file);
    }
    let out = cmd.args(args).env("DOCKER_HOST", &e.host).output().unwrap();
    assert!(
        out.status.success(),
        "docker-compose {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The override: each service on the test image, without a network,
/// running `command` and then idling until told to stop (a shell as PID 1
/// ignores SIGTERM unless it traps it, and compose would wait 10 s).
fn override_file(dir: &Path, services: &[(&str, &str)]) -> PathBuf {
    let mut text = String::from("services:\n");
    for (name, command) in services {
        let command = format!("trap 'exit 0' TERM; {command}; sleep 300 & wait");
        text.push_str(&format!(
            "  {name}:\n    image: {IMAGE}\n    network_mode: none\n    \
             command: [\"sh\", \"-c\", {command:?}]\n"
        ));
    }
    let path = dir.join(format!("override-{}.yaml", services[0].0));
    std::fs::write(&path, text).unwrap();
    path
}

fn file_in(mp: &str, name: &str) -> Option<String> {
    std::fs::read_to_string(Path::new(mp).join(name)).ok()
}

#[test]
fn the_compose_examples_come_up_keep_their_data_and_go_down() {
    let Some(e) = engine() else { return };
    if Command::new("docker-compose").arg("version").output().is_err() {
        skip("docker-compose is not installed (apt-get install docker-compose)");
        return;
    }
    let Some(btrfs) = ScratchFs::btrfs(1024) else { return };
    let dir = tempfile::tempdir().unwrap();
    // The pools examples/ballast.toml names, here on scratch space.
    let config = format!(
        "[[pool]]\nname = \"loop\"\nbackend = \"loop\"\npath = \"{}\"\nfs = \"ext4\"\n\n\
         [[pool]]\nname = \"btrfs\"\nbackend = \"btrfs\"\npath = \"{}\"\n",
        dir.path().join("loop").display(),
        btrfs.mnt.join("ballast").display()
    );
    // The examples say `driver: ballast`.
    let d = Daemon::for_docker_with("ballast", e, Some(&config));
    let volume = |name: &str| d.admin_ok("GET", &format!("/v1/volumes/{name}"), Value::Null, 200);

    // A database on a sized loop volume: its data survives down and up.
    let file = example("database-on-loop");
    let write = "echo row >> /var/lib/postgresql/data/table";
    let over = override_file(dir.path(), &[("db", write)]);
    compose(e, "exdb", &[&file, &over], &["up", "-d"]);
    let v = volume("exdb_pgdata");
    assert_eq!(
        (v["storagePoolId"].as_str(), v["sizeBytes"].as_u64()),
        (Some("loop"), Some(2 << 30))
    );
    assert_eq!(v["schedule"]["snapshotEvery"], "6h", "{v}");
    let mp = e.inspect("exdb_pgdata")["Mountpoint"].as_str().unwrap().to_string();
    wait_until("the database's first write", || file_in(&mp, "table").is_some());
    compose(e, "exdb", &[&file, &over], &["down"]);
    compose(e, "exdb", &[&file, &over], &["up", "-d"]);
    wait_until("the second write", || {
        file_in(&mp, "table").is_some_and(|t| t.lines().count() == 2)
    });
    compose(e, "exdb", &[&file, &over], &["down", "-v"]);
    assert_eq!(volume("exdb_pgdata")["state"], "removed", "down -v put it in the trash");

    // One btrfs volume shared by a writer and a read-only reader.
    let file = example("shared-on-btrfs");
    let over = override_file(
        dir.path(),
        &[
            ("build", "echo '<h1>hello</h1>' > /site/index.html"),
            ("web", "until [ -f /usr/share/nginx/html/index.html ]; do sleep 0.2; done"),
        ],
    );
    compose(e, "exsite", &[&file, &over], &["up", "-d"]);
    let mp = e.inspect("exsite_site")["Mountpoint"].as_str().unwrap().to_string();
    wait_until("the build's page", || file_in(&mp, "index.html").is_some());
    wait_until("both services mounting it", || volume("exsite_site")["mountCount"] == 2);
    let v = volume("exsite_site");
    assert_eq!(v["storagePoolId"], "btrfs");
    assert_eq!(v["mountIds"].as_array().unwrap().len(), 2);
    compose(e, "exsite", &[&file, &over], &["down", "-v"]);
    assert_eq!(volume("exsite_site")["state"], "removed");

    // A staging volume made as a copy of an existing one.
    e.ok(&["volume", "create", "--driver", "ballast", "site-data"]);
    run(e, "site-data", "echo production > /data/page");
    let file = example("copy-from-volume");
    let over = override_file(dir.path(), &[("staging", "echo edited > /data/page")]);
    compose(e, "exstage", &[&file, &over], &["up", "-d"]);
    let copy = e.inspect("exstage_staging-data")["Mountpoint"].as_str().unwrap().to_string();
    wait_until("the staging edit", || file_in(&copy, "page").as_deref() == Some("edited\n"));
    assert_eq!(run(e, "site-data", "cat /data/page"), "production", "the source is untouched");
    assert_eq!(volume("exstage_staging-data")["description"], "staging copy of site-data");
    compose(e, "exstage", &[&file, &over], &["down", "-v"]);
    e.ok(&["volume", "rm", "site-data"]);
    assert!(e.volumes("ballast").is_empty());
}
