//! Live worker sessions and their heartbeats (kept in memory on the leader,
//! not in Raft: a new leader starts counting afresh, as swarmkit does).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mini_proto::v1::NodeState;

use crate::store::Tables;

/// A node is down after this many heartbeat periods without one.
pub const MISSED_HEARTBEATS: u32 = 3;

/// The most heartbeats per second the leader takes from all nodes together: past
/// `MAX_HEARTBEAT_RATE × period` nodes the period grows with the number of nodes, so fifty
/// nodes do not flood one leader (swarmkit's leader sees 1 heartbeat per 5 s per node; a
/// small cluster keeps its fast 500 ms and its 1.5 s node-down detection).
pub const MAX_HEARTBEAT_RATE: u32 = 20;

/// Each period handed out is the period ± this fraction (swarmkit's epsilon, 0.5 s of 5 s),
/// so the heartbeats of nodes that connected together spread out.
pub const HEARTBEAT_JITTER: f64 = 0.1;

/// The heartbeat period for `nodes` connected nodes with `base` as the smallest: `base` up to
/// `MAX_HEARTBEAT_RATE × base` nodes, then `nodes / MAX_HEARTBEAT_RATE` seconds.
pub fn scaled_period(base: Duration, nodes: usize) -> Duration {
    let spread = Duration::from_secs(1).mul_f64(nodes as f64 / f64::from(MAX_HEARTBEAT_RATE));
    base.max(spread)
}

/// Extra time a node that had a session with an earlier leader (or before a
/// manager restart) gets to open one with this leader before it is marked
/// down: a worker retries with a backoff of at most 2 s.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(3);

/// The monitor's view of its own punctuality (see [`Sessions::expired`]).
#[derive(Default)]
struct Check {
    last: Option<Instant>,
    stalled: Duration,
    /// Lifeguard's local health score: up by one for every check that ran late, down by one
    /// for every one on time, at most [`MAX_HEALTH_SCORE`].
    score: u32,
}

/// The most the leader's local health score rises to: deadlines then are 9 times as long.
pub const MAX_HEALTH_SCORE: u32 = 8;

/// A check of the node monitor that runs this much later than due was a missed deadline.
pub const LATE_CHECK: Duration = Duration::from_millis(100);

struct Session {
    /// `None` once the session ended: the node still has the rest of its heartbeat window to
    /// open a new one (a daemon restarting with its tasks running, live-restore) before it is
    /// marked down.
    id: Option<String>,
    last_seen: Instant,
    /// The period last handed to the node (with its jitter): its next heartbeat is due that long
    /// after `last_seen`.
    told: Duration,
}

/// The sessions of every connected node.
pub struct Sessions {
    period: Duration,
    started: Instant,
    sessions: Mutex<HashMap<String, Session>>,
    /// When [`Sessions::expired`] last looked (the monitor's own deadlines, see there), the
    /// time lost to stalls since this leader started, and the leader's local health score.
    last_check: Mutex<Check>,
    /// Counts the heartbeats received (`mini_dispatcher_heartbeats_received_total`).
    heartbeats: prometheus_client::metrics::counter::Counter,
}

impl Sessions {
    /// No sessions yet; `period` is the heartbeat period handed to workers.
    pub fn new(period: Duration) -> Self {
        Sessions {
            period,
            started: Instant::now(),
            sessions: Mutex::new(HashMap::new()),
            last_check: Mutex::new(Check::default()),
            heartbeats: Default::default(),
        }
    }

    /// Counts every heartbeat received into `counter`.
    pub fn counting_heartbeats(
        self,
        counter: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        Sessions {
            heartbeats: counter,
            ..self
        }
    }

