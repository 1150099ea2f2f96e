use mini_proto::v1::{ReplicatedJob, ServiceSpec, TaskStatus};

use super::*;

fn service(mode: Mode) -> Service {
    Service {
        id: "svc1".into(),
        spec: Some(ServiceSpec {
            name: "web".into(),
            mode: Some(mode),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn task(slot: u64, node: &str, state: TaskState, message: &str) -> Task {
    Task {
        id: format!("t{slot}{node}"),
        service_id: "svc1".into(),
        service_name: "web".into(),
        slot,
        node_id: node.into(),
        status: Some(TaskStatus {
            state: state as i32,
            message: message.into(),
            ..Default::default()
        }),
        desired_state: TaskState::Running as i32,
        ..Default::default()
    }
}

/// Feeds the polls to a fresh updater and renderer; returns what was written and whether the
/// last poll converged.
fn render(service: &Service, polls: &[Vec<Task>], terminal: bool, width: u16) -> (String, bool) {
    let mut updater = Updater::for_service(service);
    let mut renderer = Renderer::new(terminal, width);
    let nodes: HashSet<String> = ["n1", "n2"].iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let mut converged = false;
    for tasks in polls {
        let (lines, c) = updater.update(Poll {
            service,
            tasks,
            active_nodes: &nodes,
            rollback: false,
        });
        for line in &lines {
            renderer.line(&mut out, line);
        }
        converged = c;
    }
    (String::from_utf8(out).unwrap(), converged)
}

const STUCK: &str = "no suitable node (insufficient resources on 2 nodes)";

fn replicated_polls() -> Vec<Vec<Task>> {
    vec![
        vec![],
        vec![
            task(1, "", TaskState::Pending, STUCK),
            task(2, "n2", TaskState::Assigned, ""),
        ],
        vec![
            task(1, "", TaskState::Pending, STUCK),
            task(2, "n2", TaskState::Running, ""),
        ],
        vec![
            task(1, "n1", TaskState::Running, ""),
            task(2, "n2", TaskState::Running, ""),
        ],
    ]
}

#[test]
fn plain_form_prints_a_line_per_change_and_says_why_a_slot_waits() {
    let (out, converged) = render(&service(Mode::Replicas(2)), &replicated_polls(), false, 0);
    assert_eq!(
        out,
        "overall progress: 0 out of 2 tasks\n\
         1/2: no suitable node (insufficient resources on 2 nodes)\n\
         2/2: assigned\n\
         2/2: running\n\
         overall progress: 1 out of 2 tasks\n\
         1/2: running\n\
         overall progress: 2 out of 2 tasks\n"
    );
    assert!(converged);
    let (_, stuck) = render(
        &service(Mode::Replicas(2)),
        &replicated_polls()[..3],
        false,
        0,
    );
    assert!(!stuck);
}

#[test]
fn terminal_form_redraws_each_slot_in_place_with_dockers_bars() {
    let (out, _) = render(&service(Mode::Replicas(2)), &replicated_polls(), true, 120);
    // Each id gets its own row (a newline the first time), then is redrawn in place.
    assert_eq!(out.matches('\n').count(), 3, "{out:?}");
    assert!(
        out.contains(
            "\x1b[2K\r2/2: running   [==================================================>] \r"
        ),
        "{out:?}"
    );
    // Assigned is 4 of 9 states: 44 %, 22 of 50 columns.
    let assigned = format!("2/2: assigned  [{}>{}] \r", "=".repeat(22), " ".repeat(28));
    assert!(out.contains(&assigned), "{out:?}");
    assert!(out.contains("1/2: no suitable node (insufficient resources on 2 nodes) \r"));
    assert!(out.contains("\x1b[2K\roverall progress: 2 out of 2 tasks \r"));
    // Rows: overall progress 0, 1/2 1, 2/2 2: the slot 1 line is 2 rows up.
    assert!(out.contains("\x1b[2A\x1b[2K\r1/2: running"), "{out:?}");
    // A narrow terminal: no bars.
    let (narrow, _) = render(&service(Mode::Replicas(2)), &replicated_polls(), true, 80);
    assert!(!narrow.contains("[="), "{narrow:?}");
    assert!(narrow.contains("2/2: running   \r"), "{narrow:?}");
}

#[test]
fn a_message_ends_the_redrawn_block() {
    let mut renderer = Renderer::new(false, 0);
    let mut out = Vec::new();
    renderer.line(
        &mut out,
        &Line::new(
            "verify",
            "Waiting 5 seconds to verify that tasks are stable...",
        ),
    );
    renderer.line(
        &mut out,
        &Line::new(
            "verify",
            "Waiting 5 seconds to verify that tasks are stable...",
        ),
    );
    renderer.message(&mut out, "verify", "Service converged");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "verify: Waiting 5 seconds to verify that tasks are stable...\nverify: Service converged\n"
    );
}

#[test]
fn jobs_count_completions() {
    let job = service(Mode::ReplicatedJob(ReplicatedJob {
        max_concurrent: 1,
        total_completions: 2,
    }));
    let (out, done) = render(
        &job,
        &[
            vec![task(1, "n1", TaskState::Running, "")],
            vec![
                task(1, "n1", TaskState::Complete, ""),
                task(2, "n1", TaskState::Running, ""),
            ],
            vec![
                task(1, "n1", TaskState::Complete, ""),
                task(2, "n1", TaskState::Complete, ""),
            ],
        ],
        false,
        0,
    );
    assert!(done);
    assert!(
        out.starts_with("job progress: 0 out of 2 complete\nactive tasks: 0 out of 1 tasks\n"),
        "{out}"
    );
    assert!(out.contains("1/2: running\n"), "{out}");
    assert!(out.contains("1/2: complete\n"), "{out}");
    assert!(
        out.ends_with("job progress: 2 out of 2 complete\nactive tasks: 0 out of 0 tasks\n"),
        "{out}"
    );
}

#[test]
fn a_global_service_has_a_line_per_node_and_ignores_nodes_that_are_down() {
    let global = service(Mode::Global(Default::default()));
    let (out, done) = render(
        &global,
        &[
            vec![],
            vec![
                task(0, "n1", TaskState::Running, ""),
                task(0, "n2", TaskState::Preparing, ""),
                task(0, "n3", TaskState::Assigned, ""),
            ],
        ],
        false,
        0,
    );
    assert!(!done, "n3 is down: counted, never running");
    assert_eq!(
        out,
        "overall progress: waiting for new tasks\n\
         overall progress: 0 out of 3 tasks\n\
         n1: running\n\
         n2: preparing\n\
         overall progress: 1 out of 3 tasks\n"
    );
}

#[test]
fn a_drain_counts_the_tasks_moved_off_the_node() {
    let tasks = vec![
        task(1, "n1", TaskState::Running, ""),
        task(2, "n1", TaskState::Shutdown, ""),
        task(3, "n2", TaskState::Running, ""),
    ];
    let (lines, done) = drain_lines("n1", &tasks, 2);
    assert!(!done);
    assert_eq!(lines[0].text, "1 out of 2 tasks moved off the node");
    assert_eq!(lines[1].id, "web.1");
    let (lines, done) = drain_lines("n2", &tasks, 1);
    assert_eq!(lines[0].text, "0 out of 1 tasks moved off the node");
    assert!(!done);
    let (_, done) = drain_lines("n3", &tasks, 0);
    assert!(done);
}
