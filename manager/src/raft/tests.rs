//! Tests of the Raft log on one node: proposals, batching, restart, snapshots, the sled storage
//! contract and a real `kill -9` of a writer process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::eraftpb::{ConfChangeSingle, ConfChangeType, Entry, HardState, SnapshotMetadata};
use raft::{GetEntriesContext, Storage as _, StorageError};

use super::storage::SledStorage;
use super::*;

/// What the test machine saw: every applied `(index, data)` in order, and every restore index.
type Applied = Vec<(u64, Vec<u8>)>;

#[derive(Default, Clone)]
pub(super) struct Seen {
    applied: Arc<Mutex<Applied>>,
    restores: Arc<Mutex<Vec<u64>>>,
    /// How many times the loop made the log durable.
    syncs: Arc<std::sync::atomic::AtomicUsize>,
}

impl Seen {
    pub(super) fn applied(&self) -> Vec<(u64, Vec<u8>)> {
        self.applied.lock().unwrap().clone()
    }
    pub(super) fn restores(&self) -> Vec<u64> {
        self.restores.lock().unwrap().clone()
    }
}

/// A state machine that records what it applies; its outcome is how many entries it holds.
pub(super) struct Recorder(pub(super) Seen);

impl StateMachine for Recorder {
    type Outcome = usize;

    fn apply(&mut self, index: u64, data: &[u8]) -> usize {
        let mut applied = self.0.applied.lock().unwrap();
        applied.push((index, data.to_vec()));
        applied.len()
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (index, data) in self.0.applied.lock().unwrap().iter() {
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    fn restore(&mut self, index: u64, data: &[u8]) -> Result<(), String> {
        *self.0.applied.lock().unwrap() = parse_recorded(data)?;
        self.0.restores.lock().unwrap().push(index);
        Ok(())
    }

    fn check_snapshot(&self, data: &[u8]) -> Result<(), String> {
        parse_recorded(data).map(drop)
    }

    fn log_synced(&mut self, _took: Duration) {
        self.0
            .syncs
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Decodes a [`Recorder`] snapshot.
fn parse_recorded(mut data: &[u8]) -> Result<Applied, String> {
    let mut applied = Vec::new();
    while !data.is_empty() {
        let (head, rest) = data.split_at_checked(12).ok_or("truncated snapshot")?;
        let i = u64::from_be_bytes(head[..8].try_into().unwrap());
        let len = u32::from_be_bytes(head[8..].try_into().unwrap()) as usize;
        let (d, rest) = rest.split_at_checked(len).ok_or("truncated snapshot")?;
        applied.push((i, d.to_vec()));
        data = rest;
    }
    Ok(applied)
}

fn config(dir: &std::path::Path) -> RaftConfig {
    let mut c = RaftConfig::new(dir, 1);
    c.tick_interval = Duration::from_millis(20);
    c
}

fn start_recorder(c: RaftConfig, bootstrap: bool) -> (RaftHandle<usize>, RaftTask, Seen) {
    let seen = Seen::default();
    let mode = if bootstrap {
        StartMode::Bootstrap
    } else {
        StartMode::Resume
    };
    let (h, t) = start(c, Recorder(seen.clone()), mode).expect("raft starts");
    (h, t, seen)
}

/// Waits until the status satisfies `pred`, failing with the last status seen after 10 s.
async fn wait_status(h: &RaftHandle<usize>, what: &str, pred: impl Fn(&RaftStatus) -> bool) {
    let mut rx = h.subscribe();
    let r = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| pred(s))).await;
    if !matches!(r, Ok(Ok(_))) {
        panic!(
            "timed out waiting for {what}; last status: {:?}",
            h.status()
        );
    }
}

async fn stop(h: RaftHandle<usize>, t: RaftTask) {
    h.shutdown().await;
    t.await
        .expect("raft task joins")
        .expect("raft task ends cleanly");
}

#[tokio::test]
async fn propose_applies_and_answers_with_index_and_outcome() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!has_state(dir.path()));
    let (h, t, seen) = start_recorder(config(dir.path()), true);
    assert!(has_state(dir.path()));

