//! README's five-minute tour, run as written. Every command line of the
//! tour's ```sh blocks runs in order, each in a shell of its own
//! (`sh -c LINE`: the tour promises that every line stands on its own,
//! so no state may hide in a shell between lines), with its `\`
//! continuations and here-document. A line ending in `# → TEXT` must
//! succeed showing TEXT, one ending in `# ✗ TEXT` must fail showing TEXT
//! on stderr, any other line must succeed (`readme_tour/lines.rs`).
//!
//! The tour's own `ballast serve` line starts the daemon, in the
//! background as the second terminal the tour asks for, tied to this
//! process (it goes when the test process dies, killed or not); it is
//! stopped as Ctrl-C would (SIGINT to its process group) before the last
//! block, which the tour runs after stopping it. What the tour's clean-up
//! leaves is looked at before the test's own clean-up, which a failed run
//! needs; after it, a stand-in daemon answers for the driver, after a
//! panic too. The text is changed only by [`substitutions`], and the
//! environment only by [`Tour::env`].

mod lines;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lines::{Expect, Line};
use rustix::process::Signal;

use crate::harness::{Daemon, Engine, IMAGE, engine, have, skip, spawn_until_exit, wait_until};

const SECTION: &str = "## A five-minute tour";
/// Docker remembers every driver it has used, so each test has its own
/// driver name; `ballast` belongs to the compose examples' test.
const DRIVER: &str = "tour";
/// The scratch directory the tour works in.
const TOUR_DIR: &str = "/tmp/tour";
/// How long one line may take before it is reported as hanging.
const LINE_TIMEOUT: Duration = Duration::from_secs(120);

/// The only rewrites of the tour's text: what each replaces, with what
/// (`tour_dir` is this run's scratch directory), and why.
fn substitutions(tour_dir: &Path, driver: &str) -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("--driver ballast", format!("--driver {driver}"), "each test owns a driver name"),
        (TOUR_DIR, tour_dir.display().to_string(), "no fixed paths: runs must not meet"),
        ("docker run ", "docker run --network none ".into(), "the engine has no bridge network"),
        (" busybox ", format!(" {IMAGE} "), "the engine is offline; the harness imports busybox"),
    ]
}

/// Applies [`substitutions`] to every line. Each must change something,
/// or the list has gone stale.
fn substitute(blocks: &mut [Vec<Line>], tour_dir: &Path, driver: &str) {
    for (from, to, why) in substitutions(tour_dir, driver) {
        let mut used = false;
        for line in blocks.iter_mut().flatten() {
            used |= line.text.contains(from);
            line.text = line.text.replace(from, &to);
        }
        assert!(used, "the substitution of {from:?} ({why}) no longer applies to the tour");
    }
}

/// One run of the tour: its scratch space, environment and daemon.
struct Tour {
    engine: &'static Engine,
    /// The driver name Docker knows the tour's daemon by.
    driver: &'static str,
    /// Holds the tour's directory (`tour/`, which the tour makes and
    /// removes), the `ballast` on the PATH, the admin socket, the
    /// daemon's log and each line's output.
    work: tempfile::TempDir,
    daemon: Option<Child>,
    /// Whether a daemon was started, so that Docker may know the driver.
    started: bool,
    /// Answers for the driver once the tour's daemon is gone.
    stand_in: Option<Daemon>,
}

impl Tour {
    fn new(engine: &'static Engine, driver: &'static str) -> Tour {
        let work = tempfile::tempdir().unwrap();
        let bin = work.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ballast"), bin.join("ballast")).unwrap();
        Tour { engine, driver, work, daemon: None, started: false, stand_in: None }
    }

    fn plugin_socket(&self) -> PathBuf {
        PathBuf::from(format!("/run/docker/plugins/{}.sock", self.driver))
    }

    fn admin_socket(&self) -> PathBuf {
        self.work.path().join("admin.sock")
    }

    fn tour_dir(&self) -> PathBuf {
        self.work.path().join("tour")
    }

