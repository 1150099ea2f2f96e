//! The image store's one error type.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::reference::ReferenceError;

/// What went wrong while resolving, pulling, loading, unpacking or removing
/// an image. Cloneable so concurrent callers sharing one pull all get it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    /// The reference does not follow Docker's grammar.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// No local image matches and no registry has it (Docker's wording).
    #[error("No such image: {0}")]
    NotFound(String),
    /// The registry has no such tag or digest.
    #[error("manifest for {reference} not found: manifest unknown: {detail}")]
    ManifestUnknown {
        /// The reference as the user wrote it.
        reference: String,
        /// What the registry said.
        detail: String,
    },
    /// The registry refused the credentials, or the repository does not exist
    /// (registries do not tell the two apart).
    #[error(
        "pull access denied for {repository}, repository does not exist or may require 'mini login': {detail}"
    )]
    AccessDenied {
        /// The repository, as Docker names it.
        repository: String,
        /// What the registry said.
        detail: String,
    },
    /// `mini login` with credentials the registry refused (Docker's wording).
    #[error("{0}")]
    LoginFailed(String),
    /// The registry could not be reached (after retries).
    #[error("cannot reach registry {registry}: {detail}")]
    Unreachable {
        /// The registry (or mirror) tried last.
        registry: String,
        /// The last error seen.
        detail: String,
    },
    /// Any other error from the registry.
    #[error("registry {registry}: {detail}")]
    Registry {
        /// The registry (or mirror) concerned.
        registry: String,
        /// What went wrong.
        detail: String,
    },
    /// The image exists only for other platforms.
    #[error("no matching manifest for linux/amd64 in the manifest list entries (found: {found})")]
    Platform {
        /// The platforms the image does have.
        found: String,
    },
    /// A blob's content does not hash to the digest that names it.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Which blob (layer, config, manifest...).
        what: String,
        /// The digest the manifest or archive promised.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A layer or archive that is malformed or unsafe (an entry escaping the
    /// layer, a whiteout in the wrong place, an unknown media type...).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The layer, archive or manifest concerned.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The image is used by a task and cannot be removed (Docker's wording).
    #[error(
        "conflict: unable to remove repository reference {reference:?} (must force) - container {task} is using its referenced image {image}"
    )]
    InUse {
        /// The reference the user asked to remove.
        reference: String,
        /// A task using it (12 characters).
        task: String,
        /// The image id (12 hex characters).
        image: String,
    },
    /// `--force` cannot remove an image a running task uses (Docker's wording).
    #[error(
        "conflict: unable to delete {image} (cannot be forced) - image is being used by running container {task}"
    )]
    InUseForced {
        /// The image id (12 hex characters).
        image: String,
        /// A task using it (12 characters).
        task: String,
    },
    /// An image id prefix or name matching more than one image.
    #[error(
        "conflict: unable to delete {image} (must be forced) - image is referenced in multiple repositories"
    )]
    MultipleRepositories {
        /// The image id (12 hex characters).
        image: String,
    },
    /// A file of the store could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: Arc<io::Error>,
    },
}

impl ImageError {
    /// An [`ImageError::Io`] about `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> ImageError {
        ImageError::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// An [`ImageError::Invalid`].
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> ImageError {
        ImageError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Whether retrying later may succeed (network trouble), as opposed to an
    /// answer that will not change (unknown tag, bad digest, bad layer).
    pub fn is_temporary(&self) -> bool {
        matches!(self, ImageError::Unreachable { .. } | ImageError::Io { .. })
    }
}
