//! `deploy/vm` for real: three QEMU VMs (each its own kernel) booted from the Debian image
//! `deploy/vm image` builds, the swarm walkthrough across them, a VM powered off and on again,
//! and `down` leaving nothing behind.
//!
//! These tests boot real VMs: they need root, qemu-system-x86 and mmdebstrap (`.ci/run`
//! installs them from bookworm-backports), the image (built on first use into
//! /var/cache/mini-vm, ~2-4 min, then cached) and 10-15 minutes under TCG. They run one at a
//! time (two 3-VM clusters at once would only slow each other down on a small machine).
//! `three_managers_fail_over` is `#[ignore]`d: under TCG on a busy machine its three managers
//! can miss Raft's 1-2 s election timeout and answer "no quorum" for a while (run it with
//! `--ignored` on a quiet machine).
//! `cargo test -p mini-tests --test vm -- --nocapture` prints every step's timing.
//! The cluster has a name of its own (`MINI_VM_NAME=mvm<pid>`), so a user's `deploy/vm`
//! cluster (`mini-vm-net`, `/run/mini-vm`) is never touched; the image cache is shared.

use std::cell::Cell;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mini_tests::Output;
use mini_tests::binary::mini_binary;

thread_local! {
    /// Tells the clusters of two tests of this process apart (each test has its own thread).
    static SUFFIX: Cell<&'static str> = const { Cell::new("") };
}

/// Held by a test while its cluster exists: the VM tests of this process run one at a time.
fn one_cluster_at_a_time() -> MutexGuard<'static, ()> {
    static CLUSTER: Mutex<()> = Mutex::new(());
    // A test that failed while holding it poisoned it; the next one still runs.
    CLUSTER.lock().unwrap_or_else(|e| e.into_inner())
}

/// This test's cluster name (at most 12 characters, as deploy/vm requires).
fn name() -> String {
    format!("mvm{}{}", std::process::id(), SUFFIX.with(Cell::get))
}

fn vm(args: &[&str]) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/vm");
    let out = Command::new(script)
        .args(args)
        .env("MINI_VM_NAME", name())
        .env("MINI_BIN", mini_binary())
        .env_remove("MINI_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run deploy/vm");
    Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `deploy/vm exec K -- sh -c SCRIPT`.
fn sh(k: u32, script: &str) -> Output {
    vm(&["exec", &k.to_string(), "--", "sh", "-c", script])
}

/// Polls `check` (which says what it saw) until it holds or `limit` passes.
fn wait_for(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Duration {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => return start.elapsed(),
            Err(seen) if start.elapsed() > limit => {
                panic!("timed out after {limit:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}

/// `mini node ls` on VM K has the line "HOSTNAME STATUS" `want` (e.g. "vm3 Down").
fn node_status(k: u32, want: &str) -> Result<(), String> {
    let out = sh(k, "mini node ls --format '{{.Hostname}} {{.Status}}'");
    if out.success && out.stdout.lines().any(|l| l == want) {
        Ok(())
    } else {
        Err(format!("{}{}", out.stdout, out.stderr).replace('\n', "; "))
    }
}

/// The VXLAN forwarding and neighbour entries of every overlay namespace in VM K.
fn peer_entries(k: u32) -> String {
    let out = sh(
        k,
        "for n in /run/mini/netns/1-*; do [ -e \"$n\" ] || continue; \
         nsenter --net=\"$n\" bridge fdb show dev vxlan0; nsenter --net=\"$n\" ip neigh show dev vxlan0; done",
    );
    assert!(out.success, "peer entries of vm{k}: {}", out.stderr);
    out.stdout
}

/// qemu processes whose command line names this cluster's run directory.
fn cluster_qemus() -> Vec<String> {
    let needle = format!("/run/{}/", name());
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .filter(|c| c.contains("qemu-system") && c.contains(&needle))
                .collect()
        })
        .unwrap_or_default()
}

fn namespace_exists() -> bool {
    Path::new(&format!("/run/netns/{}-net", name())).exists()
}

/// Runs `down` when dropped, so a failing assertion leaves no VM behind.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let out = vm(&["down"]);
        if !out.success {
            eprintln!("deploy/vm down failed: {}", out.stderr);
        }
    }
}

