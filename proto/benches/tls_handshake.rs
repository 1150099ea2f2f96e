//! One mutual-TLS 1.3 handshake of the node listener's configuration (ECDSA P-256 node
//! certificates, client certificate checked against the cluster CA), in memory: the CPU cost a
//! new connection to TCP 2377 adds on both ends together.

use std::sync::Arc;

use criterion::{Criterion, criterion_main};
use mini_proto::tls::pki::{DEFAULT_CERT_EXPIRY, new_node_key, new_root_ca, sign_node_csr};
use mini_proto::tls::{Credentials, client_config, server_config};
use mini_proto::v1::NodeRole;
use rustls::pki_types::ServerName;

fn creds(ca: &mini_proto::tls::pki::RootCa, node: &str, role: NodeRole) -> Credentials {
    let (key_der, csr) = new_node_key(node).unwrap();
    let cert_der = sign_node_csr(ca, &csr, node, role, "cluster", DEFAULT_CERT_EXPIRY).unwrap();
    Credentials {
        ca_der: ca.cert_der.clone(),
        cert_der,
        key_der,
        ..Default::default()
    }
}

/// Moves every pending TLS record from one side to the other until neither has anything to say.
fn handshake(client: &mut rustls::ClientConnection, server: &mut rustls::ServerConnection) {
    let mut buf = Vec::new();
    while client.is_handshaking() || server.is_handshaking() {
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut slice = &buf[..];
        while !slice.is_empty() {
            server.read_tls(&mut slice).unwrap();
        }
        server.process_new_packets().unwrap();
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        let mut slice = &buf[..];
        while !slice.is_empty() {
            client.read_tls(&mut slice).unwrap();
        }
        client.process_new_packets().unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let ca = new_root_ca().unwrap();
    let manager = creds(&ca, "manager1", NodeRole::Manager);
    let worker = creds(&ca, "worker1", NodeRole::Worker);
    let server = Arc::new(server_config(&manager).unwrap());
    let client =
        Arc::new(client_config(&worker.ca_der, Some((&worker.cert_der, &worker.key_der))).unwrap());
    let name = ServerName::try_from("swarm-manager").unwrap();
    c.bench_function("mutual TLS 1.3 handshake (P-256, client cert)", |b| {
        b.iter(|| {
            let mut cc = rustls::ClientConnection::new(client.clone(), name.clone()).unwrap();
            let mut sc = rustls::ServerConnection::new(server.clone()).unwrap();
            handshake(&mut cc, &mut sc);
            assert!(sc.peer_certificates().is_some());
        })
    });
}

#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
