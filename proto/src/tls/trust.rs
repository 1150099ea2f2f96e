//! [`Trust`]: a node's TLS identity (root CA, its certificate and key), the files that keep it,
//! and the rustls configurations every listener and client of TCP 2377 uses.
//!
//! Only TLS 1.3 is offered. Servers ask for a client certificate but accept connections without
//! one (the CA fetch and the join call need none); what a connection may call is decided by
//! [`super::authz`]. Clients always check the server's certificate against the cluster CA and
//! the name they expect (`swarm-manager` when they dial a manager, the node id when they dial a
//! given node).

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::pki::{self, CertIdentity, MANAGER_OU};
use super::rate::RateLimitedLog;

/// File names under `<state-dir>/certificates`, as Docker's.
pub const ROOT_CA_FILE: &str = "swarm-root-ca.crt";
/// The node's certificate (PEM).
pub const NODE_CERT_FILE: &str = "swarm-node.crt";
/// The node's private key (PEM, PKCS#8, mode 0600).
pub const NODE_KEY_FILE: &str = "swarm-node.key";
/// Longest a TLS handshake may take on a listener.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong with TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a file of the certificates directory.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A certificate or key that cannot be used.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// This node has no certificate yet.
    #[error("this node has no certificate: it is in no swarm")]
    NoCredentials,
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Config(e.to_string())
    }
}

/// A node's TLS material, all DER.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// The cluster's root CA certificate.
    pub ca_der: Vec<u8>,
    /// This node's certificate.
    pub cert_der: Vec<u8>,
    /// This node's PKCS#8 private key.
    pub key_der: Vec<u8>,
    /// Certificates presented after `cert_der`, between it and a root (the cross-signed new
    /// root during a root CA rotation).
    pub intermediates: Vec<Vec<u8>>,
    /// Roots trusted besides `ca_der` (the new root during a root CA rotation).
    pub extra_roots: Vec<Vec<u8>>,
}

impl Credentials {
    /// Every root these credentials trust: `ca_der` first.
    pub fn roots(&self) -> Vec<Vec<u8>> {
        std::iter::once(self.ca_der.clone())
            .chain(self.extra_roots.iter().cloned())
            .collect()
    }

    /// Whether the node's certificate leads to one of the trusted roots.
    pub fn chains(&self) -> bool {
        let intermediates: Vec<&[u8]> = self.intermediates.iter().map(Vec::as_slice).collect();
        pki::chains_to(&self.cert_der, &intermediates, &self.roots())
    }

    /// The certificate chain presented: the node's certificate, then the intermediates.
    fn chain(&self) -> Vec<CertificateDer<'static>> {
        std::iter::once(&self.cert_der)
            .chain(&self.intermediates)
            .map(|c| CertificateDer::from(c.clone()))
            .collect()
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

/// Credentials ready for use.
struct Loaded {
    creds: Credentials,
    identity: CertIdentity,
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

#[derive(Default)]
struct State {
    loaded: Option<Arc<Loaded>>,
    removed: Arc<HashSet<String>>,
    /// The roots the cluster said to trust last ([`Trust::set_roots`]): a renewal installed
    /// after it keeps them, even if its answer was made before they changed.
    cluster_roots: Option<Vec<Vec<u8>>>,
}

/// Who a client expects at the other end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Any manager of the cluster (dispatcher, Raft, CA).
    Manager,
    /// The node with this id (its node agent).
    Node(String),
}

impl Peer {
    fn server_name(&self) -> Result<ServerName<'static>, TlsError> {
        let name = match self {
            Peer::Manager => MANAGER_OU.to_string(),
            Peer::Node(id) => id.clone(),
        };
        ServerName::try_from(name).map_err(|e| TlsError::Config(e.to_string()))
    }
}

/// The TLS identity of this node and the deny list of removed nodes. Cheap to clone; every
/// clone sees renewals at once (listeners hand the newest certificate to each new connection,
/// clients present it on each new connection).
#[derive(Clone)]
pub struct Trust {
    dir: Arc<PathBuf>,
    state: Arc<RwLock<State>>,
    log: Arc<RateLimitedLog>,
    /// Bumped whenever the identity changes: a connection made with an older certificate keeps
    /// presenting it, so long-lived channels compare this to know when to dial anew.
    generation: Arc<std::sync::atomic::AtomicU64>,
    /// Held while the certificate files are written and the identity replaced: renewals and
    /// root changes arrive from different tasks.
    files: Arc<std::sync::Mutex<()>>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("dir", &self.dir)
            .field("identity", &self.identity())
            .finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_ders: &[Vec<u8>]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for der in ca_ders {
        roots.add(CertificateDer::from(der.clone()))?;
    }
    Ok(roots)
}

