//! `deploy/lab` for real (root only): up, a second up refused, status, down,
//! down again, and nothing left — namespaces, mounts, processes, directories.
//!
//! The lab uses fixed names (`mini-lab-*`, `/run/mini-lab`), so this test
//! refuses to run — failing, not skipping — while a lab is already up rather
//! than tear down someone's lab.

use std::path::Path;
use std::process::{Command, Stdio};

use mini_tests::Output;
use mini_tests::binary::mini_binary;

fn lab(args: &[&str]) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/lab");
    let out = Command::new(script)
        .args(args)
        .env("MINI_BIN", mini_binary())
        .env("MINI_LAB_TIMEOUT", "60")
        .env_remove("MINI_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run deploy/lab");
    Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn lab_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("mini-lab-"))
                .collect()
        })
        .unwrap_or_default()
}

fn lab_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("mini-lab"))
        .map(str::to_string)
        .collect()
}

/// Runs `down` when dropped, so a failing assertion leaves no lab behind.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let out = lab(&["down", "--purge"]);
        if !out.success {
            eprintln!("deploy/lab down failed: {}", out.stderr);
        }
    }
}

#[test]
fn up_status_down_leaves_nothing() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: deploy/lab creates network namespaces"
    );
    assert!(
        !Path::new("/run/mini-lab").exists() && lab_namespaces().is_empty(),
        "a lab is already running (namespaces {:?}); run `deploy/lab down` first",
        lab_namespaces()
    );
    // A single host needs no join; the multi-host path is exercised by the
    // cluster end-to-end tests with the harness.
    let guard = Down;
    let up = lab(&["up", "-n", "1"]);
    assert!(up.success, "up failed: {}{}", up.stdout, up.stderr);
    assert!(up.stdout.contains("lab-h1"), "{}", up.stdout);
    assert!(
        up.stdout
            .contains("export MINI_HOST=unix:///run/mini-lab/h1.sock"),
        "{}",
        up.stdout
    );
    let pid: i32 = std::fs::read_to_string("/run/mini-lab/h1.pid")
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    let again = lab(&["up"]);
    assert!(!again.success, "a second up must refuse");
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);

    let status = lab(&["status"]);
    assert!(status.success, "{}", status.stderr);
    assert!(status.stdout.contains("running (pid"), "{}", status.stdout);
    assert!(status.stdout.contains("Leader"), "{}", status.stdout);

    // The daemon exits on SIGTERM (within 2 s): down never has to SIGKILL it.
    let down = lab(&["down", "--purge"]);
    assert!(down.success, "down failed: {}", down.stderr);
    let said = format!("{}{}", down.stdout, down.stderr);
    assert!(!said.contains("SIGKILL"), "down had to SIGKILL: {said}");
    drop(guard);
    assert_eq!(lab_namespaces(), Vec::<String>::new());
    assert_eq!(lab_mounts(), Vec::<String>::new());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "daemon {pid} still runs"
    );
    assert!(!Path::new("/run/mini-lab").exists());
    assert!(!Path::new("/var/lib/mini-lab").exists());

    let twice = lab(&["down"]);
    assert!(
        twice.success,
        "a second down must succeed: {}",
        twice.stderr
    );
}

#[test]
fn usage_and_bad_input() {
    let help = lab(&["--help"]);
    assert!(
        help.success && help.stdout.contains("up [-n N]"),
        "{}",
        help.stdout
    );
    let bad = lab(&["frobnicate"]);
    assert!(
        !bad.success && bad.stderr.contains("unknown command"),
        "{}",
        bad.stderr
    );
    let bad_n = lab(&["up", "-n", "zero"]);
    assert!(
        !bad_n.success && bad_n.stderr.contains("-n must be"),
        "{}",
        bad_n.stderr
    );
}

#[test]
fn shellcheck_clean() {
    for name in ["lab", "registry"] {
        let script = format!("{}/../deploy/{name}", env!("CARGO_MANIFEST_DIR"));
        match Command::new("shellcheck").arg(&script).output() {
            Ok(out) => assert!(
                out.status.success(),
                "shellcheck deploy/{name}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            ),
            Err(e) => panic!(
                "shellcheck is needed to check deploy/{name} ({e}): apt-get install shellcheck"
            ),
        }
    }
}
