//! `mini info`: what the daemon is and, as a manager, its cluster and log.

use std::time::Duration;

use anyhow::Result;
use mini_proto::v1::InfoRequest;
use serde_json::json;

use crate::client::connect;
use crate::output::write_stdout;

/// Prints the daemon's node id, cluster settings and Raft log position.
pub async fn run(host: &str, format: Option<String>) -> Result<()> {
    let mut client = connect(host).await?;
    let info = client.info(InfoRequest {}).await?.into_inner();
    let cluster = info.cluster.clone().unwrap_or_default();
    let cert_expiry = match cluster.node_cert_expiry_ms {
        0 => mini_proto::tls::pki::DEFAULT_CERT_EXPIRY,
        ms => Duration::from_millis(ms),
    };
    let value = json!({
        "node_id": info.node_id,
        // A daemon in a swarm has a node id, worker or manager (as `docker info` says).
        "swarm": if info.locked {
            "locked"
        } else if info.node_id.is_empty() {
            "inactive"
        } else {
            "active"
        },
        "autolock_managers": cluster.autolock,
        "nodes": info.nodes,
        "managers": info.managers,
        "node_addr": info.node_addr,
        "manager_addrs": info.manager_addrs,
        "is_manager": info.is_manager,
        "cluster": {
            "id": cluster.id,
            "default_addr_pool": cluster.default_addr_pool,
            "default_subnet_size": cluster.default_subnet_size,
            "data_path_port": cluster.data_path_port,
            "snapshot_interval": cluster.snapshot_interval,
            // Ids and ages only: the keys themselves never leave the managers but over sessions.
            "gossip_keys": cluster.gossip_keys.as_ref().map(|r| r.keys.iter().map(|k| json!({
                "id": k.id,
                "created_at_ms": k.created_at_ms,
            })).collect::<Vec<_>>()).unwrap_or_default(),
        },
        "ca_config": {
            "node_cert_expiry_ms": cert_expiry.as_millis() as u64,
            "expiry_duration": human_duration(cert_expiry),
            "root_rotation_in_progress": cluster.ca_rotation.is_some(),
        },
        "raft": {
            "leader_node_id": info.leader_node_id,
            "applied_index": info.raft_applied_index,
            "snapshot_index": info.raft_snapshot_index,
            "first_log_index": info.raft_first_log_index,
            "voters": info.raft_voters,
            "learners": info.raft_learners,
            "unreachable_managers": info.unreachable_managers,
            // "leader": the leader's view; "local": no leader answered, this manager's own guess.
            "reachability_from": if info.reachability_local { "local" } else { "leader" },
        },
    });
    match format.as_deref().map(str::trim) {
        Some("json") => write_stdout(&format!("{}\n", serde_json::to_string(&value)?)),
        Some(template) if !template.is_empty() && template != "table" => {
            // A Go template over the JSON (`{{.raft.leader_node_id}}`).
            write_stdout(&crate::format::render_inspect(
                std::slice::from_ref(&value),
                Some(template),
            )?)
        }
        _ => write_stdout(&swarm_section(&info, &cluster, cert_expiry)),
    }
    Ok(())
}

