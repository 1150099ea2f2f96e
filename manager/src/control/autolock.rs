//! `swarm init --autolock`, `swarm update --autolock`, `swarm unlock-key` and `swarm unlock`.

use mini_proto::v1::{
    Cluster, Membership, NodeRole, SwarmUnlockKeyRequest, SwarmUnlockKeyResponse,
    SwarmUnlockRequest, SwarmUnlockResponse, store_action::Action,
};

use super::{ControlApi, ControlError};
use crate::manager::Manager;
use crate::raft::{self, KeyError, RaftError, UnlockKey, keys};
use crate::store::update_action;

/// Docker's answer to every call a locked manager cannot serve.
pub(super) const LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be \
     used. Please use \"mini swarm unlock\" to unlock it.";

/// Whether this node is a manager whose Raft store key is sealed by an unlock key.
pub(super) fn is_locked(state_dir: &std::path::Path, membership: &Membership) -> bool {
    membership.role() == NodeRole::Manager
        && raft::has_state(state_dir)
        && keys::is_sealed(&raft::raft_dir(state_dir))
}

/// Turns autolock on (a new key, unless one is set) or off (the key dropped) in `cluster`.
pub(super) fn set(cluster: &mut Cluster, on: bool) {
    if on && !(cluster.autolock && UnlockKey::from_bytes(&cluster.unlock_key).is_ok()) {
        cluster.unlock_key = UnlockKey::generate().as_bytes().to_vec();
    }
    if !on {
        cluster.unlock_key.clear();
    }
    cluster.autolock = on;
}

/// The cluster's unlock key as the user types it.
pub(super) fn key_text(cluster: &Cluster) -> Option<String> {
    if !cluster.autolock {
        return None;
    }
    UnlockKey::from_bytes(&cluster.unlock_key)
        .ok()
        .map(|k| k.to_text())
}

/// `swarm unlock-key [--rotate]`.
pub(super) async fn unlock_key(
    manager: &Manager,
    request: SwarmUnlockKeyRequest,
) -> Result<SwarmUnlockKeyResponse, ControlError> {
    let cluster = manager
        .write(|t| {
            let mut cluster = t.cluster()?.clone();
            if !cluster.autolock {
                return Err(ControlError::Precondition(
                    "no unlock key is set: autolock is off (turn it on with `mini swarm update \
                     --autolock=true`)"
                        .into(),
                ));
            }
            if !request.rotate {
                return Ok((Vec::new(), cluster));
            }
            cluster.unlock_key = UnlockKey::generate().as_bytes().to_vec();
            Ok((
                vec![update_action(Action::PutCluster(cluster.clone()))],
                cluster,
            ))
        })
        .await?;
    if request.rotate {
        tracing::info!("the swarm's unlock key was rotated");
    }
    Ok(SwarmUnlockKeyResponse {
        unlock_key: key_text(&cluster).unwrap_or_default(),
    })
}

/// `swarm unlock`: opens the sealed store key with the given unlock key and starts the node.
pub(super) async fn unlock(
    api: &ControlApi,
    request: SwarmUnlockRequest,
) -> Result<SwarmUnlockResponse, ControlError> {
    let _member = api.inner.member_lock.lock().await;
    if !api.is_locked() {
        return Err(ControlError::Precondition("swarm is not locked".into()));
    }
    let key =
        UnlockKey::parse(&request.unlock_key).map_err(|e| ControlError::Invalid(e.to_string()))?;
    let raft_dir = raft::raft_dir(&api.inner.config.state_dir);
    match keys::open_data_key(&raft_dir, Some(&key)) {
        Ok(_) => {}
        Err(RaftError::Key(KeyError::WrongKey)) => {
            return Err(ControlError::Invalid(KeyError::WrongKey.to_string()));
        }
        Err(e) => return Err(ControlError::Internal(e.to_string())),
    }
    let membership = api
        .inner
        .membership
        .read()
        .await
        .clone()
        .ok_or_else(|| ControlError::Internal("a locked node without a membership".into()))?;
    api.resume(membership, Some(key)).await?;
    api.inner
        .locked
        .store(false, std::sync::atomic::Ordering::SeqCst);
    tracing::info!("swarm unlocked: this manager is running again");
    Ok(SwarmUnlockResponse {})
}
