//! Running a command inside a running task's namespaces (`mini exec`).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;

use super::init::exec_args;
use super::spec::merge_env;
use super::{HostRuntime, RuntimeError, TaskExit};

/// The namespaces an exec enters, in the order it enters them: the mount
/// namespace last, since entering it changes what paths mean.
const NAMESPACES: [(&str, libc::c_int); 5] = [
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("mnt", libc::CLONE_NEWNS),
];

/// What an exec'd command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// How it ended (127 and a message on stderr for a missing executable).
    pub exit: TaskExit,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl HostRuntime {
    /// A command that runs `args` inside the namespaces (net, PID, mount,
    /// UTS, IPC) of the task whose PID 1 is `pid` (in the node's PID
    /// namespace, see [`super::RunningTask::pid`]), with the task's
    /// environment plus `env` (`K=V`). Stdio is the caller's to choose
    /// (default: inherited); spawning it does not block the async runtime.
    pub fn exec_command(
        &self,
        pid: u32,
        args: &[String],
        env: &[String],
    ) -> Result<tokio::process::Command, RuntimeError> {
        let target = |name: &str| PathBuf::from(format!("/proc/{pid}/{name}"));
        if args.is_empty() {
            return Err(RuntimeError::Exec {
                pid,
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command to run"),
            });
        }
        let mut fds: Vec<(OwnedFd, libc::c_int)> = Vec::new();
        for (name, flag) in NAMESPACES {
            let path = target(&format!("ns/{name}"));
            let file = std::fs::File::open(&path).map_err(|source| RuntimeError::ExecTarget {
                pid,
                path,
                source,
            })?;
            fds.push((file.into(), flag));
        }
        let environ_path = target("environ");
        let environ = std::fs::read(&environ_path).map_err(|source| RuntimeError::ExecTarget {
            pid,
            path: environ_path,
            source,
        })?;
        let task_env: Vec<String> = environ
            .split(|&b| b == 0)
            .map(|kv| String::from_utf8_lossy(kv).into_owned())
            .collect();
        let env = merge_env(task_env.iter().chain(env).map(String::as_str));

        let mut cmd = tokio::process::Command::new(&self.self_exe);
        cmd.args(exec_args(args))
            .env_clear()
            .envs(env)
            .current_dir("/")
            .kill_on_drop(true);
        // SAFETY: the closure runs in the forked (single-threaded) child
        // before execve and only calls setns, which is async-signal-safe, on
        // fds the closure owns.
        unsafe {
            cmd.pre_exec(move || {
                for (fd, flag) in &fds {
                    if libc::setns(fd.as_raw_fd(), *flag) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(cmd)
    }

    /// Runs `args` inside the task whose PID 1 is `pid` (see
    /// [`HostRuntime::exec_command`]), stdin empty, and collects its output.
    pub async fn exec(
        &self,
        pid: u32,
        args: &[String],
        env: &[String],
    ) -> Result<ExecOutput, RuntimeError> {
        let output = self
            .exec_command(pid, args, env)?
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| RuntimeError::Exec { pid, source })?;
        Ok(ExecOutput {
            exit: output.status.into(),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}
