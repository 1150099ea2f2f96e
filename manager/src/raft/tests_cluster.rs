//! Three Raft nodes in one process on an in-memory network, with a clock the test drives: the
//! nodes tick only when the test says so (`manual_ticks`), and the network can cut a node off.
//! Election, partition of the leader and heal, no split brain, a snapshot to a lagging follower,
//! and membership changes (learner → voter, removal). After raft-rs's `harness/src/network.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Message};
use tokio::sync::mpsc;

use super::tests::{Recorder, Seen};
use super::*;

/// The in-memory network: who is running, and who is cut off.
#[derive(Clone, Default)]
struct Net {
    inner: Arc<Mutex<NetState>>,
}

#[derive(Default)]
struct NetState {
    nodes: HashMap<u64, RaftHandle<usize>>,
    cut: HashSet<u64>,
}

impl Net {
    fn set_cut(&self, id: u64, cut: bool) {
        let mut s = self.inner.lock().unwrap();
        if cut {
            s.cut.insert(id);
        } else {
            s.cut.remove(&id);
        }
    }

    /// A transport for one node: messages go through a queue to a task that delivers them in
    /// order, unless either end is cut off.
    fn transport(&self) -> MemTransport {
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        let net = self.clone();
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let target = {
                    let s = net.inner.lock().unwrap();
                    if s.cut.contains(&msg.from) || s.cut.contains(&msg.to) {
                        None
                    } else {
                        s.nodes.get(&msg.to).cloned()
                    }
                };
                if let Some(h) = target {
                    let _ = h.step(msg).await;
                }
            }
        });
        MemTransport(tx)
    }
}

struct MemTransport(mpsc::UnboundedSender<Message>);

impl Transport for MemTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            let _ = self.0.send(m);
        }
    }
}

struct TestNode {
    handle: RaftHandle<usize>,
    task: RaftTask,
    seen: Seen,
    _dir: tempfile::TempDir,
}

/// The group: nodes by id, the network, and every (term, leader) ever seen.
struct Group {
    net: Net,
    nodes: HashMap<u64, TestNode>,
    leaders: HashMap<u64, u64>,
}

/// A node of the three-voter group other than `id`.
fn other_than(id: u64) -> u64 {
    if id == 1 { 2 } else { 1 }
}

fn node_config(dir: &std::path::Path, id: u64) -> RaftConfig {
    let mut c = RaftConfig::new(dir, id);
    c.manual_ticks = true;
    c.snapshot_interval = 8;
    c.keep_after_snapshot = 2;
    c
}

impl Group {
    fn new() -> Self {
        Group {
            net: Net::default(),
            nodes: HashMap::new(),
            leaders: HashMap::new(),
        }
    }

    fn start(&mut self, id: u64, mode: StartMode) {
        let dir = tempfile::tempdir().unwrap();
        let seen = Seen::default();
        let (handle, task) = start_with_transport(
            node_config(dir.path(), id),
            Recorder(seen.clone()),
            mode,
            self.net.transport(),
        )
        .expect("raft starts");
        self.net
            .inner
            .lock()
            .unwrap()
            .nodes
            .insert(id, handle.clone());
        self.nodes.insert(
            id,
            TestNode {
                handle,
                task,
                seen,
                _dir: dir,
            },
        );
    }

    fn h(&self, id: u64) -> &RaftHandle<usize> {
        &self.nodes[&id].handle
    }

    fn statuses(&self) -> Vec<RaftStatus> {
        let mut s: Vec<_> = self.nodes.values().map(|n| n.handle.status()).collect();
        s.sort_by_key(|s| s.id);
        s
    }

    /// Records leaders and fails on two leaders in one term (Raft §5.2: election safety).
    fn check_one_leader_per_term(&mut self) {
        for s in self.statuses() {
            if s.role == Role::Leader
                && let Some(other) = self.leaders.insert(s.term, s.id)
            {
                assert_eq!(other, s.id, "two leaders in term {}", s.term);
            }
        }
    }

