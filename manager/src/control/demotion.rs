//! A manager the cluster no longer counts as one (`node demote`, or `swarm leave --force` on a
//! manager) steps down to a worker.
//!
//! The store decides: once this node's record says it is a worker (or holds another Raft id),
//! the node waits until the leader has taken its Raft id out of the configuration — stopping
//! earlier could cost the others their quorum, since it still counts as a voter until then —
//! and then stops its manager (Raft node, leader-only services), deletes its Raft log, and
//! records the role worker in STATE/membership.pb. Its listener, worker agent and tasks keep
//! running; the agent's session already follows the leader.
//!
//! A demoted leader first hands leadership over (see the membership controller in
//! `crate::ha`); it then waits like any other demoted manager. A manager demoted while it was
//! down never receives the entries that say so: once it has no leader for a while it asks its
//! peers, and steps down when the leader's configuration no longer holds it.
//!
//! A worker certificate installed while the manager runs settles it too: the CA signs one only
//! when the committed store no longer counts this node as a manager, and once the node holds
//! it no other manager accepts its Raft calls — it could neither take part in the group nor ask
//! the leader whether it was removed. Quorum is not at stake: `node demote` refuses when the
//! voters left would lack one.

use std::sync::Arc;
use std::time::Duration;

use mini_proto::v1::NodeRole;

use super::{ControlApi, ControlError, membership};
use crate::ha::GroupView;
use crate::manager::Manager;
use crate::store::ObjectKind;

/// How often a demoted manager checks whether the leader has removed it.
const POLL: Duration = Duration::from_millis(200);
/// Every this many rounds without a leader, a manager asks its peers whether it is still in the
/// Raft group.
const ASK_PEERS_EVERY: u64 = 5;

/// How [`ControlApi::wait_removed`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Removal {
    /// The leader's configuration no longer holds this manager.
    Removed,
    /// The store counts this node as a manager again: it only looked demoted while the store
    /// was behind (a manager that just joined reads old records of its node first).
    StillManager,
    /// `manager` stopped being this node's manager meanwhile.
    Replaced,
}

/// Whether this node was given a worker certificate after `generation` (the trust generation
/// when its manager started): see the module docs.
fn worker_certificate_since(trust: &mini_proto::tls::Trust, generation: u64) -> bool {
    trust.generation() != generation
        && trust
            .identity()
            .is_some_and(|id| id.role == NodeRole::Worker)
}

/// Whether the store no longer counts node `node_id` (running Raft id `own`) as a manager.
pub(super) fn demoted(manager: &Manager, node_id: &str, own: u64) -> bool {
    manager.store().view(|t| {
        t.nodes
            .get(node_id)
            .is_some_and(|n| n.role() != NodeRole::Manager || (n.raft_id != 0 && n.raft_id != own))
    })
}

/// Deletes the Raft log of a node that is no manager any more.
pub(super) fn remove_raft_state(state_dir: &std::path::Path) -> Result<(), ControlError> {
    let dir = state_dir.join("raft");
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ControlError::Internal(format!(
            "cannot remove {}: {e}",
            dir.display()
        ))),
    }
}

