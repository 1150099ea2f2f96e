//! The state dir is root's alone: it holds the join-token secrets and the Raft log.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// Sub-directories whose contents keep their modes: unpacked image layers are the files of a
/// container's root filesystem (`/usr/bin` must stay 0755 in there). The directory itself is
/// made private, which keeps everyone but root out of all of it.
const KEEP_MODES_INSIDE: &[&str] = &["images"];

/// Creates `dir` if needed and takes every group and other permission off it and everything in
/// it (left by older versions, which did not set a umask): directories end up 0700, files
/// 0600. Symbolic links are not followed, and neither are mounts (another file system) nor
/// the contents of [`KEEP_MODES_INSIDE`].
pub fn make_private(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dev = std::fs::metadata(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .dev();
    restrict(dir, dev, true)
}

fn restrict(path: &Path, dev: u64, top: bool) -> Result<()> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if meta.file_type().is_symlink() || meta.dev() != dev {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
            .with_context(|| format!("cannot make {} private", path.display()))?;
    }
    let keep_inside = !top
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| KEEP_MODES_INSIDE.contains(&n));
    if meta.is_dir() && !keep_inside {
        let entries =
            std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", path.display()))?;
            restrict(&entry.path(), dev, false)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::make_private;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn set(p: &std::path::Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn old_state_dirs_become_private_but_links_and_image_layers_are_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::write(&outside, "not ours").unwrap();
        set(&outside, 0o644);
        let state = root.path().join("state");
        let sled = state.join("raft/sled/blobs");
        std::fs::create_dir_all(&sled).unwrap();
        std::fs::write(state.join("node_id"), "x").unwrap();
        std::fs::write(state.join("raft/sled/db"), "x").unwrap();
        for (p, m) in [
            (state.clone(), 0o755),
            (state.join("raft"), 0o755),
            (state.join("raft/sled"), 0o775),
            (sled.clone(), 0o777),
            (state.join("node_id"), 0o644),
            (state.join("raft/sled/db"), 0o666),
        ] {
            set(&p, m);
        }
        std::os::unix::fs::symlink(&outside, state.join("link")).unwrap();
        // An unpacked image layer: a root file system's modes are its own.
        let layer_bin = state.join("images/layers/l1/usr/bin");
        std::fs::create_dir_all(&layer_bin).unwrap();
        std::fs::write(layer_bin.join("ls"), "x").unwrap();
        set(&layer_bin.join("ls"), 0o755);
        set(&state.join("images"), 0o755);

        make_private(&state).unwrap();

        for d in [&state, &state.join("raft"), &state.join("raft/sled"), &sled] {
            assert_eq!(mode(d), 0o700, "{}", d.display());
        }
        assert_eq!(mode(&state.join("node_id")), 0o600);
        assert_eq!(mode(&state.join("raft/sled/db")), 0o600);
        assert_eq!(
            mode(&outside),
            0o644,
            "a link's target is not the state dir's"
        );
    }

    #[test]
    fn a_new_state_dir_is_created() {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("a/b");
        make_private(&state).unwrap();
        assert!(state.is_dir());
        assert_eq!(mode(&state) & 0o077, 0);
    }
}
