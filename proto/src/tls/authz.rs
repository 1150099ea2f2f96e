//! Who may call what on a node's listener (TCP 2377): one table, checked in one place, the
//! [`AuthzLayer`] in front of every service of the listener.
//!
//! The caller's identity is its TLS client certificate: signed by the cluster CA, of this
//! cluster, not expired, its node not removed. The layer hands handlers a [`Caller`] (request
//! extension) so they take the node id from the certificate, never from the request body.
//! Refusals are `UNAUTHENTICATED` (no usable certificate) or `PERMISSION_DENIED` (a certificate
//! whose role may not make this call); they name no cluster id and no secret, and are logged with
//! the peer's address at WARN, rate-limited.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};

use super::pki;
use super::trust::Trust;
use crate::v1::NodeRole;

/// What a method asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, even without a certificate: fetching the CA certificate and joining (the token
    /// is checked by the handler).
    Open,
    /// Any node of the cluster, acting only as itself.
    Node,
    /// Managers only.
    Manager,
}

/// Every method served on the node listener and who may call it. A method missing here is
/// refused.
pub const TABLE: &[(&str, Access)] = &[
    ("/mini.v1.NodeCA/GetRootCACertificate", Access::Open),
    ("/mini.v1.NodeCA/IssueNodeCertificate", Access::Node),
    ("/mini.v1.Dispatcher/Join", Access::Open),
    ("/mini.v1.Dispatcher/Session", Access::Node),
    ("/mini.v1.Dispatcher/Heartbeat", Access::Node),
    ("/mini.v1.Dispatcher/UpdateTaskStatus", Access::Node),
    ("/mini.v1.Dispatcher/Leave", Access::Node),
    ("/mini.v1.RaftTransport/Send", Access::Manager),
    ("/mini.v1.RaftTransport/Propose", Access::Manager),
    ("/mini.v1.RaftTransport/ReadIndex", Access::Manager),
    ("/mini.v1.RaftTransport/SendChunked", Access::Manager),
    ("/mini.v1.RaftTransport/SendStream", Access::Manager),
    ("/mini.v1.NodeAgent/TaskLogs", Access::Manager),
    ("/mini.v1.NodeAgent/Exec", Access::Manager),
    ("/mini.v1.NodeAgent/NetworkPeers", Access::Manager),
    ("/mini.v1.NodeAgent/ImageLoad", Access::Manager),
];

/// Who a method path asks for, if it is served at all.
pub fn access(path: &str) -> Option<Access> {
    TABLE.iter().find(|(p, _)| *p == path).map(|(_, a)| *a)
}

/// The verified identity of the caller, put into the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The node id (the certificate's CN).
    pub node_id: String,
    /// The role the certificate grants.
    pub role: NodeRole,
}

impl Caller {
    /// The caller of `request`, as the listener's authorization verified it; an
    /// `UNAUTHENTICATED` status when there is none (a method the table leaves open).
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated(NO_CERT))
    }

    /// Refuses a request body that names another node than the caller (an empty name means
    /// the caller).
    pub fn acting_as(&self, named: &str) -> Result<(), Status> {
        if named.is_empty() || named == self.node_id {
            Ok(())
        } else {
            Err(Status::permission_denied(
                "a node may only act as itself: the node id comes from its certificate",
            ))
        }
    }
}

/// What the checks compare against: the cluster's CA, this cluster's id, the removed nodes.
#[derive(Debug, Clone)]
pub struct Authority {
    /// Root CA certificates (DER): one, or two during a root CA rotation.
    pub roots: Vec<Vec<u8>>,
    /// The cluster id node certificates must carry (O).
    pub cluster_id: String,
    /// Ids of removed nodes.
    pub removed: Arc<HashSet<String>>,
}

/// Why a call was refused: a gRPC code and a reason that names no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `UNAUTHENTICATED` or `PERMISSION_DENIED`.
    pub code: Code,
    /// What the caller is told and the log says.
    pub reason: &'static str,
}

