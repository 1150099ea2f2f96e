//! Read, check, write: the one way a caller changes the store from what it read.
//!
//! A caller decides from a consistent view (validation, conflicts, allocations), then proposes
//! what it decided as one batch. Puts carry the version of the object they were decided from,
//! so the deterministic apply refuses a batch decided from a view that has since changed
//! ([`ApplyError::Stale`]); the caller then simply decides again on the new state.

use mini_proto::v1::{StoreAction, StoreBatch, store_action::Action};

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use super::{ApplyError, ObjectKind, Proposer, Store, Tables, WriteError};

/// How many times a step is decided again after the store refused it as stale. Writers do not
/// queue behind a lock, so under many concurrent writers of one object each round lets at least
/// one of them through; the others decide again on the new state.
pub const STALE_RETRIES: usize = 64;

/// An action that creates an object which must not exist yet.
pub fn create_action(action: Action) -> StoreAction {
    StoreAction {
        action: Some(action),
        create: true,
    }
}

/// An action that replaces an existing object (checked against the version it carries) or
/// removes one.
pub fn update_action(action: Action) -> StoreAction {
    StoreAction {
        action: Some(action),
        create: false,
    }
}

/// Where the writers of one manager that lost a race for an object wait their turn for it.
///
/// Writers decide without a lock; when many of them write one object at once (64 clients
/// updating one service or node), all but one are refused as stale in each round and could
/// lose again and again. A writer refused as stale queues for that object: the writers that
/// already lost once then decide again one at a time, each on the newest version, while
/// writers of other objects are not held up. Cheap to share; entries go when unused.
#[derive(Default)]
pub struct Contention {
    queues: std::sync::Mutex<HashMap<(ObjectKind, String), Weak<Turn>>>,
}

/// One object's queue of writers.
type Turn = tokio::sync::Mutex<()>;

impl Contention {
    fn queue(&self, kind: ObjectKind, id: &str) -> Arc<Turn> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if queues.len() > 1024 {
            queues.retain(|_, q| q.strong_count() > 0);
        }
        let key = (kind, id.to_string());
        if let Some(queue) = queues.get(&key).and_then(Weak::upgrade) {
            return queue;
        }
        let queue = Arc::new(Turn::new(()));
        queues.insert(key, Arc::downgrade(&queue));
        queue
    }
}

/// Runs `decide` on a consistent view of `store`, proposes the actions it returns as one batch
/// and returns its answer once the batch is applied. When the store refuses the batch because an
/// object changed since the view (a stale version), `decide` runs again on the new state, up to
/// [`STALE_RETRIES`] times. Nothing is proposed when `decide` fails or decides no action.
pub async fn read_check_write<P, T, E>(
    store: &Store,
    proposer: &P,
    decide: impl FnMut(&Tables) -> Result<(Vec<StoreAction>, T), E>,
) -> Result<T, E>
where
    P: Proposer,
    E: From<WriteError>,
{
    read_check_write_queued(store, proposer, &Contention::default(), decide).await
}

/// [`read_check_write`], where a writer refused as stale waits its turn for the object in
/// `contention` (see [`Contention`]) before it decides again.
pub async fn read_check_write_queued<P, T, E>(
    store: &Store,
    proposer: &P,
    contention: &Contention,
    mut decide: impl FnMut(&Tables) -> Result<(Vec<StoreAction>, T), E>,
) -> Result<T, E>
where
    P: Proposer,
    E: From<WriteError>,
{
    let mut attempt = 0;
    // Held from the first stale refusal on: this writer's turn for the object it lost.
    let mut turn: Option<tokio::sync::OwnedMutexGuard<()>> = None;
    loop {
        let (actions, answer) = store.view(&mut decide)?;
        if actions.is_empty() {
            return Ok(answer);
        }
        let batch = StoreBatch {
            actions,
            proposed_at_ms: crate::ids::now_ms(),
            ..Default::default()
        };
        match proposer.propose(batch).await {
            Ok(_) => return Ok(answer),
            Err(WriteError::Rejected(ApplyError::Stale { kind, id, .. }))
                if attempt < STALE_RETRIES =>
            {
                attempt += 1;
                if turn.is_none() {
                    turn = Some(contention.queue(kind, &id).lock_owned().await);
                } else if attempt > 2 {
                    // Lost again with its turn (to writers deciding for the first time, or on
                    // another object): spread out a little before deciding again.
                    let most = (attempt as u64).min(16);
                    let pause = rand::random_range(0..=most * 250);
                    tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use mini_proto::v1::{Network, NetworkSpec};

    use super::*;
    use crate::error::ControlError;
    use crate::store::LocalProposer;

    fn network(name: &str, subnet: &str) -> Network {
        Network {
            id: "n1".into(),
            spec: Some(NetworkSpec {
                name: name.into(),
                driver: "overlay".into(),
                ..Default::default()
            }),
            subnet: subnet.into(),
            ..Default::default()
        }
    }

    /// Applies a competing write before the first batch it is given, as another manager's
    /// call landing between a view and its write would.
    struct Racing {
        store: Store,
        inner: LocalProposer,
        raced: AtomicUsize,
    }

    impl Proposer for Racing {
        async fn propose(&self, batch: StoreBatch) -> Result<u64, WriteError> {
            if self.raced.fetch_add(1, Ordering::SeqCst) == 0 {
                let mut current = self.store.view(|t| t.networks["n1"].clone());
                current.subnet = "10.9.0.0/24".into();
                self.inner
                    .propose(StoreBatch {
                        actions: vec![update_action(Action::PutNetwork(current))],
                        proposed_at_ms: 1,
                        ..Default::default()
                    })
                    .await?;
            }
            self.inner.propose(batch).await
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stale_decision_is_made_again_on_the_new_state() {
        let store = Store::new();
        let proposer = Racing {
            store: store.clone(),
            inner: LocalProposer::new(store.clone()),
            raced: AtomicUsize::new(0),
        };
        proposer
            .inner
            .propose(StoreBatch {
                actions: vec![create_action(Action::PutNetwork(network(
                    "front",
                    "10.1.0.0/24",
                )))],
                proposed_at_ms: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut seen = Vec::new();
        let renamed: Result<String, WriteError> = read_check_write(&store, &proposer, |t| {
            let mut n = t.networks["n1"].clone();
            seen.push(n.subnet.clone());
            n.spec.as_mut().unwrap().name = "back".into();
            Ok((
                vec![update_action(Action::PutNetwork(n))],
                "done".to_string(),
            ))
        })
        .await;
        assert_eq!(renamed.unwrap(), "done");
        assert_eq!(
            seen,
            ["10.1.0.0/24", "10.9.0.0/24"],
            "decided twice, the second time on the new state"
        );
        let n = store.view(|t| t.networks["n1"].clone());
        assert_eq!(
            (n.spec.unwrap().name.as_str(), n.subnet.as_str()),
            ("back", "10.9.0.0/24")
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn nothing_is_written_when_the_check_fails_or_decides_nothing() {
        let store = Store::new();
        let proposer = LocalProposer::new(store.clone());
        let refused: Result<(), ControlError> = read_check_write(&store, &proposer, |_| {
            Err(ControlError::Conflict("name taken".into()))
        })
        .await;
        assert!(
            matches!(refused, Err(ControlError::Conflict(_))),
            "{refused:?}"
        );
        let nothing: Result<u8, WriteError> =
            read_check_write(&store, &proposer, |_| Ok((Vec::new(), 7))).await;
        assert_eq!(nothing.unwrap(), 7);
        assert_eq!(store.applied_index(), 0, "no batch was proposed");
    }
}