    /// Advances every node's clock one tick at a time until `pred` holds.
    async fn tick_until(&mut self, what: &str, max_ticks: u32, pred: impl Fn(&Group) -> bool) {
        for _ in 0..max_ticks {
            // Let messages flow between ticks.
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(2)).await;
                self.check_one_leader_per_term();
                if pred(self) {
                    return;
                }
            }
            for n in self.nodes.values() {
                n.handle.tick(1).await;
            }
        }
        panic!(
            "after {max_ticks} ticks still waiting for {what}; statuses: {:#?}",
            self.statuses()
        );
    }

    fn leader(&self) -> Option<u64> {
        let leaders: Vec<u64> = self
            .statuses()
            .iter()
            .filter(|s| {
                s.role == Role::Leader && !self.net.inner.lock().unwrap().cut.contains(&s.id)
            })
            .map(|s| s.id)
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    async fn change(&mut self, leader: u64, change: ConfChangeType, id: u64) -> ConfState {
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change);
        single.node_id = id;
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(single);
        let h = self.h(leader).clone();
        let pending = tokio::spawn(async move { h.propose_conf_change(cc).await });
        self.tick_until("the conf change to apply", 200, |_| pending.is_finished())
            .await;
        pending.await.unwrap().expect("conf change applied").1
    }

    /// Proposes on `leader` and ticks until it is answered.
    async fn propose(&mut self, leader: u64, data: &[u8]) -> Result<(u64, usize), ProposeError> {
        self.proposal(leader, data, false).await
    }

    /// Proposes on `id` ([`RaftHandle::propose_or_forward`] if `forward`) and ticks until it is
    /// answered.
    async fn proposal(
        &mut self,
        id: u64,
        data: &[u8],
        forward: bool,
    ) -> Result<(u64, usize), ProposeError> {
        let h = self.h(id).clone();
        let data = data.to_vec();
        let pending = tokio::spawn(async move {
            if forward {
                h.propose_or_forward(data).await
            } else {
                h.propose(data).await
            }
        });
        self.tick_until("the proposal to be answered", 200, |_| {
            pending.is_finished()
        })
        .await;
        pending.await.unwrap()
    }

    /// Node 1 bootstraps; 2 and 3 join as learners and are promoted to voters.
    async fn three_voters() -> Group {
        let mut g = Group::new();
        g.start(1, StartMode::Bootstrap);
        g.tick_until("node 1 to lead", 50, |g| g.leader() == Some(1))
            .await;
        g.propose(1, b"before-join").await.unwrap();
        for id in [2, 3] {
            g.start(id, StartMode::Join { bootstrap_voter: 1 });
            let cs = g.change(1, ConfChangeType::AddLearnerNode, id).await;
            assert!(cs.learners.contains(&id), "{cs:?}");
            g.tick_until("the learner to catch up", 200, |g| {
                g.h(id).status().applied >= g.h(1).status().applied
            })
            .await;
            let cs = g.change(1, ConfChangeType::AddNode, id).await;
            assert!(
                cs.voters.contains(&id) && !cs.learners.contains(&id),
                "{cs:?}"
            );
        }
        g.tick_until("every node to see 3 voters", 200, |g| {
            g.statuses().iter().all(|s| s.voters == [1, 2, 3])
        })
        .await;
        g
    }

    async fn stop(self) {
        for (_, n) in self.nodes {
            n.handle.shutdown().await;
            n.task.await.unwrap().unwrap();
        }
    }
}

#[tokio::test]
async fn learners_catch_up_then_vote_and_the_log_is_the_same_everywhere() {
    let mut g = Group::three_voters().await;
    let (index, _) = g.propose(1, b"x").await.unwrap();
    g.tick_until("every node to apply x", 100, |g| {
        g.statuses().iter().all(|s| s.applied >= index)
    })
    .await;
    let logs: Vec<_> = [1, 2, 3]
        .iter()
        .map(|id| g.nodes[id].seen.applied())
        .collect();
    assert_eq!(logs[0], logs[1]);
    assert_eq!(logs[0], logs[2]);
    assert_eq!(logs[0].len(), 2, "before-join and x: {:?}", logs[0]);
    g.stop().await;
}

