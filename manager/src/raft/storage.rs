//! [`raft::Storage`] on sled: the log, hard state, conf state and the latest snapshot.
//!
//! Layout (one sled database under `<state_dir>/raft`):
//! - tree `log`: big-endian `u64` index → protobuf `Entry`.
//! - tree `meta`: `hard_state` (`HardState`), `snapshot_meta` (`SnapshotMetadata`: index, term and
//!   the conf state at that index; index 0 holds the bootstrap conf state), `snapshot_data`,
//!   `truncated` (index and term of the last compacted entry, 16 bytes). The applied index is
//!   not stored: on start the node resumes from the snapshot and applies every later entry
//!   again. (State dirs of earlier versions also hold `applied` and `conf_state`, written at
//!   every apply and never read; they are left alone.)
//!
//! The `data` and `context` of every entry and the snapshot data are encrypted with the manager's
//! [`DataKey`] (see [`keys`](super::keys)); indexes, terms and Raft's own metadata are not secret.
//!
//! The log holds the entries `truncated.index + 1 ..= last_index`. Writes that must stay
//! consistent across the two trees are ordered (meta first, flushed, then log deletions), so a
//! crash between them leaves at worst stale entries below `truncated`, which are ignored.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::RaftError;
use super::keys::DataKey;

const HARD_STATE: &[u8] = b"hard_state";
const SNAPSHOT_META: &[u8] = b"snapshot_meta";
const SNAPSHOT_DATA: &[u8] = b"snapshot_data";
const TRUNCATED: &[u8] = b"truncated";

/// The Raft log and its metadata, persisted in sled, with the small parts cached in memory.
pub struct SledStorage {
    /// The database; `flush` on it fsyncs every tree.
    db: sled::Db,
    /// Index → entry.
    log: sled::Tree,
    /// Hard state, snapshot, truncation point.
    meta: sled::Tree,
    /// Cached copy of the persisted hard state.
    hard_state: HardState,
    /// Cached metadata of the latest snapshot (index 0: bootstrap conf state, no data).
    snapshot_meta: SnapshotMetadata,
    /// Index and term of the last entry removed from the log (0, 0 for a fresh log).
    truncated: (u64, u64),
    /// Index of the last entry in the log (`truncated.0` when the log is empty).
    last_index: u64,
    /// Highest index a leader asked a snapshot for that we could not serve yet (0: none). Raft-rs
    /// retries; the node loop takes a snapshot when it sees this.
    snapshot_wanted: AtomicU64,
    /// Encrypts entry payloads and snapshots at rest.
    key: DataKey,
}

fn be(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn other<E: std::error::Error + Send + Sync + 'static>(e: E) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

fn decode<M: protobuf::Message>(what: &'static str, bytes: &[u8]) -> Result<M, RaftError> {
    M::parse_from_bytes(bytes).map_err(|e| RaftError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn encode<M: protobuf::Message>(what: &'static str, m: &M) -> Result<Vec<u8>, RaftError> {
    m.write_to_bytes().map_err(|e| RaftError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn u64_at(what: &'static str, bytes: &[u8], at: usize) -> Result<u64, RaftError> {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| RaftError::Corrupt {
            what,
            detail: format!("{} bytes", bytes.len()),
        })
}

/// How long [`open_db`] waits for the database's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the sled database in `dir`. Its file lock is released only when sled's background
/// flusher of an earlier handle (a Raft node just stopped in this process, or a daemon still
/// exiting) lets go, which may take a moment on a loaded machine: a held lock is retried for
/// up to [`LOCK_WAIT`] before it is an error.
fn open_db(dir: &Path) -> Result<sled::Db, RaftError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new().path(dir).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other.map_err(RaftError::sled("open")),
        }
    }
}

impl SledStorage {
    /// Opens (or creates) the database in `dir` and loads the cached state; `key` encrypts
    /// what is written and decrypts what is read.
    pub fn open(dir: &Path, key: DataKey) -> Result<Self, RaftError> {
        let db = open_db(dir)?;
        let log = db.open_tree("log").map_err(RaftError::sled("open log"))?;
        let meta = db.open_tree("meta").map_err(RaftError::sled("open meta"))?;
        let get = |key: &[u8]| meta.get(key).map_err(RaftError::sled("read meta"));
        let hard_state = match get(HARD_STATE)? {
            Some(v) => decode("hard state", &v)?,
            None => HardState::default(),
        };
        let snapshot_meta = match get(SNAPSHOT_META)? {
            Some(v) => decode("snapshot metadata", &v)?,
            None => SnapshotMetadata::default(),
        };
        let truncated = match get(TRUNCATED)? {
            Some(v) => (u64_at("truncated", &v, 0)?, u64_at("truncated", &v, 8)?),
            None => (0, 0),
        };
        let last_key = match log.last().map_err(RaftError::sled("read log"))? {
            Some((k, _)) => u64_at("log key", &k, 0)?,
            None => 0,
        };
        Ok(SledStorage {
            db,
            log,
            meta,
            hard_state,
            snapshot_meta,
            truncated,
            last_index: last_key.max(truncated.0),
            snapshot_wanted: AtomicU64::new(0),
            key,
        })
    }

