//! Who the other managers are and how to reach them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use mini_proto::tls::{Peer, Trust};
use mini_proto::v1::NodeRole;
use tonic::transport::Channel;

use crate::store::{ObjectKind, Store};

/// The address book of the Raft group: Raft id → listener address (`host:port`), a cached
/// gRPC channel per address, and when each peer last took a message. Cheap to clone.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<RwLock<Inner>>,
    /// This node's TLS identity, which every channel presents.
    trust: Trust,
}

#[derive(Default)]
struct Inner {
    /// This manager's own listener address, sent with every batch of Raft messages.
    own_addr: String,
    /// The cluster id, sent with every batch and checked by the receiver.
    cluster_id: String,
    /// Raft id → address, from the store's manager nodes and from received messages.
    addrs: HashMap<u64, String>,
    /// Address → channel (tonic reconnects by itself).
    /// Channels by address, with the certificate generation they were made with
    /// ([`mini_proto::tls::Trust::generation`]): a renewed certificate (e.g. a promoted node's
    /// manager certificate) is presented only on new connections.
    channels: HashMap<String, (u64, Channel)>,
    /// Raft id → last successful delivery.
    last_ok: HashMap<u64, Instant>,
}

impl Peers {
    /// An empty book for a manager whose listener is `own_addr`, dialing with `trust`.
    pub fn new(own_addr: String, cluster_id: String, trust: Trust) -> Self {
        let peers = Peers {
            inner: Arc::default(),
            trust,
        };
        {
            let mut inner = peers.write();
            inner.own_addr = own_addr;
            inner.cluster_id = cluster_id;
        }
        peers
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// This manager's listener address.
    pub fn own_addr(&self) -> String {
        self.read().own_addr.clone()
    }

    /// The cluster id (empty until known).
    pub fn cluster_id(&self) -> String {
        self.read().cluster_id.clone()
    }

    /// Sets the cluster id (once `swarm init` made the cluster).
    pub fn set_cluster_id(&self, id: &str) {
        self.write().cluster_id = id.to_string();
    }

    /// Records where Raft id `id` listens.
    pub fn insert(&self, id: u64, addr: &str) {
        if id == 0 || addr.is_empty() {
            return;
        }
        let mut inner = self.write();
        if inner.addrs.get(&id).map(String::as_str) != Some(addr) {
            tracing::debug!(raft_id = id, addr, "raft peer address");
            inner.addrs.insert(id, addr.to_string());
        }
    }

    /// Where Raft id `id` listens, if known.
    pub fn addr(&self, id: u64) -> Option<String> {
        self.read().addrs.get(&id).cloned()
    }

    /// The generation of this node's certificate ([`Trust::generation`]): channels made
    /// before it changed present the old one.
    pub fn generation(&self) -> u64 {
        self.trust.generation()
    }

    /// A channel to `addr`, made on first use and then shared until this node's certificate
    /// changes.
    pub fn channel(&self, addr: &str) -> Option<Channel> {
        let generation = self.trust.generation();
        if let Some((_, c)) = self
            .read()
            .channels
            .get(addr)
            .filter(|(made_with, _)| *made_with == generation)
        {
            return Some(c.clone());
        }
        let endpoint = mini_proto::node_endpoint(addr, Duration::from_millis(500))
            .ok()?
            .http2_keep_alive_interval(Duration::from_millis(500))
            .keep_alive_timeout(Duration::from_secs(1));
        let channel = self.trust.connect_lazy(endpoint, Peer::Manager);
        self.write()
            .channels
            .insert(addr.to_string(), (generation, channel.clone()));
        Some(channel)
    }

    /// The Raft ids whose addresses are known.
    pub fn ids(&self) -> Vec<u64> {
        self.read().addrs.keys().copied().collect()
    }

    /// A channel to Raft id `id`, if its address is known.
    pub fn channel_to(&self, id: u64) -> Option<Channel> {
        self.channel(&self.addr(id)?)
    }

    /// Records that a message reached `id`.
    pub fn delivered(&self, id: u64) {
        self.write().last_ok.insert(id, Instant::now());
    }

    /// Whether a message reached `id` within `within`.
    pub fn reached_lately(&self, id: u64, within: Duration) -> bool {
        self.read()
            .last_ok
            .get(&id)
            .is_some_and(|t| t.elapsed() <= within)
    }

    /// Fills the book from the store's manager nodes now and after every change of a node, and
    /// keeps the listener's deny list in step with the cluster's removed nodes.
    pub fn follow_store(&self, store: Store) -> tokio::task::JoinHandle<()> {
        let peers = self.clone();
        let mut events = store.watch();
        tokio::spawn(async move {
            loop {
                store.view(|t| {
                    if let Some(c) = &t.cluster
                        && peers.cluster_id().is_empty()
                    {
                        peers.set_cluster_id(&c.id);
                    }
                    if let Some(c) = &t.cluster {
                        peers.trust.set_removed(c.removed_nodes.iter().cloned());
                        // The roots this manager's listener trusts follow a root CA rotation.
                        if let Err(err) = peers
                            .trust
                            .set_roots(crate::dispatcher::ca::trusted_roots(c))
                        {
                            tracing::warn!(%err, "cannot update the trusted root CAs");
                        }
                    }
                    for n in t.nodes.values() {
                        if n.role() == NodeRole::Manager && n.raft_id != 0 {
                            peers.insert(n.raft_id, &n.agent_addr);
                        }
                    }
                });
                loop {
                    match events.recv().await {
                        Ok(e) if e.touches(ObjectKind::Node) || e.touches(ObjectKind::Cluster) => {
                            break;
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        })
    }
}
