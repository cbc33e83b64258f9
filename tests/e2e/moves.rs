//! Volumes that follow their service (`-o follow=true`, docs/cluster.md
//! "Moves"): a volume in a pool of one host moves, through a backup
//! target both hosts reach, to the host that mounts it, and a move cut
//! by `kill -9` on either side loses nothing and leaves one copy.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::hosts::{DRIVER, Etcd, Host, can_run, mount_at, swarm_init, wait_for};

const NEEDS: &[(&str, &str)] = &[("nsenter", "util-linux"), ("etcd", "etcd-server")];

/// A config with a local default pool and the backup target `moves`, a
/// repository in `shared` (a directory both hosts see).
fn config(shared: &Path) -> String {
    format!(
        "[[pool]]\nname = \"local\"\nbackend = \"dir\"\ndefault = true\n\n\
         [[backup_target]]\nname = \"moves\"\nurl = \"file://{}/repo\"\npassword_file = \"{}/pw\"\n",
        shared.display(),
        shared.display()
    )
}

fn two_hosts(prefix: &str, etcd: &Etcd, shared: &Path) -> (Host, Host) {
    std::fs::write(shared.join("pw"), "moving day\n").unwrap();
    let a = Host::in_cluster(&format!("{prefix}-a"), etcd, &config(shared));
    let b = Host::in_cluster(&format!("{prefix}-b"), etcd, &config(shared));
    (a, b)
}

