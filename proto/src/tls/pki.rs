//! The cluster's certificate authority and node certificates (ECDSA P-256, made with `rcgen`,
//! read with `x509-parser`).
//!
//! A node certificate names its node and what it may do, like Docker's: CN = node id,
//! OU = `swarm-manager` or `swarm-worker`, O = cluster id. Its subject alternative names are the
//! role name and the node id, which clients check as the server name when they dial a manager or
//! a given node. The not-before time is backdated by [`CLOCK_SKEW`] so a manager whose clock is a
//! little ahead still accepts a fresh certificate.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};

use crate::v1::NodeRole;

/// OU of a manager's certificate (and the server name clients check when they dial a manager).
pub const MANAGER_OU: &str = "swarm-manager";
/// OU of a worker's certificate.
pub const WORKER_OU: &str = "swarm-worker";
/// Common name of the root CA certificate.
pub const CA_CN: &str = "swarm-ca";
/// Lifetime of node certificates unless `swarm update --cert-expiry` says otherwise.
pub const DEFAULT_CERT_EXPIRY: Duration = Duration::from_secs(90 * 24 * 3600);
/// Shortest lifetime `--cert-expiry` accepts (Docker's minimum).
pub const MIN_CERT_EXPIRY: Duration = Duration::from_secs(3600);
/// How far certificates are backdated: clocks of the nodes may differ by this much.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// Lifetime of a root CA (Docker's: 20 years).
const CA_EXPIRY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);

/// What went wrong making or reading a key or certificate.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Key generation or signing failed.
    #[error("cannot make a key or certificate: {0}")]
    Generate(String),
    /// The certificate signing request is malformed, badly signed or not ECDSA P-256.
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    /// A certificate that cannot be read or lacks the fields of a node certificate.
    #[error("invalid certificate: {0}")]
    Certificate(String),
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Generate(e.to_string())
    }
}

/// The root CA of a cluster: its certificate and PKCS#8 private key, both DER.
#[derive(Clone, PartialEq, Eq)]
pub struct RootCa {
    /// Self-signed certificate (DER).
    pub cert_der: Vec<u8>,
    /// PKCS#8 private key (DER). Kept in the Raft store only.
    pub key_der: Vec<u8>,
}

impl std::fmt::Debug for RootCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCa")
            .field("cert_der", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

/// The OU naming `role`.
pub fn role_ou(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => MANAGER_OU,
        NodeRole::Worker => WORKER_OU,
    }
}

fn offset(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

fn root_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_CN);
    // A name of its own for every root: during a rotation two roots are trusted at once, and
    // a certificate's issuer name must say which one signed it.
    let tag: [u8; 6] = rand::random();
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    params
        .distinguished_name
        .push(DnType::OrganizationName, format!("{CA_CN}-{tag}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = SystemTime::now();
    params.not_before = offset(now - CLOCK_SKEW);
    params.not_after = offset(now + CA_EXPIRY);
    params.serial_number = Some(random_serial());
    params
}

/// Makes a new root CA (ECDSA P-256, valid 20 years).
pub fn new_root_ca() -> Result<RootCa, PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = root_params().self_signed(&key)?;
    Ok(RootCa {
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    })
}

/// Makes the root a rotation moves to (`swarm ca --rotate`) and its certificate cross-signed
/// by `old`: the same name and key as the new root, issued by the old one. A certificate of
/// the new root presented with it is accepted by nodes that trust only the old root.
pub fn new_rotation_root(old: &RootCa) -> Result<(RootCa, Vec<u8>), PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let params = root_params();
    let cert = params.self_signed(&key)?;
    let old_key = KeyPair::try_from(old.key_der.as_slice())?;
    let old_issuer = Issuer::from_ca_cert_der(&old.cert_der.clone().into(), old_key)?;
    let cross = params.signed_by(&key, &old_issuer)?;
    Ok((
        RootCa {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        },
        cross.der().to_vec(),
    ))
}

/// Whether `cert_der` leads to one of `roots` (DER): signed by a root, or by one of
/// `intermediates` that a root signed (the cross-signed root of a rotation).
pub fn chains_to(cert_der: &[u8], intermediates: &[&[u8]], roots: &[Vec<u8>]) -> bool {
    roots.iter().any(|root| {
        issued_by(cert_der, root)
            || intermediates
                .iter()
                .any(|i| issued_by(cert_der, i) && issued_by(i, root))
    })
}

/// A node's new private key (PKCS#8 DER, stays on the node) and a certificate signing request
/// for it (DER, the only part that leaves the node).
pub fn new_node_key(node_id: &str) -> Result<(Vec<u8>, Vec<u8>), PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, node_id);
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_der(), csr.der().to_vec()))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

