//! One task's life on this node: PREPARING → READY → STARTING → RUNNING →
//! COMPLETE | FAILED | SHUTDOWN, reporting each step.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mini_netdriver::Kernel;
use mini_proto::v1::{ContainerSpec, Task, TaskState, TaskStatus};
use tokio::sync::watch;

use super::executor::ExecTargets;
use super::secrets::TaskFiles;
use super::worker::Shared;
use crate::runtime::health::{self, Health, HealthCheck, HealthState, UNHEALTHY_ERROR};
use crate::runtime::image::{ImageRootfs, ImageTask, Limits, LogOptions, Mount, MountKind};
use crate::runtime::{
    ExecTarget, RuntimeError, TaskExit, TaskHandle, TaskRuntime, TaskSpec, clamp_hostname,
};

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

/// What a task needs before its sandbox: the runtime that runs it, its image, its secret and
/// config files, and its health check.
struct Prepared {
    runtime: Arc<dyn TaskRuntime>,
    image: Option<ImageTask>,
    /// Secrets and configs: files on a tmpfs of the task's own, unmounted when this drops
    /// (whichever way the task's life ends).
    files: Option<TaskFiles>,
    health_check: Option<HealthCheck>,
}

/// How a task's supervision ended.
enum Ended {
    /// It exited by itself.
    Exited(TaskExit),
    /// It was told to stop.
    Stopped,
    /// Its health check failed: it is stopped and reported FAILED.
    Unhealthy,
    /// The daemon is exiting: the task keeps running with its sandbox and files.
    Detached,
}

/// The exit a runtime reported, or SIGKILL's when waiting for it failed.
fn exit_or_killed(task_id: &str, exit: Result<TaskExit, RuntimeError>) -> TaskExit {
    exit.unwrap_or_else(|err| {
        tracing::warn!(task = %task_id, %err, "waiting for the task failed");
        TaskExit::Signaled(9)
    })
}

/// One task's life on this node: what each step needs.
struct Life<'a, K: Kernel + 'static> {
    task: &'a Task,
    container: &'a ContainerSpec,
    shared: &'a Arc<Shared<K>>,
    /// The task the previous daemon left running: adopted, not started.
    adopt: bool,
    /// Image `host`: runs on the node's own filesystem, holds no image.
    is_host: bool,
    received: std::time::Instant,
}

impl<K: Kernel + 'static> Life<'_, K> {
    fn id(&self) -> &str {
        &self.task.id
    }

    /// Reports a step; an adopted task was RUNNING, so the steps before that are not
    /// reported again.
    fn report(&self, s: TaskStatus) {
        if !(self.adopt && s.state() < TaskState::Running) {
            self.shared.reporter.report(self.id(), s)
        }
    }

    /// Lets the image go (an image that no task holds may be removed).
    fn release(&self) {
        if let Some(images) = &self.shared.runtimes.images
            && !self.is_host
        {
            images.source.release(self.id());
        }
    }

    /// The runtime and the image, held for this task: a task whose image is missing makes
    /// nothing, and holds nothing when this fails.
    async fn runtime_and_image(
        &self,
    ) -> Result<(Arc<dyn TaskRuntime>, Option<ImageRootfs>), String> {
        if self.is_host {
            return Ok((Arc::clone(&self.shared.runtimes.host), None));
        }
        let Some(images) = &self.shared.runtimes.images else {
            return Err(format!(
                "this node cannot run image {:?}: {} (image \"host\" runs without it)",
                self.container.image,
                crate::preflight::Item::Runc.missing_line()
            ));
        };
        let auth = self.task.registry_auth.as_ref();
        let image = images.source.resolve(&self.container.image, auth).await?;
        images.source.hold(&image.id, self.id())?;
        Ok((Arc::clone(&images.runtime), Some(image)))
    }

    /// Everything before the sandbox; on failure the image is released and nothing is left.
    async fn prepare(&self, dir: &Path) -> Result<Prepared, String> {
        let (runtime, image) = self.runtime_and_image().await?;
        self.prepare_held(dir, runtime, image)
            .inspect_err(|_| self.release())
    }

    fn prepare_held(
        &self,
        dir: &Path,
        runtime: Arc<dyn TaskRuntime>,
        image: Option<ImageRootfs>,
    ) -> Result<Prepared, String> {
        let container = self.container;
        let log = log_options(&container.log_options)?;
        let container_id = crate::runtime::runc::container_id(self.id());
        let image = image
            .map(|image| image_task(self.shared, container, image, &container_id, log))
            .transpose()?;
        // An adopted task's files are mounted already: kept as they are, released when it ends.
        let files = match self.adopt {
            true => super::secrets::adopt(dir),
            false => super::secrets::prepare(dir, container, &self.shared.secrets)?,
        };
        // The health check: the service's flags over the image's HEALTHCHECK.
        let health_check = HealthCheck::resolve(
            container.healthcheck.as_ref(),
            image
                .as_ref()
                .and_then(|i| i.image.config.healthcheck.as_ref()),
        )?;
        Ok(Prepared {
            runtime,
            image,
            files,
            health_check,
        })
    }

