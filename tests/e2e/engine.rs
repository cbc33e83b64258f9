//! The Docker engine restarting under ballast (`systemctl restart
//! docker`), with containers running, with and without `--live-restore`:
//! nothing is forgotten and every mount count ends right.

use crate::harness::{Daemon, OwnEngine, engine, wait_until};

fn engine_restart(live_restore: bool) {
    let Some(_) = engine() else { return };
    let tag = if live_restore { "live" } else { "plain" };
    let extra: &[&'static str] = if live_restore { &["--live-restore"] } else { &[] };
    let mut own = OwnEngine::start(&format!("restart-{tag}"), extra);
    let e = own.engine;
    let d = Daemon::for_docker(&format!("ballast-e2e-restart-{tag}"), e);
    let vol = format!("restart-{tag}");
    e.ok(&["volume", "create", "--driver", &d.driver, &vol]);
    let c = crate::docker::start(e, &d.driver, &vol, "echo before > /data/f; sleep 600");
    wait_until("the container to write", || {
        std::fs::read_to_string(format!("{}/f", d.get(&vol)["Mountpoint"].as_str().unwrap()))
            .is_ok_and(|s| s == "before\n")
    });
    assert_eq!(d.get(&vol)["Status"]["mounts"], 1);

    own.restart();

    let running = e.ok(&["inspect", "-f", "{{.State.Running}}", &c]);
    assert_eq!(e.volumes(&d.driver), [vol.as_str()], "Docker lists the volume again");
    if live_restore {
        assert_eq!(running, "true", "live-restore keeps the container");
        assert_eq!(d.get(&vol)["Status"]["mounts"], 1, "and its mount");
    } else {
        assert_eq!(running, "false", "without live-restore the container stops");
    }
    e.ok(&["rm", "-f", &c]);
    wait_until("every mount to be released", || d.get(&vol)["Status"]["mounts"] == 0);
    // The data is there for the next container, and the volume goes.
    assert_eq!(crate::docker::run(e, &vol, "cat /data/f"), "before");
    e.ok(&["volume", "rm", &vol]);
    assert!(d.names().is_empty());
}

#[test]
fn an_engine_restart_with_live_restore_keeps_containers_and_counts() {
    engine_restart(true);
}

#[test]
fn an_engine_restart_without_live_restore_releases_every_mount() {
    engine_restart(false);
}
