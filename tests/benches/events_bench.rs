//! How fast `mini events` delivers events (issue #15), on a 2-host cluster (root only):
//!
//! 1. `live`: a `host sleep` service scaled from 0 to `REPLICAS` (200) while `mini events
//!    --format json --filter type=task` runs; counts the task events received until every task
//!    was reported running, the seconds from the scale command to that last event, the events
//!    per second over that window, and the delay from each event's time (when the manager
//!    derived it) to the moment this process read its line (p50/p99 ms).
//! 2. `replay`: `mini events --since 10m --until 0s --filter type=task` (the manager's kept
//!    history, at most 1,000 events): events printed, wall seconds of the whole command
//!    (CLI start, connect, stream, exit) and events per second.
//!
//! Prints one JSON object. Uses `MINI_BIN` if set, else builds the debug binary.
//!
//! `sudo -E cargo test -p mini-tests --bench events_bench` (debug build, test profile)

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mini_tests::Cluster;
use mini_tests::bench::{pct, round1};
use mini_tests::binary::mini_binary;
use serde_json::{Value, json};

const REPLICAS: usize = 200;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let cluster = Cluster::start(2);
    cluster.init();
    cluster.join_all();
    let m = cluster.host(1);
    m.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "burst",
        "--replicas",
        "0",
        "host",
        "sleep",
        "1d",
    ]);
    let mut child = Command::new(mini_binary())
        .args([
            "events",
            "--format",
            "json",
            "--filter",
            "type=task",
            "--filter",
            "service=burst",
        ])
        .env("MINI_HOST", m.socket())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run mini events");
    let stdout = child.stdout.take().expect("piped stdout");
    // Let the stream subscribe before the scale (nothing to wait on: no event is expected).
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let scale = format!("burst={REPLICAS}");
    m.ok(&["service", "scale", "-d", &scale]);
    let mut running = BTreeSet::new();
    let mut events = 0usize;
    let mut lags_ms = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut last = started;
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let received = now_ns();
        let event: Value = serde_json::from_str(&line).expect("json event");
        events += 1;
        last = Instant::now();
        let time = event["timeNano"].as_i64().unwrap_or(received);
        lags_ms.push((received - time) as f64 / 1e6);
        if event["Actor"]["Attributes"]["state.new"] == "running" {
            running.insert(
                event["Actor"]["ID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        if running.len() >= REPLICAS || Instant::now() > deadline {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let window = (last - started).as_secs_f64();
    let live = json!({
        "replicas": REPLICAS,
        "tasks_seen_running": running.len(),
        "task_events": events,
        "seconds_scale_to_last_running_event": round1(window),
        "events_per_second": round1(events as f64 / window),
        "delivery_lag_ms_p50": round1(pct(&lags_ms, 50.0)),
        "delivery_lag_ms_p99": round1(pct(&lags_ms, 99.0)),
    });

    let replay_start = Instant::now();
    let out = m.ok(&[
        "events",
        "--since",
        "10m",
        "--until",
        "0s",
        "--filter",
        "type=task",
        "--format",
        "json",
    ]);
    let replay_secs = replay_start.elapsed().as_secs_f64();
    let replayed = out.stdout.lines().count();
    let replay = json!({
        "events": replayed,
        "seconds": (replay_secs * 1000.0).round() / 1000.0,
        "events_per_second": round1(replayed as f64 / replay_secs),
    });
    m.ok(&["service", "rm", "burst"]);
    println!("{}", json!({ "live": live, "replay": replay }));
}