/// Mounts `vol` on `host` until it arrives (a Mount ends before a long
/// move does; Docker, or swarm, starts the container again).
fn mount_until_here(host: &Host, vol: &str, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        match host.mount(vol, id) {
            Ok(mp) => return mp,
            Err(e) => assert!(Instant::now() < deadline, "never arrived: {e}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_follow_volume_moves_with_its_data_to_the_host_that_mounts_it_and_back() {
    if !can_run(NEEDS) {
        return;
    }
    let etcd = Etcd::start();
    let shared = tempfile::tempdir().unwrap();
    let (a, b) = two_hosts("mv-basic", &etcd, shared.path());
    let vol = "mv-basic-data";
    a.ok(&["volume", "create", "--driver", DRIVER, "-o", "follow=true", vol]);
    a.run(vol, "echo one > /data/f && mkdir -p /data/d && echo deep > /data/d/g");
    wait_for("B to know the volume", || b.ballast().names().contains(&vol.to_string()));

    // While A's container runs, B's Mount waits its bound, then names A.
    let bind = format!("{vol}:/data");
    let holder = ["run", "-d", "--name", "mv-basic-holder", "--network", "none", "-v", &bind];
    a.ok(&[&holder[..], &[crate::harness::IMAGE, "sleep", "600"]].concat());
    let err = b.mount(vol, "b-early").unwrap_err();
    assert!(err.contains("host mv-basic-a") && err.contains("1 mount"), "{err}");
    assert_eq!(a.admin_volume(vol)["hostId"], "mv-basic-a", "nothing moved");
    a.ok(&["rm", "-f", "mv-basic-holder"]);

    // Stopped on A, started on B: the data is there, the home is B.
    let moved = Instant::now();
    assert_eq!(b.run(vol, "cat /data/f /data/d/g && echo two >> /data/f"), "one\ndeep");
    eprintln!("moved A→B and ran a container on B in {:?}", moved.elapsed());
    let on_a = a.admin_volume(vol);
    assert_eq!(on_a["hostId"], "mv-basic-b", "{on_a}");
    assert_eq!(b.admin_volume(vol)["hostId"], "mv-basic-b");
    // A has no copy left: its pool holds nothing of the volume.
    let pool = a.ballast().state_dir().join("pools/local/volumes");
    let left: Vec<_> = std::fs::read_dir(&pool).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "A keeps {left:?} in {}", pool.display());

    // And back, with what B wrote.
    assert_eq!(a.run(vol, "cat /data/f"), "one\ntwo");
    assert_eq!(b.admin_volume(vol)["hostId"], "mv-basic-a");
    a.ok(&["volume", "rm", vol]);
    wait_for("B to forget it", || !b.ballast().names().contains(&vol.to_string()));
}

#[test]
fn a_move_cut_by_kill9_on_either_side_loses_nothing_and_leaves_one_copy() {
    if !can_run(NEEDS) {
        return;
    }
    let etcd = Etcd::start();
    let shared = tempfile::tempdir().unwrap();
    let (mut a, mut b) = two_hosts("mv-kill", &etcd, shared.path());
    let vol = "mv-kill-data";
    a.ok(&["volume", "create", "--driver", DRIVER, "-o", "follow=true", vol]);
    let sum = a.run(
        vol,
        "dd if=/dev/urandom of=/data/big bs=1M count=192 2>/dev/null && md5sum /data/big",
    );
    wait_for("B to know the volume", || b.ballast().names().contains(&vol.to_string()));

    // A dies while it backs the volume up for B: started again, it
    // finds B's request still there and finishes the move.
    let b_socket = b.socket();
    let asking = std::thread::spawn(move || mount_at(&b_socket, vol, "b0"));
    wait_for("A to start the move", || a.ballast().log().contains("moving; backing up"));
    a.kill9_ballast();
    assert_eq!(b.admin_volume(vol)["hostId"], "mv-kill-a", "the move was not cut");
    let _ = asking.join();
    a.start_ballast();
    mount_until_here(&b, vol, "b1");
    assert!(a.ballast().log().contains("volume handed over"), "A did not resume the move");
    // The first Mount may have ended in time too: Docker would unmount it.
    b.unmount(vol, "b0");
    b.unmount(vol, "b1");
    assert_eq!(a.admin_volume(vol)["hostId"], "mv-kill-b");
    assert_eq!(b.run(vol, "md5sum /data/big"), sum, "B has what A wrote");

    // Now B is the home; A asks for it back and B dies while A restores
    // (B's part was done), then A dies during its restore, in turn.
    let a_socket = a.socket();
    let asking = std::thread::spawn(move || mount_at(&a_socket, vol, "a0"));
    wait_for("the record to name A", || {
        a.ballast().log().matches("the volume's home moved").count() >= 2
    });
    b.kill9_ballast();
    let _ = asking.join();
    a.kill9_ballast();
    a.start_ballast();
    b.start_ballast();
    mount_until_here(&a, vol, "a1");
    a.unmount(vol, "a0");
    a.unmount(vol, "a1");
    assert_eq!(a.run(vol, "md5sum /data/big"), sum, "A has it back whole");
    let on_b = b.admin_volume(vol);
    assert_eq!(on_b["hostId"], "mv-kill-a", "{on_b}");
    // B holds no copy: deallocated there, its pool empty.
    assert_eq!(on_b["state"], "requested", "{on_b}");
    let pool = b.ballast().state_dir().join("pools/local/volumes");
    assert_eq!(std::fs::read_dir(&pool).unwrap().count(), 0, "B keeps a copy");
    a.ok(&["volume", "rm", vol]);
}

#[test]
fn a_swarm_service_with_a_follow_volume_takes_its_data_to_the_node_it_moves_to() {
    if !can_run(NEEDS) {
        return;
    }
    let etcd = Etcd::start();
    let shared = tempfile::tempdir().unwrap();
    let (a, b) = two_hosts("mv-swarm", &etcd, shared.path());
    let _swarm = swarm_init(&a, &b);
    let node_of = |h: &Host| h.ok(&["info", "--format", "{{.Swarm.NodeID}}"]);
    a.ok(&["node", "update", "--label-add", "at=a", &node_of(&a)]);
    a.ok(&["node", "update", "--label-add", "at=b", &node_of(&b)]);
    let (service, vol) = ("mv-swarm-svc", "mv-swarm-data");
    // Made by swarm where the task lands, with the service's volume-opt.
    let mount = format!(
        "type=volume,source={vol},destination=/data,volume-driver={DRIVER},volume-opt=follow=true"
    );
    a.ok(&[
        "service",
        "create",
        "--detach",
        "--no-resolve-image",
        "--name",
        service,
        "--constraint",
        "node.labels.at==a",
        "--env",
        "NODE={{.Node.ID}}",
        "--mount",
        &mount,
        crate::harness::IMAGE,
        "sh",
        "-c",
        "echo $NODE >> /data/nodes; sleep 600",
    ]);
    let task_on = |h: &Host| {
        h.ok(&["ps", "-q", "--filter", &format!("label=com.docker.swarm.service.name={service}")])
    };
    wait_for("the task on A", || !task_on(&a).is_empty());
    a.ok(&[
        "service",
        "update",
        "--detach",
        "--constraint-rm",
        "node.labels.at==a",
        "--constraint-add",
        "node.labels.at==b",
        service,
    ]);
    wait_for("the task on B", || !task_on(&b).is_empty());
    let nodes = || b.docker(&["exec", &task_on(&b), "cat", "/data/nodes"]);
    wait_for("B's task to write", || String::from_utf8_lossy(&nodes().stdout).lines().count() == 2);
    let written = String::from_utf8_lossy(&nodes().stdout).to_string();
    assert_eq!(written.lines().collect::<Vec<_>>(), [node_of(&a), node_of(&b)], "{written}");
    assert_eq!(a.admin_volume(vol)["hostId"], "mv-swarm-b", "the volume lives on B now");
    a.ok(&["service", "rm", service]);
    wait_for("B's task to stop", || task_on(&b).is_empty());
}
