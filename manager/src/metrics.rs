//! Prometheus metrics of a manager: Raft, store, scheduler and dispatcher.
//!
//! The crate owns no global registry: the daemon makes one [`Metrics`], registers it (names
//! here carry no `mini_` prefix; the daemon's registry adds it) and hands an `Arc` of it to the
//! manager through [`DaemonConfig`](crate::control::DaemonConfig). `Metrics::default()` is a
//! working, unregistered set, which is what tests use.
//!
//! Counters and histograms are updated where things happen (proposals, applies, heartbeats, a
//! task's first ASSIGNED). Gauges that are a function of state (Raft term and indexes, objects by
//! kind, tasks by state, open sessions) are computed at scrape time from the running manager,
//! which costs one pass over the store per scrape and nothing per change.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mini_proto::v1::{Task, TaskState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, watch};

use crate::ha::SessionsSlot;
use crate::raft::{RaftStatus, Role, RoleStatus, StateMachine};
use crate::store::{Store, Tables};

/// Latency buckets in seconds: 0.5 ms to about 16 s, doubling (16 buckets).
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

/// Buckets for one fsync, in seconds: 0.1 ms to about 13 s, doubling (18 buckets). A disk's
/// fsync takes 0.1–10 ms, below most of [`latency_buckets`].
pub fn sync_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 18)
}

/// The manager's metric handles. Cheap to share (`Arc`); see the module docs.
#[derive(Debug)]
pub struct Metrics {
    /// Time from a proposal to its answer (applied, or refused), forwarded ones included.
    pub proposal_duration: Histogram,
    /// Proposals that ended in an error (no leader or quorum, refused by the store, stopped).
    pub proposals_failed: Counter,
    /// Time to apply one committed entry to the store.
    pub apply_duration: Histogram,
    /// Time to make the Raft log durable (sled's flush and fsync) in a round that wrote to it.
    pub log_sync_duration: Histogram,
    /// Times this manager saw another leader take over (or the first one appear).
    pub leader_changes: Counter,
    /// Time from a task's creation to its assignment to a node, as seen by the leader.
    pub scheduling_latency: Histogram,
    /// Heartbeats of worker sessions received while this manager led.
    pub heartbeats: Counter,
    /// The running manager's state, read at scrape time; `None` while this node is no manager.
    source: Mutex<Option<Source>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            proposal_duration: Histogram::new(latency_buckets()),
            proposals_failed: Counter::default(),
            apply_duration: Histogram::new(latency_buckets()),
            log_sync_duration: Histogram::new(sync_buckets()),
            leader_changes: Counter::default(),
            scheduling_latency: Histogram::new(latency_buckets()),
            heartbeats: Counter::default(),
            source: Mutex::new(None),
        }
    }
}

/// What the scrape-time gauges are read from.
struct Source {
    store: Store,
    raft: watch::Receiver<RaftStatus>,
    sessions: SessionsSlot,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every family of a manager in `registry` (the counters and histograms, and the
    /// gauges computed at scrape time).
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register(
            "raft_proposal_duration_seconds",
            "Time from a Raft proposal to its answer",
            self.proposal_duration.clone(),
        );
        registry.register(
            "raft_proposals_failed",
            "Raft proposals that ended in an error",
            self.proposals_failed.clone(),
        );
        registry.register(
            "raft_apply_duration_seconds",
            "Time to apply one committed Raft entry to the store",
            self.apply_duration.clone(),
        );
        registry.register(
            "raft_log_fsync_duration_seconds",
            "Time to make the Raft log durable (flush and fsync) before acknowledging entries",
            self.log_sync_duration.clone(),
        );
        registry.register(
            "raft_leader_changes",
            "Times this manager saw a new Raft leader",
            self.leader_changes.clone(),
        );
        registry.register(
            "scheduler_latency_seconds",
            "Time from a task's creation to its assignment to a node",
            self.scheduling_latency.clone(),
        );
        registry.register(
            "dispatcher_heartbeats_received",
            "Heartbeats of worker sessions received by this manager while it led",
            self.heartbeats.clone(),
        );
        registry.register_collector(Box::new(StateGauges(self.clone())));
    }

