//! Pulls from a registry with `oci-client`: Docker Hub through the
//! configured mirrors first, plain HTTP only for insecure registries (and
//! `http://` mirrors), manifest lists resolved to linux/amd64, every blob's
//! digest checked before it is used, retries with backoff, and downloads
//! resumed where they stopped.
//!
//! A layer is unpacked while it downloads (the tar stream is hashed and
//! unpacked on a blocking thread as bytes arrive); the result is renamed into
//! the store only once both the blob digest and the diff id match. After a
//! network error the partial blob is resumed with a `Range` request and
//! unpacked from disk.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth as OciAuth;
use oci_client::{Client, Reference as OciReference};
use sha2::{Digest as _, Sha256};

use super::config::ConfigFile;
use super::digest::{chain_ids, short_id};
use super::reference::{DOCKER_HUB, Reference, check_digest};
use super::store::{ImageRecord, ImageStore};
use super::{ImageError, RegistryAuth, RegistryOptions};

/// Attempts per request before a registry counts as unreachable.
const ATTEMPTS: u32 = 4;
/// First retry delay; doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Layers downloaded at once.
const PARALLEL_LAYERS: usize = 3;

/// Layer media types this store unpacks (compression is sniffed anyway).
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];

/// The registry settings of one store. Each pull gets its own client, so
/// credentials and tokens of one pull never serve another.
pub(crate) struct Registry {
    mirrors: Vec<String>,
    /// `host:port` spoken to in plain HTTP (insecure registries, http mirrors).
    insecure: Vec<String>,
}

impl Registry {
    /// Settings for `opts`. Registries named insecure (and `http://`
    /// mirrors) are spoken to in plain HTTP; all others in HTTPS.
    pub fn new(opts: RegistryOptions) -> Result<Registry, ImageError> {
        // reqwest is built without a default TLS provider: use ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut insecure = opts.insecure_registries.clone();
        let mut mirrors = Vec::new();
        for url in &opts.mirrors {
            let (plain, host) = mirror_host(url)?;
            if plain {
                insecure.push(host.clone());
            }
            mirrors.push(host);
        }
        Ok(Registry { mirrors, insecure })
    }

    /// A fresh distribution client.
    fn client(&self) -> Client {
        Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(self.insecure.clone()),
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(5)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: "mini",
            ..ClientConfig::default()
        })
    }

    /// Checks `auth` against `registry` (`mini login`), as `docker login`
    /// does: `GET /v2/`, then the challenge it answers with (basic auth, or
    /// a token from the bearer realm) with the credentials.
    pub async fn login(&self, registry: &str, auth: &RegistryAuth) -> Result<(), ImageError> {
        let host = if registry == DOCKER_HUB {
            "index.docker.io"
        } else {
            registry
        };
        let scheme = if self.insecure.iter().any(|h| h == host) {
            "http"
        } else {
            "https"
        };
        let url = format!("{scheme}://{host}/v2/");
        let unreachable = |e: reqwest::Error| ImageError::Unreachable {
            registry: registry.to_string(),
            detail: describe_request_error(&e),
        };
        let denied = |status: reqwest::StatusCode| {
            ImageError::LoginFailed(format!(
                "login attempt to {url} failed with status: {status}"
            ))
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(unreachable)?;
        let first = http.get(&url).send().await.map_err(unreachable)?;
        if first.status().is_success() {
            return Ok(());
        }
        let challenge = first
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let check = if let Some(params) = challenge.strip_prefix("Bearer ") {
            let param = |name: &str| {
                params.split(',').find_map(|kv| {
                    let (k, v) = kv.trim().split_once('=')?;
                    (k == name).then(|| v.trim_matches('"').to_string())
                })
            };
            let realm = param("realm").ok_or_else(|| denied(first.status()))?;
            let realm = match param("service") {
                Some(s) => format!("{realm}?service={s}"),
                None => realm,
            };
            http.get(realm)
        } else {
            http.get(&url)
        };
        let answer = check
            .basic_auth(&auth.username, Some(&auth.password))
            .send()
            .await
            .map_err(unreachable)?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(denied(answer.status()))
        }
    }
}

/// `(plain http?, host:port)` of a mirror URL.
fn mirror_host(url: &str) -> Result<(bool, String), ImageError> {
    let bad = || {
        ImageError::invalid(
            "--registry-mirror",
            format!("{url:?}: expected http://HOST[:PORT] or https://HOST[:PORT]"),
        )
    };
    let (plain, rest) = if let Some(r) = url.strip_prefix("http://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        return Err(bad());
    }
    Ok((plain, host.to_string()))
}

