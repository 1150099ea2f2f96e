//! Autolock: each manager keeps its Raft store's data key sealed by the swarm's unlock key
//! while the cluster object says `autolock` (see [`crate::raft::keys`]).

use std::path::PathBuf;

use tokio::sync::broadcast::error::RecvError;

use crate::raft::{DataKey, UnlockKey, keys};
use crate::store::{ObjectKind, Store};

/// What the cluster object asks of this manager's key file: sealed with this key, or in the
/// clear (`None`). `None` overall while the store has no cluster object yet.
fn wanted(store: &Store) -> Option<Option<UnlockKey>> {
    store.view(|t| {
        t.cluster.as_ref().map(|c| {
            if c.autolock {
                UnlockKey::from_bytes(&c.unlock_key).ok()
            } else {
                None
            }
        })
    })
}

/// Follows the cluster object and seals this manager's data key again whenever autolock is
/// turned on or off or its key rotated. `sealed_with` is how the key file is stored now.
pub(crate) fn follow(
    store: Store,
    raft_dir: PathBuf,
    key: DataKey,
    mut sealed_with: Option<UnlockKey>,
) -> tokio::task::JoinHandle<()> {
    let mut events = store.watch();
    tokio::spawn(async move {
        loop {
            if let Some(want) = wanted(&store)
                && want != sealed_with
            {
                match keys::reseal(&raft_dir, &key, want.as_ref()) {
                    Ok(()) => {
                        tracing::info!(
                            autolock = want.is_some(),
                            "this manager's raft store key is now {}",
                            if want.is_some() {
                                "sealed by the swarm's unlock key"
                            } else {
                                "stored unsealed (autolock off)"
                            }
                        );
                        sealed_with = want;
                    }
                    Err(err) => tracing::warn!(%err, "cannot store the raft data key again"),
                }
            }
            loop {
                match events.recv().await {
                    Ok(e) if e.touches(ObjectKind::Cluster) => break,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return,
                }
            }
        }
    })
}
