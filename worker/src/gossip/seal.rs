//! Sealed datagrams: every gossip packet is encrypted and authenticated with ChaCha20-Poly1305
//! under the cluster's gossip key ring, and replays are refused.
//!
//! # Wire form
//!
//! ```text
//! 0      1      2         6                 14       18                      len-16   len
//! | 0x6d | 0x53 | key id  | counter (u64 BE) | sender | ciphertext of         | tag    |
//! |magic |sealed| (u32 BE)|        nonce (12 bytes)   | [kind, payload…]      | (16)   |
//! ```
//!
//! The associated data is the 18-byte header and the destination (the receiver's advertised
//! gossip address): a flipped bit anywhere fails the tag, and a packet captured on its way to
//! one node does not open at another. The nonce
//! is a per-agent counter — a hybrid clock in microseconds since the Unix epoch, strictly
//! increasing and never behind the wall clock — followed by 4 random bytes chosen when the agent
//! starts, so no two packets under one key share a nonce (ChaCha20-Poly1305's one requirement).
//!
//! # Keys
//!
//! The managers keep a [`GossipKeys`] ring in Raft and hand it to every node over its session.
//! The first key seals; every key in the ring opens, so while a rotation reaches the nodes one by
//! one, packets sealed with the new key and with the previous one are both accepted. A key that
//! leaves the ring opens nothing any more.
//!
//! # Replays
//!
//! An authentic packet is accepted only if its counter is within [`MAX_COUNTER_SKEW`] of this
//! node's clock, and, per sender (the 4 random bytes of the nonce, not the source address, so a
//! replay from another address is caught too), above the oldest of the last [`REPLAY_WINDOW`]
//! counters accepted from it and not one of them (a late packet among the last few is still
//! fine). A node that restarts forgets its windows: a replay towards it is then bounded by the
//! clock check.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, Tag, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::error::GossipError;
use super::record::now_micros;

/// First byte of every packet.
pub(crate) const MAGIC: u8 = 0x6d;
/// Second byte of a sealed packet (the only kind a node accepts).
pub(crate) const SEALED: u8 = 0x53;
/// Bytes of a key.
pub const KEY_BYTES: usize = 32;
/// Bytes before the ciphertext: magic, sealed marker, key id, nonce.
pub const HEADER_BYTES: usize = 2 + 4 + NONCE_LEN;
/// Bytes of the authentication tag.
pub const TAG_BYTES: usize = 16;
/// Bytes a sealed packet adds to a payload: header, inner kind byte, tag.
pub const OVERHEAD_BYTES: usize = HEADER_BYTES + 1 + TAG_BYTES;
/// How far a packet's counter (a clock in microseconds) may be from this node's clock. Nodes'
/// clocks must agree within this (as for TLS certificates).
pub const MAX_COUNTER_SKEW: Duration = Duration::from_secs(600);
/// How many recent counters are remembered per sender.
pub const REPLAY_WINDOW: usize = 64;
/// Most senders whose replay windows are kept (only authentic packets create one).
const MAX_SENDERS: usize = 4096;
/// Most keys a ring may hold.
pub const MAX_KEYS: usize = 4;

/// The cluster's gossip key ring: the first key seals, every key opens.
///
/// Secret. Its `Debug` form shows key ids only.
#[derive(Clone, PartialEq, Eq)]
pub struct GossipKeys {
    keys: Vec<(u32, [u8; KEY_BYTES])>,
}

impl GossipKeys {
    /// A ring of `(id, key)` pairs, the sealing key first. Refused when empty, longer than
    /// [`MAX_KEYS`], with a key that is not [`KEY_BYTES`] long, or with duplicate ids.
    pub fn new<K: AsRef<[u8]>>(
        keys: impl IntoIterator<Item = (u32, K)>,
    ) -> Result<GossipKeys, GossipError> {
        let mut out: Vec<(u32, [u8; KEY_BYTES])> = Vec::new();
        for (id, key) in keys {
            let key: [u8; KEY_BYTES] = key.as_ref().try_into().map_err(|_| {
                GossipError::Keys(format!(
                    "key {id} has {} bytes, expected {KEY_BYTES}",
                    key.as_ref().len()
                ))
            })?;
            if out.iter().any(|(i, _)| *i == id) {
                return Err(GossipError::Keys(format!("key id {id} appears twice")));
            }
            out.push((id, key));
        }
        if out.is_empty() || out.len() > MAX_KEYS {
            return Err(GossipError::Keys(format!(
                "a key ring holds 1 to {MAX_KEYS} keys, not {}",
                out.len()
            )));
        }
        Ok(GossipKeys { keys: out })
    }