    let synced = seen.syncs.load(std::sync::atomic::Ordering::SeqCst);
    let (i1, n1) = h.propose(b"one".to_vec()).await.unwrap();
    let (i2, n2) = h.propose(b"two".to_vec()).await.unwrap();
    assert_eq!((n1, n2), (1, 2));
    // Each entry was made durable before it was answered (one round each: one at a time).
    let syncs = seen.syncs.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        syncs >= synced + 2,
        "{} log syncs for two proposals made one after the other",
        syncs - synced
    );
    assert_eq!(i2, i1 + 1);
    assert_eq!(
        seen.applied(),
        vec![(i1, b"one".to_vec()), (i2, b"two".to_vec())]
    );
    // The loop runs on a thread of its own: the status is published right after the answers.
    wait_status(&h, "the status to show the entries applied", |s| {
        s.applied >= i2 && s.commit >= i2
    })
    .await;
    let s = h.status();
    assert_eq!((s.role, s.leader_id, s.id), (Role::Leader, 1, 1));
    stop(h.clone(), t).await;
    assert_eq!(
        h.propose(b"late".to_vec()).await,
        Err(ProposeError::Stopped)
    );
}

/// Messages raft-rs cannot survive, stepped into a running leader: refused, and the node goes
/// on leading and applying.
#[tokio::test]
async fn hostile_messages_leave_the_loop_running() {
    use raft::eraftpb::{MessageType, Snapshot};
    let dir = tempfile::tempdir().unwrap();
    let (h, t, seen) = start_recorder(config(dir.path()), true);
    h.propose(b"before".to_vec()).await.unwrap();
    let term = h.status().term;

    let mut heartbeat = Message::default();
    heartbeat.set_msg_type(MessageType::MsgHeartbeat);
    heartbeat.from = 2;
    heartbeat.to = 1;
    heartbeat.term = 1000;
    heartbeat.commit = 1_000_000_000;
    h.step(heartbeat).await.unwrap();

    // A snapshot raft-rs would take, whose data the state machine cannot restore: stepped, it
    // would stop the loop.
    let mut snapshot = Message::default();
    snapshot.set_msg_type(MessageType::MsgSnapshot);
    snapshot.from = 2;
    snapshot.to = 1;
    snapshot.term = 1000;
    let mut snap = Snapshot::default();
    snap.mut_metadata().index = 100;
    snap.mut_metadata().term = 1000;
    snap.mut_metadata()
        .set_conf_state(ConfState::from((vec![1, 2], vec![])));
    snap.data = b"xx".to_vec().into();
    snapshot.set_snapshot(snap);
    h.step(snapshot).await.unwrap();

    let (index, _) = h.propose(b"after".to_vec()).await.unwrap();
    let status = h.status();
    assert!(status.running && status.role == Role::Leader, "{status:?}");
    assert_eq!(status.term, term);
    assert_eq!(seen.restores(), Vec::<u64>::new());
    assert_eq!(seen.applied().last(), Some(&(index, b"after".to_vec())));
    stop(h, t).await;
}

