//! Encryption at rest and autolock (issue #14, as `docker swarm update --autolock` works), end to
//! end on 3 managers (root only):
//! - what a service spec holds is never in a manager's Raft store in the clear;
//! - `swarm update --autolock=true` prints an unlock key, `swarm unlock-key` shows it on every
//!   manager; a restarted manager is locked (`info` says so, every other call is refused with
//!   Docker's words) until `swarm unlock` is given the right key, then it is back with its state;
//! - `swarm unlock-key --rotate`: a manager restarted afterwards opens with the new key, not the
//!   old one;
//! - `--autolock=false`: a restarted manager starts without a key.

use std::path::PathBuf;
use std::time::Duration;

use mini_tests::check::files_holding;
use mini_tests::{Cluster, Host, wait_for};

/// A value only the service's spec holds.
const MARKER: &str = "at-rest-marker-7f3a9c";
/// Docker's answer on a locked manager.
const LOCKED: &str = "Swarm is encrypted and needs to be unlocked";

/// Files of host `h`'s Raft store that hold `needle`.
fn raft_files_holding(h: &Host, needle: &str) -> Vec<PathBuf> {
    files_holding(&h.state_dir().join("raft"), needle.as_bytes())
}

/// The first line of host `h`'s key file kind: "plain" or "sealed".
fn key_file_kind(h: &Host) -> Result<String, String> {
    let text =
        std::fs::read_to_string(h.state_dir().join("raft/dek")).map_err(|e| e.to_string())?;
    text.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
        .ok_or(text)
}

fn wait_key_file(h: &Host, kind: &str, what: &str) -> String {
    wait_for(what, Duration::from_secs(30), || {
        let now = key_file_kind(h)?;
        if now == kind {
            std::fs::read_to_string(h.state_dir().join("raft/dek")).map_err(|e| e.to_string())
        } else {
            Err(format!("key file is {now}"))
        }
    })
}