/// Signs `csr_der` (whose signature proves the requester holds the key) with the cluster CA: a
/// certificate for `node_id` in `role` of `cluster_id`, valid for `lifetime` from now (backdated
/// by [`CLOCK_SKEW`]). Everything in the certificate but the public key comes from the CA, never
/// from the request.
pub fn sign_node_csr(
    ca: &RootCa,
    csr_der: &[u8],
    node_id: &str,
    role: NodeRole,
    cluster_id: &str,
    lifetime: Duration,
) -> Result<Vec<u8>, PkiError> {
    if node_id.is_empty() || cluster_id.is_empty() {
        return Err(PkiError::Generate(
            "a node certificate needs a node id and a cluster id".into(),
        ));
    }
    let csr = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
        .map_err(|e| PkiError::Csr(e.to_string()))?;
    if csr.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
        return Err(PkiError::Csr("the key must be ECDSA P-256".into()));
    }
    let ou = role_ou(role);
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, node_id);
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, ou);
    params
        .distinguished_name
        .push(DnType::OrganizationName, cluster_id);
    params.subject_alt_names = vec![
        SanType::DnsName(ou.try_into()?),
        SanType::DnsName(node_id.try_into()?),
    ];
    let now = SystemTime::now();
    params.not_before = offset(now - CLOCK_SKEW);
    params.not_after = offset(now + lifetime);
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let ca_key = KeyPair::try_from(ca.key_der.as_slice())?;
    let issuer = Issuer::from_ca_cert_der(&ca.cert_der.clone().into(), ca_key)?;
    Ok(params.signed_by(&csr.public_key, &issuer)?.der().to_vec())
}

/// Who a node certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// CN.
    pub node_id: String,
    /// From the OU.
    pub role: NodeRole,
    /// O.
    pub cluster_id: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl CertIdentity {
    /// Whether the certificate has expired at `now`.
    pub fn expired_at(&self, now: SystemTime) -> bool {
        now > self.not_after
    }
}

fn system_time(t: x509_parser::time::ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        SystemTime::UNIX_EPOCH
    }
}

/// Reads the identity a node certificate (DER) names.
pub fn identity_of(cert_der: &[u8]) -> Result<CertIdentity, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PkiError::Certificate(e.to_string()))?;
    let subject = cert.subject();
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.next()
            .and_then(|a| a.as_str().ok())
            .map(str::to_string)
            .unwrap_or_default()
    };
    let node_id = first(&mut subject.iter_common_name());
    let ou = first(&mut subject.iter_organizational_unit());
    let cluster_id = first(&mut subject.iter_organization());
    let role = match ou.as_str() {
        MANAGER_OU => NodeRole::Manager,
        WORKER_OU => NodeRole::Worker,
        other => {
            return Err(PkiError::Certificate(format!(
                "not a node certificate (OU {other:?})"
            )));
        }
    };
    if node_id.is_empty() || cluster_id.is_empty() {
        return Err(PkiError::Certificate(
            "not a node certificate (no node or cluster id)".into(),
        ));
    }
    Ok(CertIdentity {
        node_id,
        role,
        cluster_id,
        not_before: system_time(cert.validity().not_before),
        not_after: system_time(cert.validity().not_after),
    })
}