#[tokio::test]
async fn start_without_state_or_bootstrap_fails() {
    let dir = tempfile::tempdir().unwrap();
    let err = start(
        config(dir.path()),
        Recorder(Seen::default()),
        StartMode::Resume,
    )
    .err();
    assert!(matches!(err, Some(RaftError::NoState { .. })), "{err:?}");
    assert!(!has_state(dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_apply_once_in_log_order() {
    let dir = tempfile::tempdir().unwrap();
    let (h, t, seen) = start_recorder(config(dir.path()), true);
    let proposers = (0..64u32).map(|p| {
        let h = h.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            for k in 0..20u32 {
                let data = format!("{p}-{k}").into_bytes();
                let (index, n) = h.propose(data.clone()).await.unwrap();
                got.push((index, n, data));
            }
            got
        })
    });
    let mut answers = Vec::new();
    for r in futures::future::join_all(proposers).await {
        answers.extend(r.unwrap());
    }
    answers.sort();
    let applied = seen.applied();
    assert_eq!(applied.len(), 64 * 20);
    // Strictly increasing indices: in order, each once.
    assert!(applied.windows(2).all(|w| w[0].0 < w[1].0));
    // Every answer names the entry applied at its index, and its outcome is its position.
    for (index, n, data) in &answers {
        assert_eq!(&applied[n - 1], &(*index, data.clone()));
    }
    stop(h, t).await;
}

#[tokio::test]
async fn restart_replays_the_log_into_a_fresh_state_machine() {
    let dir = tempfile::tempdir().unwrap();
    let (h, t, seen) = start_recorder(config(dir.path()), true);
    for k in 0..10u8 {
        h.propose(vec![k]).await.unwrap();
    }
    let before = seen.applied();
    stop(h, t).await;

    // `bootstrap` is ignored when there is state.
    let (h, t, seen) = start_recorder(config(dir.path()), true);
    let last = before.last().unwrap().0;
    wait_status(&h, "replay", |s| {
        s.applied >= last && s.role == Role::Leader
    })
    .await;
    assert_eq!(seen.applied(), before);
    assert!(seen.restores().is_empty());
    let (i, n) = h.propose(vec![42]).await.unwrap();
    assert!(i > last);
    assert_eq!(n, 11);
    stop(h, t).await;
}

#[tokio::test]
async fn snapshot_compacts_the_log_and_restart_restores_it_plus_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.snapshot_interval = 20;
    c.keep_after_snapshot = 5;
    let (h, t, seen) = start_recorder(c.clone(), true);
    for k in 0..107u32 {
        h.propose(k.to_be_bytes().to_vec()).await.unwrap();
    }
    let s = h.status();
    assert!(s.snapshot_index >= 80, "{s:?}");
    assert_eq!(s.first_index, s.snapshot_index - 5 + 1, "{s:?}");
    assert!(
        s.applied > s.snapshot_index,
        "a tail after the snapshot: {s:?}"
    );
    let before = seen.applied();
    stop(h, t).await;

    let (h, t, seen) = start_recorder(c, false);
    let last = before.last().unwrap().0;
    wait_status(&h, "replay", |s| s.applied >= last).await;
    assert_eq!(seen.restores(), vec![s.snapshot_index]);
    assert_eq!(seen.applied(), before, "snapshot + tail = everything, once");
    let (_, n) = h.propose(b"after".to_vec()).await.unwrap();
    assert_eq!(n, 108);
    stop(h, t).await;
}

#[tokio::test]
async fn conf_change_is_applied_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (h, t, _) = start_recorder(config(dir.path()), true);
    let mut cc = ConfChangeV2::default();
    let mut single = ConfChangeSingle::default();
    single.set_change_type(ConfChangeType::AddLearnerNode);
    single.node_id = 2;
    cc.mut_changes().push(single);
    let (_, cs) = h.propose_conf_change(cc).await.unwrap();
    assert_eq!(
        (cs.voters.as_slice(), cs.learners.as_slice()),
        (&[1][..], &[2][..])
    );
    // The learner does not count for quorum: proposals still commit.
    h.propose(b"x".to_vec()).await.unwrap();
    stop(h, t).await;

    let (h, t, seen) = start_recorder(config(dir.path()), false);
    wait_status(&h, "replay", |s| {
        s.role == Role::Leader && !seen.applied().is_empty()
    })
    .await;
    assert_eq!(
        seen.applied().len(),
        1,
        "conf changes are not passed to the state machine"
    );
    stop(h, t).await;
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: vec![index as u8; 10].into(),
        ..Default::default()
    }
}

