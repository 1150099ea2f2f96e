//! Starting a task ([`HostRuntime::start`]) and watching or stopping it
//! ([`RunningTask`]).

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;

use super::adopt::{Record, Supervisor};
use super::init::run_args;
use super::logs::log_path;
use super::setup::EXIT_SETUP;
use super::spec::clamp_hostname;
use super::{HostRuntime, RuntimeError, TaskExit, TaskSpec};

/// The name of the file, in the task's directory, holding the PID (in the
/// node's PID namespace) of the task's PID 1.
pub const PID_FILE: &str = "pid";

impl HostRuntime {
    /// Starts the task: returns once its command runs (the `execve`
    /// succeeded) as PID 1 of fresh PID, mount, UTS and IPC namespaces in
    /// the network namespace `spec.netns`.
    ///
    /// A command that cannot start (missing executable, setup failure)
    /// gives [`RuntimeError::StartFailed`] with the message for the task's
    /// error field; its init has then been reaped.
    pub async fn start(&self, spec: &TaskSpec) -> Result<RunningTask, RuntimeError> {
        spec.validate()?;
        let task_id = spec.task_id.clone();
        let hostname = clamp_hostname(&spec.hostname);
        let dir_error = |path: &Path| {
            let (task_id, path) = (task_id.clone(), path.to_path_buf());
            move |source| RuntimeError::TaskDir {
                task_id,
                path,
                source,
            }
        };
        tokio::fs::create_dir_all(&spec.dir)
            .await
            .map_err(dir_error(&spec.dir))?;
        for (name, contents) in [
            ("resolv.conf", spec.resolv_conf.as_str()),
            ("hosts", spec.hosts.as_str()),
            ("hostname", &format!("{hostname}\n")),
        ] {
            let path = spec.dir.join(name);
            tokio::fs::write(&path, contents)
                .await
                .map_err(dir_error(&path))?;
            // Mounted on the task's /etc: readable by every user there, as under Docker,
            // whatever the daemon's umask.
            tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .await
                .map_err(dir_error(&path))?;
        }
        // The files the init binds (secrets, configs): their paths, never their contents.
        let list = spec.dir.join(super::FILES_LIST);
        tokio::fs::write(&list, super::encode_files(&spec.files))
            .await
            .map_err(dir_error(&list))?;
        let scratch = spec.dir.join(super::setup::SCRATCH_DIR);
        if !spec.files.is_empty() {
            tokio::fs::create_dir_all(&scratch)
                .await
                .map_err(dir_error(&scratch))?;
        }
        let log = log_path(&spec.dir);
        let log_file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&log)
            .map_err(dir_error(&log))?;
        let netns = std::fs::File::open(&spec.netns).map_err(|source| RuntimeError::Netns {
            task_id: task_id.clone(),
            path: spec.netns.clone(),
            source,
        })?;
        let (status_r, status_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| self.spawn_error(&task_id, e.into()))?;

        let mut cmd = tokio::process::Command::new(&self.self_exe);
        cmd.args(run_args(
            status_w.as_raw_fd(),
            &hostname,
            &spec.dir,
            &spec.args,
        ))
        .env_clear()
        .envs(spec.environment(&hostname))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(Stdio::null())
        // Not in the daemon's process group: a Ctrl-C on the daemon's
        // terminal must not reach the tasks.
        .process_group(0);
        let netns_fd = netns.as_raw_fd();
        let status_fd = status_w.as_raw_fd();
        // SAFETY: the closure runs in the forked child before execve and
        // makes only async-signal-safe system calls (setns, unshare,
        // fcntl) on fds that stay open in the parent until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(netns_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let flags = libc::CLONE_NEWPID
                    | libc::CLONE_NEWNS
                    | libc::CLONE_NEWUTS
                    | libc::CLONE_NEWIPC;
                if libc::unshare(flags) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The init reports on this fd: keep it open across execve.
                if libc::fcntl(status_fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| self.spawn_error(&task_id, e))?;
        // Our copies: the status pipe must reach EOF once the init and the
        // command have closed theirs.
        drop((status_w, netns));

