//! Docker's event stream of swarm objects (`mini events`): every manager derives events from
//! its own store's change feed (followers apply the same log as the leader, so each manager
//! serves the stream itself, nothing is forwarded), keeps the last [`HISTORY`] events for
//! `--since`, and hands live events to every subscriber.
//!
//! # Layout
//! - [`derive`]: from store changes to events (create/update/remove of services, nodes,
//!   networks, secrets, configs and tasks; node state, availability and role; leader changes).
//! - [`filter`]: Docker's `--filter` keys.

pub mod derive;
pub mod filter;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mini_proto::v1::Event;
use tokio::sync::broadcast;

use crate::store::{Store, StoreEvent};

pub use derive::Deriver;
pub use filter::{FilterError, Filters};

/// How many events are kept for `--since` (the oldest go first). A count, not an age: at 200
/// tasks a scale from 0 produces about 1,000 task events, so this holds the last large change.
pub const HISTORY: usize = 1000;

/// How many live events a slow subscriber may fall behind before its stream ends with an
/// error saying so.
const LIVE_CAPACITY: usize = 8192;

/// How often the leader is checked for a change.
const LEADER_POLL: Duration = Duration::from_millis(250);

/// The events one manager derived: a bounded history and the live feed. Cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    history: Arc<Mutex<VecDeque<Event>>>,
    live: broadcast::Sender<Event>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").finish_non_exhaustive()
    }
}

/// Now, in Unix nanoseconds.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl EventHub {
    /// An empty hub.
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        EventHub {
            history: Arc::new(Mutex::new(VecDeque::with_capacity(HISTORY))),
            live,
        }
    }

    /// Records events and sends them to every subscriber.
    pub fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        for event in events {
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(event.clone());
            let _ = self.live.send(event);
        }
    }

    /// The kept events from `since_ns` on (none when 0) and the feed of every later one,
    /// taken together so that no event is missed or seen twice.
    pub fn subscribe(&self, since_ns: i64) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.live.subscribe();
        let past = if since_ns > 0 {
            history
                .iter()
                .filter(|e| e.time_nano >= since_ns)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        (past, rx)
    }

    /// Follows `store` (and the leader, `leader()` giving the node that leads now) and
    /// publishes what changes, until the store's feed closes or the task is aborted.
    pub fn follow(
        &self,
        store: Store,
        leader: impl Fn() -> Option<String> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        let mut rx = store.watch();
        tokio::spawn(async move {
            // `leader()` reads the store itself: asked before the view, not inside it.
            let leader_now = leader();
            let mut deriver = store.view(|t| Deriver::new(t, leader_now));
            let mut tick = tokio::time::interval(LEADER_POLL);
            loop {
                tokio::select! {
                    next = rx.recv() => {
                        let event = match next {
                            Ok(event) => event,
                            // Fell behind the store: compare everything, as after a restore.
                            Err(broadcast::error::RecvError::Lagged(_)) => StoreEvent {
                                index: store.applied_index(),
                                changes: Vec::new(),
                                restored: true,
                            },
                            Err(broadcast::error::RecvError::Closed) => return,
                        };
                        let events = store.view(|t| deriver.batch(t, &event, now_ns()));
                        hub.publish(events);
                    }
                    _ = tick.tick() => {
                        hub.publish(deriver.leader(leader(), now_ns()));
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