/// The `Swarm:` section as `docker info` prints it (with mini's Raft position and gossip key
/// besides).
fn swarm_section(
    info: &mini_proto::v1::InfoResponse,
    cluster: &mini_proto::v1::Cluster,
    cert_expiry: Duration,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let state = if info.locked {
        "locked"
    } else if info.node_id.is_empty() {
        "inactive"
    } else {
        "active"
    };
    let _ = writeln!(out, "Swarm: {state}");
    if info.node_id.is_empty() {
        return out;
    }
    let _ = writeln!(out, " NodeID: {}", info.node_id);
    if info.locked {
        let _ = writeln!(out, " Error: this node is locked: run `mini swarm unlock`");
        return out;
    }
    let _ = writeln!(out, " Is Manager: {}", info.is_manager);
    if info.is_manager {
        let _ = writeln!(out, " ClusterID: {}", cluster.id);
        let _ = writeln!(out, " Managers: {}", info.managers);
        let _ = writeln!(out, " Nodes: {}", info.nodes);
        let _ = writeln!(out, " Default Address Pool: {}", cluster.default_addr_pool);
        let _ = writeln!(out, " SubnetSize: {}", cluster.default_subnet_size);
        let _ = writeln!(out, " Data Path Port: {}", cluster.data_path_port);
        let _ = writeln!(out, " Raft:");
        let _ = writeln!(out, "  Snapshot Interval: {}", cluster.snapshot_interval);
        let _ = writeln!(out, "  Leader: {}", info.leader_node_id);
        let _ = writeln!(out, "  Applied Index: {}", info.raft_applied_index);
        let _ = writeln!(out, "  Snapshot Index: {}", info.raft_snapshot_index);
        let _ = writeln!(out, "  First Log Index: {}", info.raft_first_log_index);
        let _ = writeln!(out, " Dispatcher:");
        let _ = writeln!(
            out,
            "  Heartbeat Period: {}",
            human_duration(Duration::from_millis(info.heartbeat_period_ms))
        );
        let _ = writeln!(out, " CA Configuration:");
        let _ = writeln!(out, "  Expiry Duration: {}", human_duration(cert_expiry));
        if let Some(key) = cluster.gossip_keys.as_ref().and_then(|r| r.keys.first()) {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let age = Duration::from_secs(((now_ms - key.created_at_ms).max(0) / 1000) as u64);
            let _ = writeln!(
                out,
                " Gossip Encryption: key {} (rotated {} ago)",
                key.id,
                human_duration(age)
            );
        }
        let _ = writeln!(out, " Autolock Managers: {}", cluster.autolock);
        let _ = writeln!(
            out,
            " Root Rotation In Progress: {}",
            cluster.ca_rotation.is_some()
        );
    }
    let _ = writeln!(out, " Node Address: {}", info.node_addr);
    let _ = writeln!(out, " Manager Addresses:");
    for addr in &info.manager_addrs {
        let _ = writeln!(out, "  {addr}");
    }
    out
}

/// A duration as Docker's `docker info` writes it (go-units' `HumanDuration`): `3 months`,
/// `4 weeks`, `2 days`, `5 hours`.
pub fn human_duration(d: Duration) -> String {
    crate::output::human_duration(d.as_millis().min(i64::MAX as u128) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_section_reads_as_docker_info() {
        let inactive = mini_proto::v1::InfoResponse::default();
        let cluster = mini_proto::v1::Cluster::default();
        let day = Duration::from_secs(86_400);
        assert_eq!(swarm_section(&inactive, &cluster, day), "Swarm: inactive\n");
        let worker = mini_proto::v1::InfoResponse {
            node_id: "n2".into(),
            node_addr: "10.0.0.2".into(),
            manager_addrs: vec!["10.0.0.1:2377".into()],
            ..Default::default()
        };
        assert_eq!(
            swarm_section(&worker, &cluster, day),
            "Swarm: active\n NodeID: n2\n Is Manager: false\n Node Address: 10.0.0.2\n Manager Addresses:\n  10.0.0.1:2377\n"
        );
        let manager = mini_proto::v1::InfoResponse {
            is_manager: true,
            nodes: 3,
            managers: 1,
            heartbeat_period_ms: 5000,
            ..worker
        };
        let text = swarm_section(&manager, &cluster, day * 90);
        for line in [
            " Managers: 1\n",
            " Nodes: 3\n",
            " Dispatcher:\n  Heartbeat Period: 5 seconds\n",
            " CA Configuration:\n  Expiry Duration: 3 months\n",
            " Autolock Managers: false\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
    }

    #[test]
    fn cert_expiry_reads_as_docker_info_writes_it() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(human_duration(h(2160)), "3 months");
        assert_eq!(human_duration(h(720)), "4 weeks");
        assert_eq!(human_duration(h(1)), "About an hour");
        assert_eq!(human_duration(h(24)), "24 hours");
        assert_eq!(human_duration(h(72)), "3 days");
        assert_eq!(human_duration(Duration::from_secs(40)), "40 seconds");
    }
}
