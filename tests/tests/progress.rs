//! Convergence progress and the event stream (issue #15), through the real CLI on a 2-host
//! cluster (root only): `service create` waits until its tasks run and prints Docker's
//! progress (the plain form: stdout is a pipe here), `-d` returns at once, a task that cannot
//! be placed is shown with the scheduler's reason; `mini events` sees creates, scales, removes
//! and a node going down.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mini_tests::{Cluster, spawn_mini, wait_for};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(90);

fn cluster() -> Cluster {
    let cluster = Cluster::start(2);
    cluster.init();
    cluster.join_all();
    cluster
}

#[test]
fn service_create_and_scale_wait_until_tasks_run_and_say_what_is_stuck() {
    let cluster = cluster();
    let m = cluster.host(1);

    let out = m.ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "host",
        "sleep",
        "100001",
    ]);
    // Returned only now: both tasks run.
    let running = m.running_tasks("web");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(running.len(), 2, "stdout: {}", out.stdout);
    // The service id first, as Docker prints it; then the progress, one plain line per change.
    let id = lines[0];
    let inspected = m.ok(&["service", "inspect", id]).json();
    assert_eq!(inspected[0]["name"], "web", "{}", out.stdout);
    for expected in [
        "overall progress: 0 out of 2 tasks",
        "1/2: running",
        "2/2: running",
        "overall progress: 2 out of 2 tasks",
    ] {
        assert!(
            lines.contains(&expected),
            "no {expected:?} in {}",
            out.stdout
        );
    }
    assert!(
        lines.iter().any(|l| l.starts_with("verify: Waiting ")
            && l.ends_with("to verify that tasks are stable...")),
        "{}",
        out.stdout
    );
    assert_eq!(
        lines.last(),
        Some(&"verify: Service converged"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains('\x1b'),
        "no cursor movement on a pipe: {:?}",
        out.stdout
    );

    // -d: the id, and nothing else.
    let out = m.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "quick",
        "--replicas",
        "2",
        "host",
        "sleep",
        "100002",
    ]);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);

    // scale waits too.
    let out = m.ok(&["service", "scale", "web=3"]);
    assert!(
        out.stdout.starts_with("web scaled to 3\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("overall progress: 3 out of 3 tasks\n")
            && out.stdout.ends_with("verify: Service converged\n"),
        "{}",
        out.stdout
    );
    assert_eq!(m.running_tasks("web").len(), 3);

    // A job: waited for until its completions are done.
    let out = m.ok(&[
        "service",
        "create",
        "--name",
        "once",
        "--mode",
        "replicated-job",
        "--replicas",
        "2",
        "host",
        "true",
    ]);
    assert!(
        out.stdout.contains("job progress: 2 out of 2 complete\n")
            && out.stdout.ends_with("job complete\n"),
        "{}",
        out.stdout
    );

    // A drain waits until no task is left on the node.
    let out = m.ok(&["node", "update", "--availability", "drain", "h2"]);
    assert!(
        out.stdout.ends_with("verify: Node drained\n"),
        "{}",
        out.stdout
    );
    let left: Vec<Value> = m
        .tasks("web")
        .into_iter()
        .filter(|t| t["node"] == "h2" && t["current_state"] == "Running")
        .collect();
    assert!(left.is_empty(), "still on h2 after the drain: {left:?}");
    m.ok(&["node", "update", "--availability", "active", "h2"]);

    // Tasks no node can take: the wait goes on (no timeout) and says why, per slot.
    for (name, flags, reason) in [
        (
            "nowhere",
            ["--constraint", "node.labels.zone==nowhere"],
            "no suitable node (scheduling constraints not satisfied on 2 nodes)",
        ),
        (
            "huge",
            ["--reserve-memory", "100T"],
            "no suitable node (insufficient resources on 2 nodes)",
        ),
    ] {
        let mut args = vec!["service", "create", "--name", name, "--replicas", "2"];
        args.extend(flags);
        args.extend(["host", "sleep", "100003"]);
        let mut cli = spawn_mini(&m.socket(), &args);
        let started = Instant::now();
        wait_for(
            &format!("{name}: the reason in the progress"),
            DEADLINE,
            || {
                let lines = cli.lines();
                let want = [format!("1/2: {reason}"), format!("2/2: {reason}")];
                if want.iter().all(|w| lines.contains(w)) {
                    Ok(())
                } else {
                    Err(format!("{lines:?}"))
                }
            },
        );
        // Still waiting a while later: stuck is not an error, and there is no timeout.
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            cli.exited(),
            None,
            "{name}: the CLI gave up after {:?}: {:?}",
            started.elapsed(),
            cli.lines()
        );
        assert!(
            cli.lines()
                .contains(&"overall progress: 0 out of 2 tasks".to_string()),
            "{:?}",
            cli.lines()
        );
        cli.kill();
        // Killing the CLI leaves the service as it was: it is the swarm that converges.
        m.ok(&["service", "inspect", name]);
        m.ok(&["service", "rm", name]);
    }
}