fn store_err(r: raft::Result<impl std::fmt::Debug>) -> StorageError {
    match r {
        Err(raft::Error::Store(e)) => e,
        other => panic!("expected a storage error, got {other:?}"),
    }
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

#[test]
fn storage_contract() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::generate();
    let mut st = SledStorage::open(dir.path(), key.clone()).unwrap();
    assert!(!st.is_initialized());
    st.bootstrap(1).unwrap();
    assert_eq!(st.initial_state().unwrap().conf_state.voters, vec![1]);
    assert_eq!(
        (st.first_index().unwrap(), st.last_index().unwrap()),
        (1, 0)
    );
    assert_eq!(st.term(0).unwrap(), 0);
    assert_eq!(
        store_err(st.snapshot(0, 2)),
        StorageError::SnapshotTemporarilyUnavailable
    );

    let ents: Vec<Entry> = (1..=10)
        .map(|i| entry(i, if i < 4 { 1 } else { 2 }))
        .collect();
    st.append(&ents).unwrap();
    assert_eq!(
        (st.first_index().unwrap(), st.last_index().unwrap()),
        (1, 10)
    );
    assert_eq!((st.term(3).unwrap(), st.term(4).unwrap()), (1, 2));
    assert_eq!(store_err(st.term(11)), StorageError::Unavailable);
    assert_eq!(st.entries(2, 5, None, ctx()).unwrap(), ents[1..4].to_vec());
    assert_eq!(
        st.entries(2, 5, 0, ctx()).unwrap().len(),
        1,
        "max_size keeps one"
    );
    let two = u64::from(protobuf::Message::compute_size(&ents[1])) * 2;
    assert_eq!(st.entries(2, 10, two, ctx()).unwrap().len(), 2);
    assert_eq!(
        store_err(st.entries(2, 12, None, ctx())),
        StorageError::Unavailable
    );

    // A conflicting append replaces the suffix.
    st.append(&[entry(8, 3), entry(9, 3)]).unwrap();
    assert_eq!(st.last_index().unwrap(), 9);
    assert_eq!(st.term(8).unwrap(), 3);
    assert_eq!(store_err(st.term(10)), StorageError::Unavailable);
    let hs = HardState {
        term: 3,
        vote: 1,
        commit: 9,
        ..Default::default()
    };
    st.set_hard_state(&hs).unwrap();

    // Our own snapshot at 6, keeping 2 entries behind it: log is 5..=9.
    let mut meta = SnapshotMetadata {
        index: 6,
        term: 2,
        ..Default::default()
    };
    meta.mut_conf_state().voters = vec![1];
    st.save_snapshot(meta, b"state@6", 2).unwrap();
    assert_eq!(
        (st.first_index().unwrap(), st.last_index().unwrap()),
        (5, 9)
    );
    assert_eq!(st.term(4).unwrap(), 2, "term of the truncation point");
    assert_eq!(store_err(st.term(3)), StorageError::Compacted);
    assert_eq!(
        store_err(st.entries(4, 6, None, ctx())),
        StorageError::Compacted
    );
    assert_eq!(st.entries(5, 10, None, ctx()).unwrap().len(), 5);
    let snap = st.snapshot(3, 2).unwrap();
    assert_eq!(
        (snap.get_metadata().index, &snap.data[..]),
        (6, &b"state@6"[..])
    );
    assert_eq!(
        store_err(st.snapshot(8, 2)),
        StorageError::SnapshotTemporarilyUnavailable
    );
    assert_eq!(
        st.snapshot_wanted(),
        8,
        "the loop is asked for a newer snapshot"
    );
    st.flush().unwrap();
    drop(st);

    // Everything survives a reopen (with the same key; another key reads nothing).
    let other = SledStorage::open(dir.path(), DataKey::generate()).unwrap();
    assert!(other.entries(5, 6, None, ctx()).is_err());
    assert!(other.snapshot_data().is_err());
    drop(other);
    let mut st = SledStorage::open(dir.path(), key).unwrap();
    assert_eq!(
        (st.first_index().unwrap(), st.last_index().unwrap()),
        (5, 9)
    );
    assert_eq!(st.initial_state().unwrap().hard_state, hs);
    assert_eq!(st.snapshot(0, 2).unwrap().data, snap.data);
    assert_eq!(store_err(st.term(3)), StorageError::Compacted);

    // A snapshot from the leader replaces the whole log.
    let mut snap = raft::eraftpb::Snapshot::default();
    snap.mut_metadata().index = 20;
    snap.mut_metadata().term = 5;
    snap.mut_metadata().mut_conf_state().voters = vec![1, 2];
    snap.data = b"state@20".to_vec().into();
    st.apply_snapshot(&snap).unwrap();
    assert_eq!(
        (st.first_index().unwrap(), st.last_index().unwrap()),
        (21, 20)
    );
    assert_eq!(st.term(20).unwrap(), 5);
    assert_eq!(store_err(st.term(9)), StorageError::Compacted);
    let state = st.initial_state().unwrap();
    assert_eq!((state.hard_state.commit, state.hard_state.term), (20, 5));
    assert_eq!(state.conf_state.voters, vec![1, 2]);
    st.append(&[entry(21, 5)]).unwrap();
    assert_eq!(st.entries(21, 22, None, ctx()).unwrap().len(), 1);
}

