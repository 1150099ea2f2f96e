//! A compose file → the specs of a stack's networks and services.
//!
//! Each compose service becomes the [`CreateArgs`] of `mini service create` (the same
//! [`CreateArgs::spec`] and [`SpecFlags::apply`] build the spec), named `<stack>_<name>` and
//! labelled as Docker labels stack objects. Keys `mini` cannot honour are named in warnings
//! (or refused where honouring them differently would change what runs).

use std::collections::BTreeMap;
use std::path::Path;

use mini_proto::v1::{FileTarget, Mount, NetworkSpec, PortConfig, ServiceSpec};

use super::compose::{
    ComposeFile, Deploy, DeployResources, EnvFile, EnvFiles, FileObjectDef, FileRef, Healthcheck,
    PortEntry, Scalar, Service, StringOrList, UpdateConfig, VolumeEntry,
};
use super::load::Lookup;
use crate::commands::service::{CreateArgs, parse_publish};
use crate::commands::service_flags::{
    SpecFlags, config_reference, parse_bytes, parse_cpus, parse_duration_ms, parse_failure_ratio,
    parse_log_opt, parse_positive_duration_ns, secret_reference,
};

/// The label Docker puts on every object of a stack: its value is the stack's name.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";
/// The label Docker puts on a stack's services: the image as the compose file names it.
pub const IMAGE_LABEL: &str = "com.docker.stack.image";

/// What a stack is made of.
#[derive(Debug)]
pub struct Stack {
    /// The stack's name.
    pub name: String,
    /// The networks its services use, in order of name.
    pub networks: Vec<StackNetwork>,
    /// Its secrets (all declared ones, as Docker creates them), in order of key.
    pub secrets: Vec<StackObject>,
    /// Its configs, in order of key.
    pub configs: Vec<StackObject>,
    /// Its services, in order of name.
    pub services: Vec<StackService>,
    /// Keys named as unsupported or ignored.
    pub warnings: Vec<String>,
}

/// A secret or config of the stack.
#[derive(Clone, PartialEq)]
pub struct StackObject {
    /// The compose file's key.
    pub key: String,
    /// Its real name: `<stack>_<key>` unless `name:` is given.
    pub name: String,
    /// Declared `external`: must exist; neither created nor removed.
    pub external: bool,
    /// The value (from `file:`, `environment:` or `content:`); empty when external.
    pub data: Vec<u8>,
    /// Labels, the namespace label included.
    pub labels: BTreeMap<String, String>,
}

/// The value stays out of debug output (it may be a secret).
impl std::fmt::Debug for StackObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackObject")
            .field("key", &self.key)
            .field("name", &self.name)
            .field("external", &self.external)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .field("labels", &self.labels)
            .finish()
    }
}

/// A network of the stack.
#[derive(Debug, Clone, PartialEq)]
pub struct StackNetwork {
    /// The compose file's key.
    pub key: String,
    /// Declared `external`: must exist; neither created nor removed.
    pub external: bool,
    /// The spec to create it with (its name: `<stack>_<key>` unless `name:` is given).
    pub spec: NetworkSpec,
}

/// A service of the stack.
#[derive(Debug, Clone)]
pub struct StackService {
    /// The spec (`networks` left empty: see `networks`).
    pub spec: ServiceSpec,
    /// The networks to attach, by their real names, in order.
    pub networks: Vec<String>,
}

/// Docker's "Ignoring unsupported options" (swarm does not use them).
const UNSUPPORTED: &[&str] = &[
    "build",
    "cgroup_parent",
    "cgroupns_mode",
    "devices",
    "domainname",
    "external_links",
    "ipc",
    "links",
    "mac_address",
    "network_mode",
    "pid",
    "privileged",
    "restart",
    "security_opt",
    "shm_size",
    "userns_mode",
    "depends_on",
];

/// Keys Docker's swarm honours that `mini` does not (yet).
const NOT_IN_MINI: &[&str] = &[
    "cap_add",
    "cap_drop",
    "dns",
    "dns_search",
    "dns_opt",
    "extra_hosts",
    "sysctls",
    "ulimits",
    "tmpfs",
    "tty",
    "stdin_open",
    "isolation",
    "credential_spec",
    "platform",
    "pull_policy",
    "profiles",
];

