//! The compose file format (version 3.x / the compose specification) as typed structs.
//!
//! Every key the specification gives a service, a network, a volume, a secret or a config is
//! declared here, also the ones `mini` does not act on: those are parsed and named in a
//! warning by [`super::translate`], never dropped silently. Keys the specification does not
//! know are reported by [`super::load`] (through `serde_ignored`).
//!
//! Numbers and booleans are [`Scalar`]s: a file may write `replicas: 3` or, before
//! interpolation, `replicas: ${REPLICAS}`; they are converted (with the key's name in the
//! error) when a service is translated.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

/// A YAML scalar kept as text: a string, a number or a boolean (`3`, `"3"`, `true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, a number or a boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl Scalar {
    /// The value as a non-negative integer; `what` names the key in the error.
    pub fn u64(&self, what: &str) -> Result<u64, String> {
        self.0
            .trim()
            .parse()
            .map_err(|_| format!("{what}: {:?} is not a non-negative integer", self.0))
    }

    /// The value as a boolean (YAML's spellings: true/false, yes/no, on/off, any case).
    pub fn bool(&self, what: &str) -> Result<bool, String> {
        match self.0.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "y" => Ok(true),
            "false" | "no" | "off" | "n" => Ok(false),
            _ => Err(format!(
                "{what}: {:?} is not a boolean (true or false)",
                self.0
            )),
        }
    }
}

/// A whole compose file (or several merged into one).
#[derive(Debug, Default, Deserialize)]
pub struct ComposeFile {
    /// `version: "3.8"`: informative only (the compose specification ignores it).
    pub version: Option<Scalar>,
    /// The project name; `stack deploy` uses the name given on the command line, as Docker.
    pub name: Option<String>,
    /// The services, by their short name.
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    /// Top-level networks (a key with no value is a network with the defaults).
    #[serde(default)]
    pub networks: BTreeMap<String, Option<NetworkDef>>,
    /// Top-level named volumes.
    #[serde(default)]
    pub volumes: BTreeMap<String, Option<VolumeDef>>,
    /// Top-level secrets.
    #[serde(default)]
    pub secrets: BTreeMap<String, FileObjectDef>,
    /// Top-level configs.
    #[serde(default)]
    pub configs: BTreeMap<String, FileObjectDef>,
}

/// A string or a list of strings (`command`, `entrypoint`, `env_file`, `healthcheck.test`).
#[derive(Debug, Clone, PartialEq)]
pub enum StringOrList {
    /// One string (split as a shell would for `command` and `entrypoint`).
    String(String),
    /// A list of words.
    List(Vec<Scalar>),
}

/// `KEY: value` pairs written as a map or as a list of `KEY=value` (`environment`, `labels`).
#[derive(Debug, Clone, PartialEq)]
pub enum MapOrList {
    /// `KEY: value` (a value may be empty: `KEY:`).
    Map(BTreeMap<String, Option<Scalar>>),
    /// `- KEY=value` (or `- KEY`: no value).
    List(Vec<String>),
}

impl MapOrList {
    /// The pairs in order of key; `None`: a key without value.
    pub fn pairs(&self) -> Vec<(String, Option<String>)> {
        match self {
            MapOrList::Map(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_ref().map(|s| s.0.clone())))
                .collect(),
            MapOrList::List(l) => l
                .iter()
                .map(|e| match e.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (e.clone(), None),
                })
                .collect(),
        }
    }
}

/// `env_file:` entries: a path, or (newer specification) `{path, required}`.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvFile {
    /// A path.
    Path(String),
    /// `{path: ..., required: false}`.
    Long(EnvFileLong),
}

/// The long syntax of an `env_file:` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EnvFileLong {
    /// The file, relative to the compose file's directory.
    pub path: String,
    /// `false`: a missing file is skipped.
    pub required: Option<Scalar>,
}

/// `env_file:` as one entry or a list.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvFiles {
    /// One entry.
    One(EnvFile),
    /// Several.
    List(Vec<EnvFile>),
}