#[test]
fn three_vms_walkthrough_stop_start_down() {
    let _one_at_a_time = one_cluster_at_a_time();
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: deploy/vm creates a network namespace, taps and VMs"
    );
    assert!(
        !namespace_exists() && cluster_qemus().is_empty(),
        "a cluster named {} already exists",
        name()
    );
    let guard = Down;

    let t = Instant::now();
    let up = vm(&["up", "-n", "3"]);
    println!("up -n 3 ({:?}):\n{}{}", t.elapsed(), up.stdout, up.stderr);
    assert!(up.success, "up failed: {}{}", up.stdout, up.stderr);
    assert!(up.stdout.contains("step timings"), "{}", up.stdout);
    for host in ["vm1", "vm2", "vm3"] {
        node_status(1, &format!("{host} Ready")).expect("every node Ready after up");
    }

    // The unit for real: systemd runs it, state under /var/lib/mini, its journal readable.
    let unit = sh(
        2,
        "systemctl is-active mini && systemctl is-enabled mini && ls /var/lib/mini && journalctl -u mini --no-pager | head -n 3",
    );
    assert!(
        unit.success,
        "mini.service in vm2: {}{}",
        unit.stdout, unit.stderr
    );
    assert!(
        unit.stdout.starts_with("active\nenabled\n"),
        "{}",
        unit.stdout
    );
    // exec passes the exit status through.
    assert!(!sh(1, "exit 3").success);
    let three = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/vm"))
        .args(["exec", "1", "--", "sh", "-c", "exit 3"])
        .env("MINI_VM_NAME", name())
        .status()
        .expect("deploy/vm exec");
    assert_eq!(three.code(), Some(3));

    let t = Instant::now();
    let demo = vm(&["demo"]);
    println!("demo ({:?}):\n{}{}", t.elapsed(), demo.stdout, demo.stderr);
    assert!(demo.success, "demo failed: {}{}", demo.stdout, demo.stderr);
    assert!(
        demo.stderr.contains("the overlay works across VMs"),
        "{}",
        demo.stderr
    );
    assert!(demo.stdout.contains("vxlan id 4097"), "{}", demo.stdout);

    // A global service on demonet: one task per VM, so vm3 has peer entries on the others.
    let t = Instant::now();
    let create = sh(
        1,
        "mini service create --detach --mode global --network demonet --name everywhere host sleep 100000",
    );
    assert!(create.success, "{}", create.stderr);
    let running_on = |host: &'static str| {
        move || {
            let out = sh(
                1,
                "mini service ps everywhere --filter desired-state=running --format '{{.Node}} {{.CurrentState}}'",
            );
            if out
                .stdout
                .lines()
                .any(|l| l.starts_with(&format!("{host} Running")))
            {
                Ok(())
            } else {
                Err(format!("{}{}", out.stdout, out.stderr).replace('\n', "; "))
            }
        }
    };
    for host in ["vm1", "vm2", "vm3"] {
        wait_for(
            &format!("the global task on {host}"),
            Duration::from_secs(300),
            running_on(host),
        );
    }
    println!("global service create → 3 tasks running: {:?}", t.elapsed());
    wait_for(
        "vm3's peer entries (dst 192.168.56.13) on vm1 and vm2",
        Duration::from_secs(120),
        || {
            let (a, b) = (peer_entries(1), peer_entries(2));
            if a.contains("dst 192.168.56.13") && b.contains("dst 192.168.56.13") {
                Ok(())
            } else {
                Err(format!("vm1: {a} vm2: {b}"))
            }
        },
    );

    // Endpoint propagation across kernels, on one clock (vm1's): from `service scale` of a
    // service pinned to vm3 to the new endpoint's neighbour entry in vm1's overlay namespace
    // (scheduling, the task's start on vm3, gossip, vm1 programming its kernel).
    let pinned = sh(
        1,
        "mini service create --detach --replicas 0 --network demonet --constraint node.hostname==vm3 \
         --name pinned host sleep 100000",
    );
    assert!(pinned.success, "{}", pinned.stderr);
    let mut samples = Vec::new();
    for replicas in 1..=3 {
        // demonet's overlay namespace by its id: the ingress network's is `1-…` as well.
        let script = format!(
            "set -e; ns=/run/mini/netns/1-$(mini network inspect --format '{{{{.ID}}}}' demonet | cut -c1-10); \
             count() {{ nsenter --net=\"$ns\" ip neigh show dev vxlan0 | wc -l; }}; \
             before=$(count); t0=$(date +%s%N); \
             mini service scale --detach pinned={replicas} >/dev/null; \
             end=$((t0 + 120000000000)); \
             while [ \"$(count)\" -le \"$before\" ]; do \
               [ \"$(date +%s%N)\" -lt \"$end\" ] || {{ echo \"no new entry after 120 s: $(count) <= $before\"; exit 1; }}; \
             done; echo $((($(date +%s%N) - t0) / 1000000))"
        );
        let out = sh(1, &script);
        assert!(
            out.success,
            "propagation sample {replicas}: {}{}",
            out.stdout, out.stderr
        );
        let ms: u64 = out
            .stdout
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{e}: {:?}", out.stdout));
        samples.push(ms);
    }
    println!("service scale (task pinned to vm3) → its neighbour entry on vm1, ms: {samples:?}");

    // Power vm3 off: Down on the manager, its peer entries purged on the others.
    let stop = vm(&["stop", "3"]);
    assert!(stop.success, "{}", stop.stderr);
    let stopped = Instant::now();
    // Each check runs `deploy/vm exec` (~1 s under TCG): the times are from the power-off.
    wait_for("vm3 Down on vm1", Duration::from_secs(180), || {
        node_status(1, "vm3 Down")
    });
    println!("vm3 powered off → Down on vm1: {:?}", stopped.elapsed());
    wait_for(
        "vm3's peer entries purged on vm1 and vm2",
        Duration::from_secs(180),
        || {
            let (a, b) = (peer_entries(1), peer_entries(2));
            if a.contains("192.168.56.13") || b.contains("192.168.56.13") {
                Err(format!("vm1: {a} vm2: {b}"))
            } else {
                Ok(())
            }
        },
    );
    println!(
        "vm3 powered off → Down on vm1 and its peer entries purged on vm1 and vm2: {:?}",
        stopped.elapsed()
    );
    let status = vm(&["status"]);
    assert!(status.stdout.contains("powered off"), "{}", status.stdout);

    // Power it on again: it rejoins, Ready, and its global task runs again.
    let t = Instant::now();
    let start = vm(&["start", "3"]);
    println!(
        "start 3 ({:?}):\n{}{}",
        t.elapsed(),
        start.stdout,
        start.stderr
    );
    assert!(start.success, "{}{}", start.stdout, start.stderr);
    node_status(1, "vm3 Ready").expect("vm3 Ready after start");
    let back = wait_for(
        "the global task on vm3 again",
        Duration::from_secs(300),
        running_on("vm3"),
    );
    println!("vm3 Ready → its task running again: {back:?}");

    // down: nothing left.
    drop(guard);
    assert_eq!(cluster_qemus(), Vec::<String>::new(), "qemu processes left");
    assert!(!namespace_exists(), "namespace left");
    for dir in ["/run", "/var/lib", "/var/log"] {
        let path = format!("{dir}/{}", name());
        assert!(!Path::new(&path).exists(), "{path} left");
    }
    let twice = vm(&["down"]);
    assert!(
        twice.success,
        "a second down must succeed: {}",
        twice.stderr
    );
}

