//! Protocol buffers of `mini`.
//!
//! # Layout
//! - `proto/objects.proto`: the objects kept in the Raft store (cluster, nodes,
//!   networks, services, tasks), the store's log entry (`StoreBatch`) and its
//!   snapshot (`StoreSnapshot`).
//! - `proto/control.proto`: the control API the CLI speaks to a daemon.
//!
//! Everything is generated into the single module [`v1`]; beside it, small
//! helpers every crate needs: [`state_name`], [`task_name`], [`node_endpoint`], and [`tls`]
//! (the cluster CA, mutual TLS and authorization of the node listener).

mod endpoint;
mod task_name;
mod task_state;
pub mod tls;

/// The control API's version, as `mini version` prints it (Docker's "API version").
pub const API_VERSION: &str = "1.0";

/// The node's gateway bridge (Docker's `docker_gwbridge`): the bridge in the host namespace
/// that gives task sandboxes egress, listed by `network ls` as a `local` network.
pub const GATEWAY_BRIDGE: &str = "mini_gwbridge";

/// The gateway bridge's subnet.
pub const GATEWAY_BRIDGE_SUBNET: &str = "172.18.0.0/16";

/// Generated messages and services of package `mini.v1`.
#[cfg(test)]
mod tests {
    #[test]
    fn debug_forms_never_show_tokens_keys_or_passwords() {
        use super::v1::*;
        const SECRET: &str = "SWMTKN-1-topsecretvalue";
        let bytes = SECRET.as_bytes().to_vec();
        let cluster = Cluster {
            id: "c1".into(),
            worker_token_secret: SECRET.into(),
            manager_token_secret: SECRET.into(),
            ca_key: bytes.clone(),
            unlock_key: bytes.clone(),
            gossip_keys: Some(GossipKeyRing {
                keys: vec![GossipKey {
                    id: 7,
                    key: bytes.clone(),
                    created_at_ms: 1,
                }],
            }),
            ca_rotation: Some(RootCaRotation {
                ca_key: bytes.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let forms = [
            format!("{cluster:?}"),
            format!(
                "{:?}",
                SwarmInitResponse {
                    node_id: "n1".into(),
                    cluster: Some(cluster.clone()),
                    unlock_key: SECRET.into(),
                }
            ),
            format!(
                "{:?}",
                SwarmJoinRequest {
                    token: SECRET.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                JoinRequest {
                    token: SECRET.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                JoinTokenResponse {
                    token: SECRET.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                SwarmUnlockRequest {
                    unlock_key: SECRET.into(),
                }
            ),
            format!(
                "{:?}",
                SwarmUnlockKeyResponse {
                    unlock_key: SECRET.into(),
                }
            ),
            format!(
                "{:?}",
                ImageRegistryAuth {
                    username: "me".into(),
                    password: SECRET.into(),
                }
            ),
            format!(
                "{:?}",
                SecretSpec {
                    name: "s".into(),
                    data: bytes.clone(),
                    ..Default::default()
                }
            ),
        ];
        // Bytes print as numbers: look for the first few too.
        let as_numbers = format!("{:?}", &bytes[..4])
            .trim_matches(['[', ']'])
            .to_string();
        for form in &forms {
            assert!(!form.contains("topsecret"), "{form}");
            assert!(!form.contains(&as_numbers), "{form}");
        }
        assert!(forms[0].contains("id: \"c1\"") && forms[0].contains("<redacted>"));
        assert!(
            forms[0].contains("id: 7"),
            "gossip key ids still show: {}",
            forms[0]
        );
    }

    #[test]
    fn object_ids_are_the_allocators_alphabet_only() {
        assert!(super::is_object_id("zazcrztrp8noilfyignita3tf"));
        assert!(super::is_object_id("t1"));
        for bad in [
            "",
            "..",
            "../../../h1/run/tasks/x",
            "a/b",
            "A1",
            "a.b",
            "a b",
            "a\0b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(!super::is_object_id(bad), "{bad:?}");
        }
    }
}

#[allow(
    missing_docs,
    clippy::large_enum_variant,
    clippy::doc_lazy_continuation
)]
pub mod v1 {
    tonic::include_proto!("mini.v1");

    impl std::fmt::Debug for ImageRegistryAuth {
        /// The user name only: a password never reaches a log.
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ImageRegistryAuth")
                .field("username", &self.username)
                .field("password", &"<redacted>")
                .finish()
        }
    }

    /// How a secret field shows in a `Debug` form: whether it is set, never its value.
    struct Redacted(bool);

    impl std::fmt::Debug for Redacted {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(if self.0 { "<redacted>" } else { "<empty>" })
        }
    }

    fn redacted(value: &[u8]) -> Redacted {
        Redacted(!value.is_empty())
    }

    impl std::fmt::Debug for Cluster {
        /// Settings only: token secrets, the CA key, gossip keys and the unlock key are redacted.
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Cluster")
                .field("id", &self.id)
                .field("meta", &self.meta)
                .field("default_addr_pool", &self.default_addr_pool)
                .field("default_subnet_size", &self.default_subnet_size)
                .field("data_path_port", &self.data_path_port)
                .field("ca_digest", &self.ca_digest)
                .field(
                    "worker_token_secret",
                    &redacted(self.worker_token_secret.as_bytes()),
                )
                .field(
                    "manager_token_secret",
                    &redacted(self.manager_token_secret.as_bytes()),
                )
                .field("next_vni", &self.next_vni)
                .field("snapshot_interval", &self.snapshot_interval)
                .field("next_raft_id", &self.next_raft_id)
                .field("gossip_keys", &self.gossip_keys)
                .field("ca_key", &redacted(&self.ca_key))
                .field("node_cert_expiry_ms", &self.node_cert_expiry_ms)
                .field("removed_nodes", &self.removed_nodes)
                .field("ca_rotation", &self.ca_rotation)
                .field("autolock", &self.autolock)
                .field("unlock_key", &redacted(&self.unlock_key))
                .finish_non_exhaustive()
        }
    }

    impl std::fmt::Debug for RootCaRotation {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("RootCaRotation")
                .field("ca_cert_bytes", &self.ca_cert.len())
                .field("ca_key", &redacted(&self.ca_key))
                .finish_non_exhaustive()
        }
    }