/// Where one pull goes: a mirror or the registry itself.
#[derive(Clone)]
struct Source {
    /// `host:port` shown in errors.
    registry: String,
    reference: OciReference,
}

fn sources(registry: &Registry, r: &Reference) -> Vec<Source> {
    let base = match (&r.digest, &r.tag) {
        (Some(d), _) => OciReference::with_digest(r.domain.clone(), r.path.clone(), d.clone()),
        (None, Some(t)) => OciReference::with_tag(r.domain.clone(), r.path.clone(), t.clone()),
        (None, None) => OciReference::with_tag(r.domain.clone(), r.path.clone(), "latest".into()),
    };
    let mut out = Vec::new();
    if r.domain == DOCKER_HUB {
        for m in &registry.mirrors {
            let mut reference = base.clone();
            reference.set_mirror_registry(m.clone());
            out.push(Source {
                registry: m.clone(),
                reference,
            });
        }
    }
    out.push(Source {
        registry: r.domain.clone(),
        reference: base,
    });
    out
}

/// Maps a client error to the store's, in Docker's words where it has them.
fn map_error(e: OciDistributionError, registry: &str, reference: &str) -> ImageError {
    let repository = reference
        .rsplit_once(['@'])
        .map_or(reference, |(n, _)| n)
        .to_string();
    let denied = |detail: String| ImageError::AccessDenied {
        repository: repository
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .map_or(repository.clone(), |(n, _)| n.to_string()),
        detail,
    };
    match e {
        OciDistributionError::RegistryError { envelope, .. } => {
            let detail = envelope
                .errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            let code = envelope.errors.first().map(|e| &e.code);
            match code {
                Some(OciErrorCode::ManifestUnknown) => ImageError::ManifestUnknown {
                    reference: reference.to_string(),
                    detail,
                },
                Some(OciErrorCode::NameUnknown)
                | Some(OciErrorCode::Unauthorized)
                | Some(OciErrorCode::Denied) => denied(detail),
                _ => ImageError::Registry {
                    registry: registry.to_string(),
                    detail,
                },
            }
        }
        OciDistributionError::UnauthorizedError { .. } => {
            denied("unauthorized: authentication required".into())
        }
        OciDistributionError::AuthenticationFailure(detail) => {
            denied(format!("unauthorized: {detail}"))
        }
        OciDistributionError::ServerError { code, message, .. } => match code {
            404 => ImageError::ManifestUnknown {
                reference: reference.to_string(),
                detail: message,
            },
            401 | 403 => denied(message),
            c if c >= 500 => ImageError::Unreachable {
                registry: registry.to_string(),
                detail: format!("HTTP {c}: {message}"),
            },
            _ => ImageError::Registry {
                registry: registry.to_string(),
                detail: format!("HTTP {code}: {message}"),
            },
        },
        OciDistributionError::RequestError(err) => ImageError::Unreachable {
            registry: registry.to_string(),
            detail: describe_request_error(&err),
        },
        OciDistributionError::IoError(err) => ImageError::Unreachable {
            registry: registry.to_string(),
            detail: err.to_string(),
        },
        OciDistributionError::DigestError(err) => ImageError::DigestMismatch {
            what: format!("{reference} from {registry}"),
            expected: String::new(),
            actual: err.to_string(),
        },
        other => ImageError::Registry {
            registry: registry.to_string(),
            detail: other.to_string(),
        },
    }
}