/// One service.
#[derive(Debug, Default, Deserialize)]
pub struct Service {
    /// The image to run.
    pub image: Option<String>,
    /// Replaces the image's CMD.
    pub command: Option<StringOrList>,
    /// Replaces the image's ENTRYPOINT.
    pub entrypoint: Option<StringOrList>,
    /// Environment variables.
    pub environment: Option<MapOrList>,
    /// Files of `KEY=value` lines, read before `environment`.
    pub env_file: Option<EnvFiles>,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<PortEntry>,
    /// Networks the service joins.
    pub networks: Option<ServiceNetworks>,
    /// Mounts.
    #[serde(default)]
    pub volumes: Vec<VolumeEntry>,
    /// Secrets given to the service.
    #[serde(default)]
    pub secrets: Vec<FileRef>,
    /// Configs given to the service.
    #[serde(default)]
    pub configs: Vec<FileRef>,
    /// The health check.
    pub healthcheck: Option<Healthcheck>,
    /// Container labels.
    pub labels: Option<MapOrList>,
    /// Time to wait after the stop signal before killing (`10s`, `1m30s`).
    pub stop_grace_period: Option<String>,
    /// The signal that stops the container.
    pub stop_signal: Option<String>,
    /// `uid[:gid]` or `name[:group]`.
    pub user: Option<String>,
    /// Working directory inside the container.
    pub working_dir: Option<String>,
    /// Container hostname.
    pub hostname: Option<String>,
    /// Read-only root filesystem.
    pub read_only: Option<Scalar>,
    /// An init process as PID 1.
    pub init: Option<Scalar>,
    /// Logging driver and options.
    pub logging: Option<Logging>,
    /// Swarm settings.
    pub deploy: Option<Deploy>,

    // Keys of the specification `docker stack deploy` does not act on or `mini` lacks:
    // parsed so that they are named in a warning (or refused, as Docker refuses them).
    /// Ignored by `docker stack deploy` ("Ignoring unsupported options").
    pub build: Option<Value>,
    /// Ignored by `docker stack deploy`.
    pub cgroup_parent: Option<Value>,
    /// Ignored by `docker stack deploy`.
    pub cgroupns_mode: Option<Value>,
    /// Ignored by `docker stack deploy`.
    pub devices: Option<Value>,
    /// Ignored by `docker stack deploy`.
    pub domainname: Option<Value>,
    /// Ignored by `docker stack deploy`.
    pub external_links: Option<Value>,
    /// Ignored by `docker stack deploy`.
    pub ipc: Option<Value>,
    /// Ignored by `docker stack deploy`.
    pub links: Option<Value>,
    /// Ignored by `docker stack deploy`.
    pub mac_address: Option<Value>,
    /// Ignored by `docker stack deploy`.
    pub network_mode: Option<Value>,
    /// Ignored by `docker stack deploy`.
    pub pid: Option<Value>,
    /// Ignored by `docker stack deploy`.
    pub privileged: Option<Value>,
    /// Ignored by `docker stack deploy` (use `deploy.restart_policy`).
    pub restart: Option<Value>,
    /// Ignored by `docker stack deploy`.
    pub security_opt: Option<Value>,
    /// Ignored by `docker stack deploy`.
    pub shm_size: Option<Value>,
    /// Ignored by `docker stack deploy`.
    pub userns_mode: Option<Value>,
    /// Ignored by `docker stack deploy` (services start in no order).
    pub depends_on: Option<Value>,
    /// Deprecated for swarm ("Setting the container name is not supported").
    pub container_name: Option<Value>,
    /// Deprecated for swarm (services reach each other on any port).
    pub expose: Option<Value>,
    /// Refused by `docker stack deploy`.
    pub extends: Option<Value>,
    /// Refused by `docker stack deploy`.
    pub volume_driver: Option<Value>,
    /// Refused by `docker stack deploy`.
    pub volumes_from: Option<Value>,
    /// Refused by `docker stack deploy` (use `deploy.resources`).
    pub cpu_quota: Option<Value>,
    /// Refused by `docker stack deploy` (use `deploy.resources`).
    pub cpu_shares: Option<Value>,
    /// Refused by `docker stack deploy` (use `deploy.resources`).
    pub cpuset: Option<Value>,
    /// Refused by `docker stack deploy` (use `deploy.resources`).
    pub mem_limit: Option<Value>,
    /// Refused by `docker stack deploy` (use `deploy.resources`).
    pub memswap_limit: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub cap_add: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub cap_drop: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub dns: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub dns_search: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub dns_opt: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub extra_hosts: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub sysctls: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub ulimits: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub tmpfs: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub tty: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub stdin_open: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub isolation: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub credential_spec: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub platform: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub pull_policy: Option<Value>,
    /// Supported by Docker's swarm, not (yet) by `mini`.
    pub profiles: Option<Value>,
}

