//! The embedded DNS server every task sandbox gets at `127.0.0.11:53` (DESIGN.md, data-plane
//! table, "DNS"), served by the node's daemon.
//!
//! Names come from the gossip plane's [`EndpointTable`](crate::gossip::EndpointTable): build a
//! [`NameIndex`] from a table snapshot whenever it changes and give it to every server with
//! [`DnsServer::set_names`] (one index serves all the sandboxes of the node). A task resolves
//! only names of the networks it is on:
//!
//! | name | answer |
//! |---|---|
//! | `<service>` | the service's VIP on the network; endpoint mode `dnsrr` (no VIP): every task IP |
//! | `tasks.<service>` | every live task IP of the service |
//! | `<task name>` (`service.slot.taskid`) | the task's IP |
//! | an alias | the IPs of the tasks carrying it |
//!
//! Names are case-insensitive; a trailing dot, the cluster domain and the task's search domains
//! are handled ([`Zone`]). A records only, TTL [`TTL`] (0: see there why); AAAA or any other type
//! for a known name is an empty NOERROR so clients fall back to the A answer. A cluster name that
//! matches nothing is NXDOMAIN. Every other name is forwarded, as received, to the node's
//! resolvers ([`HostResolvConf`]) from the daemon's namespace (as Docker does) — UDP over UDP,
//! TCP over TCP — each given [`DEFAULT_FORWARD_TIMEOUT`]; SERVFAIL when none answers.
//!
//! Input is hostile: packets shorter than a header or that are responses are dropped; packets
//! that do not parse get FORMERR; sizes, in-flight forwards and TCP connections are bounded;
//! UDP answers that do not fit are truncated (TC) so the client retries over TCP.
//!
//! ```no_run
//! # async fn example(table: mini_worker::gossip::EndpointTable) -> Result<(), mini_worker::dns::DnsError> {
//! use std::sync::Arc;
//! use mini_worker::dns::{DnsConfig, DnsServer, HostResolvConf, NameIndex, Zone};
//!
//! let host = HostResolvConf::read("/etc/resolv.conf".as_ref())?;
//! let config = DnsConfig::new("/run/mini/netns/0123456789ab", vec!["net-id".into()])
//!     .with_upstream(host.nameservers)
//!     .with_zone(Zone::new().with_search(&host.search));
//! let server = DnsServer::start(config, Arc::new(NameIndex::from_table(&table))).await?;
//! // ... the table changed:
//! server.set_names(Arc::new(NameIndex::from_table(&table)));
//! server.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `names`: [`Names`] (the lookup trait) and [`NameIndex`] (built from the table).
//! - `zone`: [`Zone`], the name rules (suffixes, what is a cluster name).
//! - `message`: parse a query, decide, build the reply (no I/O).
//! - `forward`: asking the node's resolvers over UDP or TCP, with a deadline.
//! - `server`: [`DnsServer`] and [`DnsConfig`]: sockets in the sandbox, serving tasks.
//! - `resolv`: [`HostResolvConf`] (the node's file) and [`task_resolv_conf`] (a task's).
//! - `error`: [`DnsError`].

mod error;
mod forward;
mod message;
mod names;
mod resolv;
mod server;
mod zone;

pub use error::DnsError;
pub use message::TTL;
pub use names::{NameIndex, Names};
pub use resolv::{HostResolvConf, task_resolv_conf};
pub use server::{DEFAULT_FORWARD_TIMEOUT, DEFAULT_LISTEN, DnsConfig, DnsServer, DnsStats};
pub use zone::Zone;
