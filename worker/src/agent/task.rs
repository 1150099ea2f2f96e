//! One task's life on this node: PREPARING → READY → STARTING → RUNNING →
//! COMPLETE | FAILED | SHUTDOWN, reporting each step.

use std::sync::Arc;

use mini_proto::v1::{Task, TaskState, TaskStatus};
use tokio::sync::watch;

use super::worker::Shared;
use crate::runtime::{TaskExit, TaskSpec, clamp_hostname};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A status in `state` stamped now.
pub(super) fn status(state: TaskState, message: &str) -> TaskStatus {
    TaskStatus {
        state: state as i32,
        timestamp_ms: now_ms(),
        message: message.into(),
        ..Default::default()
    }
}

/// A FAILED status stamped now, with the error and exit code.
pub(super) fn failed(message: &str, err: String, exit_code: i32) -> TaskStatus {
    TaskStatus {
        state: TaskState::Failed as i32,
        timestamp_ms: now_ms(),
        message: message.into(),
        err,
        exit_code,
    }
}

/// The hostname of a task: `service.slot.taskid` (Docker names containers
/// `service.slot.taskid` too).
pub fn task_hostname(task: &Task) -> String {
    let slot = if task.slot > 0 {
        task.slot.to_string()
    } else {
        task.node_id.chars().take(12).collect()
    };
    clamp_hostname(&format!("{}.{}.{}", task.service_name, slot, task.id))
}

fn hosts_file(task: &Task, hostname: &str) -> String {
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some(ip) = task.networks.first().and_then(|a| a.addr.split('/').next()) {
        hosts.push_str(&format!("{ip}\t{hostname}\n"));
    }
    hosts
}

/// Runs `task` until it ends or `stop` turns true; reports every step.
pub async fn run(task: Task, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let id = task.id.clone();
    let report = |s: TaskStatus| shared.reporter.report(&id, s);
    let stop_requested = *stop.borrow();
    if stop_requested {
        report(status(TaskState::Shutdown, "shutdown before start"));
        return;
    }
    // The executor admits only valid ids; this is the last line before the id becomes paths.
    let Some(dir) = shared.task_dir(&id) else {
        report(status(TaskState::Rejected, "invalid task id"));
        return;
    };
    report(status(TaskState::Accepted, "accepted"));
    report(status(TaskState::Preparing, "preparing"));
    shared.network.add_sandbox(&task);
    if let Err(err) = shared.network.converge().await {
        report(failed(
            "preparing failed",
            format!("network attachment failed: {err}"),
            0,
        ));
        shared.network.remove_sandbox(&id);
        let _ = shared.network.converge().await;
        return;
    }
    let resolv_conf = match super::dns_link::start(&shared, &task).await {
        Ok(resolv_conf) => resolv_conf,
        Err(err) => {
            report(failed(
                "preparing failed",
                format!("embedded DNS failed: {err}"),
                0,
            ));
            shared.network.remove_sandbox(&id);
            let _ = shared.network.converge().await;
            return;
        }
    };
    report(status(TaskState::Ready, "prepared"));
    let container = task.container.clone().unwrap_or_default();
    let hostname = task_hostname(&task);
    let spec = TaskSpec {
        task_id: id.clone(),
        hostname: hostname.clone(),
        netns: shared.network.driver().sandbox_netns_path(&id),
        args: container.args.clone(),
        env: container.env.clone(),
        resolv_conf,
        hosts: hosts_file(&task, &hostname),
        dir,
    };
    report(status(TaskState::Starting, "starting"));
    let mut running = match shared.runtime.start(&spec).await {
        Ok(r) => r,
        Err(err) => {
            report(failed("starting failed", err.to_string(), 127));
            super::dns_link::stop(&shared, &id).await;
            shared.network.remove_sandbox(&id);
            let _ = shared.network.converge().await;
            return;
        }
    };
    shared.set_pid(&id, running.pid());
    // Every node learns where the task lives before anyone is told it runs.
    super::gossip_link::publish(&shared, &task).await;
    report(status(TaskState::Running, "started"));
    let ended = tokio::select! {
        exit = running.wait() => Some(exit),
        _ = stop.wait_for(|s| *s) => None,
    };
    // The tombstone goes out before the task stops answering, so peers stop
    // sending to it first.
    super::gossip_link::withdraw(&shared, &task).await;
    let (exit, stopped) = match ended {
        Some(exit) => (exit, false),
        None => (running.stop(shared.config.stop_grace).await, true),
    };
    let exit = match exit {
        Ok(exit) => exit,
        Err(err) => {
            tracing::warn!(task = %id, %err, "waiting for the task failed");
            TaskExit::Signaled(9)
        }
    };
    shared.clear_pid(&id);
    let final_status = if stopped {
        let mut s = status(TaskState::Shutdown, "shutdown");
        s.exit_code = exit.exit_code();
        s
    } else if exit.success() {
        let mut s = status(TaskState::Complete, "finished");
        s.exit_code = 0;
        s
    } else {
        let detail = match exit {
            TaskExit::Exited(code) => format!("task: non-zero exit ({code})"),
            TaskExit::Signaled(sig) => format!("task: killed by signal {sig}"),
        };
        failed("task failed", detail, exit.exit_code())
    };
    // The sandbox goes first: a task reported ended holds no addresses.
    super::dns_link::stop(&shared, &id).await;
    shared.network.remove_sandbox(&id);
    if let Err(err) = shared.network.converge().await {
        tracing::warn!(task = %id, %err, "removing the task's sandbox failed");
    }
    report(final_status);
}