    /// Reads the scrape-time gauges from this running manager, and counts leader changes and
    /// scheduling latency, until the returned task is aborted (the manager stops): the gauges
    /// then disappear from the scrape.
    pub(crate) fn follow(
        self: &Arc<Self>,
        store: Store,
        raft: watch::Receiver<RaftStatus>,
        roles: watch::Receiver<RoleStatus>,
        sessions: SessionsSlot,
    ) -> tokio::task::JoinHandle<()> {
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = Some(Source {
            store: store.clone(),
            raft: raft.clone(),
            sessions,
        });
        let metrics = self.clone();
        tokio::spawn(async move {
            // Aborting the task drops this: the gauges of a stopped manager are not reported.
            let _clear = ClearOnDrop(metrics.clone());
            tokio::join!(
                count_leader_changes(metrics.clone(), roles),
                watch_assignments(metrics, store, raft),
            );
        })
    }
}

struct ClearOnDrop(Arc<Metrics>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        *self.0.source.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

async fn count_leader_changes(metrics: Arc<Metrics>, mut roles: watch::Receiver<RoleStatus>) {
    let mut leader = 0;
    loop {
        let now = roles.borrow_and_update().leader_id;
        if now != leader && now != 0 {
            metrics.leader_changes.inc();
        }
        leader = now;
        if roles.changed().await.is_err() {
            return;
        }
    }
}

/// Observes the scheduling latency of each task once, when the store first shows it ASSIGNED,
/// while this manager leads (so a cluster's managers do not count the same task each).
async fn watch_assignments(metrics: Arc<Metrics>, store: Store, raft: watch::Receiver<RaftStatus>) {
    let mut events = store.watch();
    let mut assigned = Assignments::default();
    store.view(|t| assigned.reset(t));
    loop {
        let changed: Vec<String> = match events.recv().await {
            Ok(event) if event.restored => {
                store.view(|t| assigned.reset(t));
                continue;
            }
            Ok(event) => event
                .changes
                .into_iter()
                .filter(|c| c.kind == crate::store::ObjectKind::Task)
                .map(|c| c.id)
                .collect(),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                store.view(|t| assigned.reset(t));
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let leads = raft.borrow().role == Role::Leader;
        store.view(|t| {
            for id in &changed {
                if let Some(latency) = assigned.update(id, t.tasks.get(id))
                    && leads
                {
                    metrics.scheduling_latency.observe(latency);
                }
            }
        });
    }
}

/// The tasks seen ASSIGNED and not yet past it, so each assignment is counted once.
#[derive(Default)]
struct Assignments(HashSet<String>);

impl Assignments {
    fn reset(&mut self, tables: &Tables) {
        self.0 = tables
            .tasks
            .values()
            .filter(|t| observed(t) == TaskState::Assigned)
            .map(|t| t.id.clone())
            .collect();
    }

    /// The task's scheduling latency in seconds if this change is its assignment.
    fn update(&mut self, id: &str, task: Option<&Task>) -> Option<f64> {
        let Some(task) = task.filter(|t| observed(t) == TaskState::Assigned) else {
            self.0.remove(id);
            return None;
        };
        if !self.0.insert(id.to_string()) {
            return None;
        }
        let created = task.meta.as_ref()?.created_at_ms;
        let assigned = task.status.as_ref()?.timestamp_ms;
        Some((assigned.saturating_sub(created)).max(0) as f64 / 1000.0)
    }
}

fn observed(task: &Task) -> TaskState {
    task.status.as_ref().map_or(TaskState::New, |s| s.state())
}

/// A task state as a label value: `running`, `shutdown`, … (Docker's words).
pub fn state_label(state: TaskState) -> String {
    state
        .as_str_name()
        .trim_start_matches("TASK_STATE_")
        .to_ascii_lowercase()
}

/// Objects in the store by kind (every kind present, zero included).
pub fn objects_by_kind(tables: &Tables) -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("cluster", usize::from(tables.cluster.is_some())),
        ("node", tables.nodes.len()),
        ("network", tables.networks.len()),
        ("service", tables.services.len()),
        ("task", tables.tasks.len()),
        ("secret", tables.secrets.len()),
        ("config", tables.configs.len()),
    ])
}

/// Tasks in the store by (desired state, observed state).
pub fn tasks_by_state(tables: &Tables) -> BTreeMap<(TaskState, TaskState), usize> {
    let mut out = BTreeMap::new();
    for t in tables.tasks.values() {
        *out.entry((t.desired_state(), observed(t))).or_default() += 1;
    }
    out
}

/// The gauges computed at scrape time from the running manager.
#[derive(Debug)]
struct StateGauges(Arc<Metrics>);

