//! Figures shared by the cluster benchmarks (`src/bin/*_bench.rs`): wall clock, percentiles and
//! the JSON summary of a list of samples.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Milliseconds since the Unix epoch (the clock daemons and tasks on this machine share).
pub fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// `x` with one decimal.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// p-th percentile (nearest rank) of `v`; NaN when `v` is empty.
pub fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

/// Count, p50, p90, p99, max and min of `v`, one decimal each.
pub fn summary(v: &[f64]) -> Value {
    json!({
        "n": v.len(),
        "p50": round1(pct(v, 50.0)),
        "p90": round1(pct(v, 90.0)),
        "p99": round1(pct(v, 99.0)),
        "max": round1(pct(v, 100.0)),
        "min": round1(pct(v, 0.0)),
    })
}

/// utime + stime of `pid`, in seconds (0 when it is gone).
pub fn cpu_secs(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is field 3, utime 14, stime 15 → indexes 11, 12.
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// VmRSS of `pid`, in KiB (0 when it is gone).
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(
            (pct(&v, 0.0), pct(&v, 50.0), pct(&v, 100.0)),
            (1.0, 3.0, 5.0)
        );
        assert!(pct(&[], 50.0).is_nan());
        assert_eq!(summary(&v)["p90"], 5.0);
    }
}

/// `service ls` limited to `service`, printing its NAME and REPLICAS (`running/desired`): the
/// same words for mini and Docker, what a user watches.
pub fn replicas_query(service: &str) -> [String; 6] {
    [
        "service".into(),
        "ls".into(),
        "--filter".into(),
        format!("name={service}"),
        "--format".into(),
        "{{.Name}} {{.Replicas}}".into(),
    ]
}

/// (running, desired) of `service` in the output of [`replicas_query`]. Docker adds a
/// suffix such as ` (max 1 per node)` after REPLICAS; it is ignored.
pub fn parse_replicas(stdout: &str, service: &str) -> Option<(usize, usize)> {
    stdout.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        if f.next() != Some(service) {
            return None;
        }
        let (r, d) = f.next()?.split_once('/')?;
        Some((r.parse().ok()?, d.parse().ok()?))
    })
}

/// `node ls` printing each node's HOSTNAME and STATUS: the same words for mini and Docker.
pub const NODE_STATUS_QUERY: [&str; 4] = ["node", "ls", "--format", "{{.Hostname}} {{.Status}}"];

/// Whether the output of [`NODE_STATUS_QUERY`] shows `hostname` Down.
pub fn shows_down(stdout: &str, hostname: &str) -> bool {
    stdout.lines().any(|l| {
        let mut f = l.split_whitespace();
        f.next() == Some(hostname) && f.next().is_some_and(|s| s.eq_ignore_ascii_case("down"))
    })
}

#[cfg(test)]
mod replicas_tests {
    use super::{parse_replicas, shows_down};

    #[test]
    fn replicas_of_the_named_service_only() {
        let out = "web-x 1/3\nweb 2/3\n";
        assert_eq!(parse_replicas(out, "web"), Some((2, 3)));
        assert_eq!(parse_replicas(out, "web-x"), Some((1, 3)));
        assert_eq!(parse_replicas(out, "db"), None);
        assert_eq!(parse_replicas("web garbage\n", "web"), None);
    }

    #[test]
    fn down_only_for_the_named_host() {
        // mini prints `Down`, Docker `Down` too; `h1` must not match `h10`.
        let out = "h1 Ready\nh10 Down\nh2 down\n";
        assert!(!shows_down(out, "h1"));
        assert!(shows_down(out, "h10"));
        assert!(shows_down(out, "h2"));
        assert!(!shows_down(out, "h3"));
    }
}