/// `ports:` entries: `"8080:80"`, `"8080:80/udp"`, `"9090-9091:8080-8081"`, or the long syntax.
#[derive(Debug, Clone, PartialEq)]
pub enum PortEntry {
    /// The short syntax (also a bare number: a target port).
    Short(Scalar),
    /// The long syntax.
    Long(PortLong),
}

/// `ports:` long syntax.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PortLong {
    /// The container port.
    pub target: Scalar,
    /// The port on every node (a number or a range as a string).
    pub published: Option<Scalar>,
    /// `tcp` or `udp`.
    pub protocol: Option<String>,
    /// `ingress` (the routing mesh) or `host`.
    pub mode: Option<String>,
    /// Host address to bind (not used by swarm).
    pub host_ip: Option<String>,
    /// A name for the port (informative).
    pub name: Option<String>,
    /// Application protocol (informative).
    pub app_protocol: Option<String>,
}

/// A service's `networks:`, as a list of names or a map with per-network settings.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceNetworks {
    /// `- front`.
    List(Vec<String>),
    /// `front: {aliases: [...]}` (or `front:` with no settings).
    Map(BTreeMap<String, Option<ServiceNetwork>>),
}

impl ServiceNetworks {
    /// The network keys in order with their settings.
    pub fn entries(&self) -> Vec<(String, ServiceNetwork)> {
        match self {
            ServiceNetworks::List(l) => l
                .iter()
                .map(|n| (n.clone(), ServiceNetwork::default()))
                .collect(),
            ServiceNetworks::Map(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
                .collect(),
        }
    }
}

/// A service's settings on one network.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    /// More DNS names of the service on this network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A fixed address (not used by swarm services).
    pub ipv4_address: Option<String>,
    /// A fixed address (not used by swarm services).
    pub ipv6_address: Option<String>,
    /// Order of attachment (newer specification).
    pub priority: Option<Scalar>,
}

/// `volumes:` entries of a service: `"data:/var/lib/data:ro"`, `"./site:/srv"`, `"/tmp"`, or the
/// long syntax.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumeEntry {
    /// The short syntax `[SOURCE:]TARGET[:MODE]`.
    Short(String),
    /// The long syntax.
    Long(Box<VolumeLong>),
}

/// The long syntax of a service's volume.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VolumeLong {
    /// `volume`, `bind`, `tmpfs` (also `npipe`, `cluster`: refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// Named volume, or the node's path of a bind.
    pub source: Option<String>,
    /// The path in the container.
    pub target: String,
    /// Mount read-only.
    pub read_only: Option<Scalar>,
    /// `consistency` (macOS only; ignored by swarm).
    pub consistency: Option<String>,
    /// Bind options.
    pub bind: Option<BTreeMap<String, Value>>,
    /// Volume options.
    pub volume: Option<BTreeMap<String, Value>>,
    /// Tmpfs options: `size`, `mode`.
    pub tmpfs: Option<TmpfsOptions>,
}