        let report = read_status(status_r).await;
        let mut task = RunningTask {
            task_id: task_id.clone(),
            init: Supervisor::Child(child),
            pid: report.pid.unwrap_or(0),
            pidfd: None,
            exit: None,
            stop_signal: Signal::SIGTERM,
            detached: false,
        };
        if report.pid.is_none() || report.error.is_some() {
            let exit = task.wait().await?;
            let message = report.error.unwrap_or_else(|| match exit {
                TaskExit::Exited(EXIT_SETUP) => {
                    "the task's init failed before starting the command".into()
                }
                exit => format!("the task's init ended ({exit}) before starting the command"),
            });
            return Err(RuntimeError::StartFailed {
                task_id,
                message,
                exit,
            });
        }
        let init_pid = task.init.id();
        task.pidfd = init_pid.and_then(|init| open_pidfd_of_child_of(task.pid, init));
        let pid_file = spec.dir.join(PID_FILE);
        tokio::fs::write(&pid_file, format!("{}\n", task.pid))
            .await
            .map_err(dir_error(&pid_file))?;
        // For a restarted daemon to find the task again (live-restore).
        if let Some(record) = init_pid.and_then(|init| Record::of(init, task.pid)) {
            let path = spec.dir.join(super::adopt::RECORD_FILE);
            record.save(&spec.dir).map_err(dir_error(&path))?;
        }
        tracing::debug!(task = %task_id, pid = task.pid, "task started");
        Ok(task)
    }

    /// The task an earlier daemon started in `dir` and left running, if its
    /// init and command still run as recorded (see [`super::adopt`]).
    pub fn adopt(&self, task_id: &str, dir: &Path) -> Option<RunningTask> {
        let record = Record::load_alive(dir)?;
        let init = Supervisor::adopt(&record, dir)?;
        let pidfd = open_pidfd_of_child_of(record.pid, record.supervisor)?;
        tracing::info!(task = %task_id, pid = record.pid, "adopting a running task");
        Some(RunningTask {
            task_id: task_id.to_string(),
            init,
            pid: record.pid,
            pidfd: Some(pidfd),
            exit: None,
            stop_signal: Signal::SIGTERM,
            detached: false,
        })
    }

    fn spawn_error(&self, task_id: &str, source: std::io::Error) -> RuntimeError {
        RuntimeError::Spawn {
            task_id: task_id.to_string(),
            exe: self.self_exe.clone(),
            source,
        }
    }
}

/// What the task's init said on the status pipe.
#[derive(Debug, Default)]
struct StatusReport {
    pid: Option<u32>,
    error: Option<String>,
}

/// Reads the status pipe to its end (the command's `execve`, or its exit).
async fn read_status(fd: OwnedFd) -> StatusReport {
    let text = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        let _ = std::fs::File::from(fd).read_to_string(&mut text);
        text
    })
    .await
    .unwrap_or_default();
    let mut report = StatusReport::default();
    for line in text.lines() {
        if let Some(pid) = line.strip_prefix("pid ") {
            report.pid = pid.trim().parse().ok();
        } else if let Some(msg) = line.strip_prefix("err ") {
            report.error.get_or_insert_with(|| msg.to_string());
        }
    }
    report
}

/// A pidfd for `pid`, if it is (still) the child of `parent`: a PID read
/// from a pipe may belong to a process that has exited and been reaped in
/// the meantime; once the pidfd is open, checking the parent proves it
/// designates the right process.
fn open_pidfd_of_child_of(pid: u32, parent: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a PID and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ppid = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse::<u32>()
        .ok()?;
    (ppid == parent).then_some(fd)
}

/// Sends `sig` through a pidfd; a process that is gone is not an error.
fn pidfd_signal(fd: &OwnedFd, sig: Signal) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal with a valid pidfd, a signal number, no
    // siginfo and no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    match rc {
        0 => Ok(()),
        _ => match std::io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            e => Err(e),
        },
    }
}

