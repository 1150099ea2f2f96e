//! One test per hostile input: the guard refuses it, and (where raft-rs has a panic for it)
//! raft-rs without the guard does panic, so the test shows the case is real.

use std::panic::{AssertUnwindSafe, catch_unwind};

use raft::eraftpb::{ConfState, Entry, HardState, Message, MessageType, Snapshot};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};

use super::*;

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
}

/// Node 1 of voters {1, 2, 3}: entries 1..=5 of term 2, 3 of them committed, term 2.
fn follower() -> RawNode<MemStorage> {
    let store = MemStorage::new_with_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
    let entries: Vec<Entry> = (1..=5).map(|i| entry(i, 2)).collect();
    store.wl().append(&entries).unwrap();
    store.wl().set_hardstate(HardState {
        term: 2,
        commit: 3,
        ..Default::default()
    });
    let config = Config {
        id: 1,
        election_tick: 10,
        heartbeat_tick: 1,
        pre_vote: true,
        check_quorum: true,
        ..Default::default()
    };
    RawNode::new(
        &config,
        store,
        &slog::Logger::root(slog::Discard, slog::o!()),
    )
    .unwrap()
}

/// The same node after winning the election of term 3 with node 2's votes.
fn leader() -> RawNode<MemStorage> {
    let mut n = follower();
    n.campaign().unwrap();
    let mut pre = msg(MessageType::MsgRequestPreVoteResponse, 2, 3);
    pre.reject = false;
    n.step(pre).unwrap();
    n.step(msg(MessageType::MsgRequestVoteResponse, 2, 3))
        .unwrap();
    assert_eq!(n.raft.state, StateRole::Leader);
    n
}

fn msg(kind: MessageType, from: u64, term: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(kind);
    m.from = from;
    m.to = 1;
    m.term = term;
    m
}

/// Both checks, as the Raft loop runs them.
fn guard(n: &RawNode<MemStorage>, m: &Message) -> Result<(), String> {
    check_message(m, 1).and_then(|()| check_in_state(m, &Local::of(&n.raft)))
}

/// Whether raft-rs panics on `m` (then on `then`, if given) without the guard.
fn panics_unguarded(
    mut n: RawNode<MemStorage>,
    m: Message,
    then: impl FnOnce(&mut RawNode<MemStorage>),
) -> bool {
    catch_unwind(AssertUnwindSafe(move || {
        let _ = n.step(m);
        then(&mut n);
    }))
    .is_err()
}

#[test]
fn heartbeat_committing_past_the_log_is_refused() {
    let n = follower();
    let mut m = msg(MessageType::MsgHeartbeat, 2, 1000);
    m.commit = 1_000_000_000;
    let err = guard(&n, &m).unwrap_err();
    assert!(err.contains("past this node's last index 5"), "{err}");
    assert!(panics_unguarded(follower(), m, |_| {}));

    // A leader's real heartbeat commits at most what the follower has.
    let mut n = follower();
    let mut fine = msg(MessageType::MsgHeartbeat, 2, 2);
    fine.commit = 5;
    guard(&n, &fine).unwrap();
    n.step(fine).unwrap();
    assert_eq!(n.raft.raft_log.committed, 5);
}

#[test]
fn terms_out_of_range_are_refused() {
    let n = follower();
    let huge = msg(MessageType::MsgHeartbeat, 2, u64::MAX);
    let err = guard(&n, &huge).unwrap_err();
    assert!(err.contains("out of range"), "{err}");
    // Accepted, the term overflows at the node's next election.
    assert!(panics_unguarded(follower(), huge, |n| {
        let _ = n.campaign();
    }));
    guard(&n, &msg(MessageType::MsgHeartbeat, 2, MAX_TERM + 1)).unwrap_err();
    guard(&n, &msg(MessageType::MsgHeartbeat, 2, MAX_TERM)).unwrap();
    // Term 0 is how raft-rs marks local messages: from the network it would skip every term
    // check.
    let err = guard(&n, &msg(MessageType::MsgAppend, 2, 0)).unwrap_err();
    assert!(err.contains("term 0"), "{err}");
    let mut m = msg(MessageType::MsgRequestVote, 2, 5);
    m.log_term = 6;
    guard(&n, &m).unwrap_err();
}

#[test]
fn indexes_out_of_range_are_refused() {
    let n = leader();
    // A rejection whose hint is u64::MAX: raft-rs computes `hint + 1` while probing.
    let mut m = msg(MessageType::MsgAppendResponse, 2, 3);
    m.reject = true;
    m.index = 5;
    m.log_term = 1;
    m.reject_hint = u64::MAX;
    let err = guard(&n, &m).unwrap_err();
    assert!(err.contains("reject hint"), "{err}");
    assert!(panics_unguarded(leader(), m, |_| {}));
    for field in [
        |m: &mut Message| m.index = MAX_INDEX + 1,
        |m: &mut Message| m.commit = MAX_INDEX + 1,
    ] {
        let mut m = msg(MessageType::MsgHeartbeatResponse, 2, 3);
        field(&mut m);
        guard(&n, &m).unwrap_err();
    }
}

