//! What the CLI shows of each object: JSON views with the same field names
//! across commands (id, name, desired_state, current_state, node, ...).

use std::collections::HashMap;

use mini_proto::state_name;
use mini_proto::v1::{
    EndpointMode, Network, Node, NodeAvailability, NodeRole, NodeState, Resources,
    RestartCondition, Service, Task, TaskState, service_spec::Mode,
};
use serde::Serialize;

/// Names of networks and nodes by id, to show names instead of ids.
#[derive(Default)]
pub struct Names {
    /// Network id → name.
    pub networks: HashMap<String, String>,
    /// Node id → hostname.
    pub nodes: HashMap<String, String>,
}

impl Names {
    /// Indexes the given networks and nodes.
    pub fn new(networks: &[Network], nodes: &[Node]) -> Self {
        Names {
            networks: networks
                .iter()
                .map(|n| (n.id.clone(), network_name(n).to_string()))
                .collect(),
            nodes: nodes
                .iter()
                .map(|n| (n.id.clone(), n.hostname.clone()))
                .collect(),
        }
    }

    fn network(&self, id: &str) -> String {
        self.networks
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    fn node(&self, id: &str) -> String {
        self.nodes
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }
}

/// A network's name.
pub fn network_name(n: &Network) -> &str {
    n.spec.as_ref().map_or("", |s| s.name.as_str())
}

/// A service's name.
pub fn service_name(s: &Service) -> &str {
    s.spec.as_ref().map_or("", |s| s.name.as_str())
}

pub use mini_proto::task_name;

fn created(meta: &Option<mini_proto::v1::Meta>) -> (u64, i64, i64) {
    meta.as_ref()
        .map_or((0, 0, 0), |m| (m.version, m.created_at_ms, m.updated_at_ms))
}

/// A network as shown by `network inspect` and `network ls --format json`.
#[derive(Serialize)]
pub struct NetworkView {
    id: String,
    name: String,
    driver: String,
    scope: &'static str,
    subnet: String,
    gateway: String,
    vni: u32,
    attachable: bool,
    internal: bool,
    ingress: bool,
    labels: std::collections::BTreeMap<String, String>,
    version: u64,
    created_at_ms: i64,
    updated_at_ms: i64,
}

impl From<&Network> for NetworkView {
    fn from(n: &Network) -> Self {
        let spec = n.spec.clone().unwrap_or_default();
        let (version, created_at_ms, updated_at_ms) = created(&n.meta);
        NetworkView {
            id: n.id.clone(),
            name: spec.name,
            driver: spec.driver,
            scope: "swarm",
            subnet: n.subnet.clone(),
            gateway: n.gateway.clone(),
            vni: n.vni,
            attachable: spec.attachable,
            internal: spec.internal,
            ingress: spec.ingress,
            labels: spec.labels.into_iter().collect(),
            version,
            created_at_ms,
            updated_at_ms,
        }
    }
}

/// One attachment of a service or task to a network.
#[derive(Serialize)]
pub struct AttachmentView {
    network_id: String,
    network: String,
    addr: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    mac: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    vip: String,
}

/// A published port.
#[derive(Serialize)]
pub struct PortView {
    protocol: String,
    published_port: u32,
    target_port: u32,
}

/// CPUs and memory with Docker's names: a node's capacity (`node inspect`),
/// a service's limits or reservations (`service inspect`).
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourcesView {
    /// Billionths of a CPU.
    #[serde(rename = "NanoCPUs")]
    nano_cpus: i64,
    /// Bytes.
    #[serde(rename = "MemoryBytes")]
    memory_bytes: i64,
    /// The most processes at once (limits only; absent when unset).
    #[serde(rename = "Pids", skip_serializing_if = "is_zero")]
    pids: i64,
}

/// For `skip_serializing_if`: a number left at zero (unset).
fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

impl ResourcesView {
    /// The view of `r`, or `None` when it sets nothing (as Docker leaves it out).
    pub fn of(r: Option<Resources>) -> Option<Self> {
        let r = r?;
        (r.nano_cpus != 0 || r.memory_bytes != 0 || r.pids != 0).then_some(ResourcesView {
            nano_cpus: r.nano_cpus,
            memory_bytes: r.memory_bytes,
            pids: r.pids,
        })
    }
}

/// `--limit-*` and `--reserve-*` of a service, as Docker's `Resources`.
#[derive(Serialize)]
pub struct ServiceResourcesView {
    #[serde(rename = "Limits", skip_serializing_if = "Option::is_none")]
    limits: Option<ResourcesView>,
    #[serde(rename = "Reservations", skip_serializing_if = "Option::is_none")]
    reservations: Option<ResourcesView>,
}

/// A service as shown by `service inspect` and `service ls --format json`.
#[derive(Serialize)]
pub struct ServiceView {
    id: String,
    name: String,
    image: String,
    args: Vec<String>,
    env: Vec<String>,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    running: Option<u64>,
    networks: Vec<AttachmentView>,
    endpoint_mode: &'static str,
    vips: Vec<AttachmentView>,
    ports: Vec<PortView>,
    constraints: Vec<String>,
    /// Docker's `Placement` (constraints, spread preferences, replicas per node).
    #[serde(rename = "Placement")]
    placement: PlacementView,
    /// Replicated job: tasks at once and completions wanted.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_completions: Option<u64>,
    /// Jobs: the iteration (bumped by every update) the job runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    job_iteration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<HealthcheckView>,
    /// Docker's `Resources` (`Limits`, `Reservations`); absent when neither is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<ServiceResourcesView>,
    restart_condition: &'static str,
    restart_delay_ms: u64,
    update_parallelism: u64,
    update_delay_ms: u64,
    force_update: u64,
    labels: std::collections::BTreeMap<String, String>,
    version: u64,
    created_at_ms: i64,
    updated_at_ms: i64,
}

impl ServiceView {
    /// The view of `s`; `running` is given by `service ls` only.
    pub fn new(s: &Service, running: Option<u64>, names: &Names) -> Self {
        let spec = s.spec.clone().unwrap_or_default();
        let container = spec.container.clone().unwrap_or_default();
        let endpoint = spec.endpoint.clone().unwrap_or_default();
        let restart = spec.restart.unwrap_or_default();
        let (version, created_at_ms, updated_at_ms) = created(&s.meta);
        let (mode, replicas) = match spec.mode {
            Some(Mode::Global(_)) => ("global", None),
            Some(Mode::Replicas(n)) => ("replicated", Some(n)),
            Some(Mode::ReplicatedJob(_)) => ("replicated-job", None),
            Some(Mode::GlobalJob(_)) => ("global-job", None),
            None => ("replicated", Some(1)),
        };
        let (max_concurrent, total_completions) = match spec.mode {
            Some(Mode::ReplicatedJob(job)) => {
                let (concurrent, total) = mini_manager::orchestrator::job_counts(&job);
                (Some(concurrent), Some(total))
            }
            _ => (None, None),
        };
        let job_iteration = s.job_status.as_ref().map(|j| j.job_iteration);
        let placement = PlacementView {
            constraints: spec.constraints.clone(),
            preferences: spec
                .placement_preferences
                .iter()
                .map(|p| PreferenceView {
                    spread: SpreadView {
                        spread_descriptor: p.spread.clone(),
                    },
                })
                .collect(),
            max_replicas: spec.max_replicas_per_node,
        };
        ServiceView {
            id: s.id.clone(),
            name: spec.name,
            healthcheck: container.healthcheck.as_ref().map(HealthcheckView::from),
            image: container.image,
            args: container.args,
            env: container.env,
            mode,
            replicas,
            running,
            networks: spec
                .networks
                .iter()
                .map(|id| AttachmentView {
                    network_id: id.clone(),
                    network: names.network(id),
                    addr: String::new(),
                    mac: String::new(),
                    vip: String::new(),
                })
                .collect(),
            endpoint_mode: match endpoint.mode() {
                EndpointMode::Vip => "vip",
                EndpointMode::Dnsrr => "dnsrr",
            },
            vips: s
                .vips
                .iter()
                .map(|v| AttachmentView {
                    network_id: v.network_id.clone(),
                    network: names.network(&v.network_id),
                    addr: v.addr.clone(),
                    mac: String::new(),
                    vip: String::new(),
                })
                .collect(),
            ports: endpoint
                .ports
                .iter()
                .map(|p| PortView {
                    protocol: p.protocol.clone(),
                    published_port: p.published_port,
                    target_port: p.target_port,
                })
                .collect(),
            constraints: spec.constraints,
            placement,
            max_concurrent,
            total_completions,
            job_iteration,
            resources: {
                let limits = ResourcesView::of(container.limits);
                let reservations = ResourcesView::of(container.reservations);
                (limits.is_some() || reservations.is_some()).then_some(ServiceResourcesView {
                    limits,
                    reservations,
                })
            },
            restart_condition: match restart.condition() {
                RestartCondition::Any => "any",
                RestartCondition::OnFailure => "on-failure",
                RestartCondition::None => "none",
            },
            restart_delay_ms: restart.delay_ms,
            // Unset: Docker's defaults, one task at a time without delay.
            update_parallelism: spec.update.map_or(1, |u| u.parallelism),
            update_delay_ms: spec.update.map_or(0, |u| u.delay_ms),
            force_update: spec.force_update,
            labels: spec.labels.into_iter().collect(),
            version,
            created_at_ms,
            updated_at_ms,
        }
    }
}

/// A service's placement as `docker service inspect` shows it (`Placement`).
#[derive(Serialize)]
pub struct PlacementView {
    #[serde(rename = "Constraints", skip_serializing_if = "Vec::is_empty")]
    constraints: Vec<String>,
    #[serde(rename = "Preferences", skip_serializing_if = "Vec::is_empty")]
    preferences: Vec<PreferenceView>,
    #[serde(rename = "MaxReplicas", skip_serializing_if = "is_zero")]
    max_replicas: u64,
}

/// One placement preference (`{"Spread": {"SpreadDescriptor": "node.labels.zone"}}`).
#[derive(Serialize)]
pub struct PreferenceView {
    #[serde(rename = "Spread")]
    spread: SpreadView,
}

/// The label a preference spreads over.
#[derive(Serialize)]
pub struct SpreadView {
    #[serde(rename = "SpreadDescriptor")]
    spread_descriptor: String,
}

/// A service's health check as `docker service inspect` shows it (`Healthcheck`: Docker's
/// keys, durations in nanoseconds, unset fields left out).
#[derive(Serialize)]
pub struct HealthcheckView {
    #[serde(rename = "Test", skip_serializing_if = "Vec::is_empty")]
    test: Vec<String>,
    #[serde(rename = "Interval", skip_serializing_if = "is_zero")]
    interval: u64,
    #[serde(rename = "Timeout", skip_serializing_if = "is_zero")]
    timeout: u64,
    #[serde(rename = "StartPeriod", skip_serializing_if = "is_zero")]
    start_period: u64,
    #[serde(rename = "Retries", skip_serializing_if = "is_zero")]
    retries: i32,
}

impl From<&mini_proto::v1::HealthConfig> for HealthcheckView {
    fn from(h: &mini_proto::v1::HealthConfig) -> Self {
        HealthcheckView {
            test: h.test.clone(),
            interval: h.interval_ns,
            timeout: h.timeout_ns,
            start_period: h.start_period_ns,
            retries: h.retries,
        }
    }
}

/// A task as shown by `service ps --format json`.
#[derive(Serialize)]
pub struct TaskView {
    id: String,
    name: String,
    service_id: String,
    service: String,
    slot: u64,
    image: String,
    node_id: String,
    node: String,
    desired_state: &'static str,
    current_state: &'static str,
    since_ms: i64,
    message: String,
    error: String,
    /// The container's health when it has a check: `starting`, `healthy`, `unhealthy`.
    #[serde(skip_serializing_if = "String::is_empty")]
    health: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    networks: Vec<AttachmentView>,
}

impl TaskView {
    /// The view of `t`.
    pub fn new(t: &Task, names: &Names) -> Self {
        let status = t.status.clone().unwrap_or_default();
        let state = status.state();
        TaskView {
            id: t.id.clone(),
            name: task_name(t),
            service_id: t.service_id.clone(),
            service: t.service_name.clone(),
            slot: t.slot,
            image: t
                .container
                .as_ref()
                .map_or(String::new(), |c| c.image.clone()),
            node_id: t.node_id.clone(),
            node: if t.node_id.is_empty() {
                String::new()
            } else {
                names.node(&t.node_id)
            },
            desired_state: state_name(t.desired_state()),
            current_state: state_name(state),
            since_ms: status.timestamp_ms,
            message: status.message,
            error: status.err,
            health: status.health,
            exit_code: matches!(state, TaskState::Complete | TaskState::Failed)
                .then_some(status.exit_code),
            networks: t
                .networks
                .iter()
                .map(|a| AttachmentView {
                    network_id: a.network_id.clone(),
                    network: names.network(&a.network_id),
                    addr: a.addr.clone(),
                    mac: a.mac.clone(),
                    vip: a.vip.clone(),
                })
                .collect(),
        }
    }
}

/// A node as shown by `node ls --format json` and `node inspect`.
#[derive(Serialize)]
pub struct NodeView {
    id: String,
    hostname: String,
    role: &'static str,
    status: &'static str,
    availability: &'static str,
    manager_status: &'static str,
    address: String,
    labels: std::collections::BTreeMap<String, String>,
    /// Why the node is in its state (e.g. why it is down), as Docker's `Status.Message`.
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    /// When the node's current certificate expires (UTC).
    #[serde(skip_serializing_if = "String::is_empty")]
    certificate_expiry: String,
    /// What the node offers tasks, as Docker's `Description.Resources`
    /// (absent until the node reported it).
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<ResourcesView>,
    /// Docker's `Spec` (labels from `node update --label-add`, role, availability).
    #[serde(rename = "Spec")]
    spec: NodeSpecView,
    /// Docker's `Description` (what the node reported: platform, engine labels).
    #[serde(rename = "Description")]
    description: NodeDescriptionView,
}

/// A node's spec as `docker node inspect` shows it.
#[derive(Serialize)]
pub struct NodeSpecView {
    #[serde(rename = "Labels")]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(rename = "Role")]
    role: &'static str,
    #[serde(rename = "Availability")]
    availability: &'static str,
}

/// What a node reported of itself, as `docker node inspect` shows it.
#[derive(Serialize)]
pub struct NodeDescriptionView {
    #[serde(rename = "Hostname")]
    hostname: String,
    #[serde(rename = "Platform")]
    platform: PlatformView,
    #[serde(rename = "Resources", skip_serializing_if = "Option::is_none")]
    resources: Option<ResourcesView>,
    #[serde(rename = "Engine")]
    engine: EngineView,
}

/// A node's platform (`Architecture` as `uname -m` prints it, `OS`).
#[derive(Serialize)]
pub struct PlatformView {
    #[serde(rename = "Architecture")]
    architecture: String,
    #[serde(rename = "OS")]
    os: String,
}

/// A node's engine (`mini daemon --label`).
#[derive(Serialize)]
pub struct EngineView {
    #[serde(rename = "Labels")]
    labels: std::collections::BTreeMap<String, String>,
}

impl NodeView {
    /// The view of `n`; `leader` tells whether it is the Raft leader, `unreachable` whether
    /// the leader lost contact with it.
    pub fn new(n: &Node, leader: bool, unreachable: bool) -> Self {
        let spec = n.spec.clone().unwrap_or_default();
        let status = n.status.clone().unwrap_or_default();
        let role = n.role();
        let description = n.description.clone().unwrap_or_default();
        let platform = description.platform.unwrap_or_default();
        let availability = match spec.availability() {
            NodeAvailability::Active => "active",
            NodeAvailability::Pause => "pause",
            NodeAvailability::Drain => "drain",
        };
        let role_name = if role == NodeRole::Manager {
            "manager"
        } else {
            "worker"
        };
        NodeView {
            id: n.id.clone(),
            hostname: n.hostname.clone(),
            role: role_name,
            status: match status.state() {
                NodeState::Ready => "ready",
                NodeState::Down => "down",
                NodeState::Disconnected => "disconnected",
                NodeState::Unknown => "unknown",
            },
            availability,
            manager_status: match (role, leader) {
                (NodeRole::Manager, true) => "leader",
                (NodeRole::Manager, false) if unreachable => "unreachable",
                (NodeRole::Manager, false) => "reachable",
                _ => "",
            },
            address: status.addr,
            labels: spec.labels.clone().into_iter().collect(),
            spec: NodeSpecView {
                labels: spec.labels.into_iter().collect(),
                role: role_name,
                availability,
            },
            description: NodeDescriptionView {
                hostname: n.hostname.clone(),
                platform: PlatformView {
                    architecture: platform.architecture,
                    os: platform.os,
                },
                resources: ResourcesView::of(n.resources),
                engine: EngineView {
                    labels: description.engine_labels.into_iter().collect(),
                },
            },
            message: status.message,
            certificate_expiry: mini_proto::tls::pki::identity_of(&n.certificate)
                .map(|id| mini_proto::tls::pki::format_utc(id.not_after))
                .unwrap_or_default(),
            resources: ResourcesView::of(n.resources),
        }
    }

    /// Cells of `node ls`.
    pub fn row(&self) -> Vec<String> {
        vec![
            short(&self.id).to_string(),
            self.hostname.clone(),
            capitalize(self.status),
            capitalize(self.availability),
            capitalize(self.manager_status),
            self.address.clone(),
        ]
    }
}

/// First 12 characters of an id, as Docker's tables show.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// "ready" → "Ready".
pub fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
}