    /// Attaches the task's sandbox to its networks and starts its DNS; returns its
    /// resolv.conf. On failure the sandbox is gone again.
    async fn attach(&self) -> Result<String, String> {
        let network = &self.shared.network;
        network.add_sandbox(self.task);
        let attached = match network.converge().await {
            Ok(_) => super::dns_link::start(self.shared, self.task)
                .await
                .map_err(|err| format!("embedded DNS failed: {err}")),
            Err(err) => Err(format!("network attachment failed: {err}")),
        };
        if attached.is_err() {
            network.remove_sandbox(self.id());
            let _ = network.converge().await;
        }
        attached
    }

    /// Takes down what `attach` set up and releases the image.
    async fn detach_sandbox(&self) {
        super::dns_link::stop(self.shared, self.id()).await;
        self.shared.network.remove_sandbox(self.id());
        if let Err(err) = self.shared.network.converge().await {
            tracing::warn!(task = %self.id(), %err, "removing the task's sandbox failed");
        }
        self.release();
    }

    /// What the runtime starts: the task's command in its sandbox.
    fn spec(&self, dir: PathBuf, prepared: &mut Prepared, resolv_conf: String) -> TaskSpec {
        let container = self.container;
        let hostname = match (&prepared.image, container.hostname.as_str()) {
            (_, h) if !h.is_empty() => clamp_hostname(h),
            (Some(_), _) => crate::runtime::runc::container_id(self.id())[..12].to_string(),
            (None, _) => task_hostname(self.task),
        };
        TaskSpec {
            task_id: self.id().to_string(),
            hostname: hostname.clone(),
            netns: self.shared.network.driver().sandbox_netns_path(self.id()),
            args: container.args.clone(),
            env: container.env.clone(),
            resolv_conf,
            hosts: hosts_file(self.task, &hostname),
            dir,
            stop_signal: container.stop_signal.clone(),
            image: prepared.image.take(),
            files: prepared
                .files
                .as_ref()
                .map(|f| f.files.clone())
                .unwrap_or_default(),
        }
    }

    /// Starts the task, or adopts the one the previous daemon left running.
    async fn start(
        &self,
        runtime: &dyn TaskRuntime,
        spec: &TaskSpec,
    ) -> Result<Box<dyn TaskHandle>, RuntimeError> {
        match self.adopt {
            false => runtime.start(spec).await,
            true => runtime
                .adopt(spec)
                .await
                .ok_or_else(|| RuntimeError::StartFailed {
                    task_id: self.id().to_string(),
                    message: "task lost: it ended while the node's daemon was down".into(),
                    exit: TaskExit::Signaled(9),
                }),
        }
    }

    /// Watches the running task until it exits, is told to stop, fails its health check or
    /// the daemon exits. A task with a health check stays STARTING — reachable on its networks
    /// but out of DNS and the VIP's backends — until a probe passes (Docker's swarm executor
    /// does the same).
    async fn supervise(
        &self,
        running: &mut Box<dyn TaskHandle>,
        runtime: &str,
        mut health: Option<watch::Receiver<HealthState>>,
        stop: &mut watch::Receiver<bool>,
        detach: &mut watch::Receiver<bool>,
    ) -> Ended {
        let mut bound = health.is_none();
        // Every node learns where the task lives before anyone is told it runs.
        super::gossip_link::publish(self.shared, self.task, bound).await;
        if bound {
            self.report(status(TaskState::Running, "started"));
            log_running(self.id(), runtime, self.received);
        }
        loop {
            let changed = tokio::select! {
                exit = running.wait() => return Ended::Exited(exit_or_killed(self.id(), exit)),
                _ = stop.wait_for(|s| *s) => return Ended::Stopped,
                _ = detach.wait_for(|d| *d) => return Ended::Detached,
                changed = async { health.as_mut()?.changed().await.ok() }, if health.is_some() => changed,
            };
            let Some(()) = changed else {
                // The monitor ended (it never does on its own): the task keeps running.
                tracing::warn!(task = %self.id(), "the health monitor stopped");
                health = None;
                continue;
            };
            let state = match &mut health {
                Some(rx) => rx.borrow_and_update().clone(),
                None => continue,
            };
            match state.status {
                Health::Healthy if !bound => {
                    super::gossip_link::publish(self.shared, self.task, true).await;
                    bound = true;
                    self.report(with_health(
                        status(TaskState::Running, "started"),
                        Health::Healthy,
                    ));
                    log_running(self.id(), runtime, self.received);
                }
                Health::Unhealthy => {
                    let last = state.log.back();
                    tracing::warn!(
                        task = %self.id(),
                        failing_streak = state.failing_streak,
                        exit_code = last.map(|r| r.exit_code),
                        output = %last.map_or("", |r| r.output.trim_end()),
                        "task unhealthy: stopping it"
                    );
                    return Ended::Unhealthy;
                }
                Health::Healthy | Health::Starting => {}
            }
        }
    }
}