/// A started task. Dropping it without [`RunningTask::wait`] or
/// [`RunningTask::stop`] having seen the end kills the task (SIGKILL),
/// unless it was [detached](RunningTask::detach).
#[derive(Debug)]
pub struct RunningTask {
    task_id: String,
    /// The task's init (the re-executed daemon binary), our child or
    /// adopted: its exit means the whole task is gone.
    init: Supervisor,
    /// PID 1 of the task's PID namespace, in the node's PID namespace.
    pid: u32,
    /// A pidfd for `pid`, so that signals never reach a reused PID; `None`
    /// if the command had already exited when the task started.
    pidfd: Option<OwnedFd>,
    /// How the task ended, once seen.
    exit: Option<TaskExit>,
    /// The signal [`RunningTask::stop`] sends first.
    stop_signal: Signal,
    /// Left running on purpose ([`RunningTask::detach`]): not killed on drop.
    detached: bool,
}

impl RunningTask {
    /// The PID (in the node's PID namespace) of the task's PID 1: the
    /// command. Its `/proc/<pid>/ns/*` are the task's namespaces.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The task's id.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// Waits for the task to end (its command and every process of its PID
    /// namespace gone). Cancel-safe: usable in `select!` with a stop request.
    pub async fn wait(&mut self) -> Result<TaskExit, RuntimeError> {
        if let Some(exit) = self.exit {
            return Ok(exit);
        }
        let exit = self
            .init
            .wait()
            .await
            .map_err(|source| RuntimeError::Process {
                task_id: self.task_id.clone(),
                action: "wait for the task",
                source,
            })?;
        self.exit = Some(exit);
        Ok(exit)
    }

    /// Sends `sig` to the task's PID 1. As for any PID 1, a signal the
    /// command does not handle is ignored, except SIGKILL.
    pub fn signal(&self, sig: Signal) -> Result<(), RuntimeError> {
        if self.exit.is_some() {
            return Ok(());
        }
        let result = match &self.pidfd {
            Some(fd) => pidfd_signal(fd, sig),
            // The command had already exited at start: the init forwards
            // what it can, and SIGKILL ends it (and, by PDEATHSIG, the rest).
            None => match self.init.id() {
                Some(init) => nix::sys::signal::kill(nix::unistd::Pid::from_raw(init as i32), sig)
                    .or_else(|e| {
                        if e == nix::errno::Errno::ESRCH {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(std::io::Error::from),
                None => Ok(()),
            },
        };
        result.map_err(|source| RuntimeError::Process {
            task_id: self.task_id.clone(),
            action: "signal the task",
            source,
        })
    }

    /// Lets the task run on after this handle is dropped (the daemon exits
    /// and leaves its tasks running).
    pub fn detach(&mut self) {
        self.detached = true;
    }

    /// The signal [`RunningTask::stop`] sends first (SIGTERM unless set).
    pub fn stop_signal(&self) -> Signal {
        self.stop_signal
    }

    /// Sets the signal [`RunningTask::stop`] sends first (`--stop-signal`).
    pub fn set_stop_signal(&mut self, signal: Signal) {
        self.stop_signal = signal;
    }

    /// Stops the task: its stop signal (SIGTERM unless set) to its PID 1,
    /// then SIGKILL if it has not ended after `grace`. Returns once every
    /// process of the task is gone.
    pub async fn stop(&mut self, grace: Duration) -> Result<TaskExit, RuntimeError> {
        self.stop_with(self.stop_signal, grace).await
    }

    /// Stops the task: `signal` to its PID 1, then SIGKILL if it has not
    /// ended after `grace`. A PID 1 with no handler for `signal` ends at
    /// once, as any other process would (see the `stop` module).
    pub async fn stop_with(
        &mut self,
        signal: Signal,
        grace: Duration,
    ) -> Result<TaskExit, RuntimeError> {
        if let Some(exit) = self.exit {
            return Ok(exit);
        }
        let delivery = super::stop::delivery(self.pid, signal);
        self.signal(delivery.sent())?;
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(exit) => exit.map(|exit| delivery.exit_as_sent(exit)),
            Err(_) => {
                tracing::debug!(task = %self.task_id, ?grace, %signal, "task ignored its stop signal; killing it");
                self.signal(Signal::SIGKILL)?;
                self.wait().await
            }
        }
    }
}

impl Drop for RunningTask {
    fn drop(&mut self) {
        if self.exit.is_none() && !self.detached {
            let _ = self.signal(Signal::SIGKILL);
            self.init.start_kill();
        }
    }
}