/// The events printed so far, parsed (`--format json`: one object per line).
fn events(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn attr<'a>(e: &'a Value, key: &str) -> &'a str {
    e["Actor"]["Attributes"][key].as_str().unwrap_or_default()
}

fn summary(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["Type"].as_str().unwrap_or_default(),
                e["Action"].as_str().unwrap_or_default(),
                attr(e, "name"),
                serde_json::to_string(&e["Actor"]["Attributes"]).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until an event passes `pred`; returns it.
fn wait_event(stream: &mini_tests::Spawned, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, DEADLINE, || {
        let all = events(&stream.lines());
        all.iter()
            .find(|e| pred(e))
            .cloned()
            .ok_or_else(|| summary(&all))
    })
}

#[test]
fn events_show_creates_scales_removes_and_a_node_going_down() {
    let mut cluster = cluster();
    let m = cluster.host(1);
    let stream = spawn_mini(&m.socket(), &["events", "--format", "json"]);
    // The stream is subscribed once it has shown a live event: a label added to a node.
    let mut n = 0;
    wait_for("the event stream to be live", DEADLINE, || {
        n += 1;
        let label = format!("probe={n}");
        m.ok(&["node", "update", "--label-add", &label, "h1"]);
        if events(&stream.lines()).iter().any(|e| e["Type"] == "node") {
            Ok(())
        } else {
            Err(format!("{:?}", stream.lines()))
        }
    });

    m.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--replicas",
        "1",
        "host",
        "sleep",
        "100004",
    ]);
    let created = wait_event(&stream, "service create", |e| {
        e["Type"] == "service" && e["Action"] == "create" && attr(e, "name") == "web"
    });
    assert_eq!(created["scope"], "swarm");
    let id = created["Actor"]["ID"].as_str().unwrap().to_string();
    assert!(created["timeNano"].as_i64().unwrap() > 0);
    assert_eq!(
        created["time"].as_i64().unwrap(),
        created["timeNano"].as_i64().unwrap() / 1_000_000_000
    );

    m.ok(&["service", "scale", "-d", "web=3"]);
    wait_event(&stream, "service update replicas 1 -> 3", |e| {
        e["Type"] == "service"
            && e["Action"] == "update"
            && e["Actor"]["ID"] == id.as_str()
            && attr(e, "replicas.old") == "1"
            && attr(e, "replicas.new") == "3"
    });
    // Task events: each of the 3 tasks reaches running.
    wait_for("3 tasks of web running in the events", DEADLINE, || {
        let all = events(&stream.lines());
        let running: BTreeSet<&str> = all
            .iter()
            .filter(|e| {
                e["Type"] == "task"
                    && attr(e, "service.name") == "web"
                    && attr(e, "state.new") == "running"
            })
            .map(|e| e["Actor"]["ID"].as_str().unwrap_or_default())
            .collect();
        if running.len() == 3 {
            Ok(())
        } else {
            Err(summary(&all))
        }
    });

    m.ok(&["service", "rm", "web"]);
    wait_event(&stream, "service remove", |e| {
        e["Type"] == "service" && e["Action"] == "remove" && e["Actor"]["ID"] == id.as_str()
    });

    // The worker's daemon stops: its node goes down.
    let h2 = cluster.host(2).node_id();
    cluster.stop_host(2);
    wait_event(&stream, "node h2 down", |e| {
        e["Type"] == "node"
            && e["Actor"]["ID"] == h2.as_str()
            && attr(e, "state.old") == "ready"
            && attr(e, "state.new") == "down"
    });

    // The kept history: --since/--until and filters; it ends by itself at --until.
    let m = cluster.host(1);
    let out = m.ok(&[
        "events",
        "--since",
        "10m",
        "--until",
        "0s",
        "--filter",
        "type=service",
        "--filter",
        "event=create",
    ]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert!(
        lines[0].contains(&format!(" service create {id} (name=web)")),
        "Docker's text form: {}",
        out.stdout
    );
    let err = m.fails(&["events", "--filter", "colour=red"]);
    assert!(err.contains("invalid filter 'colour'"), "{err}");
    drop(stream);
}
