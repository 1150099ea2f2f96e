//! `mini daemon --metrics-addr` and `--log-format json`, through a real one-node swarm:
//! the scrape passes `promtool check metrics`, carries every family the daemon documents and
//! counts what the test did; every log line is a JSON object, and a task's lines name the task
//! and its service. Root only (the daemon runs in a host namespace of its own).

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mini_tests::{Cluster, Host, wait_for};
use serde_json::Value;

/// Inside the host's own network namespace: loopback there is the test's alone.
const METRICS_ADDR: &str = "127.0.0.1:9323";

/// Every family a manager node serves (`# TYPE` names: counters carry `_total`).
const FAMILIES: &[&str] = &[
    // Raft
    "mini_raft_term",
    "mini_raft_commit_index",
    "mini_raft_applied_index",
    "mini_raft_is_leader",
    "mini_raft_proposal_duration_seconds",
    "mini_raft_apply_duration_seconds",
    "mini_raft_log_fsync_duration_seconds",
    "mini_raft_leader_changes_total",
    "mini_raft_proposals_failed_total",
    // Store
    "mini_store_objects",
    "mini_store_tasks",
    // Scheduler and dispatcher
    "mini_scheduler_latency_seconds",
    "mini_dispatcher_sessions",
    "mini_dispatcher_heartbeats_received_total",
    // Gossip
    "mini_gossip_members",
    "mini_gossip_messages_sent_total",
    "mini_gossip_messages_received_total",
    "mini_gossip_sent_bytes_total",
    "mini_gossip_received_bytes_total",
    "mini_gossip_decrypt_failures_total",
    "mini_gossip_suspicions_refuted_total",
    // Network driver
    "mini_netdriver_operations_total",
    "mini_netdriver_operation_failures_total",
    "mini_netdriver_operation_duration_seconds",
    "mini_netdriver_vip_programming_duration_seconds",
    // DNS
    "mini_dns_queries_total",
    "mini_dns_answers_total",
    "mini_dns_nxdomain_replies_total",
    // Tasks on this node
    "mini_node_tasks",
];

fn scrape(host: &Host) -> String {
    let url = format!("http://{METRICS_ADDR}/metrics");
    let out = host.exec(&["curl", "-sS", "--fail", "--max-time", "10", &url]);
    assert!(out.success, "curl {url} failed: {}", out.stderr);
    out.stdout
}

/// The value of one series (`name{labels}` exactly as printed), if present.
fn value(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

fn promtool_check(scrape: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n--- scrape ---\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_scrape_passes_promtool_and_counts_tasks_and_dns_and_json_logs_name_tasks() {
    let cluster = Cluster::start_with(
        1,
        &[
            "--metrics-addr",
            METRICS_ADDR,
            "--log-format",
            "json",
            "--log-level",
            "debug",
        ],
    );
    let m = cluster.host(1);
    cluster.init();
    m.ok(&["network", "create", "-d", "overlay", "appnet"]);
    m.ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "--network",
        "appnet",
        "host",
        "sleep",
        "100000",
    ]);
    let tasks = m.wait_running("web", 2);
    let task_ids: BTreeSet<String> = tasks
        .iter()
        .map(|t| t["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let service_id = m.ok(&["service", "inspect", "web"]).json()[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!service_id.is_empty());

    let before = scrape(&m);
    let queries_before = value(&before, "mini_dns_queries_total{type=\"A\"}").unwrap_or(0.0);
    // One lookup with the task's resolver (busybox nslookup asks A, then AAAA).
    let vip = m.lookup("web.1", "web");
    assert_eq!(vip.len(), 1, "web resolves to its VIP: {vip:?}");

    let started = Instant::now();
    let text = wait_for(
        "the scrape to show 2 running tasks and the DNS lookup",
        Duration::from_secs(30),
        || {
            let text = scrape(&m);
            let running = value(
                &text,
                "mini_store_tasks{desired_state=\"running\",state=\"running\"}",
            );
            let on_node = value(&text, "mini_node_tasks{state=\"running\"}");
            let queries = value(&text, "mini_dns_queries_total{type=\"A\"}").unwrap_or(0.0);
            let answers = value(&text, "mini_dns_answers_total{type=\"A\"}").unwrap_or(0.0);
            if running == Some(2.0)
                && on_node == Some(2.0)
                && queries > queries_before
                && answers >= 1.0
            {
                Ok(text)
            } else {
                Err(format!(
                    "store running {running:?}, node running {on_node:?}, A queries \
                     {queries} (before {queries_before}), A answers {answers}"
                ))
            }
        },
    );
    eprintln!(
        "scrape: {} bytes, {} lines, waited {:?}",
        text.len(),
        text.lines().count(),
        started.elapsed()
    );
    promtool_check(&text);
    let types: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let missing: Vec<&&str> = FAMILIES.iter().filter(|f| !types.contains(**f)).collect();
    assert!(missing.is_empty(), "families missing: {missing:?}\n{text}");
    // What this test did shows in the numbers.
    assert_eq!(value(&text, "mini_raft_is_leader"), Some(1.0), "{text}");
    assert!(
        value(&text, "mini_raft_term").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert!(
        value(&text, "mini_raft_applied_index").unwrap_or(0.0) >= 4.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "mini_store_objects{kind=\"service\"}"),
        Some(1.0)
    );
    assert!(
        value(&text, "mini_scheduler_latency_seconds_count").unwrap_or(0.0) >= 2.0,
        "both tasks were scheduled: {text}"
    );
    assert_eq!(value(&text, "mini_dispatcher_sessions"), Some(1.0));
    assert!(
        value(
            &text,
            "mini_netdriver_operations_total{op=\"create_sandbox\"}"
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{text}"
    );
    assert!(
        value(
            &text,
            "mini_netdriver_vip_programming_duration_seconds_count"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    // Nothing else is served.
    let other = m.exec(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{METRICS_ADDR}/other"),
    ]);
    assert_eq!(other.stdout.trim(), "404");

    // JSON logs: every line parses; the task's lines name the task, its service and the node.
    let node_id = m.node_id();
    let log = m.log();
    let mut task_lines = 0;
    for (n, line) in log
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line {} is not JSON ({e}): {line}", n + 1));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
        let Some(spans) = v["spans"].as_array() else {
            continue;
        };
        let task_span = spans
            .iter()
            .find(|s| s["name"] == "task" && s["service_id"] == service_id.as_str());
        if let Some(span) = task_span {
            let id = span["task_id"].as_str().unwrap_or_default();
            assert!(task_ids.contains(id), "task line names task {id:?}: {line}");
            assert_eq!(v["node_id"], node_id.as_str(), "{line}");
            task_lines += 1;
        }
    }
    assert!(
        task_lines >= 2,
        "no log line carries a web task's span:\n{log}"
    );
}
