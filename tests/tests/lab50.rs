//! The 50-host lab (issue #16) for real, through `deploy/lab`: `up -n 50`, 50 ready nodes, a
//! global service on an overlay network running a task on every host, `down`, and nothing
//! left — namespaces, processes (daemons and tasks), mounts, directories.
//!
//! Root only, and ignored by default: it takes minutes of a 2-core machine. Run it by hand
//! (the benchmark script runs it too):
//!
//! ```text
//! sudo -E CARGO_INCREMENTAL=0 cargo test --release -p mini-tests --test lab50 -- --ignored --nocapture
//! ```
//!
//! `MINI_LAB50_HOSTS` changes the number of hosts (default 50). The lab has a name of its own
//! (`MINI_LAB_NAME=l50p<pid>`), so a user's lab (`mini-lab`) may run beside it untouched.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mini_tests::cli::run_mini;
use mini_tests::deploy_lab::DeployLab;
use mini_tests::{Output, wait_for};

/// This test process's lab name.
fn name() -> String {
    format!("l50p{}", std::process::id())
}

fn hosts() -> usize {
    std::env::var("MINI_LAB50_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

fn lab(args: &[&str]) -> Output {
    the_lab().run(args)
}

fn the_lab() -> DeployLab {
    DeployLab::new(name(), 300)
}

/// `mini ARGS…` against host 1 of the lab.
fn h1(args: &[&str]) -> Output {
    run_mini(&format!("unix:///run/{}/h1.sock", name()), args)
}

fn lab_namespaces() -> Vec<String> {
    mini_tests::leftovers::namespaces(&name())
}

fn lab_mounts() -> Vec<String> {
    mini_tests::leftovers::mounts(&name())
}

fn lab_dirs() -> Vec<PathBuf> {
    ["/run", "/var/lib", "/var/log"]
        .iter()
        .map(|d| Path::new(d).join(name()))
        .filter(|p| p.exists())
        .collect()
}

fn ns_inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Processes in the lab's namespaces (host namespaces and every namespace file under the
/// hosts' run dirs: the tasks' sandboxes), with their command lines.
fn lab_processes() -> Vec<(i32, String)> {
    let mut inodes = HashSet::new();
    for ns in lab_namespaces() {
        inodes.extend(ns_inode(&Path::new("/run/netns").join(ns)));
    }
    let run = Path::new("/run").join(name());
    for host in std::fs::read_dir(&run).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(host.path().join("netns"))
            .into_iter()
            .flatten()
            .flatten()
        {
            inodes.extend(ns_inode(&f.path()));
        }
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let ours = std::fs::read_link(entry.path().join("ns/net"))
            .ok()
            .and_then(|l| {
                l.to_string_lossy()
                    .strip_prefix("net:[")
                    .and_then(|s| s.strip_suffix(']'))
                    .and_then(|s| s.parse::<u64>().ok())
            })
            .is_some_and(|i| inodes.contains(&i));
        if ours {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    found
}

#[test]
#[ignore = "50 hosts: minutes of the machine; run by hand or by the benchmark (see the module doc)"]
fn fifty_host_lab_up_service_down_leaves_nothing() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: deploy/lab creates network namespaces"
    );
    let n = hosts();
    assert!(
        lab_namespaces().is_empty() && lab_dirs().is_empty(),
        "a lab named {} already exists",
        name()
    );
    let guard = the_lab().down_on_drop();
    let started = Instant::now();
    let up = lab(&["up", "-n", &n.to_string()]);
    assert!(up.success, "up -n {n} failed: {}{}", up.stdout, up.stderr);
    eprintln!("up -n {n} took {:.1} s", started.elapsed().as_secs_f64());
    assert!(up.stdout.contains("'up' took"), "{}", up.stdout);

    // Every host is a ready node.
    let nodes = h1(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
    assert!(nodes.success, "{}", nodes.stderr);
    let ready: BTreeSet<&str> = nodes
        .stdout
        .lines()
        .filter_map(|l| l.strip_suffix(" Ready"))
        .collect();
    let want: BTreeSet<String> = (1..=n).map(|k| format!("lab-h{k}")).collect();
    assert_eq!(
        ready,
        want.iter().map(String::as_str).collect(),
        "node ls: {}",
        nodes.stdout
    );
    // Each namespace holds permanent entries for the other hosts (the neighbour table fix).
    let neigh = Command::new("ip")
        .args([
            "-n",
            &format!("{}-h1", name()),
            "neigh",
            "show",
            "nud",
            "permanent",
        ])
        .output()
        .expect("ip neigh");
    let permanent = String::from_utf8_lossy(&neigh.stdout).lines().count();
    assert!(
        permanent >= n - 1,
        "h1 has {permanent} permanent neighbour entries, expected one per other host"
    );

    // A global service on an overlay network: one task on every host, all running.
    let net = h1(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.150.0.0/16",
        "net50",
    ]);
    assert!(net.success, "{}", net.stderr);
    let created = Instant::now();
    let svc = h1(&[
        "service",
        "create",
        "--detach",
        "--name",
        "spread",
        "--mode",
        "global",
        "--network",
        "net50",
        "host",
        "sleep",
        "100000",
    ]);
    assert!(svc.success, "{}", svc.stderr);
    wait_for(
        &format!("{n} running tasks of spread, one on every node"),
        Duration::from_secs(300),
        || {
            let ps = h1(&[
                "service",
                "ps",
                "spread",
                "--filter",
                "desired-state=running",
                "--format",
                "{{.Node}} {{.CurrentState}}",
            ]);
            if !ps.success {
                return Err(ps.stderr);
            }
            let running: BTreeSet<&str> = ps
                .stdout
                .lines()
                .filter(|l| l.contains(" Running"))
                .filter_map(|l| l.split(' ').next())
                .collect();
            if running.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "{} of {n} nodes run a task:\n{}",
                    running.len(),
                    ps.stdout
                ))
            }
        },
    );
    eprintln!(
        "{n} global tasks running {:.1} s after service create",
        created.elapsed().as_secs_f64()
    );

    // Down, and nothing is left.
    let procs = lab_processes();
    assert!(
        procs.len() > n,
        "expected the daemons and their tasks in the lab's namespaces, found {procs:?}"
    );
    let down = lab(&["down", "--purge"]);
    assert!(down.success, "down failed: {}", down.stderr);
    drop(guard);
    assert_eq!(lab_namespaces(), Vec::<String>::new());
    assert_eq!(lab_mounts(), Vec::<String>::new());
    assert_eq!(lab_dirs(), Vec::<PathBuf>::new());
    let left: Vec<&(i32, String)> = procs
        .iter()
        .filter(|(pid, cmd)| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ") == *cmd)
        })
        .collect();
    assert!(left.is_empty(), "processes left after down: {left:?}");
}
