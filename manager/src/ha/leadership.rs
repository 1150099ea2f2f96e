//! Leader-only services: started on the leader, stopped when leadership is lost.
//!
//! The task watches the Raft status. Once this manager leads *and* has applied every entry up to
//! its own first entry of the term (so its store holds everything any earlier leader committed),
//! it starts the controllers (allocator, orchestrator, scheduler, reaper — each begins with a full
//! reconcile), the node monitor, the Raft membership controller, and a fresh set of dispatcher
//! sessions (with a reconnect grace, so workers that move over from the old leader are not marked
//! down). When this manager stops leading, all of them stop and the sessions are replaced by an
//! empty set: the workers' heartbeats are refused and they reconnect to the new leader.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::HaProposer;
use crate::controllers::{ControllerSettings, Controllers};
use crate::dispatcher::Sessions;
use crate::raft::Role;
use crate::store::Store;

/// The dispatcher sessions of the current leadership (empty on a follower). Cheap to clone.
#[derive(Clone)]
pub struct SessionsSlot {
    period: Duration,
    current: Arc<Mutex<Arc<Sessions>>>,
    /// Whether the leader-only services run: workers' sessions are opened only then, once the
    /// store holds everything earlier leaders committed (a session's first assignment set is
    /// complete, and a worker removes what it does not list).
    serving: Arc<std::sync::atomic::AtomicBool>,
    /// Counts the heartbeats of every session set this slot holds.
    heartbeats: prometheus_client::metrics::counter::Counter,
}

impl SessionsSlot {
    /// An empty slot; workers get `period` as their heartbeat period.
    pub fn new(period: Duration) -> Self {
        SessionsSlot {
            period,
            current: Arc::new(Mutex::new(Arc::new(Sessions::new(period)))),
            serving: Default::default(),
            heartbeats: Default::default(),
        }
    }

    /// Counts the heartbeats of this slot's sessions (from now on) into `counter`.
    pub fn counting_heartbeats(
        self,
        counter: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        let sessions = Sessions::new(self.period).counting_heartbeats(counter.clone());
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(sessions);
        SessionsSlot {
            heartbeats: counter,
            ..self
        }
    }

    /// The sessions in force.
    pub fn get(&self) -> Arc<Sessions> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether workers' sessions may be opened: the leader-only services run.
    pub fn serving(&self) -> bool {
        self.serving.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Forgets every session (a new, empty set with a fresh reconnect grace); new sessions are
    /// opened from now on if `serving`.
    pub fn reset(&self, serving: bool) -> Arc<Sessions> {
        let fresh =
            Arc::new(Sessions::new(self.period).counting_heartbeats(self.heartbeats.clone()));
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *current = fresh.clone();
        self.serving
            .store(serving, std::sync::atomic::Ordering::SeqCst);
        fresh
    }
}

/// What runs only while this manager leads.
struct LeaderServices {
    controllers: Controllers,
    tasks: Vec<JoinHandle<()>>,
}

impl LeaderServices {
    fn start(
        store: &Store,
        proposer: &HaProposer,
        sessions: &SessionsSlot,
        settings: &ControllerSettings,
    ) -> Self {
        let current = sessions.reset(true);
        let controllers = Controllers::start_with(store.clone(), proposer.clone(), settings);
        let tasks = vec![
            tokio::spawn(crate::manager::monitor_nodes(
                store.clone(),
                proposer.clone(),
                current,
            )),
            tokio::spawn(super::members::run(store.clone(), proposer.clone())),
        ];
        LeaderServices { controllers, tasks }
    }

    async fn stop(self, sessions: &SessionsSlot) {
        for task in &self.tasks {
            task.abort();
        }
        self.controllers.stop().await;
        sessions.reset(false);
    }
}

/// The task that starts and stops the leader-only services.
pub struct Leadership {
    stop: watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Leadership {
    /// Starts watching `proposer`'s Raft node.
    pub fn start(
        store: Store,
        proposer: HaProposer,
        sessions: SessionsSlot,
        settings: ControllerSettings,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(store, proposer, sessions, settings, stopped));
        Leadership {
            stop,
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// Stops the leader-only services, if running, and the watch.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

/// How waiting for a new leader to catch up ended.
enum CaughtUp {
    /// It applied every entry up to the first of its term (this index or more).
    Yes(u64),
    /// It stopped leading in this term first.
    NoLongerLeading,
    /// The manager is stopping, or the Raft loop ended.
    Stopped,
}

/// Waits until this manager, leading in `term`, has applied every entry up to the last one in
/// its log when this was called: its predecessors' entries, so the leader-only services start
/// from the whole state.
async fn caught_up(
    proposer: &HaProposer,
    term: u64,
    stopped: &mut watch::Receiver<bool>,
) -> CaughtUp {
    let mut status = proposer.raft().subscribe();
    let first = status.borrow_and_update().last_index;
    let done = status
        .wait_for(|s| s.term != term || s.role != Role::Leader || !s.running || s.applied >= first);
    tokio::select! {
        s = done => match s {
            Ok(s) if s.term == term && s.role == Role::Leader && s.running => CaughtUp::Yes(s.applied),
            Ok(_) => CaughtUp::NoLongerLeading,
            Err(_) => CaughtUp::Stopped,
        },
        _ = stopped.changed() => CaughtUp::Stopped,
    }
}

async fn run(
    store: Store,
    proposer: HaProposer,
    sessions: SessionsSlot,
    settings: ControllerSettings,
    mut stopped: watch::Receiver<bool>,
) {
    // Leadership changes wake this task; the appends and applies in between do not, except
    // while a new leader waits to have applied its predecessors' entries.
    let mut roles = proposer.raft().subscribe_role();
    let mut running: Option<LeaderServices> = None;
    loop {
        let r = *roles.borrow_and_update();
        if r.role == Role::Leader && r.running {
            if running.is_none() {
                match caught_up(&proposer, r.term, &mut stopped).await {
                    CaughtUp::Yes(applied) => {
                        tracing::info!(
                            term = r.term,
                            applied,
                            "leading: starting the leader-only services"
                        );
                        running = Some(LeaderServices::start(
                            &store, &proposer, &sessions, &settings,
                        ));
                    }
                    // Look again at the role (it changed).
                    CaughtUp::NoLongerLeading => continue,
                    CaughtUp::Stopped => break,
                }
            }
        } else if let Some(services) = running.take() {
            tracing::info!(
                term = r.term,
                leader = r.leader_id,
                "no longer leading: stopping the leader-only services"
            );
            services.stop(&sessions).await;
        }
        tokio::select! {
            changed = roles.changed() => if changed.is_err() { break },
            _ = stopped.changed() => break,
        }
    }
    if let Some(services) = running.take() {
        services.stop(&sessions).await;
    }
}
