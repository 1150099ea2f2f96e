//! A `mini daemon` child process for tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::binary::mini_binary;
use crate::wait::wait_for;

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

/// A daemon with its own state dir, run dir and socket, all under one
/// temporary directory. Dropping it kills the process (by its recorded PID)
/// and removes the directory.
pub struct Daemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra_args: Vec<String>,
}

impl Daemon {
    /// Starts a daemon in a new temporary directory and waits until it serves.
    pub fn start() -> Daemon {
        Self::start_with(&[])
    }

    /// Like [`Daemon::start`], with extra `mini daemon` flags.
    pub fn start_with(extra_args: &[&str]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("mini-test-")
            .tempdir()
            .expect("tempdir");
        let mut daemon = Daemon {
            dir,
            child: None,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        daemon.spawn();
        daemon
    }

    /// The daemon's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mini.sock")
    }

    /// `unix://…` address of the daemon's socket.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn spawn(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("daemon log");
        let child = Command::new(mini_binary())
            .arg("daemon")
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--run-dir")
            .arg(self.dir.path().join("run"))
            .arg("--host")
            .arg(self.host())
            .arg("--hostname")
            .arg("node-1")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("cannot start mini daemon");
        self.child = Some(child);
        let socket = self.socket();
        wait_for(
            "the daemon to serve its socket",
            Duration::from_secs(20),
            || {
                if let Some(child) = self.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(format!("daemon exited with {status}: {}", self.log()));
                    }
                }
                let out = self.mini(&["node", "ls"]);
                // Serving means answering, even "not a swarm manager".
                if socket.exists() && (out.success || out.stderr.contains("swarm")) {
                    Ok(())
                } else {
                    Err(out.stderr)
                }
            },
        );
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Runs `mini ARGS…` against this daemon.
    pub fn mini(&self, args: &[&str]) -> Output {
        run_mini(&self.host(), args)
    }

    /// Runs `mini ARGS…` and panics, showing stderr, unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.mini(args);
        assert!(
            out.success,
            "`mini {}` failed: {}",
            args.join(" "),
            out.stderr
        );
        out
    }

    /// Runs `mini ARGS…`, expects failure, and returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.mini(args);
        assert!(
            !out.success,
            "`mini {}` should have failed but printed: {}",
            args.join(" "),
            out.stdout
        );
        assert!(
            !out.stderr.trim().is_empty(),
            "`mini {}` failed without a message",
            args.join(" ")
        );
        out.stderr
    }

    /// SIGKILLs the daemon (no chance to flush anything) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// SIGTERMs the daemon and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same state dir.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts the daemon again after [`Daemon::kill9`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "daemon still running");
        self.spawn();
    }

    /// The path of a file in the daemon's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `mini ARGS…` against the daemon at `host`.
pub fn run_mini(host: &str, args: &[&str]) -> Output {
    let out = Command::new(mini_binary())
        .args(args)
        .env("MINI_HOST", host)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run mini");
    Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether a path exists (for leak checks).
pub fn exists(path: &Path) -> bool {
    path.exists()
}