/// The last status of a task that ran: what ended it, and its exit.
fn final_status(ended: &Ended, exit: TaskExit) -> TaskStatus {
    match ended {
        Ended::Unhealthy => {
            // swarmkit's wording: the exit of the stopped container, caused by its health.
            let code = exit.exit_code();
            let err = if code == 0 {
                UNHEALTHY_ERROR.to_string()
            } else {
                format!("task: non-zero exit ({code}): {UNHEALTHY_ERROR}")
            };
            with_health(failed("task failed", err, code), Health::Unhealthy)
        }
        Ended::Stopped => {
            let mut s = status(TaskState::Shutdown, "shutdown");
            s.exit_code = exit.exit_code();
            s
        }
        Ended::Exited(_) | Ended::Detached => ended_status(exit),
    }
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
    let container = task.container.clone().unwrap_or_default();
    let life = Life {
        task: &task,
        container: &container,
        shared: &shared,
        adopt,
        is_host: container.image == HOST_IMAGE,
        received: std::time::Instant::now(),
    };
    let id = task.id.as_str();
    if *stop.borrow() {
        life.report(status(TaskState::Shutdown, "shutdown before start"));
        return;
    }
    // The executor admits only valid ids; this is the last line before the id becomes paths.
    let Some(dir) = shared.task_dir(id) else {
        life.report(status(TaskState::Rejected, "invalid task id"));
        return;
    };
    life.report(status(TaskState::Accepted, "accepted"));
    life.report(status(TaskState::Preparing, "preparing"));
    // Admission: a bounded number of starts at once (an adopted task runs already). Told to
    // stop while waiting (a duplicate found after a false node-down, a scale-down), it never
    // starts.
    let permit = if adopt {
        None
    } else {
        tokio::select! {
            permit = shared.starts.acquire() => permit.ok(),
            _ = stop.wait_for(|s| *s) => {
                life.report(status(TaskState::Shutdown, "shutdown before start"));
                return;
            }
            _ = detach.wait_for(|d| *d) => return,
        }
    };
    let mut prepared = match life.prepare(&dir).await {
        Ok(prepared) => prepared,
        Err(err) => return life.report(failed("preparing failed", err, 0)),
    };
    let resolv_conf = match life.attach().await {
        Ok(resolv_conf) => resolv_conf,
        Err(err) => {
            life.release();
            return life.report(failed("preparing failed", err, 0));
        }
    };
    life.report(status(TaskState::Ready, "prepared"));
    let spec = life.spec(dir, &mut prepared, resolv_conf);
    let starting = status(TaskState::Starting, "starting");
    life.report(match prepared.health_check {
        Some(_) => with_health(starting, Health::Starting),
        None => starting,
    });
    // Told to stop while preparing: nothing is started (the sandbox and files go).
    if !adopt && *stop.borrow() {
        life.detach_sandbox().await;
        return life.report(status(TaskState::Shutdown, "shutdown before start"));
    }
    let runtime = Arc::clone(&prepared.runtime);
    let started = life.start(runtime.as_ref(), &spec).await;
    // Started (or failed): the next start may go.
    drop(permit);
    let mut running = match started {
        Ok(running) => running,
        Err(err) => {
            let message = match &err {
                RuntimeError::StartFailed { message, .. } => message.clone(),
                RuntimeError::InvalidSpec { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            life.report(failed("starting failed", message, 127));
            return life.detach_sandbox().await;
        }
    };
    let target = ExecTarget {
        task_id: id.to_string(),
        pid: running.pid(),
    };
    execs.insert(id, Arc::clone(&runtime), target.clone());
    let (health_tx, health_rx) = watch::channel(HealthState::new());
    let _monitor = prepared.health_check.clone().map(|check| {
        AbortOnDrop(tokio::spawn(health::monitor(
            Arc::clone(&runtime),
            target,
            check,
            tokio::time::Instant::now(),
            health_tx,
        )))
    });
    let health = prepared.health_check.is_some().then_some(health_rx);
    let ended = life
        .supervise(&mut running, runtime.name(), health, &mut stop, &mut detach)
        .await;
    let exit = match &ended {
        Ended::Detached => {
            tracing::info!(task = %id, pid = running.pid(), "daemon exiting: the task keeps running");
            running.detach();
            // Its secrets stay mounted for it; a restarted daemon releases them.
            std::mem::forget(prepared.files.take());
            return;
        }
        // The tombstone goes out before the task stops answering, so peers stop
        // sending to it first.
        Ended::Exited(exit) => {
            super::gossip_link::withdraw(&shared, &task).await;
            *exit
        }
        Ended::Stopped | Ended::Unhealthy => {
            super::gossip_link::withdraw(&shared, &task).await;
            exit_or_killed(id, running.stop(stop_grace(&shared, &container)).await)
        }
    };
    execs.remove(id);
    running.remove().await;
    // The sandbox goes first: a task reported ended holds no addresses.
    life.detach_sandbox().await;
    life.report(final_status(&ended, exit));
}

/// How long a stopped task has between its stop signal and SIGKILL.
fn stop_grace<K: Kernel>(shared: &Shared<K>, container: &ContainerSpec) -> Duration {
    match container.stop_grace_period_ms {
        0 => shared.config.stop_grace,
        ms => Duration::from_millis(ms),
    }
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