/// Options of a tmpfs mount.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TmpfsOptions {
    /// Size in bytes, or with a unit (`64m`).
    pub size: Option<Scalar>,
    /// File mode (octal).
    pub mode: Option<Scalar>,
}

/// A service's secret or config: `- name` or `{source, target, uid, gid, mode}`.
#[derive(Debug, Clone, PartialEq)]
pub enum FileRef {
    /// The top-level name; mounted at its default place.
    Short(String),
    /// The long syntax.
    Long(FileRefLong),
}

/// The long syntax of a service's secret or config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileRefLong {
    /// The top-level name.
    pub source: String,
    /// File name (secrets: under /run/secrets) or path (configs).
    pub target: Option<String>,
    /// Owner uid.
    pub uid: Option<Scalar>,
    /// Owner gid.
    pub gid: Option<Scalar>,
    /// File mode (octal in YAML: `0440`).
    pub mode: Option<Scalar>,
}

impl FileRef {
    /// The top-level name it refers to.
    pub fn source(&self) -> &str {
        match self {
            FileRef::Short(s) => s,
            FileRef::Long(l) => &l.source,
        }
    }
}

/// A service's `healthcheck:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Healthcheck {
    /// `"curl -f localhost"` (run with a shell), `["CMD", ...]`, `["CMD-SHELL", "..."]`, `["NONE"]`.
    pub test: Option<StringOrList>,
    /// Time between checks.
    pub interval: Option<String>,
    /// Time one check may take.
    pub timeout: Option<String>,
    /// Consecutive failures that make the container unhealthy.
    pub retries: Option<Scalar>,
    /// Time after start when failures do not count.
    pub start_period: Option<String>,
    /// Time between checks during the start period (newer specification).
    pub start_interval: Option<String>,
    /// `true`: no check, not even the image's.
    pub disable: Option<Scalar>,
}

/// A service's `logging:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Logging {
    /// The log driver (`json-file` is what mini's task logs are).
    pub driver: Option<String>,
    /// Driver options (`max-size`, `max-file`).
    pub options: Option<BTreeMap<String, Scalar>>,
}

/// A service's `deploy:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Deploy {
    /// `replicated` (default), `global`, `replicated-job`, `global-job`.
    pub mode: Option<String>,
    /// Number of tasks (replicated modes).
    pub replicas: Option<Scalar>,
    /// Service labels.
    pub labels: Option<MapOrList>,
    /// `vip` (default) or `dnsrr`.
    pub endpoint_mode: Option<String>,
    /// Limits and reservations.
    pub resources: Option<DeployResources>,
    /// When tasks are restarted.
    pub restart_policy: Option<RestartPolicy>,
    /// How an update replaces tasks.
    pub update_config: Option<UpdateConfig>,
    /// How a rollback replaces tasks.
    pub rollback_config: Option<UpdateConfig>,
    /// Where tasks may run.
    pub placement: Option<Placement>,
}

/// `deploy.resources`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct DeployResources {
    /// Upper bounds.
    pub limits: Option<ResourceAmounts>,
    /// What the scheduler sets aside.
    pub reservations: Option<ResourceAmounts>,
}

/// CPUs, memory, pids (and devices/generic resources, not supported).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ResourceAmounts {
    /// CPUs, e.g. `"0.5"`.
    pub cpus: Option<Scalar>,
    /// Memory, e.g. `50M`.
    pub memory: Option<Scalar>,
    /// Process limit (limits only).
    pub pids: Option<Scalar>,
    /// Generic resources (reservations only).
    pub generic_resources: Option<Value>,
    /// Devices (reservations only).
    pub devices: Option<Value>,
}

/// `deploy.restart_policy`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct RestartPolicy {
    /// `none`, `on-failure`, `any` (default).
    pub condition: Option<String>,
    /// Wait between restarts.
    pub delay: Option<String>,
    /// Give up after this many restarts.
    pub max_attempts: Option<Scalar>,
    /// Window to decide whether a restart succeeded.
    pub window: Option<String>,
}

