//! Records bound to their owner: a node signs every version of the records it owns with its
//! node key (ECDSA P-256, the key of its cluster certificate), and a record is accepted only
//! if it carries a valid signature by the node it names as owner. So a joined node, which holds
//! the gossip key, still cannot publish, re-point or withdraw another node's endpoints.
//!
//! Two small traits keep this independent of where keys live: [`NodeSigner`] (this node's key)
//! and [`PeerKeys`] (the owners' public keys). The real ones are [`EcdsaSigner`], which reads
//! `<state-dir>/certificates/swarm-node.key` (PKCS#8 PEM), and [`PeerKeyMap`], filled from the
//! nodes' certificates (DER) the session hands out.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};

use super::error::GossipError;
use super::record::EndpointRecord;

/// Prefix of every signed message, so a record signature cannot be taken for another one.
const DOMAIN: &[u8] = b"mini gossip endpoint record v1\0";

/// This node's signing key.
pub trait NodeSigner: Send + Sync {
    /// Signs `message` (ECDSA P-256 with SHA-256, fixed 64-byte form).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, GossipError>;
}

/// The public keys of the cluster's nodes.
pub trait PeerKeys: Send + Sync {
    /// The public key (SEC1 uncompressed P-256 point, 65 bytes) of `node_id`, if known.
    fn public_key(&self, node_id: &str) -> Option<Vec<u8>>;
}

/// How records are bound to their owners: this node's signer and the owners' keys.
#[derive(Clone)]
pub struct RecordAuth {
    /// Signs the records this node owns.
    pub signer: Arc<dyn NodeSigner>,
    /// Checks the records of other nodes.
    pub peers: Arc<dyn PeerKeys>,
}

impl std::fmt::Debug for RecordAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordAuth")
    }
}

/// The bytes a record's signature covers: the domain prefix and the record without signature.
fn signed_bytes(record: &EndpointRecord) -> Vec<u8> {
    let unsigned = EndpointRecord {
        signature: Vec::new(),
        ..record.clone()
    };
    [DOMAIN, &unsigned.encode()].concat()
}

impl RecordAuth {
    /// `record` signed by this node.
    pub fn sign(&self, mut record: EndpointRecord) -> Result<EndpointRecord, GossipError> {
        record.signature = self.signer.sign(&signed_bytes(&record))?;
        Ok(record)
    }

    /// Whether `record` carries a valid signature by the node it names as owner.
    pub fn verify(&self, record: &EndpointRecord) -> Result<(), &'static str> {
        let key = self
            .peers
            .public_key(&record.node_id)
            .ok_or("no key known for its owner")?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
            .verify(&signed_bytes(record), &record.signature)
            .map_err(|_| "not signed by its owner")
    }
}

/// A node key (ECDSA P-256).
pub struct EcdsaSigner {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl EcdsaSigner {
    /// A key from its PKCS#8 DER form.
    pub fn from_pkcs8(der: &[u8]) -> Result<EcdsaSigner, GossipError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| GossipError::Keys(format!("not a PKCS#8 P-256 key: {e}")))?;
        Ok(EcdsaSigner { pair, rng })
    }

    /// Reads a PKCS#8 PEM key file (`-----BEGIN PRIVATE KEY-----`), such as
    /// `<state-dir>/certificates/swarm-node.key`.
    pub fn load(path: &Path) -> Result<EcdsaSigner, GossipError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| GossipError::Keys(format!("cannot read {}: {e}", path.display())))?;
        let der = pem_body(&text, "PRIVATE KEY").ok_or_else(|| {
            GossipError::Keys(format!("{} holds no PKCS#8 PEM key", path.display()))
        })?;
        Self::from_pkcs8(&der)
    }

    /// A fresh random key (tests).
    pub fn generate() -> EcdsaSigner {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("the operating system's random generator failed");
        Self::from_pkcs8(doc.as_ref()).expect("a key ring just made is valid")
    }

    /// The public key (SEC1 uncompressed point).
    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }
}

impl NodeSigner for EcdsaSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, GossipError> {
        self.pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| GossipError::Keys(format!("signing failed: {e}")))
    }
}

/// The owners' public keys, replaced as a whole whenever the session hands out the nodes'
/// certificates.
#[derive(Default)]
pub struct PeerKeyMap {
    keys: RwLock<HashMap<String, Vec<u8>>>,
}

impl PeerKeyMap {
    /// Replaces the keys with those of `certificates` (node id, certificate DER); certificates
    /// whose public key cannot be read are skipped.
    pub fn set_certificates<'a>(
        &self,
        certificates: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) {
        let keys = certificates
            .into_iter()
            .filter_map(|(id, der)| Some((id.to_string(), public_key_of_certificate(der)?)))
            .collect();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    /// Sets one node's key directly.
    pub fn insert(&self, node_id: &str, public_key: Vec<u8>) {
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node_id.to_string(), public_key);
    }
}

