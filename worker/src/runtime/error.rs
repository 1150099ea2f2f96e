//! The runtime's one error type.

use std::io;
use std::path::PathBuf;

use super::TaskExit;

/// What went wrong while starting, watching, stopping or entering a task.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The task spec cannot be run as given (no command, a malformed env entry...).
    #[error("task {task_id}: invalid spec: {reason}")]
    InvalidSpec {
        /// The task concerned.
        task_id: String,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// Creating the task's directory or writing one of its files failed.
    #[error("task {task_id}: cannot prepare {path}: {source}")]
    TaskDir {
        /// The task concerned.
        task_id: String,
        /// The file or directory that could not be created or written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The network namespace file the task should run in cannot be opened.
    #[error("task {task_id}: cannot open network namespace {path}: {source}")]
    Netns {
        /// The task concerned.
        task_id: String,
        /// The namespace file (the netdriver's sandbox).
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Spawning the task's init process (re-executing the daemon binary
    /// after entering the namespaces) failed.
    #[error("task {task_id}: cannot spawn task init {exe}: {source}")]
    Spawn {
        /// The task concerned.
        task_id: String,
        /// The binary re-executed as the task's init.
        exe: PathBuf,
        /// The underlying error (from `setns`, `unshare` or `execve`).
        source: io::Error,
    },
    /// The task's init ran but the command never started: the executable
    /// is missing or not executable, or setting up mounts or hostname failed.
    /// `message` is the text for the task's error field.
    #[error("task {task_id} failed to start: {message} ({exit})")]
    StartFailed {
        /// The task concerned.
        task_id: String,
        /// Why, e.g. `executable file not found: foo`.
        message: String,
        /// How the task's init exited (127 for a missing executable, 126 for
        /// one that cannot be executed, 125 for a setup failure).
        exit: TaskExit,
    },
    /// Waiting for or signalling a task's process failed.
    #[error("task {task_id}: cannot {action}: {source}")]
    Process {
        /// The task concerned.
        task_id: String,
        /// What was being done (`wait for the task`, `send SIGTERM`...).
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The namespaces of the process to `exec` in cannot be opened.
    #[error("cannot enter the namespaces of process {pid}: {path}: {source}")]
    ExecTarget {
        /// The task's PID (in the node's PID namespace).
        pid: u32,
        /// The `/proc` file that could not be opened or read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Spawning or waiting for an `exec`'d command failed.
    #[error("exec in process {pid}: {source}")]
    Exec {
        /// The task's PID (in the node's PID namespace).
        pid: u32,
        /// The underlying error.
        source: io::Error,
    },
    /// Reading a task's log failed.
    #[error("cannot read task log {path}: {source}")]
    Logs {
        /// The log file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}
