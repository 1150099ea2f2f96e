//! Turns assignment messages into running and stopped tasks.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use mini_netdriver::Kernel;
use mini_proto::v1::{Assignments, Task, TaskState};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::task;
use super::worker::Shared;
use crate::runtime::{ExecOutput, ExecTarget, RuntimeError, TaskRuntime};

/// The running tasks a command can be executed in (`mini exec`): task id →
/// its runtime and process.
#[derive(Default)]
pub struct ExecTargets {
    targets: Mutex<HashMap<String, Target>>,
    /// Bumped on every insert and remove, for callers waiting for a target.
    changed: watch::Sender<u64>,
}

/// A running task's runtime and process.
type Target = (Arc<dyn TaskRuntime>, ExecTarget);

impl ExecTargets {
    /// `task_id` runs in `runtime` as `target`.
    pub fn insert(&self, task_id: &str, runtime: Arc<dyn TaskRuntime>, target: ExecTarget) {
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task_id.to_string(), (runtime, target));
        self.changed.send_modify(|n| *n += 1);
    }

    /// `task_id` no longer runs.
    pub fn remove(&self, task_id: &str) {
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(task_id);
        self.changed.send_modify(|n| *n += 1);
    }

    /// The runtime and process of the running task `task_id`, if it runs here.
    fn target(&self, task_id: &str) -> Option<Target> {
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(task_id)
            .cloned()
    }
}

/// How long `mini exec` waits for a task this daemon is still adopting or starting.
const EXEC_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long [`Executor::detach_all`] waits for the task controllers to let go.
const DETACH_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

struct Running {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// The tasks this node knows and the ones it runs.
pub struct Executor<K: Kernel> {
    shared: Arc<Shared<K>>,
    /// The running tasks, for `mini exec`.
    execs: Arc<ExecTargets>,
    /// The node's current assignment set.
    known: Mutex<BTreeMap<String, Task>>,
    running: Mutex<HashMap<String, Running>>,
    /// Tasks this executor started (running or ended): their outcome is
    /// reported by their controller, never guessed from the assignment.
    started: Mutex<std::collections::HashSet<String>>,
    /// Turns true when the daemon exits: running tasks are left running.
    detach: watch::Sender<bool>,
    /// Held by [`Executor::apply`]: one assignment message at a time, in order.
    applying: tokio::sync::Mutex<()>,
}

impl<K: Kernel + 'static> Executor<K> {
    /// An executor with no tasks.
    pub fn new(shared: Arc<Shared<K>>) -> Arc<Executor<K>> {
        Arc::new(Executor {
            shared,
            execs: Arc::default(),
            known: Mutex::new(BTreeMap::new()),
            running: Mutex::new(HashMap::new()),
            started: Mutex::new(std::collections::HashSet::new()),
            detach: watch::Sender::new(false),
            applying: tokio::sync::Mutex::new(()),
        })
    }