/// The keys of `s` given a value among `keys`.
fn present(s: &Service, keys: &[&'static str]) -> Vec<&'static str> {
    let value = |k: &str| -> bool {
        match k {
            "build" => s.build.is_some(),
            "cgroup_parent" => s.cgroup_parent.is_some(),
            "cgroupns_mode" => s.cgroupns_mode.is_some(),
            "devices" => s.devices.is_some(),
            "domainname" => s.domainname.is_some(),
            "external_links" => s.external_links.is_some(),
            "ipc" => s.ipc.is_some(),
            "links" => s.links.is_some(),
            "mac_address" => s.mac_address.is_some(),
            "network_mode" => s.network_mode.is_some(),
            "pid" => s.pid.is_some(),
            "privileged" => s.privileged.is_some(),
            "restart" => s.restart.is_some(),
            "security_opt" => s.security_opt.is_some(),
            "shm_size" => s.shm_size.is_some(),
            "userns_mode" => s.userns_mode.is_some(),
            "depends_on" => s.depends_on.is_some(),
            "container_name" => s.container_name.is_some(),
            "expose" => s.expose.is_some(),
            "extends" => s.extends.is_some(),
            "volume_driver" => s.volume_driver.is_some(),
            "volumes_from" => s.volumes_from.is_some(),
            "cpu_quota" => s.cpu_quota.is_some(),
            "cpu_shares" => s.cpu_shares.is_some(),
            "cpuset" => s.cpuset.is_some(),
            "mem_limit" => s.mem_limit.is_some(),
            "memswap_limit" => s.memswap_limit.is_some(),
            "cap_add" => s.cap_add.is_some(),
            "cap_drop" => s.cap_drop.is_some(),
            "dns" => s.dns.is_some(),
            "dns_search" => s.dns_search.is_some(),
            "dns_opt" => s.dns_opt.is_some(),
            "extra_hosts" => s.extra_hosts.is_some(),
            "sysctls" => s.sysctls.is_some(),
            "ulimits" => s.ulimits.is_some(),
            "tmpfs" => s.tmpfs.is_some(),
            "tty" => s.tty.is_some(),
            "stdin_open" => s.stdin_open.is_some(),
            "isolation" => s.isolation.is_some(),
            "credential_spec" => s.credential_spec.is_some(),
            "platform" => s.platform.is_some(),
            "pull_policy" => s.pull_policy.is_some(),
            "profiles" => s.profiles.is_some(),
            _ => false,
        }
    };
    keys.iter().copied().filter(|k| value(k)).collect()
}

/// Whether `name` is a valid stack name (it prefixes service names: Docker's service name
/// characters).
pub fn check_stack_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid stack name {name:?}: use letters, digits, '_', '.', '-', starting with a letter or digit"
        ))
    }
}

/// Translates `file` into the stack `name`. `env` answers `environment` keys without a
/// value and `env_file` lines without one, `dir` resolves relative paths.
pub fn translate(
    file: &ComposeFile,
    name: &str,
    dir: &Path,
    env: Lookup<'_>,
) -> Result<Stack, String> {
    check_stack_name(name)?;
    if let Some(v) = &file.version
        && !v.0.starts_with('3')
    {
        return Err(format!(
            "unsupported Compose file version: {} (stacks take version 3.x, or the compose specification without a version)",
            v.0
        ));
    }
    let mut warnings = Vec::new();
    if let Some(project) = file.name.as_deref().filter(|p| *p != name) {
        warnings.push(format!(
            "the file's name: {project} is ignored: the stack is named {name} (the command line's)"
        ));
    }
    let mut used_networks: BTreeMap<String, StackNetwork> = BTreeMap::new();
    let mut services = Vec::new();
    let mut unsupported: BTreeMap<&str, ()> = BTreeMap::new();
    let mut forbidden = Vec::new();
    for (key, service) in &file.services {
        for k in present(service, UNSUPPORTED) {
            unsupported.insert(k, ());
        }
        for k in present(service, &["extends", "volume_driver", "volumes_from"]) {
            forbidden.push(format!("{k}: service {key}: not supported by stacks"));
        }
        for k in present(
            service,
            &[
                "cpu_quota",
                "cpu_shares",
                "cpuset",
                "mem_limit",
                "memswap_limit",
            ],
        ) {
            forbidden.push(format!(
                "{k}: service {key}: set CPU and memory with deploy.resources"
            ));
        }
        for k in present(service, &["container_name"]) {
            warnings.push(format!(
                "Ignoring deprecated option {k} (service {key}): Setting the container name is not supported."
            ));
        }
        for k in present(service, &["expose"]) {
            warnings.push(format!(
                "Ignoring deprecated option {k} (service {key}): Exposing ports is unnecessary - services on the same network can access each other's containers on any port."
            ));
        }
        for k in present(service, NOT_IN_MINI) {
            warnings.push(format!(
                "service {key}: {k} is not supported by mini and is ignored"
            ));
        }
        let translated = service_spec(file, name, key, service, dir, env, &mut warnings)
            .map_err(|e| format!("service {key}: {e}"))?;
        for network in &translated.1 {
            used_networks.insert(network.key.clone(), network.clone());
        }
        services.push(translated.0);
    }
    if !forbidden.is_empty() {
        return Err(format!(
            "Compose file contains unsupported option(s):\n\n{}",
            forbidden.join("\n")
        ));
    }
    if !unsupported.is_empty() {
        let keys: Vec<&str> = unsupported.keys().copied().collect();
        warnings.insert(
            0,
            format!("Ignoring unsupported options: {}", keys.join(", ")),
        );
    }
    for (key, def) in &file.volumes {
        let Some(def) = def else { continue };
        if def.driver.as_deref().is_some_and(|d| d != "local") {
            warnings.push(format!(
                "volume {key}: driver {:?} is not supported by mini (volumes are local); ignored",
                def.driver.as_deref().unwrap_or_default()
            ));
        }
        if def.driver_opts.as_ref().is_some_and(|o| !o.is_empty()) {
            warnings.push(format!(
                "volume {key}: driver_opts are not supported by mini and are ignored"
            ));
        }
        if def.labels.is_some() {
            warnings.push(format!(
                "volume {key}: labels are not supported by mini (volumes have none) and are ignored"
            ));
        }
    }
    let mut objects = [Vec::new(), Vec::new()];
    for (i, (kind, defs)) in [("secret", &file.secrets), ("config", &file.configs)]
        .into_iter()
        .enumerate()
    {
        for (key, def) in defs {
            objects[i].push(
                file_object(kind, name, key, def, dir, env)
                    .map_err(|e| format!("{kind} {key}: {e}"))?,
            );
        }
    }
    let [secrets, configs] = objects;
    Ok(Stack {
        name: name.to_string(),
        networks: used_networks.into_values().collect(),
        secrets,
        configs,
        services,
        warnings,
    })
}