fn swarm_state(h: &Host) -> String {
    h.info()
        .map(|i| i["swarm"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|e| e)
}

fn wait_ready_from(h: &Host, n: usize) {
    wait_for(
        &format!("{n} ready nodes in `node ls` on host {}", h.index()),
        Duration::from_secs(60),
        || {
            let out = h.listed(&["node", "ls"], "node");
            if !out.success {
                return Err(out.stderr);
            }
            let ready = out
                .json()
                .as_array()
                .map_or(0, |a| a.iter().filter(|n| n["status"] == "ready").count());
            if ready == n { Ok(()) } else { Err(out.stdout) }
        },
    );
}

#[test]
fn autolock_locks_restarted_managers_until_unlocked() {
    let mut cluster = Cluster::start(3);
    cluster.init();
    cluster.join(2, "manager");
    cluster.join(3, "manager");
    cluster.wait_nodes_ready(3);
    let (h1, h2, h3) = (cluster.host(1), cluster.host(2), cluster.host(3));

    // Encryption at rest: the spec's value is visible through the API, never in a Raft store.
    h1.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "vault",
        "--env",
        &format!("TOKEN={MARKER}"),
        "host",
        "sleep",
        "1d",
    ]);
    let inspect = h1.ok(&["service", "inspect", "vault"]).stdout;
    assert!(
        inspect.contains(MARKER),
        "the marker is in the spec: {inspect}"
    );
    h1.wait_running("vault", 1);
    for h in [&h1, &h2, &h3] {
        wait_ready_from(h, 3);
        let found = raft_files_holding(h, MARKER);
        assert!(
            found.is_empty(),
            "plaintext in host {}'s Raft store: {found:?}",
            h.index()
        );
        assert_eq!(key_file_kind(h).as_deref(), Ok("plain"), "autolock is off");
        let mode = std::fs::metadata(h.state_dir().join("raft/dek"))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
        assert_eq!(mode.ok(), Some(0o600), "the key file is private");
    }

    // Autolock on: a key is printed, every manager shows the same one.
    let out = h1.ok(&["swarm", "update", "--autolock=true"]).stdout;
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("SWMKEY-1-"))
        .unwrap_or_else(|| panic!("no unlock key printed: {out}"))
        .to_string();
    assert!(out.contains("mini swarm unlock"), "{out}");
    for h in [&h2, &h3] {
        let shown = wait_for(
            "the unlock key on every manager",
            Duration::from_secs(20),
            || {
                let out = h.mini(&["swarm", "unlock-key", "-q"]);
                if out.success {
                    Ok(out.stdout.trim().to_string())
                } else {
                    Err(out.stderr)
                }
            },
        );
        assert_eq!(shown, key, "host {}", h.index());
    }
    assert_eq!(h1.info().unwrap()["autolock_managers"], true);
    wait_key_file(&cluster.host(2), "sealed", "host 2 seals its store key");

    // A restarted manager is locked: `info` says so, everything else is refused.
    cluster.restart_host(2);
    let h2 = cluster.host(2);
    assert_eq!(swarm_state(&h2), "locked");
    let err = h2.fails(&["node", "ls"]);
    assert!(err.contains(LOCKED), "{err}");
    let err = h2.fails(&["service", "ls"]);
    assert!(err.contains(LOCKED), "{err}");
    let err = h2
        .mini_with_input(&["swarm", "unlock"], b"not-a-key\n")
        .stderr;
    assert!(err.contains("invalid unlock key"), "{err}");
    let wrong = format!("SWMKEY-1-{}", "A".repeat(43));
    let out = h2.mini_with_input(&["swarm", "unlock"], format!("{wrong}\n").as_bytes());
    assert!(
        !out.success && out.stderr.contains("invalid key provided"),
        "{out:?}"
    );
    assert_eq!(swarm_state(&h2), "locked", "a wrong key changes nothing");
    let out = h2.mini_with_input(&["swarm", "unlock"], format!("{key}\n").as_bytes());
    assert!(
        out.success,
        "unlock with the right key: {out:?}\n{}",
        h2.log()
    );
    assert_eq!(swarm_state(&h2), "active");
    wait_ready_from(&h2, 3);
    let inspect = h2.ok(&["service", "inspect", "vault"]).stdout;
    assert!(
        inspect.contains(MARKER),
        "the unlocked manager has the store: {inspect}"
    );
    let err = h2
        .mini_with_input(&["swarm", "unlock"], format!("{key}\n").as_bytes())
        .stderr;
    assert!(err.contains("swarm is not locked"), "{err}");

    // Rotation: a manager restarted afterwards needs the new key.
    let before = wait_key_file(&cluster.host(3), "sealed", "host 3 seals its store key");
    let rotated = cluster
        .host(1)
        .ok(&["swarm", "unlock-key", "--rotate", "-q"])
        .stdout;
    let rotated = rotated.trim().to_string();
    assert!(
        rotated.starts_with("SWMKEY-1-") && rotated != key,
        "{rotated}"
    );
    wait_for(
        "host 3 seals its key with the new unlock key",
        Duration::from_secs(30),
        || {
            let now = std::fs::read_to_string(cluster.host(3).state_dir().join("raft/dek"))
                .map_err(|e| e.to_string())?;
            if now != before {
                Ok(())
            } else {
                Err("unchanged".into())
            }
        },
    );
    cluster.restart_host(3);
    let h3 = cluster.host(3);
    assert_eq!(swarm_state(&h3), "locked");
    let out = h3.mini_with_input(&["swarm", "unlock"], format!("{key}\n").as_bytes());
    assert!(
        !out.success && out.stderr.contains("invalid key provided"),
        "old key: {out:?}"
    );
    let out = h3.mini_with_input(&["swarm", "unlock"], format!("{rotated}\n").as_bytes());
    assert!(out.success, "unlock with the rotated key: {out:?}");
    wait_ready_from(&h3, 3);

    // Autolock off: the key is stored unsealed again and a restart needs nothing.
    let out = cluster
        .host(1)
        .ok(&["swarm", "update", "--autolock=false"])
        .stdout;
    assert!(!out.contains("SWMKEY"), "{out}");
    let err = cluster.host(1).fails(&["swarm", "unlock-key"]);
    assert!(err.contains("no unlock key is set"), "{err}");
    wait_key_file(&cluster.host(2), "plain", "host 2 stores its key unsealed");
    cluster.restart_host(2);
    assert_eq!(swarm_state(&cluster.host(2)), "active");
    wait_ready_from(&cluster.host(2), 3);
    cluster.host(2).wait_running("vault", 1);
}
