//! The leader-only controllers: loops that watch the store and write back
//! what the pure decision modules decide.
//!
//! Each controller reconciles the whole store when it starts (so nothing
//! missed before, e.g. across a restart, stays stuck), again after every
//! store change it cares about, and at least every [`RESYNC`] as a backstop.
//! Components never call each other: the store is the only thing they share.
//!
//! # Layout
//! - `task_allocator`: gives new tasks their network addresses (NEW → PENDING).
//! - `orchestrator`: keeps each service's tasks matching its spec.
//! - `scheduler`: binds pending tasks to nodes (PENDING → ASSIGNED).
//! - `reaper`: deletes tasks that were told to go and are down.
//! - `gossip_keys`: rotates the cluster's gossip key ring.
//! - `root_rotation`: ends a root CA rotation once every node has a certificate of the new root.

pub mod gossip_keys;
mod orchestrator;
mod reaper;
mod root_rotation;
mod scheduler;
mod task_allocator;

#[cfg(test)]
mod tests;

use std::time::Duration;

use mini_proto::v1::{StoreAction, StoreBatch};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::ids::now_ms;
use crate::store::{ObjectKind, Proposer, Store, Tables, WriteError};

/// Longest time a controller goes without a full reconcile.
pub const RESYNC: Duration = Duration::from_secs(2);

/// Most actions in one write; a larger plan is split.
const MAX_BATCH: usize = 256;

/// What one reconcile pass wants written, and when it wants to run again.
#[derive(Debug, Default)]
pub struct Plan {
    /// Actions to write (split into batches of at most [`MAX_BATCH`]).
    pub actions: Vec<StoreAction>,
    /// Wall-clock time (ms) at which a new pass is due even without changes,
    /// e.g. when a delayed restart becomes due.
    pub wake_at_ms: Option<i64>,
}

/// One controller: which changes wake it and what it decides.
pub trait Reconciler: Send + 'static {
    /// Name used in logs.
    const NAME: &'static str;
    /// Kinds of objects whose changes wake it.
    const WATCHES: &'static [ObjectKind];
    /// Decides, from a consistent view, what to write.
    fn reconcile(&mut self, tables: &Tables, now_ms: i64) -> Plan;
}

/// The running controllers of a manager.
pub struct Controllers {
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// Settings of the controllers.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// Time between two rotations of the gossip key.
    pub gossip_key_rotation: Duration,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            gossip_key_rotation: gossip_keys::DEFAULT_ROTATION,
        }
    }
}

impl Controllers {
    /// Starts every controller on `store`, writing through `proposer`, with the default
    /// settings.
    pub fn start<P: Proposer + Clone>(store: Store, proposer: P) -> Controllers {
        Self::start_with(store, proposer, &ControllerSettings::default())
    }

    /// Starts every controller on `store`, writing through `proposer`.
    pub fn start_with<P: Proposer + Clone>(
        store: Store,
        proposer: P,
        settings: &ControllerSettings,
    ) -> Controllers {
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            spawn(
                gossip_keys::GossipKeyRotation {
                    period: settings.gossip_key_rotation,
                },
                store.clone(),
                proposer.clone(),
                stopped.clone(),
            ),
            spawn(
                task_allocator::TaskAllocator,
                store.clone(),
                proposer.clone(),
                stopped.clone(),
            ),
            spawn(
                orchestrator::Orchestrator,
                store.clone(),
                proposer.clone(),
                stopped.clone(),
            ),
            spawn(
                scheduler::Scheduler,
                store.clone(),
                proposer.clone(),
                stopped.clone(),
            ),
            spawn(
                root_rotation::RootRotation,
                store.clone(),
                proposer.clone(),
                stopped.clone(),
            ),
            spawn(reaper::Reaper, store, proposer, stopped),
        ];
        Controllers {
            stop,
            tasks: std::sync::Mutex::new(tasks),
        }
    }

    /// Stops every controller and waits for them to finish.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }
}

fn spawn<R: Reconciler, P: Proposer>(
    reconciler: R,
    store: Store,
    proposer: P,
    stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(run(reconciler, store, proposer, stopped))
}

/// The loop every controller runs.
pub async fn run<R: Reconciler, P: Proposer>(
    mut reconciler: R,
    store: Store,
    proposer: P,
    mut stopped: watch::Receiver<bool>,
) {
    let mut events = store.watch();
    loop {
        let now = now_ms();
        let plan = store.view(|t| reconciler.reconcile(t, now));
        let mut wrote = false;
        for chunk in plan.actions.chunks(MAX_BATCH) {
            let batch = StoreBatch {
                actions: chunk.to_vec(),
                proposed_at_ms: now_ms(),
                ..Default::default()
            };
            match proposer.propose(batch).await {
                Ok(_) => wrote = true,
                // Someone else changed an object meanwhile: the change event
                // wakes this loop again and it decides from the new state.
                Err(WriteError::Rejected(err)) => {
                    tracing::debug!(controller = R::NAME, %err, "write refused")
                }
                Err(WriteError::Failed(err)) => {
                    tracing::warn!(controller = R::NAME, %err, "write failed")
                }
            }
        }
        let mut wait = RESYNC;
        if let Some(at) = plan.wake_at_ms {
            wait = wait.min(Duration::from_millis((at - now_ms()).max(0) as u64));
        }
        if wrote {
            // Our own writes produce events; reconcile again right away.
            drain(&mut events);
            continue;
        }
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                changed = stopped.changed() => {
                    if changed.is_err() || *stopped.borrow() {
                        return;
                    }
                }
                event = events.recv() => match event {
                    Ok(event) if R::WATCHES.iter().any(|k| event.touches(*k)) => {
                        drain(&mut events);
                        break;
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
        if *stopped.borrow() {
            return;
        }
    }
}

fn drain(events: &mut broadcast::Receiver<crate::store::StoreEvent>) {
    while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = events.try_recv() {}
}

/// An update of an existing object.
pub(crate) fn update(action: mini_proto::v1::store_action::Action) -> StoreAction {
    StoreAction {
        action: Some(action),
        create: false,
    }
}
