//! Change notifications for controllers.

use super::ObjectKind;

/// One object that a batch created, updated or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Kind of the object.
    pub kind: ObjectKind,
    /// Its id.
    pub id: String,
    /// True when the batch removed it.
    pub removed: bool,
}

/// What one applied batch (or a restored snapshot) changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreEvent {
    /// Raft index of the batch.
    pub index: u64,
    /// The objects it touched; empty with `restored` set for a snapshot restore.
    pub changes: Vec<Change>,
    /// True when the whole store was replaced from a snapshot: re-read everything.
    pub restored: bool,
}

impl StoreEvent {
    /// Whether the event touched any object of `kind` (or replaced everything).
    pub fn touches(&self, kind: ObjectKind) -> bool {
        self.restored || self.changes.iter().any(|c| c.kind == kind)
    }
}
