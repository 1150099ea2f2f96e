//! What the CLI shows of each object: JSON views with the same field names
//! across commands (id, name, desired_state, current_state, node, ...).

use std::collections::HashMap;

use mini_manager::orchestrator::docker_default;
use mini_proto::state_name;
use mini_proto::v1::{
    EndpointMode, Network, Node, NodeAvailability, NodeRole, NodeState, Resources,
    RestartCondition, RestartPolicy, Service, Task, TaskState, UpdateConfig, UpdateFailureAction,
    UpdateOrder, UpdateState, UpdateStatus, service_spec::Mode,
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
    scope: String,
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
            scope: crate::rows::network_scope(n).to_string(),
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
    /// Names besides the service's that resolve to it on this network (`--network
    /// name=N,alias=A`), as Docker's `Networks[].Aliases`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
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
    /// Docker's `Secrets`: which secrets the tasks get, and as which files (never values).
    #[serde(rename = "Secrets", skip_serializing_if = "Vec::is_empty")]
    secrets: Vec<SecretRefView>,
    /// Docker's `Configs`.
    #[serde(rename = "Configs", skip_serializing_if = "Vec::is_empty")]
    configs: Vec<ConfigRefView>,
    restart_condition: &'static str,
    /// Docker's `RestartPolicy` (durations in nanoseconds).
    #[serde(rename = "RestartPolicy")]
    restart_policy: RestartPolicyView,
    /// Docker's `UpdateConfig` and `RollbackConfig` (unset: Docker's defaults).
    #[serde(rename = "UpdateConfig")]
    update_config: UpdateConfigView,
    #[serde(rename = "RollbackConfig")]
    rollback_config: UpdateConfigView,
    /// Docker's `UpdateStatus`; absent before the first update.
    #[serde(rename = "UpdateStatus", skip_serializing_if = "Option::is_none")]
    update_status: Option<UpdateStatusView>,
    /// The spec before the latest update (what `service rollback` goes back to).
    #[serde(rename = "PreviousSpec", skip_serializing_if = "Option::is_none")]
    previous_spec: Option<Box<ServiceView>>,
    force_update: u64,
    labels: std::collections::BTreeMap<String, String>,
    /// `--container-label` (a compose service's `labels:`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    container_labels: std::collections::BTreeMap<String, String>,
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
                    aliases: spec.aliases.clone(),
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
                    aliases: Vec::new(),
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
            secrets: container
                .secrets
                .iter()
                .map(|r| SecretRefView {
                    file: FileView::from(&r.file),
                    secret_id: r.secret_id.clone(),
                    secret_name: r.secret_name.clone(),
                })
                .collect(),
            configs: container
                .configs
                .iter()
                .map(|r| ConfigRefView {
                    file: FileView::from(&r.file),
                    config_id: r.config_id.clone(),
                    config_name: r.config_name.clone(),
                })
                .collect(),
            restart_condition: restart_condition_name(restart.condition()),
            restart_policy: RestartPolicyView::from(&restart),
            // Unset: Docker's defaults.
            update_config: UpdateConfigView::from(&spec.update.unwrap_or_else(docker_default)),
            rollback_config: UpdateConfigView::from(&spec.rollback.unwrap_or_else(docker_default)),
            update_status: s.update_status.as_ref().map(UpdateStatusView::from),
            previous_spec: s.previous_spec.as_ref().map(|p| {
                let previous = Service {
                    id: s.id.clone(),
                    spec: Some(p.clone()),
                    ..Service::default()
                };
                Box::new(ServiceView::new(&previous, None, names))
            }),
            force_update: spec.force_update,
            labels: spec.labels.into_iter().collect(),
            container_labels: container.labels.into_iter().collect(),
            version,
            created_at_ms,
            updated_at_ms,
        }
    }
}

/// Docker's `File` of a secret or config reference.
#[derive(Serialize)]
pub struct FileView {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "UID")]
    uid: String,
    #[serde(rename = "GID")]
    gid: String,
    #[serde(rename = "Mode")]
    mode: u32,
}

impl From<&Option<mini_proto::v1::FileTarget>> for FileView {
    fn from(f: &Option<mini_proto::v1::FileTarget>) -> Self {
        let f = f.clone().unwrap_or_default();
        FileView {
            name: f.name,
            uid: f.uid,
            gid: f.gid,
            mode: f.mode,
        }
    }
}