impl Collector for StateGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (status, store, sessions) = {
            let source = self.0.source.lock().unwrap_or_else(|e| e.into_inner());
            let Some(source) = source.as_ref() else {
                return Ok(());
            };
            (
                source.raft.borrow().clone(),
                source.store.clone(),
                source.sessions.get().len(),
            )
        };
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, v: i64| {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
        };
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        gauge(
            &mut encoder,
            "raft_term",
            "Current Raft term",
            clamp(status.term),
        )?;
        gauge(
            &mut encoder,
            "raft_commit_index",
            "Highest Raft log index known committed",
            clamp(status.commit),
        )?;
        gauge(
            &mut encoder,
            "raft_applied_index",
            "Highest Raft log index applied to the store",
            clamp(status.applied),
        )?;
        gauge(
            &mut encoder,
            "raft_is_leader",
            "1 while this manager is the Raft leader, else 0",
            i64::from(status.role == Role::Leader),
        )?;
        gauge(
            &mut encoder,
            "dispatcher_sessions",
            "Worker sessions open on this manager (0 unless it leads)",
            i64::try_from(sessions).unwrap_or(i64::MAX),
        )?;

        let (objects, tasks) = store.view(|t| (objects_by_kind(t), tasks_by_state(t)));
        let by_kind: Family<[(&'static str, &'static str); 1], Gauge> = Family::default();
        for (kind, n) in objects {
            by_kind.get_or_create(&[("kind", kind)]).set(n as i64);
        }
        by_kind.encode(encoder.encode_descriptor(
            "store_objects",
            "Objects in the cluster store by kind",
            None,
            by_kind.metric_type(),
        )?)?;
        let by_state: Family<[(&'static str, String); 2], Gauge> = Family::default();
        for ((desired, observed), n) in tasks {
            by_state
                .get_or_create(&[
                    ("desired_state", state_label(desired)),
                    ("state", state_label(observed)),
                ])
                .set(n as i64);
        }
        by_state.encode(encoder.encode_descriptor(
            "store_tasks",
            "Tasks in the cluster store by desired and observed state",
            None,
            by_state.metric_type(),
        )?)?;
        Ok(())
    }
}

/// A state machine whose applies are timed into [`Metrics::apply_duration`].
pub(crate) struct TimedMachine<S> {
    /// The machine applies go to.
    pub inner: S,
    /// Where the time goes.
    pub metrics: Arc<Metrics>,
}

impl<S: StateMachine> StateMachine for TimedMachine<S> {
    type Outcome = S::Outcome;