/// reqwest's errors hide their cause in the source chain.
fn describe_request_error(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Runs `op` up to [`ATTEMPTS`] times while it fails with a temporary error.
async fn with_retries<T, F, Fut>(what: &str, mut op: F) -> Result<T, ImageError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ImageError>>,
{
    let mut delay = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_temporary() && attempt < ATTEMPTS => {
                tracing::debug!(%what, attempt, err = %e, "retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The platforms an index offers, for the error when none is linux/amd64.
fn platforms(index: &oci_client::manifest::OciImageIndex) -> String {
    let found: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|m| m.platform.as_ref())
        .map(|p| format!("{}/{}", p.os, p.architecture))
        .collect();
    if found.is_empty() {
        "none".into()
    } else {
        found.join(", ")
    }
}

/// Fetches the image manifest for linux/amd64 (through an index if need be).
async fn fetch_manifest(
    client: &Client,
    src: &Source,
    auth: &OciAuth,
    shown: &str,
) -> Result<(OciImageManifest, String), ImageError> {
    let get = |r: OciReference| async move {
        with_retries(shown, || async {
            client
                .pull_manifest(&r, auth)
                .await
                .map_err(|e| map_error(e, &src.registry, shown))
        })
        .await
    };
    match get(src.reference.clone()).await? {
        (OciManifest::Image(m), digest) => Ok((m, digest)),
        (OciManifest::ImageIndex(index), _) => {
            let entry = index.manifests.iter().find(|m| {
                m.platform.as_ref().is_some_and(|p| {
                    p.os.to_string() == "linux" && p.architecture.to_string() == "amd64"
                })
            });
            let Some(entry) = entry else {
                return Err(ImageError::Platform {
                    found: platforms(&index),
                });
            };
            match get(src.reference.clone_with_digest(entry.digest.clone())).await? {
                (OciManifest::Image(m), digest) => Ok((m, digest)),
                (OciManifest::ImageIndex(_), _) => Err(ImageError::invalid(
                    format!("manifest of {shown}"),
                    "an index inside an index",
                )),
            }
        }
    }
}

/// Pulls `r` into `store`: manifest, config, then every missing layer.
pub(crate) async fn pull(
    store: &ImageStore,
    r: &Reference,
    auth: Option<&RegistryAuth>,
) -> Result<ImageRecord, ImageError> {
    let registry = store.registry();
    let client = registry.client();
    let oci_auth = match auth {
        Some(a) => OciAuth::Basic(a.username.clone(), a.password.clone()),
        None => OciAuth::Anonymous,
    };
    let shown = r.familiar_string();
    let mut last_err = None;
    let mut answer_err = None;
    for src in sources(registry, r) {
        let result = async {
            let (manifest, manifest_digest) =
                fetch_manifest(&client, &src, &oci_auth, &shown).await?;
            pull_from(store, &client, &src, &manifest, &manifest_digest, r).await
        }
        .await;
        match result {
            Ok(record) => return Ok(record),
            Err(e) => {
                tracing::info!(registry = %src.registry, reference = %shown, err = %e, "pull failed");
                if !e.is_temporary() && answer_err.is_none() {
                    answer_err = Some(e.clone());
                }
                if matches!(
                    e,
                    ImageError::DigestMismatch { .. } | ImageError::Invalid { .. }
                ) {
                    return Err(e);
                }
                last_err = Some(e);
            }
        }
    }
    // A definite answer (unknown tag, denied) says more than "unreachable".
    Err(answer_err
        .or(last_err)
        .unwrap_or(ImageError::NotFound(shown)))
}

async fn pull_from(
    store: &ImageStore,
    client: &Client,
    src: &Source,
    manifest: &OciImageManifest,
    manifest_digest: &str,
    r: &Reference,
) -> Result<ImageRecord, ImageError> {
    let shown = r.familiar_string();
    // The config: small, in memory, checked against its digest.
    let config_digest = manifest.config.digest.clone();
    check_digest(&config_digest).map_err(|e| ImageError::invalid("manifest", e.to_string()))?;
    let config_bytes = match store.config_bytes(&config_digest) {
        Ok(b) => b,
        Err(_) => {
            let bytes = with_retries(&shown, || async {
                let mut buf = Vec::new();
                client
                    .pull_blob(&src.reference, &manifest.config, &mut buf)
                    .await
                    .map_err(|e| map_error(e, &src.registry, &shown))?;
                Ok(buf)
            })
            .await?;
            store.put_blob(&config_digest, &bytes, "image config")?;
            bytes
        }
    };
    let config = ConfigFile::parse(&config_bytes)?;
    if !config.architecture.is_empty() && config.architecture != "amd64" {
        return Err(ImageError::Platform {
            found: format!("{}/{}", config.os, config.architecture),
        });
    }
    let diff_ids = config.rootfs.diff_ids.clone();
    if diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::invalid(
            format!("image {shown}"),
            format!(
                "manifest lists {} layers, config {}",
                manifest.layers.len(),
                diff_ids.len()
            ),
        ));
    }
    for layer in &manifest.layers {
        check_digest(&layer.digest).map_err(|e| ImageError::invalid("manifest", e.to_string()))?;
        if !LAYER_TYPES.contains(&layer.media_type.as_str()) {
            return Err(ImageError::invalid(
                format!("layer {}", short_id(&layer.digest)),
                format!("unsupported media type {}", layer.media_type),
            ));
        }
    }
    let chains = chain_ids(&diff_ids);
    let mut jobs = Vec::new();
    for ((desc, diff), chain) in manifest.layers.iter().zip(&diff_ids).zip(&chains) {
        let (desc, diff, chain, shown) = (desc.clone(), diff.clone(), chain.clone(), &shown);
        jobs.push(
            async move { fetch_layer(store, client, src, &desc, &diff, &chain, shown).await },
        );
    }
    let sizes: Vec<Result<u64, ImageError>> = futures::stream::iter(jobs)
        .buffered(PARALLEL_LAYERS)
        .collect()
        .await;
    let mut size = 0;
    for s in sizes {
        size += s?;
    }
    let record = ImageRecord {
        id: config_digest,
        repo_tags: Vec::new(),
        repo_digests: Vec::new(),
        created: config.created.clone().unwrap_or_default(),
        platform: format!("{}/{}", config.os, config.architecture),
        diff_ids,
        layer_blobs: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
        size,
    };
    let tags: Vec<String> = r
        .tag
        .as_ref()
        .map(|t| format!("{}:{t}", r.name()))
        .into_iter()
        .collect();
    let digests = vec![format!("{}@{manifest_digest}", r.name())];
    store.commit(record, &tags, &digests)
}

/// Makes sure the layer `chain` is unpacked; returns its unpacked size.
async fn fetch_layer(
    store: &ImageStore,
    client: &Client,
    src: &Source,
    desc: &OciDescriptor,
    diff_id: &str,
    chain: &str,
    shown: &str,
) -> Result<u64, ImageError> {
    if store.has_layer(chain) {
        return Ok(super::store::disk_usage(&store.layer_path(chain)));
    }
    let blob = store.blob_path(&desc.digest);
    if !blob.exists() {
        let partial = store
            .root()
            .join("tmp")
            .join(format!("partial-{}", short_id(chain)));
        // First attempt: unpack while downloading.
        match stream_and_unpack(store, client, src, desc, &partial, diff_id, chain, shown).await {
            Ok(size) => return Ok(size),
            Err(e) if !e.is_temporary() => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
            Err(e) => {
                tracing::info!(layer = %short_id(&desc.digest), err = %e, "download interrupted; resuming")
            }
        }
        let resumed =
            with_retries(shown, || resume(store, client, src, desc, &partial, shown)).await;
        if let Err(e) = resumed {
            if !e.is_temporary() {
                let _ = std::fs::remove_file(&partial);
            }
            return Err(e);
        }
    }
    let (store2, diff, ch) = (store.clone(), diff_id.to_string(), chain.to_string());
    tokio::task::spawn_blocking(move || store2.unpack_blob_file(&blob, &diff, &ch))
        .await
        .map_err(|e| ImageError::invalid("layer", format!("unpacking panicked: {e}")))?
}

/// Reads chunks sent from the async side; blocking.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Copies what it reads into the partial blob file and a hasher.
struct TeeReader<R> {
    inner: R,
    file: std::fs::File,
    hasher: Sha256,
}

impl<R: Read> Read for TeeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.file.write_all(&buf[..n])?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Downloads a layer blob into `partial` while unpacking it; moves both into
/// the store if the blob digest and diff id match.
#[allow(clippy::too_many_arguments)]
async fn stream_and_unpack(
    store: &ImageStore,
    client: &Client,
    src: &Source,
    desc: &OciDescriptor,
    partial: &Path,
    diff_id: &str,
    chain: &str,
    shown: &str,
) -> Result<u64, ImageError> {
    let file = std::fs::File::create(partial).map_err(|e| ImageError::io(partial, e))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let (store2, diff, ch, expected) = (
        store.clone(),
        diff_id.to_string(),
        chain.to_string(),
        desc.digest.clone(),
    );
    let partial_path: PathBuf = partial.to_path_buf();
    let unpacker = tokio::task::spawn_blocking(move || {
        let mut tee = TeeReader {
            inner: ChannelReader {
                rx,
                current: Bytes::new(),
            },
            file,
            hasher: Sha256::new(),
        };
        let tmp = store2.tmp_path("layer");
        let result = std::fs::create_dir(&tmp)
            .map_err(|e| ImageError::io(&tmp, e))
            .and_then(|()| {
                super::unpack::unpack_layer(&mut tee, &tmp, &format!("layer {}", short_id(&diff)))
            });
        // Whatever the unpacker did not need still counts for the digest.
        let drained = io::copy(&mut tee, &mut io::sink());
        let _ = tee.file.sync_all();
        let blob_digest = format!("sha256:{}", hex::encode(tee.hasher.finalize()));
        let verdict = (|| {
            drained.map_err(|e| ImageError::io(&partial_path, e))?;
            if blob_digest != expected {
                return Err(ImageError::DigestMismatch {
                    what: format!("layer {}", short_id(&expected)),
                    expected: expected.clone(),
                    actual: blob_digest.clone(),
                });
            }
            let unpacked = result?;
            if unpacked.diff_id != diff {
                return Err(ImageError::DigestMismatch {
                    what: format!("layer {} (uncompressed)", short_id(&expected)),
                    expected: diff.clone(),
                    actual: unpacked.diff_id,
                });
            }
            store2.adopt_blob(&partial_path, &expected)?;
            store2.adopt_layer(&tmp, &ch)?;
            Ok(super::store::disk_usage(&store2.layer_path(&ch)))
        })();
        if verdict.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        verdict
    });
    let download = async {
        let mut stream = client
            .pull_blob_stream(&src.reference, desc)
            .await
            .map_err(|e| map_error(e, &src.registry, shown))?;
        while let Some(chunk) = stream.stream.next().await {
            let chunk = chunk.map_err(|e| ImageError::Unreachable {
                registry: src.registry.clone(),
                detail: describe_request_error(&e),
            })?;
            if tx.send(chunk).await.is_err() {
                break; // the unpacker stopped: its error tells why
            }
        }
        Ok::<(), ImageError>(())
    };
    let downloaded = download.await;
    drop(tx);
    let unpacked = unpacker
        .await
        .map_err(|e| ImageError::invalid("layer", format!("unpacking panicked: {e}")))?;
    match (downloaded, unpacked) {
        (Ok(()), result) => result,
        // A broken download makes the digest wrong: report the network.
        (Err(e), Err(_)) => Err(e),
        (Err(e), Ok(_)) => Err(e),
    }
}

/// Completes `partial` with a range request, checks the digest and moves the
/// blob into the store.
async fn resume(
    store: &ImageStore,
    client: &Client,
    src: &Source,
    desc: &OciDescriptor,
    partial: &Path,
    shown: &str,
) -> Result<(), ImageError> {
    use oci_client::client::BlobResponse;
    let have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
    let response = client
        .pull_blob_stream_partial(&src.reference, desc, have, None)
        .await
        .map_err(|e| map_error(e, &src.registry, shown))?;
    let (mut file, mut stream) = match response {
        BlobResponse::Partial(s) => (
            std::fs::OpenOptions::new()
                .append(true)
                .open(partial)
                .map_err(|e| ImageError::io(partial, e))?,
            s,
        ),
        BlobResponse::Full(s) => (
            std::fs::File::create(partial).map_err(|e| ImageError::io(partial, e))?,
            s,
        ),
    };
    while let Some(chunk) = stream.stream.next().await {
        let chunk = chunk.map_err(|e| ImageError::Unreachable {
            registry: src.registry.clone(),
            detail: describe_request_error(&e),
        })?;
        file.write_all(&chunk)
            .map_err(|e| ImageError::io(partial, e))?;
    }
    file.sync_all().map_err(|e| ImageError::io(partial, e))?;
    drop(file);
    let (path, expected) = (partial.to_path_buf(), desc.digest.clone());
    let actual = tokio::task::spawn_blocking(move || -> io::Result<String> {
        let mut f = std::fs::File::open(&path)?;
        let mut h = Sha256::new();
        io::copy(&mut f, &mut h)?;
        Ok(format!("sha256:{}", hex::encode(h.finalize())))
    })
    .await
    .map_err(|e| ImageError::invalid("layer", format!("hashing panicked: {e}")))?
    .map_err(|e| ImageError::io(partial, e))?;
    if actual != expected {
        let _ = std::fs::remove_file(partial);
        return Err(ImageError::DigestMismatch {
            what: format!("layer {}", short_id(&expected)),
            expected,
            actual,
        });
    }
    store.adopt_blob(partial, &desc.digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_urls() {
        assert_eq!(
            mirror_host("http://10.0.0.1:5000/").unwrap(),
            (true, "10.0.0.1:5000".to_string())
        );
        assert_eq!(
            mirror_host("https://mirror.example").unwrap(),
            (false, "mirror.example".to_string())
        );
        assert!(mirror_host("10.0.0.1:5000").is_err());
        assert!(mirror_host("http://host/path").is_err());
    }

    #[test]
    fn docker_hub_goes_through_mirrors_first() {
        let registry = Registry::new(RegistryOptions {
            mirrors: vec!["http://10.0.0.1:5000".into()],
            insecure_registries: vec![],
        })
        .unwrap();
        let hub = sources(&registry, &Reference::parse("alpine").unwrap());
        let names: Vec<&str> = hub.iter().map(|s| s.registry.as_str()).collect();
        assert_eq!(names, ["10.0.0.1:5000", "docker.io"]);
        let private = sources(&registry, &Reference::parse("reg.local:5000/app").unwrap());
        assert_eq!(private.len(), 1, "only Docker Hub has mirrors");
    }
}
