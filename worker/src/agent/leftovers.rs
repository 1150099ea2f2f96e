//! Tasks an earlier run of the daemon left running (it was killed): found by
//! the PID files the runtime wrote, checked, and killed.

use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::runtime::{INIT_SUBCOMMAND, PID_FILE};

/// Whether `pid` is still the PID 1 of a task namespace started by our
/// task init (and not an unrelated process that reused the number).
fn is_task_init_child(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let nspid_is_1 = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .is_some_and(|v| {
            v.split_whitespace().count() > 1 && v.split_whitespace().last() == Some("1")
        });
    let ppid: Option<i32> = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok());
    let parent_is_init = ppid.is_some_and(|p| {
        std::fs::read(format!("/proc/{p}/cmdline"))
            .map(|c| {
                c.split(|b| *b == 0)
                    .any(|arg| arg == INIT_SUBCOMMAND.as_bytes())
            })
            .unwrap_or(false)
    });
    nspid_is_1 && parent_is_init
}

/// Kills what earlier runs left in `tasks_dir` and removes their directories.
pub fn reap(tasks_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(tasks_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let pid: Option<i32> = std::fs::read_to_string(dir.join(PID_FILE))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        if let Some(pid) = pid.filter(|p| *p > 1 && is_task_init_child(*p)) {
            tracing::info!(pid, task_dir = %dir.display(), "killing a task left by an earlier daemon");
            // Killing a PID namespace's first process ends every process in it.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Err(err) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), %err, "cannot remove a task directory");
        }
    }
}