    /// What differs from a user's shell: the engine, the binary under
    /// test, and sockets of this run instead of the defaults the tour
    /// relies on (a daemon of the host may own those).
    fn env(&self) -> Vec<(&'static str, Option<String>)> {
        let path = std::env::var("PATH").unwrap_or_default();
        let bin = self.work.path().join("bin");
        let admin = self.admin_socket().display().to_string();
        vec![
            ("PATH", Some(format!("{}:{path}", bin.display()))),
            ("DOCKER_HOST", Some(self.engine.host.clone())),
            ("BALLAST_PLUGIN_SOCKET", Some(self.plugin_socket().display().to_string())),
            ("BALLAST_ADMIN_SOCKET", Some(admin.clone())),
            ("BALLAST_ADMIN", Some(format!("unix://{admin}"))),
            ("BALLAST_CONFIG", None),
            ("BALLAST_STATE_DIR", None),
            ("BALLAST_ADMIN_LISTEN", None),
        ]
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("daemon.log")).unwrap_or_default()
    }

    /// Runs the blocks in order: the daemon's in the background, the
    /// last after stopping the daemon.
    fn run(&mut self, blocks: &[Vec<Line>]) -> Result<(), String> {
        let env = self.env();
        for (i, block) in blocks.iter().enumerate() {
            if i + 1 == blocks.len() {
                self.stop_daemon()?;
            }
            if let [line] = block.as_slice()
                && line.text.starts_with("ballast serve")
            {
                self.start_daemon(line, &env)?;
                continue;
            }
            for line in block {
                // A transcript, shown with a failure (and by --nocapture).
                let ran = lines::run(line, self.work.path(), &env, LINE_TIMEOUT)?;
                eprintln!("$ {}\n{}{}", line.text, ran.stdout, ran.stderr);
            }
        }
        Ok(())
    }

    /// Starts the daemon's line from the thread that lives as long as this
    /// process, so that the parent-death signal fires when the process
    /// dies and not when the test's thread ends.
    fn start_daemon(&mut self, line: &Line, env: &[(&str, Option<String>)]) -> Result<(), String> {
        let log = std::fs::File::create(self.work.path().join("daemon.log")).unwrap();
        let mut cmd = lines::daemon(&line.text, self.work.path(), env);
        cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        let (plugin, admin) = (self.plugin_socket(), self.admin_socket());
        self.started = true;
        let child = self.daemon.insert(spawn_until_exit(cmd));
        let deadline = Instant::now() + Duration::from_secs(120);
        let answers = |p: &Path| std::os::unix::net::UnixStream::connect(p).is_ok();
        while !(answers(&plugin) && answers(&admin)) {
            if let Ok(Some(status)) = child.try_wait() {
                self.daemon = None;
                return Err(format!("README.md:{}: {}\nexited: {status}", line.at, line.text));
            }
            if Instant::now() > deadline {
                return Err(format!("README.md:{}: no sockets after 120 s", line.at));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Ctrl-C: the daemon must be gone within 30 s and have removed its
    /// sockets, as a graceful stop does.
    fn stop_daemon(&mut self) -> Result<(), String> {
        let Some(mut child) = self.daemon.take() else {
            return Err("the tour stops a daemon it never started".into());
        };
        if !lines::stop_group(&mut child, Signal::INT, Duration::from_secs(30)) {
            lines::stop_group(&mut child, Signal::KILL, Duration::from_secs(5));
            return Err("the daemon did not stop within 30 s of Ctrl-C".into());
        }
        for socket in [self.plugin_socket(), self.admin_socket()] {
            if socket.exists() {
                return Err(format!("the daemon stopped but left {}", socket.display()));
            }
        }
        Ok(())
    }

    /// Mounts beneath the work directory, deepest first.
    fn mounts(&self) -> Vec<String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let work = self.work.path().display().to_string();
        let mut found: Vec<String> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&work))
            .map(str::to_string)
            .collect();
        found.sort_by_key(|m| std::cmp::Reverse(m.len()));
        found
    }

    /// Loop devices whose backing file is beneath the work directory.
    fn loop_devices(&self) -> Vec<String> {
        let work = self.work.path().display().to_string();
        let Ok(dir) = std::fs::read_dir("/sys/block") else { return Vec::new() };
        dir.flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("loop/backing_file")).ok())
            .filter(|f| f.starts_with(&work))
            .collect()
    }

    /// What the tour's own clean-up left: its directory, mounts, loop
    /// devices. A loop device goes a moment after its last user (the
    /// kernel detaches it in the background), so they get a few seconds.
    fn leftovers(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.loop_devices().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut left: Vec<String> = self.mounts().iter().map(|m| format!("mount {m}")).collect();
        left.extend(self.loop_devices().iter().map(|f| format!("loop device of {}", f.trim())));
        if self.tour_dir().exists() {
            left.push(format!("directory {}", self.tour_dir().display()));
        }
        left
    }

    /// Whatever a failed tour left: its volumes (removed while the
    /// daemon still answers), the daemon, and its mounts. Then, as Docker
    /// may know the driver and would ask it about every unknown volume for
    /// 30 s after its socket went, slowing every other test, an empty
    /// daemon answers for it until this process exits (see the harness);
    /// after a panic too, as this runs on drop.
    fn clean_up(&mut self) {
        if self.daemon.is_some() {
            let filter = format!("driver={}", self.driver);
            let out = self.engine.docker(&["volume", "ls", "-q", "--filter", &filter]);
            for v in String::from_utf8_lossy(&out.stdout).lines() {
                self.engine.docker(&["volume", "rm", "-f", v]);
            }
        }
        if let Some(mut child) = self.daemon.take()
            && !lines::stop_group(&mut child, Signal::INT, Duration::from_secs(30))
        {
            lines::stop_group(&mut child, Signal::KILL, Duration::from_secs(5));
        }
        for m in self.mounts() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        if self.started && self.stand_in.is_none() {
            let (driver, engine) = (self.driver, self.engine);
            // Not a second panic while unwinding from a first.
            let stand_in = std::panic::catch_unwind(|| Daemon::for_docker(driver, engine));
            self.stand_in = stand_in.ok();
        }
    }
}