    /// Whether the storage holds a cluster configuration (bootstrapped or from a snapshot).
    pub fn is_initialized(&self) -> bool {
        self.snapshot_meta.get_conf_state() != &ConfState::default()
    }

    /// Makes an empty storage the start of a new cluster whose only voter is `id`, and fsyncs.
    pub fn bootstrap(&mut self, id: u64) -> Result<(), RaftError> {
        let mut meta = SnapshotMetadata::default();
        meta.mut_conf_state().voters = vec![id];
        self.meta
            .insert(SNAPSHOT_META, encode("snapshot metadata", &meta)?)
            .map_err(RaftError::sled("bootstrap"))?;
        self.snapshot_meta = meta;
        self.flush()
    }

    /// Fsyncs everything written so far.
    pub fn flush(&self) -> Result<(), RaftError> {
        self.db.flush().map_err(RaftError::sled("flush"))?;
        Ok(())
    }

    /// Starts an fsync of everything written so far on a blocking thread, at once, without
    /// blocking the async runtime; the future resolves when it is done. Writes made meanwhile
    /// may or may not be in it.
    pub fn start_flush(&self) -> impl std::future::Future<Output = Result<(), RaftError>> + use<> {
        let db = self.db.clone();
        let flush = tokio::task::spawn_blocking(move || db.flush());
        async move {
            match flush.await {
                Ok(flushed) => flushed.map(drop).map_err(RaftError::sled("flush")),
                Err(e) => Err(RaftError::sled("flush")(sled::Error::Io(
                    std::io::Error::other(e),
                ))),
            }
        }
    }

