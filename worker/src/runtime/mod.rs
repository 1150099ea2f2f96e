//! The task runtimes behind [`TaskRuntime`]: `runc` for images (see
//! [`runc`], [`oci`], [`image`]), a recording [`fake`] for tests, and
//! `host`, described here.
//!
//! The runtime of image `host` runs a command from the node's own
//! filesystem as PID 1 of fresh PID, mount, UTS and IPC namespaces inside
//! the task's network namespace (the netdriver's sandbox), with its own
//! hostname, `/etc/resolv.conf`, `/etc/hosts` and a fresh `/proc`; keeps its
//! output; stops it; runs commands inside it (`mini exec`).
//!
//! # How a task starts
//! The daemon never forks itself or calls `setns` on its own threads. It
//! spawns its own binary (`HostRuntime::new(self_exe)`) as
//! `<exe> task-init run ...` with a `pre_exec` that enters the network
//! namespace and unshares the others; that init forks the command as PID 1
//! of the new PID namespace (see [`init`] for the whole protocol). The
//! binary's `main` must therefore call [`task_init_main`] before anything
//! else when its first argument is [`INIT_SUBCOMMAND`].
//!
//! # Layout
//! - `spec`: [`TaskSpec`], [`TaskExit`], the task's environment and hostname.
//! - `spawn`: [`HostRuntime::start`] and [`RunningTask`] (wait, signal, stop).
//! - `init`: the re-executed init: fork, signal forwarding, log shim.
//! - `setup`: what PID 1 does before `execve`: mounts, hostname, `PATH` lookup.
//! - `exec`: [`HostRuntime::exec`], [`HostRuntime::exec_command`].
//! - `logs`: the log format, [`read_logs`] and [`LogFollower`].
//! - [`health`]: health checks (which check, the probe state machine, the monitor).
//! - `error`: [`RuntimeError`].

mod error;
mod exec;
pub mod fake;
pub mod health;
pub mod image;
pub mod init;
mod logs;
pub mod oci;
pub mod runc;
mod setup;
mod spawn;
mod spec;
mod task_runtime;

use std::path::PathBuf;

pub use error::RuntimeError;
pub use exec::ExecOutput;
pub use init::{INIT_SUBCOMMAND, task_init_main};
pub use logs::{LOG_FILE, LogFollower, LogLine, Stream, log_path, read_logs};
pub use runc::{RuncRuntime, find_in_path};
pub use spawn::{PID_FILE, RunningTask};
pub use spec::{
    DEFAULT_PATH, FILES_LIST, HOSTNAME_MAX, TaskExit, TaskFile, TaskSpec, clamp_hostname,
    decode_files, encode_files,
};
pub use task_runtime::{ExecTarget, TaskHandle, TaskRuntime, parse_signal};

/// The runtime of image `host`: starts tasks from the node's filesystem and
/// runs commands in them. Cheap to clone; holds no state about the tasks
/// (each [`RunningTask`] is its own handle).
#[derive(Debug, Clone)]
pub struct HostRuntime {
    /// The binary re-executed as each task's init; it must dispatch
    /// [`INIT_SUBCOMMAND`] to [`task_init_main`].
    self_exe: PathBuf,
}

impl HostRuntime {
    /// A runtime that re-executes `self_exe` (normally
    /// `std::env::current_exe()` of the daemon) as the tasks' init.
    pub fn new(self_exe: PathBuf) -> Self {
        HostRuntime { self_exe }
    }
}