    impl std::fmt::Debug for GossipKey {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("GossipKey")
                .field("id", &self.id)
                .field("key", &redacted(&self.key))
                .field("created_at_ms", &self.created_at_ms)
                .finish()
        }
    }

    impl std::fmt::Debug for SwarmUnlockKeyResponse {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SwarmUnlockKeyResponse")
                .field("unlock_key", &redacted(self.unlock_key.as_bytes()))
                .finish()
        }
    }

    impl std::fmt::Debug for SwarmUnlockRequest {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SwarmUnlockRequest")
                .field("unlock_key", &redacted(self.unlock_key.as_bytes()))
                .finish()
        }
    }

    impl std::fmt::Debug for JoinTokenResponse {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("JoinTokenResponse")
                .field("token", &redacted(self.token.as_bytes()))
                .field("manager_addr", &self.manager_addr)
                .finish_non_exhaustive()
        }
    }

    impl std::fmt::Debug for SwarmJoinRequest {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SwarmJoinRequest")
                .field("token", &redacted(self.token.as_bytes()))
                .field("remote_addr", &self.remote_addr)
                .field("advertise_addr", &self.advertise_addr)
                .field("listen_addr", &self.listen_addr)
                .finish_non_exhaustive()
        }
    }

    impl std::fmt::Debug for SwarmInitResponse {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SwarmInitResponse")
                .field("node_id", &self.node_id)
                .field("cluster", &self.cluster)
                .field("unlock_key", &redacted(self.unlock_key.as_bytes()))
                .finish_non_exhaustive()
        }
    }

    impl std::fmt::Debug for JoinRequest {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("JoinRequest")
                .field("token", &redacted(self.token.as_bytes()))
                .field("node_id", &self.node_id)
                .field("hostname", &self.hostname)
                .field("advertise_addr", &self.advertise_addr)
                .field("gossip_port", &self.gossip_port)
                .finish_non_exhaustive()
        }
    }

    impl std::fmt::Debug for SecretSpec {
        /// Name, labels and the value's length: a secret's value never reaches a log.
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SecretSpec")
                .field("name", &self.name)
                .field("labels", &self.labels)
                .field(
                    "data",
                    &format_args!("<{} bytes redacted>", self.data.len()),
                )
                .finish()
        }
    }
}

/// Largest message any `mini` gRPC server decodes (16 MiB). Anything larger is refused from its
/// 5-byte length prefix, before it is read: a hostile 200 MiB message costs nothing. Raft messages
/// that could be larger (snapshots) travel in chunks (`RaftTransport.SendChunked`).
pub const MAX_MESSAGE: usize = 16 << 20;

/// Whether `id` can be an object id: what the managers' allocator makes (lowercase letters and
/// digits, 1 to 64 of them). An id that passes is safe as a file name, so a node checks every id
/// it turns into a path (task directories, logs, sandboxes) with this first.
pub fn is_object_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

pub use endpoint::node_endpoint;
pub use task_name::task_name;
pub use task_state::state_name;
