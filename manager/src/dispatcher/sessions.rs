//! Live worker sessions and their heartbeats (kept in memory on the leader,
//! not in Raft: a new leader starts counting afresh, as swarmkit does).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mini_proto::v1::NodeState;

use crate::store::Tables;

/// A node is down after this many heartbeat periods without one.
pub const MISSED_HEARTBEATS: u32 = 3;

/// Extra time a node that had a session with an earlier leader (or before a
/// manager restart) gets to open one with this leader before it is marked
/// down: a worker retries with a backoff of at most 2 s.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(3);

struct Session {
    /// `None` once the session ended: the node still has the rest of its heartbeat window to
    /// open a new one (a daemon restarting with its tasks running, live-restore) before it is
    /// marked down.
    id: Option<String>,
    last_seen: Instant,
}

/// The sessions of every connected node.
pub struct Sessions {
    period: Duration,
    started: Instant,
    sessions: Mutex<HashMap<String, Session>>,
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

    /// The heartbeat period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Opens a session for `node_id`, replacing any older one; returns its id.
    pub fn open(&self, node_id: &str) -> String {
        let id = crate::ids::new_id();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.insert(
            node_id.to_string(),
            Session {
                id: Some(id.clone()),
                last_seen: Instant::now(),
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

    /// Records a heartbeat; false when the session is unknown (the worker must
    /// open a new session).
    pub fn heartbeat(&self, node_id: &str, session_id: &str) -> bool {
        self.heartbeats.inc();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get_mut(node_id) {
            Some(s) if s.id.as_deref() == Some(session_id) => {
                s.last_seen = Instant::now();
                true
            }
            _ => false,
        }
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

    /// Nodes the store has as ready (or unknown) whose heartbeats stopped,
    /// or who never opened a session since this leader started.
    pub fn expired(&self, tables: &Tables) -> Vec<String> {
        let limit = self.period * MISSED_HEARTBEATS;
        let now = Instant::now();
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        tables
            .nodes
            .values()
            .filter(|n| {
                let state = n.status.as_ref().map_or(NodeState::Unknown, |s| s.state());
                matches!(state, NodeState::Ready | NodeState::Unknown)
            })
            .filter(|n| match sessions.get(&n.id) {
                Some(s) => now.duration_since(s.last_seen) > limit,
                None => now.duration_since(self.started) > limit + RECONNECT_GRACE,
            })
            .map(|n| n.id.clone())
            .collect()
    }
}
