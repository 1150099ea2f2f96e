//! What a node must run: its tasks and the networks they use. Where other
//! nodes' endpoints live is not the manager's business: nodes gossip it.

use std::collections::{BTreeMap, BTreeSet};

use mini_proto::v1::{
    Assignments, Config, GossipKeyRing, GossipNodeCertificate, Network, NetworkAttachment,
    NodeState, Secret, Task, TaskState,
};

use crate::store::{ObjectKind, StoreEvent, Tables};

/// The complete set for one node at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssignmentSet {
    /// Tasks bound to the node, by id: the ones it may have to run or stop,
    /// and ended ones kept as history (whose logs the node keeps).
    pub tasks: BTreeMap<String, Task>,
    /// Networks those tasks use.
    pub networks: Vec<Network>,
    /// The ingress network and the node's ingress sandbox address, once allocated.
    pub ingress: Option<(Network, NetworkAttachment)>,
    /// The secrets (with their values) the node's live tasks use, and no other.
    pub secrets: Vec<Secret>,
    /// The configs the node's live tasks use.
    pub configs: Vec<Config>,
}

fn observed(t: &Task) -> TaskState {
    t.status.as_ref().map_or(TaskState::New, |s| s.state())
}

/// Whether a node may be running `t` or has to start it.
fn live_on_node(t: &Task) -> bool {
    let state = observed(t);
    state >= TaskState::Assigned && state <= TaskState::Running
}

/// The set of `node_id` in `tables`: every task bound to the node, also the
/// ended ones still kept as history (the node keeps their logs until a task
/// leaves the set, i.e. is deleted), and the networks of its live tasks. Only the node's own
/// tasks are visited (the task table's index by node), not every task of the cluster: each
/// session computes this on every store change. An empty `node_id` has no tasks.
pub fn assignments_for(tables: &Tables, node_id: &str) -> AssignmentSet {
    let tasks: BTreeMap<String, Task> = tables
        .tasks
        .on_node(node_id)
        .filter(|t| observed(t) >= TaskState::Assigned)
        .map(|t| {
            let mut task = t.clone();
            // The service's registry credentials go to this node, over its
            // mutual-TLS session, for the tasks it is to run.
            if live_on_node(t) {
                task.registry_auth = tables
                    .services
                    .get(&t.service_id)
                    .and_then(|s| s.registry_auth.clone());
            }
            (t.id.clone(), task)
        })
        .collect();
    let network_ids: BTreeSet<&str> = tasks
        .values()
        .filter(|t| live_on_node(t))
        .flat_map(|t| &t.networks)
        .map(|a| a.network_id.as_str())
        .collect();
    let networks = network_ids
        .iter()
        .filter_map(|id| tables.networks.get(*id))
        .cloned()
        .collect();
    let ingress = tables
        .nodes
        .get(node_id)
        .and_then(|n| n.ingress.clone())
        .and_then(|a| {
            let network = tables.networks.get(&a.network_id)?.clone();
            Some((network, a))
        });
    // Secrets and configs: only those a task the node may be running uses, so a node never
    // holds the value of a secret none of its tasks needs (swarmkit's rule).
    let live: Vec<&Task> = tasks.values().filter(|t| live_on_node(t)).collect();
    let secret_ids: BTreeSet<&str> = live
        .iter()
        .filter_map(|t| t.container.as_ref())
        .flat_map(|c| &c.secrets)
        .map(|r| r.secret_id.as_str())
        .collect();
    let config_ids: BTreeSet<&str> = live
        .iter()
        .filter_map(|t| t.container.as_ref())
        .flat_map(|c| &c.configs)
        .map(|r| r.config_id.as_str())
        .collect();
    let secrets = secret_ids
        .iter()
        .filter_map(|id| tables.secrets.get(*id))
        .cloned()
        .collect();
    let configs = config_ids
        .iter()
        .filter_map(|id| tables.configs.get(*id))
        .cloned()
        .collect();
    AssignmentSet {
        tasks,
        networks,
        ingress,
        secrets,
        configs,
    }
}

