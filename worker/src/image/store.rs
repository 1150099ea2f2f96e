//! The node's image store under `<state-dir>/images`:
//!
//! ```text
//! images/
//!   images.json            image records (id, tags, digests, layers), replaced atomically
//!   blobs/sha256/<hex>     manifests' blobs by digest: configs and layers as received
//!   layers/<chain hex>/    each unpacked layer, by chain id: an overlayfs lowerdir
//!   tmp/                   work in progress; emptied when the store opens
//! ```
//!
//! A layer is shared by every image whose stack contains it (same chain id);
//! an image is held by the tasks that use it. Nothing is renamed into
//! `blobs/` or `layers/` before its digest has been checked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::config::ConfigFile;
use super::digest::{chain_ids, hex_of, sha256_digest, short_id};
use super::reference::{Reference, check_digest};
use super::registry::Registry;
use super::unpack::unpack_layer;
use super::{ImageConfig, ImageError, RegistryAuth, RegistryOptions, ResolvedImage};

/// One image as the store records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest (`sha256:...`): the image id.
    pub id: String,
    /// Full references naming it (`docker.io/library/alpine:latest`), sorted.
    pub repo_tags: Vec<String>,
    /// `name@sha256:...` of the manifests it was pulled by, sorted.
    pub repo_digests: Vec<String>,
    /// When the image was built (RFC 3339, from its config; may be empty).
    pub created: String,
    /// `os/architecture` from the config.
    pub platform: String,
    /// Uncompressed layer digests, lowest first.
    pub diff_ids: Vec<String>,
    /// The blobs the layers were unpacked from (same order), kept for `image save`.
    pub layer_blobs: Vec<String>,
    /// Bytes of the unpacked layers (Docker's SIZE column).
    pub size: u64,
}

impl ImageRecord {
    /// The chain ids of its layers, lowest first.
    pub fn chain_ids(&self) -> Vec<String> {
        chain_ids(&self.diff_ids)
    }
}

/// What `image rm`/`image prune` did, line by line as Docker prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// A tag or digest reference removed from an image that stays.
    Untagged(String),
    /// An image deleted.
    Deleted(String),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    images: BTreeMap<String, ImageRecord>,
    /// Task id → image id (in memory only: a restarted daemon holds again
    /// for the tasks it adopts).
    #[serde(skip)]
    holds: BTreeMap<String, String>,
}

type InFlight = tokio::sync::OnceCell<Result<ResolvedImage, ImageError>>;

/// The content-addressed image store of one node. Cheap to clone.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    registry: Registry,
    state: Mutex<State>,
    /// One pull per normalized reference at a time; callers share it.
    in_flight: Mutex<HashMap<String, Arc<InFlight>>>,
    /// Names of temporary directories.
    tmp_counter: AtomicU64,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

fn mkdir_private(path: &Path) -> Result<(), ImageError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| ImageError::io(path, e))
}

impl ImageStore {
    /// Opens (creating if needed) the store under `root`, removing what an
    /// earlier run left half-made in `tmp/`.
    pub fn open(root: PathBuf, opts: RegistryOptions) -> Result<Self, ImageError> {
        mkdir_private(&root)?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
            .map_err(|e| ImageError::io(&root, e))?;
        for sub in ["blobs/sha256", "layers"] {
            mkdir_private(&root.join(sub))?;
        }
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
        }
        mkdir_private(&tmp)?;
        let index = root.join("images.json");
        let mut state: State = match fs::read(&index) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::invalid(index.display().to_string(), e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(ImageError::io(&index, e)),
        };
        // An image whose layers are gone (removed by hand) is forgotten.
        state.images.retain(|_, rec| {
            rec.chain_ids()
                .iter()
                .all(|c| root.join("layers").join(hex_of(c)).is_dir())
        });
        Ok(ImageStore {
            inner: Arc::new(Inner {
                registry: Registry::new(opts)?,
                root,
                state: Mutex::new(state),
                in_flight: Mutex::new(HashMap::new()),
                tmp_counter: AtomicU64::new(0),
            }),
        })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh directory (or file path) under `tmp/`.
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        let n = self.inner.tmp_counter.fetch_add(1, Ordering::Relaxed);
        self.inner
            .root
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    /// Where the blob `digest` lives.
    pub(crate) fn blob_path(&self, digest: &str) -> PathBuf {
        self.inner.root.join("blobs/sha256").join(hex_of(digest))
    }