/// The node loop does not fsync a hard state whose only change is the commit index, so the
/// stored commit may lag what was applied; a snapshot of the applied state stores a commit index
/// at least its own (raft-rs refuses to start from a commit index below the snapshot's).
#[test]
fn a_snapshot_above_the_stored_commit_index_raises_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::generate();
    let mut st = SledStorage::open(dir.path(), key.clone()).unwrap();
    st.bootstrap(1).unwrap();
    st.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
        .unwrap();
    let hs = HardState {
        term: 1,
        vote: 1,
        commit: 2,
        ..Default::default()
    };
    st.set_hard_state(&hs).unwrap();
    st.flush().unwrap();
    let mut meta = SnapshotMetadata {
        index: 4,
        term: 1,
        ..Default::default()
    };
    meta.mut_conf_state().voters = vec![1];
    st.save_snapshot(meta, b"state@4", 10).unwrap();
    drop(st);
    let st = SledStorage::open(dir.path(), key).unwrap();
    let state = st.initial_state().unwrap();
    assert_eq!(
        (
            state.hard_state.term,
            state.hard_state.vote,
            state.hard_state.commit
        ),
        (1, 1, 4)
    );
}

/// Entry payloads and snapshots are encrypted at rest: nothing a proposal or a snapshot held is
/// in the database's files in the clear.
#[test]
fn storage_encrypts_payloads_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = SledStorage::open(dir.path(), DataKey::generate()).unwrap();
    st.bootstrap(1).unwrap();
    let payload = b"registry-password-f00d".to_vec();
    let ents: Vec<Entry> = (1..=3)
        .map(|i| Entry {
            index: i,
            term: 1,
            data: payload.clone().into(),
            context: b"context-marker-beef".to_vec().into(),
            ..Default::default()
        })
        .collect();
    st.append(&ents).unwrap();
    assert_eq!(
        st.entries(1, 4, None, ctx()).unwrap(),
        ents,
        "read back in the clear"
    );
    let mut meta = SnapshotMetadata {
        index: 2,
        term: 1,
        ..Default::default()
    };
    meta.mut_conf_state().voters = vec![1];
    st.save_snapshot(meta, b"snapshot-secret-cafe", 1).unwrap();
    st.flush().unwrap();
    drop(st);
    let mut found = Vec::new();
    for file in walk(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        for needle in [
            &b"registry-password-f00d"[..],
            b"context-marker-beef",
            b"snapshot-secret-cafe",
        ] {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(format!(
                    "{} holds {:?}",
                    file.display(),
                    String::from_utf8_lossy(needle)
                ));
            }
        }
    }
    assert!(found.is_empty(), "plaintext on disk: {found:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Environment variable that turns [`crash_writer`] into the writer of
/// [`kill_9_keeps_every_acknowledged_proposal`].
const CRASH_DIR: &str = "MINI_RAFT_CRASH_DIR";

/// Not a test on its own: the child process of the kill -9 test. Proposes forever and prints
/// `acked <index> <value>` after each acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of kill_9_keeps_every_acknowledged_proposal"]
async fn crash_writer() {
    let Some(dir) = std::env::var_os(CRASH_DIR) else {
        return;
    };
    let mut c = config(std::path::Path::new(&dir));
    c.snapshot_interval = 50;
    c.keep_after_snapshot = 10;
    let (h, _t, _) = start_recorder(c, true);
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let h = h.clone();
        writers.push(tokio::spawn(async move {
            for k in 0.. {
                let value = w * 1_000_000 + k;
                let (index, _) = h.propose(value.to_be_bytes().to_vec()).await.unwrap();
                println!("acked {index} {value}");
            }
        }));
    }
    futures::future::join_all(writers).await;
}