/// `deploy.update_config` and `deploy.rollback_config`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct UpdateConfig {
    /// Tasks replaced at a time (0: all).
    pub parallelism: Option<Scalar>,
    /// Wait between groups.
    pub delay: Option<String>,
    /// `continue`, `rollback`, `pause` (update) / `continue`, `pause` (rollback).
    pub failure_action: Option<String>,
    /// Time after each task update to watch for failure.
    pub monitor: Option<String>,
    /// Failure rate tolerated.
    pub max_failure_ratio: Option<Scalar>,
    /// `stop-first` or `start-first`.
    pub order: Option<String>,
}

/// `deploy.placement`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Placement {
    /// `node.role == manager`...
    #[serde(default)]
    pub constraints: Vec<String>,
    /// `- spread: node.labels.zone`.
    #[serde(default)]
    pub preferences: Vec<BTreeMap<String, String>>,
    /// At most this many tasks of the service per node.
    pub max_replicas_per_node: Option<Scalar>,
}

/// `external:` as a boolean, or (version 3.3 and before) `{name: ...}`.
#[derive(Debug, Clone, PartialEq)]
pub enum External {
    /// `external: true`.
    Flag(Scalar),
    /// `external: {name: real}` (deprecated spelling of `name:` + `external: true`).
    Named(String),
}

impl External {
    /// Whether the object is external, and the name the legacy form gives it.
    pub fn resolve(&self, what: &str) -> Result<(bool, Option<String>), String> {
        match self {
            External::Flag(s) => Ok((s.bool(what)?, None)),
            External::Named(name) => Ok((true, Some(name.clone()))),
        }
    }
}

/// A top-level network.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct NetworkDef {
    /// `overlay` (default for stacks).
    pub driver: Option<String>,
    /// Driver options.
    pub driver_opts: Option<BTreeMap<String, Scalar>>,
    /// Address management.
    pub ipam: Option<Ipam>,
    /// Standalone containers may attach.
    pub attachable: Option<Scalar>,
    /// No external connectivity.
    pub internal: Option<Scalar>,
    /// Exists already (not created nor removed by the stack).
    pub external: Option<External>,
    /// The real name (not prefixed with the stack's).
    pub name: Option<String>,
    /// Network labels.
    pub labels: Option<MapOrList>,
    /// IPv6 (not supported).
    pub enable_ipv6: Option<Scalar>,
}

/// `ipam:` of a network.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Ipam {
    /// IPAM driver (`default` only).
    pub driver: Option<String>,
    /// Subnets.
    #[serde(default)]
    pub config: Vec<IpamConfig>,
    /// Driver options.
    pub options: Option<BTreeMap<String, Scalar>>,
}

/// One `ipam.config` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct IpamConfig {
    /// CIDR.
    pub subnet: Option<String>,
    /// Gateway address.
    pub gateway: Option<String>,
    /// Range to allocate from (not supported).
    pub ip_range: Option<String>,
    /// Reserved addresses (not supported).
    pub aux_addresses: Option<BTreeMap<String, String>>,
}

/// A top-level volume.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct VolumeDef {
    /// Volume driver (`local`).
    pub driver: Option<String>,
    /// Driver options.
    pub driver_opts: Option<BTreeMap<String, Scalar>>,
    /// Exists already.
    pub external: Option<External>,
    /// The real name (not prefixed).
    pub name: Option<String>,
    /// Volume labels.
    pub labels: Option<MapOrList>,
}

/// A top-level secret or config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct FileObjectDef {
    /// Read from this file (relative to the compose file).
    pub file: Option<String>,
    /// The value of this environment variable.
    pub environment: Option<String>,
    /// Inline content (configs, newer specification).
    pub content: Option<String>,
    /// Exists already.
    pub external: Option<External>,
    /// The real name (not prefixed).
    pub name: Option<String>,
    /// Labels.
    pub labels: Option<MapOrList>,
    /// Template driver (configs; not supported).
    pub template_driver: Option<String>,
    /// Secret driver (not supported).
    pub driver: Option<String>,
    /// Driver options.
    pub driver_opts: Option<BTreeMap<String, Scalar>>,
}