impl Drop for Tour {
    fn drop(&mut self) {
        self.clean_up();
    }
}

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_readme_tour_runs_as_written() {
    let Some(e) = engine() else { return };
    if !have("mkfs.btrfs") {
        skip("mkfs.btrfs is not installed (apt-get install btrfs-progs)");
        return;
    }
    let started = Instant::now();
    let mut tour = Tour::new(e, DRIVER);
    let mut blocks = lines::blocks(&readme(), SECTION);
    substitute(&mut blocks, &tour.tour_dir(), DRIVER);
    let count: usize = blocks.iter().map(Vec::len).sum();

    let result = tour.run(&blocks);
    // Before our clean-up, which would tidy away what the tour's left.
    let left = if result.is_ok() { tour.leftovers() } else { Vec::new() };
    let log = tour.log();
    tour.clean_up();
    if let Err(report) = result {
        panic!("the README tour failed at\n{report}\n--- daemon log ---\n{log}");
    }
    assert_eq!(left, Vec::<String>::new(), "the tour's clean-up leaves these behind");
    eprintln!("the README tour: {count} lines in {:.1?}", started.elapsed());
}

/// The line runner itself, without Docker: expectations of success and
/// of failure, continuations, here-documents and hangs.
#[test]
fn the_line_runner_reports_what_a_line_does_not_show() {
    let readme = "intro\n\n## A five-minute tour\n\nText.\n\n```sh\n\
        # a comment line\n\
        echo hello   # → hello\n\
        echo hello   # → goodbye\n\
        printf '%s\\n' one \\\n  two   # → two\n\
        cat <<'EOF'\n# → not an expectation\nEOF\n\
        false\n\
        sh -c 'echo boom >&2; exit 3'   # ✗ boom\n\
        sh -c 'echo boom; exit 3'   # ✗ boom\n\
        sh -c 'echo unexpected argument boom >&2; exit 2'   # → boom\n\
        echo boom >&2   # ✗ boom\n\
        ```\n\n## Next\n\n```sh\necho never\n```\n";
    let blocks = lines::blocks(readme, SECTION);
    assert_eq!(blocks.len(), 1, "only the tour's section: {blocks:?}");
    let lines = &blocks[0];
    let at: Vec<usize> = lines.iter().map(|l| l.at).collect();
    assert_eq!(at, [9, 10, 11, 13, 16, 17, 18, 19, 20], "{lines:?}");
    assert_eq!(lines[2].text, "printf '%s\\n' one \\\n  two   # → two");
    assert_eq!(lines[3].text, "cat <<'EOF'\n# → not an expectation\nEOF");
    assert_eq!(lines[3].expect, Expect::Succeeds);
    assert_eq!(lines[5].expect, Expect::Fails("boom".into()));

    let dir = tempfile::tempdir().unwrap();
    let run = |i: usize| lines::run(&lines[i], dir.path(), &[], Duration::from_secs(10));
    assert_eq!(run(0).unwrap().stdout, "hello\n");
    let report = run(1).err().expect("a wrong expectation fails");
    assert!(
        report.starts_with("README.md:10: echo hello   # → goodbye\n")
            && report.contains("without showing \"goodbye\"")
            && report.contains("--- stdout ---\nhello\n"),
        "{report}"
    );
    assert_eq!(run(2).unwrap().stdout, "one\ntwo\n");
    assert_eq!(run(3).unwrap().stdout, "# → not an expectation\n");
    let report = run(4).err().expect("a failing line fails");
    assert!(report.contains("failed: exit status: 1"), "{report}");
    assert!(run(5).is_ok(), "a failure marked ✗ showing its error passes");
    let report = run(6).err().expect("an error expected on stderr, not stdout");
    assert!(report.contains("failed (exit status: 3) without showing \"boom\""), "{report}");
    // A renamed flag's error repeats it: a line marked → must succeed.
    let report = run(7).err().expect("a line marked → that fails");
    assert!(report.contains("failed: exit status: 2"), "{report}");
    let report = run(8).err().expect("a line marked ✗ that succeeds");
    assert!(report.contains("succeeded, but should fail showing \"boom\""), "{report}");

    let hang = Line { at: 1, text: "sleep 30".into(), expect: Expect::Succeeds };
    let report = lines::run(&hang, dir.path(), &[], Duration::from_millis(200)).err().unwrap();
    assert!(report.contains("still running after"), "{report}");
}

