//! Cost of sealing and opening one gossip datagram (ChaCha20-Poly1305 under the cluster's key
//! ring, with the replay check), at a typical SWIM ping size and at the packet limit.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use mini_worker::gossip::GossipKeys;
use mini_worker::gossip::seal::Seal;

fn seal_open(c: &mut Criterion) {
    let keys = GossipKeys::random(1);
    let to: SocketAddr = "10.0.0.2:7946".parse().expect("address");
    let mut group = c.benchmark_group("gossip_datagram");
    for size in [100usize, 1365] {
        let payload = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        let mut sender = Seal::new(keys.clone());
        let mut out = Vec::with_capacity(1400);
        group.bench_with_input(BenchmarkId::new("seal", size), &payload, |b, p| {
            b.iter(|| sender.seal(1, black_box(p), to, &mut out))
        });
        let mut receiver = Seal::new(keys.clone());
        let mut packet = Vec::with_capacity(1400);
        group.bench_with_input(BenchmarkId::new("seal+open", size), &payload, |b, p| {
            b.iter(|| {
                sender.seal(1, black_box(p), to, &mut packet);
                let opened = receiver.open(&mut packet, to).map(|(k, _)| k);
                assert_eq!(opened, Ok(1));
            })
        });
    }
    group.finish();
}

/// The generated `benches` function has no doc comment of its own.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::seal_open);
}
criterion_main!(group::benches);
