//! Trust between nodes: the cluster CA, node certificates, mutual TLS on the node listener
//! (TCP 2377) and who may call what there.
//!
//! # Layout
//! - [`pki`]: the root CA, certificate signing requests, node certificates, CA digests.
//! - [`Trust`] (`trust`): a node's certificate files and the rustls configurations of its
//!   listener and clients (TLS 1.3 only).
//! - [`authz`]: the one table of who may call which method, and the tower layer enforcing it.
//! - `join`: a joiner pins the manager's CA against its token before sending anything secret.

pub mod authz;
mod join;
pub mod pki;
mod rate;
mod trust;

pub use authz::{AuthzLayer, Caller};
pub use join::{CA_MISMATCH, PinError, error_chain, pinned_manager_channel};
pub use trust::{
    Connector, Credentials, NODE_CERT_FILE, NODE_KEY_FILE, Peer, ROOT_CA_FILE, TlsError, Trust,
    client_config, server_config,
};
