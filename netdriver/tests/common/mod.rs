//! Helpers for the privileged tests and the benchmark: "hosts" as network namespaces joined by
//! veths, all under one temporary folder that is cleaned up on drop (also on panic).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use mini_netdriver::netns;

/// Fails (never skips) when not root.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this test requires root (it creates network namespaces, veths, VXLAN devices and \
             nftables tables): run it as root, e.g. `sudo -E cargo test -p mini-netdriver`"
        );
    }
}

/// A name unique to this process and call.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}n{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Namespaces and run directories of one test; everything is removed on drop.
pub struct Lab {
    dir: tempfile::TempDir,
    namespaces: Vec<PathBuf>,
}

impl Lab {
    pub fn new() -> Self {
        require_root();
        Lab {
            dir: tempfile::Builder::new()
                .prefix(&unique("mini-netdriver-"))
                .tempdir()
                .expect("temp dir"),
            namespaces: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh namespace ("host") with `lo` up.
    pub fn host(&mut self, name: &str) -> PathBuf {
        let p = self.dir.path().join(format!("host-{name}"));
        netns::create(&p).expect("create test namespace");
        self.namespaces.push(p.clone());
        sh(&p, "ip link set lo up");
        p
    }

    /// A run directory for a driver.
    pub fn run_dir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(format!("run-{name}"));
        std::fs::create_dir_all(&p).expect("run dir");
        p
    }

    /// Joins two namespaces with a veth `a_if` ↔ `b_if` and addresses `a_addr`, `b_addr`.
    pub fn wire(&self, a: &Path, a_if: &str, a_addr: &str, b: &Path, b_if: &str, b_addr: &str) {
        sh(
            a,
            &format!(
                "ip link add {a_if} type veth peer name {b_if} netns {} && \
                 ip addr add {a_addr} dev {a_if} && ip link set {a_if} up",
                b.display()
            ),
        );
        sh(
            b,
            &format!("ip addr add {b_addr} dev {b_if} && ip link set {b_if} up"),
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Drivers' namespaces first (run-*/netns/*), then the hosts.
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                if let Ok(nss) = std::fs::read_dir(e.path().join("netns")) {
                    for ns in nss.flatten() {
                        let _ = netns::remove(&ns.path());
                    }
                }
            }
        }
        for ns in &self.namespaces {
            let _ = netns::remove(ns);
        }
    }
}

/// Runs `sh -c cmd` inside a namespace; panics with the output when it fails.
pub fn sh(ns: &Path, cmd: &str) -> String {
    let (ok, out) = try_sh(ns, cmd);
    assert!(ok, "`{cmd}` in {} failed:\n{out}", ns.display());
    out
}

/// Runs `sh -c cmd` inside a namespace; returns success and stdout+stderr.
pub fn try_sh(ns: &Path, cmd: &str) -> (bool, String) {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["sh", "-c", cmd])
        .output()
        .expect("run nsenter");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Mount points under `dir` (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.display().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir))
        .map(str::to_string)
        .collect()
}
