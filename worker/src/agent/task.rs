//! One task's life on this node: PREPARING → READY → STARTING → RUNNING →
//! COMPLETE | FAILED | SHUTDOWN, reporting each step.

use std::sync::Arc;
use std::time::Duration;

use mini_netdriver::Kernel;
use mini_proto::v1::{ContainerSpec, Task, TaskState, TaskStatus};
use tokio::sync::watch;

use super::executor::ExecTargets;
use super::worker::Shared;
use crate::runtime::health::{self, Health, HealthCheck, HealthState, UNHEALTHY_ERROR};
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

/// `status` with the container's health (`starting`, `healthy`, `unhealthy`).
fn with_health(mut status: TaskStatus, health: Health) -> TaskStatus {
    status.health = health.as_str().into();
    status
}

/// Aborts the health monitor when the task's life ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
        ..Default::default()
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

fn log_running(id: &str, runtime: &str, received: std::time::Instant) {
    tracing::info!(
        task = %id,
        runtime,
        start_ms = received.elapsed().as_secs_f64() * 1000.0,
        "task running"
    );
}

/// Runs `task` until it ends or `stop` turns true; reports every step.
/// When `detach` turns true while the task runs, returns at once and leaves
/// the task running, with its sandbox and files (the daemon exits). With
/// `adopt`, the task is the one the previous daemon left running: it is
/// adopted, not started (its sandbox and files are kept as they are).
pub async fn run<K: Kernel + 'static>(
    task: Task,
    shared: Arc<Shared<K>>,
    execs: Arc<ExecTargets>,
    mut stop: watch::Receiver<bool>,
    mut detach: watch::Receiver<bool>,
    adopt: bool,
) {
    let id = task.id.clone();
    let received = std::time::Instant::now();
    // An adopted task was RUNNING: the steps before that are not reported again.
    let report = |s: TaskStatus| {
        if !(adopt && s.state() < TaskState::Running) {
            shared.reporter.report(&id, s)
        }
    };
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
    // Admission: a bounded number of starts at once (an adopted task runs already). Told to
    // stop while waiting (a duplicate found after a false node-down, a scale-down), it never
    // starts.
    let permit = if adopt {
        None
    } else {
        tokio::select! {
            permit = shared.starts.acquire() => permit.ok(),
            _ = stop.wait_for(|s| *s) => {
                report(status(TaskState::Shutdown, "shutdown before start"));
                return;
            }
            _ = detach.wait_for(|d| *d) => return,
        }
    };
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
                    "this node cannot run image {:?}: {} (image \"host\" runs without it)",
                    container.image,
                    crate::preflight::Item::Runc.missing_line()
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
    // Secrets and configs: files on a tmpfs of the task's own, unmounted when `files` drops
    // (whichever way this function returns).
    // An adopted task's files are mounted already: kept as they are, released when it ends.
    let prepared = match adopt {
        true => Ok(super::secrets::adopt(&dir)),
        false => super::secrets::prepare(&dir, &container, &shared.secrets),
    };
    let files = match prepared {
        Ok(files) => files,
        Err(err) => {
            report(failed("preparing failed", err, 0));
            release();
            return;
        }
    };
    // The health check: the service's flags over the image's HEALTHCHECK.
    let health_check = match HealthCheck::resolve(
        container.healthcheck.as_ref(),
        image
            .as_ref()
            .and_then(|i| i.image.config.healthcheck.as_ref()),
    ) {
        Ok(check) => check,
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
        files: files.as_ref().map(|f| f.files.clone()).unwrap_or_default(),
    };
    let grace = match container.stop_grace_period_ms {
        0 => shared.config.stop_grace,
        ms => Duration::from_millis(ms),
    };
    let starting = status(TaskState::Starting, "starting");
    report(match health_check {
        Some(_) => with_health(starting, Health::Starting),
        None => starting,
    });
    // Told to stop while preparing: nothing is started (the sandbox and files go).
    if !adopt && *stop.borrow() {
        super::dns_link::stop(&shared, &id).await;
        shared.network.remove_sandbox(&id);
        let _ = shared.network.converge().await;
        release();
        report(status(TaskState::Shutdown, "shutdown before start"));
        return;
    }
    let started = match adopt {
        false => runtime.start(&spec).await,
        true => runtime
            .adopt(&spec)
            .await
            .ok_or_else(|| RuntimeError::StartFailed {
                task_id: id.clone(),
                message: "task lost: it ended while the node's daemon was down".into(),
                exit: TaskExit::Signaled(9),
            }),
    };
    // Started (or failed): the next start may go.
    drop(permit);
    let mut running = match started {
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
    let target = ExecTarget {
        task_id: id.clone(),
        pid: running.pid(),
    };
    execs.insert(&id, Arc::clone(&runtime), target.clone());
    // A task with a health check stays STARTING, reachable on its networks but out of DNS and
    // the VIP's backends, until a probe passes (Docker's swarm executor does the same).
    let (health_tx, mut health_rx) = tokio::sync::watch::channel(HealthState::new());
    let _monitor = health_check.clone().map(|check| {
        AbortOnDrop(tokio::spawn(health::monitor(
            Arc::clone(&runtime),
            target,
            check,
            tokio::time::Instant::now(),
            health_tx,
        )))
    });
    let mut bound = health_check.is_none();
    // Every node learns where the task lives before anyone is told it runs.
    super::gossip_link::publish(&shared, &task, bound).await;
    if bound {
        report(status(TaskState::Running, "started"));
        log_running(&id, runtime.name(), received);
    }
    let mut unhealthy: Option<HealthState> = None;
    let mut monitoring = health_check.is_some();
    let ended = loop {
        let changed = tokio::select! {
            exit = running.wait() => break Some(exit),
            _ = stop.wait_for(|s| *s) => break None,
            _ = detach.wait_for(|d| *d) => {
                tracing::info!(task = %id, pid = running.pid(), "daemon exiting: the task keeps running");
                running.detach();
                // Its secrets stay mounted for it; a restarted daemon releases them.
                std::mem::forget(files);
                return;
            }
            changed = health_rx.changed(), if monitoring => changed,
        };
        if changed.is_err() {
            // The monitor ended (it never does on its own): the task keeps running.
            tracing::warn!(task = %id, "the health monitor stopped");
            monitoring = false;
            continue;
        }
        let state = health_rx.borrow_and_update().clone();
        match state.status {
            Health::Healthy if !bound => {
                super::gossip_link::publish(&shared, &task, true).await;
                bound = true;
                report(with_health(
                    status(TaskState::Running, "started"),
                    Health::Healthy,
                ));
                log_running(&id, runtime.name(), received);
            }
            Health::Unhealthy => {
                let last = state.log.back();
                tracing::warn!(
                    task = %id,
                    failing_streak = state.failing_streak,
                    exit_code = last.map(|r| r.exit_code),
                    output = %last.map_or("", |r| r.output.trim_end()),
                    "task unhealthy: stopping it"
                );
                unhealthy = Some(state);
                break None;
            }
            Health::Healthy | Health::Starting => {}
        }
    };
    // The tombstone goes out before the task stops answering, so peers stop
    // sending to it first.
    super::gossip_link::withdraw(&shared, &task).await;
    let (exit, stopped) = match ended {
        Some(exit) => (exit, false),
        None => (running.stop(grace).await, unhealthy.is_none()),
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
    let final_status = if unhealthy.is_some() {
        // swarmkit's wording: the exit of the stopped container, caused by its health.
        let code = exit.exit_code();
        let err = if code == 0 {
            UNHEALTHY_ERROR.to_string()
        } else {
            format!("task: non-zero exit ({code}): {UNHEALTHY_ERROR}")
        };
        with_health(failed("task failed", err, code), Health::Unhealthy)
    } else if stopped {
        let mut s = status(TaskState::Shutdown, "shutdown");
        s.exit_code = exit.exit_code();
        s
    } else {
        ended_status(exit)
    };
    // The sandbox goes first: a task reported ended holds no addresses.
    super::dns_link::stop(&shared, &id).await;
    shared.network.remove_sandbox(&id);
    if let Err(err) = shared.network.converge().await {
        tracing::warn!(task = %id, %err, "removing the task's sandbox failed");
    }
    report(final_status);
}

/// The status of a task that ended by itself as `exit` says: COMPLETE, or FAILED with why.
pub(super) fn ended_status(exit: TaskExit) -> TaskStatus {
    if exit.success() {
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
    }
}
