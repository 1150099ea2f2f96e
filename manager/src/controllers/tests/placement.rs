//! Placement through the controllers: a node that loses a label a task needs.

use super::{Harness, describe, live_tasks, state};
use mini_proto::v1::TaskState;

#[tokio::test]
async fn a_task_whose_node_loses_a_needed_label_is_replaced_where_it_fits() {
    let h = Harness::start().await;
    h.edit_node("n2", |n| {
        n.spec
            .get_or_insert_default()
            .labels
            .insert("zone".into(), "east".into());
    })
    .await;
    h.create_service("db", 1, |s| {
        s.constraints = vec!["node.labels.zone==east".into()];
    })
    .await;
    let first = h.wait_assigned("db", 1, &[]).await.remove(0);
    assert_eq!(first.node_id, "n2");
    // The label moves from n2 to n3: the task on n2 is shut down and replaced on n3.
    h.edit_node("n2", |n| {
        n.spec.get_or_insert_default().labels.remove("zone");
    })
    .await;
    h.edit_node("n3", |n| {
        n.spec
            .get_or_insert_default()
            .labels
            .insert("zone".into(), "east".into());
    })
    .await;
    let moved = h
        .wait("db's replacement on n3", |t| {
            let live = live_tasks(t, "db");
            match live.as_slice() {
                [task] if task.id != first.id && state(task) >= TaskState::Assigned => {
                    Ok(task.clone())
                }
                _ => Err(describe(t, "db")),
            }
        })
        .await;
    assert_eq!(moved.node_id, "n3");
    assert_eq!(moved.slot, first.slot);
    let old = h.store.view(|t| t.tasks[&first.id].clone());
    assert_eq!(old.desired_state(), TaskState::Shutdown, "kept as history");
    h.controllers.stop().await;
}
