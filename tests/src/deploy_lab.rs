//! `deploy/lab` run by a test under a lab name of its own, so that a user's lab (`mini-lab`)
//! and other tests' labs are never touched.

use std::process::{Command, Stdio};

use crate::Output;
use crate::binary::mini_binary;

/// A named lab driven through `deploy/lab` (`MINI_LAB_NAME`), with the test's `mini` binary.
#[derive(Debug, Clone)]
pub struct DeployLab {
    name: String,
    timeout_secs: u32,
    /// More environment for the script (e.g. a limit's override).
    env: Vec<(String, String)>,
}

impl DeployLab {
    /// The lab `NAME` (1–16 of a-z, 0-9 and -, see `deploy/lab`), whose waits (`up`'s ready
    /// nodes) give up after `timeout_secs` (`MINI_LAB_TIMEOUT`).
    pub fn new(name: impl Into<String>, timeout_secs: u32) -> Self {
        DeployLab {
            name: name.into(),
            timeout_secs,
            env: Vec::new(),
        }
    }

    /// The same lab with `KEY=VALUE` in the script's environment.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The lab's name: its namespaces are `NAME-h<K>`, its directories `/run/NAME` etc.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `deploy/lab ARGS…` for this lab and returns what it printed.
    pub fn run(&self, args: &[&str]) -> Output {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/lab");
        let out = Command::new(script)
            .args(args)
            .env("MINI_LAB_NAME", &self.name)
            .env("MINI_BIN", mini_binary())
            .env("MINI_LAB_TIMEOUT", self.timeout_secs.to_string())
            .env_remove("MINI_HOST")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .expect("cannot run deploy/lab");
        Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A guard that runs `down --purge` when dropped, so that a failing assertion leaves no
    /// lab behind.
    pub fn down_on_drop(&self) -> DownOnDrop {
        DownOnDrop(self.clone())
    }
}

/// Runs `deploy/lab down --purge` for its lab when dropped; see [`DeployLab::down_on_drop`].
#[derive(Debug)]
pub struct DownOnDrop(DeployLab);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let out = self.0.run(&["down", "--purge"]);
        if !out.success {
            eprintln!("deploy/lab down failed: {}", out.stderr);
        }
    }
}
