//! The node's identity, kept in its state dir across restarts.

use std::path::Path;

use super::ControlError;
use crate::ids::new_id;

/// Forgets the node's id (after `swarm leave`) and makes a new one: like Docker, a node that
/// leaves and joins again is a new node — which is what lets a node that was removed with
/// `node rm` (its old id is on the cluster's deny list) come back with `swarm join`.
pub(super) fn renew_node_id(state_dir: &Path) -> Result<String, ControlError> {
    let path = state_dir.join("node_id");
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ControlError::Internal(format!(
                "cannot remove {}: {e}",
                path.display()
            )));
        }
    }
    load_or_create_node_id(state_dir)
}

/// Reads `STATE/node_id`, or makes a new id and writes it (fsynced) there.
pub(super) fn load_or_create_node_id(state_dir: &Path) -> Result<String, ControlError> {
    let path = state_dir.join("node_id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ControlError::Internal(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    }
    let id = new_id();
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        let tmp = state_dir.join("node_id.tmp");
        let file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut &file, id.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| ControlError::Internal(format!("cannot write {}: {e}", path.display())))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_kept_across_restarts_and_renewed_after_leaving() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_node_id(dir.path()).unwrap();
        assert_eq!(load_or_create_node_id(dir.path()).unwrap(), first);
        let renewed = renew_node_id(dir.path()).unwrap();
        assert_ne!(renewed, first);
        assert_eq!(load_or_create_node_id(dir.path()).unwrap(), renewed);
    }
}
