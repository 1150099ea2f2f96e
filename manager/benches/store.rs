//! The store path on one manager: propose → append → fsync (sled flush) → apply → answer.
//!
//! Two cases, both with a real fsync per Ready round on the state dir's file system:
//! - `sequential`: one client proposing and awaiting each entry in turn (latency-bound);
//! - `concurrent_64`: 64 clients proposing continuously; the Raft loop drains every queued
//!   proposal before each Ready, so one fsync covers many entries.
//!
//! Throughput is reported as elements/s = commits/s. The state machine is a trivial sum (the real
//! store replaces it later); entries carry 256-byte payloads.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use mini_manager::raft::{self, RaftConfig, RaftHandle, StateMachine};

/// Sums the first 8 bytes of every entry; deterministic and nearly free.
struct Sum(u64);

impl StateMachine for Sum {
    type Outcome = u64;

    fn apply(&mut self, _index: u64, data: &[u8]) -> u64 {
        let head: [u8; 8] = data[..8].try_into().unwrap_or_default();
        self.0 = self.0.wrapping_add(u64::from_be_bytes(head));
        self.0
    }

    fn snapshot(&self) -> Vec<u8> {
        self.0.to_be_bytes().to_vec()
    }

    fn restore(&mut self, _index: u64, data: &[u8]) -> Result<(), String> {
        self.0 = u64::from_be_bytes(data.try_into().map_err(|_| "bad snapshot".to_string())?);
        Ok(())
    }
}

const PAYLOAD: usize = 256;
const CLIENTS: u64 = 64;

fn payload(v: u64) -> Vec<u8> {
    let mut p = vec![0u8; PAYLOAD];
    p[..8].copy_from_slice(&v.to_be_bytes());
    p
}

/// `iters` sequential proposals from one client.
async fn sequential(h: &RaftHandle<u64>, iters: u64) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        h.propose(payload(i)).await.expect("proposal commits");
    }
    start.elapsed()
}

/// `iters` proposals from each of `CLIENTS` concurrent clients.
async fn concurrent(h: &RaftHandle<u64>, iters: u64) -> Duration {
    let start = Instant::now();
    let clients = (0..CLIENTS).map(|c| {
        let h = h.clone();
        tokio::spawn(async move {
            for i in 0..iters {
                h.propose(payload(c * iters + i))
                    .await
                    .expect("proposal commits");
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
        raft::start(RaftConfig::new(dir.path(), 1), Sum(0), true).expect("raft starts")
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
