//! The row model of each object kind as Docker's `ls`/`ps` define it: field names and
//! headers, the default table, how each field is written, which `--filter` keys apply and
//! how they match, and the order of rows. [`crate::format`] prints them.

use std::cmp::Ordering;

use mini_proto::v1::{
    Network, Node, NodeAvailability, NodeRole, NodeState, PortConfig, Service, ServiceSpec,
    ServiceSummary, Task, TaskState, service_spec::Mode,
};
use serde_json::{Value, json};

use crate::format::{Filters, Listing, Verbatim, ellipsis, trunc_id};
use crate::output::ago;
use crate::views::Names;

/// Docker's `sortorder.NaturalLess`: digit runs compare as numbers (`node2` < `node10`).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        let (Some(ca), Some(cb)) = (a.chars().next(), b.chars().next()) else {
            return a.len().cmp(&b.len());
        };
        if ca.is_ascii_digit() && cb.is_ascii_digit() {
            let da = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
            let db = b.find(|c: char| !c.is_ascii_digit()).unwrap_or(b.len());
            let (na, nb) = (
                a[..da].trim_start_matches('0'),
                b[..db].trim_start_matches('0'),
            );
            let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if ord != Ordering::Equal {
                return ord;
            }
            (a, b) = (&a[da..], &b[db..]);
        } else {
            if ca != cb {
                return ca.cmp(&cb);
            }
            (a, b) = (&a[ca.len_utf8()..], &b[cb.len_utf8()..]);
        }
    }
}

// ---------------------------------------------------------------- services

/// `service ls` (and `stack services`) `--filter` keys.
pub const SERVICE_FILTERS: &[&str] = &["id", "label", "mode", "name"];

const SERVICE_HEADERS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Name", "NAME"),
    ("Mode", "MODE"),
    ("Replicas", "REPLICAS"),
    ("Image", "IMAGE"),
    ("Ports", "PORTS"),
];

/// A service's mode as the `mode` filter names it.
fn mode_key(s: &Service) -> &'static str {
    match s.spec.as_ref().and_then(|s| s.mode.as_ref()) {
        Some(Mode::Global(_)) => "global",
        Some(Mode::ReplicatedJob(_)) => "replicated-job",
        Some(Mode::GlobalJob(_)) => "global-job",
        _ => "replicated",
    }
}

/// Whether `s` passes `service ls`'s filters (id and name prefixes, labels, mode).
pub fn service_matches(f: &Filters, s: &Service) -> bool {
    let default = ServiceSpec::default();
    let spec = s.spec.as_ref().unwrap_or(&default);
    f.prefix("id", &s.id)
        && f.prefix("name", &spec.name)
        && f.labels("label", |k| spec.labels.get(k).map(String::as_str))
        && f.any("mode", |m| m == mode_key(s))
}

/// Parses `service ls` filters, checking the `mode` values.
pub fn service_filters(args: &[String]) -> Result<Filters, Verbatim> {
    let f = Filters::parse(args, SERVICE_FILTERS)?;
    f.check_values(
        "mode",
        &["replicated", "global", "replicated-job", "global-job"],
    )?;
    Ok(f)
}

