//! Human names of enum values, as the CLI prints them.

use crate::v1::TaskState;

/// The name `service ps` shows for a task state ("Running", "Assigned", ...).
pub fn state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::New => "New",
        TaskState::Pending => "Pending",
        TaskState::Assigned => "Assigned",
        TaskState::Accepted => "Accepted",
        TaskState::Preparing => "Preparing",
        TaskState::Ready => "Ready",
        TaskState::Starting => "Starting",
        TaskState::Running => "Running",
        TaskState::Complete => "Complete",
        TaskState::Shutdown => "Shutdown",
        TaskState::Failed => "Failed",
        TaskState::Rejected => "Rejected",
        TaskState::Remove => "Remove",
        TaskState::Orphaned => "Orphaned",
    }
}
