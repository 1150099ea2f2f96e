//! `image load` and `image save`: `docker save` tarballs (a `manifest.json`
//! naming a config and layer files per image) and OCI image layout archives
//! (`index.json` + `blobs/sha256/...`), plain or gzip-compressed, from a file
//! or a stream.
//!
//! A load first spools the archive into the store's `tmp/` (archives are
//! read in order, the formats need random access), then checks every blob:
//! the config must hash to its name, each layer's tar to the config's diff
//! id. Nothing is recorded unless the whole image is good.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::ImageError;
use super::config::ConfigFile;
use super::digest::{chain_ids, hex_of, sha256_digest};
use super::reference::{Reference, check_digest};
use super::store::{ImageRecord, ImageStore};
use super::unpack::Compression;

/// One image an archive held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// Its id (config digest).
    pub id: String,
    /// The references it was tagged with, as Docker shows them.
    pub tags: Vec<String>,
}

/// A `docker save` `manifest.json` entry.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct OciIndex {
    manifests: Vec<OciEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciEntry {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<OciPlatform>,
}

#[derive(Debug, Deserialize)]
struct OciPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

#[derive(Debug, Deserialize)]
struct OciManifest {
    config: OciDescriptor,
    layers: Vec<OciDescriptor>,
}

#[derive(Debug, Deserialize)]
struct OciDescriptor {
    digest: String,
}

fn bad(reason: impl Into<String>) -> ImageError {
    ImageError::invalid("archive", reason)
}

impl ImageStore {
    /// Loads every image of a `docker save` or OCI layout archive (blocking).
    pub fn load(&self, archive: impl Read) -> Result<Vec<LoadedImage>, ImageError> {
        let dir = self.tmp_path("load");
        let result = spool(archive, &dir).and_then(|()| self.load_spooled(&dir));
        let _ = fs::remove_dir_all(&dir);
        result
    }

    fn load_spooled(&self, dir: &Path) -> Result<Vec<LoadedImage>, ImageError> {
        let manifest = dir.join("manifest.json");
        if manifest.is_file() {
            let bytes = fs::read(&manifest).map_err(|e| ImageError::io(&manifest, e))?;
            let entries: Vec<SaveEntry> =
                serde_json::from_slice(&bytes).map_err(|e| bad(format!("manifest.json: {e}")))?;
            if entries.is_empty() {
                return Err(bad("manifest.json lists no image"));
            }
            let mut out = Vec::new();
            for entry in entries {
                let config = inside(dir, &entry.config)?;
                let layers = entry
                    .layers
                    .iter()
                    .map(|l| inside(dir, l))
                    .collect::<Result<Vec<_>, _>>()?;
                let tags = entry.repo_tags.unwrap_or_default();
                out.push(self.load_one(&config, None, &layers, &tags)?);
            }
            return Ok(out);
        }
        let index = dir.join("index.json");
        if index.is_file() {
            return self.load_oci(dir, &index);
        }
        Err(bad(
            "neither a docker save tarball (manifest.json) nor an OCI image layout (index.json)",
        ))
    }