#[tokio::test]
async fn a_cut_off_leader_is_replaced_steps_down_and_follows_after_heal() {
    let mut g = Group::three_voters().await;
    let old = g.leader().unwrap();
    let old_term = g.h(old).status().term;
    g.net.set_cut(old, true);
    // The old leader still thinks it leads for a while; its proposal cannot commit.
    let stale = {
        let h = g.h(old).clone();
        tokio::spawn(async move { h.propose(b"lost".to_vec()).await })
    };
    g.tick_until("a new leader among the other two", 200, |g| {
        g.leader().is_some_and(|l| l != old)
    })
    .await;
    let new = g.leader().unwrap();
    assert!(g.h(new).status().term > old_term);
    let (index, _) = g.propose(new, b"after-failover").await.unwrap();
    g.tick_until("check-quorum to make the old leader step down", 200, |g| {
        g.h(old).status().role != Role::Leader
    })
    .await;
    assert!(!stale.is_finished(), "a minority leader must not commit");

    g.net.set_cut(old, false);
    g.tick_until("the old leader to follow and catch up", 300, |g| {
        let s = g.h(old).status();
        s.leader_id == new && s.applied >= index
    })
    .await;
    assert_eq!(stale.await.unwrap(), Err(ProposeError::Dropped));
    let applied = g.nodes[&old].seen.applied();
    assert!(applied.iter().any(|(_, d)| d == b"after-failover"));
    assert!(!applied.iter().any(|(_, d)| d == b"lost"));
    g.stop().await;
}

#[tokio::test]
async fn a_lagging_follower_gets_a_snapshot() {
    let mut g = Group::three_voters().await;
    let leader = g.leader().unwrap();
    let lagging = other_than(leader);
    g.net.set_cut(lagging, true);
    for i in 0..30 {
        g.propose(leader, format!("e{i}").as_bytes()).await.unwrap();
    }
    let s = g.h(leader).status();
    assert!(s.first_index > 2, "the leader's log was compacted: {s:?}");
    g.net.set_cut(lagging, false);
    g.tick_until("the lagging follower to catch up", 300, |g| {
        g.h(lagging).status().applied >= g.h(leader).status().applied
    })
    .await;
    assert!(
        !g.nodes[&lagging].seen.restores().is_empty(),
        "caught up without a snapshot"
    );
    assert_eq!(
        g.nodes[&lagging].seen.applied(),
        g.nodes[&leader].seen.applied()
    );
    g.stop().await;
}

