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
    let cluster = info.cluster.unwrap_or_default();
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
        _ => {
            println!("Node ID: {}", value["node_id"].as_str().unwrap_or_default());
            println!("Swarm: {}", value["swarm"].as_str().unwrap_or_default());
            if info.is_manager {
                println!(
                    " Cluster ID: {}",
                    value["cluster"]["id"].as_str().unwrap_or_default()
                );
                println!(" Is Manager: true");
                println!(
                    " Default Address Pool: {} (subnets /{})",
                    cluster.default_addr_pool, cluster.default_subnet_size
                );
                println!(" Data Path Port: {}", cluster.data_path_port);
                if let Some(key) = cluster.gossip_keys.as_ref().and_then(|r| r.keys.first()) {
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    let age = crate::output::ago(key.created_at_ms, now_ms).to_lowercase();
                    println!(" Gossip Encryption: key {} (rotated {age})", key.id);
                }
                println!(" CA Configuration:");
                println!("  Expiry Duration: {}", human_duration(cert_expiry));
                println!(
                    "  Root Rotation In Progress: {}",
                    cluster.ca_rotation.is_some()
                );
                println!(" Autolock Managers: {}", cluster.autolock);
                println!(" Raft:");
                println!("  Leader: {}", info.leader_node_id);
                println!("  Applied Index: {}", info.raft_applied_index);
                println!("  Snapshot Index: {}", info.raft_snapshot_index);
                println!("  First Log Index: {}", info.raft_first_log_index);
                println!("  Snapshot Interval: {}", cluster.snapshot_interval);
            } else if !info.node_id.is_empty() {
                println!(" Is Manager: false");
            }
        }
    }
    Ok(())
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
