//! Calls every RPC of a node's listener (TCP 2377) the way an attacker on the network would, and
//! prints one line per call: `<method> <outcome>`, the outcome being `OK`, a gRPC code name
//! (`Unauthenticated`, `PermissionDenied`, ...) or `TRANSPORT` (no gRPC exchange happened: the
//! connection or TLS handshake failed).
//!
//! `attacker ADDR plain`: HTTP/2 without TLS.
//! `attacker ADDR tls`: TLS without a client certificate (any server certificate accepted).
//! `attacker ADDR cert DIR VICTIM`: TLS with the certificate and key in DIR
//! (`swarm-node.crt`, `swarm-node.key`, `swarm-root-ca.crt`), naming node VICTIM in request
//! bodies (to act as another node).
//!
//! Used by `tests/tests/trust.rs` from namespaces of the test lab only.

use std::sync::Arc;
use std::time::Duration;

use mini_proto::tls::{Connector, Peer, client_config};
use mini_proto::v1::dispatcher_client::DispatcherClient;
use mini_proto::v1::node_agent_client::NodeAgentClient;
use mini_proto::v1::node_ca_client::NodeCaClient;
use mini_proto::v1::raft_transport_client::RaftTransportClient;
use mini_proto::v1::{
    ExecRequest, ForwardedProposal, GetRootCaCertificateRequest, HeartbeatRequest,
    IssueNodeCertificateRequest, JoinRequest, LeaveRequest, NetworkPeersRequest, RaftMessages,
    ReadIndexRequest, SessionRequest, TaskLogsRequest, UpdateTaskStatusRequest,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::Channel;

#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn pem_file(dir: &str, name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(format!("{dir}/{name}"))
        .unwrap_or_else(|e| panic!("{dir}/{name}: {e}"));
    pem::parse(text).expect("PEM").into_contents()
}

async fn channel(addr: &str, mode: &str, dir: Option<&str>) -> Option<Channel> {
    let endpoint = mini_proto::node_endpoint(addr, Duration::from_secs(3)).ok()?;
    let result = match (mode, dir) {
        ("plain", _) => endpoint.connect().await,
        ("tls", _) => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .ok()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
                .with_no_client_auth();
            config.alpn_protocols = vec![b"h2".to_vec()];
            let config = Arc::new(config);
            endpoint
                .connect_with_connector(Connector::new(move || Ok(config.clone()), Peer::Manager))
                .await
        }
        (_, Some(dir)) => {
            let ca = pem_file(dir, "swarm-root-ca.crt");
            let cert = pem_file(dir, "swarm-node.crt");
            let key = pem_file(dir, "swarm-node.key");
            let config = Arc::new(client_config(&ca, Some((&cert, &key))).ok()?);
            // Any node's listener: check the chain only through the node's own name is not
            // possible without knowing it, so accept the role name of a manager or worker.
            let name = std::env::var("ATTACKER_SERVER_NAME").unwrap_or("swarm-manager".into());
            let peer = if name == "swarm-manager" {
                Peer::Manager
            } else {
                Peer::Node(name)
            };
            endpoint
                .connect_with_connector(Connector::new(move || Ok(config.clone()), peer))
                .await
        }
        _ => return None,
    };
    result.ok()
}

