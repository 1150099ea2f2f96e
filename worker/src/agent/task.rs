//! One task's life on this node: PREPARING → READY → STARTING → RUNNING →
//! COMPLETE | FAILED | SHUTDOWN, reporting each step.

use std::sync::Arc;
use std::time::Duration;

use mini_netdriver::Kernel;
use mini_proto::v1::{ContainerSpec, Task, TaskState, TaskStatus};
use tokio::sync::watch;

use super::executor::ExecTargets;
use super::worker::Shared;
use crate::runtime::image::{ImageRootfs, ImageTask, Limits, LogOptions, Mount, MountKind};
use crate::runtime::{ExecTarget, RuntimeError, TaskExit, TaskSpec, clamp_hostname};

/// The image name of the `host` runtime (the node's own filesystem).
pub const HOST_IMAGE: &str = "host";

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

/// Parses Docker's size syntax (`10m`, `512k`, `1g`, `100` bytes; `b`
/// suffix optional), as `--log-opt max-size` takes it.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, unit) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = digits.parse().ok()?;
    (n >= 0.0).then_some((n * unit as f64) as u64)
}

/// The log rotation `--log-opt` asks for (Docker's defaults otherwise).
pub fn log_options(
    options: &std::collections::HashMap<String, String>,
) -> Result<LogOptions, String> {
    let mut log = LogOptions::default();
    for (key, value) in options {
        match key.as_str() {
            "max-size" => {
                log.max_size = parse_size(value)
                    .ok_or_else(|| format!("invalid value for log-opt max-size: {value}"))?;
            }
            "max-file" => {
                log.max_file = value
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("invalid value for log-opt max-file: {value}"))?;
            }
            other => return Err(format!("unknown log opt '{other}' for local log driver")),
        }
    }
    Ok(log)
}