/// Published ports as Docker's PORTS column writes them: `*:8080->80/tcp`, runs of
/// consecutive ports joined (`*:8080-8081->80-81/tcp`).
pub fn ports_column(ports: &[PortConfig]) -> String {
    if ports.is_empty() {
        return String::new();
    }
    let mut ports: Vec<&PortConfig> = ports.iter().collect();
    ports.sort_by(|a, b| {
        (&a.protocol, a.published_port, a.target_port).cmp(&(
            &b.protocol,
            b.published_port,
            b.target_port,
        ))
    });
    let mut groups: Vec<(u32, u32, u32, u32, String)> = Vec::new();
    for p in ports {
        if let Some(last) = groups.last_mut()
            && last.4 == p.protocol
            && last.1 + 1 == p.published_port
            && last.3 + 1 == p.target_port
        {
            last.1 = p.published_port;
            last.3 = p.target_port;
            continue;
        }
        groups.push((
            p.published_port,
            p.published_port,
            p.target_port,
            p.target_port,
            p.protocol.clone(),
        ));
    }
    let range = |a: u32, b: u32| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    };
    groups
        .iter()
        .map(|(p0, p1, t0, t1, proto)| {
            format!("*:{}->{}/{proto}", range(*p0, *p1), range(*t0, *t1))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The REPLICAS column: `running/desired`, with `(max N per node)` when the service has a
/// limit, and for jobs the progress `(completed/total completed)`.
fn replicas_column(spec: &ServiceSpec, s: &ServiceSummary) -> String {
    match &spec.mode {
        Some(Mode::ReplicatedJob(job)) => {
            let (_, total) = mini_manager::orchestrator::job_counts(job);
            format!(
                "{}/{} ({}/{} completed)",
                s.running, s.desired, s.completed, total
            )
        }
        Some(Mode::GlobalJob(_)) => format!(
            "{}/{} ({}/{} completed)",
            s.running,
            s.desired,
            s.completed,
            s.desired + s.completed
        ),
        _ if spec.max_replicas_per_node > 0 => format!(
            "{}/{} (max {} per node)",
            s.running, s.desired, spec.max_replicas_per_node
        ),
        _ => format!("{}/{}", s.running, s.desired),
    }
}

/// `service ls`'s rows for `services` (filtered and sorted by name here).
pub fn service_listing(services: &[ServiceSummary], f: &Filters, no_trunc: bool) -> Listing {
    let mut kept: Vec<(&Service, &ServiceSummary)> = services
        .iter()
        .filter_map(|s| Some((s.service.as_ref()?, s)))
        .filter(|(svc, _)| service_matches(f, svc))
        .collect();
    kept.sort_by(|a, b| {
        natural_cmp(
            crate::views::service_name(a.0),
            crate::views::service_name(b.0),
        )
    });
    let rows = kept
        .into_iter()
        .map(|(svc, summary)| {
            let default = ServiceSpec::default();
            let spec = svc.spec.as_ref().unwrap_or(&default);
            let mode = match spec.mode {
                Some(Mode::Global(_)) => "global",
                Some(Mode::ReplicatedJob(_)) => "replicated job",
                Some(Mode::GlobalJob(_)) => "global job",
                _ => "replicated",
            };
            let ports = spec.endpoint.as_ref().map_or(&[][..], |e| &e.ports[..]);
            let mut row = serde_json::Map::new();
            row.insert("ID".into(), trunc_id(&svc.id, no_trunc).into());
            row.insert("Name".into(), spec.name.clone().into());
            row.insert("Mode".into(), mode.into());
            row.insert("Replicas".into(), replicas_column(spec, summary).into());
            row.insert(
                "Image".into(),
                spec.container
                    .as_ref()
                    .map_or("", |c| c.image.as_str())
                    .into(),
            );
            row.insert("Ports".into(), ports_column(ports).into());
            Value::Object(row)
        })
        .collect();
    Listing {
        headers: SERVICE_HEADERS,
        default_table: "{{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}",
        id_field: "ID",
        rows,
    }
}

// ---------------------------------------------------------------- tasks

/// `service ps`, `node ps` and `stack ps` `--filter` keys.
pub const TASK_FILTERS: &[&str] = &["desired-state", "id", "name", "node"];

const TASK_HEADERS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Name", "NAME"),
    ("Image", "IMAGE"),
    ("Node", "NODE"),
    ("DesiredState", "DESIRED STATE"),
    ("CurrentState", "CURRENT STATE"),
    ("Error", "ERROR"),
    ("Ports", "PORTS"),
];

/// Parses task filters, checking `desired-state` values (a task state, as Docker takes them:
/// `running`, `shutdown`, `accepted`, ...).
pub fn task_filters(args: &[String]) -> Result<Filters, Verbatim> {
    let f = Filters::parse(args, TASK_FILTERS)?;
    for v in f.get("desired-state") {
        let name = format!("TASK_STATE_{}", v.to_ascii_uppercase());
        if TaskState::from_str_name(&name).is_none() {
            return Err(Verbatim(format!(
                "Error response from daemon: Invalid filter: 'desired-state'='{v}'"
            )));
        }
    }
    Ok(f)
}

/// Whether task `t` passes the filters: `id` and `name` prefixes, `desired-state`, and
/// `node` (an id, id prefix or hostname; `self` is `local_node`).
pub fn task_matches(f: &Filters, t: &Task, names: &Names, local_node: &str) -> bool {
    let desired = mini_proto::state_name(t.desired_state()).to_ascii_lowercase();
    let hostname = names.nodes.get(&t.node_id).map_or("", String::as_str);
    f.prefix("id", &t.id)
        && f.prefix("name", &mini_proto::task_name(t))
        && f.any("desired-state", |s| s.eq_ignore_ascii_case(&desired))
        && f.any("node", |n| {
            let n = if n == "self" { local_node } else { n };
            !t.node_id.is_empty() && (t.node_id.starts_with(n) || hostname == n)
        })
}

/// Orders tasks as Docker's `service ps` does: by service and slot (node for global
/// services), newest first within a slot (the current task, then its history).
pub fn order_tasks(tasks: &mut [Task]) {
    let created = |t: &Task| t.meta.as_ref().map_or(0, |m| m.created_at_ms);
    tasks.sort_by(|a, b| {
        natural_cmp(&a.service_name, &b.service_name)
            .then(a.slot.cmp(&b.slot))
            // Global tasks have no slot: their node names them. A replicated slot's tasks may
            // have run on several nodes and stay together, newest first.
            .then_with(|| {
                if a.slot == 0 && b.slot == 0 {
                    a.node_id.cmp(&b.node_id)
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .then(created(b).cmp(&created(a)))
            .then_with(|| b.id.cmp(&a.id))
    });
}

/// The rows of `service ps` for `tasks` in [`order_tasks`]'s order: a history row (same
/// name as the row above) is named ` \_ web.1`.
pub fn task_listing(tasks: &[Task], names: &Names, now_ms: i64, no_trunc: bool) -> Listing {
    let mut rows = Vec::new();
    let mut previous: Option<String> = None;
    for t in tasks {
        let status = t.status.clone().unwrap_or_default();
        let name = mini_proto::task_name(t);
        let shown = if previous.as_deref() == Some(name.as_str()) {
            format!(" \\_ {name}")
        } else {
            name.clone()
        };
        previous = Some(name);
        let mut error = status.err.clone();
        if error.is_empty() && status.state() == TaskState::Pending {
            // Why it is not placed yet ("no suitable node ..."), as Docker shows it.
            error = status.message.clone();
        }
        if !no_trunc {
            error = ellipsis(&error, 30);
        }
        if !error.is_empty() {
            error = format!("\"{error}\"");
        }
        let state = mini_proto::state_name(status.state());
        let node = if t.node_id.is_empty() {
            String::new()
        } else {
            names
                .nodes
                .get(&t.node_id)
                .cloned()
                .unwrap_or_else(|| t.node_id.clone())
        };
        rows.push(json!({
            "ID": trunc_id(&t.id, no_trunc),
            "Name": shown,
            "Image": t.container.as_ref().map_or(String::new(), |c| c.image.clone()),
            "Node": node,
            "DesiredState": mini_proto::state_name(t.desired_state()),
            // Docker lower-cases the age: "Running 3 minutes ago".
            "CurrentState": format!("{state} {}", ago(status.timestamp_ms, now_ms).to_lowercase()),
            "Error": error,
            "Ports": "",
        }));
    }
    Listing {
        headers: TASK_HEADERS,
        default_table: "{{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}",
        id_field: "ID",
        rows,
    }
}

// ---------------------------------------------------------------- nodes

/// `node ls` `--filter` keys.
pub const NODE_FILTERS: &[&str] = &["id", "label", "node.label", "membership", "name", "role"];

const NODE_HEADERS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Self", ""),
    ("Hostname", "HOSTNAME"),
    ("Status", "STATUS"),
    ("Availability", "AVAILABILITY"),
    ("ManagerStatus", "MANAGER STATUS"),
    ("EngineVersion", "ENGINE VERSION"),
];

/// Parses `node ls` filters, checking `role` and `membership` values.
pub fn node_filters(args: &[String]) -> Result<Filters, Verbatim> {
    let f = Filters::parse(args, NODE_FILTERS)?;
    f.check_values("role", &["manager", "worker"])?;
    f.check_values("membership", &["accepted", "pending"])?;
    Ok(f)
}

/// Whether node `n` passes the filters: `id`/`name` prefixes, `label` (engine labels),
/// `node.label` (the node's own labels), `role`, `membership` (every node in the store is
/// accepted).
pub fn node_matches(f: &Filters, n: &Node) -> bool {
    let spec = n.spec.clone().unwrap_or_default();
    let engine = n
        .description
        .as_ref()
        .map(|d| d.engine_labels.clone())
        .unwrap_or_default();
    let role = if n.role() == NodeRole::Manager {
        "manager"
    } else {
        "worker"
    };
    f.prefix("id", &n.id)
        && f.prefix("name", &n.hostname)
        && f.labels("label", |k| engine.get(k).map(String::as_str))
        && f.labels("node.label", |k| spec.labels.get(k).map(String::as_str))
        && f.any("role", |r| r == role)
        && f.any("membership", |m| m == "accepted")
}

/// `node ls`'s rows: `self` is the local node's id (marked `*`), `leader` the Raft
/// leader's, `unreachable` managers the leader lost.
pub fn node_listing(
    nodes: &[Node],
    f: &Filters,
    local: &str,
    leader: &str,
    unreachable: &[String],
) -> Listing {
    let mut kept: Vec<&Node> = nodes.iter().filter(|n| node_matches(f, n)).collect();
    kept.sort_by(|a, b| natural_cmp(&a.hostname, &b.hostname));
    let rows = kept
        .into_iter()
        .map(|n| {
            let spec = n.spec.clone().unwrap_or_default();
            let status = n.status.clone().unwrap_or_default();
            let manager_status = match n.role() {
                NodeRole::Manager if n.id == leader => "Leader",
                NodeRole::Manager if unreachable.contains(&n.id) => "Unreachable",
                NodeRole::Manager => "Reachable",
                _ => "",
            };
            json!({
                "ID": n.id,
                "Self": n.id == local,
                "Hostname": n.hostname,
                "Status": match status.state() {
                    NodeState::Ready => "Ready",
                    NodeState::Down => "Down",
                    NodeState::Disconnected => "Disconnected",
                    NodeState::Unknown => "Unknown",
                },
                "Availability": match spec.availability() {
                    NodeAvailability::Active => "Active",
                    NodeAvailability::Pause => "Pause",
                    NodeAvailability::Drain => "Drain",
                },
                "ManagerStatus": manager_status,
                "EngineVersion": n.description.as_ref().map_or(String::new(), |d| d.engine_version.clone()),
            })
        })
        .collect();
    Listing {
        headers: NODE_HEADERS,
        default_table: "{{.ID}} {{if .Self}}*{{else}} {{ end }}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}",
        id_field: "ID",
        rows,
    }
}

// ---------------------------------------------------------------- networks

/// `network ls` `--filter` keys.
pub const NETWORK_FILTERS: &[&str] = &["driver", "id", "label", "name", "scope", "type"];

const NETWORK_HEADERS: &[(&str, &str)] = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("IPv6", "IPV6"),
    ("Internal", "INTERNAL"),
    ("Labels", "LABELS"),
    ("CreatedAt", "CREATED AT"),
];

/// Parses `network ls` filters, checking `scope` and `type` values.
pub fn network_filters(args: &[String]) -> Result<Filters, Verbatim> {
    let f = Filters::parse(args, NETWORK_FILTERS)?;
    f.check_values("scope", &["swarm", "global", "local"])?;
    f.check_values("type", &["custom", "builtin"])?;
    Ok(f)
}

/// Whether network `n` passes the filters. `name` and `id` match any part (Docker matches
/// them as regular expressions; plain text matches where it occurs), `driver` exactly,
/// `type=builtin` is the ingress network, `type=custom` the others.
pub fn network_matches(f: &Filters, n: &Network) -> bool {
    let spec = n.spec.clone().unwrap_or_default();
    let builtin = spec.ingress;
    f.any("id", |v| n.id.contains(v))
        && f.any("name", |v| spec.name.contains(v))
        && f.any("driver", |v| v == spec.driver)
        && f.any("scope", |v| v == network_scope(n))
        && f.any("type", |v| (v == "builtin") == builtin)
        && f.labels("label", |k| spec.labels.get(k).map(String::as_str))
}

/// A network's SCOPE: `local` for the node's gateway bridge, `swarm` for the rest.
pub fn network_scope(n: &Network) -> &str {
    if n.scope.is_empty() {
        "swarm"
    } else {
        &n.scope
    }
}

/// Labels as Docker's LABELS column writes them: `k=v,k2=v2` (sorted).
fn labels_column(labels: &std::collections::HashMap<String, String>) -> String {
    let mut kv: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    kv.sort();
    kv.join(",")
}

/// `network ls`'s rows.
pub fn network_listing(networks: &[Network], f: &Filters, no_trunc: bool) -> Listing {
    let mut kept: Vec<&Network> = networks.iter().filter(|n| network_matches(f, n)).collect();
    kept.sort_by(|a, b| natural_cmp(crate::views::network_name(a), crate::views::network_name(b)));
    let rows = kept
        .into_iter()
        .map(|n| {
            let spec = n.spec.clone().unwrap_or_default();
            json!({
                "ID": trunc_id(&n.id, no_trunc),
                "Name": spec.name,
                "Driver": spec.driver,
                "Scope": network_scope(n),
                "IPv6": "false",
                "Internal": spec.internal.to_string(),
                "Labels": labels_column(&spec.labels),
                "CreatedAt": go_time(n.meta.as_ref().map_or(0, |m| m.created_at_ms)),
            })
        })
        .collect();
    Listing {
        headers: NETWORK_HEADERS,
        default_table: "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
        id_field: "ID",
        rows,
    }
}

/// Milliseconds since the epoch as Go's `time.Time` prints (`2026-12-04 10:00:00.123 +0000 UTC`).
fn go_time(ms: i64) -> String {
    let rfc = crate::commands::secret::rfc3339(ms);
    // 2026-12-04T10:00:00.123Z
    format!(
        "{} +0000 UTC",
        rfc.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

// ---------------------------------------------------------------- secrets and configs

/// `secret ls` and `config ls` `--filter` keys.
pub const OBJECT_FILTERS: &[&str] = &["id", "label", "name"];

const SECRET_HEADERS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("CreatedAt", "CREATED"),
    ("UpdatedAt", "UPDATED"),
    ("Labels", "LABELS"),
];

/// One secret or config as `ls` shows it.
pub struct ObjectRow<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its labels.
    pub labels: &'a std::collections::BTreeMap<String, String>,
    /// Creation and last update, ms since the epoch.
    pub created_ms: i64,
    /// Last update, ms since the epoch.
    pub updated_ms: i64,
}

/// `secret ls` (`secret`: with a DRIVER column) or `config ls` rows.
pub fn object_listing(objects: &[ObjectRow], f: &Filters, secret: bool, now_ms: i64) -> Listing {
    let mut kept: Vec<&ObjectRow> = objects
        .iter()
        .filter(|o| {
            f.prefix("id", o.id)
                && f.prefix("name", o.name)
                && f.labels("label", |k| o.labels.get(k).map(String::as_str))
        })
        .collect();
    kept.sort_by(|a, b| natural_cmp(a.name, b.name));
    let rows = kept
        .into_iter()
        .map(|o| {
            let labels: Vec<String> = o.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut row = json!({
                "ID": o.id,
                "Name": o.name,
                "CreatedAt": ago(o.created_ms, now_ms),
                "UpdatedAt": ago(o.updated_ms, now_ms),
                "Labels": labels.join(","),
            });
            if secret {
                row["Driver"] = Value::String(String::new());
            }
            row
        })
        .collect();
    Listing {
        headers: SECRET_HEADERS,
        default_table: if secret {
            "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.CreatedAt}}\t{{.UpdatedAt}}"
        } else {
            "{{.ID}}\t{{.Name}}\t{{.CreatedAt}}\t{{.UpdatedAt}}"
        },
        id_field: "ID",
        rows,
    }
}

// ---------------------------------------------------------------- stacks

/// `stack ls` rows: each stack's name and number of services (`-q`: names).
pub fn stack_listing(stacks: &std::collections::BTreeMap<String, usize>) -> Listing {
    let mut names: Vec<(&String, &usize)> = stacks.iter().collect();
    names.sort_by(|a, b| natural_cmp(a.0, b.0));
    Listing {
        headers: &[("Name", "NAME"), ("Services", "SERVICES")],
        default_table: "{{.Name}}\t{{.Services}}",
        id_field: "Name",
        rows: names
            .into_iter()
            .map(|(name, n)| json!({"Name": name, "Services": n.to_string()}))
            .collect(),
    }
}

#[cfg(test)]
#[path = "rows_tests.rs"]
mod tests;