    /// Where the layer with chain id `chain` is unpacked.
    pub fn layer_path(&self, chain: &str) -> PathBuf {
        self.inner.root.join("layers").join(hex_of(chain))
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Resolves `reference` for a task: the local image if the store has
    /// it, otherwise a pull (mirrors first for Docker Hub). Concurrent
    /// callers for one reference share one pull.
    pub async fn resolve(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<ResolvedImage, ImageError> {
        let parsed = Reference::parse(reference)?;
        if let Some(local) = self.lookup_reference(&parsed) {
            return self.resolved(&local, &parsed);
        }
        self.pull_shared(&parsed, auth).await
    }

    /// Pulls `reference` from its registry even if a local copy exists
    /// (`mini image pull`); when the registry is unreachable or lacks it, a
    /// local copy is used instead, as Docker does for tasks.
    pub async fn pull(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<ResolvedImage, ImageError> {
        let parsed = Reference::parse(reference)?;
        self.pull_shared(&parsed, auth).await
    }

    async fn pull_shared(
        &self,
        parsed: &Reference,
        auth: Option<&RegistryAuth>,
    ) -> Result<ResolvedImage, ImageError> {
        let key = parsed.to_string();
        let cell = {
            let mut map = self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let result = cell
            .get_or_init(|| async {
                let result = self.pull_now(parsed, auth).await;
                self.inner
                    .in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
                result
            })
            .await;
        result.clone()
    }

    async fn pull_now(
        &self,
        parsed: &Reference,
        auth: Option<&RegistryAuth>,
    ) -> Result<ResolvedImage, ImageError> {
        match super::registry::pull(self, parsed, auth).await {
            Ok(record) => self.resolved(&record, parsed),
            Err(err) => match self.lookup_reference(parsed) {
                Some(local) if !matches!(err, ImageError::DigestMismatch { .. }) => {
                    tracing::warn!(reference = %parsed, %err, "pull failed; using the local image");
                    self.resolved(&local, parsed)
                }
                _ => Err(err),
            },
        }
    }

    /// What a task needs from a local image.
    fn resolved(
        &self,
        record: &ImageRecord,
        parsed: &Reference,
    ) -> Result<ResolvedImage, ImageError> {
        let config = self.config_of(record)?;
        Ok(ResolvedImage {
            id: record.id.clone(),
            reference: parsed.to_string(),
            layers: record
                .chain_ids()
                .iter()
                .map(|c| self.layer_path(c))
                .collect(),
            config,
        })
    }

    /// The image configuration of a stored image.
    pub fn config_of(&self, record: &ImageRecord) -> Result<ImageConfig, ImageError> {
        Ok(ConfigFile::parse(&self.config_bytes(&record.id)?)?.image_config())
    }

    /// The raw config blob of an image id.
    pub fn config_bytes(&self, id: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(id);
        fs::read(&path).map_err(|e| ImageError::io(path, e))
    }

    /// The image a reference names locally (tag or digest).
    fn lookup_reference(&self, parsed: &Reference) -> Option<ImageRecord> {
        let state = self.state();
        let by_digest = parsed
            .digest
            .as_ref()
            .map(|d| format!("{}@{d}", parsed.name()));
        let by_tag = parsed
            .tag
            .as_ref()
            .map(|t| format!("{}:{t}", parsed.name()));
        state
            .images
            .values()
            .find(|rec| match (&by_digest, &by_tag) {
                (Some(d), _) => rec.repo_digests.contains(d),
                (None, Some(t)) => rec.repo_tags.contains(t),
                (None, None) => false,
            })
            .cloned()
    }

    /// An image by reference, full id, `sha256:` id or unique id prefix (what
    /// `docker image inspect/rm` accept).
    pub fn find(&self, query: &str) -> Result<ImageRecord, ImageError> {
        if let Ok(parsed) = Reference::parse(query)
            && let Some(rec) = self.lookup_reference(&parsed)
        {
            return Ok(rec);
        }
        let prefix = query.strip_prefix("sha256:").unwrap_or(query);
        if !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            let state = self.state();
            let matches: Vec<&ImageRecord> = state
                .images
                .values()
                .filter(|r| hex_of(&r.id).starts_with(prefix))
                .collect();
            if matches.len() == 1 {
                return Ok(matches[0].clone());
            }
        }
        Err(ImageError::NotFound(query.to_string()))
    }

    /// Every image, newest first (Docker's `image ls` order).
    pub fn list(&self) -> Vec<ImageRecord> {
        let mut all: Vec<ImageRecord> = self.state().images.values().cloned().collect();
        all.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        all
    }

    /// Task ids holding the image `id`.
    pub fn holders(&self, id: &str) -> Vec<String> {
        self.state()
            .holds
            .iter()
            .filter(|(_, image)| *image == id)
            .map(|(task, _)| task.clone())
            .collect()
    }

    /// Marks image `image_id` (and so its layers) as used by `task_id`: it
    /// cannot be removed until [`ImageStore::release`].
    pub fn hold(&self, image_id: &str, task_id: &str) -> Result<(), ImageError> {
        let mut state = self.state();
        if !state.images.contains_key(image_id) {
            return Err(ImageError::NotFound(image_id.to_string()));
        }
        state
            .holds
            .insert(task_id.to_string(), image_id.to_string());
        Ok(())
    }

    /// Drops `task_id`'s hold (no-op when it holds nothing).
    pub fn release(&self, task_id: &str) {
        self.state().holds.remove(task_id);
    }

    /// Records an image whose blobs and layers are all in place, adding
    /// `tags`/`digests` to it (moving tags away from any other image, as
    /// Docker does).
    pub(crate) fn commit(
        &self,
        mut record: ImageRecord,
        tags: &[String],
        digests: &[String],
    ) -> Result<ImageRecord, ImageError> {
        let mut state = self.state();
        for other in state.images.values_mut() {
            if other.id != record.id {
                other.repo_tags.retain(|t| !tags.contains(t));
            }
        }
        if let Some(existing) = state.images.get(&record.id) {
            record.repo_tags.extend(existing.repo_tags.iter().cloned());
            record
                .repo_digests
                .extend(existing.repo_digests.iter().cloned());
        }
        record.repo_tags.extend(tags.iter().cloned());
        record.repo_digests.extend(digests.iter().cloned());
        let dedup = |v: &mut Vec<String>| {
            let set: BTreeSet<String> = v.drain(..).collect();
            v.extend(set);
        };
        dedup(&mut record.repo_tags);
        dedup(&mut record.repo_digests);
        state.images.insert(record.id.clone(), record.clone());
        self.save_index(&state)?;
        Ok(record)
    }

    fn save_index(&self, state: &State) -> Result<(), ImageError> {
        let path = self.inner.root.join("images.json");
        let tmp = self.tmp_path("images.json");
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| ImageError::invalid("image index", format!("cannot encode: {e}")))?;
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| ImageError::io(&path, e))
    }

    /// Stores a blob already in memory after checking it hashes to `digest`.
    pub(crate) fn put_blob(
        &self,
        digest: &str,
        bytes: &[u8],
        what: &str,
    ) -> Result<(), ImageError> {
        check_digest(digest).map_err(|e| ImageError::invalid(what, e.to_string()))?;
        let actual = sha256_digest(bytes);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: what.to_string(),
                expected: digest.to_string(),
                actual,
            });
        }
        let path = self.blob_path(digest);
        if path.exists() {
            return Ok(());
        }
        let tmp = self.tmp_path("blob");
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            ImageError::io(&path, e)
        })
    }

    /// Moves a verified blob file from `tmp/` into place.
    pub(crate) fn adopt_blob(&self, tmp: &Path, digest: &str) -> Result<(), ImageError> {
        let path = self.blob_path(digest);
        fs::rename(tmp, &path).map_err(|e| ImageError::io(&path, e))
    }

    /// Unpacks the blob file `blob` as the layer `chain` whose tar must hash
    /// to `diff_id`; blocking. The layer appears whole or not at all.
    pub(crate) fn unpack_blob_file(
        &self,
        blob: &Path,
        diff_id: &str,
        chain: &str,
    ) -> Result<u64, ImageError> {
        let file = fs::File::open(blob).map_err(|e| ImageError::io(blob, e))?;
        self.unpack_from(file, diff_id, chain)
    }

    /// Unpacks a layer stream as the layer `chain`; blocking.
    pub(crate) fn unpack_from(
        &self,
        reader: impl std::io::Read,
        diff_id: &str,
        chain: &str,
    ) -> Result<u64, ImageError> {
        let what = format!("layer {}", short_id(diff_id));
        let tmp = self.tmp_path("layer");
        mkdir_private(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
            .map_err(|e| ImageError::io(&tmp, e))?;
        let result = unpack_layer(reader, &tmp, &what).and_then(|u| {
            if u.diff_id != diff_id {
                return Err(ImageError::DigestMismatch {
                    what: what.clone(),
                    expected: diff_id.to_string(),
                    actual: u.diff_id,
                });
            }
            Ok(u.size)
        });
        match result {
            Ok(_) => self
                .adopt_layer(&tmp, chain)
                .map(|()| disk_usage(&self.layer_path(chain))),
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    /// Moves an unpacked, verified layer directory into place (another pull
    /// may have put the same layer there first: then this copy goes).
    pub(crate) fn adopt_layer(&self, tmp: &Path, chain: &str) -> Result<(), ImageError> {
        let path = self.layer_path(chain);
        match fs::rename(tmp, &path) {
            Ok(()) => Ok(()),
            Err(_) if path.is_dir() => {
                let _ = fs::remove_dir_all(tmp);
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_dir_all(tmp);
                Err(ImageError::io(path, e))
            }
        }
    }

    /// Whether the layer `chain` is unpacked.
    pub fn has_layer(&self, chain: &str) -> bool {
        self.layer_path(chain).is_dir()
    }

    /// Removes a reference or an image (`mini image rm`). A reference that
    /// is one of several tags only untags; the last name deletes the image,
    /// then its layers and blobs no other image uses. An image used by a
    /// task is refused, with Docker's wording.
    pub fn remove(&self, query: &str, force: bool) -> Result<Vec<Removal>, ImageError> {
        let record = self.find(query)?;
        let holders = self.holders(&record.id);
        // `alpine:3.19` untags; an id (or a prefix of one) deletes.
        let named = Reference::parse(query)
            .ok()
            .map(|p| p.to_string())
            .filter(|n| record.repo_tags.contains(n) || record.repo_digests.contains(n));
        if let Some(task) = holders.first() {
            let task = task.chars().take(12).collect();
            return Err(if force {
                ImageError::InUseForced {
                    image: short_id(&record.id),
                    task,
                }
            } else {
                ImageError::InUse {
                    reference: query.to_string(),
                    task,
                    image: short_id(&record.id),
                }
            });
        }
        let mut state = self.state();
        let mut out = Vec::new();
        if let Some(name) = named {
            let parsed = Reference::parse(&name)?;
            let rec = state.images.get_mut(&record.id).expect("found above");
            rec.repo_tags.retain(|t| *t != name);
            rec.repo_digests.retain(|d| *d != name);
            out.push(Removal::Untagged(parsed.familiar_string()));
            if !rec.repo_tags.is_empty() {
                self.save_index(&state)?;
                return Ok(out);
            }
            for d in std::mem::take(&mut rec.repo_digests) {
                if let Ok(p) = Reference::parse(&d) {
                    out.push(Removal::Untagged(p.familiar_string()));
                }
            }
        } else if record.repo_tags.len() > 1 && !force {
            return Err(ImageError::MultipleRepositories {
                image: short_id(&record.id),
            });
        } else {
            for t in record.repo_tags.iter().chain(&record.repo_digests) {
                if let Ok(p) = Reference::parse(t) {
                    out.push(Removal::Untagged(p.familiar_string()));
                }
            }
        }
        state.images.remove(&record.id);
        out.push(Removal::Deleted(record.id.clone()));
        self.save_index(&state)?;
        self.collect_garbage(&state);
        Ok(out)
    }

    /// Removes unused images (`mini image prune`): dangling ones (no tag),
    /// or with `all` every image no task uses. Returns what went and the
    /// bytes freed.
    pub fn prune(&self, all: bool) -> Result<(Vec<Removal>, u64), ImageError> {
        let mut state = self.state();
        let held: BTreeSet<String> = state.holds.values().cloned().collect();
        let victims: Vec<ImageRecord> = state
            .images
            .values()
            .filter(|r| !held.contains(&r.id) && (all || r.repo_tags.is_empty()))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for rec in &victims {
            for t in rec.repo_tags.iter().chain(&rec.repo_digests) {
                if let Ok(p) = Reference::parse(t) {
                    out.push(Removal::Untagged(p.familiar_string()));
                }
            }
            out.push(Removal::Deleted(rec.id.clone()));
            state.images.remove(&rec.id);
        }
        self.save_index(&state)?;
        let freed = self.collect_garbage(&state);
        Ok((out, freed))
    }

    /// Deletes layers and blobs no image names; returns bytes freed.
    fn collect_garbage(&self, state: &State) -> u64 {
        let mut keep_layers = BTreeSet::new();
        let mut keep_blobs = BTreeSet::new();
        for rec in state.images.values() {
            keep_blobs.insert(hex_of(&rec.id).to_string());
            keep_blobs.extend(rec.layer_blobs.iter().map(|b| hex_of(b).to_string()));
            keep_layers.extend(rec.chain_ids().iter().map(|c| hex_of(c).to_string()));
        }
        let mut freed = 0;
        for (dir, keep) in [("layers", &keep_layers), ("blobs/sha256", &keep_blobs)] {
            let dir = self.inner.root.join(dir);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if keep.contains(&name) {
                    continue;
                }
                let path = entry.path();
                freed += disk_usage(&path);
                let removed = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                if let Err(err) = removed {
                    tracing::warn!(path = %path.display(), %err, "cannot remove unused image data");
                }
            }
        }
        freed
    }
}

/// Bytes used by a file or a tree (not following symlinks).
pub(crate) fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