fn private_key(key_der: &[u8]) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec()))
}

/// A TLS 1.3 client configuration that trusts only `ca_der`, presenting `identity` (certificate
/// and key, DER) if given.
pub fn client_config(
    ca_der: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(&[ca_der.to_vec()])?);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![CertificateDer::from(cert.to_vec())], private_key(key))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The client configuration of a node with `creds`: every root they trust, presenting the
/// node's certificate chain.
fn node_client_config(creds: &Credentials) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(&creds.roots())?)
        .with_client_auth_cert(creds.chain(), private_key(&creds.key_der))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The TLS 1.3 server configuration of a node's listener: its certificate; client certificates
/// of `ca_der` asked for, checked when given, optional (see [`super::authz`]).
pub fn server_config(creds: &Credentials) -> Result<ServerConfig, TlsError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(&creds.roots())?),
        provider(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(creds.chain(), private_key(&creds.key_der))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

impl Trust {
    /// The trust of a node whose state directory is `state_dir` (files under
    /// `state_dir/certificates`); empty until [`Trust::load`] or [`Trust::install`].
    pub fn new(state_dir: &Path) -> Trust {
        Trust {
            dir: Arc::new(state_dir.join("certificates")),
            state: Arc::default(),
            log: Arc::new(RateLimitedLog::new()),
            generation: Arc::default(),
            files: Arc::default(),
        }
    }

    fn files_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The certificates directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the node's private key (PEM).
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(NODE_KEY_FILE)
    }

    /// Path of the node's certificate (PEM).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(NODE_CERT_FILE)
    }

    /// Path of the root CA certificate (PEM).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(ROOT_CA_FILE)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads the files, if present; `Ok(false)` when there are none.
    pub fn load(&self) -> Result<bool, TlsError> {
        let read = |path: PathBuf, label: &str| -> Result<Option<Vec<Vec<u8>>>, TlsError> {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let blocks = pem::parse_many(text.as_bytes()).map_err(|e| TlsError::File {
                        path: path.clone(),
                        source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                    })?;
                    if blocks.is_empty() || blocks.iter().any(|b| b.tag() != label) {
                        return Err(TlsError::File {
                            path,
                            source: io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("expected a PEM {label}"),
                            ),
                        });
                    }
                    Ok(Some(
                        blocks.into_iter().map(|b| b.into_contents()).collect(),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(TlsError::File { path, source }),
            }
        };
        let ca = read(self.ca_path(), "CERTIFICATE")?;
        let cert = read(self.cert_path(), "CERTIFICATE")?;
        let key = read(self.key_path(), "PRIVATE KEY")?;
        let (Some(mut roots), Some(mut chain), Some(mut key)) = (ca, cert, key) else {
            return Ok(false);
        };
        let ca_der = roots.remove(0);
        let cert_der = chain.remove(0);
        self.set(Credentials {
            ca_der,
            cert_der,
            key_der: key.remove(0),
            intermediates: chain,
            extra_roots: roots,
        })?;
        Ok(true)
    }

    fn set(&self, creds: Credentials) -> Result<(), TlsError> {
        let identity = pki::identity_of(&creds.cert_der)?;
        if !creds.chains() {
            return Err(TlsError::Config(
                "the node certificate is not signed by the root CA".into(),
            ));
        }
        self.set_unchecked(creds, identity)
    }

    fn set_unchecked(&self, creds: Credentials, identity: CertIdentity) -> Result<(), TlsError> {
        let client = Arc::new(node_client_config(&creds)?);
        let server = Arc::new(server_config(&creds)?);
        self.write().loaded = Some(Arc::new(Loaded {
            creds,
            identity,
            client,
            server,
        }));
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Makes `creds` this node's identity and writes them (PEM; the key 0600, written to a new
    /// file that replaces the old one, so it is never readable by others).
    pub fn install(&self, mut creds: Credentials) -> Result<(), TlsError> {
        let _files = self.files_lock();
        // Checked first: bad material is refused before anything is written.
        let identity = pki::identity_of(&creds.cert_der)?;
        if let Some(roots) = self.read().cluster_roots.clone() {
            let mut roots = roots.into_iter();
            if let Some(ca_der) = roots.next() {
                let said = Credentials {
                    ca_der,
                    extra_roots: roots.collect(),
                    ..creds.clone()
                };
                if said.chains() {
                    creds = said;
                }
            }
        }
        let dir = self.dir.as_path();
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::File { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        set_mode(dir, 0o700).map_err(io_err(dir))?;
        if !creds.chains() {
            return Err(TlsError::Config(
                "the node certificate is not signed by the root CA".into(),
            ));
        }
        write_pem(&self.ca_path(), "CERTIFICATE", &creds.roots())?;
        write_pem(
            &self.key_path(),
            "PRIVATE KEY",
            std::slice::from_ref(&creds.key_der),
        )?;
        let chain: Vec<Vec<u8>> = std::iter::once(creds.cert_der.clone())
            .chain(creds.intermediates.iter().cloned())
            .collect();
        write_pem(&self.cert_path(), "CERTIFICATE", &chain)?;
        self.set(creds)?;
        tracing::info!(
            node_id = %identity.node_id,
            role = pki::role_ou(identity.role),
            not_after = ?identity.not_after,
            "node certificate installed"
        );
        Ok(())
    }

    /// Makes `roots` (DER, the cluster's root first) the roots this node trusts, keeping its
    /// certificate, and writes them to the root CA file. Nothing changes when they are the
    /// roots already trusted. A certificate no trusted root leads to is kept (the node can do
    /// nothing better) and said at WARN: other nodes refuse it until it is renewed or the
    /// node joins again.
    pub fn set_roots(&self, roots: Vec<Vec<u8>>) -> Result<(), TlsError> {
        let _files = self.files_lock();
        let Some(loaded) = self.read().loaded.clone() else {
            return Err(TlsError::NoCredentials);
        };
        if !roots.is_empty() {
            self.write().cluster_roots = Some(roots.clone());
        }
        let mut roots = roots.into_iter();
        let Some(ca_der) = roots.next() else {
            return Ok(());
        };
        let creds = Credentials {
            ca_der,
            extra_roots: roots.collect(),
            ..loaded.creds.clone()
        };
        if creds.roots() == loaded.creds.roots() {
            return Ok(());
        }
        if !creds.chains() {
            tracing::warn!(
                "this node's certificate is not signed by any root CA the swarm trusts now; \
                 it is refused until renewed: if it cannot be, run `mini swarm leave --force` \
                 and join again"
            );
        }
        write_pem(&self.ca_path(), "CERTIFICATE", &creds.roots())?;
        let identity = loaded.identity.clone();
        self.set_unchecked(creds, identity)?;
        tracing::info!(
            roots = self.credentials().map_or(0, |c| c.roots().len()),
            "trusted root CAs changed"
        );
        Ok(())
    }

    /// Forgets the identity and removes its files (the node left the swarm).
    pub fn clear(&self) {
        let _files = self.files_lock();
        *self.write() = State::default();
        for path in [self.cert_path(), self.key_path(), self.ca_path()] {
            let _ = std::fs::remove_file(path);
        }
    }

    /// This node's credentials, if it has any.
    pub fn credentials(&self) -> Option<Credentials> {
        self.read().loaded.as_ref().map(|l| l.creds.clone())
    }

    /// Changes whenever this node's certificate does ([`Trust::install`], [`Trust::load`]):
    /// connections made before a change present the old certificate until they are dropped.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Who this node's certificate names.
    pub fn identity(&self) -> Option<CertIdentity> {
        self.read().loaded.as_ref().map(|l| l.identity.clone())
    }

    /// Replaces the deny list of removed nodes.
    pub fn set_removed(&self, ids: impl IntoIterator<Item = String>) {
        let ids: HashSet<String> = ids.into_iter().collect();
        let mut state = self.write();
        if *state.removed != ids {
            state.removed = Arc::new(ids);
        }
    }

    /// Whether node `id` was removed from the cluster.
    pub fn is_removed(&self, id: &str) -> bool {
        self.read().removed.contains(id)
    }

    /// What the listener's authorization checks against, if this node has an identity.
    pub fn authority(&self) -> Option<super::authz::Authority> {
        let state = self.read();
        let loaded = state.loaded.as_ref()?;
        Some(super::authz::Authority {
            roots: loaded.creds.roots(),
            cluster_id: loaded.identity.cluster_id.clone(),
            removed: state.removed.clone(),
        })
    }

    /// The log the listener's refusals go to (rate-limited).
    pub(crate) fn refusal_log(&self) -> &RateLimitedLog {
        &self.log
    }

    fn client(&self) -> Result<Arc<ClientConfig>, TlsError> {
        self.read()
            .loaded
            .as_ref()
            .map(|l| l.client.clone())
            .ok_or(TlsError::NoCredentials)
    }

    fn server(&self) -> Option<Arc<ServerConfig>> {
        self.read().loaded.as_ref().map(|l| l.server.clone())
    }

    /// A channel over `endpoint` (made with [`crate::node_endpoint`]) that speaks TLS with this
    /// node's identity to `peer`, connecting on first use. Each new connection presents the
    /// certificate current at that time.
    pub fn connect_lazy(&self, endpoint: Endpoint, peer: Peer) -> Channel {
        endpoint.connect_with_connector_lazy(self.connector(peer))
    }

    /// Like [`Trust::connect_lazy`] but connects now.
    pub async fn connect(
        &self,
        endpoint: Endpoint,
        peer: Peer,
    ) -> Result<Channel, tonic::transport::Error> {
        endpoint.connect_with_connector(self.connector(peer)).await
    }

    fn connector(&self, peer: Peer) -> Connector {
        let trust = self.clone();
        Connector::new(
            move || trust.client().map_err(|e| io::Error::other(e.to_string())),
            peer,
        )
    }

    /// Accepts TCP connections on `listener` and completes their TLS handshakes (each on its own
    /// task, at most [`HANDSHAKE_TIMEOUT`]) with this node's current certificate; failed
    /// handshakes are logged (rate-limited) and dropped. The stream ends, and the listener is
    /// closed, once the consumer drops it.
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
        let (tx, rx) = mpsc::channel(64);
        let trust = self.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = tx.closed() => return,
                    accepted = listener.accept() => accepted,
                };
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(err) => {
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let Some(config) = trust.server() else {
                    trust
                        .log
                        .warn(peer, "connection refused: this node has no certificate yet");
                    continue;
                };
                let tx = tx.clone();
                let trust = trust.clone();
                tokio::spawn(async move {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(tls)).await;
                        }
                        Ok(Err(err)) => trust
                            .log
                            .warn(peer, &format!("TLS handshake refused: {err}")),
                        Err(_) => trust.log.warn(peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}

type ConfigSource = Arc<dyn Fn() -> io::Result<Arc<ClientConfig>> + Send + Sync>;

/// Dials TCP, then TLS with the configuration of the moment, checking the server's name.
#[derive(Clone)]
pub struct Connector {
    config: ConfigSource,
    peer: Peer,
}

impl Connector {
    /// A connector taking its client configuration from `config` on each connection.
    pub fn new(
        config: impl Fn() -> io::Result<Arc<ClientConfig>> + Send + Sync + 'static,
        peer: Peer,
    ) -> Connector {
        Connector {
            config: Arc::new(config),
            peer,
        }
    }
}

impl tower::Service<Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = (self.config)();
        let name = self.peer.server_name();
        Box::pin(async move {
            let config = config?;
            let name = name.map_err(|e| io::Error::other(e.to_string()))?;
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host in address"))?
                .to_string();
            let port = uri.port_u16().unwrap_or(2377);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Writes `ders` as PEM blocks to `path` through a 0600 temporary file, fsynced, renamed over
/// it.
fn write_pem(path: &Path, tag: &str, ders: &[Vec<u8>]) -> Result<(), TlsError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let blocks: Vec<pem::Pem> = ders.iter().map(|d| pem::Pem::new(tag, d.clone())).collect();
    let text = pem::encode_many(&blocks);
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| TlsError::File {
        path: path.to_path_buf(),
        source,
    })
}
