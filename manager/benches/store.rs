//! The store path on one manager: propose → append → fsync (sled flush) → apply → answer.
//!
//! Two cases, both with a real fsync per Ready round on the state dir's file system:
//! - `sequential`: one client proposing and awaiting each entry in turn (latency-bound);
//! - `concurrent_64`: 64 clients proposing continuously; the Raft loop drains every queued
//!   proposal before each Ready, so one fsync covers many entries.
//!
//! Throughput is reported as elements/s = commits/s. The state machine is the real store
//! (`StoreMachine`); each entry is an encoded `StoreBatch` creating one task (about 250 bytes),
//! so the store grows as it would under a steady stream of task writes.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use mini_manager::raft::{self, RaftConfig, RaftHandle};
use mini_manager::store::{ApplyError, Store, StoreMachine};
use mini_proto::v1::{
    ContainerSpec, NetworkAttachment, StoreAction, StoreBatch, Task, store_action::Action,
};
use prost::Message;

const CLIENTS: u64 = 64;

/// One batch creating the task numbered `v`.
fn payload(v: u64) -> Vec<u8> {
    let task = Task {
        id: format!("benchtask{v:016}"),
        service_id: "benchservice0000000000000".into(),
        service_name: "bench".into(),
        slot: v,
        container: Some(ContainerSpec {
            image: "host".into(),
            args: vec!["sleep".into(), "1000".into()],
            env: Vec::new(),
            ..Default::default()
        }),
        networks: vec![NetworkAttachment {
            network_id: "benchnet00000000000000000".into(),
            addr: "10.0.0.2/24".into(),
            mac: "02:42:0a:00:00:02".into(),
            vip: String::new(),
        }],
        ..Default::default()
    };
    StoreBatch {
        actions: vec![StoreAction {
            action: Some(Action::PutTask(task)),
            create: true,
        }],
        proposed_at_ms: 1,
        ..Default::default()
    }
    .encode_to_vec()
}

type Outcome = Result<(), ApplyError>;

/// Task numbers are unique across every iteration criterion runs.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// `iters` sequential proposals from one client.
async fn sequential(h: &RaftHandle<Outcome>, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let (_, outcome) = h
            .propose(payload(NEXT.fetch_add(1, SeqCst)))
            .await
            .expect("proposal commits");
        outcome.expect("the store applies the batch");
    }
    start.elapsed()
}

/// `iters` proposals from each of `CLIENTS` concurrent clients.
async fn concurrent(h: &RaftHandle<Outcome>, iters: u64) -> Duration {
    let start = Instant::now();
    let clients = (0..CLIENTS).map(|_| {
        let h = h.clone();
        tokio::spawn(async move {
            for _ in 0..iters {
                let (_, outcome) = h
                    .propose(payload(NEXT.fetch_add(1, SeqCst)))
                    .await
                    .expect("proposal commits");
                outcome.expect("the store applies the batch");
            }
        })
    });
    for r in futures::future::join_all(clients).await {
        r.expect("client task");
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // On the project's disk (not tmpfs), so fsync is real.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let (h, task) = rt.block_on(async {
        let machine = StoreMachine::new(Store::new());
        raft::start(
            RaftConfig::new(dir.path(), 1),
            machine,
            raft::StartMode::Bootstrap,
        )
        .expect("raft starts")
    });

    let mut g = c.benchmark_group("store_path");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(1));
    g.bench_function("sequential", |b| {
        b.iter_custom(|iters| rt.block_on(sequential(&h, iters)))
    });
    g.throughput(Throughput::Elements(CLIENTS));
    g.bench_function("concurrent_64", |b| {
        b.iter_custom(|iters| rt.block_on(concurrent(&h, iters)))
    });
    g.finish();

    let status = h.status();
    println!(
        "raft after the benchmark: applied {} first_index {} snapshot_index {}",
        status.applied, status.first_index, status.snapshot_index
    );
    rt.block_on(async {
        h.shutdown().await;
        task.await.expect("join").expect("raft loop ends cleanly");
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
