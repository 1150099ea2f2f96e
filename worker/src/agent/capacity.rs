//! What this node offers tasks: its CPUs and memory, as Docker reports them in
//! a node's description (`runtime.NumCPU()` billionths and `MemTotal`), and
//! what it says of itself: platform and engine labels.

use std::collections::HashMap;

use mini_proto::v1::{NodeDescription, Platform, Resources};

/// The node's description: its platform as Docker names it (`linux`, and the
/// architecture as `uname -m` prints it: `x86_64`, `aarch64`) and the
/// daemon's `--label`s and version.
pub fn node_description(engine_labels: &HashMap<String, String>) -> NodeDescription {
    NodeDescription {
        platform: Some(Platform {
            os: std::env::consts::OS.to_owned(),
            architecture: std::env::consts::ARCH.to_owned(),
        }),
        engine_labels: engine_labels.clone(),
        // The workspace's version: the daemon and the `mini` binary are one crate version.
        engine_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// The node's capacity: every CPU this process may run on and the memory
/// `/proc/meminfo` reports as `MemTotal`. Unknown parts are 0 (the scheduler
/// then places no task that reserves them here, as swarmkit does).
pub fn node_capacity() -> Resources {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get() as i64);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total(&text))
        .unwrap_or(0);
    Resources {
        nano_cpus: cpus * 1_000_000_000,
        memory_bytes: memory,
        pids: 0,
    }
}

/// `MemTotal:  16315580 kB` → bytes.
fn mem_total(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let value: i64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_reads_kilobytes() {
        let text = "MemTotal:       16315580 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(text), Some(16_315_580 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total("MemTotal: lots kB\n"), None);
    }

    #[test]
    fn this_node_reports_cpus_and_memory() {
        let c = node_capacity();
        assert!(c.nano_cpus >= 1_000_000_000, "{c:?}");
        assert!(c.memory_bytes > 0, "{c:?}");
    }
}