#[tokio::test]
async fn kill_9_keeps_every_acknowledged_proposal() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "raft::tests::crash_writer",
            "--ignored",
            "--nocapture",
        ])
        .env(CRASH_DIR, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read acknowledgements on a thread; kill the writer (SIGKILL) after 400 of them.
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_whitespace();
            if parts.next() != Some("acked") {
                continue;
            }
            let index: u64 = parts.next().unwrap().parse().unwrap();
            let value: u64 = parts.next().unwrap().parse().unwrap();
            acked.push((index, value));
            if acked.len() == 400 {
                child.kill().unwrap();
            }
        }
        child.wait().unwrap();
        acked
    });
    let acked = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    assert!(
        acked.len() >= 400,
        "the writer acknowledged only {} proposals",
        acked.len()
    );

    let (h, t, seen) = start_recorder(config(dir.path()), false);
    let last = acked.iter().map(|a| a.0).max().unwrap();
    wait_status(&h, "replay after kill -9", |s| s.applied >= last).await;
    let applied = seen.applied();
    assert!(
        applied.windows(2).all(|w| w[0].0 < w[1].0),
        "in order, once"
    );
    for (index, value) in &acked {
        let found = applied.iter().find(|(i, _)| i == index);
        assert_eq!(
            found.map(|(_, d)| d.clone()),
            Some(value.to_be_bytes().to_vec()),
            "acknowledged entry {index} = {value}"
        );
    }
    assert!(!seen.restores().is_empty(), "the writer took snapshots");
    stop(h, t).await;
}

/// A leader gives reads a commit index only once an entry of its own term has committed:
/// before that, its commit index may be behind what earlier leaders committed.
#[test]
fn a_new_leader_gives_reads_no_commit_index_until_its_term_commits() {
    let mut s = RaftStatus::test_leader(7, &[1], &[], &[]);
    assert_eq!(s.leader_commit(), Some(7));
    s.commit_in_term = false;
    assert_eq!(s.leader_commit(), None, "{s:?}");
    s.commit_in_term = true;
    s.role = Role::Follower;
    assert_eq!(s.leader_commit(), None, "a follower: {s:?}");
}

/// After a restart, the status never shows the leader's commit index to readers below what
/// was committed before it: `leader_commit` stays `None` until the new term's entry commits.
#[tokio::test]
async fn after_a_restart_reads_never_see_a_commit_index_below_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let (h, t, _) = start_recorder(config(dir.path()), true);
    let mut last = 0;
    for k in 0..5u8 {
        last = h.propose(vec![k]).await.unwrap().0;
    }
    stop(h, t).await;
    let (h, t, _) = start_recorder(config(dir.path()), false);
    let mut rx = h.subscribe();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(c) = rx.borrow_and_update().leader_commit() {
                return c;
            }
            rx.changed().await.expect("status feed");
        }
    })
    .await
    .expect("a commit index for reads within 10 s");
    assert!(
        seen > last,
        "reads were given {seen}, the log held {last} before the restart"
    );
    stop(h, t).await;
}