    fn load_oci(&self, dir: &Path, index: &Path) -> Result<Vec<LoadedImage>, ImageError> {
        let bytes = fs::read(index).map_err(|e| ImageError::io(index, e))?;
        let index: OciIndex =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("index.json: {e}")))?;
        let mut out = Vec::new();
        for entry in index.manifests {
            let name = entry
                .annotations
                .get("io.containerd.image.name")
                .or_else(|| entry.annotations.get("org.opencontainers.image.ref.name"))
                .filter(|n| n.contains(['/', ':']))
                .cloned();
            let mut manifest_digest = entry.digest.clone();
            let mut body = read_blob(dir, &manifest_digest)?;
            if entry.media_type.contains("index") || entry.media_type.contains("manifest.list") {
                let nested: OciIndex = serde_json::from_slice(&body)
                    .map_err(|e| bad(format!("index {manifest_digest}: {e}")))?;
                let found: Vec<String> = nested
                    .manifests
                    .iter()
                    .filter_map(|m| m.platform.as_ref())
                    .map(|p| format!("{}/{}", p.os, p.architecture))
                    .collect();
                let pick = nested
                    .manifests
                    .iter()
                    .find(|m| {
                        m.platform
                            .as_ref()
                            .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                    })
                    .ok_or_else(|| ImageError::Platform {
                        found: found.join(", "),
                    })?;
                manifest_digest = pick.digest.clone();
                body = read_blob(dir, &manifest_digest)?;
            }
            let manifest: OciManifest = serde_json::from_slice(&body)
                .map_err(|e| bad(format!("manifest {manifest_digest}: {e}")))?;
            let config = blob_file(dir, &manifest.config.digest)?;
            let layers = manifest
                .layers
                .iter()
                .map(|l| blob_file(dir, &l.digest))
                .collect::<Result<Vec<_>, _>>()?;
            let tags: Vec<String> = name.into_iter().collect();
            out.push(self.load_one(&config, Some(&manifest.config.digest), &layers, &tags)?);
        }
        if out.is_empty() {
            return Err(bad("index.json lists no image"));
        }
        Ok(out)
    }

    /// Verifies and stores one image: config, then layers, then the record.
    fn load_one(
        &self,
        config_path: &Path,
        config_digest: Option<&str>,
        layers: &[PathBuf],
        tags: &[String],
    ) -> Result<LoadedImage, ImageError> {
        let config_bytes = fs::read(config_path).map_err(|e| ImageError::io(config_path, e))?;
        let id = sha256_digest(&config_bytes);
        // Legacy docker save names the config <hex>.json: check it too.
        let named = config_digest.map(str::to_string).or_else(|| {
            let stem = config_path.file_stem()?.to_str()?;
            (stem.len() == 64).then(|| format!("sha256:{stem}"))
        });
        if let Some(expected) = named
            && expected != id
        {
            return Err(ImageError::DigestMismatch {
                what: "image config".into(),
                expected,
                actual: id,
            });
        }
        let config = ConfigFile::parse(&config_bytes)?;
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(bad(format!(
                "image {} lists {} layers, its config {}",
                &hex_of(&id)[..12],
                layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let mut parsed_tags = Vec::new();
        for t in tags {
            let r = Reference::parse(t).map_err(|e| bad(format!("tag {t:?}: {e}")))?;
            parsed_tags.push(r.to_string());
        }
        self.put_blob(&id, &config_bytes, "image config")?;
        let chains = chain_ids(&config.rootfs.diff_ids);
        let mut layer_blobs = Vec::new();
        let mut size = 0;
        for ((path, diff_id), chain) in layers.iter().zip(&config.rootfs.diff_ids).zip(&chains) {
            let blob = hash_file(path)?;
            let stored = self.blob_path(&blob);
            if !stored.exists() {
                // Same file system: a link, not a copy (the spool goes anyway).
                fs::hard_link(path, &stored).map_err(|e| ImageError::io(&stored, e))?;
            }
            if !self.has_layer(chain) {
                size += self.unpack_blob_file(&stored, diff_id, chain)?;
            } else {
                size += super::store::disk_usage(&self.layer_path(chain));
            }
            layer_blobs.push(blob);
        }
        let record = ImageRecord {
            id: id.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            created: config.created.clone().unwrap_or_default(),
            platform: format!("{}/{}", config.os, config.architecture),
            diff_ids: config.rootfs.diff_ids.clone(),
            layer_blobs,
            size,
        };
        self.commit(record, &parsed_tags, &[])?;
        Ok(LoadedImage {
            id,
            tags: parsed_tags
                .iter()
                .filter_map(|t| Reference::parse(t).ok())
                .map(|r| r.familiar_string())
                .collect(),
        })
    }
}

/// Writes a `docker save` tarball of the images `queries` name (blocking):
/// `manifest.json` and the blobs under `blobs/sha256/`.
pub fn save_images(
    store: &ImageStore,
    queries: &[String],
    out: impl Write,
) -> Result<(), ImageError> {
    let mut entries = Vec::new();
    let mut blobs: Vec<String> = Vec::new();
    for q in queries {
        let rec = store.find(q)?;
        let named = Reference::parse(q)
            .ok()
            .map(|r| r.to_string())
            .filter(|n| rec.repo_tags.contains(n));
        let tags: Vec<String> = match named {
            Some(n) => vec![n],
            None => rec.repo_tags.clone(),
        };
        entries.push(SaveEntry {
            config: format!("blobs/sha256/{}", hex_of(&rec.id)),
            repo_tags: Some(
                tags.iter()
                    .filter_map(|t| Reference::parse(t).ok())
                    .map(|r| r.familiar_string())
                    .collect(),
            ),
            layers: rec
                .layer_blobs
                .iter()
                .map(|b| format!("blobs/sha256/{}", hex_of(b)))
                .collect(),
        });
        for b in std::iter::once(&rec.id).chain(&rec.layer_blobs) {
            if !blobs.contains(b) {
                blobs.push(b.clone());
            }
        }
    }
    let io_err = |e: io::Error| ImageError::io("image save output", e);
    let mut tar = tar::Builder::new(out);
    let mut add = |path: &str, size: u64, data: &mut dyn Read| -> io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_mtime(0);
        tar.append_data(&mut h, path, data)
    };
    for b in &blobs {
        let path = store.blob_path(b);
        let mut f = fs::File::open(&path).map_err(|e| ImageError::io(&path, e))?;
        let size = f.metadata().map_err(|e| ImageError::io(&path, e))?.len();
        add(&format!("blobs/sha256/{}", hex_of(b)), size, &mut f).map_err(io_err)?;
    }
    let manifest = serde_json::to_vec(&entries)
        .map_err(|e| ImageError::invalid("manifest.json", e.to_string()))?;
    add("manifest.json", manifest.len() as u64, &mut &manifest[..]).map_err(io_err)?;
    tar.into_inner().and_then(|mut w| w.flush()).map_err(io_err)
}

/// Extracts an archive's regular files (and symlinks that stay inside) into
/// `dir`; gzip-compressed archives are accepted.
fn spool(archive: impl Read, dir: &Path) -> Result<(), ImageError> {
    fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
    let mut buffered = BufReader::with_capacity(256 << 10, archive);
    let head = buffered
        .fill_buf()
        .map_err(|e| ImageError::io("archive", e))?;
    if head.is_empty() {
        return Err(bad("empty input (expected a tar archive)"));
    }
    let reader: Box<dyn Read> = match Compression::detect(head) {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| bad(format!("zstd: {e}")))?,
        ),
        Compression::None => Box::new(buffered),
    };
    let mut tar = tar::Archive::new(reader);
    let entries = tar
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    let mut saw_any = false;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("not a tar archive: {e}")))?;
        saw_any = true;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_symlink() || kind.is_dir()) {
            continue;
        }
        // unpack_in refuses `..`, absolute paths and symlinked parents.
        let ok = entry
            .unpack_in(dir)
            .map_err(|e| bad(format!("cannot extract: {e}")))?;
        if !ok {
            let path = entry
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Err(bad(format!("entry {path:?} escapes the archive")));
        }
    }
    if !saw_any {
        return Err(bad("not a tar archive"));
    }
    Ok(())
}