const NO_CERT: &str = "a client certificate signed by the cluster CA is required";

impl Refusal {
    fn unauthenticated(reason: &'static str) -> Self {
        Refusal {
            code: Code::Unauthenticated,
            reason,
        }
    }

    fn denied(reason: &'static str) -> Self {
        Refusal {
            code: Code::PermissionDenied,
            reason,
        }
    }

    /// The status the caller gets.
    pub fn status(&self) -> Status {
        Status::new(self.code, self.reason)
    }
}

/// Decides a call to `path` by a peer that presented `leaf` (DER) or no certificate, at `now`.
/// `Ok(Some(caller))` for a verified caller, `Ok(None)` for an open method called without a
/// usable certificate.
pub fn authorize(
    path: &str,
    leaf: Option<&[u8]>,
    authority: Option<&Authority>,
    now: SystemTime,
) -> Result<Option<Caller>, Refusal> {
    authorize_chain(path, leaf, &[], authority, now, None)
}

/// [`authorize`] for a peer that presented `leaf` followed by `intermediates` (the
/// cross-signed root of a root CA rotation), taking the signature checks of chains already
/// verified from `verified` when given (and adding the new ones).
pub fn authorize_chain(
    path: &str,
    leaf: Option<&[u8]>,
    intermediates: &[&[u8]],
    authority: Option<&Authority>,
    now: SystemTime,
    verified: Option<&VerifiedChains>,
) -> Result<Option<Caller>, Refusal> {
    let Some(access) = access(path) else {
        return Err(Refusal::denied("unknown method"));
    };
    let caller = verify(leaf, intermediates, authority, now, verified);
    match (access, caller) {
        (Access::Open, Ok(caller)) => Ok(Some(caller)),
        (Access::Open, Err(_)) => Ok(None),
        (Access::Manager, Ok(caller)) if caller.role != NodeRole::Manager => {
            Err(Refusal::denied("this call is for managers only"))
        }
        (_, Ok(caller)) => Ok(Some(caller)),
        (_, Err(refusal)) => Err(refusal),
    }
}

fn verify(
    leaf: Option<&[u8]>,
    intermediates: &[&[u8]],
    authority: Option<&Authority>,
    now: SystemTime,
    verified: Option<&VerifiedChains>,
) -> Result<Caller, Refusal> {
    let leaf = leaf.ok_or(Refusal::unauthenticated(NO_CERT))?;
    let authority = authority.ok_or(Refusal::unauthenticated(
        "this node is in no swarm and accepts no certificate",
    ))?;
    let chains = match verified {
        Some(v) => v.chains_to(leaf, intermediates, &authority.roots),
        None => pki::chains_to(leaf, intermediates, &authority.roots),
    };
    if !chains {
        return Err(Refusal::unauthenticated(
            "the certificate is not signed by this cluster's CA",
        ));
    }
    let identity = pki::identity_of(leaf)
        .map_err(|_| Refusal::unauthenticated("the certificate is not a node certificate"))?;
    if identity.cluster_id != authority.cluster_id {
        return Err(Refusal::unauthenticated(
            "the certificate belongs to another cluster",
        ));
    }
    if identity.expired_at(now) {
        return Err(Refusal::unauthenticated("the certificate has expired"));
    }
    if now + pki::CLOCK_SKEW < identity.not_before {
        return Err(Refusal::unauthenticated("the certificate is not valid yet"));
    }
    if authority.removed.contains(&identity.node_id) {
        return Err(Refusal::unauthenticated(
            "the certificate is revoked: its node was removed from the swarm",
        ));
    }
    Ok(Caller {
        node_id: identity.node_id,
        role: identity.role,
    })
}