impl PeerKeys for PeerKeyMap {
    fn public_key(&self, node_id: &str) -> Option<Vec<u8>> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(node_id)
            .cloned()
    }
}

/// The base64 body of the first PEM block labelled `label`, decoded.
fn pem_body(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    base64_decode(&text[start..stop])
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            break;
        }
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// One DER element: (tag, content, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject public key of an X.509 certificate (DER) when it is an uncompressed P-256
/// point: Certificate → tbsCertificate → subjectPublicKeyInfo → BIT STRING.
pub fn public_key_of_certificate(certificate: &[u8]) -> Option<Vec<u8>> {
    const SEQUENCE: u8 = 0x30;
    let (tag, cert, _) = der(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = der(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut fields = tbs;
    // [0] version is optional.
    if fields.first() == Some(&0xa0) {
        fields = der(fields)?.2;
    }
    // serialNumber, signature, issuer, validity, subject: skip five.
    for _ in 0..5 {
        fields = der(fields)?.2;
    }
    let (tag, spki, _) = der(fields)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _algorithm, rest) = der(spki)?;
    let (tag, bits, _) = der(rest)?;
    match bits {
        [0, key @ ..] if tag == 0x03 && key.len() == 65 && key[0] == 4 => Some(key.to_vec()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::record::sample;

    fn auth_for(signer: Arc<EcdsaSigner>, peers: Arc<PeerKeyMap>) -> RecordAuth {
        RecordAuth { signer, peers }
    }

    #[test]
    fn a_node_signs_its_records_and_cannot_sign_for_another() {
        let a = Arc::new(EcdsaSigner::generate());
        let b = Arc::new(EcdsaSigner::generate());
        let peers = Arc::new(PeerKeyMap::default());
        peers.insert("a", a.public_key());
        peers.insert("b", b.public_key());
        let auth_a = auth_for(a, peers.clone());
        let auth_b = auth_for(b, peers.clone());

        let record = auth_a.sign(sample("net", "e1", "a", 5)).unwrap();
        assert_eq!(record.signature.len(), 64);
        assert_eq!(auth_b.verify(&record), Ok(()), "anyone checks a's record");

        // b, a joined member, re-points a's endpoint to its own VTEP and signs it.
        let mut hijack = record.clone();
        hijack.vtep = std::net::Ipv4Addr::new(10, 9, 9, 9);
        hijack.version += 1;
        let hijack = auth_b.sign(hijack).unwrap();
        assert_eq!(auth_a.verify(&hijack), Err("not signed by its owner"));
        // Or withdraws it (a tombstone), reusing a's old signature.
        let mut tomb = record.clone();
        tomb.deleted = true;
        tomb.version += 1;
        assert_eq!(auth_a.verify(&tomb), Err("not signed by its owner"));
        // A record claiming an unknown owner is refused too.
        let stranger = auth_b.sign(sample("net", "e2", "nobody", 1)).unwrap();
        assert_eq!(auth_a.verify(&stranger), Err("no key known for its owner"));
    }

    #[test]
    fn keys_load_from_pem_and_certificates() {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64_encode(doc.as_ref())
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swarm-node.key");
        std::fs::write(&path, pem).unwrap();
        let signer = EcdsaSigner::load(&path).unwrap();
        let direct = EcdsaSigner::from_pkcs8(doc.as_ref()).unwrap();
        assert_eq!(signer.public_key(), direct.public_key());
        std::fs::write(&path, "not a key").unwrap();
        assert!(EcdsaSigner::load(&path).is_err());

        // A minimal certificate: the walk only needs the structure up to the public key.
        let key = signer.public_key();
        let cert = certificate_with(&key);
        assert_eq!(public_key_of_certificate(&cert), Some(key.clone()));
        let peers = PeerKeyMap::default();
        peers.set_certificates([("n1", &cert[..]), ("bad", &b"\x30\x00"[..])]);
        assert_eq!(peers.public_key("n1"), Some(key));
        assert_eq!(peers.public_key("bad"), None);
        assert_eq!(public_key_of_certificate(&cert[..cert.len() - 1]), None);
    }

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.extend_from_slice(&[0x82, (content.len() >> 8) as u8, content.len() as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    fn certificate_with(key: &[u8]) -> Vec<u8> {
        let empty_seq = tlv(0x30, &[]);
        let spki = tlv(
            0x30,
            &[empty_seq.clone(), tlv(0x03, &[&[0u8][..], key].concat())].concat(),
        );
        let tbs = tlv(
            0x30,
            &[
                tlv(0xa0, &tlv(0x02, &[2])),
                tlv(0x02, &[1]),
                empty_seq.clone(),
                empty_seq.clone(),
                empty_seq.clone(),
                empty_seq.clone(),
                spki,
            ]
            .concat(),
        );
        tlv(0x30, &[tbs, empty_seq, tlv(0x03, &[0])].concat())
    }

    fn base64_encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            }
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
        out
    }
}
