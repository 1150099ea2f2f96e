//! The Raft group as the leader sees it: who is in the configuration and who answers.
//!
//! Only the leader tracks every member's progress, so a follower asks the leader (the
//! `ReadIndex` call carries the leader's view) and falls back to its own, weaker view — which
//! peers took a message from it lately — when no leader answers. The view feeds `node ls`'s
//! MANAGER STATUS on any manager, the quorum check before a manager leaves, and a demoted
//! manager's wait for its removal from the configuration.

use std::collections::BTreeSet;
use std::time::Duration;

use mini_proto::v1::raft_transport_client::RaftTransportClient;
use mini_proto::v1::{ReadIndexRequest, ReadIndexResponse};

use super::{HaProposer, REACHABLE_WITHIN};
use crate::raft::{RaftStatus, Role};

/// How long a follower waits for the leader's view before it falls back to its own.
pub const ASK_LEADER_WITHIN: Duration = Duration::from_millis(800);

/// The members of the Raft group and which of them answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupView {
    /// The Raft id of the leader whose view this is (0: no leader answered).
    pub leader_id: u64,
    /// Voters of the configuration.
    pub voters: Vec<u64>,
    /// Learners of the configuration.
    pub learners: Vec<u64>,
    /// Members (other than the one that made the view) not heard from lately.
    pub unreachable: BTreeSet<u64>,
    /// True when no leader answered: the view is this manager's own guess.
    pub local: bool,
}

impl GroupView {
    /// The view the leader `status` has (every member's progress).
    pub fn of_leader(status: &RaftStatus) -> GroupView {
        let unreachable = members(status)
            .filter(|&id| id != status.id)
            .filter(|&id| !status.hears_from(id))
            .collect();
        GroupView {
            leader_id: status.id,
            voters: status.voters.clone(),
            learners: status.learners.clone(),
            unreachable,
            local: false,
        }
    }

    /// The view as it travels in a `ReadIndex` answer.
    pub fn to_response(&self, commit_index: u64) -> ReadIndexResponse {
        ReadIndexResponse {
            commit_index,
            voters: self.voters.clone(),
            learners: self.learners.clone(),
            unreachable: self.unreachable.iter().copied().collect(),
            leader_id: self.leader_id,
        }
    }

    /// The view a `ReadIndex` answer carries.
    pub fn from_response(r: &ReadIndexResponse) -> GroupView {
        GroupView {
            leader_id: r.leader_id,
            voters: r.voters.clone(),
            learners: r.learners.clone(),
            unreachable: r.unreachable.iter().copied().collect(),
            local: false,
        }
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: u64) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }
}

fn members(status: &RaftStatus) -> impl Iterator<Item = u64> + '_ {
    status.voters.iter().chain(status.learners.iter()).copied()
}

impl HaProposer {
    /// The group as the leader sees it: computed here on the leader, asked of the leader on a
    /// follower, or — when no leader answers within [`ASK_LEADER_WITHIN`] — this manager's own
    /// view with [`GroupView::local`] set.
    pub async fn group_view(&self) -> GroupView {
        let status = self.raft().status();
        if status.role == Role::Leader {
            return GroupView::of_leader(&status);
        }
        if status.leader_id != 0
            && let Some(view) = self.view_of(status.leader_id).await
        {
            return view;
        }
        let unreachable = members(&status)
            .filter(|&id| id != status.id)
            .filter(|&id| !self.peers().reached_lately(id, REACHABLE_WITHIN))
            .collect();
        GroupView {
            leader_id: 0,
            voters: status.voters.clone(),
            learners: status.learners.clone(),
            unreachable,
            local: true,
        }
    }

    /// Whether this manager, once a member of the group, was removed from it: its own
    /// configuration holds its id but the leader's (found by asking every known peer) does not.
    /// Ids are never reused, so a removal is final. A manager that just joined and is not a
    /// member yet is never "removed". Used by a manager that was demoted while it was away:
    /// the leader never sends it the entries that say so.
    pub(crate) async fn removed_from_group(&self) -> bool {
        let status = self.raft().status();
        let own = status.id;
        if !status.in_config(own) {
            return false;
        }
        for id in self.peers().ids() {
            if id == own {
                continue;
            }
            if let Some(view) = self.view_of(id).await {
                return !view.contains(own);
            }
        }
        false
    }

    /// The view of the manager with Raft id `leader`, if it answers as the leader within
    /// [`ASK_LEADER_WITHIN`].
    pub(crate) async fn view_of(&self, leader: u64) -> Option<GroupView> {
        let channel = self.peers().channel_to(leader)?;
        let request = ReadIndexRequest {
            cluster_id: self.peers().cluster_id(),
        };
        let mut client = RaftTransportClient::new(channel);
        let answer = tokio::time::timeout(ASK_LEADER_WITHIN, client.read_index(request)).await;
        match answer {
            Ok(Ok(r)) => {
                self.peers().delivered(leader);
                Some(GroupView::from_response(r.get_ref()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_counts_members_without_recent_answers_as_unreachable() {
        let progress = [(2, 10, true), (3, 10, false), (4, 10, false)];
        let status = RaftStatus::test_leader(10, &[1, 2, 3], &[4], &progress);
        let view = GroupView::of_leader(&status);
        assert_eq!(view.unreachable, BTreeSet::from([3, 4]));
        assert!(!view.local);
        let back = GroupView::from_response(&view.to_response(10));
        assert_eq!(back, view);
        assert!(back.contains(4) && !back.contains(5));
    }
}