/// What a YAML node is, for error messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Deserializes `v` as `T`, the error kept as `E`'s message.
fn from_value<T: serde::de::DeserializeOwned, E: serde::de::Error>(v: Value) -> Result<T, E> {
    serde_yaml::from_value(v).map_err(E::custom)
}

/// Implements `Deserialize` for an enum whose variants are told apart by the node's kind
/// (the compose specification's short and long syntaxes), with an error that says what was
/// expected instead of serde's "did not match any variant".
macro_rules! by_kind {
    ($ty:ident, $expected:literal, { $($pat:pat => $variant:expr),+ $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = Value::deserialize(d)?;
                #[allow(unreachable_patterns)]
                match v {
                    $($pat => {
                        let f: fn(Value) -> Result<$ty, D::Error> = $variant;
                        f(v)
                    })+
                    other => Err(serde::de::Error::custom(format!(
                        concat!("expected ", $expected, ", got {}"),
                        kind(&other)
                    ))),
                }
            }
        }
    };
}

by_kind!(StringOrList, "a string or a list of strings", {
    Value::String(_) => |v| Ok(StringOrList::String(from_value(v)?)),
    Value::Sequence(_) => |v| Ok(StringOrList::List(from_value(v)?)),
});
by_kind!(MapOrList, "a mapping or a list of KEY=value strings", {
    Value::Mapping(_) => |v| Ok(MapOrList::Map(from_value(v)?)),
    Value::Sequence(_) => |v| {
        let items: Vec<Scalar> = from_value(v)?;
        Ok(MapOrList::List(items.into_iter().map(|s| s.0).collect()))
    },
});
by_kind!(EnvFile, "a path or a mapping with `path`", {
    Value::String(_) => |v| Ok(EnvFile::Path(from_value(v)?)),
    Value::Mapping(_) => |v| Ok(EnvFile::Long(from_value(v)?)),
});
by_kind!(EnvFiles, "a path, a mapping with `path`, or a list of them", {
    Value::String(_) | Value::Mapping(_) => |v| Ok(EnvFiles::One(from_value(v)?)),
    Value::Sequence(_) => |v| Ok(EnvFiles::List(from_value(v)?)),
});
by_kind!(PortEntry, "a port (\"8080:80\") or a mapping with `target`", {
    Value::String(_) | Value::Number(_) => |v| Ok(PortEntry::Short(from_value(v)?)),
    Value::Mapping(_) => |v| Ok(PortEntry::Long(from_value(v)?)),
});
by_kind!(ServiceNetworks, "a list of network names or a mapping of them", {
    Value::Sequence(_) => |v| Ok(ServiceNetworks::List(from_value(v)?)),
    Value::Mapping(_) => |v| Ok(ServiceNetworks::Map(from_value(v)?)),
});
by_kind!(VolumeEntry, "a volume (\"data:/data:ro\") or a mapping with `type` and `target`", {
    Value::String(_) => |v| Ok(VolumeEntry::Short(from_value(v)?)),
    Value::Mapping(_) => |v| Ok(VolumeEntry::Long(from_value(v)?)),
});
by_kind!(FileRef, "a name or a mapping with `source`", {
    Value::String(_) => |v| Ok(FileRef::Short(from_value(v)?)),
    Value::Mapping(_) => |v| Ok(FileRef::Long(from_value(v)?)),
});
by_kind!(External, "true, false or a mapping with `name`", {
    Value::Bool(_) | Value::String(_) => |v| Ok(External::Flag(from_value(v)?)),
    Value::Mapping(_) => |v| {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Named {
            name: String,
        }
        let n: Named = from_value(v)?;
        Ok(External::Named(n.name))
    },
});
