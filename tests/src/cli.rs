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

/// Runs `mini ARGS…` against the daemon at `host` (`unix://…`).
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