/// The real name of the top-level secret or config `key` and whether it is external.
fn object_name(
    kind: &str,
    stack: &str,
    key: &str,
    def: &FileObjectDef,
) -> Result<(String, bool), String> {
    let (external, legacy) = match &def.external {
        Some(e) => e.resolve(&format!("{kind} {key}: external"))?,
        None => (false, None),
    };
    let name = def.name.clone().or(legacy).unwrap_or_else(|| {
        if external {
            key.to_string()
        } else {
            format!("{stack}_{key}")
        }
    });
    Ok((name, external))
}

/// A top-level secret or config with its value read.
fn file_object(
    kind: &str,
    stack: &str,
    key: &str,
    def: &FileObjectDef,
    dir: &Path,
    env: Lookup<'_>,
) -> Result<StackObject, String> {
    let (name, external) = object_name(kind, stack, key, def)?;
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    if let Some(l) = &def.labels {
        for (k, v) in l.pairs() {
            labels.insert(k, v.unwrap_or_default());
        }
    }
    labels.insert(NAMESPACE_LABEL.into(), stack.into());
    if def.driver.is_some() || def.driver_opts.is_some() {
        return Err("driver and driver_opts are not supported".into());
    }
    if def.template_driver.is_some() {
        return Err("template_driver is not supported".into());
    }
    let sources = [
        def.file.is_some(),
        def.environment.is_some(),
        def.content.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if external {
        if sources > 0 {
            return Err("an external one takes no file, environment or content".into());
        }
        return Ok(StackObject {
            key: key.into(),
            name,
            external,
            data: Vec::new(),
            labels,
        });
    }
    let data = match (&def.file, &def.environment, &def.content) {
        (Some(f), None, None) => {
            let path = dir.join(f);
            std::fs::read(&path).map_err(|e| format!("file {}: {e}", path.display()))?
        }
        (None, Some(var), None) => env(var)
            .ok_or_else(|| format!("environment variable {var} is not set"))?
            .into_bytes(),
        (None, None, Some(c)) if kind == "config" => c.clone().into_bytes(),
        (None, None, Some(_)) => return Err("content is for configs only".into()),
        _ if sources == 0 => {
            return Err(
                "needs file:, environment: (or content: for a config), or external: true".into(),
            );
        }
        _ => return Err("give only one of file:, environment: and content:".into()),
    };
    Ok(StackObject {
        key: key.into(),
        name,
        external,
        data,
        labels,
    })
}

/// The network `key` of the stack `stack` as a service refers to it.
fn network(file: &ComposeFile, stack: &str, key: &str) -> Result<StackNetwork, String> {
    let def = match file.networks.get(key) {
        Some(def) => def.clone().unwrap_or_default(),
        None if key == "default" => Default::default(),
        None => return Err(format!("refers to undefined network {key}")),
    };
    let what = format!("network {key}");
    let (external, legacy_name) = match &def.external {
        Some(e) => e.resolve(&format!("{what}: external"))?,
        None => (false, None),
    };
    let real = def.name.clone().or(legacy_name).unwrap_or_else(|| {
        if external {
            key.to_string()
        } else {
            format!("{stack}_{key}")
        }
    });
    let mut spec = NetworkSpec {
        name: real,
        driver: def.driver.clone().unwrap_or_else(|| "overlay".into()),
        ..Default::default()
    };
    if external {
        return Ok(StackNetwork {
            key: key.to_string(),
            external,
            spec,
        });
    }
    if let Some(opts) = &def.driver_opts
        && let Some((k, v)) = opts.iter().next()
    {
        return Err(format!(
            "{what}: {}",
            crate::commands::network::refused_opt(&format!("{k}={}", v.0))
        ));
    }
    if let Some(ipam) = &def.ipam {
        if ipam.driver.as_deref().is_some_and(|d| d != "default") {
            return Err(format!(
                "{what}: ipam driver {:?} is not supported (only default)",
                ipam.driver.as_deref().unwrap_or_default()
            ));
        }
        match ipam.config.as_slice() {
            [] => {}
            [one] => {
                spec.subnet = one.subnet.clone().unwrap_or_default();
                spec.gateway = one.gateway.clone().unwrap_or_default();
                if one.ip_range.is_some() || one.aux_addresses.is_some() {
                    return Err(format!(
                        "{what}: ipam ip_range and aux_addresses are not supported"
                    ));
                }
            }
            _ => {
                return Err(format!(
                    "{what}: only one ipam config (subnet) is supported"
                ));
            }
        }
    }
    if let Some(a) = &def.attachable {
        spec.attachable = a.bool(&format!("{what}: attachable"))?;
    }
    if let Some(i) = &def.internal {
        spec.internal = i.bool(&format!("{what}: internal"))?;
    }
    if let Some(v6) = &def.enable_ipv6
        && v6.bool(&format!("{what}: enable_ipv6"))?
    {
        return Err(format!("{what}: enable_ipv6 is not supported (IPv4 only)"));
    }
    if let Some(labels) = &def.labels {
        for (k, v) in labels.pairs() {
            spec.labels.insert(k, v.unwrap_or_default());
        }
    }
    spec.labels
        .insert(NAMESPACE_LABEL.into(), stack.to_string());
    Ok(StackNetwork {
        key: key.to_string(),
        external,
        spec,
    })
}

/// Whether `alias` may be a DNS name (at most 16 per service, 255 bytes each: what the
/// endpoint records carry).
fn valid_alias(alias: &str) -> bool {
    !alias.is_empty()
        && alias.len() <= 255
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Single-quotes `word` for [`crate::commands::service_flags::split_words`].
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The words of a `command`/`entrypoint`: a string is split as a shell would.
fn words(v: &StringOrList) -> Result<Vec<String>, String> {
    match v {
        StringOrList::String(s) => {
            crate::commands::service_flags::split_words(s).map_err(|e| format!("{e:#}"))
        }
        StringOrList::List(l) => Ok(l.iter().map(|s| s.0.clone()).collect()),
    }
}

/// `KEY=value` lines of an env file (`#` comments and blank lines skipped; a line with only
/// `KEY` takes the variable from `env`, or is skipped when unset), as Docker reads them.
fn read_env_file(path: &Path, env: Lookup<'_>) -> Result<Vec<(String, String)>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("env_file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(("", _)) => {
                return Err(format!(
                    "env_file {} line {}: no variable name before '='",
                    path.display(),
                    n + 1
                ));
            }
            Some((k, v)) => out.push((k.to_string(), v.to_string())),
            None => {
                let k = line.trim_end();
                if let Some(v) = env(k) {
                    out.push((k.to_string(), v));
                }
            }
        }
    }
    Ok(out)
}

