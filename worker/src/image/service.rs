//! The `Images` gRPC service (`mini image ...` on the daemon's unix socket)
//! and the archive upload shared with the node agent's `ImageLoad`.

use std::io::{Read, Seek, Write};
use std::pin::Pin;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use mini_proto::v1::images_server::Images;
use mini_proto::v1::node_agent_client::NodeAgentClient;
use mini_proto::v1::{
    ImageInspectRequest, ImageInspectResponse, ImageListRequest, ImageListResponse, ImageLoadChunk,
    ImageLoadResponse, ImageLoginRequest, ImageLoginResponse, ImagePruneRequest,
    ImagePruneResponse, ImagePullRequest, ImagePullResponse, ImageRegistryAuth, ImageRemoval,
    ImageRemoveRequest, ImageRemoveResponse, ImageSaveChunk, ImageSaveRequest, ImageSummary,
};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use super::{ImageError, ImageStore, LoadedImage, Reference, RegistryAuth, Removal, save_images};

/// Bytes per streamed archive chunk.
const CHUNK: usize = 1 << 20;

/// Every other node: its name, and a channel to its listener or why there is none.
pub type PeerChannels = Vec<(String, Result<Channel, String>)>;

/// The other nodes of the cluster, for `image load --all-nodes`; provided
/// by the daemon (only a manager knows them).
pub trait ImagePeers: Send + Sync {
    /// `(node name, channel to its listener or why there is none)` for every
    /// other node; an error when this node cannot tell (not a manager).
    fn peers(&self) -> BoxFuture<'_, Result<PeerChannels, String>>;
}

/// The `Images` service of one daemon.
#[derive(Clone)]
pub struct ImagesService {
    store: ImageStore,
    peers: Option<Arc<dyn ImagePeers>>,
}

impl ImagesService {
    /// A service over `store`; `peers` enables `--all-nodes`.
    pub fn new(store: ImageStore, peers: Option<Arc<dyn ImagePeers>>) -> Self {
        ImagesService { store, peers }
    }
}

/// The gRPC status for a store error.
pub fn status(err: ImageError) -> Status {
    let msg = err.to_string();
    match err {
        ImageError::Reference(_) | ImageError::Invalid { .. } | ImageError::Platform { .. } => {
            Status::invalid_argument(msg)
        }
        ImageError::NotFound(_) | ImageError::ManifestUnknown { .. } => Status::not_found(msg),
        ImageError::AccessDenied { .. } | ImageError::LoginFailed(_) => {
            Status::permission_denied(msg)
        }
        ImageError::InUse { .. }
        | ImageError::InUseForced { .. }
        | ImageError::MultipleRepositories { .. } => Status::failed_precondition(msg),
        ImageError::Unreachable { .. } => Status::unavailable(msg),
        _ => Status::internal(msg),
    }
}

fn auth_of(a: Option<ImageRegistryAuth>) -> Option<RegistryAuth> {
    a.filter(|a| !a.username.is_empty()).map(|a| RegistryAuth {
        username: a.username,
        password: a.password,
    })
}

fn removals(list: Vec<Removal>) -> Vec<ImageRemoval> {
    list.into_iter()
        .map(|r| match r {
            Removal::Untagged(n) => ImageRemoval {
                action: "Untagged".into(),
                name: n,
            },
            Removal::Deleted(n) => ImageRemoval {
                action: "Deleted".into(),
                name: n,
            },
        })
        .collect()
}

/// Docker's `Loaded image...` lines.
pub fn loaded_lines(loaded: &[LoadedImage]) -> Vec<String> {
    let mut out = Vec::new();
    for image in loaded {
        if image.tags.is_empty() {
            out.push(format!("Loaded image ID: {}", image.id));
        }
        for t in &image.tags {
            out.push(format!("Loaded image: {t}"));
        }
    }
    out
}