    fn apply(&mut self, index: u64, data: &[u8]) -> Self::Outcome {
        let started = Instant::now();
        let outcome = self.inner.apply(index, data);
        self.metrics
            .apply_duration
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    fn snapshot(&self) -> Vec<u8> {
        self.inner.snapshot()
    }

    fn restore(&mut self, index: u64, data: &[u8]) -> Result<(), String> {
        self.inner.restore(index, data)
    }

    fn check_snapshot(&self, data: &[u8]) -> Result<(), String> {
        self.inner.check_snapshot(data)
    }

    fn log_synced(&mut self, took: std::time::Duration) {
        self.metrics.log_sync_duration.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mini_proto::v1::{Meta, TaskStatus};

    fn task(id: &str, desired: TaskState, state: TaskState, created: i64, at: i64) -> Task {
        Task {
            id: id.into(),
            meta: Some(Meta {
                created_at_ms: created,
                ..Default::default()
            }),
            desired_state: desired as i32,
            status: Some(TaskStatus {
                state: state as i32,
                timestamp_ms: at,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn encode(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn latency_buckets_span_half_a_millisecond_to_sixteen_seconds() {
        let b: Vec<f64> = latency_buckets().collect();
        assert_eq!(b.len(), 16);
        assert_eq!(b[0], 0.0005);
        assert!(b.windows(2).all(|w| w[1] == w[0] * 2.0), "{b:?}");
        assert!((16.0..17.0).contains(&b[15]), "{b:?}");
    }

    #[test]
    fn tasks_are_counted_by_desired_and_observed_state() {
        let mut t = Tables::default();
        for (id, d, s) in [
            ("a", TaskState::Running, TaskState::Running),
            ("b", TaskState::Running, TaskState::Running),
            ("c", TaskState::Running, TaskState::Pending),
            ("d", TaskState::Shutdown, TaskState::Complete),
        ] {
            t.tasks.insert(id.into(), task(id, d, s, 0, 0));
        }
        let counts = tasks_by_state(&t);
        assert_eq!(counts[&(TaskState::Running, TaskState::Running)], 2);
        assert_eq!(counts[&(TaskState::Running, TaskState::Pending)], 1);
        assert_eq!(counts[&(TaskState::Shutdown, TaskState::Complete)], 1);
        assert_eq!(counts.len(), 3);
        assert_eq!(objects_by_kind(&t)["task"], 4);
        assert_eq!(objects_by_kind(&t)["service"], 0);
        assert_eq!(state_label(TaskState::Running), "running");
    }

    #[test]
    fn an_assignment_is_timed_once_from_creation() {
        let mut seen = Assignments::default();
        let pending = task("a", TaskState::Running, TaskState::Pending, 1_000, 1_100);
        assert_eq!(seen.update("a", Some(&pending)), None);
        let assigned = task("a", TaskState::Running, TaskState::Assigned, 1_000, 1_250);
        assert_eq!(seen.update("a", Some(&assigned)), Some(0.25));
        // Another change while still ASSIGNED (e.g. desired state) is not a new assignment.
        assert_eq!(seen.update("a", Some(&assigned)), None);
        let running = task("a", TaskState::Running, TaskState::Running, 1_000, 2_000);
        assert_eq!(seen.update("a", Some(&running)), None);
        assert!(seen.0.is_empty());
        assert_eq!(seen.update("a", None), None);
    }

    #[test]
    fn scrape_shows_state_gauges_only_while_a_manager_runs() {
        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::with_prefix("mini");
        metrics.register(&mut registry);
        metrics.proposals_failed.inc();
        let text = encode(&registry);
        assert!(
            text.contains("mini_raft_proposals_failed_total 1\n"),
            "{text}"
        );
        assert!(!text.contains("mini_raft_term"), "{text}");

        let store = Store::new();
        let (_tx, raft) = watch::channel(RaftStatus::test_leader(7, &[1], &[], &[]));
        *metrics.source.lock().unwrap() = Some(Source {
            store,
            raft,
            sessions: SessionsSlot::new(std::time::Duration::from_secs(1)),
        });
        let text = encode(&registry);
        for line in [
            "mini_raft_term 2\n",
            "mini_raft_commit_index 7\n",
            "mini_raft_applied_index 7\n",
            "mini_raft_is_leader 1\n",
            "mini_dispatcher_sessions 0\n",
            "mini_store_objects{kind=\"task\"} 0\n",
            "# TYPE mini_store_tasks gauge\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }

    /// Scrape cost at 1,000 tasks (BENCHMARKS.md, #15): fills a store with 1,000 tasks of 10
    /// services in a spread of states and times the encode of the manager's families. Run with
    /// `cargo test -p mini-manager --lib scrape_cost -- --ignored --nocapture` (debug build).
    #[test]
    #[ignore = "a measurement, not a check: run by hand for BENCHMARKS.md"]
    fn scrape_cost_at_1000_tasks() {
        use prost::Message;
        let mut tables = Tables::default();
        let states = [
            (TaskState::Running, TaskState::Running),
            (TaskState::Running, TaskState::Running),
            (TaskState::Running, TaskState::Running),
            (TaskState::Running, TaskState::Starting),
            (TaskState::Running, TaskState::Assigned),
            (TaskState::Shutdown, TaskState::Shutdown),
            (TaskState::Shutdown, TaskState::Failed),
            (TaskState::Running, TaskState::Pending),
        ];
        for i in 0..1000 {
            let (desired, observed) = states[i % states.len()];
            let mut t = task(&format!("task{i:05}"), desired, observed, 0, 0);
            t.service_id = format!("svc{}", i % 10);
            tables.tasks.insert(t.id.clone(), t);
        }
        let store = Store::new();
        store
            .restore(1, &tables.to_snapshot().encode_to_vec())
            .unwrap();
        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::with_prefix("mini");
        metrics.register(&mut registry);
        for i in 0..1000 {
            metrics.proposal_duration.observe(f64::from(i) / 1000.0);
            metrics.scheduling_latency.observe(f64::from(i) / 100.0);
        }
        let (_tx, raft) = watch::channel(RaftStatus::test_leader(1000, &[1], &[], &[]));
        *metrics.source.lock().unwrap() = Some(Source {
            store,
            raft,
            sessions: SessionsSlot::new(std::time::Duration::from_secs(1)),
        });
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..200 {
            let started = Instant::now();
            let text = encode(&registry);
            times.push(started.elapsed());
            size = text.len();
            assert!(text.contains("mini_store_objects{kind=\"task\"} 1000\n"));
        }
        times.sort();
        eprintln!(
            "manager families, 1000 tasks: {size} bytes; encode p50 {:?}, p90 {:?}, max {:?} \
             (200 scrapes)",
            times[100], times[180], times[199]
        );
    }
}