/// A killed test run must not leave the tour's daemon behind, holding
/// its plugin socket so that the next run cannot start one: the daemon's
/// line goes when what started it dies. Here a shell starts it in place
/// of the test process, and is killed.
#[test]
fn the_daemons_line_goes_when_its_starter_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = lines::daemon("sleep 300", dir.path(), &[]);
    let mut starter = Command::new("sh")
        .arg("-c")
        .arg("\"$@\" & echo $!; wait")
        .arg("sh")
        // In a process group of its own, led by the echoed pid, as the
        // test runs it.
        .arg("setsid")
        .arg(daemon.get_program())
        .args(daemon.get_args())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(starter.stdout.take().unwrap());
    let mut pid = String::new();
    std::io::BufRead::read_line(&mut out, &mut pid).unwrap();
    let group: u32 = pid.trim().parse().unwrap();
    wait_until("the daemon's line runs", || {
        live_in_group(group).iter().any(|cmdline| cmdline.starts_with("sleep"))
    });
    starter.kill().unwrap();
    starter.wait().unwrap();
    wait_until("the daemon's line to go", || live_in_group(group).is_empty());
}

/// The command lines of the processes of process group `group` that are
/// not zombies.
fn live_in_group(group: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid pgrp …
            let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
            let live = fields.first()? != &"Z" && fields.get(2)?.parse() == Ok(group);
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            live.then(|| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        })
        .collect()
}

/// A tour that panics midway (a bug of the test, an engine that stops
/// answering) still leaves a daemon answering for its driver, or Docker
/// slows every later test down retrying it.
#[test]
fn a_tour_that_panics_leaves_its_driver_answered() {
    let Some(e) = engine() else { return };
    let driver = "tour-panic";
    let mut tour = Tour::new(e, driver);
    let socket = tour.plugin_socket();
    let serve =
        Line { at: 1, text: "ballast serve --state-dir state".into(), expect: Expect::Succeeds };
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(move || {
        let env = tour.env();
        tour.start_daemon(&serve, &env).unwrap();
        e.ok(&["volume", "create", "--driver", driver, "seen"]);
        panic!("the tour went wrong midway");
    }));
    assert!(outcome.is_err());
    assert!(std::os::unix::net::UnixStream::connect(&socket).is_ok(), "nothing answers");
    assert!(e.volumes(driver).is_empty(), "the tour's volumes went with it");
}

/// The README's tour parses into the blocks the test expects: a daemon
/// block alone, and expectations where the tour shows results.
#[test]
fn the_readme_tour_has_a_daemon_and_expectations() {
    let blocks = lines::blocks(&readme(), SECTION);
    let serve: Vec<&Line> =
        blocks.iter().flatten().filter(|l| l.text.starts_with("ballast serve")).collect();
    assert_eq!(serve.len(), 1, "one daemon line: {serve:?}");
    assert!(blocks.iter().any(|b| b.len() == 1 && b[0] == *serve[0]), "alone in its block");
    let all: Vec<&Line> = blocks.iter().flatten().collect();
    assert!((20..=40).contains(&all.len()), "{} command lines", all.len());
    assert!(all.iter().filter(|l| l.expect != Expect::Succeeds).count() >= 8);
    for expect in [
        Expect::Fails("No space left on device".into()),
        Expect::Fails("Disk quota exceeded".into()),
        Expect::Shows("hello".into()),
    ] {
        assert!(all.iter().any(|l| l.expect == expect), "{expect:?}");
    }
    let failing = all.iter().filter(|l| matches!(l.expect, Expect::Fails(_))).count();
    assert_eq!(failing, 2, "only the writes past a size fail");
    let mut copy = blocks.clone();
    substitute(&mut copy, Path::new("/scratch"), DRIVER);
    let text: String = copy.iter().flatten().map(|l| l.text.clone()).collect();
    assert!(!text.contains(TOUR_DIR) && !text.contains("--driver ballast"));
    assert!(text.contains(IMAGE));
}
