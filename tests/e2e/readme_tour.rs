//! README's five-minute tour, run as written. Every command line of the
//! tour's ```sh blocks runs in order, each in a shell of its own
//! (`sh -c LINE`: the tour promises that every line stands on its own,
//! so no state may hide in a shell between lines), with its `\`
//! continuations and here-document. A line ending in `# → TEXT` must show
//! TEXT: in its output when it succeeds, on its stderr when it fails (a
//! line may show an error); any other line must succeed.
//!
//! The tour's own `ballast serve` line starts the daemon, in the
//! background as the second terminal the tour asks for; it is stopped as
//! Ctrl-C would (SIGINT to its process group) before the last block, which
//! the tour runs after stopping it. The text is changed only by
//! [`substitutions`], and the environment only by [`Tour::env`].

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};

use crate::harness::{Daemon, Engine, IMAGE, engine, have, skip};

const SECTION: &str = "## A five-minute tour";
/// What a line ending in `# → TEXT` shows.
const EXPECT: &str = "# →";
/// Docker remembers every driver it has used, so each test has its own
/// driver name; `ballast` belongs to the compose examples' test.
const DRIVER: &str = "tour";
/// The scratch directory the tour works in.
const TOUR_DIR: &str = "/tmp/tour";
/// How long one line may take before it is reported as hanging.
const LINE_TIMEOUT: Duration = Duration::from_secs(120);

/// The only rewrites of the tour's text: what each replaces, with what
/// (`tour_dir` is this run's scratch directory), and why.
fn substitutions(tour_dir: &Path) -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("--driver ballast", format!("--driver {DRIVER}"), "each test owns a driver name"),
        (TOUR_DIR, tour_dir.display().to_string(), "no fixed paths: runs must not meet"),
        ("docker run ", "docker run --network none ".into(), "the engine has no bridge network"),
        (" busybox ", format!(" {IMAGE} "), "the engine is offline; the harness imports busybox"),
    ]
}

/// One command of the tour as the shell reads it: a line with its `\`
/// continuations and here-document, where it starts in README.md, and
/// what it should show.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    at: usize,
    text: String,
    expect: Option<String>,
}

/// The ```sh blocks of the tour section of `readme`, each as its lines.
fn tour_blocks(readme: &str) -> Vec<Vec<Line>> {
    let mut lines = readme.lines().enumerate().map(|(i, l)| (i + 1, l));
    lines.find(|(_, l)| *l == SECTION).unwrap_or_else(|| panic!("README has no {SECTION:?}"));
    let mut blocks = Vec::new();
    let mut block: Option<Vec<(usize, &str)>> = None;
    for (n, l) in lines {
        match &mut block {
            None if l.starts_with("## ") => break,
            None if l.trim_end() == "```sh" => block = Some(Vec::new()),
            None => {}
            Some(b) if l.trim_end() == "```" => {
                blocks.push(commands(b));
                block = None;
            }
            Some(b) => b.push((n, l)),
        }
    }
    assert!(block.is_none(), "an unclosed ```sh block in the tour");
    blocks
}

/// Splits a block into commands: blank and comment-only lines skipped,
/// `\` continuations joined, a here-document's body and end taken along.
fn commands(block: &[(usize, &str)]) -> Vec<Line> {
    let mut out = Vec::new();
    let mut rest = block.iter().copied();
    while let Some((at, first)) = rest.next() {
        if first.trim().is_empty() || first.trim_start().starts_with('#') {
            continue;
        }
        let mut text = first.to_string();
        let mut last = first;
        while last.trim_end().ends_with('\\') {
            let (_, next) = rest.next().unwrap_or_else(|| panic!("README.md:{at}: ends in `\\`"));
            text.push('\n');
            text.push_str(next);
            last = next;
        }
        let (command, expect) = match last.rfind(EXPECT) {
            Some(i) if last[..i].ends_with(char::is_whitespace) => {
                (&last[..i], Some(last[i + EXPECT.len()..].trim().to_string()))
            }
            _ => (last, None),
        };
        if let Some((word, strip_tabs)) = here_document(command) {
            loop {
                let (_, body) =
                    rest.next().unwrap_or_else(|| panic!("README.md:{at}: no {word} line"));
                text.push('\n');
                text.push_str(body);
                let end = if strip_tabs { body.trim_start_matches('\t') } else { body };
                if end == word {
                    break;
                }
            }
        }
        out.push(Line { at, text, expect });
    }
    out
}