/// Whether a store event can change what `node_id`'s session sends: a replaced store, a node,
/// a network or the cluster (the gossip and trust views, the networks of its tasks), or a task
/// that is on the node now or was in the set last `sent` to it. A task of another node does not
/// concern it: at fifty nodes every status report would otherwise make every session read the
/// store and compare its whole set, and the manager's own node's tasks waited behind that work.
pub fn concerns_node(
    event: &StoreEvent,
    node_id: &str,
    sent: Option<&AssignmentSet>,
    tables: &Tables,
) -> bool {
    event.restored
        || event.changes.iter().any(|c| match c.kind {
            ObjectKind::Node | ObjectKind::Network | ObjectKind::Cluster => true,
            ObjectKind::Task => {
                sent.is_none_or(|s| s.tasks.contains_key(&c.id))
                    || tables
                        .tasks
                        .get(&c.id)
                        .is_some_and(|t| t.node_id == node_id)
            }
            // Written with the tasks that use them.
            ObjectKind::Service | ObjectKind::Secret | ObjectKind::Config => false,
        })
}

/// What a session message says about trust: the node's role and the deny list. A change of
/// either is news even when the assignments did not change (the node renews its certificate,
/// its listener refuses removed nodes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustView {
    /// The role the cluster gives the node (`NodeRole` as i32).
    pub role: i32,
    /// Ids of removed nodes, whose certificates every listener refuses.
    pub removed_nodes: Vec<String>,
    /// The node's stored certificate is of another role: the role is said again every period
    /// until the renewal lands (a failed attempt is retried).
    pub stale_certificate: bool,
    /// Every root the node must trust (DER).
    pub trusted_roots: Vec<Vec<u8>>,
    /// The root that signs certificates now (DER).
    pub signing_ca: Vec<u8>,
}

/// The last verdict on a node's stored certificate, kept by its session: checking whether the
/// signing root issued it is an ECDSA verification, which every store change would otherwise
/// pay for in every session (under the store's read lock). It is checked again only when the
/// certificate, the signing root or the role changed.
#[derive(Default)]
pub struct CertVerdicts {
    /// (certificate, signing root, role) → stale.
    last: Option<(Vec<u8>, Vec<u8>, i32, bool)>,
}

impl CertVerdicts {
    /// Whether `certificate` is of another role than `role`, or not issued by `signing_ca`.
    fn stale(&mut self, certificate: &[u8], signing_ca: &[u8], role: i32) -> bool {
        if let Some((cert, ca, r, verdict)) = &self.last
            && cert == certificate
            && ca == signing_ca
            && *r == role
        {
            return *verdict;
        }
        let verdict = mini_proto::tls::pki::identity_of(certificate)
            .is_ok_and(|id| id.role as i32 != role)
            || (!signing_ca.is_empty()
                && !mini_proto::tls::pki::issued_by(certificate, signing_ca));
        self.last = Some((certificate.to_vec(), signing_ca.to_vec(), role, verdict));
        verdict
    }
}

/// The trust view handed to `node_id`; `raft` tells whether a demoted manager's Raft id is
/// still in the configuration (see [`super::ca::role_in_force`]). The certificate's verdict
/// comes from `verdicts` when nothing it depends on changed.
pub fn trust_view(
    tables: &Tables,
    node_id: &str,
    raft: &crate::raft::RaftStatus,
    verdicts: &mut CertVerdicts,
) -> TrustView {
    let node = tables.nodes.get(node_id);
    let role = node.map_or(0, |n| super::ca::role_in_force(n, raft) as i32);
    let signing_ca = tables
        .cluster
        .as_ref()
        .map(|c| super::ca::signing_cert(c).to_vec())
        .unwrap_or_default();
    TrustView {
        trusted_roots: tables
            .cluster
            .as_ref()
            .map(super::ca::trusted_roots)
            .unwrap_or_default(),
        role,
        removed_nodes: tables
            .cluster
            .as_ref()
            .map(|c| c.removed_nodes.clone())
            .unwrap_or_default(),
        // Of another role, or not of the signing root (a root CA rotation).
        stale_certificate: node.is_some_and(|n| {
            !n.certificate.is_empty() && verdicts.stale(&n.certificate, &signing_ca, role)
        }),
        signing_ca,
    }
}

