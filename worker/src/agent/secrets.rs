//! Secrets and configs on a node: their values, as the session handed them (only those of the
//! node's live tasks; kept in memory only), and each task's files, written to a tmpfs
//! mounted for the task (`RUN/tasks/<id>/secrets`, never a disk-backed path), remounted
//! read-only, bound into the task by its runtime, and unmounted when the task ends.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mini_proto::v1::{Config, ContainerSpec, FileTarget, Secret};
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::runtime::TaskFile;

/// Where a task's secrets appear when their target is relative (Docker's).
pub const SECRETS_DIR: &str = "/run/secrets";

/// The name of the tmpfs mount point in a task's directory.
pub const MOUNT_DIR: &str = "secrets";

/// The values of the secrets and configs the node's tasks use, by id. Replaced by every
/// session message: what the managers no longer send is forgotten.
#[derive(Default)]
pub struct SecretStore {
    secrets: Mutex<HashMap<String, Vec<u8>>>,
    configs: Mutex<HashMap<String, Vec<u8>>>,
}

impl SecretStore {
    /// Keeps exactly `secrets` and `configs`.
    pub fn replace(&self, secrets: &[Secret], configs: &[Config]) {
        let values =
            |id: &str, data: Option<&Vec<u8>>| (id.to_string(), data.cloned().unwrap_or_default());
        *self.secrets.lock().unwrap_or_else(|e| e.into_inner()) = secrets
            .iter()
            .map(|s| values(&s.id, s.spec.as_ref().map(|s| &s.data)))
            .collect();
        *self.configs.lock().unwrap_or_else(|e| e.into_inner()) = configs
            .iter()
            .map(|c| values(&c.id, c.spec.as_ref().map(|s| &s.data)))
            .collect();
    }