/// The end word of a here-document that `line` starts (`<<WORD`,
/// `<<'WORD'`, `<<"WORD"`, `<<-WORD`), and whether tabs before it go.
fn here_document(line: &str) -> Option<(String, bool)> {
    let i = line.find("<<")?;
    let after = &line[i + 2..];
    let (after, strip_tabs) = after.strip_prefix('-').map_or((after, false), |rest| (rest, true));
    let word: String = after
        .trim_start()
        .chars()
        .take_while(|c| !c.is_whitespace() && !";&|<>".contains(*c))
        .filter(|c| *c != '\'' && *c != '"')
        .collect();
    (!word.is_empty()).then_some((word, strip_tabs))
}

/// Applies [`substitutions`] to every line. Each must change something,
/// or the list has gone stale.
fn substitute(blocks: &mut [Vec<Line>], tour_dir: &Path) {
    for (from, to, why) in substitutions(tour_dir) {
        let mut used = false;
        for line in blocks.iter_mut().flatten() {
            used |= line.text.contains(from);
            line.text = line.text.replace(from, &to);
        }
        assert!(used, "the substitution of {from:?} ({why}) no longer applies to the tour");
    }
}

/// What one line did.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `line` with `sh -c` in `dir` with `env` (NAME, Some(value) or None
/// to remove), its output into files (a process it leaves behind cannot
/// hold a pipe open), at most `timeout`; an error report when it fails
/// or does not show what it should.
fn run_line(
    line: &Line,
    dir: &Path,
    env: &[(&str, Option<String>)],
    timeout: Duration,
) -> Result<Ran, String> {
    let out_path = dir.join(format!("line-{}.out", line.at));
    let err_path = dir.join(format!("line-{}.err", line.at));
    let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut cmd = shell(&line.text, dir, env);
    cmd.stdin(Stdio::null()).stdout(file(&out_path)?).stderr(file(&err_path)?);
    let mut child = cmd.spawn().map_err(|e| format!("running sh: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if Instant::now() > deadline {
            stop_group(&mut child, Signal::KILL, Duration::from_secs(5));
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into();
    let (stdout, stderr): (String, String) = (read(&out_path), read(&err_path));
    let report = |why: String| {
        format!(
            "README.md:{}: {}\n{why}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
            line.at, line.text
        )
    };
    let Some(status) = status else {
        return Err(report(format!("still running after {timeout:?}")));
    };
    let ran = Ran { status, stdout: stdout.clone(), stderr: stderr.clone() };
    check(line, &ran).map_err(report)?;
    Ok(ran)
}

/// A line passes when it succeeds and shows what it should, or fails
/// showing on stderr the error it should.
fn check(line: &Line, ran: &Ran) -> Result<(), String> {
    match (&line.expect, ran.status.success()) {
        (None, true) => Ok(()),
        (None, false) => Err(format!("failed: {}", ran.status)),
        (Some(x), true) if ran.stdout.contains(x) || ran.stderr.contains(x) => Ok(()),
        (Some(x), true) => Err(format!("succeeded without showing {x:?}")),
        (Some(x), false) if ran.stderr.contains(x) => Ok(()),
        (Some(x), false) => Err(format!("failed ({}) without showing {x:?}", ran.status)),
    }
}

/// `sh -c TEXT` in its own process group (as a terminal runs a job), in
/// `dir`, with `env`.
fn shell(text: &str, dir: &Path, env: &[(&str, Option<String>)]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(text).current_dir(dir).process_group(0);
    for (name, value) in env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    cmd
}

/// Sends `signal` to `child`'s process group and waits up to `grace` for
/// the whole group to be gone; true when it is.
fn stop_group(child: &mut Child, signal: Signal, grace: Duration) -> bool {
    let group = Pid::from_child(child);
    let _ = kill_process_group(group, signal);
    let deadline = Instant::now() + grace;
    loop {
        // The shell itself is our child: reaped here, or it would stay a
        // member of the group as a zombie.
        let _ = child.try_wait();
        if test_kill_process_group(group).is_err() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One run of the tour: its scratch space, environment and daemon.
struct Tour {
    engine: &'static Engine,
    /// Holds the tour's directory (`tour/`, which the tour makes and
    /// removes), the `ballast` on the PATH, the admin socket, the
    /// daemon's log and each line's output.
    work: tempfile::TempDir,
    daemon: Option<Child>,
}

impl Tour {
    fn plugin_socket() -> PathBuf {
        PathBuf::from(format!("/run/docker/plugins/{DRIVER}.sock"))
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
            ("BALLAST_PLUGIN_SOCKET", Some(Tour::plugin_socket().display().to_string())),
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
                let ran = run_line(line, self.work.path(), &env, LINE_TIMEOUT)?;
                eprintln!("$ {}\n{}{}", line.text, ran.stdout, ran.stderr);
            }
        }
        Ok(())
    }

    fn start_daemon(&mut self, line: &Line, env: &[(&str, Option<String>)]) -> Result<(), String> {
        let log = std::fs::File::create(self.work.path().join("daemon.log")).unwrap();
        let mut cmd = shell(&line.text, self.work.path(), env);
        cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        let admin = self.admin_socket();
        let child = self.daemon.insert(cmd.spawn().map_err(|e| format!("running sh: {e}"))?);
        let deadline = Instant::now() + Duration::from_secs(120);
        let answers = |p: &Path| std::os::unix::net::UnixStream::connect(p).is_ok();
        while !(answers(&Tour::plugin_socket()) && answers(&admin)) {
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
        if !stop_group(&mut child, Signal::INT, Duration::from_secs(30)) {
            stop_group(&mut child, Signal::KILL, Duration::from_secs(5));
            return Err("the daemon did not stop within 30 s of Ctrl-C".into());
        }
        for socket in [Tour::plugin_socket(), self.admin_socket()] {
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

    /// Whatever a failed tour left: its volumes (removed while the
    /// daemon still answers), the daemon, and its mounts.
    fn clean_up(&mut self) {
        if self.daemon.is_some() {
            let filter = format!("driver={DRIVER}");
            let out = self.engine.docker(&["volume", "ls", "-q", "--filter", &filter]);
            for v in String::from_utf8_lossy(&out.stdout).lines() {
                self.engine.docker(&["volume", "rm", "-f", v]);
            }
        }
        if let Some(mut child) = self.daemon.take()
            && !stop_group(&mut child, Signal::INT, Duration::from_secs(30))
        {
            stop_group(&mut child, Signal::KILL, Duration::from_secs(5));
        }
        for m in self.mounts() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
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
    let mut tour = Tour { engine: e, work: tempfile::tempdir().unwrap(), daemon: None };
    let bin = tour.work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ballast"), bin.join("ballast")).unwrap();
    let mut blocks = tour_blocks(&readme());
    substitute(&mut blocks, &tour.tour_dir());
    let lines: usize = blocks.iter().map(Vec::len).sum();

    let result = tour.run(&blocks);
    let log = tour.log();
    tour.clean_up();
    // Docker knows the driver now and would ask it about every unknown
    // volume for 30 s after its socket went: an empty daemon answers for
    // it until this process exits (see the harness).
    let _stand_in = Daemon::for_docker(DRIVER, e);
    if let Err(report) = result {
        panic!("the README tour failed at\n{report}\n--- daemon log ---\n{log}");
    }
    // The tour's clean-up leaves nothing behind.
    assert!(!tour.tour_dir().exists(), "the tour's directory is still there");
    assert_eq!(tour.mounts(), Vec::<String>::new(), "mounts left");
    assert_eq!(tour.loop_devices(), Vec::<String>::new(), "loop devices left");
    eprintln!("the README tour: {lines} lines in {:.1?}", started.elapsed());
}

/// The line runner itself, without Docker: expectations, continuations,
/// here-documents and failures.
#[test]
fn the_line_runner_reports_what_a_line_does_not_show() {
    let readme = "intro\n\n## A five-minute tour\n\nText.\n\n```sh\n\
        # a comment line\n\
        echo hello   # → hello\n\
        echo hello   # → goodbye\n\
        printf '%s\\n' one \\\n  two   # → two\n\
        cat <<'EOF'\n# → not an expectation\nEOF\n\
        false\n\
        sh -c 'echo boom >&2; exit 3'   # → boom\n\
        sh -c 'echo boom; exit 3'   # → boom\n\
        ```\n\n## Next\n\n```sh\necho never\n```\n";
    let blocks = tour_blocks(readme);
    assert_eq!(blocks.len(), 1, "only the tour's section: {blocks:?}");
    let lines = &blocks[0];
    let at: Vec<usize> = lines.iter().map(|l| l.at).collect();
    assert_eq!(at, [9, 10, 11, 13, 16, 17, 18], "{lines:?}");
    assert_eq!(lines[2].text, "printf '%s\\n' one \\\n  two   # → two");
    assert_eq!(lines[3].text, "cat <<'EOF'\n# → not an expectation\nEOF");
    assert_eq!(lines[3].expect, None);

    let dir = tempfile::tempdir().unwrap();
    let run = |i: usize| run_line(&lines[i], dir.path(), &[], Duration::from_secs(10));
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
    assert!(run(5).is_ok(), "a failure showing its expected error passes");
    let report = run(6).err().expect("an error expected on stderr, not stdout");
    assert!(report.contains("failed (exit status: 3) without showing \"boom\""), "{report}");

    let hang = Line { at: 1, text: "sleep 30".into(), expect: None };
    let report = run_line(&hang, dir.path(), &[], Duration::from_millis(200)).err().unwrap();
    assert!(report.contains("still running after"), "{report}");
}

/// The README's tour parses into the blocks the test expects: a daemon
/// block alone, and expectations where the tour shows results.
#[test]
fn the_readme_tour_has_a_daemon_and_expectations() {
    let blocks = tour_blocks(&readme());
    let serve: Vec<&Line> =
        blocks.iter().flatten().filter(|l| l.text.starts_with("ballast serve")).collect();
    assert_eq!(serve.len(), 1, "one daemon line: {serve:?}");
    assert!(blocks.iter().any(|b| b.len() == 1 && b[0] == *serve[0]), "alone in its block");
    let lines: Vec<&Line> = blocks.iter().flatten().collect();
    assert!((20..=40).contains(&lines.len()), "{} command lines", lines.len());
    assert!(lines.iter().filter(|l| l.expect.is_some()).count() >= 8);
    for needle in ["No space left on device", "Disk quota exceeded", "hello"] {
        assert!(lines.iter().any(|l| l.expect.as_deref() == Some(needle)), "{needle}");
    }
    let mut copy = blocks.clone();
    substitute(&mut copy, Path::new("/scratch"));
    let text: String = copy.iter().flatten().map(|l| l.text.clone()).collect();
    assert!(!text.contains(TOUR_DIR) && !text.contains("--driver ballast"));
    assert!(text.contains(IMAGE));
}
