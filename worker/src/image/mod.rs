//! Container images: Docker's reference grammar, pulls from registries
//! (mirrors, insecure registries, auth), `docker save`/OCI archives, and the
//! node's content-addressed layer store that task root filesystems stack.
//!
//! # Layout
//! - `reference`: [`Reference`], Docker's grammar and normalization.
//! - `store`: [`ImageStore`], the on-disk store, holds, `rm`/`prune`.
//! - `registry`: pulls with `oci-client` (retries, resume, verification).
//! - `archive`: `image load` / `image save`.
//! - `service`: the `Images` gRPC service and the archive upload.
//! - `unpack`: one layer into a directory (whiteouts, hard links, escapes).
//! - `config`: [`ImageConfig`], what a task takes from its image.
//! - `digest`: digests and chain ids.
//! - `error`: [`ImageError`].

mod archive;
mod config;
pub mod digest;
mod error;
pub mod reference;
mod registry;
pub mod service;
mod store;
pub mod unpack;

use std::path::PathBuf;

pub use archive::{LoadedImage, save_images};
pub use config::{Healthcheck, ImageConfig, parse_run_config};
pub use error::ImageError;
pub use reference::{Reference, ReferenceError};
pub use store::{ImageRecord, ImageStore, Removal};

/// Where the daemon's registries are and how to reach them (Docker's
/// `--registry-mirror` and `--insecure-registry`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Mirrors of Docker Hub, tried in order before Docker Hub itself
    /// (`http://10.0.0.1:5000`, `https://mirror.example`). An `http://`
    /// mirror is spoken to in plain HTTP.
    pub mirrors: Vec<String>,
    /// `HOST:PORT` of registries spoken to in plain HTTP.
    pub insecure_registries: Vec<String>,
}

/// Credentials for one registry (what `mini login` stored).
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// An image ready for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The config digest (`sha256:...`): the image id.
    pub id: String,
    /// The normalized reference, e.g. `docker.io/library/alpine:latest`.
    pub reference: String,
    /// Unpacked layer directories, lowest first (overlayfs' `lowerdir`
    /// lists the highest first: reverse this).
    pub layers: Vec<PathBuf>,
    /// What the task inherits: Env, Entrypoint, Cmd, User, WorkingDir...
    pub config: ImageConfig,
}