impl ControlApi {
    /// Watches `manager`'s own node record until it says this node is no manager, then steps
    /// down (see the module docs). Ends when `manager` is no longer this node's manager.
    pub(super) fn watch_role(&self, manager: Arc<Manager>) {
        let api = self.clone();
        tokio::spawn(async move {
            let own = manager.raft_status().id;
            let generation = api.inner.config.trust.generation();
            let mut events = manager.store().watch();
            let mut rounds = 0u64;
            // A manager that just joined replays the log from its start: until its own addition
            // is applied, neither its configuration nor its node record count it yet. Only a
            // manager that has been in its own configuration can have been demoted.
            let mut member = false;
            loop {
                if !api.is_current(&manager).await {
                    return;
                }
                let status = manager.raft_status();
                member |= status.in_config(own);
                if member && demoted(&manager, &api.node_id(), own) {
                    tracing::info!(
                        raft_id = own,
                        "this node is no manager any more: waiting for its removal from the Raft group"
                    );
                    match api.wait_removed(&manager, own, generation).await {
                        Removal::Removed => {
                            api.step_down(&manager, own).await;
                            return;
                        }
                        Removal::Replaced => return,
                        Removal::StillManager => {
                            tracing::info!(raft_id = own, "this node is a manager after all");
                        }
                    }
                }
                // Demoted while away: the leader no longer sends it anything, so the store never
                // says so. Without a leader for a while, ask the peers whether it is still in.
                rounds += 1;
                if member
                    && rounds.is_multiple_of(ASK_PEERS_EVERY)
                    && manager.raft_status().leader_id == 0
                    && (worker_certificate_since(&api.inner.config.trust, generation)
                        || manager.proposer().removed_from_group().await)
                {
                    tracing::info!(
                        raft_id = own,
                        "the leader's Raft configuration no longer holds this manager (demoted while away)"
                    );
                    api.step_down(&manager, own).await;
                    return;
                }
                tokio::select! {
                    event = events.recv() => match event {
                        Ok(e) if !e.touches(ObjectKind::Node) => {}
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        });
    }

    /// Whether `manager` is still this node's manager.
    async fn is_current(&self, manager: &Arc<Manager>) -> bool {
        self.inner
            .manager
            .read()
            .await
            .as_ref()
            .is_some_and(|m| Arc::ptr_eq(m, manager))
    }

    /// Waits until the leader's configuration no longer holds `own`, the store says this node
    /// is a manager after all, or `manager` stopped being this node's manager meanwhile. A
    /// worker certificate installed since trust generation `generation` counts as removed.
    pub(super) async fn wait_removed(
        &self,
        manager: &Arc<Manager>,
        own: u64,
        generation: u64,
    ) -> Removal {
        let mut last_leader = 0;
        let mut logged = std::time::Instant::now();
        let mut rounds = 0u64;
        loop {
            if !self.is_current(manager).await {
                return Removal::Replaced;
            }
            if !demoted(manager, &self.node_id(), own) {
                return Removal::StillManager;
            }
            let status = manager.raft_status();
            if status.leader_id != 0 && status.leader_id != own {
                last_leader = status.leader_id;
            }
            if !status.in_config(own) && status.applied > 0 {
                return Removal::Removed;
            }
            if worker_certificate_since(&self.inner.config.trust, generation) {
                tracing::info!(
                    raft_id = own,
                    "this node holds a worker certificate now: no manager accepts its Raft calls"
                );
                return Removal::Removed;
            }
            // A removed node stops hearing from the leader and soon forgets who leads: ask the
            // last leader it knew.
            let view: Option<GroupView> = if status.leader_id != 0 {
                Some(manager.proposer().group_view().await).filter(|v| !v.local)
            } else if last_leader != 0 {
                manager.proposer().view_of(last_leader).await
            } else {
                None
            };
            if let Some(view) = view
                && view.leader_id != own
                && !view.contains(own)
            {
                return Removal::Removed;
            }
            // Restarted after it was removed: it never learns of a leader. Ask the peers.
            rounds += 1;
            if status.leader_id == 0
                && last_leader == 0
                && rounds.is_multiple_of(ASK_PEERS_EVERY)
                && manager.proposer().removed_from_group().await
            {
                return Removal::Removed;
            }
            if logged.elapsed() > Duration::from_secs(10) {
                tracing::warn!(
                    raft_id = own,
                    "still in the Raft configuration; waiting for the leader to remove this manager"
                );
                logged = std::time::Instant::now();
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops `manager` and makes this node a worker of the same cluster.
    async fn step_down(&self, manager: &Arc<Manager>, own: u64) {
        let _member = self.inner.member_lock.lock().await;
        if !self.is_current(manager).await {
            return;
        }
        // The store of a manager demoted while away may still list it as a manager.
        let own_addr = manager.peers().own_addr();
        let mut managers = manager.manager_addrs();
        managers.retain(|a| *a != own_addr);
        self.inner.manager.write().await.take();
        manager.shutdown().await;
        let Some(mut record) = self.inner.membership.read().await.clone() else {
            return;
        };
        record.role = NodeRole::Worker as i32;
        record.raft_id = own;
        if !managers.is_empty() {
            record.managers = managers;
        }
        // The membership first: a crash before the log is gone leaves a worker with a stale
        // log, which a later promotion deletes.
        let saved = membership::save(&self.inner.config.state_dir, &record)
            .and_then(|()| remove_raft_state(&self.inner.config.state_dir));
        if let Err(err) = saved {
            tracing::error!(%err, "demoted, but cannot record it; a restart may bring the manager back");
        }
        *self.inner.membership.write().await = Some(record);
        tracing::info!(
            raft_id = own,
            "demoted: this node is now a worker (its Raft log is deleted)"
        );
    }
}