/// The runtime options of an image task, from its container spec.
fn image_task<K: Kernel>(
    shared: &Shared<K>,
    container: &ContainerSpec,
    image: ImageRootfs,
    container_id: &str,
    log: LogOptions,
) -> Result<ImageTask, String> {
    let mounts = container
        .mounts
        .iter()
        .map(|m| {
            let kind = match m.r#type.as_str() {
                "bind" => MountKind::Bind,
                "volume" | "" => MountKind::Volume,
                "tmpfs" => MountKind::Tmpfs,
                other => {
                    return Err(format!(
                        "invalid mount type {other:?}: bind, volume or tmpfs"
                    ));
                }
            };
            let source = if kind == MountKind::Volume && m.source.is_empty() {
                // An anonymous volume: Docker names it with 64 random hex digits.
                hex_id()
            } else {
                m.source.clone()
            };
            Ok(Mount {
                kind,
                source,
                target: m.target.clone(),
                read_only: m.read_only,
                tmpfs_size: m.tmpfs_size,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let limits = container.limits.unwrap_or_default();
    let nonneg = |v: i64, what: &str| {
        u64::try_from(v).map_err(|_| format!("invalid {what}: {v} is negative"))
    };
    Ok(ImageTask {
        image,
        entrypoint: crate::runtime::image::entrypoint_override(&container.entrypoint),
        user: container.user.clone(),
        workdir: container.workdir.clone(),
        mounts,
        read_only: container.read_only,
        limits: Limits {
            nano_cpus: nonneg(limits.nano_cpus, "--limit-cpu")?,
            memory_bytes: nonneg(limits.memory_bytes, "--limit-memory")?,
            pids: nonneg(limits.pids, "--limit-pids")?,
        },
        init: container.init,
        volumes_dir: shared.config.state_dir.join("volumes"),
        container_dir: shared
            .config
            .state_dir
            .join("containers")
            .join(container_id),
        log,
    })
}

fn hex_id() -> String {
    use rand10::RngExt;
    let bytes: [u8; 32] = rand10::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `task` until it ends or `stop` turns true; reports every step.
pub async fn run<K: Kernel + 'static>(
    task: Task,
    shared: Arc<Shared<K>>,
    execs: Arc<ExecTargets>,
    mut stop: watch::Receiver<bool>,
) {
    let id = task.id.clone();
    let received = std::time::Instant::now();
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
    let container = task.container.clone().unwrap_or_default();
    let is_host = container.image == HOST_IMAGE;
    // The image first: a task whose image is missing makes nothing.
    let (runtime, image) = if is_host {
        (Arc::clone(&shared.runtimes.host), None)
    } else {
        let Some(images) = &shared.runtimes.images else {
            report(failed(
                "preparing failed",
                format!(
                    "this node cannot run image {:?}: runc is not installed (image \"host\" runs without it)",
                    container.image
                ),
                0,
            ));
            return;
        };
        let auth = task.registry_auth.as_ref();
        let image = match images.source.resolve(&container.image, auth).await {
            Ok(image) => image,
            Err(err) => {
                report(failed("preparing failed", err, 0));
                return;
            }
        };
        if let Err(err) = images.source.hold(&image.id, &id) {
            report(failed("preparing failed", err, 0));
            return;
        }
        (Arc::clone(&images.runtime), Some(image))
    };
    let release = || {
        if let Some(images) = &shared.runtimes.images
            && !is_host
        {
            images.source.release(&id);
        }
    };
    let log = match log_options(&container.log_options) {
        Ok(log) => log,
        Err(err) => {
            report(failed("preparing failed", err, 0));
            release();
            return;
        }
    };
    let container_id = crate::runtime::runc::container_id(&id);
    let image = match image
        .map(|image| image_task(&shared, &container, image, &container_id, log))
        .transpose()
    {
        Ok(image) => image,
        Err(err) => {
            report(failed("preparing failed", err, 0));
            release();
            return;
        }
    };
    shared.network.add_sandbox(&task);
    if let Err(err) = shared.network.converge().await {
        report(failed(
            "preparing failed",
            format!("network attachment failed: {err}"),
            0,
        ));
        shared.network.remove_sandbox(&id);
        let _ = shared.network.converge().await;
        release();
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
            release();
            return;
        }
    };
    report(status(TaskState::Ready, "prepared"));
    let hostname = match (&image, container.hostname.as_str()) {
        (_, h) if !h.is_empty() => clamp_hostname(h),
        (Some(_), _) => container_id[..12].to_string(),
        (None, _) => task_hostname(&task),
    };
    let spec = TaskSpec {
        task_id: id.clone(),
        hostname: hostname.clone(),
        netns: shared.network.driver().sandbox_netns_path(&id),
        args: container.args.clone(),
        env: container.env.clone(),
        resolv_conf,
        hosts: hosts_file(&task, &hostname),
        dir,
        stop_signal: container.stop_signal.clone(),
        image,
    };
    let grace = match container.stop_grace_period_ms {
        0 => shared.config.stop_grace,
        ms => Duration::from_millis(ms),
    };
    report(status(TaskState::Starting, "starting"));
    let mut running = match runtime.start(&spec).await {
        Ok(r) => r,
        Err(err) => {
            let message = match &err {
                RuntimeError::StartFailed { message, .. } => message.clone(),
                RuntimeError::InvalidSpec { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            report(failed("starting failed", message, 127));
            super::dns_link::stop(&shared, &id).await;
            shared.network.remove_sandbox(&id);
            let _ = shared.network.converge().await;
            release();
            return;
        }
    };
    execs.insert(
        &id,
        Arc::clone(&runtime),
        ExecTarget {
            task_id: id.clone(),
            pid: running.pid(),
        },
    );
    // Every node learns where the task lives before anyone is told it runs.
    super::gossip_link::publish(&shared, &task).await;
    report(status(TaskState::Running, "started"));
    tracing::info!(
        task = %id,
        runtime = runtime.name(),
        start_ms = received.elapsed().as_secs_f64() * 1000.0,
        "task running"
    );
    let ended = tokio::select! {
        exit = running.wait() => Some(exit),
        _ = stop.wait_for(|s| *s) => None,
    };
    // The tombstone goes out before the task stops answering, so peers stop
    // sending to it first.
    super::gossip_link::withdraw(&shared, &task).await;
    let (exit, stopped) = match ended {
        Some(exit) => (exit, false),
        None => (running.stop(grace).await, true),
    };
    let exit = match exit {
        Ok(exit) => exit,
        Err(err) => {
            tracing::warn!(task = %id, %err, "waiting for the task failed");
            TaskExit::Signaled(9)
        }
    };
    execs.remove(&id);
    running.remove().await;
    release();
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
            TaskExit::OomKilled => "OOM killed".to_string(),
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