/// `"8080:80"`, `"8080:80/udp"`, `"9090-9091:8080-8081"`, `"127.0.0.1:8080:80"`.
fn short_ports(text: &str, warn: &mut dyn FnMut(String)) -> Result<Vec<PortConfig>, String> {
    let (ports, protocol) = match text.rsplit_once('/') {
        Some((p, proto)) => (p, proto),
        None => (text, "tcp"),
    };
    let parts: Vec<&str> = ports.rsplitn(3, ':').collect();
    let (published, target) = match parts.as_slice() {
        [_] => {
            return Err(format!(
                "ports: {text:?} gives no published port: mini publishes only ports given as PUBLISHED:TARGET (it does not pick one)"
            ));
        }
        [target, published] => (*published, *target),
        [target, published, host_ip] => {
            warn(format!(
                "ports: {text:?}: the host address {host_ip} is ignored (the routing mesh listens on every address of every node)"
            ));
            (*published, *target)
        }
        _ => unreachable!("rsplitn(3) gives 1 to 3 parts"),
    };
    let range = |r: &str| -> Result<(u32, u32), String> {
        let bad = || format!("ports: {text:?}: {r:?} is not a port or a range (8080-8081)");
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        let a: u32 = a.parse().map_err(|_| bad())?;
        let b: u32 = b.parse().map_err(|_| bad())?;
        if b < a {
            return Err(bad());
        }
        Ok((a, b))
    };
    let (p0, p1) = range(published)?;
    let (t0, t1) = range(target)?;
    if p1 - p0 != t1 - t0 {
        return Err(format!(
            "ports: {text:?}: the published and target ranges differ in length"
        ));
    }
    (0..=(p1 - p0))
        .map(|i| {
            parse_publish(&format!("{}:{}/{protocol}", p0 + i, t0 + i))
                .map_err(|e| format!("ports: {e}"))
        })
        .collect()
}

/// A volume entry as a [`Mount`] (named volumes resolved against the top-level ones).
fn mount(
    file: &ComposeFile,
    stack: &str,
    entry: &VolumeEntry,
    dir: &Path,
) -> Result<Mount, String> {
    let host_path = |src: &str| -> String {
        if let Some(rest) = src.strip_prefix("~/") {
            let home = std::env::var("HOME").unwrap_or_default();
            return format!("{home}/{rest}");
        }
        if src.starts_with('/') {
            return src.to_string();
        }
        let joined = dir.join(src);
        let mut clean = std::path::PathBuf::new();
        for c in joined.components() {
            match c {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                other => clean.push(other),
            }
        }
        clean.display().to_string()
    };
    let volume_name = |name: &str| -> Result<String, String> {
        match file.volumes.get(name) {
            None => Err(format!(
                "undefined volume {name:?} (declare it under the top-level volumes:)"
            )),
            Some(def) => {
                let def = def.clone().unwrap_or_default();
                let (external, legacy) = match &def.external {
                    Some(e) => e.resolve(&format!("volume {name}: external"))?,
                    None => (false, None),
                };
                Ok(def.name.or(legacy).unwrap_or_else(|| {
                    if external {
                        name.to_string()
                    } else {
                        format!("{stack}_{name}")
                    }
                }))
            }
        }
    };
    let is_path = |s: &str| s.starts_with('/') || s.starts_with('.') || s.starts_with('~');
    match entry {
        VolumeEntry::Short(text) => {
            let parts: Vec<&str> = text.split(':').collect();
            let (source, target, mode) = match parts.as_slice() {
                [target] => ("", *target, ""),
                [source, target] => (*source, *target, ""),
                [source, target, mode] => (*source, *target, *mode),
                _ => return Err(format!("volumes: {text:?} is not [SOURCE:]TARGET[:MODE]")),
            };
            let mut read_only = false;
            for m in mode.split(',').filter(|m| !m.is_empty()) {
                match m {
                    "ro" => read_only = true,
                    "rw" | "z" | "Z" | "nocopy" | "cached" | "delegated" | "consistent" => {}
                    other => {
                        return Err(format!(
                            "volumes: {text:?}: unknown mode {other:?} (ro or rw)"
                        ));
                    }
                }
            }
            if !target.starts_with('/') {
                return Err(format!(
                    "volumes: {text:?}: the target must be an absolute path"
                ));
            }
            Ok(if source.is_empty() {
                Mount {
                    r#type: "volume".into(),
                    target: target.into(),
                    read_only,
                    ..Default::default()
                }
            } else if is_path(source) {
                Mount {
                    r#type: "bind".into(),
                    source: host_path(source),
                    target: target.into(),
                    read_only,
                    ..Default::default()
                }
            } else {
                Mount {
                    r#type: "volume".into(),
                    source: volume_name(source)?,
                    target: target.into(),
                    read_only,
                    ..Default::default()
                }
            })
        }
        VolumeEntry::Long(l) => {
            let read_only = match &l.read_only {
                Some(r) => r.bool("volumes: read_only")?,
                None => false,
            };
            let source = l.source.clone().unwrap_or_default();
            let mut m = Mount {
                r#type: l.kind.clone(),
                target: l.target.clone(),
                read_only,
                ..Default::default()
            };
            match l.kind.as_str() {
                "bind" => {
                    if source.is_empty() {
                        return Err(format!("volumes: {}: a bind needs a source", l.target));
                    }
                    m.source = host_path(&source);
                }
                "volume" => {
                    if !source.is_empty() {
                        m.source = volume_name(&source)?;
                    }
                }
                "tmpfs" => {
                    if !source.is_empty() {
                        return Err(format!("volumes: {}: a tmpfs takes no source", l.target));
                    }
                    if let Some(size) = l.tmpfs.as_ref().and_then(|t| t.size.as_ref()) {
                        m.tmpfs_size = parse_bytes(&size.0)
                            .map_err(|e| format!("volumes: {}: tmpfs size: {e}", l.target))?
                            as u64;
                    }
                }
                other => {
                    return Err(format!(
                        "volumes: {}: type {other:?} is not supported (volume, bind or tmpfs)",
                        l.target
                    ));
                }
            }
            Ok(m)
        }
    }
}