#[tokio::test]
async fn a_removed_voter_no_longer_counts_for_quorum() {
    let mut g = Group::three_voters().await;
    let leader = g.leader().unwrap();
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    let cs = g
        .change(leader, ConfChangeType::RemoveNode, others[0])
        .await;
    assert_eq!(cs.voters.len(), 2, "{cs:?}");
    g.net.set_cut(others[0], true);
    // Two voters left: the leader and others[1] commit on their own.
    g.propose(leader, b"two-voters").await.unwrap();
    // Cut the last follower: one of two voters is not a majority.
    g.net.set_cut(others[1], true);
    let h = g.h(leader).clone();
    let pending = tokio::spawn(async move { h.propose(b"no-quorum".to_vec()).await });
    for _ in 0..30 {
        for n in g.nodes.values() {
            n.handle.tick(1).await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(!pending.is_finished(), "committed without a majority");
    pending.abort();
    g.stop().await;
}

#[tokio::test]
async fn healthy_members_stay_active_across_check_quorum_resets() {
    // raft-rs clears its `recent_active` flags at every election timeout; no status the leader
    // publishes may show a member that answers every heartbeat as inactive (it made `node ls`
    // flap and `node demote` refuse for lack of a reachable quorum).
    let g = Group::three_voters().await;
    let leader = g.leader().unwrap();
    let mut statuses = g.h(leader).subscribe();
    let watcher = tokio::spawn(async move {
        let mut inactive = Vec::new();
        while statuses.changed().await.is_ok() {
            let s = statuses.borrow_and_update().clone();
            if s.role == Role::Leader {
                inactive.extend(s.progress.iter().filter(|p| !p.recent_active).map(|p| p.id));
            }
        }
        inactive
    });
    for _ in 0..60 {
        for n in g.nodes.values() {
            n.handle.tick(1).await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(g.leader(), Some(leader));
    g.stop().await;
    let inactive = watcher.await.unwrap();
    assert!(inactive.is_empty(), "members shown inactive: {inactive:?}");
}

/// Commit rate and latency of 3 voters with fsync on, messages delivered in-process (no gRPC).
/// A measurement, not a check: `cargo test -p mini-manager --release -- --ignored --nocapture
/// commit_rate_of_three_voters`. Results are in BENCHMARKS.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly"]
async fn commit_rate_of_three_voters() {
    let net = Net::default();
    let mut nodes = Vec::new();
    for (id, mode) in [
        (1, StartMode::Bootstrap),
        (2, StartMode::Join { bootstrap_voter: 1 }),
        (3, StartMode::Join { bootstrap_voter: 1 }),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = RaftConfig::new(dir.path(), id);
        c.tick_interval = Duration::from_millis(50);
        let (h, t) = start_with_transport(c, Recorder(Seen::default()), mode, net.transport())
            .expect("raft starts");
        net.inner.lock().unwrap().nodes.insert(id, h.clone());
        nodes.push((h, t, dir));
    }
    let leader = nodes[0].0.clone();
    leader
        .subscribe()
        .wait_for(|s| s.role == Role::Leader)
        .await
        .unwrap();
    for (id, change) in [
        (2, ConfChangeType::AddLearnerNode),
        (3, ConfChangeType::AddLearnerNode),
        (2, ConfChangeType::AddNode),
        (3, ConfChangeType::AddNode),
    ] {
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change);
        single.node_id = id;
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(single);
        leader.propose_conf_change(cc).await.unwrap();
    }
    let payload = vec![7u8; 256];
    // One client, one proposal at a time.
    let n = 500;
    let mut latencies = Vec::with_capacity(n);
    let started = std::time::Instant::now();
    for _ in 0..n {
        let t = std::time::Instant::now();
        leader.propose(payload.clone()).await.unwrap();
        latencies.push(t.elapsed());
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    println!(
        "one client: {rate:.0} commits/s, p50 {:?}, p99 {:?}",
        latencies[n / 2],
        latencies[n * 99 / 100]
    );
    // Many clients: every proposal queued meanwhile shares the next fsync.
    for clients in [16, 64, 256] {
        let per_client = 20_000 / clients;
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (h, p) = (leader.clone(), payload.clone());
            tasks.push(tokio::spawn(async move {
                let mut l = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let t = std::time::Instant::now();
                    h.propose(p.clone()).await.unwrap();
                    l.push(t.elapsed());
                }
                l
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let rate = all.len() as f64 / started.elapsed().as_secs_f64();
        all.sort();
        println!(
            "{clients} clients: {rate:.0} commits/s, p50 {:?}, p99 {:?}",
            all[all.len() / 2],
            all[all.len() * 99 / 100]
        );
    }
    for (h, t, _dir) in nodes {
        h.shutdown().await;
        t.await.unwrap().unwrap();
    }
}

impl Group {
    /// Proposes on `id` with [`RaftHandle::propose_or_forward`] and ticks until it is answered.
    async fn forward(&mut self, id: u64, data: &[u8]) -> Result<(u64, usize), ProposeError> {
        self.proposal(id, data, true).await
    }

    /// How many times each node applied `data`.
    fn applied_count(&self, data: &[u8]) -> Vec<(u64, usize)> {
        let mut counts: Vec<_> = self
            .nodes
            .iter()
            .map(|(id, n)| {
                let applied = n.seen.applied();
                (*id, applied.iter().filter(|(_, d)| d == data).count())
            })
            .collect();
        counts.sort();
        counts
    }
}

#[tokio::test]
async fn a_followers_proposal_goes_to_the_leader_as_a_raft_message_and_is_answered_there() {
    let mut g = Group::three_voters().await;
    let leader = g.leader().unwrap();
    let follower = other_than(leader);
    // A plain proposal on a follower is still refused.
    assert_eq!(
        g.propose(follower, b"plain").await,
        Err(ProposeError::NotLeader {
            leader: Some(leader)
        })
    );

    let (index, outcome) = g.forward(follower, b"forwarded").await.unwrap();
    // The answer is the follower's own apply of the entry: it reads its write at once.
    let applied = g.nodes[&follower].seen.applied();
    assert_eq!(
        applied
            .iter()
            .position(|(i, d)| *i == index && d == b"forwarded"),
        Some(outcome - 1)
    );
    g.tick_until("every node to apply it", 100, |g| {
        g.statuses().iter().all(|s| s.applied >= index)
    })
    .await;
    assert_eq!(g.applied_count(b"forwarded"), vec![(1, 1), (2, 1), (3, 1)]);

    // Many at once from one follower: each answered with its own entry.
    let h = g.h(follower).clone();
    let pending = tokio::spawn(async move {
        let calls = (0..20u8).map(|i| h.propose_or_forward(vec![b'f', i]));
        futures::future::join_all(calls).await
    });
    g.tick_until("20 forwarded proposals answered", 200, |_| {
        pending.is_finished()
    })
    .await;
    let answers = pending.await.unwrap();
    let applied = g.nodes[&follower].seen.applied();
    for (i, answer) in answers.into_iter().enumerate() {
        let (index, _) = answer.unwrap_or_else(|e| panic!("proposal {i}: {e}"));
        let at = applied
            .iter()
            .find(|(x, _)| *x == index)
            .map(|(_, d)| d.clone());
        assert_eq!(
            at,
            Some(vec![b'f', i as u8]),
            "proposal {i} answered with index {index}"
        );
    }
    g.stop().await;
}

#[tokio::test]
async fn a_forwarded_proposal_that_never_reaches_a_leader_is_answered_lost() {
    let mut g = Group::three_voters().await;
    let old = g.leader().unwrap();
    let follower = other_than(old);
    g.net.set_cut(old, true);
    // The follower still follows the old leader: the proposal goes there and is lost.
    let h = g.h(follower).clone();
    let pending = tokio::spawn(async move { h.propose_or_forward(b"lost".to_vec()).await });
    g.tick_until("the forwarded proposal to be answered", 400, |_| {
        pending.is_finished()
    })
    .await;
    assert_eq!(pending.await.unwrap(), Err(ProposeError::Lost));
    // Proposed again, it commits under the new leader.
    g.tick_until("a new leader among the other two", 200, |g| {
        g.leader().is_some_and(|l| l != old)
    })
    .await;
    let (index, _) = g.forward(follower, b"again").await.unwrap();
    g.net.set_cut(old, false);
    g.tick_until("every node to apply it", 300, |g| {
        g.statuses().iter().all(|s| s.applied >= index)
    })
    .await;
    assert_eq!(g.applied_count(b"lost"), vec![(1, 0), (2, 0), (3, 0)]);
    assert_eq!(g.applied_count(b"again"), vec![(1, 1), (2, 1), (3, 1)]);
    g.stop().await;
}

#[tokio::test]
async fn commits_reach_followers_at_once_only_when_one_waits_for_them() {
    let g = Group::three_voters().await;
    let leader = g.leader().unwrap();
    let follower = other_than(leader);
    let third = (1..=3).find(|&id| id != leader && id != follower).unwrap();
    // No tick from here on: no heartbeat carries a commit index, only broadcasts do.
    let within = Duration::from_secs(5);

    // A follower's proposal: its writer waits for the follower to apply it, so the leader
    // broadcasts the commit at once.
    let forwarded = tokio::time::timeout(within, g.h(follower).propose_or_forward(b"f".to_vec()))
        .await
        .expect("a follower's proposal answered without a tick");
    let (index, _) = forwarded.unwrap();
    // The answer comes as the entry is applied; the status that shows it is published at the
    // end of the same round.
    let mut status = g.h(follower).subscribe();
    let applied = tokio::time::timeout(within, status.wait_for(|s| s.applied >= index));
    assert!(
        matches!(applied.await, Ok(Ok(_))),
        "the follower answered index {index} but shows applied {}",
        g.h(follower).status().applied
    );

    // The leader's own write: answered on the leader, not broadcast (the next append or
    // heartbeat carries it).
    let (index, _) = tokio::time::timeout(within, g.h(leader).propose(b"l".to_vec()))
        .await
        .expect("the leader's proposal answered without a tick")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for id in [follower, third] {
        let status = g.h(id).status();
        assert!(
            status.commit < index,
            "node {id} learned commit {} without a heartbeat: {status:?}",
            status.commit
        );
    }

    // Asked (a consistent read on a follower waits for it), the leader sends it at once.
    g.h(leader).broadcast_commit();
    let deadline = tokio::time::Instant::now() + within;
    for id in [follower, third] {
        let mut status = g.h(id).subscribe();
        let applied = tokio::time::timeout_at(deadline, status.wait_for(|s| s.applied >= index));
        assert!(
            matches!(applied.await, Ok(Ok(_))),
            "node {id} applied {}, not {index}, within {within:?} of the broadcast",
            g.h(id).status().applied
        );
    }
    g.stop().await;
}
