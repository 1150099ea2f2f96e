//! How one node dials another's listener (dispatcher, node agent, Raft).

use std::time::Duration;

use tonic::transport::Endpoint;

/// A gRPC endpoint for a node's listener at `host:port`, HTTP/2 with
/// `TCP_NODELAY` and the given connect timeout. Callers add what their use
/// needs (keep-alives) and connect it through [`crate::tls::Trust::connect`] or
/// [`crate::tls::Trust::connect_lazy`] (mutual TLS with the node's identity): the listener
/// speaks nothing else.
pub fn node_endpoint(
    addr: &str,
    connect_timeout: Duration,
) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true))
}
