//! The CLI's verb groups.

pub mod credentials;
pub mod daemon;
pub mod docs;
pub mod events;
pub mod exec;
pub mod image;
pub mod info;
pub mod inspect;
pub mod member;
pub mod network;
pub mod node;
pub mod private;
pub mod secret;
pub mod service;
pub mod service_flags;
pub mod service_update;
pub mod stack;
pub mod swarm;
pub mod task_init;
pub mod version;

/// The message shown for a failed command: a gRPC status shows only the
/// daemon's message, everything else its whole context chain. Only a status made on this
/// side of the connection (it carries the transport error as its source) means the daemon
/// could not be reached; one the daemon sent (e.g. a manager it could not reach) is its own
/// message.
pub fn describe(err: &anyhow::Error) -> String {
    if let Some(status) = err.downcast_ref::<tonic::Status>() {
        return match status.code() {
            tonic::Code::Unavailable if std::error::Error::source(status).is_some() => {
                format!("cannot reach the mini daemon: {}", status.message())
            }
            _ => status.message().to_string(),
        };
    }
    format!("{err:#}")
}