    /// A ring of one fresh random key with id `id` (tests and benchmarks; the managers make the
    /// cluster's keys).
    pub fn random(id: u32) -> GossipKeys {
        GossipKeys {
            keys: vec![(id, random_key())],
        }
    }

    /// The id of the sealing key.
    pub fn primary_id(&self) -> u32 {
        self.keys[0].0
    }

    /// Every key id, the sealing key's first.
    pub fn ids(&self) -> Vec<u32> {
        self.keys.iter().map(|(id, _)| *id).collect()
    }
}

impl fmt::Debug for GossipKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GossipKeys {{ ids: {:?} }}", self.ids())
    }
}

/// 32 bytes from the operating system's random generator.
pub fn random_key() -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    SystemRandom::new()
        .fill(&mut key)
        .expect("the operating system's random generator failed");
    key
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Not a sealed packet, truncated, an unknown key id, or the tag does not verify: forged,
    /// corrupted, or sealed with a key this node does not hold.
    Unauthenticated,
    /// Authentic, but seen before or outside the time window.
    Replayed,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenError::Unauthenticated => "not sealed with a key of the cluster's gossip key ring",
            OpenError::Replayed => "replayed or too old",
        })
    }
}

/// Seals outgoing packets and opens incoming ones with one node's copy of the key ring.
pub struct Seal {
    keys: Vec<(u32, LessSafeKey)>,
    ids: GossipKeys,
    counter: u64,
    sender: [u8; 4],
    senders: HashMap<[u8; 4], ReplayWindow>,
}

impl Seal {
    /// A seal for `keys`, with a fresh random sender tag.
    pub fn new(keys: GossipKeys) -> Seal {
        let mut sender = [0u8; 4];
        SystemRandom::new()
            .fill(&mut sender)
            .expect("the operating system's random generator failed");
        let mut seal = Seal {
            keys: Vec::new(),
            ids: keys.clone(),
            counter: 0,
            sender,
            senders: HashMap::new(),
        };
        seal.set_keys(keys);
        seal
    }

    /// Replaces the key ring (a rotation). Replay windows are kept: counters do not depend on
    /// the key.
    pub fn set_keys(&mut self, keys: GossipKeys) {
        self.keys = keys
            .keys
            .iter()
            .map(|(id, k)| {
                let unbound = UnboundKey::new(&CHACHA20_POLY1305, k)
                    .expect("a 32-byte key is a valid ChaCha20-Poly1305 key");
                (*id, LessSafeKey::new(unbound))
            })
            .collect();
        self.ids = keys;
    }

    /// The ring in force.
    pub fn keys(&self) -> &GossipKeys {
        &self.ids
    }

    /// Writes the sealed packet of `kind` + `payload` for the node at `to` into `out` (cleared
    /// first).
    pub fn seal(&mut self, kind: u8, payload: &[u8], to: SocketAddr, out: &mut Vec<u8>) {
        self.counter = (self.counter + 1).max(now_micros());
        let (id, key) = &self.keys[0];
        out.clear();
        out.extend_from_slice(&[MAGIC, SEALED]);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(&self.sender);
        out.push(kind);
        out.extend_from_slice(payload);
        let (header, body) = out.split_at_mut(HEADER_BYTES);
        let nonce = nonce_of(header);
        let aad = aad(header, to);
        let tag: Tag = key
            .seal_in_place_separate_tag(nonce, Aad::from(&aad[..]), body)
            .expect("a gossip packet is far below ChaCha20-Poly1305's length limit");
        out.extend_from_slice(tag.as_ref());
    }