/// A restart policy as `docker service inspect` shows it.
#[derive(Serialize)]
pub struct RestartPolicyView {
    #[serde(rename = "Condition")]
    condition: &'static str,
    /// Nanoseconds.
    #[serde(rename = "Delay")]
    delay: u64,
    #[serde(rename = "MaxAttempts")]
    max_attempts: u64,
    /// Nanoseconds.
    #[serde(rename = "Window")]
    window: u64,
}

impl From<&RestartPolicy> for RestartPolicyView {
    fn from(r: &RestartPolicy) -> Self {
        RestartPolicyView {
            condition: restart_condition_name(r.condition()),
            delay: r.delay_ms.saturating_mul(1_000_000),
            max_attempts: r.max_attempts,
            window: r.window_ms.saturating_mul(1_000_000),
        }
    }
}

/// One of a service's secrets as `docker service inspect` shows it.
#[derive(Serialize)]
pub struct SecretRefView {
    #[serde(rename = "File")]
    file: FileView,
    #[serde(rename = "SecretID")]
    secret_id: String,
    #[serde(rename = "SecretName")]
    secret_name: String,
}

/// One of a service's configs as `docker service inspect` shows it.
#[derive(Serialize)]
pub struct ConfigRefView {
    #[serde(rename = "File")]
    file: FileView,
    #[serde(rename = "ConfigID")]
    config_id: String,
    #[serde(rename = "ConfigName")]
    config_name: String,
}

fn restart_condition_name(c: RestartCondition) -> &'static str {
    match c {
        RestartCondition::Any => "any",
        RestartCondition::OnFailure => "on-failure",
        RestartCondition::None => "none",
    }
}

/// An update or rollback config as `docker service inspect` shows it (durations in
/// nanoseconds).
#[derive(Serialize)]
pub struct UpdateConfigView {
    #[serde(rename = "Parallelism")]
    parallelism: u64,
    #[serde(rename = "Delay", skip_serializing_if = "is_zero")]
    delay: u64,
    #[serde(rename = "FailureAction")]
    failure_action: &'static str,
    #[serde(rename = "Monitor")]
    monitor: u64,
    #[serde(rename = "MaxFailureRatio")]
    max_failure_ratio: f32,
    #[serde(rename = "Order")]
    order: &'static str,
}

/// Docker's word for a failure action.
pub fn failure_action_name(a: UpdateFailureAction) -> &'static str {
    match a {
        UpdateFailureAction::Pause => "pause",
        UpdateFailureAction::Continue => "continue",
        UpdateFailureAction::Rollback => "rollback",
    }
}

/// Docker's word for an update order.
pub fn order_name(o: UpdateOrder) -> &'static str {
    match o {
        UpdateOrder::StopFirst => "stop-first",
        UpdateOrder::StartFirst => "start-first",
    }
}

impl From<&UpdateConfig> for UpdateConfigView {
    fn from(c: &UpdateConfig) -> Self {
        UpdateConfigView {
            parallelism: c.parallelism,
            delay: c.delay_ms.saturating_mul(1_000_000),
            failure_action: failure_action_name(c.failure_action()),
            monitor: c.monitor_ms.saturating_mul(1_000_000),
            max_failure_ratio: c.max_failure_ratio,
            order: order_name(c.order()),
        }
    }
}

/// A service's update status as `docker service inspect` shows it (times in RFC 3339).
#[derive(Serialize)]
pub struct UpdateStatusView {
    #[serde(rename = "State")]
    state: &'static str,
    #[serde(rename = "StartedAt", skip_serializing_if = "String::is_empty")]
    started_at: String,
    #[serde(rename = "CompletedAt", skip_serializing_if = "String::is_empty")]
    completed_at: String,
    #[serde(rename = "Message")]
    message: String,
}

impl From<&UpdateStatus> for UpdateStatusView {
    fn from(u: &UpdateStatus) -> Self {
        let time = |ms: i64| {
            if ms == 0 {
                String::new()
            } else {
                crate::commands::service::rfc3339_ns(ms.saturating_mul(1_000_000))
            }
        };
        UpdateStatusView {
            state: update_state_name(u.state()),
            started_at: time(u.started_at_ms),
            completed_at: time(u.completed_at_ms),
            message: u.message.clone(),
        }
    }
}