/// The manager status column of `mini node ls` on VM K: one "HOSTNAME STATUS MANAGER" line per node.
fn managers(k: u32) -> String {
    let out = sh(
        k,
        "mini node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}'",
    );
    format!("{}{}", out.stdout, out.stderr)
}

#[test]
#[ignore = "3 managers under TCG lose quorum for a while on a busy machine (#17 note): run by hand with --ignored"]
fn three_managers_fail_over() {
    let _one_at_a_time = one_cluster_at_a_time();
    SUFFIX.with(|s| s.set("m"));
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    assert!(
        !namespace_exists(),
        "a cluster named {} already exists",
        name()
    );
    let guard = Down;
    let up = vm(&["up", "-n", "3", "--managers", "3"]);
    println!("up -n 3 --managers 3:\n{}{}", up.stdout, up.stderr);
    assert!(up.success, "up failed: {}{}", up.stdout, up.stderr);
    // `up` printed every node Ready and Reachable once; a manager's reachability is how lately
    // the leader heard from it, which a VM starved of CPU under TCG can miss for a moment.
    let settled = wait_for(
        "vm1 Leader, vm2 and vm3 Reachable",
        Duration::from_secs(60),
        || {
            let table = managers(1);
            let want = [
                "vm1 Ready Leader",
                "vm2 Ready Reachable",
                "vm3 Ready Reachable",
            ];
            if want.iter().all(|w| table.lines().any(|l| l == *w)) {
                Ok(())
            } else {
                Err(table.replace('\n', "; "))
            }
        },
    );
    println!("three managers Reachable {settled:?} after up returned");

    // The leader's VM powered off: vm2 and vm3 elect a leader and see vm1 unreachable.
    let stop = vm(&["stop", "1"]);
    assert!(stop.success, "{}", stop.stderr);
    let elected = wait_for(
        "a new leader with vm1 Down and Unreachable",
        Duration::from_secs(180),
        || {
            let t = managers(2);
            let leader = t
                .lines()
                .any(|l| l == "vm2 Ready Leader" || l == "vm3 Ready Leader");
            if leader && t.lines().any(|l| l == "vm1 Down Unreachable") {
                Ok(())
            } else {
                Err(t.replace('\n', "; "))
            }
        },
    );
    println!("leader vm1 powered off → new leader, vm1 Down Unreachable: {elected:?}");
    // The cluster still takes writes (retried: under TCG the new leader's first writes can
    // time out waiting for the other manager, as a user would see and retry).
    let wrote = wait_for(
        "a service created after the failover",
        Duration::from_secs(120),
        || {
            let out = sh(
                2,
                "mini service inspect after >/dev/null 2>&1 || \
             mini service create --detach --replicas 2 --name after host sleep 100000",
            );
            if out.success { Ok(()) } else { Err(out.stderr) }
        },
    );
    println!("new leader → a service created: {wrote:?}");

    let start = vm(&["start", "1"]);
    println!("start 1:\n{}{}", start.stdout, start.stderr);
    assert!(start.success, "{}{}", start.stdout, start.stderr);
    wait_for(
        "vm1 Ready and Reachable again",
        Duration::from_secs(180),
        || {
            let t = managers(2);
            if t.lines()
                .any(|l| l == "vm1 Ready Reachable" || l == "vm1 Ready Leader")
            {
                Ok(())
            } else {
                Err(t.replace('\n', "; "))
            }
        },
    );

    drop(guard);
    assert_eq!(cluster_qemus(), Vec::<String>::new(), "qemu processes left");
    assert!(!namespace_exists(), "namespace left");
}

#[test]
fn usage_and_bad_input() {
    let help = vm(&["--help"]);
    assert!(
        help.success && help.stdout.contains("up [-n N] [--managers M]"),
        "{}",
        help.stdout
    );
    let bad = vm(&["frobnicate"]);
    assert!(
        !bad.success && bad.stderr.contains("unknown command"),
        "{}",
        bad.stderr
    );
    let bad_n = vm(&["up", "-n", "zero"]);
    assert!(
        !bad_n.success && bad_n.stderr.contains("-n must be"),
        "{}",
        bad_n.stderr
    );
    let bad_m = vm(&["up", "-n", "2", "--managers", "3"]);
    assert!(
        !bad_m.success && bad_m.stderr.contains("--managers must be"),
        "{}",
        bad_m.stderr
    );
    let no_cmd = vm(&["exec", "1"]);
    assert!(
        !no_cmd.success && no_cmd.stderr.contains("usage"),
        "{}",
        no_cmd.stderr
    );
}
