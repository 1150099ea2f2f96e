//! Errors of the embedded DNS server.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong starting the DNS server or reading the node's resolver configuration.
/// Serving never fails: bad packets are dropped or answered FORMERR, failed upstreams SERVFAIL.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The UDP or TCP socket could not be opened in the sandbox's namespace.
    #[error("cannot listen for DNS on {addr} (udp and tcp) in network namespace {netns}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The namespace file, or `current` for the caller's namespace.
        netns: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The node's `resolv.conf` could not be read.
    #[error("cannot read the node's resolver configuration {path}: {source}")]
    ResolvConf {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}
