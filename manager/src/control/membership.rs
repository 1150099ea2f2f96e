//! The node's own record of its cluster membership (STATE/membership.pb),
//! and the hooks through which the daemon starts and stops what a member
//! runs (its listener and agent).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use mini_proto::v1::Membership;
use prost::Message;

use super::ControlError;

/// What the daemon runs while the node is in a cluster. Implemented by the
/// binary, which wires the worker and the network driver.
pub trait MemberHooks: Send + Sync + 'static {
    /// Binds the node's listener (dispatcher + node agent) on `addr`, serving
    /// `api`; returns the bound address (the port may have been 0).
    fn listen(
        &self,
        addr: SocketAddr,
        api: super::ControlApi,
    ) -> BoxFuture<'_, Result<SocketAddr, String>>;
    /// Starts the node's agent for `membership`.
    fn start_agent(
        &self,
        node_id: String,
        membership: Membership,
    ) -> BoxFuture<'_, Result<(), String>>;
    /// Stops the agent (stopping its tasks) and the listener.
    fn stop(&self) -> BoxFuture<'_, ()>;
    /// Stops the agent and the listener of a daemon that exits, leaving its
    /// tasks running for the next daemon to adopt (live-restore). By default,
    /// [`MemberHooks::stop`].
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.stop()
    }
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("membership.pb")
}

/// The saved membership, if the node is in a cluster.
pub fn load(state_dir: &Path) -> Result<Option<Membership>, ControlError> {
    match std::fs::read(path(state_dir)) {
        Ok(bytes) => Membership::decode(&bytes[..]).map(Some).map_err(|e| {
            ControlError::Internal(format!("corrupt {}: {e}", path(state_dir).display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ControlError::Internal(format!(
            "cannot read {}: {e}",
            path(state_dir).display()
        ))),
    }
}

/// Saves the membership (written to a temporary file, fsynced, renamed).
pub fn save(state_dir: &Path, membership: &Membership) -> Result<(), ControlError> {
    let target = path(state_dir);
    let tmp = state_dir.join("membership.pb.tmp");
    let write = || -> std::io::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut &file, &membership.encode_to_vec())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &target)
    };
    write().map_err(|e| ControlError::Internal(format!("cannot write {}: {e}", target.display())))
}

/// Forgets the membership (`swarm leave`).
pub fn remove(state_dir: &Path) -> Result<(), ControlError> {
    match std::fs::remove_file(path(state_dir)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ControlError::Internal(format!(
            "cannot remove {}: {e}",
            path(state_dir).display()
        ))),
    }
}

/// Parses `host:port` (default port 2377), or explains what is expected.
pub fn parse_listen_addr(flag: &str, value: &str) -> Result<SocketAddr, ControlError> {
    let value = if value.is_empty() {
        "0.0.0.0:2377"
    } else {
        value
    };
    let with_port = if value.contains(':') {
        value.to_string()
    } else {
        format!("{value}:2377")
    };
    with_port.parse().map_err(|_| {
        ControlError::Invalid(format!(
            "invalid {flag} {value:?}: expected IP:PORT, e.g. 0.0.0.0:2377"
        ))
    })
}