    /// Applies one assignment message.
    pub async fn apply(self: &Arc<Self>, assignments: Assignments) {
        let _applying = self.applying.lock().await;
        // First: a task in this message may use a secret that comes with it.
        self.shared
            .secrets
            .replace(&assignments.secrets, &assignments.configs);
        self.shared.network.set_networks(&assignments.networks);
        self.shared.network.set_ingress(
            assignments
                .ingress_network
                .clone()
                .zip(assignments.ingress.clone()),
        );
        if let Some(attachment) = assignments.ingress.as_ref() {
            super::gossip_link::publish_ingress(&self.shared, attachment).await;
        }
        let (tasks, gone): (Vec<Task>, Vec<String>) = {
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            let before: Vec<String> = known.keys().cloned().collect();
            if assignments.complete {
                known.clear();
            }
            for id in &assignments.removed_tasks {
                known.remove(id);
            }
            for t in assignments.tasks {
                // Its id would become paths (task dir, logs, sandbox): only valid ids get in.
                if !mini_proto::is_object_id(&t.id) {
                    tracing::warn!(task_id = ?t.id, "ignoring an assigned task with an invalid id");
                    continue;
                }
                known.insert(t.id.clone(), t);
            }
            let gone = before
                .into_iter()
                .filter(|id| !known.contains_key(id))
                .collect();
            (known.values().cloned().collect(), gone)
        };
        // Tasks running here that are no longer assigned: stop them.
        let assigned: std::collections::HashSet<&str> =
            tasks.iter().map(|t| t.id.as_str()).collect();
        let orphans: Vec<String> = {
            let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            running
                .keys()
                .filter(|id| !assigned.contains(id.as_str()))
                .cloned()
                .collect()
        };
        for id in orphans {
            self.stop(&id);
        }
        // Deleted from the cluster: its files (logs) go too, once it ended.
        for id in gone {
            if !running_here(&self.running, &id) {
                self.shared.config.metrics.forget_task(&id);
                self.remove_files(&id);
            }
        }
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id| assigned.contains(id.as_str()));
        for t in tasks {
            self.reconcile(t);
        }
        // The sandboxes of the adopted tasks are declared: converging may go on.
        self.shared.network.release();
        // Left running by the previous daemon but no longer this node's: removed.
        if assignments.complete {
            self.discard_unadopted().await;
        }
        // Peers may have changed even when no task did.
        if let Err(err) = self.shared.network.converge().await {
            tracing::warn!(%err, "network update failed");
        }
    }

    /// Kills and removes the tasks the previous daemon left running that were
    /// not adopted (no longer this node's, or the node leaves the swarm).
    pub async fn discard_unadopted(&self) {
        let unwanted: Vec<PathBuf> = std::mem::take(
            &mut *self
                .shared
                .adoptable
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
        .into_values()
        .collect();
        for dir in unwanted {
            self.discard(dir).await;
        }
    }

    /// Kills and removes a task the previous daemon left running that this
    /// node no longer runs.
    async fn discard(&self, dir: PathBuf) {
        tracing::info!(task_dir = %dir.display(), "removing a task the previous daemon left running");
        if let Ok(runc) = crate::runtime::RuncRuntime::new(
            self.shared.config.self_exe.clone(),
            self.shared.config.run_dir.join("runc"),
        ) {
            runc.reap_dir(&dir).await;
        }
        super::leftovers::reap_dir(&dir);
    }

    /// Whether the previous daemon left `task_id` running, not yet adopted.
    fn is_adoptable(&self, task_id: &str) -> bool {
        self.shared
            .adoptable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(task_id)
    }

    /// Takes `task_id` out of the tasks left by the previous daemon (it was adopted).
    fn forget_adoptable(&self, task_id: &str) {
        self.shared
            .adoptable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(task_id);
    }

    fn reconcile(self: &Arc<Self>, t: Task) {
        let observed = t.status.as_ref().map_or(TaskState::New, |s| s.state());
        let is_running_here = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&t.id);
        let started_here = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&t.id);
        let wanted = t.desired_state() <= TaskState::Running;
        match (wanted, is_running_here) {
            // Ended here already: its controller reported how (the manager
            // may not have applied that report yet).
            (_, false) if started_here => {}
            (true, false) if observed == TaskState::Assigned => self.start(t, false),
            (true, false) if observed > TaskState::Assigned && observed <= TaskState::Running => {
                // It ran here before this daemon (re)started.
                if self.is_adoptable(&t.id) {
                    // Still running: adopted, sandbox included (declared before any converge).
                    // Its controller exists before it leaves the adoptable set, so `mini exec`
                    // always sees it as coming until it runs.
                    let id = t.id.clone();
                    self.shared.network.add_sandbox(&t);
                    self.start(t, true);
                    self.forget_adoptable(&id);
                    return;
                }
                let away = self
                    .shared
                    .ended_away
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&t.id);
                let status = match away {
                    // It ended while no daemon ran: as it ended.
                    Some(exit) => task::ended_status(exit),
                    None => task::failed(
                        "task lost",
                        "task lost: the node's daemon restarted while it ran".into(),
                        0,
                    ),
                };
                self.shared.reporter.report(&t.id, status);
            }
            (false, true) => self.stop(&t.id),
            (false, false) if observed <= TaskState::Running => {
                self.shared.reporter.report(
                    &t.id,
                    task::status(TaskState::Shutdown, "shutdown before start"),
                );
            }
            _ => {}
        }
    }

    /// Starts `t`'s controller; with `adopt`, it adopts the task the previous daemon left
    /// running instead of starting it.
    fn start(self: &Arc<Self>, t: Task, adopt: bool) {
        let (stop, stopped) = watch::channel(false);
        let id = t.id.clone();
        let me = Arc::clone(self);
        let shared = Arc::clone(&self.shared);
        let execs = Arc::clone(&self.execs);
        let detach = self.detach.subscribe();
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone());
        // Held while spawning, so the task cannot remove its entry before it exists.
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        // Every line of the task's work (start, stop, health) says which task and service.
        let span = tracing::info_span!(
            "task",
            task_id = %t.id,
            service_id = %t.service_id,
            service = %t.service_name
        );
        let handle = tokio::spawn(async move {
            let task_id = t.id.clone();
            tracing::Instrument::instrument(
                task::run(t, shared, execs, stopped, detach, adopt),
                span,
            )
            .await;
            me.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&task_id);
            let deleted = !me
                .known
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&task_id);
            if deleted {
                me.shared.config.metrics.forget_task(&task_id);
                me.remove_files(&task_id);
            }
        });
        running.insert(id, Running { stop, handle });
    }

    /// Removes the directory of a task that ended and was deleted.
    fn remove_files(&self, id: &str) {
        let Some(dir) = self.shared.task_dir(id) else {
            return;
        };
        // Never descend into a secrets tmpfs (normally unmounted when the task ended).
        super::secrets::release(&dir.join(super::secrets::MOUNT_DIR));
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(dir = %dir.display(), %err, "cannot remove a task directory")
            }
        }
    }

    fn stop(&self, id: &str) {
        if let Some(r) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            let _ = r.stop.send(true);
        }
    }

    /// Runs `args` in the task `task_id` (`mini exec`); `None` if it does not run here.
    ///
    /// A task the previous daemon left running, or whose controller is still
    /// adopting or starting it, is waited for (at most [`EXEC_PATIENCE`]): right
    /// after a daemon restart the manager already reports such a task running.
    pub async fn exec(
        &self,
        task_id: &str,
        args: &[String],
        env: &[String],
    ) -> Option<Result<ExecOutput, RuntimeError>> {
        let deadline = tokio::time::Instant::now() + EXEC_PATIENCE;
        let mut changed = self.execs.changed.subscribe();
        loop {
            if let Some((runtime, target)) = self.execs.target(task_id) {
                return Some(runtime.exec(&target, args, env).await);
            }
            if !self.coming(task_id) {
                return None;
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// Whether `task_id` is about to run here: left by the previous daemon and
    /// not yet adopted or discarded, or its controller has not yet started it.
    fn coming(&self, task_id: &str) -> bool {
        self.is_adoptable(task_id) || running_here(&self.running, task_id)
    }

    /// Leaves every task running (the daemon exits): their controllers
    /// return without stopping them; one still preparing is given up
    /// after [`DETACH_PATIENCE`].
    pub async fn detach_all(&self) {
        let _ = self.detach.send(true);
        let all: Vec<Running> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, r)| r)
            .collect();
        let deadline = tokio::time::Instant::now() + DETACH_PATIENCE;
        for r in all {
            let abort = r.handle.abort_handle();
            if tokio::time::timeout_at(deadline, r.handle).await.is_err() {
                abort.abort();
            }
        }
    }

    /// Stops every task and waits for them to end.
    pub async fn stop_all(&self) {
        let all: Vec<Running> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, r)| r)
            .collect();
        for r in &all {
            let _ = r.stop.send(true);
        }
        for r in all {
            let _ = r.handle.await;
        }
    }
}

fn running_here(running: &Mutex<HashMap<String, Running>>, id: &str) -> bool {
    running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(id)
}