    /// Opens a packet sent to this node, whose gossip address is `local`, in place; returns its
    /// kind and payload. Refuses forged, corrupted, misdirected and replayed packets; a refused
    /// one changes no state (it cannot move a replay window).
    pub fn open<'p>(
        &mut self,
        packet: &'p mut [u8],
        local: SocketAddr,
    ) -> Result<(u8, &'p [u8]), OpenError> {
        if packet.len() < OVERHEAD_BYTES || packet[0] != MAGIC || packet[1] != SEALED {
            return Err(OpenError::Unauthenticated);
        }
        let id = u32::from_be_bytes([packet[2], packet[3], packet[4], packet[5]]);
        let Some((_, key)) = self.keys.iter().find(|(i, _)| *i == id) else {
            return Err(OpenError::Unauthenticated);
        };
        let (header, body) = packet.split_at_mut(HEADER_BYTES);
        let counter = u64::from_be_bytes(header[6..14].try_into().unwrap_or_default());
        let sender: [u8; 4] = header[14..18].try_into().unwrap_or_default();
        let nonce = nonce_of(header);
        let aad = aad(header, local);
        let plain = key
            .open_in_place(nonce, Aad::from(&aad[..]), body)
            .map_err(|_| OpenError::Unauthenticated)?;
        let now = now_micros();
        let skew = MAX_COUNTER_SKEW.as_micros() as u64;
        if counter.abs_diff(now) > skew {
            return Err(OpenError::Replayed);
        }
        if self.senders.len() >= MAX_SENDERS && !self.senders.contains_key(&sender) {
            // Forget the sender heard from least recently.
            if let Some(oldest) = self
                .senders
                .iter()
                .min_by_key(|(_, w)| w.newest())
                .map(|(a, _)| *a)
            {
                self.senders.remove(&oldest);
            }
        }
        if !self.senders.entry(sender).or_default().accept(counter) {
            return Err(OpenError::Replayed);
        }
        match plain {
            [kind, payload @ ..] => Ok((*kind, payload)),
            [] => Err(OpenError::Unauthenticated),
        }
    }
}

/// The associated data: the header, then the destination as 16 address bytes (IPv4 mapped)
/// and the port.
fn aad(header: &[u8], to: SocketAddr) -> [u8; HEADER_BYTES + 18] {
    let mut aad = [0u8; HEADER_BYTES + 18];
    aad[..HEADER_BYTES].copy_from_slice(&header[..HEADER_BYTES]);
    let ip = match to.ip() {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        std::net::IpAddr::V6(v6) => v6,
    };
    aad[HEADER_BYTES..HEADER_BYTES + 16].copy_from_slice(&ip.octets());
    aad[HEADER_BYTES + 16..].copy_from_slice(&to.port().to_be_bytes());
    aad
}

fn nonce_of(header: &[u8]) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(&header[6..HEADER_BYTES]);
    Nonce::assume_unique_for_key(n)
}

/// The counters recently accepted from one sender.
#[derive(Default)]
struct ReplayWindow {
    /// The last [`REPLAY_WINDOW`] counters accepted.
    recent: BTreeSet<u64>,
    /// Counters at or below this are refused (the oldest one forgotten).
    floor: u64,
}

impl ReplayWindow {
    fn accept(&mut self, counter: u64) -> bool {
        if counter <= self.floor || !self.recent.insert(counter) {
            return false;
        }
        if self.recent.len() > REPLAY_WINDOW
            && let Some(oldest) = self.recent.pop_first()
        {
            self.floor = oldest;
        }
        true
    }