/// Receives an uploaded archive into an unlinked temporary file; returns
/// it rewound, with the options of the first chunk.
pub async fn receive_archive(
    store: &ImageStore,
    mut chunks: Streaming<ImageLoadChunk>,
) -> Result<(std::fs::File, bool), Status> {
    let path = store.tmp_path("upload");
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Status::internal(format!("{}: {e}", path.display())))?;
    let _ = std::fs::remove_file(&path);
    let mut all_nodes = None;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        all_nodes.get_or_insert(chunk.all_nodes);
        file.write_all(&chunk.data)
            .map_err(|e| Status::internal(format!("cannot spool the archive: {e}")))?;
    }
    file.rewind()
        .map_err(|e| Status::internal(format!("cannot spool the archive: {e}")))?;
    Ok((file, all_nodes.unwrap_or(false)))
}

/// Loads a received archive into `store` (on a blocking thread).
pub async fn load_file(
    store: &ImageStore,
    file: std::fs::File,
) -> Result<Vec<LoadedImage>, Status> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.load(std::io::BufReader::new(file)))
        .await
        .map_err(|e| Status::internal(format!("image load panicked: {e}")))?
        .map_err(status)
}

/// Streams `file` to a node's `ImageLoad`.
async fn push_to(channel: Channel, file: std::fs::File) -> Result<Vec<String>, String> {
    let (tx, rx) = tokio::sync::mpsc::channel::<ImageLoadChunk>(4);
    let reader = tokio::task::spawn_blocking(move || {
        let mut file = file;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = match file.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.truncate(n);
            let chunk = ImageLoadChunk {
                data: buf,
                all_nodes: false,
            };
            if tx.blocking_send(chunk).is_err() {
                return;
            }
        }
    });
    let result = NodeAgentClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .image_load(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let _ = reader.await;
    result
        .map(|r| r.into_inner().loaded)
        .map_err(|s| s.message().to_string())
}