/// A file mode as YAML gives it: `0440` (octal, as YAML 1.1 reads a leading 0 — serde_yaml
/// gives the digits), `0o440`, or a decimal number (`288`).
fn file_mode(text: &str) -> Option<u32> {
    let t = text.trim();
    let mode = if let Some(o) = t.strip_prefix("0o") {
        u32::from_str_radix(o, 8).ok()?
    } else if t.len() > 1 && t.starts_with('0') {
        u32::from_str_radix(&t[1..], 8).ok()?
    } else {
        t.parse().ok()?
    };
    (mode <= 0o7777).then_some(mode)
}

/// A compose duration (`10s`, `1m30s`) in milliseconds; `what` names the key in the error.
fn duration_ms(what: &str, v: &Option<String>) -> Result<Option<u64>, String> {
    v.as_deref()
        .map(parse_duration_ms)
        .transpose()
        .map_err(|e| format!("{what}: {e}"))
}

/// `v` when it is one of `allowed`.
fn one_of(
    what: &str,
    key: &str,
    v: &Option<String>,
    allowed: &[&str],
) -> Result<Option<String>, String> {
    match v.as_deref() {
        None => Ok(None),
        Some(x) if allowed.contains(&x) => Ok(Some(x.to_string())),
        Some(x) => Err(format!(
            "{what}.{key}: {x:?} is not one of {}",
            allowed.join(", ")
        )),
    }
}

/// A failure ratio (0 to 1).
fn ratio(what: &str, v: &Option<Scalar>) -> Result<Option<f32>, String> {
    v.as_ref()
        .map(|r| parse_failure_ratio(&r.0))
        .transpose()
        .map_err(|e| format!("{what}.max_failure_ratio: {e}"))
}

