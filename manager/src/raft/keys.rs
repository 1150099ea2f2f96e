//! Encryption at rest of the Raft log and snapshots, and Docker's autolock.
//!
//! Every manager encrypts what it writes to its Raft store (the `data` and `context` of each log
//! entry, and each snapshot) with its own data encryption key (DEK), as swarmkit does: the
//! cluster's secrets, registry credentials and CA key are never on disk in the clear. The DEK is
//! kept in `<state_dir>/raft/dek` (mode 0600):
//! - in the clear while autolock is off (the disk alone then suffices to read the store, as in
//!   Docker without autolock);
//! - sealed with a key derived from the swarm's unlock key (`SWMKEY-1-…`) while autolock is on:
//!   nothing on disk opens it, so a restarted manager serves nothing until `mini swarm unlock`.
//!
//! Sealed records are `0x01 ‖ nonce (12 bytes) ‖ ChaCha20-Poly1305 ciphertext and tag`.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use sha2::{Digest as _, Sha256};

use super::RaftError;

/// Format byte of a sealed record.
const VERSION: u8 = 1;
/// Name of the DEK file in the Raft directory.
pub(crate) const DEK_FILE: &str = "dek";
/// First line of the DEK file.
const DEK_HEADER: &str = "mini raft data encryption key v1";
/// Docker's prefix of an unlock key.
const UNLOCK_PREFIX: &str = "SWMKEY-1-";

/// Why a sealed record or key could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The DEK is sealed and no unlock key was given.
    #[error("the raft store is locked (autolock): run `mini swarm unlock` with the unlock key")]
    Locked,
    /// The unlock key does not open the DEK.
    #[error("swarm could not be unlocked: invalid key provided")]
    WrongKey,
    /// The text is not an unlock key.
    #[error("invalid unlock key: expected SWMKEY-1-<43 characters of base64>")]
    Malformed,
    /// A record failed authentication or is too short (corrupt, or another key's).
    #[error("a sealed record could not be opened (corrupt, or encrypted with another key)")]
    Tampered,
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .expect("the system's random number generator failed");
    out
}

fn aead(raw: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, raw).expect("32-byte key"))
}

fn seal_with(key: &LessSafeKey, plain: &[u8]) -> Vec<u8> {
    let nonce = random::<NONCE_LEN>();
    let mut out = Vec::with_capacity(1 + NONCE_LEN + plain.len() + 16);
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let mut body = out.split_off(1 + NONCE_LEN);
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
        .expect("ChaCha20-Poly1305 seals any length below 256 GiB");
    out.extend_from_slice(&body);
    out
}

fn open_with(key: &LessSafeKey, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
    if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != VERSION {
        return Err(KeyError::Tampered);
    }
    let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN]
        .try_into()
        .map_err(|_| KeyError::Tampered)?;
    let mut body = sealed[1 + NONCE_LEN..].to_vec();
    let len = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
        .map_err(|_| KeyError::Tampered)?
        .len();
    body.truncate(len);
    Ok(body)
}

/// A manager's data encryption key: seals and opens what its Raft store writes.
#[derive(Clone)]
pub struct DataKey {
    raw: Arc<[u8; 32]>,
    key: Arc<LessSafeKey>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(…)")
    }
}

impl DataKey {
    /// A new random key.
    pub fn generate() -> DataKey {
        DataKey::from_raw(random())
    }

    fn from_raw(raw: [u8; 32]) -> DataKey {
        DataKey {
            key: Arc::new(aead(&raw)),
            raw: Arc::new(raw),
        }
    }

    /// Encrypts and authenticates `plain`.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        seal_with(&self.key, plain)
    }

    /// Decrypts a record [`seal`](Self::seal) made.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        open_with(&self.key, sealed)
    }
}

/// The swarm's unlock key (Docker's `SWMKEY-1-…`): with autolock on, it seals every manager's
/// [`DataKey`] on disk.
#[derive(Clone, PartialEq, Eq)]
pub struct UnlockKey([u8; 32]);

impl fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnlockKey(…)")
    }
}

impl UnlockKey {
    /// A new random key.
    pub fn generate() -> UnlockKey {
        UnlockKey(random())
    }

