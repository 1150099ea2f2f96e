//! The leader-only Raft membership controller.
//!
//! The store says who the managers are (nodes with role manager and a Raft id); the Raft
//! configuration follows it, one change at a time:
//! 1. a manager whose id is in no configuration is added as a *learner* (it receives the log or a
//!    snapshot but does not vote, so a slow newcomer never costs the cluster its quorum);
//! 2. a learner that has caught up (its matched index within [`CATCH_UP_SLACK`] of the commit
//!    index, and answering) is promoted to *voter*;
//! 3. an id no manager holds any more (demoted or removed node) is removed;
//! 4. when that id is the leader's own (the leader was demoted, or left), leadership is handed to
//!    a caught-up voter first; the new leader then removes the old one.
//!
//! Ids come from the cluster's counter and are never reused (see [`super::allocate_raft_id`]).

use std::collections::BTreeSet;
use std::time::Duration;

use mini_proto::v1::NodeRole;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};

use super::HaProposer;
use crate::raft::Role;
use crate::store::Store;

/// How often the controller compares the store with the configuration.
const PERIOD: Duration = Duration::from_millis(200);
/// A learner this close to the commit index counts as caught up.
pub const CATCH_UP_SLACK: u64 = 16;
/// Longest one configuration change may take before the controller tries again.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the controller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// A configuration change for one id.
    Conf(ConfChangeType, u64),
    /// Hand leadership to this voter (the leader itself is no manager any more).
    TransferLeader(u64),
}

/// The one change to make next, if any.
fn next_change(managers: &BTreeSet<u64>, status: &crate::raft::RaftStatus) -> Option<Change> {
    next_conf_change(managers, status)
        .map(|(t, id)| Change::Conf(t, id))
        .or_else(|| {
            if managers.contains(&status.id) {
                return None;
            }
            // Demoted or leaving leader: the most caught-up active voter that stays takes over.
            status
                .progress
                .iter()
                .filter(|p| p.recent_active && managers.contains(&p.id))
                .filter(|p| status.voters.contains(&p.id))
                .max_by_key(|p| p.matched)
                .map(|p| Change::TransferLeader(p.id))
        })
}

/// The one configuration change to make next, if any.
fn next_conf_change(
    managers: &BTreeSet<u64>,
    status: &crate::raft::RaftStatus,
) -> Option<(ConfChangeType, u64)> {
    let voters: BTreeSet<u64> = status.voters.iter().copied().collect();
    let learners: BTreeSet<u64> = status.learners.iter().copied().collect();
    if let Some(&id) = managers
        .iter()
        .find(|id| !voters.contains(id) && !learners.contains(id))
    {
        return Some((ConfChangeType::AddLearnerNode, id));
    }
    for &id in learners.intersection(managers) {
        let caught_up = status
            .progress
            .iter()
            .any(|p| p.id == id && p.recent_active && p.matched + CATCH_UP_SLACK >= status.commit);
        if caught_up {
            return Some((ConfChangeType::AddNode, id));
        }
    }
    voters
        .union(&learners)
        .find(|id| !managers.contains(id) && **id != status.id)
        .map(|&id| (ConfChangeType::RemoveNode, id))
}

/// Runs until aborted (the leadership task aborts it when this manager stops leading).
pub async fn run(store: Store, proposer: HaProposer) {
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tick.tick().await;
        let status = proposer.raft().status();
        if status.role != Role::Leader || status.voters.is_empty() {
            continue;
        }
        let managers: BTreeSet<u64> = store.view(|t| {
            t.nodes
                .values()
                .filter(|n| n.role() == NodeRole::Manager && n.raft_id != 0)
                .map(|n| n.raft_id)
                .collect()
        });
        if managers.is_empty() {
            continue;
        }
        let (change_type, id) = match next_change(&managers, &status) {
            None => continue,
            Some(Change::Conf(change_type, id)) => (change_type, id),
            Some(Change::TransferLeader(id)) => {
                tracing::info!(to = id, "this manager was demoted: handing leadership over");
                proposer.raft().transfer_leader(id).await;
                // Give the transfer an election timeout to complete before trying again.
                tokio::time::sleep(super::TICK * super::ELECTION_TICKS as u32).await;
                continue;
            }
        };
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change_type);
        single.node_id = id;
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(single);
        tracing::info!(?change_type, raft_id = id, "raft membership change");
        let changed = proposer.raft().propose_conf_change(cc);
        match tokio::time::timeout(CHANGE_TIMEOUT, changed).await {
            Ok(Ok((index, conf))) => tracing::info!(
                index,
                voters = ?conf.voters,
                learners = ?conf.learners,
                "raft membership changed"
            ),
            Ok(Err(err)) => tracing::warn!(%err, raft_id = id, "raft membership change failed"),
            Err(_) => tracing::warn!(raft_id = id, "raft membership change not committed yet"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::RaftStatus;

    fn status(voters: &[u64], learners: &[u64], progress: &[(u64, u64, bool)]) -> RaftStatus {
        RaftStatus::test_leader(100, voters, learners, progress)
    }

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_new_manager_is_added_as_learner_first() {
        let s = status(&[1], &[], &[]);
        assert_eq!(
            next_change(&set(&[1, 2]), &s),
            Some(Change::Conf(ConfChangeType::AddLearnerNode, 2))
        );
    }

    #[test]
    fn a_learner_is_promoted_only_once_caught_up_and_active() {
        let behind = status(&[1], &[2], &[(2, 10, true)]);
        assert_eq!(next_change(&set(&[1, 2]), &behind), None);
        let silent = status(&[1], &[2], &[(2, 100, false)]);
        assert_eq!(next_change(&set(&[1, 2]), &silent), None);
        let caught_up = status(&[1], &[2], &[(2, 95, true)]);
        assert_eq!(
            next_change(&set(&[1, 2]), &caught_up),
            Some(Change::Conf(ConfChangeType::AddNode, 2))
        );
    }

    #[test]
    fn an_id_no_manager_holds_is_removed_but_never_the_leader_itself() {
        let s = status(&[1, 2, 3], &[], &[]);
        assert_eq!(
            next_change(&set(&[1, 2]), &s),
            Some(Change::Conf(ConfChangeType::RemoveNode, 3))
        );
        assert_eq!(
            next_conf_change(&set(&[2, 3]), &s),
            None,
            "the leader never removes itself"
        );
    }

    #[test]
    fn a_demoted_leader_hands_over_to_the_most_caught_up_active_voter() {
        let s = status(&[1, 2, 3], &[], &[(2, 90, true), (3, 99, true)]);
        assert_eq!(
            next_change(&set(&[2, 3]), &s),
            Some(Change::TransferLeader(3))
        );
        let one_silent = status(&[1, 2, 3], &[], &[(2, 90, true), (3, 99, false)]);
        assert_eq!(
            next_change(&set(&[2, 3]), &one_silent),
            Some(Change::TransferLeader(2))
        );
        let none_active = status(&[1, 2, 3], &[], &[(2, 90, false), (3, 99, false)]);
        assert_eq!(next_change(&set(&[2, 3]), &none_active), None);
    }
}