    /// The ids of the secrets held (for tests and logs: never the values).
    pub fn secret_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    fn secret(&self, id: &str) -> Option<Vec<u8>> {
        self.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn config(&self, id: &str) -> Option<Vec<u8>> {
        self.configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
}

/// The absolute path a secret (`secret`: relative to [`SECRETS_DIR`]) or config (relative to
/// `/`) appears at in the task; `None` for a target that could leave its directory.
pub fn target_path(secret: bool, name: &str) -> Option<String> {
    let path = if name.starts_with('/') {
        name.to_string()
    } else if secret {
        format!("{SECRETS_DIR}/{name}")
    } else {
        format!("/{name}")
    };
    let ok = !name.is_empty()
        && path != "/"
        && !path.contains('\0')
        && !path.split('/').any(|c| c == "." || c == "..");
    ok.then_some(path)
}

/// A task's secrets tmpfs; unmounted (and its mount point removed) when dropped.
pub struct TaskFiles {
    mount: PathBuf,
    /// The files to bind into the task.
    pub files: Vec<TaskFile>,
}

impl Drop for TaskFiles {
    fn drop(&mut self) {
        release(&self.mount);
    }
}

/// The secrets tmpfs an earlier daemon mounted in `task_dir` for a task it left running
/// (live-restore), if there is one: unmounted when dropped, as the one [`prepare`] makes.
pub fn adopt(task_dir: &Path) -> Option<TaskFiles> {
    let mount = task_dir.join(MOUNT_DIR);
    mount.is_dir().then(|| TaskFiles {
        mount,
        files: Vec::new(),
    })
}

/// Unmounts a task directory's secrets tmpfs, if any, and removes its mount point.
pub fn release(mount_point: &Path) {
    match umount2(mount_point, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(err) => {
            tracing::warn!(path = %mount_point.display(), %err, "cannot unmount a task's secrets")
        }
    }
    let _ = std::fs::remove_dir(mount_point);
}

/// One file to write: its value and owner.
struct Entry {
    file_name: String,
    data: Vec<u8>,
    file: FileTarget,
    target: String,
}

fn entries(container: &ContainerSpec, store: &SecretStore) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for (i, r) in container.secrets.iter().enumerate() {
        let file = r.file.clone().unwrap_or_default();
        let name = if file.name.is_empty() {
            &r.secret_name
        } else {
            &file.name
        };
        let target = target_path(true, name)
            .ok_or_else(|| format!("invalid target {name:?} for secret {}", r.secret_name))?;
        let data = store.secret(&r.secret_id).ok_or_else(|| {
            format!(
                "secret {} ({}) was not handed to this node",
                r.secret_name, r.secret_id
            )
        })?;
        out.push(Entry {
            file_name: format!("secret-{i}"),
            data,
            file,
            target,
        });
    }
    for (i, r) in container.configs.iter().enumerate() {
        let file = r.file.clone().unwrap_or_default();
        let name = if file.name.is_empty() {
            &r.config_name
        } else {
            &file.name
        };
        let target = target_path(false, name)
            .ok_or_else(|| format!("invalid target {name:?} for config {}", r.config_name))?;
        let data = store.config(&r.config_id).ok_or_else(|| {
            format!(
                "config {} ({}) was not handed to this node",
                r.config_name, r.config_id
            )
        })?;
        out.push(Entry {
            file_name: format!("config-{i}"),
            data,
            file,
            target,
        });
    }
    Ok(out)
}

/// Writes the task's secrets and configs to a new tmpfs at `task_dir/secrets`, as Docker
/// does: each file with its owner and mode (0444 unless given), then the tmpfs is remounted
/// read-only. `Ok(None)` when the task uses none. On error nothing stays mounted.
pub fn prepare(
    task_dir: &Path,
    container: &ContainerSpec,
    store: &SecretStore,
) -> Result<Option<TaskFiles>, String> {
    if container.secrets.is_empty() && container.configs.is_empty() {
        return Ok(None);
    }
    let entries = entries(container, store)?;
    let mount_point = task_dir.join(MOUNT_DIR);
    std::fs::create_dir_all(&mount_point)
        .map_err(|e| format!("cannot create {}: {e}", mount_point.display()))?;
    mount(
        Some("tmpfs"),
        &mount_point,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .map_err(|e| {
        let _ = std::fs::remove_dir(&mount_point);
        format!("cannot mount a tmpfs for the task's secrets: {e}")
    })?;
    // From here the guard unmounts on any error.
    let mut guard = TaskFiles {
        mount: mount_point.clone(),
        files: Vec::new(),
    };
    for e in entries {
        let path = mount_point.join(&e.file_name);
        let parse = |what: &str, v: &str| {
            if v.is_empty() {
                Ok(0)
            } else {
                v.parse::<u32>()
                    .map_err(|_| format!("invalid {what} {v:?} for {}", e.target))
            }
        };
        let (uid, gid) = (parse("uid", &e.file.uid)?, parse("gid", &e.file.gid)?);
        let mode = match e.file.mode {
            0 => 0o444,
            m => m & 0o7777,
        };
        std::fs::write(&path, &e.data)
            .map_err(|err| format!("cannot write the file for {}: {err}", e.target))?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))
            .map_err(|err| format!("cannot give {} to {uid}:{gid}: {err}", e.target))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|err| format!("cannot set the mode of {}: {err}", e.target))?;
        guard.files.push(TaskFile {
            source: path,
            target: e.target,
        });
    }
    mount(
        None::<&str>,
        &mount_point,
        None::<&str>,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| format!("cannot make the task's secrets read-only: {e}"))?;
    Ok(Some(guard))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mini_proto::v1::{ConfigReference, SecretReference, SecretSpec};

    #[test]
    fn targets_stay_where_docker_puts_them() {
        assert_eq!(target_path(true, "db").as_deref(), Some("/run/secrets/db"));
        assert_eq!(
            target_path(true, "a/b").as_deref(),
            Some("/run/secrets/a/b")
        );
        assert_eq!(target_path(true, "/etc/key").as_deref(), Some("/etc/key"));
        assert_eq!(target_path(false, "site").as_deref(), Some("/site"));
        for bad in ["", "../x", "/", "a/../../b", "./a"] {
            assert_eq!(target_path(true, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_store_keeps_only_what_the_last_message_sent() {
        let store = SecretStore::default();
        let secret = |id: &str| Secret {
            id: id.into(),
            meta: None,
            spec: Some(SecretSpec {
                data: b"v".to_vec(),
                ..Default::default()
            }),
        };
        store.replace(&[secret("a"), secret("b")], &[]);
        assert_eq!(store.secret_ids(), ["a", "b"]);
        store.replace(&[secret("b")], &[]);
        assert_eq!(store.secret_ids(), ["b"]);
        assert_eq!(store.secret("a"), None);
        // A task whose secret this node was not given cannot be prepared.
        let container = ContainerSpec {
            secrets: vec![SecretReference {
                secret_id: "a".into(),
                secret_name: "gone".into(),
                file: None,
            }],
            configs: vec![ConfigReference::default()],
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let err = prepare(dir.path(), &container, &store).err().unwrap();
        assert!(
            err.contains("secret gone (a) was not handed to this node"),
            "{err}"
        );
        assert!(!dir.path().join(MOUNT_DIR).exists(), "nothing made");
    }

    #[test]
    fn files_go_to_a_read_only_tmpfs_that_is_gone_when_dropped() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounting a tmpfs needs root; CI runs as root");
            return;
        }
        let store = SecretStore::default();
        store.replace(
            &[Secret {
                id: "s1".into(),
                meta: None,
                spec: Some(SecretSpec {
                    data: b"hunter2".to_vec(),
                    ..Default::default()
                }),
            }],
            &[Config {
                id: "c1".into(),
                meta: None,
                spec: Some(mini_proto::v1::ConfigSpec {
                    data: b"conf".to_vec(),
                    ..Default::default()
                }),
            }],
        );
        let container = ContainerSpec {
            secrets: vec![SecretReference {
                secret_id: "s1".into(),
                secret_name: "db".into(),
                file: Some(FileTarget {
                    name: "db".into(),
                    uid: "33".into(),
                    gid: "0".into(),
                    mode: 0o400,
                }),
            }],
            configs: vec![ConfigReference {
                config_id: "c1".into(),
                config_name: "site".into(),
                file: None,
            }],
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let files = prepare(dir.path(), &container, &store).unwrap().unwrap();
        let targets: Vec<&str> = files.files.iter().map(|f| f.target.as_str()).collect();
        assert_eq!(targets, ["/run/secrets/db", "/site"]);
        let secret = &files.files[0].source;
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(secret).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o400, 33));
        assert_eq!(std::fs::read(secret).unwrap(), b"hunter2");
        assert_eq!(
            std::fs::metadata(&files.files[1].source).unwrap().mode() & 0o7777,
            0o444
        );
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let mount_point = dir.path().join(MOUNT_DIR);
        let line = mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(mount_point.to_str().unwrap()))
            .expect("a tmpfs is mounted");
        assert!(
            line.starts_with("tmpfs ") && line.contains(" ro,"),
            "{line}"
        );
        assert!(std::fs::write(secret, "x").is_err(), "read-only");
        drop(files);
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!mounts.contains(mount_point.to_str().unwrap()), "unmounted");
        assert!(!mount_point.exists());
    }
}