/// Certificate chains whose signatures were found to chain to the roots, so a caller's chain is
/// verified once rather than on every call (an ECDSA verification per request: a follower's
/// forwarded write, a worker's status update, a heartbeat). Whether a chain's signatures chain
/// to a set of roots depends on the bytes alone, so the verdict is remembered under a SHA-256 of
/// the leaf, the intermediates and the roots: new roots (a rotation) are a new key. Only chains
/// that verified are remembered; everything else about the certificate (cluster, expiry,
/// removal, role) is checked on every call. Bounded to [`VerifiedChains::MAX`] chains (then
/// forgotten all at once). Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct VerifiedChains(Arc<std::sync::Mutex<HashSet<[u8; 32]>>>);

impl VerifiedChains {
    /// Most chains remembered.
    pub const MAX: usize = 4096;

    /// [`pki::chains_to`], remembered when true.
    pub fn chains_to(&self, leaf: &[u8], intermediates: &[&[u8]], roots: &[Vec<u8>]) -> bool {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for part in std::iter::once(leaf)
            .chain(intermediates.iter().copied())
            .chain(std::iter::once(&b"roots"[..]))
            .chain(roots.iter().map(Vec::as_slice))
        {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        let key: [u8; 32] = hash.finalize().into();
        if self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return true;
        }
        if !pki::chains_to(leaf, intermediates, roots) {
            return false;
        }
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= Self::MAX {
            set.clear();
        }
        set.insert(key);
        true
    }

    /// How many chains are remembered.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The tower layer that applies [`authorize`] to every request of the listener.
#[derive(Clone)]
pub struct AuthzLayer {
    trust: Trust,
    verified: VerifiedChains,
}

impl AuthzLayer {
    /// Authorization against this node's `trust` (its CA and deny list, as they change).
    pub fn new(trust: Trust) -> Self {
        AuthzLayer {
            trust,
            verified: VerifiedChains::default(),
        }
    }
}

impl<S> tower::Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authz {
            inner,
            trust: self.trust.clone(),
            verified: self.verified.clone(),
        }
    }
}

/// See [`AuthzLayer`].
#[derive(Clone)]
pub struct Authz<S> {
    inner: S,
    trust: Trust,
    verified: VerifiedChains,
}