/// A duration in milliseconds as Go prints one (`5s`, `1m30s`, `500ms`, `0s`).
pub fn go_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m) = (ms / 3_600_000, ms / 60_000 % 60);
    let secs = ms % 60_000;
    let s = if secs.is_multiple_of(1000) {
        format!("{}s", secs / 1000)
    } else {
        format!("{}s", (secs as f64 / 1000.0))
    };
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

/// `service inspect --pretty`: Docker's human-readable layout, with the update status and
/// the update and rollback configs.
pub fn pretty_service(s: &Service, names: &Names) -> String {
    use std::fmt::Write as _;
    let spec = s.spec.clone().unwrap_or_default();
    let container = spec.container.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "ID:\t\t{}", s.id);
    let _ = writeln!(out, "Name:\t\t{}", spec.name);
    if !spec.labels.is_empty() {
        let _ = writeln!(out, "Labels:");
        let labels: std::collections::BTreeMap<_, _> = spec.labels.iter().collect();
        for (k, v) in labels {
            let _ = writeln!(out, " {k}={v}");
        }
    }
    match spec.mode {
        Some(Mode::Global(_)) => {
            let _ = writeln!(out, "Service Mode:\tGlobal");
        }
        Some(Mode::Replicas(n)) => {
            let _ = writeln!(out, "Service Mode:\tReplicated\n Replicas:\t{n}");
        }
        Some(Mode::ReplicatedJob(job)) => {
            let _ = writeln!(
                out,
                "Service Mode:\tReplicatedJob\n Max Concurrent:\t{}\n Total Completions:\t{}",
                job.max_concurrent, job.total_completions
            );
        }
        Some(Mode::GlobalJob(_)) => {
            let _ = writeln!(out, "Service Mode:\tGlobalJob");
        }
        None => {
            let _ = writeln!(out, "Service Mode:\tReplicated\n Replicas:\t1");
        }
    }
    if let Some(u) = &s.update_status {
        let _ = writeln!(out, "UpdateStatus:");
        let _ = writeln!(out, " State:\t\t{}", update_state_name(u.state()));
        if u.started_at_ms != 0 {
            let started = crate::output::ago(u.started_at_ms, mini_manager::ids::now_ms());
            let _ = writeln!(out, " Started:\t{started}");
        }
        if u.completed_at_ms != 0 {
            let done = crate::output::ago(u.completed_at_ms, mini_manager::ids::now_ms());
            let _ = writeln!(out, " Completed:\t{done}");
        }
        let _ = writeln!(out, " Message:\t{}", u.message);
    }
    let _ = writeln!(out, "Placement:");
    if !spec.constraints.is_empty() {
        let _ = writeln!(out, " Constraints:\t{:?}", spec.constraints);
    }
    if !spec.placement_preferences.is_empty() {
        let prefs: Vec<String> = spec
            .placement_preferences
            .iter()
            .map(|p| format!("spread={}", p.spread))
            .collect();
        let _ = writeln!(out, " Preferences:\t{prefs:?}");
    }
    if spec.max_replicas_per_node != 0 {
        let _ = writeln!(
            out,
            " Max Replicas Per Node:\t{}",
            spec.max_replicas_per_node
        );
    }
    for (title, verb, config) in [
        ("UpdateConfig", "Update", spec.update),
        ("RollbackConfig", "Rollback", spec.rollback),
    ] {
        let c = config.unwrap_or_else(docker_default);
        let _ = writeln!(out, "{title}:\n Parallelism:\t{}", c.parallelism);
        if c.delay_ms != 0 {
            let _ = writeln!(out, " Delay:\t\t{}", go_duration_ms(c.delay_ms));
        }
        let _ = writeln!(
            out,
            " On failure:\t{}",
            failure_action_name(c.failure_action())
        );
        let _ = writeln!(out, " Monitoring Period: {}", go_duration_ms(c.monitor_ms));
        let _ = writeln!(out, " Max failure ratio: {}", c.max_failure_ratio);
        let _ = writeln!(out, " {verb} order:      {}", order_name(c.order()));
    }
    let _ = writeln!(out, "ContainerSpec:\n Image:\t\t{}", container.image);
    if !container.args.is_empty() {
        let _ = writeln!(out, " Args:\t\t{}", container.args.join(" "));
    }
    if !container.env.is_empty() {
        let _ = writeln!(out, " Env:\t\t{}", container.env.join(" "));
    }
    // Docker's template: each secret's and config's target and source (never a value).
    if !container.secrets.is_empty() {
        let _ = writeln!(out, " Secrets:");
        for r in &container.secrets {
            let target = r.file.as_ref().map_or("", |f| f.name.as_str());
            let _ = writeln!(out, "  Target:\t{target}\n   Source:\t{}", r.secret_name);
        }
    }
    if !container.configs.is_empty() {
        let _ = writeln!(out, " Configs:");
        for r in &container.configs {
            let target = r.file.as_ref().map_or("", |f| f.name.as_str());
            let _ = writeln!(out, "  Target:\t{target}\n   Source:\t{}", r.config_name);
        }
    }
    let restart = spec.restart.unwrap_or_default();
    let _ = writeln!(
        out,
        "RestartPolicy:\n Condition:\t{}\n Delay:\t\t{}\n Max attempts:\t{}\n Window:\t{}",
        restart_condition_name(restart.condition()),
        go_duration_ms(restart.delay_ms),
        restart.max_attempts,
        go_duration_ms(restart.window_ms)
    );
    if !spec.networks.is_empty() {
        let nets: Vec<String> = spec.networks.iter().map(|n| names.network(n)).collect();
        let _ = writeln!(out, "Networks:\t{}", nets.join(" "));
        if !spec.aliases.is_empty() {
            let _ = writeln!(out, " Aliases:\t{}", spec.aliases.join(" "));
        }
    }
    let endpoint = spec.endpoint.unwrap_or_default();
    let _ = write!(
        out,
        "Endpoint Mode:\t{}",
        match endpoint.mode() {
            EndpointMode::Vip => "vip",
            EndpointMode::Dnsrr => "dnsrr",
        }
    );
    if !endpoint.ports.is_empty() {
        let _ = write!(out, "\nPorts:");
        for p in &endpoint.ports {
            let _ = write!(
                out,
                "\n PublishedPort = {}\n  Protocol = {}\n  TargetPort = {}\n  PublishMode = ingress",
                p.published_port, p.protocol, p.target_port
            );
        }
    }
    out
}