    /// The key from its raw bytes (as the cluster object stores it).
    pub fn from_bytes(bytes: &[u8]) -> Result<UnlockKey, KeyError> {
        bytes
            .try_into()
            .map(UnlockKey)
            .map_err(|_| KeyError::Malformed)
    }

    /// The raw bytes (stored, encrypted at rest, in the cluster object).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Parses `SWMKEY-1-<base64>` (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<UnlockKey, KeyError> {
        let body = text
            .trim()
            .strip_prefix(UNLOCK_PREFIX)
            .ok_or(KeyError::Malformed)?;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(body)
            .map_err(|_| KeyError::Malformed)?;
        UnlockKey::from_bytes(&bytes)
    }

    /// The key as the user types it: `SWMKEY-1-<base64>`.
    pub fn to_text(&self) -> String {
        format!(
            "{UNLOCK_PREFIX}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.0)
        )
    }

    /// The key that seals a DEK (a hash of the unlock key, so the two are never the same key).
    fn sealing_key(&self) -> LessSafeKey {
        let mut h = Sha256::new();
        h.update(b"mini raft dek sealing key v1");
        h.update(self.0);
        aead(&h.finalize().into())
    }
}

fn dek_path(raft_dir: &Path) -> PathBuf {
    raft_dir.join(DEK_FILE)
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RaftError + use<> {
    let path = path.to_path_buf();
    move |source| RaftError::Io { op, path, source }
}

fn corrupt(detail: impl Into<String>) -> RaftError {
    RaftError::Corrupt {
        what: "data encryption key file",
        detail: detail.into(),
    }
}

/// How the DEK file holds the key.
enum Stored {
    Plain([u8; 32]),
    Sealed(Vec<u8>),
}

fn read_dek(raft_dir: &Path) -> Result<Option<Stored>, RaftError> {
    let path = dek_path(raft_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", &path)(e)),
    };
    let mut lines = text.lines();
    if lines.next() != Some(DEK_HEADER) {
        return Err(corrupt("unknown header"));
    }
    let (kind, body) = lines
        .next()
        .and_then(|l| l.split_once(' '))
        .ok_or_else(|| corrupt("no key line"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| corrupt(e.to_string()))?;
    match kind {
        "plain" => Ok(Some(Stored::Plain(
            bytes
                .try_into()
                .map_err(|_| corrupt("key is not 32 bytes"))?,
        ))),
        "sealed" => Ok(Some(Stored::Sealed(bytes))),
        other => Err(corrupt(format!("unknown key kind {other:?}"))),
    }
}

/// Writes the DEK file (mode 0600) atomically: a temporary file, fsynced, renamed, then the
/// directory fsynced.
fn write_dek(raft_dir: &Path, key: &DataKey, unlock: Option<&UnlockKey>) -> Result<(), RaftError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let line = match unlock {
        None => format!("plain {}", b64.encode(*key.raw)),
        Some(u) => format!(
            "sealed {}",
            b64.encode(seal_with(&u.sealing_key(), &*key.raw))
        ),
    };
    let path = dek_path(raft_dir);
    let tmp = raft_dir.join(format!("{DEK_FILE}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    // A file left by an older run may have kept wider permissions.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io("chmod", &tmp))?;
    file.write_all(format!("{DEK_HEADER}\n{line}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
    std::fs::File::open(raft_dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", raft_dir))
}

/// Whether the DEK in `raft_dir` is sealed by an unlock key (autolock on when it was written).
pub fn is_sealed(raft_dir: &Path) -> bool {
    matches!(read_dek(raft_dir), Ok(Some(Stored::Sealed(_))))
}

/// A manager's data key as its file holds it.
#[derive(Debug, Clone)]
pub struct OpenedKey {
    /// The key.
    pub key: DataKey,
    /// The unlock key the file is sealed with (`None`: stored in the clear).
    pub sealed_with: Option<UnlockKey>,
}

/// The manager's DEK from `raft_dir`, made if there is none yet (sealed with `unlock` when
/// given, else in the clear). A sealed key needs `unlock`: [`KeyError::Locked`] without it,
/// [`KeyError::WrongKey`] with another key.
pub fn open_data_key(raft_dir: &Path, unlock: Option<&UnlockKey>) -> Result<OpenedKey, RaftError> {
    match read_dek(raft_dir)? {
        Some(Stored::Plain(raw)) => Ok(OpenedKey {
            key: DataKey::from_raw(raw),
            sealed_with: None,
        }),
        Some(Stored::Sealed(sealed)) => {
            let unlock = unlock.ok_or(RaftError::Key(KeyError::Locked))?;
            let raw = open_with(&unlock.sealing_key(), &sealed)
                .map_err(|_| RaftError::Key(KeyError::WrongKey))?;
            let raw: [u8; 32] = raw.try_into().map_err(|_| corrupt("key is not 32 bytes"))?;
            Ok(OpenedKey {
                key: DataKey::from_raw(raw),
                sealed_with: Some(unlock.clone()),
            })
        }
        None => {
            std::fs::create_dir_all(raft_dir).map_err(io("create", raft_dir))?;
            let key = DataKey::generate();
            write_dek(raft_dir, &key, unlock)?;
            Ok(OpenedKey {
                key,
                sealed_with: unlock.cloned(),
            })
        }
    }
}

/// Stores `key` again in `raft_dir`: sealed with `unlock`, or in the clear without it (autolock
/// turned on, off, or its key rotated).
pub fn reseal(raft_dir: &Path, key: &DataKey, unlock: Option<&UnlockKey>) -> Result<(), RaftError> {
    write_dek(raft_dir, key, unlock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_tampering() {
        let key = DataKey::generate();
        let sealed = key.seal(b"registry password");
        assert!(!sealed.windows(8).any(|w| w == b"password"));
        assert_eq!(key.open(&sealed).unwrap(), b"registry password");
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(&bad), Err(KeyError::Tampered));
        assert_eq!(DataKey::generate().open(&sealed), Err(KeyError::Tampered));
        assert_eq!(key.open(b"short"), Err(KeyError::Tampered));
        // Two seals of the same text differ (random nonces).
        assert_ne!(key.seal(b"x"), key.seal(b"x"));
    }

    #[test]
    fn unlock_keys_read_as_docker_writes_them() {
        let key = UnlockKey::generate();
        let text = key.to_text();
        assert!(text.starts_with("SWMKEY-1-"), "{text}");
        assert_eq!(text.len(), "SWMKEY-1-".len() + 43, "{text}");
        assert_eq!(UnlockKey::parse(&format!("  {text}\n")).unwrap(), key);
        for bad in [
            "",
            "SWMKEY-1-",
            "SWMKEY-2-abc",
            "SWMKEY-1-!!!",
            &text[..text.len() - 2],
        ] {
            assert_eq!(UnlockKey::parse(bad), Err(KeyError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn the_dek_file_is_private_and_sealed_only_with_autolock() {
        let dir = tempfile::tempdir().unwrap();
        let raft = dir.path().join("raft");
        let key = open_data_key(&raft, None).unwrap().key;
        let mode = std::fs::metadata(raft.join(DEK_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!is_sealed(&raft));
        let sealed = key.seal(b"secret");
        // Reopened: the same key, in the clear.
        let opened = open_data_key(&raft, None).unwrap();
        assert!(opened.sealed_with.is_none());
        assert_eq!(opened.key.open(&sealed).unwrap(), b"secret");

        let unlock = UnlockKey::generate();
        reseal(&raft, &key, Some(&unlock)).unwrap();
        assert!(is_sealed(&raft));
        let err = open_data_key(&raft, None).unwrap_err();
        assert!(matches!(err, RaftError::Key(KeyError::Locked)), "{err}");
        let err = open_data_key(&raft, Some(&UnlockKey::generate())).unwrap_err();
        assert!(matches!(err, RaftError::Key(KeyError::WrongKey)), "{err}");
        let reopened = open_data_key(&raft, Some(&unlock)).unwrap();
        assert_eq!(reopened.sealed_with, Some(unlock.clone()));
        assert_eq!(reopened.key.open(&sealed).unwrap(), b"secret");
        // The raw key is not in the sealed file.
        let file = std::fs::read_to_string(raft.join(DEK_FILE)).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(*key.raw);
        assert!(!file.contains(&b64));

        reseal(&raft, &key, None).unwrap();
        assert!(!is_sealed(&raft));
        assert_eq!(
            open_data_key(&raft, None)
                .unwrap()
                .key
                .open(&sealed)
                .unwrap(),
            b"secret"
        );
    }
}