/// The spec of one compose service, and the networks it uses.
fn service_spec(
    file: &ComposeFile,
    stack: &str,
    key: &str,
    s: &Service,
    dir: &Path,
    env: Lookup<'_>,
    warnings: &mut Vec<String>,
) -> Result<(StackService, Vec<StackNetwork>), String> {
    let image = s
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or("no image: `image:` is required (stacks do not build images)")?;
    let mut args = CreateArgs {
        name: Some(format!("{stack}_{key}")),
        image: image.clone(),
        endpoint_mode: "vip".into(),
        mode: "replicated".into(),
        flags: SpecFlags::default(),
        ..Default::default()
    };
    let mut warn = |w: String| warnings.push(format!("service {key}: {w}"));
    if let Some(c) = &s.command {
        args.command = words(c).map_err(|e| format!("command: {e}"))?;
    }
    if let Some(e) = &s.entrypoint {
        let list = words(e).map_err(|e| format!("entrypoint: {e}"))?;
        args.flags.entrypoint = match (e, list.as_slice()) {
            (StringOrList::List(_), []) => None,
            _ => Some(list.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")),
        };
    }
    args.env = environment(s, dir, env)?;
    for p in &s.ports {
        args.publish.extend(ports(p, &mut warn)?);
    }
    let networks = attach_networks(file, stack, key, s, &mut args, &mut warn)?;
    for v in &s.volumes {
        args.mounts.push(mount(file, stack, v, dir)?);
    }
    secrets_and_configs(file, stack, s, &mut args)?;
    if let Some(h) = &s.healthcheck {
        healthcheck(h, &mut args.flags, &mut warn)?;
    }
    container_options(s, stack, &mut args, &mut warn)?;
    let mut service_labels: BTreeMap<String, String> = BTreeMap::new();
    if let Some(d) = &s.deploy {
        deploy(d, &mut args, &mut service_labels, &mut warn)?;
    }
    service_labels.insert(NAMESPACE_LABEL.into(), stack.into());
    service_labels.insert(IMAGE_LABEL.into(), image);
    args.labels = service_labels
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();

    if args.aliases.len() > 16 {
        return Err(format!(
            "{} network aliases: at most 16 (the service's name {key} included)",
            args.aliases.len()
        ));
    }
    let spec = args.spec().map_err(|e| format!("{e:#}"))?;
    Ok((
        StackService {
            spec,
            networks: args.networks,
        },
        networks,
    ))
}

/// The service's environment as `NAME=value`, sorted by name: `env_file` entries first,
/// `environment` over them (a name without a value takes the shell's, or is dropped).
fn environment(s: &Service, dir: &Path, env: Lookup<'_>) -> Result<Vec<String>, String> {
    let mut environment: BTreeMap<String, String> = BTreeMap::new();
    if let Some(files) = &s.env_file {
        let list = match files {
            EnvFiles::One(f) => vec![f.clone()],
            EnvFiles::List(l) => l.clone(),
        };
        for f in list {
            let (path, required) = match f {
                EnvFile::Path(p) => (p, true),
                EnvFile::Long(l) => (
                    l.path,
                    match &l.required {
                        Some(r) => r.bool("env_file: required")?,
                        None => true,
                    },
                ),
            };
            let full = dir.join(&path);
            if !required && !full.exists() {
                continue;
            }
            environment.extend(read_env_file(&full, env)?);
        }
    }
    if let Some(e) = &s.environment {
        for (k, v) in e.pairs() {
            match v.or_else(|| env(&k)) {
                Some(v) => {
                    environment.insert(k, v);
                }
                None => {
                    environment.remove(&k);
                }
            }
        }
    }
    Ok(environment
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect())
}

/// One `ports:` entry: published through the routing mesh, as `--publish` takes it.
fn ports(p: &PortEntry, warn: &mut dyn FnMut(String)) -> Result<Vec<PortConfig>, String> {
    match p {
        PortEntry::Short(text) => short_ports(&text.0, warn),
        PortEntry::Long(l) => {
            if l.mode.as_deref().is_some_and(|m| m != "ingress") {
                return Err(format!(
                    "ports: mode {:?} is not supported: mini publishes through the routing mesh (mode: ingress)",
                    l.mode.as_deref().unwrap_or_default()
                ));
            }
            if l.host_ip.is_some() {
                warn(
                    "ports: host_ip is ignored (the routing mesh listens on every address)".into(),
                );
            }
            let Some(published) = &l.published else {
                return Err(format!(
                    "ports: target {} has no published port: mini publishes only ports with one (it does not pick one)",
                    l.target.0
                ));
            };
            let protocol = l.protocol.clone().unwrap_or_else(|| "tcp".into());
            short_ports(&format!("{}:{}/{protocol}", published.0, l.target.0), warn)
        }
    }
}

/// Attaches the service to its networks (`default` when it names none) in order of name, as
/// Docker does, with its short name and its aliases; returns the networks.
fn attach_networks(
    file: &ComposeFile,
    stack: &str,
    key: &str,
    s: &Service,
    args: &mut CreateArgs,
    warn: &mut dyn FnMut(String),
) -> Result<Vec<StackNetwork>, String> {
    // Docker gives a stack's service its short name as an alias on its networks.
    args.aliases.push(key.to_string());
    let mut networks = Vec::new();
    let mut entries = match &s.networks {
        Some(n) => n.entries(),
        None => vec![("default".to_string(), Default::default())],
    };
    // Docker attaches a stack's service to its networks in order of name.
    let mut named = Vec::new();
    for (net_key, settings) in entries.drain(..) {
        named.push((network(file, stack, &net_key)?.spec.name, net_key, settings));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let entries: Vec<(String, _)> = named.into_iter().map(|(_, k, s)| (k, s)).collect();
    for (net_key, settings) in &entries {
        let n = network(file, stack, net_key)?;
        for alias in &settings.aliases {
            if !valid_alias(alias) {
                return Err(format!(
                    "networks.{net_key}.aliases: {alias:?} is not a DNS name (letters, digits, '-', '_', '.')"
                ));
            }
            if !args.aliases.contains(alias) {
                args.aliases.push(alias.clone());
            }
        }
        if !settings.aliases.is_empty() && entries.len() > 1 {
            warn(format!(
                "networks.{net_key}.aliases ({}): mini gives a service's aliases on all its networks",
                settings.aliases.join(", ")
            ));
        }
        if settings.ipv4_address.is_some() || settings.ipv6_address.is_some() {
            warn(format!(
                "networks.{net_key}: a fixed address is not supported by swarm services; ignored"
            ));
        }
        args.networks.push(n.spec.name.clone());
        networks.push(n);
    }
    Ok(networks)
}

/// The service's `secrets:` and `configs:`, as `--secret` and `--config` take them.
fn secrets_and_configs(
    file: &ComposeFile,
    stack: &str,
    s: &Service,
    args: &mut CreateArgs,
) -> Result<(), String> {
    for (kind, refs, defs) in [
        ("secret", &s.secrets, &file.secrets),
        ("config", &s.configs, &file.configs),
    ] {
        for r in refs {
            let source = r.source();
            let Some(def) = defs.get(source) else {
                return Err(format!(
                    "{kind}s: undefined {kind} {source:?} (declare it under the top-level {kind}s:)"
                ));
            };
            let (real, _) = object_name(kind, stack, source, def)?;
            // Docker's defaults: the file is named after the compose key (secrets under
            // /run/secrets, configs at /<key>), owned by 0:0, mode 0444.
            let mut target = FileTarget {
                name: if kind == "secret" {
                    source.to_string()
                } else {
                    format!("/{source}")
                },
                uid: "0".into(),
                gid: "0".into(),
                mode: 0o444,
            };
            if let FileRef::Long(l) = r {
                if let Some(t) = &l.target {
                    target.name = t.clone();
                }
                for (what, v, field) in [
                    ("uid", &l.uid, &mut target.uid),
                    ("gid", &l.gid, &mut target.gid),
                ] {
                    if let Some(v) = v {
                        *field = v.u64(&format!("{kind}s: {source}: {what}"))?.to_string();
                    }
                }
                if let Some(m) = &l.mode {
                    target.mode = file_mode(&m.0).ok_or_else(|| {
                        format!("{kind}s: {source}: mode {:?} is not a file mode", m.0)
                    })?;
                }
            }
            if kind == "secret" {
                args.secrets.secret.push(secret_reference(&real, target));
            } else {
                args.secrets.config.push(config_reference(&real, target));
            }
        }
    }
    Ok(())
}

/// `healthcheck:` as the `--health-*` flags (or `--no-healthcheck`).
fn healthcheck(
    h: &Healthcheck,
    flags: &mut SpecFlags,
    warn: &mut dyn FnMut(String),
) -> Result<(), String> {
    let disabled = match &h.disable {
        Some(d) => d.bool("healthcheck: disable")?,
        None => false,
    };
    let test = match &h.test {
        None => None,
        Some(StringOrList::String(cmd)) => Some(vec!["CMD-SHELL".to_string(), cmd.clone()]),
        Some(StringOrList::List(l)) => {
            let l: Vec<String> = l.iter().map(|s| s.0.clone()).collect();
            match l.first().map(String::as_str) {
                Some("NONE") => Some(l),
                Some("CMD" | "CMD-SHELL") if l.len() > 1 => Some(l),
                _ => {
                    return Err(format!(
                        "healthcheck: test {l:?} must start with \"CMD\", \"CMD-SHELL\" or be [\"NONE\"]"
                    ));
                }
            }
        }
    };
    let others = h.interval.is_some()
        || h.timeout.is_some()
        || h.retries.is_some()
        || h.start_period.is_some();
    if disabled || test.as_ref().is_some_and(|t| t[0] == "NONE") {
        if test.as_ref().is_some_and(|t| t[0] != "NONE") || others {
            return Err("healthcheck: test and disable can't be set at the same time".into());
        }
        flags.no_healthcheck = true;
    } else {
        flags.health_test = test;
        let duration = |what: &str, v: &Option<String>| -> Result<Option<u64>, String> {
            v.as_deref()
                .map(parse_positive_duration_ns)
                .transpose()
                .map_err(|e| format!("healthcheck: {what}: {e}"))
        };
        flags.health_interval = duration("interval", &h.interval)?;
        flags.health_timeout = duration("timeout", &h.timeout)?;
        flags.health_start_period = duration("start_period", &h.start_period)?;
        if let Some(r) = &h.retries {
            flags.health_retries = Some(r.u64("healthcheck: retries")? as i64);
        }
        if h.start_interval.is_some() {
            warn("healthcheck: start_interval is not supported by mini and is ignored".into());
        }
    }
    Ok(())
}

/// What the container runs with: its labels, stop grace period and signal, user, working
/// directory, hostname, read-only root, init and logging options.
fn container_options(
    s: &Service,
    stack: &str,
    args: &mut CreateArgs,
    warn: &mut dyn FnMut(String),
) -> Result<(), String> {
    let mut container_labels: BTreeMap<String, String> = BTreeMap::new();
    if let Some(labels) = &s.labels {
        for (k, v) in labels.pairs() {
            container_labels.insert(k, v.unwrap_or_default());
        }
    }
    container_labels.insert(NAMESPACE_LABEL.into(), stack.into());
    args.container_labels = container_labels
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();

    if let Some(g) = &s.stop_grace_period {
        args.flags.stop_grace_period =
            Some(parse_duration_ms(g).map_err(|e| format!("stop_grace_period: {e}"))?);
    }
    args.flags.stop_signal = s.stop_signal.clone();
    args.flags.user = s.user.clone();
    args.flags.workdir = s.working_dir.clone();
    args.flags.hostname = s.hostname.clone();
    if let Some(r) = &s.read_only {
        args.flags.read_only = Some(r.bool("read_only")?);
    }
    if let Some(i) = &s.init {
        args.flags.init = Some(i.bool("init")?);
    }
    if let Some(l) = &s.logging {
        match l.driver.as_deref() {
            None | Some("json-file" | "local") => {}
            Some(other) => warn(format!(
                "logging: driver {other:?} is not supported by mini (task logs are kept by the node); ignored"
            )),
        }
        for (k, v) in l.options.iter().flatten() {
            match parse_log_opt(&format!("{k}={}", v.0)) {
                Ok(kv) => args.flags.log_opt.push(kv),
                Err(e) => warn(format!("logging: {e}; ignored")),
            }
        }
    }
    Ok(())
}

/// `deploy:`: the mode and replicas, the service's labels, endpoint mode, resources, restart
/// policy, update and rollback configs and placement.
fn deploy(
    d: &Deploy,
    args: &mut CreateArgs,
    service_labels: &mut BTreeMap<String, String>,
    warn: &mut dyn FnMut(String),
) -> Result<(), String> {
    match d.mode.as_deref() {
        None => {}
        Some(m @ ("replicated" | "global" | "replicated-job" | "global-job")) => {
            args.mode = m.to_string()
        }
        Some(other) => {
            return Err(format!(
                "deploy.mode {other:?} is not one of replicated, global, replicated-job, global-job"
            ));
        }
    }
    if let Some(r) = &d.replicas {
        if args.mode.starts_with("global") {
            return Err(
                "deploy.replicas can only be used with replicated or replicated-job mode".into(),
            );
        }
        args.flags.replicas = Some(r.u64("deploy.replicas")?);
    }
    if let Some(labels) = &d.labels {
        for (k, v) in labels.pairs() {
            service_labels.insert(k, v.unwrap_or_default());
        }
    }
    match d.endpoint_mode.as_deref() {
        None => {}
        Some(m @ ("vip" | "dnsrr")) => args.endpoint_mode = m.into(),
        Some(other) => {
            return Err(format!(
                "deploy.endpoint_mode {other:?} is not vip or dnsrr"
            ));
        }
    }
    if let Some(res) = &d.resources {
        resources(res, &mut args.flags, warn)?;
    }
    if let Some(rp) = &d.restart_policy {
        match rp.condition.as_deref() {
            None => {}
            Some(c @ ("none" | "on-failure" | "any")) => {
                args.flags.restart_condition = Some(c.into())
            }
            Some(other) => {
                return Err(format!(
                    "deploy.restart_policy.condition {other:?} is not none, on-failure or any"
                ));
            }
        }
        args.flags.restart_delay = duration_ms("deploy.restart_policy.delay", &rp.delay)?;
        if let Some(m) = &rp.max_attempts {
            args.flags.restart_max_attempts = Some(m.u64("deploy.restart_policy.max_attempts")?);
        }
        args.flags.restart_window = duration_ms("deploy.restart_policy.window", &rp.window)?;
    }
    if let Some(u) = &d.update_config {
        let r = rollout(
            "deploy.update_config",
            u,
            &["pause", "continue", "rollback"],
        )?;
        let f = &mut args.flags;
        f.update_parallelism = r.parallelism;
        f.update_delay = r.delay;
        f.update_failure_action = r.failure_action;
        f.update_monitor = r.monitor;
        f.update_max_failure_ratio = r.max_failure_ratio;
        f.update_order = r.order;
    }
    if let Some(u) = &d.rollback_config {
        let r = rollout("deploy.rollback_config", u, &["pause", "continue"])?;
        let f = &mut args.flags;
        f.rollback_parallelism = r.parallelism;
        f.rollback_delay = r.delay;
        f.rollback_failure_action = r.failure_action;
        f.rollback_monitor = r.monitor;
        f.rollback_max_failure_ratio = r.max_failure_ratio;
        f.rollback_order = r.order;
    }
    if let Some(p) = &d.placement {
        args.constraints = p.constraints.clone();
        for pref in &p.preferences {
            for (strategy, descriptor) in pref {
                args.placement_prefs
                    .push(format!("{strategy}={descriptor}"));
            }
        }
        if let Some(m) = &p.max_replicas_per_node {
            args.flags.replicas_max_per_node =
                Some(m.u64("deploy.placement.max_replicas_per_node")?);
        }
    }
    Ok(())
}

/// `deploy.resources` as the `--limit-*` and `--reserve-*` flags.
fn resources(
    res: &DeployResources,
    flags: &mut SpecFlags,
    warn: &mut dyn FnMut(String),
) -> Result<(), String> {
    if let Some(l) = &res.limits {
        if let Some(c) = &l.cpus {
            flags.limit_cpu =
                Some(parse_cpus(&c.0).map_err(|e| format!("deploy.resources.limits.cpus: {e}"))?);
        }
        if let Some(m) = &l.memory {
            flags.limit_memory = Some(
                parse_bytes(&m.0).map_err(|e| format!("deploy.resources.limits.memory: {e}"))?,
            );
        }
        if let Some(p) = &l.pids {
            flags.limit_pids = Some(p.u64("deploy.resources.limits.pids")? as i64);
        }
        if l.devices.is_some() || l.generic_resources.is_some() {
            warn(
                "deploy.resources.limits: devices and generic_resources are not supported; ignored"
                    .into(),
            );
        }
    }
    if let Some(r) = &res.reservations {
        if let Some(c) = &r.cpus {
            flags.reserve_cpu = Some(
                parse_cpus(&c.0).map_err(|e| format!("deploy.resources.reservations.cpus: {e}"))?,
            );
        }
        if let Some(m) = &r.memory {
            flags.reserve_memory = Some(
                parse_bytes(&m.0)
                    .map_err(|e| format!("deploy.resources.reservations.memory: {e}"))?,
            );
        }
        if r.pids.is_some() {
            warn("deploy.resources.reservations.pids is not a reservation; ignored".into());
        }
        if r.devices.is_some() || r.generic_resources.is_some() {
            warn("deploy.resources.reservations: devices and generic_resources are not supported; ignored".into());
        }
    }
    Ok(())
}

/// An update or rollback config (`what` names it in errors), as its flags take it.
struct Rollout {
    parallelism: Option<u64>,
    delay: Option<u64>,
    failure_action: Option<String>,
    monitor: Option<u64>,
    max_failure_ratio: Option<f32>,
    order: Option<String>,
}

fn rollout(what: &str, u: &UpdateConfig, failure_actions: &[&str]) -> Result<Rollout, String> {
    Ok(Rollout {
        parallelism: u
            .parallelism
            .as_ref()
            .map(|p| p.u64(&format!("{what}.parallelism")))
            .transpose()?,
        delay: duration_ms(&format!("{what}.delay"), &u.delay)?,
        failure_action: one_of(what, "failure_action", &u.failure_action, failure_actions)?,
        monitor: duration_ms(&format!("{what}.monitor"), &u.monitor)?,
        max_failure_ratio: ratio(what, &u.max_failure_ratio)?,
        order: one_of(what, "order", &u.order, &["stop-first", "start-first"])?,
    })
}