#[test]
fn append_responses_past_the_leaders_log_are_refused() {
    let n = leader();
    let last = n.raft.raft_log.last_index();
    let mut m = msg(MessageType::MsgAppendResponse, 2, 3);
    m.index = 1000;
    let err = guard(&n, &m).unwrap_err();
    assert!(err.contains("past the leader's last index"), "{err}");
    // Unguarded, the leader believes node 2 holds entries that do not exist.
    let mut unguarded = leader();
    unguarded.step(m).unwrap();
    assert_eq!(unguarded.raft.prs().get(2).unwrap().matched, 1000);
    assert!(1000 > last);

    let mut fine = msg(MessageType::MsgAppendResponse, 2, 3);
    fine.index = last;
    guard(&n, &fine).unwrap();
    // A follower does not read append responses: nothing to check there.
    guard(&follower(), &msg(MessageType::MsgAppendResponse, 2, 2)).unwrap();
}

#[test]
fn appends_must_follow_their_index() {
    let n = follower();
    // Entry 2 of term 3 after index 3: it conflicts with committed entry 2.
    let mut m = msg(MessageType::MsgAppend, 2, 3);
    m.index = 3;
    m.log_term = 2;
    m.commit = 3;
    m.set_entries(vec![entry(2, 3)].into());
    let err = guard(&n, &m).unwrap_err();
    assert!(err.contains("expected 4"), "{err}");
    assert!(panics_unguarded(follower(), m, |_| {}));

    let with = |entries: Vec<Entry>| {
        let mut m = msg(MessageType::MsgAppend, 2, 3);
        m.index = 5;
        m.log_term = 2;
        m.set_entries(entries.into());
        m
    };
    // Terms past the message's term, or going down, are refused.
    guard(&n, &with(vec![entry(6, 4)])).unwrap_err();
    guard(&n, &with(vec![entry(6, 3), entry(7, 2)])).unwrap_err();
    guard(&n, &with(vec![entry(6, 1)])).unwrap_err();
    // A real append passes and is taken.
    let mut n = follower();
    let fine = with(vec![entry(6, 2), entry(7, 3)]);
    guard(&n, &fine).unwrap();
    n.step(fine).unwrap();
    assert_eq!(n.raft.raft_log.last_index(), 7);
    // Entries ride only on appends.
    let mut m = msg(MessageType::MsgHeartbeat, 2, 3);
    m.set_entries(vec![entry(6, 3)].into());
    guard(&n, &m).unwrap_err();
}

fn snapshot_msg(conf: ConfState) -> Message {
    let mut m = msg(MessageType::MsgSnapshot, 2, 3);
    let mut snap = Snapshot::default();
    snap.mut_metadata().index = 100;
    snap.mut_metadata().term = 3;
    snap.mut_metadata().set_conf_state(conf);
    m.set_snapshot(snap);
    m
}

#[test]
fn snapshots_with_a_broken_configuration_are_refused() {
    let n = follower();
    // Node 2 both voter and learner.
    let m = snapshot_msg(ConfState::from((vec![1, 2], vec![2])));
    let err = guard(&n, &m).unwrap_err();
    assert!(
        err.contains("cannot be restored") || err.contains("inconsistent"),
        "{err}"
    );
    assert!(panics_unguarded(follower(), m, |_| {}));

    guard(&n, &snapshot_msg(ConfState::from((vec![1, 1], vec![])))).unwrap_err();
    guard(&n, &snapshot_msg(ConfState::from((vec![0, 1], vec![])))).unwrap_err();
    guard(&n, &snapshot_msg(ConfState::from((vec![], vec![1])))).unwrap_err();
    let mut no_snapshot = msg(MessageType::MsgSnapshot, 2, 3);
    no_snapshot.clear_snapshot();
    guard(&n, &no_snapshot).unwrap_err();
    // Metadata term past the message's term.
    let mut m = snapshot_msg(ConfState::from((vec![1, 2, 3], vec![])));
    m.mut_snapshot().mut_metadata().term = 4;
    guard(&n, &m).unwrap_err();

    // Real configurations pass: simple, with learners, and joint.
    let mut n = follower();
    let fine = snapshot_msg(ConfState::from((vec![1, 2, 3], vec![4])));
    guard(&n, &fine).unwrap();
    n.step(fine).unwrap();
    assert_eq!(n.raft.raft_log.committed, 100);
    let mut joint = ConfState::from((vec![1, 2, 4], vec![]));
    joint.set_voters_outgoing(vec![1, 2, 3]);
    joint.set_learners_next(vec![3]);
    check_conf_state(&joint).unwrap();
    // learners_next must be outgoing voters.
    joint.set_learners_next(vec![5]);
    check_conf_state(&joint).unwrap_err();
}

/// A proposal as raft-rs forwards it from follower `from`: term 0, one normal entry.
fn proposal(from: u64, data: &[u8]) -> Message {
    let mut m = msg(MessageType::MsgPropose, from, 0);
    m.mut_entries().push(Entry {
        data: data.to_vec().into(),
        context: crate::raft::node::proposal_context(from, 7).to_vec().into(),
        ..Default::default()
    });
    m
}

