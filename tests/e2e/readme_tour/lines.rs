//! The tour's command lines: read from README.md's ```sh blocks, and run
//! one at a time, each checked against what it says it shows.
//!
//! A line ending in `# → TEXT` must succeed showing TEXT (on stdout or
//! stderr); one ending in `# ✗ TEXT` must fail showing TEXT on stderr;
//! any other line must succeed. Expected failures are marked as such, so
//! that a line expected to work cannot pass by failing with a message
//! that happens to hold its text (an unknown flag's error repeats the
//! flag).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};

/// What a line says it does, at its end.
const SHOWS: &str = "# →";
const FAILS: &str = "# ✗";

/// What a line must do besides not hanging.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// Succeed.
    Succeeds,
    /// Succeed, showing this text.
    Shows(String),
    /// Fail, showing this text on stderr.
    Fails(String),
}

/// One command of the tour as the shell reads it: a line with its `\`
/// continuations and here-document, where it starts in README.md, and
/// what it should do.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub at: usize,
    pub text: String,
    pub expect: Expect,
}

/// The ```sh blocks of section `section` of `readme`, each as its lines.
pub fn blocks(readme: &str, section: &str) -> Vec<Vec<Line>> {
    let mut lines = readme.lines().enumerate().map(|(i, l)| (i + 1, l));
    lines.find(|(_, l)| *l == section).unwrap_or_else(|| panic!("README has no {section:?}"));
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
        let (command, expect) = expectation(last);
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

/// The command part of a line's last physical line and what it expects:
/// the last marker that follows a space.
fn expectation(last: &str) -> (&str, Expect) {
    let marker = [SHOWS, FAILS]
        .into_iter()
        .filter_map(|m| last.rfind(m).map(|i| (i, m)))
        .filter(|(i, _)| last[..*i].ends_with(char::is_whitespace))
        .max();
    match marker {
        None => (last, Expect::Succeeds),
        Some((i, m)) => {
            let text = last[i + m.len()..].trim().to_string();
            let expect = if m == SHOWS { Expect::Shows(text) } else { Expect::Fails(text) };
            (&last[..i], expect)
        }
    }
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

/// What one line did.
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `line` with `sh -c` in `dir` with `env` (NAME, Some(value) or None
/// to remove), its output into files (a process it leaves behind cannot
/// hold a pipe open), at most `timeout`; an error report when it fails
/// or does not show what it should.
pub fn run(
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

/// A line passes when it succeeds (showing what it should), or when it
/// is marked to fail and fails showing its error on stderr.
fn check(line: &Line, ran: &Ran) -> Result<(), String> {
    let status = ran.status;
    match (&line.expect, status.success()) {
        (Expect::Succeeds, true) => Ok(()),
        (Expect::Shows(x), true) if ran.stdout.contains(x) || ran.stderr.contains(x) => Ok(()),
        (Expect::Shows(x), true) => Err(format!("succeeded without showing {x:?}")),
        (Expect::Succeeds | Expect::Shows(_), false) => Err(format!("failed: {status}")),
        (Expect::Fails(x), false) if ran.stderr.contains(x) => Ok(()),
        (Expect::Fails(x), false) => Err(format!("failed ({status}) without showing {x:?}")),
        (Expect::Fails(x), true) => Err(format!("succeeded, but should fail showing {x:?}")),
    }
}

/// `sh -c TEXT` in its own process group (as a terminal runs a job), in
/// `dir`, with `env`.
pub fn shell(text: &str, dir: &Path, env: &[(&str, Option<String>)]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(text);
    in_group(&mut cmd, dir, env);
    cmd
}

/// A daemon's line: as [`shell`], but the shell replaces itself with the
/// command (`exec`) and gets the parent-death signal first (`setpriv`),
/// so that the daemon goes when whatever started it dies, however it
/// dies, instead of holding its socket against the next run.
pub fn daemon(text: &str, dir: &Path, env: &[(&str, Option<String>)]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "TERM", "--", "sh", "-c"]).arg(format!("exec {text}"));
    in_group(&mut cmd, dir, env);
    cmd
}

fn in_group(cmd: &mut Command, dir: &Path, env: &[(&str, Option<String>)]) {
    cmd.current_dir(dir).process_group(0);
    for (name, value) in env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
}

/// Sends `signal` to `child`'s process group and waits up to `grace` for
/// the whole group to be gone; true when it is.
pub fn stop_group(child: &mut Child, signal: Signal, grace: Duration) -> bool {
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