    /// Number of open sessions.
    pub fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|s| s.id.is_some())
            .count()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The heartbeat period for the nodes connected now (see [`scaled_period`]), without jitter.
    pub fn period(&self) -> Duration {
        scaled_period(
            self.period,
            self.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
        )
    }

    /// The smallest heartbeat period (the manager's setting): how often the monitor looks.
    pub fn base_period(&self) -> Duration {
        self.period
    }

    /// A period to hand out now: [`Sessions::period`] ± [`HEARTBEAT_JITTER`].
    fn jittered(&self, nodes: usize) -> Duration {
        let factor = 1.0 + HEARTBEAT_JITTER * (2.0 * rand::random::<f64>() - 1.0);
        scaled_period(self.period, nodes).mul_f64(factor)
    }

    /// Opens a session for `node_id`, replacing any older one; returns its id.
    pub fn open(&self, node_id: &str) -> String {
        let id = crate::ids::new_id();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let nodes = sessions.len() + usize::from(!sessions.contains_key(node_id));
        // The first period goes out unjittered (`period()`): the most it can be.
        let told = scaled_period(self.period, nodes).mul_f64(1.0 + HEARTBEAT_JITTER);
        sessions.insert(
            node_id.to_string(),
            Session {
                id: Some(id.clone()),
                last_seen: Instant::now(),
                told,
            },
        );
        id
    }

    /// Whether `session_id` is still the current session of `node_id`.
    pub fn is_current(&self, node_id: &str, session_id: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(node_id)
            .is_some_and(|s| s.id.as_deref() == Some(session_id))
    }

    /// Records a heartbeat; returns the period until the next one (jittered, see
    /// [`scaled_period`]), or `None` when the session is unknown (the worker must open a new
    /// session).
    pub fn heartbeat(&self, node_id: &str, session_id: &str) -> Option<Duration> {
        self.heartbeats.inc();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let nodes = sessions.len();
        let told = self.jittered(nodes);
        match sessions.get_mut(node_id) {
            Some(s) if s.id.as_deref() == Some(session_id) => {
                s.last_seen = Instant::now();
                s.told = told;
                Some(told)
            }
            _ => None,
        }
    }

    /// Forgets `node_id`'s session: the dispatcher marked the node down. Its next heartbeat is
    /// refused, so the worker opens a new session and gets a complete set of assignments — one
    /// where the tasks replaced while it was down are to stop (a node that was only slow, not
    /// dead, comes back Ready instead of staying Down with a live session, and stops the
    /// duplicates at once).
    pub fn expire(&self, node_id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node_id);
    }

    /// Ends `node_id`'s session if it is still `session_id`. The node is not down yet: it is
    /// once its last heartbeat is [`MISSED_HEARTBEATS`] periods old without a new session (as
    /// swarmkit, so that a daemon restart does not get the node's tasks replaced).
    pub fn close(&self, node_id: &str, session_id: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sessions.get_mut(node_id)
            && s.id.as_deref() == Some(session_id)
        {
            s.id = None;
        }
    }

    /// Nodes the store has as ready (or unknown) whose heartbeats stopped (none for
    /// [`MISSED_HEARTBEATS`] times the period each was told), or who never opened a session
    /// since this leader started.
    ///
    /// Called every half base period. When the caller itself ran late (a saturated machine:
    /// the monitor, like the heartbeat handlers, did not get the CPU), the time it was away is
    /// not held against the nodes: every session's clock moves on by the delay. And as
    /// Lifeguard's local health awareness does for a prober that misses its own deadlines,
    /// every check more than [`LATE_CHECK`] late raises a score (every one on time lowers it)
    /// and the deadlines are `1 + score` times as long: on a saturated leader heartbeats
    /// arrive late too, from nodes that are alive.
    pub fn expired(&self, tables: &Tables) -> Vec<String> {
        self.expired_at(tables, Instant::now())
    }

    /// [`Sessions::expired`] at `now`.
    pub(crate) fn expired_at(&self, tables: &Tables, now: Instant) -> Vec<String> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let (stall, stalled, health) = {
            let mut check = self.last_check.lock().unwrap_or_else(|e| e.into_inner());
            let gap = check
                .last
                .map_or(self.period / 2, |l| now.saturating_duration_since(l));
            // Looked every half period: anything beyond a whole one was lost to the machine.
            let stall = gap.saturating_sub(self.period);
            if gap.saturating_sub(self.period / 2) > LATE_CHECK {
                check.score = (check.score + 1).min(MAX_HEALTH_SCORE);
            } else {
                check.score = check.score.saturating_sub(1);
            }
            check.last = Some(now);
            check.stalled += stall;
            (stall, check.stalled, 1 + check.score)
        };
        if !stall.is_zero() {
            tracing::warn!(
                stall_ms = stall.as_millis() as u64,
                "the node monitor ran late: the machine is overloaded; heartbeat deadlines move on"
            );
            for s in sessions.values_mut() {
                s.last_seen += stall;
            }
        }
        tables
            .nodes
            .values()
            .filter(|n| {
                let state = n.status.as_ref().map_or(NodeState::Unknown, |s| s.state());
                matches!(state, NodeState::Ready | NodeState::Unknown)
            })
            .filter(|n| match sessions.get(&n.id) {
                Some(s) => {
                    now.saturating_duration_since(s.last_seen) > s.told * MISSED_HEARTBEATS * health
                }
                None => {
                    now.saturating_duration_since(self.started + stalled)
                        > self.period * MISSED_HEARTBEATS + RECONNECT_GRACE
                }
            })
            .map(|n| n.id.clone())
            .collect()
    }
}
