//! Running the `mini` CLI against a daemon.

use std::process::{Command, Stdio};

use crate::binary::mini_binary;

/// What a CLI command printed and how it exited.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit status was 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Stdout parsed as JSON; panics with the output when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): stdout={:?} stderr={:?}",
                self.stdout, self.stderr
            )
        })
    }
}

/// The inspect views of what a listing command lists, as one JSON array (what `mini
/// inspect --type KIND $(mini LIST -q --no-trunc)` prints): `list` is the listing (`["service",
/// "ps", "web"]`), `kind` the object type (`task`, `service`, `node`, `network`, `secret`).
/// `ls`/`ps --format json` print Docker's few columns; tests that need an object's addresses,
/// states or ids read its inspect view. `mini` runs one command. An object gone between the
/// two commands (a task history pruned) is retried, twice.
pub fn listed_views(mini: &dyn Fn(&[&str]) -> Output, list: &[&str], kind: &str) -> Output {
    let mut last = None;
    for _ in 0..3 {
        let mut args = list.to_vec();
        args.extend(["-q", "--no-trunc"]);
        let ids = mini(&args);
        if !ids.success {
            return ids;
        }
        let ids: Vec<&str> = ids.stdout.split_whitespace().collect();
        if ids.is_empty() {
            return Output {
                success: true,
                stdout: "[]".into(),
                stderr: String::new(),
            };
        }
        let mut args = vec!["inspect", "--type", kind];
        args.extend(ids);
        let out = mini(&args);
        if out.success || !out.stderr.contains("No such object") {
            return out;
        }
        last = Some(out);
    }
    last.expect("three attempts")
}

/// How long one CLI command may take before the harness kills it and fails the test. The
/// slowest commands tests run (a `service create` that waits for its tasks, a `swarm join` that
/// fetches certificates) return within a minute; a command still running after this hangs, and
/// a hung command must fail its test with what it printed, not stall the whole suite.
pub const CLI_DEADLINE: std::time::Duration = std::time::Duration::from_secs(180);

/// Runs `mini ARGS…` against the daemon at `host` (`unix://…`).
pub fn run_mini(host: &str, args: &[&str]) -> Output {
    run_mini_with_input(host, args, &[])
}

/// Runs `mini ARGS…` against the daemon at `host` with `input` on its standard input.
/// Panics, with what the command printed, if it runs past [`CLI_DEADLINE`] (it is killed).
pub fn run_mini_with_input(host: &str, args: &[&str], input: &[u8]) -> Output {
    use std::io::{Read as _, Write as _};
    let mut child = Command::new(mini_binary())
        .args(args)
        .env("MINI_HOST", host)
        .stdin(if input.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run mini");
    let pid = child.id();
    // Readers on their own threads: a full pipe must not block the command while we wait.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    if let Some(mut stdin) = child.stdin.take() {
        // A command that exits before reading everything closes the pipe: not an error here.
        let _ = stdin.write_all(input);
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = done_tx.send(());
        status
    });
    let timed_out = done_rx.recv_timeout(CLI_DEADLINE).is_err();
    if timed_out {
        // The child is not reaped yet (its waiter still waits), so the PID is still its own.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let status = waiter
        .join()
        .expect("waiter thread")
        .expect("cannot wait for mini");
    let stdout = out_reader.join().expect("stdout reader");
    let stderr = err_reader.join().expect("stderr reader");
    let out = output(std::process::Output {
        status,
        stdout,
        stderr,
    });
    assert!(
        !timed_out,
        "`mini {}` was still running after {CLI_DEADLINE:?} (killed it); stdout: {:?} stderr: {:?}",
        args.join(" "),
        out.stdout,
        out.stderr
    );
    out
}

fn output(out: std::process::Output) -> Output {
    Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A `mini` command left running (`mini events`, a `service create` that waits): its stdout
/// lines are collected as they come; it is killed by its PID when dropped.
pub struct Spawned {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Starts `mini ARGS…` against the daemon at `host` with stdout piped (not a terminal).
pub fn spawn_mini(host: &str, args: &[&str]) -> Spawned {
    use std::io::BufRead as _;
    let mut child = Command::new(mini_binary())
        .args(args)
        .env("MINI_HOST", host)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run mini");
    let stdout = child.stdout.take().expect("piped stdout");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    Spawned { child, lines }
}

impl Spawned {
    /// The lines printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and with what success), without waiting.
    pub fn exited(&mut self) -> Option<bool> {
        self.child.try_wait().ok().flatten().map(|s| s.success())
    }

    /// Kills the process (by its PID) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}