type SaveStream = Pin<Box<dyn Stream<Item = Result<ImageSaveChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Images for ImagesService {
    async fn image_pull(
        &self,
        request: Request<ImagePullRequest>,
    ) -> Result<Response<ImagePullResponse>, Status> {
        let req = request.into_inner();
        let parsed = Reference::parse(&req.reference).map_err(|e| status(e.into()))?;
        let resolved = self
            .store
            .pull(&req.reference, auth_of(req.auth).as_ref())
            .await
            .map_err(status)?;
        let record = self.store.find(&resolved.id).map_err(status)?;
        let digest = record
            .repo_digests
            .iter()
            .find(|d| d.starts_with(&format!("{}@", parsed.name())))
            .cloned()
            .unwrap_or_default();
        Ok(Response::new(ImagePullResponse {
            id: resolved.id,
            reference: resolved.reference,
            digest,
        }))
    }

    async fn image_list(
        &self,
        _request: Request<ImageListRequest>,
    ) -> Result<Response<ImageListResponse>, Status> {
        let images = self
            .store
            .list()
            .into_iter()
            .map(|r| ImageSummary {
                containers: self.store.holders(&r.id).len() as u32,
                id: r.id,
                repo_tags: r.repo_tags,
                repo_digests: r.repo_digests,
                created: r.created,
                size: r.size,
                platform: r.platform,
            })
            .collect();
        Ok(Response::new(ImageListResponse { images }))
    }

    async fn image_inspect(
        &self,
        request: Request<ImageInspectRequest>,
    ) -> Result<Response<ImageInspectResponse>, Status> {
        let mut json = Vec::new();
        for q in request.into_inner().images {
            let rec = self.store.find(&q).map_err(status)?;
            let config: serde_json::Value =
                serde_json::from_slice(&self.store.config_bytes(&rec.id).map_err(status)?)
                    .unwrap_or_default();
            let familiar = |list: &[String]| -> Vec<String> {
                list.iter()
                    .filter_map(|t| Reference::parse_normalized(t).ok())
                    .map(|r| r.familiar_string())
                    .collect()
            };
            let (os, arch) = rec.platform.split_once('/').unwrap_or(("", ""));
            let value = serde_json::json!({
                "Id": rec.id,
                "RepoTags": familiar(&rec.repo_tags),
                "RepoDigests": familiar(&rec.repo_digests),
                "Created": rec.created,
                "Config": config.get("config").cloned().unwrap_or_default(),
                "Architecture": arch,
                "Os": os,
                "Size": rec.size,
                "RootFS": {"Type": "layers", "Layers": rec.diff_ids},
                "GraphDriver": {
                    "Name": "overlay",
                    "Data": {"LowerDirs": rec.chain_ids().iter().rev()
                        .map(|c| self.store.layer_path(c).display().to_string())
                        .collect::<Vec<_>>().join(":")},
                },
            });
            json.push(serde_json::to_string_pretty(&value).unwrap_or_default());
        }
        Ok(Response::new(ImageInspectResponse { json }))
    }

    async fn image_remove(
        &self,
        request: Request<ImageRemoveRequest>,
    ) -> Result<Response<ImageRemoveResponse>, Status> {
        let req = request.into_inner();
        let mut out = ImageRemoveResponse::default();
        for q in req.images {
            match self.store.remove(&q, req.force) {
                Ok(list) => out.removals.extend(removals(list)),
                Err(e) => out.errors.push(e.to_string()),
            }
        }
        Ok(Response::new(out))
    }

    async fn image_prune(
        &self,
        request: Request<ImagePruneRequest>,
    ) -> Result<Response<ImagePruneResponse>, Status> {
        let (list, freed) = self.store.prune(request.into_inner().all).map_err(status)?;
        Ok(Response::new(ImagePruneResponse {
            removals: removals(list),
            space_reclaimed: freed,
        }))
    }

    async fn image_load(
        &self,
        request: Request<Streaming<ImageLoadChunk>>,
    ) -> Result<Response<ImageLoadResponse>, Status> {
        let (file, all_nodes) = receive_archive(&self.store, request.into_inner()).await?;
        let peers = if all_nodes {
            let source = self.peers.as_ref().ok_or_else(|| {
                Status::failed_precondition("--all-nodes needs a daemon that is a swarm manager")
            })?;
            Some(source.peers().await.map_err(Status::failed_precondition)?)
        } else {
            None
        };
        let copy = file
            .try_clone()
            .map_err(|e| Status::internal(format!("cannot reopen the archive: {e}")))?;
        let loaded = load_file(&self.store, copy).await?;
        let mut nodes = Vec::new();
        for (name, channel) in peers.unwrap_or_default() {
            let line = match channel {
                Err(e) => format!("{name}: {e}"),
                Ok(channel) => {
                    let mut f = file
                        .try_clone()
                        .map_err(|e| Status::internal(format!("cannot reopen the archive: {e}")))?;
                    f.rewind()
                        .map_err(|e| Status::internal(format!("cannot reopen the archive: {e}")))?;
                    match push_to(channel, f).await {
                        Ok(lines) => format!("{name}: {}", lines.join(", ")),
                        Err(e) => format!("{name}: error: {e}"),
                    }
                }
            };
            nodes.push(line);
        }
        Ok(Response::new(ImageLoadResponse {
            loaded: loaded_lines(&loaded),
            nodes,
        }))
    }

    type ImageSaveStream = SaveStream;

    async fn image_save(
        &self,
        request: Request<ImageSaveRequest>,
    ) -> Result<Response<SaveStream>, Status> {
        let images = request.into_inner().images;
        if images.is_empty() {
            return Err(Status::invalid_argument(
                "image save needs at least one image",
            ));
        }
        for q in &images {
            self.store.find(q).map_err(status)?;
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<ImageSaveChunk, Status>>(4);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            struct Sender(tokio::sync::mpsc::Sender<Result<ImageSaveChunk, Status>>);
            impl Write for Sender {
                fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                    self.0
                        .blocking_send(Ok(ImageSaveChunk { data: buf.to_vec() }))
                        .map_err(|_| std::io::Error::other("client went away"))?;
                    Ok(buf.len())
                }
                fn flush(&mut self) -> std::io::Result<()> {
                    Ok(())
                }
            }
            let out = std::io::BufWriter::with_capacity(CHUNK, Sender(tx.clone()));
            if let Err(e) = save_images(&store, &images, out) {
                let _ = tx.blocking_send(Err(status(e)));
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn image_login(
        &self,
        request: Request<ImageLoginRequest>,
    ) -> Result<Response<ImageLoginResponse>, Status> {
        let req = request.into_inner();
        let auth = auth_of(req.auth)
            .ok_or_else(|| Status::invalid_argument("login needs a username and a password"))?;
        self.store
            .registry()
            .login(&req.registry, &auth)
            .await
            .map_err(status)?;
        Ok(Response::new(ImageLoginResponse {}))
    }
}