    fn newest(&self) -> u64 {
        self.recent.last().copied().unwrap_or(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7946);

    #[test]
    fn sealed_packets_open_and_hide_the_payload() {
        let keys = GossipKeys::random(1);
        let mut a = Seal::new(keys.clone());
        let mut b = Seal::new(keys);
        let payload = b"web.1.abc 10.0.0.2 service-name";
        let mut out = Vec::new();
        a.seal(7, payload, ME, &mut out);
        assert_eq!(out.len(), payload.len() + OVERHEAD_BYTES);
        assert!(
            !out.windows(payload.len()).any(|w| w == payload)
                && !out.windows(9).any(|w| w == b"web.1.abc"),
            "the payload travels encrypted"
        );
        let mut packet = out.clone();
        let (kind, opened) = b.open(&mut packet, ME).unwrap();
        assert_eq!((kind, opened), (7, &payload[..]));
    }

    #[test]
    fn forged_flipped_and_foreign_packets_are_refused() {
        let keys = GossipKeys::random(1);
        let mut a = Seal::new(keys.clone());
        let mut b = Seal::new(keys);
        let mut out = Vec::new();
        a.seal(1, b"hello", ME, &mut out);
        for i in 0..out.len() {
            for bit in [0x01u8, 0x80] {
                let mut p = out.clone();
                p[i] ^= bit;
                assert_eq!(
                    b.open(&mut p, ME).map(|_| ()),
                    Err(OpenError::Unauthenticated),
                    "byte {i} bit {bit:#x} flipped"
                );
            }
        }
        let mut outsider = Seal::new(GossipKeys::random(1));
        let mut p = Vec::new();
        outsider.seal(1, b"hello", ME, &mut p);
        assert_eq!(
            b.open(&mut p, ME).map(|_| ()),
            Err(OpenError::Unauthenticated)
        );
        for len in [0, 1, 2, OVERHEAD_BYTES - 1] {
            let mut p = out[..len].to_vec();
            assert_eq!(
                b.open(&mut p, ME).map(|_| ()),
                Err(OpenError::Unauthenticated)
            );
        }
        let mut elsewhere = out.clone();
        let other = SocketAddr::from(([127, 0, 0, 2], 7946));
        assert_eq!(
            b.open(&mut elsewhere, other).map(|_| ()),
            Err(OpenError::Unauthenticated),
            "a packet for another node does not open here"
        );
        // None of that moved the replay window: the genuine packet still opens.
        let mut p = out.clone();
        assert!(b.open(&mut p, ME).is_ok());
    }

    #[test]
    fn replays_are_refused_but_late_packets_within_the_window_pass() {
        let keys = GossipKeys::random(1);
        let mut a = Seal::new(keys.clone());
        let mut b = Seal::new(keys);
        let packets: Vec<Vec<u8>> = (0..10)
            .map(|i| {
                let mut out = Vec::new();
                a.seal(1, &[i], ME, &mut out);
                out
            })
            .collect();
        // Out of order within the window: fine.
        for i in [1, 0, 3, 2, 4] {
            let mut p = packets[i].clone();
            assert!(b.open(&mut p, ME).is_ok(), "packet {i}");
        }
        let mut p = packets[2].clone();
        assert_eq!(b.open(&mut p, ME).map(|_| ()), Err(OpenError::Replayed));
        // Beyond the window: the oldest counters are refused.
        for _ in 0..REPLAY_WINDOW + 1 {
            let mut out = Vec::new();
            a.seal(1, b"x", ME, &mut out);
            assert!(b.open(&mut out, ME).is_ok());
        }
        let mut p = packets[5].clone();
        assert_eq!(b.open(&mut p, ME).map(|_| ()), Err(OpenError::Replayed));
    }

    #[test]
    fn packets_far_from_the_clock_are_refused() {
        let keys = GossipKeys::random(1);
        let mut a = Seal::new(keys.clone());
        let mut b = Seal::new(keys);
        a.counter = now_micros() + MAX_COUNTER_SKEW.as_micros() as u64 + 60_000_000;
        let mut out = Vec::new();
        a.seal(1, b"from the future", ME, &mut out);
        assert_eq!(b.open(&mut out, ME).map(|_| ()), Err(OpenError::Replayed));
    }

    #[test]
    fn rotation_keeps_the_previous_key_for_opening_then_drops_it() {
        let old = GossipKeys::random(1);
        let (_, old_key) = old.keys[0];
        let new_key = random_key();
        let rotated = GossipKeys::new([(2, new_key), (1, old_key)]).unwrap();
        let mut lagging = Seal::new(old.clone());
        let mut updated = Seal::new(rotated.clone());
        let mut receiver = Seal::new(rotated);
        let mut p = Vec::new();
        updated.seal(1, b"new", ME, &mut p);
        assert_eq!(p[2..6], 2u32.to_be_bytes(), "the first key seals");
        assert!(receiver.open(&mut p, ME).is_ok());
        lagging.seal(1, b"old", ME, &mut p);
        assert!(
            receiver.open(&mut p, ME).is_ok(),
            "the previous key still opens during the roll-over"
        );
        receiver.set_keys(GossipKeys::new([(3, random_key()), (2, new_key)]).unwrap());
        lagging.seal(1, b"old", ME, &mut p);
        assert_eq!(
            receiver.open(&mut p, ME).map(|_| ()),
            Err(OpenError::Unauthenticated),
            "a key out of the ring opens nothing"
        );
        updated.seal(1, b"new", ME, &mut p);
        assert!(receiver.open(&mut p, ME).is_ok());
    }

    #[test]
    fn bad_rings_are_refused_and_debug_hides_keys() {
        assert!(GossipKeys::new(Vec::<(u32, [u8; 32])>::new()).is_err());
        assert!(GossipKeys::new([(1, [0u8; 31])]).is_err());
        assert!(GossipKeys::new([(1, [0u8; 32]), (1, [1u8; 32])]).is_err());
        assert!(GossipKeys::new((0..5).map(|i| (i, [0u8; 32]))).is_err());
        let k = GossipKeys::new([(9, [0xabu8; 32])]).unwrap();
        let shown = format!("{k:?}");
        assert!(shown.contains('9') && !shown.contains("171") && !shown.contains("ab"));
    }
}