/// `rel` under `dir`, refusing anything (symlinks included) that leads out.
fn inside(dir: &Path, rel: &str) -> Result<PathBuf, ImageError> {
    let path = dir.join(rel);
    let real = path
        .canonicalize()
        .map_err(|_| bad(format!("{rel:?} is missing from the archive")))?;
    let root = dir.canonicalize().map_err(|e| ImageError::io(dir, e))?;
    if !real.starts_with(&root) || !real.is_file() {
        return Err(bad(format!("{rel:?} is not a file inside the archive")));
    }
    Ok(real)
}

fn blob_file(dir: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    check_digest(digest).map_err(|e| bad(e.to_string()))?;
    inside(dir, &format!("blobs/sha256/{}", hex_of(digest)))
}

/// A small blob of an OCI layout, checked against its digest.
fn read_blob(dir: &Path, digest: &str) -> Result<Vec<u8>, ImageError> {
    let path = blob_file(dir, digest)?;
    let bytes = fs::read(&path).map_err(|e| ImageError::io(&path, e))?;
    let actual = sha256_digest(&bytes);
    if actual != digest {
        return Err(ImageError::DigestMismatch {
            what: "manifest".into(),
            expected: digest.to_string(),
            actual,
        });
    }
    Ok(bytes)
}

fn hash_file(path: &Path) -> Result<String, ImageError> {
    let mut f = fs::File::open(path).map_err(|e| ImageError::io(path, e))?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h).map_err(|e| ImageError::io(path, e))?;
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}
