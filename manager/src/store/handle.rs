//! [`Store`]: the shared handle readers and the Raft log use.

use std::sync::{Arc, RwLock};

use mini_proto::v1::{StoreBatch, StoreSnapshot};
use prost::Message;
use tokio::sync::broadcast;

use super::recent::Recent;
use super::{ApplyError, StoreEvent, Tables, apply::apply_batch};

/// How many events a slow watcher may fall behind before it is told it lagged
/// (it then re-reads the whole store, as after a restore).
const WATCH_CAPACITY: usize = 4096;

/// The store: tables behind a lock, the index of the last applied batch, and
/// the change feed. Cheap to clone; all clones share the same tables.
#[derive(Clone)]
pub struct Store {
    /// Readers take the read lock only for the time of a closure; the only
    /// writer is the Raft apply path (one batch at a time).
    inner: Arc<RwLock<Inner>>,
    events: broadcast::Sender<StoreEvent>,
}

thread_local! {
    /// Whether this thread holds the store's lock (debug builds check it).
    static HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the store's lock held by this thread while it lives. A second lock taken inside
/// (a `view` in a `view`'s closure) deadlocks as soon as the Raft loop waits to write in
/// between (std's lock lets a waiting writer go first): debug builds, and so every test,
/// panic there instead, naming the mistake.
struct Held;

impl Held {
    fn take() -> Held {
        // Release builds skip the mark: views are the store's hot path.
        if cfg!(debug_assertions) {
            HELD.with(|held| {
                assert!(
                    !held.get(),
                    "the store's lock taken again inside a view: deadlocks when a write waits \
                     in between; read what the closure needs before the view"
                );
                held.set(true);
            });
        }
        Held
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if cfg!(debug_assertions) {
            HELD.with(|held| held.set(false));
        }
    }
}

struct Inner {
    tables: Tables,
    applied_index: u64,
    /// The proposals applied lately (see [`Recent`]).
    recent: Recent,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(WATCH_CAPACITY);
        Store {
            inner: Arc::new(RwLock::new(Inner {
                tables: Tables::default(),
                applied_index: 0,
                recent: Recent::default(),
            })),
            events,
        }
    }

    /// Runs `f` on a consistent view of the tables.
    pub fn view<R>(&self, f: impl FnOnce(&Tables) -> R) -> R {
        let _held = Held::take();
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        f(&inner.tables)
    }

    /// Index of the last batch applied (0 for an empty store).
    pub fn applied_index(&self) -> u64 {
        let _held = Held::take();
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .applied_index
    }

    /// A feed of every change applied from now on.
    pub fn watch(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    /// Applies an encoded batch committed at `index`.
    pub fn apply_entry(&self, index: u64, data: &[u8]) -> Result<(), ApplyError> {
        let batch = StoreBatch::decode(data).map_err(|e| ApplyError::Decode {
            index,
            reason: e.to_string(),
        })?;
        self.apply(index, &batch)
    }

    /// Applies a batch committed at `index`, all of it or nothing. A batch whose
    /// `proposal_id` was applied lately (a retried proposal) is not applied again: it answers
    /// as it did the first time, applied.
    pub fn apply(&self, index: u64, batch: &StoreBatch) -> Result<(), ApplyError> {
        let _held = Held::take();
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        // The index advances even for a refused batch: the entry is consumed.
        inner.applied_index = index;
        if let Some(first) = inner.recent.applied_at(batch.proposal_id) {
            tracing::debug!(
                index,
                first,
                "a retried proposal that was applied already: skipped"
            );
            return Ok(());
        }
        let changes = apply_batch(&mut inner.tables, index, batch)?;
        inner
            .recent
            .record(batch.proposal_id, index, batch.proposed_at_ms);
        drop(inner);
        let _ = self.events.send(StoreEvent {
            index,
            changes,
            restored: false,
        });
        Ok(())
    }

    /// The whole store, encoded, with the index it reflects.
    pub fn snapshot(&self) -> (u64, Vec<u8>) {
        let _held = Held::take();
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut snapshot = inner.tables.to_snapshot();
        snapshot.proposals = inner.recent.to_snapshot();
        (inner.applied_index, snapshot.encode_to_vec())
    }

    /// Replaces everything with an encoded snapshot taken at `index`.
    pub fn restore(&self, index: u64, data: &[u8]) -> Result<(), ApplyError> {
        let mut snapshot = StoreSnapshot::decode(data).map_err(|e| ApplyError::Decode {
            index,
            reason: e.to_string(),
        })?;
        let recent = Recent::from_snapshot(std::mem::take(&mut snapshot.proposals));
        let _held = Held::take();
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.tables = Tables::from_snapshot(snapshot);
        inner.recent = recent;
        inner.applied_index = index;
        drop(inner);
        let _ = self.events.send(StoreEvent {
            index,
            changes: Vec::new(),
            restored: true,
        });
        Ok(())
    }
}