/// A certificate (DER) as PEM text.
pub fn certificate_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// A time as `2026-12-04T01:22:33Z` (UTC).
pub fn format_utc(t: SystemTime) -> String {
    let t = offset(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Whether `cert_der` carries a valid signature of the CA `ca_der`.
pub fn issued_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return false;
    };
    let Ok((_, ca)) = x509_parser::parse_x509_certificate(ca_der) else {
        return false;
    };
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// SHA-256 of a root CA certificate (DER): the digest join tokens carry.
pub fn ca_digest(ca_der: &[u8]) -> [u8; 32] {
    Sha256::digest(ca_der).into()
}

/// A digest written as Docker writes it in join tokens: base 36, left-padded with zeros to 50
/// characters.
pub fn digest_base36(digest: &[u8; 32]) -> String {
    let mut n = digest.to_vec();
    let mut out = Vec::new();
    while n.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        out.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[rem as usize]);
    }
    while out.len() < 50 {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Reads a digest written in base 36 (as Docker and `mini` print it) or in hex (64 digits).
pub fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.to_ascii_lowercase();
    if text.len() == 64 && text.bytes().all(|c| c.is_ascii_hexdigit()) {
        let mut out = [0u8; 32];
        for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        return Some(out);
    }
    if text.is_empty() || text.len() > 50 {
        return None;
    }
    let mut out = [0u8; 32];
    for c in text.bytes() {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'z' => c - b'a' + 10,
            _ => return None,
        };
        // out = out * 36 + digit, refusing overflow past 256 bits.
        let mut carry = u32::from(digit);
        for b in out.iter_mut().rev() {
            let cur = u32::from(*b) * 36 + carry;
            *b = cur as u8;
            carry = cur >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_csr_names_the_node_role_and_cluster_the_ca_chose() {
        let ca = new_root_ca().unwrap();
        let (_key, csr) = new_node_key("asked-for-another-id").unwrap();
        let cert = sign_node_csr(
            &ca,
            &csr,
            "node1",
            NodeRole::Worker,
            "cluster1",
            DEFAULT_CERT_EXPIRY,
        )
        .unwrap();
        let id = identity_of(&cert).unwrap();
        assert_eq!(
            id.node_id, "node1",
            "the CN is the CA's choice, not the CSR's"
        );
        assert_eq!(id.role, NodeRole::Worker);
        assert_eq!(id.cluster_id, "cluster1");
        let now = SystemTime::now();
        assert!(id.not_before <= now - CLOCK_SKEW + Duration::from_secs(5));
        let life = id.not_after.duration_since(now).unwrap();
        assert!(
            life > DEFAULT_CERT_EXPIRY - Duration::from_secs(60) && life <= DEFAULT_CERT_EXPIRY
        );
        assert!(issued_by(&cert, &ca.cert_der));
        let other = new_root_ca().unwrap();
        assert!(!issued_by(&cert, &other.cert_der));

        let manager = sign_node_csr(
            &ca,
            &csr,
            "node1",
            NodeRole::Manager,
            "cluster1",
            MIN_CERT_EXPIRY,
        )
        .unwrap();
        assert_eq!(identity_of(&manager).unwrap().role, NodeRole::Manager);
    }

    #[test]
    fn a_certificate_of_the_new_root_chains_to_the_old_one_through_the_cross_signed_root() {
        let old = new_root_ca().unwrap();
        let (new, cross) = new_rotation_root(&old).unwrap();
        assert_ne!(ca_digest(&old.cert_der), ca_digest(&new.cert_der));
        let (_key, csr) = new_node_key("n").unwrap();
        let cert = sign_node_csr(&new, &csr, "n", NodeRole::Worker, "c", MIN_CERT_EXPIRY).unwrap();
        let old_roots = vec![old.cert_der.clone()];
        let new_roots = vec![new.cert_der.clone()];
        assert!(
            issued_by(&cross, &old.cert_der),
            "cross-signed by the old root"
        );
        assert!(
            issued_by(&cert, &cross),
            "the cross-signed root has the new key and name"
        );
        assert!(chains_to(&cert, &[&cross], &old_roots));
        assert!(
            !chains_to(&cert, &[], &old_roots),
            "not without the cross-signed root"
        );
        assert!(chains_to(&cert, &[], &new_roots));
        assert!(chains_to(&cert, &[&cross], &new_roots));
        // At the end, a certificate of the old root leads nowhere for a node trusting the new one.
        let old_cert =
            sign_node_csr(&old, &csr, "n", NodeRole::Worker, "c", MIN_CERT_EXPIRY).unwrap();
        assert!(!chains_to(&old_cert, &[&cross], &new_roots));
        assert!(chains_to(&old_cert, &[], &old_roots));
        // A certificate cross-signed by another root does not help.
        let stranger = new_root_ca().unwrap();
        let (_, foreign_cross) = new_rotation_root(&stranger).unwrap();
        assert!(!chains_to(&cert, &[&foreign_cross], &old_roots));
    }

    #[test]
    fn a_tampered_csr_is_refused() {
        let ca = new_root_ca().unwrap();
        let (_key, mut csr) = new_node_key("n").unwrap();
        let at = csr.len() / 2;
        csr[at] ^= 0x01;
        let err = sign_node_csr(&ca, &csr, "n", NodeRole::Worker, "c", DEFAULT_CERT_EXPIRY);
        assert!(matches!(err, Err(PkiError::Csr(_))), "{err:?}");
        assert!(matches!(
            sign_node_csr(
                &ca,
                b"junk",
                "n",
                NodeRole::Worker,
                "c",
                DEFAULT_CERT_EXPIRY
            ),
            Err(PkiError::Csr(_))
        ));
    }

    #[test]
    fn the_ca_certificate_is_not_a_node_certificate() {
        let ca = new_root_ca().unwrap();
        assert!(identity_of(&ca.cert_der).is_err());
    }

    #[test]
    fn digests_read_back_in_base36_and_hex() {
        let ca = new_root_ca().unwrap();
        let d = ca_digest(&ca.cert_der);
        let b36 = digest_base36(&d);
        assert_eq!(b36.len(), 50);
        assert_eq!(parse_digest(&b36), Some(d));
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_digest(&hex), Some(d));
        assert_eq!(digest_base36(&[0u8; 32]), "0".repeat(50));
        assert_eq!(parse_digest(&"z".repeat(50)), None, "more than 256 bits");
        assert_eq!(parse_digest("not-a-digest"), None);
        let mut flipped = d;
        flipped[31] ^= 1;
        assert_ne!(parse_digest(&b36), Some(flipped));
    }
}