/// The status message of a node that left the swarm (`swarm leave`).
pub const LEFT_MESSAGE: &str = "node left the swarm";

/// What every session message carries besides assignments: how to gossip, and with whom.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GossipView {
    /// Gossip addresses (host:port) of the other ready nodes, to join through.
    pub peers: Vec<String>,
    /// The cluster's gossip key ring.
    pub keys: Option<GossipKeyRing>,
    /// Advertise addresses of every member (all nodes in the store but those that left the
    /// swarm): the only sources a node accepts gossip and VXLAN datagrams from. A removed node
    /// is no longer in the store, so it is no longer a member.
    pub members: Vec<String>,
    /// Every member's certificate (DER, from its node record): endpoint records are accepted
    /// only when signed by the key of the node they name as owner.
    pub certificates: Vec<GossipNodeCertificate>,
}

/// The gossip view handed to `node_id`.
pub fn gossip_view(tables: &Tables, node_id: &str) -> GossipView {
    let state =
        |n: &mini_proto::v1::Node| n.status.as_ref().map_or(NodeState::Unknown, |s| s.state());
    let peers = tables
        .nodes
        .values()
        .filter(|n| n.id != node_id && !n.gossip_addr.is_empty())
        .filter(|n| state(n) == NodeState::Ready)
        .map(|n| n.gossip_addr.clone())
        .collect();
    let members: BTreeSet<String> = tables
        .nodes
        .values()
        .filter(|n| {
            !(state(n) == NodeState::Down
                && n.status.as_ref().is_some_and(|s| s.message == LEFT_MESSAGE))
        })
        .filter_map(|n| {
            let addr = &n.status.as_ref()?.addr;
            addr.parse::<std::net::Ipv4Addr>().ok()?;
            Some(addr.clone())
        })
        .collect();
    GossipView {
        peers,
        keys: tables.cluster.as_ref().and_then(|c| c.gossip_keys.clone()),
        members: members.into_iter().collect(),
        certificates: tables
            .nodes
            .values()
            .filter(|n| !n.certificate.is_empty())
            .map(|n| GossipNodeCertificate {
                node_id: n.id.clone(),
                certificate: n.certificate.clone(),
            })
            .collect(),
    }
}

impl AssignmentSet {
    /// The message that brings a node that knows `previous` (or nothing, for
    /// `None`) to this set; `None` when nothing changed.
    pub fn since(&self, previous: Option<&AssignmentSet>) -> Option<Assignments> {
        let Some(previous) = previous else {
            return Some(Assignments {
                complete: true,
                tasks: self.tasks.values().cloned().collect(),
                removed_tasks: Vec::new(),
                networks: self.networks.clone(),
                ingress_network: self.ingress.as_ref().map(|i| i.0.clone()),
                ingress: self.ingress.as_ref().map(|i| i.1.clone()),
                secrets: self.secrets.clone(),
                configs: self.configs.clone(),
            });
        };
        let version = |t: &Task| t.meta.as_ref().map_or(0, |m| m.version);
        let changed: Vec<Task> = self
            .tasks
            .values()
            .filter(|t| {
                previous
                    .tasks
                    .get(&t.id)
                    .is_none_or(|p| version(p) != version(t))
            })
            .cloned()
            .collect();
        let removed: Vec<String> = previous
            .tasks
            .keys()
            .filter(|id| !self.tasks.contains_key(*id))
            .cloned()
            .collect();
        if changed.is_empty()
            && removed.is_empty()
            && self.networks == previous.networks
            && self.ingress == previous.ingress
            && self.secrets == previous.secrets
            && self.configs == previous.configs
        {
            return None;
        }
        Some(Assignments {
            complete: false,
            tasks: changed,
            removed_tasks: removed,
            networks: self.networks.clone(),
            ingress_network: self.ingress.as_ref().map(|i| i.0.clone()),
            ingress: self.ingress.as_ref().map(|i| i.1.clone()),
            secrets: self.secrets.clone(),
            configs: self.configs.clone(),
        })
    }
}