/// Docker's word for an update state.
pub fn update_state_name(state: UpdateState) -> &'static str {
    mini_manager::orchestrator::update::state_name(state)
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
    /// The command's arguments the task was made with (its spec's, at the time).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    args: Vec<String>,
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
            args: t
                .container
                .as_ref()
                .map_or_else(Vec::new, |c| c.args.clone()),
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
                    aliases: t.aliases.clone(),
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

/// A node's engine (`mini daemon --label`, the daemon's version).
#[derive(Serialize)]
pub struct EngineView {
    #[serde(rename = "EngineVersion")]
    engine_version: String,
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
                    engine_version: description.engine_version.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use mini_proto::v1::{
        ConfigReference, ContainerSpec, FileTarget, SecretReference, ServiceSpec,
    };

    #[test]
    fn inspect_shows_secret_references_never_values() {
        let file = |name: &str| FileTarget {
            name: name.into(),
            uid: "33".into(),
            gid: "0".into(),
            mode: 0o400,
        };
        let service = Service {
            id: "svc".into(),
            spec: Some(ServiceSpec {
                name: "web".into(),
                container: Some(ContainerSpec {
                    image: "busybox".into(),
                    secrets: vec![SecretReference {
                        secret_id: "sid".into(),
                        secret_name: "db_pass".into(),
                        file: Some(file("db")),
                    }],
                    configs: vec![ConfigReference {
                        config_id: "cid".into(),
                        config_name: "site".into(),
                        file: Some(file("/site")),
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let names = Names::new(&[], &[]);
        let pretty = pretty_service(&service, &names);
        assert!(
            pretty.contains(" Secrets:\n  Target:\tdb\n   Source:\tdb_pass\n"),
            "{pretty}"
        );
        assert!(
            pretty.contains(" Configs:\n  Target:\t/site\n   Source:\tsite\n"),
            "{pretty}"
        );
        let json = serde_json::to_value(ServiceView::new(&service, None, &names)).unwrap();
        assert_eq!(json["Secrets"][0]["SecretID"], "sid");
        assert_eq!(json["Secrets"][0]["File"]["UID"], "33");
        assert_eq!(json["Secrets"][0]["File"]["Mode"], 0o400);
        assert_eq!(json["Configs"][0]["ConfigName"], "site");
    }
}
