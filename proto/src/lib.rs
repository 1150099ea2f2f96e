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

/// Generated messages and services of package `mini.v1`.
#[cfg(test)]
mod tests {
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
