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

/// The task directories in `tasks_dir` whose task an earlier daemon left
/// running (its recorded processes still run): task id → directory.
pub fn survivors(tasks_dir: &Path) -> std::collections::BTreeMap<String, std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(tasks_dir) else {
        return Default::default();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let id = e
                .file_name()
                .to_str()
                .filter(|n| mini_proto::is_object_id(n))?
                .to_string();
            crate::runtime::adopt::Record::load_alive(&e.path()).map(|_| (id, e.path()))
        })
        .collect()
}

/// How the tasks in `tasks_dir` that ended while no daemon ran ended, as their
/// supervisors wrote it: task id → exit.
pub fn ended(tasks_dir: &Path) -> std::collections::HashMap<String, crate::runtime::TaskExit> {
    let Ok(entries) = std::fs::read_dir(tasks_dir) else {
        return Default::default();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let id = e
                .file_name()
                .to_str()
                .filter(|n| mini_proto::is_object_id(n))?
                .to_string();
            crate::runtime::adopt::read_exit(&e.path()).map(|exit| (id, exit))
        })
        .collect()
}

/// Kills what earlier runs left in `tasks_dir` and removes their directories,
/// except the tasks in `keep` (to be adopted).
pub fn reap(tasks_dir: &Path, keep: &std::collections::BTreeMap<String, std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(tasks_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| keep.contains_key(n))
        {
            continue;
        }
        // Only task directories: a name that is not a task id, or a link, is not ours.
        let is_task_dir = entry.file_type().is_ok_and(|t| t.is_dir())
            && entry
                .file_name()
                .to_str()
                .is_some_and(mini_proto::is_object_id);
        if !is_task_dir {
            tracing::warn!(path = %entry.path().display(), "not a task directory: left alone");
            continue;
        }
        reap_dir(&entry.path());
    }
}

/// Kills the task an earlier run left in `dir` (a task directory) and removes the directory.
pub fn reap_dir(dir: &Path) {
    {
        let dir = dir.to_path_buf();
        let record = crate::runtime::adopt::Record::load_alive(&dir);
        let pid: Option<i32> = std::fs::read_to_string(dir.join(PID_FILE))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        if let Some(pid) = pid.filter(|p| *p > 1 && is_task_init_child(*p)) {
            tracing::info!(pid, task_dir = %dir.display(), "killing a task left by an earlier daemon");
            // Killing a PID namespace's first process ends every process in it.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Its supervisor writes the exit file and the last log lines as the task ends: the
        // directory goes once it is gone (bounded: it exits as soon as its command did).
        if let Some(record) = record {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while crate::runtime::adopt::start_time(record.supervisor)
                == Some(record.supervisor_start)
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        // The task's secrets tmpfs goes first (remove_dir_all would empty it, then fail).
        super::secrets::release(&dir.join(super::secrets::MOUNT_DIR));
        if let Err(err) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), %err, "cannot remove a task directory");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_task_directories_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let tasks = root.path().join("tasks");
        let outside = root.path().join("precious");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("file"), "x").unwrap();
        std::fs::create_dir_all(tasks.join("abc123")).unwrap();
        std::fs::write(tasks.join("abc123/pid"), "not a pid").unwrap();
        std::fs::create_dir_all(tasks.join("Not_A_Task")).unwrap();
        std::fs::write(tasks.join("notadir"), "x").unwrap();
        // A link named like a task leads out of the tasks directory.
        std::os::unix::fs::symlink(&outside, tasks.join("def456")).unwrap();

        super::reap(&tasks, &Default::default());

        assert!(!tasks.join("abc123").exists());
        assert!(tasks.join("Not_A_Task").is_dir());
        assert!(tasks.join("notadir").is_file());
        assert!(tasks.join("def456").is_symlink());
        assert!(outside.join("file").is_file());
    }
}
