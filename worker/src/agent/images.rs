//! Where image tasks get their images: an [`ImageSource`] resolves a
//! reference into unpacked layers and a config, and holds the image while a
//! task uses it.
//!
//! [`DirImageSource`] serves images kept as plain directories under the
//! state dir (`<state>/images/dirs/<name>/<tag>/{rootfs,config.json}`), for
//! nodes without a registry; the node's layer store (pulls, `image load`)
//! plugs in behind the same trait.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use mini_proto::v1::ImageRegistryAuth;

use crate::image::{ImageError, ImageStore, RegistryAuth};
use crate::runtime::image::{ImageConfig, ImageRootfs};

/// Resolves image references for the agent.
#[tonic::async_trait]
pub trait ImageSource: Send + Sync {
    /// The image `reference` names, ready to run, pulled with `auth` (the
    /// service's `--with-registry-auth` credentials) when it must be pulled;
    /// the error is the task's error text (e.g. `No such image: busybox:latest`).
    async fn resolve(
        &self,
        reference: &str,
        auth: Option<&ImageRegistryAuth>,
    ) -> Result<ImageRootfs, String>;

    /// Marks `image_id` as used by `task_id` (it must not be removed).
    fn hold(&self, image_id: &str, task_id: &str) -> Result<(), String>;

    /// `task_id` no longer uses its image.
    fn release(&self, task_id: &str);
}

/// `name[:tag]` → (name, tag), Docker's default tag `latest`.
pub fn split_reference(reference: &str) -> (&str, &str) {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], &reference[slash + i + 1..]),
        None => (reference, "latest"),
    }
}

/// Images kept as directories: `<root>/<name>/<tag>/rootfs` (the single
/// layer) and an optional `<root>/<name>/<tag>/config.json` (an OCI image
/// config: `{"config": {"Env": [...], "Entrypoint": [...], "Cmd": [...],
/// "User": "", "WorkingDir": "", "StopSignal": ""}}`).
#[derive(Debug, Default)]
pub struct DirImageSource {
    root: PathBuf,
    held: Mutex<HashMap<String, String>>,
}

impl DirImageSource {
    /// Images under `root` (normally `<state>/images/dirs`).
    pub fn new(root: PathBuf) -> Self {
        DirImageSource {
            root,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// The image ids in use, by task.
    pub fn held(&self) -> HashMap<String, String> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[tonic::async_trait]
impl ImageSource for DirImageSource {
    async fn resolve(
        &self,
        reference: &str,
        _auth: Option<&ImageRegistryAuth>,
    ) -> Result<ImageRootfs, String> {
        let (name, tag) = split_reference(reference);
        let valid =
            |s: &str| !s.is_empty() && !s.split('/').any(|p| p.is_empty() || p == "." || p == "..");
        if !valid(name) || !valid(tag) || tag.contains('/') {
            return Err(format!("invalid reference format: {reference}"));
        }
        let dir = self.root.join(name).join(tag);
        let rootfs = dir.join("rootfs");
        if !rootfs.is_dir() {
            return Err(format!("No such image: {name}:{tag}"));
        }
        let config = match tokio::fs::read_to_string(dir.join("config.json")).await {
            Ok(text) => crate::image::parse_run_config(text.as_bytes())
                .map_err(|e| format!("invalid config of {name}:{tag}: {e}"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ImageConfig::default(),
            Err(e) => return Err(format!("cannot read the config of {name}:{tag}: {e}")),
        };
        Ok(ImageRootfs {
            id: format!("dir:{name}:{tag}"),
            reference: format!("{name}:{tag}"),
            layers: vec![rootfs],
            config,
        })
    }

    fn hold(&self, image_id: &str, task_id: &str) -> Result<(), String> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task_id.into(), image_id.into());
        Ok(())
    }

    fn release(&self, task_id: &str) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(task_id);
    }
}

/// The node's images: a directory image (`<state>/images/dirs`, see
/// [`DirImageSource`]) when one of that name exists, otherwise the node's
/// layer store, which uses its local copy or pulls (through the daemon's
/// registry mirrors).
pub struct StoreImageSource {
    dirs: DirImageSource,
    store: ImageStore,
}

impl StoreImageSource {
    /// Images from `dirs` first, then `store`.
    pub fn new(dirs: DirImageSource, store: ImageStore) -> Self {
        StoreImageSource { dirs, store }
    }
}

#[tonic::async_trait]
impl ImageSource for StoreImageSource {
    async fn resolve(
        &self,
        reference: &str,
        auth: Option<&ImageRegistryAuth>,
    ) -> Result<ImageRootfs, String> {
        if let Ok(image) = self.dirs.resolve(reference, None).await {
            return Ok(image);
        }
        let auth = auth
            .filter(|a| !a.username.is_empty())
            .map(|a| RegistryAuth {
                username: a.username.clone(),
                password: a.password.clone(),
            });
        let image = self
            .store
            .resolve(reference, auth.as_ref())
            .await
            .map_err(|e: ImageError| e.to_string())?;
        Ok(ImageRootfs {
            id: image.id,
            reference: image.reference,
            layers: image.layers,
            config: image.config,
        })
    }

    fn hold(&self, image_id: &str, task_id: &str) -> Result<(), String> {
        if image_id.starts_with("dir:") {
            return self.dirs.hold(image_id, task_id);
        }
        self.store
            .hold(image_id, task_id)
            .map_err(|e| e.to_string())
    }

    fn release(&self, task_id: &str) {
        self.dirs.release(task_id);
        self.store.release(task_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_with_the_default_tag() {
        assert_eq!(split_reference("busybox"), ("busybox", "latest"));
        assert_eq!(split_reference("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            split_reference("registry.local:5000/team/app"),
            ("registry.local:5000/team/app", "latest")
        );
        assert_eq!(
            split_reference("registry.local:5000/team/app:1.2"),
            ("registry.local:5000/team/app", "1.2")
        );
    }

    #[tokio::test]
    async fn directory_images_resolve_with_their_config() {
        let dir = tempfile::tempdir().unwrap();
        let images = DirImageSource::new(dir.path().to_path_buf());
        let image_dir = dir.path().join("busybox/latest");
        std::fs::create_dir_all(image_dir.join("rootfs/bin")).unwrap();
        std::fs::write(
            image_dir.join("config.json"),
            r#"{"config":{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/tmp"}}"#,
        )
        .unwrap();
        let image = images.resolve("busybox", None).await.unwrap();
        assert_eq!(image.reference, "busybox:latest");
        assert_eq!(image.layers, vec![image_dir.join("rootfs")]);
        assert_eq!(image.config.cmd, vec!["sh"]);
        assert_eq!(image.config.working_dir, "/tmp");
        assert_eq!(
            images.resolve("alpine:3.19", None).await.unwrap_err(),
            "No such image: alpine:3.19"
        );
        assert!(images.resolve("../../etc", None).await.is_err());
        images.hold(&image.id, "t1").unwrap();
        assert_eq!(images.held().get("t1"), Some(&image.id));
        images.release("t1");
        assert!(images.held().is_empty());
    }
}
