//! The joiner's side of TLS: fetch the manager's CA, pin it against the join token's digest,
//! and only then open the channel the secret travels on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tonic::transport::Channel;

use super::pki;
use super::trust::{Connector, Peer, client_config};
use crate::v1::GetRootCaCertificateRequest;
use crate::v1::node_ca_client::NodeCaClient;

/// What a joiner is told when the manager's CA is not the one its token names.
pub const CA_MISMATCH: &str =
    "the manager's CA does not match the join token: wrong cluster, or someone in between";

/// Why the pinned channel could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The manager could not be reached, or did not hand out its CA.
    #[error("cannot reach the manager at {addr}: {reason}")]
    Unreachable {
        /// `host:port`.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The CA, or the server's certificate, is not the one the token pins.
    #[error("{CA_MISMATCH}")]
    Mismatch,
}

/// A server's certificate and the intermediates it sent after it (DER).
type Presented = (Vec<u8>, Vec<Vec<u8>>);

/// Accepts any server certificate (recording the chain) but still checks the handshake
/// signature: used only to fetch the CA certificate, which is then checked against the token.
#[derive(Debug)]
struct Recording {
    provider: Arc<rustls::crypto::CryptoProvider>,
    seen: Mutex<Option<Presented>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some((
            end_entity.to_vec(),
            intermediates.iter().map(|c| c.to_vec()).collect(),
        ));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Fetches the root CA of the manager at `addr` over TLS and checks it against `digest` (from
/// the join token) and against the certificate the manager presented. On success: the CA
/// certificate (DER) and a channel to the manager that trusts only that CA and checks the
/// server is a manager, on which the token may be sent. Nothing secret is sent before.
pub async fn pinned_manager_channel(
    addr: &str,
    digest: &[u8; 32],
    timeout: Duration,
) -> Result<(Vec<u8>, Channel), PinError> {
    let unreachable = |reason: String| PinError::Unreachable {
        addr: addr.to_string(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recording = Arc::new(Recording {
        provider: provider.clone(),
        seen: Mutex::new(None),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| unreachable(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recording.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let config = Arc::new(config);
    let endpoint = crate::node_endpoint(addr, timeout).map_err(|e| unreachable(e.to_string()))?;
    let channel = endpoint
        .clone()
        .connect_with_connector(Connector::new(move || Ok(config.clone()), Peer::Manager))
        .await
        .map_err(|e| unreachable(error_chain(&e)))?;
    let ca_der = NodeCaClient::new(channel)
        .get_root_ca_certificate(GetRootCaCertificateRequest {})
        .await
        .map_err(|s| unreachable(format!("no CA certificate: {}", s.message())))?
        .into_inner()
        .certificate;
    if &pki::ca_digest(&ca_der) != digest {
        return Err(PinError::Mismatch);
    }
    let (presented, intermediates) = recording
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default();
    // During a root CA rotation the manager's certificate comes from the new root, presented
    // with that root cross-signed by the pinned one.
    let intermediates: Vec<&[u8]> = intermediates.iter().map(Vec::as_slice).collect();
    if !pki::chains_to(&presented, &intermediates, std::slice::from_ref(&ca_der)) {
        return Err(PinError::Mismatch);
    }
    let pinned = Arc::new(client_config(&ca_der, None).map_err(|e| unreachable(e.to_string()))?);
    let channel = endpoint
        .connect_with_connector(Connector::new(move || Ok(pinned.clone()), Peer::Manager))
        .await
        .map_err(|e| unreachable(error_chain(&e)))?;
    Ok((ca_der, channel))
}

/// An error and its sources on one line (tonic's transport errors say little at the top).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