type BoxFuture<T, E> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Authz<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let info = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .cloned();
        let peer = info
            .as_ref()
            .and_then(|i| i.get_ref().remote_addr())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let certs = info.as_ref().and_then(|i| i.peer_certs());
        let leaf = certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
        let intermediates: Vec<&[u8]> = certs
            .as_ref()
            .map(|c| c.iter().skip(1).map(|c| c.as_ref()).collect())
            .unwrap_or_default();
        let authority = self.trust.authority();
        let path = request.uri().path().to_string();
        match authorize_chain(
            &path,
            leaf,
            &intermediates,
            authority.as_ref(),
            SystemTime::now(),
            Some(&self.verified),
        ) {
            Ok(caller) => {
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(request))
            }
            Err(refusal) => {
                self.trust
                    .refusal_log()
                    .warn(peer, &format!("{path}: {}", refusal.reason));
                let response = refusal.status().into_http::<R>();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::tls::pki::{DEFAULT_CERT_EXPIRY, RootCa, new_node_key, new_root_ca, sign_node_csr};

    /// Every `rpc` of the services served on the node listener, read from the .proto files.
    fn served_methods() -> Vec<String> {
        let mut methods = Vec::new();
        for text in [
            include_str!("../../proto/dispatcher.proto"),
            include_str!("../../proto/raft.proto"),
        ] {
            let mut service = None;
            for line in text.lines() {
                let line = line.trim();
                if let Some(rest) = line.strip_prefix("service ") {
                    service = rest.split_whitespace().next().map(str::to_string);
                } else if let (Some(rest), Some(s)) = (line.strip_prefix("rpc "), &service) {
                    let name = rest.split('(').next().unwrap_or_default().trim();
                    methods.push(format!("/mini.v1.{s}/{name}"));
                } else if line == "}" {
                    service = None;
                }
            }
        }
        methods
    }

    fn cert(ca: &RootCa, node: &str, role: NodeRole, cluster: &str) -> Vec<u8> {
        let (_key, csr) = new_node_key(node).unwrap();
        sign_node_csr(ca, &csr, node, role, cluster, DEFAULT_CERT_EXPIRY).unwrap()
    }

    #[test]
    fn the_table_covers_every_method_of_the_listener() {
        let methods = served_methods();
        assert!(methods.len() >= 14, "parsed {methods:?}");
        for m in &methods {
            assert!(access(m).is_some(), "{m} has no entry in the table");
        }
        for (path, _) in TABLE {
            assert!(
                methods.contains(&path.to_string()),
                "{path} is served by nothing"
            );
        }
    }

    #[test]
    fn every_method_against_every_kind_of_caller() {
        let ca = new_root_ca().unwrap();
        let other_ca = new_root_ca().unwrap();
        let authority = Authority {
            roots: vec![ca.cert_der.clone()],
            cluster_id: "c1".into(),
            removed: Arc::new(["gone".to_string()].into_iter().collect()),
        };
        let worker = cert(&ca, "w1", NodeRole::Worker, "c1");
        let manager = cert(&ca, "m1", NodeRole::Manager, "c1");
        let revoked = cert(&ca, "gone", NodeRole::Manager, "c1");
        let foreign = cert(&other_ca, "m1", NodeRole::Manager, "c1");
        let now = SystemTime::now();
        // As the listener decides: chains verified once are remembered for every later call.
        let verified = VerifiedChains::default();
        for method in served_methods() {
            let rule = access(&method).unwrap();
            let decide = |leaf: Option<&[u8]>| {
                let remembered =
                    authorize_chain(&method, leaf, &[], Some(&authority), now, Some(&verified));
                assert_eq!(
                    remembered,
                    authorize(&method, leaf, Some(&authority), now),
                    "{method}: remembering changed the decision"
                );
                remembered
            };
            // No certificate.
            match rule {
                Access::Open => assert_eq!(decide(None), Ok(None), "{method}"),
                _ => assert_eq!(
                    decide(None).unwrap_err().code,
                    Code::Unauthenticated,
                    "{method}"
                ),
            }
            // A worker.
            match rule {
                Access::Manager => {
                    assert_eq!(
                        decide(Some(&worker)).unwrap_err().code,
                        Code::PermissionDenied,
                        "{method}"
                    )
                }
                _ => assert_eq!(
                    decide(Some(&worker)).unwrap().map(|c| c.node_id),
                    Some("w1".to_string()),
                    "{method}"
                ),
            }
            // A manager: everything, as itself.
            assert_eq!(
                decide(Some(&manager)).unwrap(),
                Some(Caller {
                    node_id: "m1".into(),
                    role: NodeRole::Manager
                }),
                "{method}"
            );
            // A removed node, and a certificate of another cluster's CA: as if none.
            for bad in [&revoked, &foreign] {
                match rule {
                    Access::Open => assert_eq!(decide(Some(bad)), Ok(None), "{method}"),
                    _ => assert_eq!(
                        decide(Some(bad)).unwrap_err().code,
                        Code::Unauthenticated,
                        "{method}"
                    ),
                }
            }
        }
        // The control API is served on the daemon's local socket only: none of its methods,
        // old or new (autolock, secrets, configs, events), is reachable on the node listener, even
        // with a manager's certificate.
        for method in [
            "/mini.v1.Control/ListNodes",
            "/mini.v1.Control/SwarmUnlock",
            "/mini.v1.Control/SwarmUnlockKey",
            "/mini.v1.Control/CreateSecret",
            "/mini.v1.Control/GetSecret",
            "/mini.v1.Control/CreateConfig",
            "/mini.v1.Control/Events",
        ] {
            assert_eq!(
                authorize(method, Some(&manager), Some(&authority), now)
                    .unwrap_err()
                    .code,
                Code::PermissionDenied,
                "{method}"
            );
        }
        // The worker's, the manager's and the removed node's chains verified (the removal is
        // checked on every call); the foreign one is not remembered.
        assert_eq!(verified.len(), 3);
        assert!(!verified.chains_to(&foreign, &[], &authority.roots));
        assert_eq!(verified.len(), 3);
    }

    #[test]
    fn during_a_root_rotation_both_roots_are_accepted_and_after_it_only_the_new_one() {
        use crate::tls::pki::new_rotation_root;
        let old = new_root_ca().unwrap();
        let (new, cross) = new_rotation_root(&old).unwrap();
        let with_roots = |roots: Vec<Vec<u8>>| Authority {
            roots,
            cluster_id: "c1".into(),
            removed: Arc::default(),
        };
        let rotated = cert(&new, "w1", NodeRole::Worker, "c1");
        let not_rotated = cert(&old, "w2", NodeRole::Worker, "c1");
        let path = "/mini.v1.Dispatcher/Heartbeat";
        let now = SystemTime::now();
        // One listener's remembered chains across the whole rotation: a chain verified under
        // both roots must not pass once the old root is gone.
        let verified = VerifiedChains::default();
        let call = |leaf: &[u8], chain: &[&[u8]], a: &Authority| {
            let remembered =
                authorize_chain(path, Some(leaf), chain, Some(a), now, Some(&verified));
            assert_eq!(
                remembered,
                authorize_chain(path, Some(leaf), chain, Some(a), now, None),
                "remembering changed the decision"
            );
            remembered.map(|c| c.map(|c| c.node_id))
        };
        // A node that still trusts only the old root accepts the new root's certificates
        // presented with the cross-signed root.
        let old_only = with_roots(vec![old.cert_der.clone()]);
        assert_eq!(call(&rotated, &[&cross], &old_only), Ok(Some("w1".into())));
        assert!(call(&rotated, &[], &old_only).is_err());
        // During the rotation, both.
        let both = with_roots(vec![old.cert_der.clone(), new.cert_der.clone()]);
        assert!(call(&rotated, &[&cross], &both).is_ok());
        assert!(call(&not_rotated, &[], &both).is_ok());
        // After it, certificates of the old root are refused, even with the cross-signed root.
        let new_only = with_roots(vec![new.cert_der.clone()]);
        assert!(call(&rotated, &[&cross], &new_only).is_ok());
        let refusal = call(&not_rotated, &[&cross], &new_only).unwrap_err();
        assert_eq!(refusal.code, Code::Unauthenticated);
    }

    #[test]
    fn refusals_name_no_cluster_and_expired_certificates_are_refused() {
        let ca = new_root_ca().unwrap();
        let authority = Authority {
            roots: vec![ca.cert_der.clone()],
            cluster_id: "secretclusterid".into(),
            removed: Arc::default(),
        };
        let other_cluster = cert(&ca, "m1", NodeRole::Manager, "anotherclusterid");
        let refusal = authorize(
            "/mini.v1.RaftTransport/Send",
            Some(&other_cluster),
            Some(&authority),
            SystemTime::now(),
        )
        .unwrap_err();
        assert_eq!(refusal.code, Code::Unauthenticated);
        assert!(!refusal.reason.contains("clusterid"), "{}", refusal.reason);
        let manager = cert(&ca, "m1", NodeRole::Manager, "secretclusterid");
        let later = SystemTime::now() + DEFAULT_CERT_EXPIRY + Duration::from_secs(60);
        let refusal = authorize(
            "/mini.v1.Dispatcher/Session",
            Some(&manager),
            Some(&authority),
            later,
        )
        .unwrap_err();
        assert_eq!(refusal.reason, "the certificate has expired");
    }

    #[test]
    fn a_node_acts_only_as_itself() {
        let caller = Caller {
            node_id: "n1".into(),
            role: NodeRole::Worker,
        };
        assert!(caller.acting_as("n1").is_ok());
        assert!(caller.acting_as("").is_ok());
        assert_eq!(
            caller.acting_as("n2").unwrap_err().code(),
            Code::PermissionDenied
        );
    }
}