    /// Appends `entries` (contiguous, starting at most at `last_index + 1`), replacing any
    /// conflicting suffix of the log. Not durable until [`flush`](Self::flush).
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), RaftError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        if first.index <= self.truncated.0 || first.index > self.last_index + 1 {
            return Err(RaftError::Corrupt {
                what: "append",
                detail: format!(
                    "entries {}..={} do not follow the log {}..={}",
                    first.index, last.index, self.truncated.0, self.last_index
                ),
            });
        }
        let mut batch = sled::Batch::default();
        for e in entries {
            batch.insert(&be(e.index), self.seal_entry(e)?);
        }
        for stale in last.index + 1..=self.last_index {
            batch.remove(&be(stale));
        }
        self.log
            .apply_batch(batch)
            .map_err(RaftError::sled("append"))?;
        self.last_index = last.index;
        Ok(())
    }

    /// Records the hard state. Not durable until [`flush`](Self::flush).
    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<(), RaftError> {
        self.meta
            .insert(HARD_STATE, encode("hard state", hs)?)
            .map_err(RaftError::sled("write hard state"))?;
        self.hard_state = hs.clone();
        Ok(())
    }

    /// Records a new commit index in the hard state.
    pub fn set_commit(&mut self, commit: u64) -> Result<(), RaftError> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    /// Metadata of the latest snapshot (index 0 before the first one).
    pub fn snapshot_metadata(&self) -> &SnapshotMetadata {
        &self.snapshot_meta
    }

    /// The data of the latest snapshot (empty before the first one).
    pub fn snapshot_data(&self) -> Result<Vec<u8>, RaftError> {
        match self
            .meta
            .get(SNAPSHOT_DATA)
            .map_err(RaftError::sled("read snapshot"))?
        {
            Some(sealed) => Ok(self.key.open(&sealed)?),
            None => Ok(Vec::new()),
        }
    }

    /// First index still in the log.
    pub fn first(&self) -> u64 {
        self.truncated.0 + 1
    }

    /// The highest index a leader wanted a snapshot at that was not available (0: none).
    pub fn snapshot_wanted(&self) -> u64 {
        self.snapshot_wanted.load(Ordering::Relaxed)
    }

    /// Stores a snapshot this node took of its own state (`meta.index` ≤ applied), fsyncs it,
    /// then compacts the log up to `meta.index - keep` (entries behind the snapshot stay for slow
    /// followers).
    pub fn save_snapshot(
        &mut self,
        meta: SnapshotMetadata,
        data: &[u8],
        keep: u64,
    ) -> Result<(), RaftError> {
        let compact_to = meta.index.saturating_sub(keep).min(self.last_index);
        let truncated = if compact_to > self.truncated.0 {
            let term = raft::Storage::term(self, compact_to)?;
            (compact_to, term)
        } else {
            self.truncated
        };
        // The commit index is not fsynced on its own (see the node loop), so the stored one may
        // be behind the snapshot, which raft-rs refuses on restart: store it with the snapshot.
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        self.write_snapshot(&meta, data, truncated, Some(&hs))?;
        self.hard_state = hs;
        self.snapshot_meta = meta;
        self.flush()?;
        self.compact_below(truncated)
    }

    /// Installs a snapshot received from the leader: it replaces the whole log. Fsyncs.
    pub fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<(), RaftError> {
        let meta = snap.get_metadata();
        let mut hs = self.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = meta.index;
        let truncated = (meta.index, meta.term);
        self.write_snapshot(meta, &snap.data, truncated, Some(&hs))?;
        self.snapshot_meta = meta.clone();
        self.hard_state = hs;
        self.flush()?;
        let mut batch = sled::Batch::default();
        for key in self.log.iter().keys() {
            batch.remove(key.map_err(RaftError::sled("read log"))?);
        }
        self.log
            .apply_batch(batch)
            .map_err(RaftError::sled("clear log"))?;
        self.truncated = truncated;
        self.last_index = truncated.0;
        Ok(())
    }

    /// Writes snapshot metadata + data + truncation point (+ hard state) in one atomic batch.
    fn write_snapshot(
        &self,
        meta: &SnapshotMetadata,
        data: &[u8],
        truncated: (u64, u64),
        hs: Option<&HardState>,
    ) -> Result<(), RaftError> {
        let mut batch = sled::Batch::default();
        batch.insert(SNAPSHOT_META, encode("snapshot metadata", meta)?);
        batch.insert(SNAPSHOT_DATA, self.key.seal(data));
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&be(truncated.0));
        t[8..].copy_from_slice(&be(truncated.1));
        batch.insert(TRUNCATED, &t);
        if let Some(hs) = hs {
            batch.insert(HARD_STATE, encode("hard state", hs)?);
        }
        self.meta
            .apply_batch(batch)
            .map_err(RaftError::sled("write snapshot"))
    }

    /// Removes log entries up to and including `truncated.0` (also stale ones from a crash).
    fn compact_below(&mut self, truncated: (u64, u64)) -> Result<(), RaftError> {
        let mut batch = sled::Batch::default();
        for key in self.log.range(..=be(truncated.0)).keys() {
            batch.remove(key.map_err(RaftError::sled("read log"))?);
        }
        self.log
            .apply_batch(batch)
            .map_err(RaftError::sled("compact log"))?;
        self.truncated = truncated;
        Ok(())
    }

    /// An entry as stored: its payload (`data`, `context`) encrypted.
    fn seal_entry(&self, e: &Entry) -> Result<Vec<u8>, RaftError> {
        let mut stored = e.clone();
        if !e.data.is_empty() {
            stored.data = self.key.seal(&e.data).into();
        }
        if !e.context.is_empty() {
            stored.context = self.key.seal(&e.context).into();
        }
        encode("entry", &stored)
    }

    /// An entry read back, its payload decrypted.
    fn open_entry(&self, stored: &[u8]) -> raft::Result<Entry> {
        let mut e = Entry::parse_from_bytes(stored)?;
        if !e.data.is_empty() {
            e.data = self.key.open(&e.data).map_err(other)?.into();
        }
        if !e.context.is_empty() {
            e.context = self.key.open(&e.context).map_err(other)?.into();
        }
        Ok(e)
    }

    /// The term of the stored entry at `index` (no decryption needed).
    fn read_term(&self, index: u64) -> raft::Result<u64> {
        match self.log.get(be(index)).map_err(other)? {
            Some(v) => Ok(Entry::parse_from_bytes(&v)?.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }
}

impl raft::Storage for SledStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        // The state machine is rebuilt from the snapshot on start, so raft resumes from the conf
        // state at the snapshot and re-applies every later entry (conf changes included).
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.snapshot_meta.get_conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        for item in self.log.range(be(low)..be(high)) {
            let (_, v) = item.map_err(other)?;
            let e = self.open_entry(&v)?;
            size += u64::from(e.compute_size());
            if !out.is_empty() && size > max_size {
                break;
            }
            if e.index != low + out.len() as u64 {
                return Err(raft::Error::Store(StorageError::Unavailable));
            }
            out.push(e);
        }
        if out.is_empty() && low < high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated.0 {
            return Ok(self.truncated.1);
        }
        if idx < self.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        self.read_term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let index = self.snapshot_meta.index;
        if index == 0 || index < request_index {
            // Ask the node loop for a fresh snapshot; raft retries later.
            self.snapshot_wanted
                .fetch_max(request_index.max(1), Ordering::Relaxed);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snap = Snapshot::default();
        snap.set_metadata(self.snapshot_meta.clone());
        snap.data = self.snapshot_data().map_err(other)?.into();
        Ok(snap)
    }
}