#[test]
fn a_followers_proposal_reaches_only_the_leader_and_only_as_normal_data() {
    let mut n = leader();
    let fine = proposal(2, b"batch");
    guard(&n, &fine).unwrap();
    let last = n.raft.raft_log.last_index();
    n.step(fine.clone()).unwrap();
    assert_eq!(
        n.raft.raft_log.last_index(),
        last + 1,
        "the leader appends it"
    );
    // A follower does not forward it again.
    let err = guard(&follower(), &fine).unwrap_err();
    assert!(err.contains("does not lead"), "{err}");

    // An empty proposal panics raft-rs.
    let empty = msg(MessageType::MsgPropose, 2, 0);
    let err = guard(&n, &empty).unwrap_err();
    assert!(err.contains("0 entries"), "{err}");
    assert!(panics_unguarded(leader(), empty, |_| {}));

    let mut conf = proposal(2, b"cc");
    conf.mut_entries()[0].set_entry_type(raft::eraftpb::EntryType::EntryConfChangeV2);
    let err = guard(&n, &conf).unwrap_err();
    assert!(err.contains("EntryConfChangeV2"), "{err}");
    let mut two = proposal(2, b"a");
    let again = two.entries[0].clone();
    two.mut_entries().push(again);
    guard(&n, &two).unwrap_err();
    let err = guard(&n, &proposal(2, b"")).unwrap_err();
    assert!(err.contains("empty"), "{err}");
    let mut other = proposal(2, b"x");
    other.mut_entries()[0].context = crate::raft::node::proposal_context(3, 7).to_vec().into();
    let err = guard(&n, &other).unwrap_err();
    assert!(err.contains("does not name its sender 2"), "{err}");
    let mut termed = proposal(2, b"x");
    termed.term = 3;
    guard(&n, &termed).unwrap_err();
    let mut indexed = proposal(2, b"x");
    indexed.mut_entries()[0].index = 9;
    guard(&n, &indexed).unwrap_err();
}

#[test]
fn reads_and_local_messages_from_the_network_are_refused() {
    let n = leader();
    for kind in [
        MessageType::MsgReadIndex,
        MessageType::MsgReadIndexResp,
        MessageType::MsgTransferLeader,
        MessageType::MsgHup,
        MessageType::MsgBeat,
        MessageType::MsgCheckQuorum,
        MessageType::MsgSnapStatus,
        MessageType::MsgUnreachable,
    ] {
        let err = guard(&n, &msg(kind, 2, 3)).unwrap_err();
        assert!(err.contains("never sent between managers"), "{err}");
    }
    let mut m = msg(MessageType::MsgAppendResponse, 2, 3);
    m.request_snapshot = 4;
    guard(&n, &m).unwrap_err();
}

#[test]
fn election_orders_come_only_from_the_current_leader() {
    let mut n = follower();
    let mut hb = msg(MessageType::MsgHeartbeat, 2, 2);
    hb.commit = 3;
    n.step(hb).unwrap();
    assert_eq!(n.raft.leader_id, 2);
    let err = guard(&n, &msg(MessageType::MsgTimeoutNow, 3, 2)).unwrap_err();
    assert!(err.contains("leader of term 2 is 2"), "{err}");
    guard(&n, &msg(MessageType::MsgTimeoutNow, 2, 5)).unwrap_err();
    guard(&n, &msg(MessageType::MsgTimeoutNow, 2, 2)).unwrap();
}

#[test]
fn sender_and_addressee_must_make_sense() {
    let n = follower();
    let mut m = msg(MessageType::MsgHeartbeat, 2, 2);
    m.to = 7;
    assert!(
        guard(&n, &m)
            .unwrap_err()
            .contains("addressed to raft id 7")
    );
    guard(&n, &msg(MessageType::MsgHeartbeat, 0, 2)).unwrap_err();
    guard(&n, &msg(MessageType::MsgHeartbeat, 1, 2)).unwrap_err();
}

#[test]
fn refusals_are_counted_and_logged_at_most_once_a_second() {
    let mut r = Refusals::default();
    for _ in 0..3 {
        r.note(2, "MsgHeartbeat", "test");
    }
    assert_eq!((r.total, r.quiet), (3, 2));
}

/// RUSTSEC-2024-0437 (stack overflow on nested unknown groups) names protobuf 3's
/// `CodedInputStream::skip_group`; raft 0.7 brings protobuf 2.28, whose `skip_group` is a loop
/// that refuses a group inside a group. deny.toml's exception rests on this test.
#[test]
fn deeply_nested_groups_are_refused_without_recursion() {
    use protobuf::Message as _;
    // Field 15, wire type 3 (start group), a million times over: 1 MiB.
    let hostile = vec![(15 << 3) | 3; 1 << 20];
    assert!(Message::parse_from_bytes(&hostile).is_err());
    // The same inside a known nested message (an entry of an append).
    let mut nested = vec![(7 << 3) | 2, 0x80, 0x80, 0x40];
    nested.extend(vec![(15u8 << 3) | 3; 1 << 20]);
    assert!(Message::parse_from_bytes(&nested).is_err());
}
