//! How one node dials another's listener (dispatcher, node agent, Raft).

use std::time::Duration;

use tonic::transport::Endpoint;

/// A gRPC endpoint for a node's listener at `host:port`, plain HTTP/2 with
/// `TCP_NODELAY` and the given connect timeout. Callers add what their use
/// needs (keep-alives, lazy connection) and turn errors into their own.
pub fn node_endpoint(
    addr: &str,
    connect_timeout: Duration,
) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true))
}