fn outcome<T>(r: Result<tonic::Response<T>, tonic::Status>) -> String {
    match r {
        Ok(_) => "OK".into(),
        Err(s) => {
            // No answer from a gRPC service: the HTTP/2 exchange itself failed (tonic reports
            // that as a client-side status whose message names the transport or h2 error).
            let message = s.message().to_ascii_lowercase();
            let transport = [
                "transport",
                "connection",
                "protocol error",
                "h2",
                "broken pipe",
                "tcp connect",
                "error trying to connect",
            ]
            .iter()
            .any(|m| message.contains(m));
            if transport
                && matches!(
                    s.code(),
                    tonic::Code::Unknown | tonic::Code::Unavailable | tonic::Code::Internal
                )
            {
                eprintln!("transport failure: {:?}: {}", s.code(), s.message());
                "TRANSPORT".into()
            } else {
                format!("{:?}", s.code())
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).expect("ADDR").clone();
    let mode = args.get(2).expect("plain|tls|cert").clone();
    let dir = args.get(3).cloned();
    let victim = args.get(4).cloned().unwrap_or_else(|| "victim".into());
    let Some(ch) = channel(&addr, &mode, dir.as_deref()).await else {
        for (method, _) in mini_proto::tls::authz::TABLE {
            println!("{method} TRANSPORT");
        }
        return;
    };
    let timeout = Duration::from_secs(5);
    let mut ca = NodeCaClient::new(ch.clone());
    let mut d = DispatcherClient::new(ch.clone());
    let mut r = RaftTransportClient::new(ch.clone());
    let mut a = NodeAgentClient::new(ch.clone());
    macro_rules! call {
        ($name:expr, $fut:expr) => {{
            let result = match tokio::time::timeout(timeout, $fut).await {
                Ok(r) => outcome(r),
                Err(_) => "TIMEOUT".to_string(),
            };
            println!("{} {}", $name, result);
        }};
    }
    call!(
        "/mini.v1.NodeCA/GetRootCACertificate",
        ca.get_root_ca_certificate(GetRootCaCertificateRequest {})
    );
    call!(
        "/mini.v1.NodeCA/IssueNodeCertificate",
        ca.issue_node_certificate(IssueNodeCertificateRequest {
            csr: b"junk".to_vec()
        })
    );
    call!(
        "/mini.v1.Dispatcher/Join",
        d.join(JoinRequest {
            token: "SWMTKN-1-0-guess".into(),
            node_id: victim.clone(),
            hostname: "attacker".into(),
            advertise_addr: "10.0.0.1".into(),
            gossip_port: 7946,
            csr: Vec::new(),
        })
    );
    call!(
        "/mini.v1.Dispatcher/Session",
        d.session(SessionRequest {
            node_id: victim.clone(),
            resources: None,
            description: None,
        })
    );
    call!(
        "/mini.v1.Dispatcher/Heartbeat",
        d.heartbeat(HeartbeatRequest {
            node_id: victim.clone(),
            session_id: "x".into()
        })
    );
    call!(
        "/mini.v1.Dispatcher/UpdateTaskStatus",
        d.update_task_status(UpdateTaskStatusRequest {
            node_id: victim.clone(),
            session_id: "x".into(),
            updates: Vec::new()
        })
    );
    call!(
        "/mini.v1.Dispatcher/Leave",
        d.leave(LeaveRequest {
            node_id: victim.clone()
        })
    );
    call!(
        "/mini.v1.RaftTransport/Send",
        r.send(RaftMessages {
            cluster_id: String::new(),
            from_id: 99,
            from_addr: "10.0.0.1:2377".into(),
            messages: Vec::new()
        })
    );
    call!(
        "/mini.v1.RaftTransport/Propose",
        r.propose(ForwardedProposal {
            cluster_id: String::new(),
            batch: Vec::new()
        })
    );
    call!(
        "/mini.v1.RaftTransport/ReadIndex",
        r.read_index(ReadIndexRequest {
            cluster_id: String::new()
        })
    );
    call!(
        "/mini.v1.NodeAgent/TaskLogs",
        a.task_logs(TaskLogsRequest {
            task_ids: vec!["x".into()],
            follow: false,
            ..Default::default()
        })
    );
    call!(
        "/mini.v1.NodeAgent/Exec",
        a.exec(ExecRequest {
            task: "x".into(),
            args: vec!["true".into()],
            ..Default::default()
        })
    );
    call!(
        "/mini.v1.NodeAgent/NetworkPeers",
        a.network_peers(NetworkPeersRequest {
            network_id: "x".into()
        })
    );
}
