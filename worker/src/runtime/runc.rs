//! The runc runtime: each image task is an OCI bundle (an overlayfs root of
//! the image's layers and the task's own upper dir, and a `config.json`)
//! run by `runc run` in the network namespace the netdriver made for it.
//!
//! `runc run` is started by the task's shim (the daemon binary re-executed
//! as `task-init shim`), which copies the container's output into the
//! task's rotated log and exits as the container did; the daemon need not
//! be alive for the container to run. `--keep` leaves runc's state (and
//! cgroup) after the exit until [`TaskHandle::remove`], so an OOM kill is
//! read from the cgroup before the state goes.
//!
//! Files: `<task dir>/bundle/{config.json,rootfs}`, `<task dir>/runc.log`
//! (runc's own errors, JSON lines), `<task dir>/pid` (the container's
//! first process), `<task dir>/container` (the container's id and
//! writable-layer dir, for a restarted daemon to clean up); the writable
//! layer in `<state>/containers/<container id>/{upper,work}`.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use sha2::Digest;

use super::image::{ImageTask, LogOptions, MountKind};
use super::init::shim_args;
use super::oci::{self, BundlePaths};
use super::task_runtime::{ExecTarget, TaskHandle, TaskRuntime};
use super::{ExecOutput, RuntimeError, TaskExit, TaskSpec};

/// The file in a task's directory naming its container (id, then writable-layer dir).
pub const CONTAINER_FILE: &str = "container";

/// How often the start waits for runc to write the container's PID.
const START_POLL: Duration = Duration::from_millis(2);

/// The container id of a task: 64 hex digits derived from the task id (its
/// first 12 are the default hostname, as in Docker).
pub fn container_id(task_id: &str) -> String {
    hex::encode(sha2::Sha256::digest(task_id.as_bytes()))
}

/// Runs image tasks with runc.
#[derive(Debug, Clone)]
pub struct RuncRuntime {
    /// The binary re-executed as each task's shim.
    self_exe: PathBuf,
    /// The runc binary.
    runc: PathBuf,
    /// runc's state directory (`--root`).
    root: PathBuf,
    /// The init `--init` mounts (tini-static), if the node has one.
    init_binary: Option<PathBuf>,
}

impl RuncRuntime {
    /// A runtime using the `runc` found in `PATH`, keeping runc's state in
    /// `root`; `self_exe` must dispatch `task-init` to
    /// [`super::task_init_main`].
    pub fn new(self_exe: PathBuf, root: PathBuf) -> Result<Self, RuntimeError> {
        let runc = find_in_path("runc").ok_or_else(|| RuntimeError::InvalidSpec {
            task_id: String::new(),
            reason: crate::preflight::Item::Runc.missing_line(),
        })?;
        let init_binary = ["/usr/bin/tini-static", "/usr/bin/docker-init"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        Ok(RuncRuntime {
            self_exe,
            runc,
            root,
            init_binary,
        })
    }

    fn runc_command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.runc);
        cmd.arg("--root").arg(&self.root);
        cmd
    }

    /// Runs `runc ARGS`, ignoring the outcome (cleanup of something that
    /// may already be gone).
    async fn runc_quiet(&self, args: &[&str]) {
        let _ = self
            .runc_command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }

    /// Removes everything of container `id`: runc's state (and its cgroup),
    /// the root filesystem mount, the bundle, the writable layer.
    async fn remove_container(&self, id: &str, paths: &BundlePaths, container_dir: &Path) {
        self.runc_quiet(&["delete", "--force", id]).await;
        unmount(&paths.rootfs);
        for dir in [&paths.bundle, &container_dir.to_path_buf()] {
            if let Err(err) = std::fs::remove_dir_all(dir)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), %err, "cannot remove a container directory");
            }
        }
    }

    /// Kills and removes the containers an earlier daemon left in
    /// `tasks_dir` (found by their `container` files), with their mounts,
    /// state and writable layers. The task directories themselves are the
    /// caller's.
    pub async fn reap(&self, tasks_dir: &Path) {
        let Ok(entries) = std::fs::read_dir(tasks_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let Ok(text) = std::fs::read_to_string(dir.join(CONTAINER_FILE)) else {
                continue;
            };
            let mut lines = text.lines();
            let (Some(id), Some(container_dir)) = (lines.next(), lines.next()) else {
                continue;
            };
            tracing::info!(container = %id, task_dir = %dir.display(), "removing a container left by an earlier daemon");
            self.runc_quiet(&["kill", id, "KILL"]).await;
            let container_dir = PathBuf::from(container_dir);
            let paths = BundlePaths::new(&dir, &container_dir);
            self.remove_container(id, &paths, &container_dir).await;
        }
    }

    /// Makes what the container needs on disk: writable layer, volumes,
    /// `/etc` files, the overlay root, `config.json`. On error, what was
    /// made is the caller's to remove.
    async fn prepare(
        &self,
        spec: &TaskSpec,
        image: &ImageTask,
        id: &str,
        paths: &BundlePaths,
    ) -> Result<(), RuntimeError> {
        let (command, user) = oci::check(spec, image, self.init_binary.as_deref())?;
        let dir_error = |path: &Path| {
            let (task_id, path) = (spec.task_id.clone(), path.to_path_buf());
            move |source| RuntimeError::TaskDir {
                task_id,
                path,
                source,
            }
        };
        std::fs::write(
            spec.dir.join(CONTAINER_FILE),
            format!("{id}\n{}\n", image.container_dir.display()),
        )
        .map_err(dir_error(&spec.dir))?;
        for d in [&paths.upper, &paths.work, &paths.rootfs] {
            std::fs::create_dir_all(d).map_err(dir_error(d))?;
        }
        // The upper dir is the container's `/`: every user may traverse it
        // (the daemon's umask keeps its own files private).
        set_mode(&paths.upper, 0o755).map_err(dir_error(&paths.upper))?;
        for m in image.mounts.iter().filter(|m| m.kind == MountKind::Volume) {
            let d = oci::volume_dir(&image.volumes_dir, &m.source);
            if !d.exists() {
                std::fs::create_dir_all(&d).map_err(dir_error(&d))?;
                set_mode(&d, 0o755).map_err(dir_error(&d))?;
            }
        }
        for (name, contents) in [
            ("resolv.conf", spec.resolv_conf.clone()),
            ("hosts", spec.hosts.clone()),
            ("hostname", format!("{}\n", spec.hostname)),
        ] {
            let path = spec.dir.join(name);
            std::fs::write(&path, contents).map_err(dir_error(&path))?;
            // Bind-mounted into the container: readable by its user, as Docker's.
            set_mode(&path, 0o644).map_err(dir_error(&path))?;
        }
        let options = oci::overlay_options(&image.image.layers, paths);
        nix::mount::mount(
            Some("overlay"),
            &paths.rootfs,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| RuntimeError::InvalidSpec {
            task_id: spec.task_id.clone(),
            reason: format!("cannot mount the container's root filesystem (overlay): {e}"),
        })?;
        // The working directory exists, as Docker makes it.
        let cwd = paths
            .rootfs
            .join(oci::workdir(image).trim_start_matches('/'));
        if !image.read_only {
            let _ = std::fs::create_dir_all(&cwd);
        }
        let memsw = Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
        let config = oci::build_spec(
            spec,
            image,
            command,
            &user,
            paths,
            id,
            self.init_binary.as_deref(),
            memsw,
        )?;
        let config_path = paths.bundle.join("config.json");
        config
            .save(&config_path)
            .map_err(|e| RuntimeError::InvalidSpec {
                task_id: spec.task_id.clone(),
                reason: format!("cannot write {}: {e}", config_path.display()),
            })?;
        Ok(())
    }

    async fn launch(
        &self,
        spec: &TaskSpec,
        log: LogOptions,
        id: &str,
        paths: &BundlePaths,
    ) -> Result<(tokio::process::Child, u32), RuntimeError> {
        let pid_file = spec.dir.join(super::PID_FILE);
        let _ = std::fs::remove_file(&pid_file);
        let runc_log = spec.dir.join("runc.log");
        let _ = std::fs::remove_file(&runc_log);
        let command: Vec<OsString> = vec![
            self.runc.clone().into(),
            "--root".into(),
            self.root.clone().into(),
            "--log".into(),
            runc_log.clone().into(),
            "--log-format".into(),
            "json".into(),
            "run".into(),
            "--keep".into(),
            "--bundle".into(),
            paths.bundle.clone().into(),
            "--pid-file".into(),
            pid_file.clone().into(),
            id.into(),
        ];
        let (status_r, status_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::Spawn {
                task_id: spec.task_id.clone(),
                exe: self.self_exe.clone(),
                source: e.into(),
            })?;
        let status_fd = status_w.as_raw_fd();
        let mut cmd = tokio::process::Command::new(&self.self_exe);
        cmd.args(shim_args(status_fd, &spec.dir, log, &command))
            .env_clear()
            .env("PATH", super::DEFAULT_PATH)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C on the daemon's terminal and
            // the daemon's death leave the container running.
            .process_group(0);
        // SAFETY: the closure runs in the forked child before execve and
        // only clears FD_CLOEXEC on the status pipe's write end (fcntl is
        // async-signal-safe), so the shim inherits it.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(status_fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut shim = cmd.spawn().map_err(|source| RuntimeError::Spawn {
            task_id: spec.task_id.clone(),
            exe: self.self_exe.clone(),
            source,
        })?;
        drop(status_w);
        let shim_error = read_status(status_r).await;
        if let Some(message) = shim_error {
            let exit = shim
                .wait()
                .await
                .map(TaskExit::from)
                .unwrap_or(TaskExit::Exited(125));
            return Err(RuntimeError::StartFailed {
                task_id: spec.task_id.clone(),
                message,
                exit,
            });
        }
        // runc writes the PID file once the container's process exists.
        loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
            {
                return Ok((shim, pid));
            }
            if let Ok(Some(status)) = shim.try_wait() {
                let exit = TaskExit::from(status);
                let message = runc_error(&runc_log).unwrap_or_else(|| {
                    format!("runc ended ({exit}) before starting the container")
                });
                return Err(RuntimeError::StartFailed {
                    task_id: spec.task_id.clone(),
                    message,
                    exit,
                });
            }
            tokio::time::sleep(START_POLL).await;
        }
    }
}

/// Reads the shim's status pipe to its end: `None` once runc was executed,
/// else the shim's error.
async fn read_status(fd: OwnedFd) -> Option<String> {
    let text = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut text = String::new();
        let _ = std::fs::File::from(fd).read_to_string(&mut text);
        text
    })
    .await
    .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("err "))
        .map(str::to_string)
}

/// The last error runc logged (its JSON log's `msg`), made readable.
fn runc_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v["level"] != "error" {
            return None;
        }
        let msg = v["msg"].as_str()?;
        Some(clean_runc_error(msg))
    })
}

/// runc's start errors as Docker words them for a missing executable.
fn clean_runc_error(msg: &str) -> String {
    if let Some(pos) = msg.find("exec: ") {
        let tail = &msg[pos..];
        if tail.contains("no such file or directory") || tail.contains("executable file not found")
        {
            return format!("starting container failed: {}", tail.trim_end_matches('\n'));
        }
    }
    msg.to_string()
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn unmount(path: &Path) {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(err) => tracing::warn!(path = %path.display(), %err, "cannot unmount a container root"),
    }
}

/// Where the daemon finds program `name`: `PATH`, then the usual system directories.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| super::DEFAULT_PATH.into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A running (or ended, not yet removed) runc container.
pub struct RuncTask {
    runtime: RuncRuntime,
    task_id: String,
    id: String,
    shim: tokio::process::Child,
    pid: u32,
    paths: BundlePaths,
    container_dir: PathBuf,
    stop_signal: String,
    exit: Option<TaskExit>,
    removed: bool,
}

impl RuncTask {
    /// Whether the kernel's OOM killer killed a process of the container
    /// (read from its memory cgroup, kept until removal by `--keep`).
    fn oom_killed(&self) -> bool {
        let cgroup = oci::cgroup_path(&self.id);
        let rel = cgroup.strip_prefix("/").unwrap_or(&cgroup);
        let v1 = Path::new("/sys/fs/cgroup/memory")
            .join(rel)
            .join("memory.oom_control");
        let v2 = Path::new("/sys/fs/cgroup").join(rel).join("memory.events");
        [v1, v2].iter().any(|file| {
            std::fs::read_to_string(file).is_ok_and(|text| {
                text.lines().any(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            })
        })
    }
}

#[tonic::async_trait]
impl TaskHandle for RuncTask {
    fn pid(&self) -> u32 {
        self.pid
    }

    async fn wait(&mut self) -> Result<TaskExit, RuntimeError> {
        if let Some(exit) = self.exit {
            return Ok(exit);
        }
        let status = self
            .shim
            .wait()
            .await
            .map_err(|source| RuntimeError::Process {
                task_id: self.task_id.clone(),
                action: "wait for the container",
                source,
            })?;
        let mut exit = TaskExit::from(status);
        if !exit.success() && self.oom_killed() {
            exit = TaskExit::OomKilled;
        }
        self.exit = Some(exit);
        Ok(exit)
    }

    async fn stop(&mut self, grace: Duration) -> Result<TaskExit, RuntimeError> {
        if let Some(exit) = self.exit {
            return Ok(exit);
        }
        let signal = if self.stop_signal.is_empty() {
            "TERM".to_string()
        } else {
            self.stop_signal.clone()
        };
        self.runtime.runc_quiet(&["kill", &self.id, &signal]).await;
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(exit) => exit,
            Err(_) => {
                tracing::debug!(task = %self.task_id, ?grace, "container ignored its stop signal; killing it");
                self.runtime.runc_quiet(&["kill", &self.id, "KILL"]).await;
                self.wait().await
            }
        }
    }

    async fn remove(&mut self) {
        if self.removed {
            return;
        }
        if self.exit.is_none() {
            self.runtime.runc_quiet(&["kill", &self.id, "KILL"]).await;
            let _ = self.wait().await;
        }
        self.runtime
            .remove_container(&self.id, &self.paths, &self.container_dir)
            .await;
        let _ = std::fs::remove_file(self.paths.bundle.with_file_name(CONTAINER_FILE));
        self.removed = true;
    }
}

impl Drop for RuncTask {
    fn drop(&mut self) {
        if !self.removed {
            tracing::warn!(task = %self.task_id, "a runc container was dropped without being removed");
        }
    }
}

#[tonic::async_trait]
impl TaskRuntime for RuncRuntime {
    fn name(&self) -> &'static str {
        "runc"
    }

    async fn start(&self, spec: &TaskSpec) -> Result<Box<dyn TaskHandle>, RuntimeError> {
        spec.validate()?;
        let Some(image) = &spec.image else {
            return Err(RuntimeError::InvalidSpec {
                task_id: spec.task_id.clone(),
                reason: "the runc runtime runs images; this task has none".into(),
            });
        };
        let stop_signal = spec
            .stop_signal()?
            .map(|s| s.as_str().trim_start_matches("SIG").to_string())
            .unwrap_or_default();
        let id = container_id(&spec.task_id);
        let paths = BundlePaths::new(&spec.dir, &image.container_dir);
        std::fs::create_dir_all(&spec.dir).map_err(|source| RuntimeError::TaskDir {
            task_id: spec.task_id.clone(),
            path: spec.dir.clone(),
            source,
        })?;
        let started = match self.prepare(spec, image, &id, &paths).await {
            Ok(()) => self.launch(spec, image.log, &id, &paths).await,
            Err(err) => Err(err),
        };
        match started {
            Ok((shim, pid)) => {
                tracing::debug!(task = %spec.task_id, container = %id, pid, "container started");
                Ok(Box::new(RuncTask {
                    runtime: self.clone(),
                    task_id: spec.task_id.clone(),
                    id,
                    shim,
                    pid,
                    paths,
                    container_dir: image.container_dir.clone(),
                    stop_signal,
                    exit: None,
                    removed: false,
                }))
            }
            Err(err) => {
                self.runc_quiet(&["kill", &id, "KILL"]).await;
                self.remove_container(&id, &paths, &image.container_dir)
                    .await;
                let _ = std::fs::remove_file(spec.dir.join(CONTAINER_FILE));
                Err(err)
            }
        }
    }

    async fn exec(
        &self,
        target: &ExecTarget,
        args: &[String],
        env: &[String],
    ) -> Result<ExecOutput, RuntimeError> {
        let id = container_id(&target.task_id);
        let guard = ExecGuard::new(&self.root);
        let mut cmd = self.runc_command();
        cmd.arg("exec");
        if let Some(pid_file) = &guard.pid_file {
            cmd.arg("--pid-file").arg(pid_file);
        }
        for e in env {
            cmd.arg("--env").arg(e);
        }
        cmd.arg(&id).args(args);
        let output = cmd
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| RuntimeError::Exec {
                pid: target.pid,
                source,
            })?;
        guard.done();
        let mut stderr = output.stderr;
        // runc's own complaint (e.g. a missing executable) reads as Docker's.
        if output.status.code() == Some(255) || output.status.code() == Some(1) {
            let text = String::from_utf8_lossy(&stderr).to_string();
            if text.contains("exec: ") && text.contains("not found")
                || text.contains("no such file or directory")
            {
                stderr = format!("{}\n", clean_runc_error(text.trim())).into_bytes();
                return Ok(ExecOutput {
                    exit: TaskExit::Exited(127),
                    stdout: output.stdout,
                    stderr,
                });
            }
        }
        Ok(ExecOutput {
            exit: output.status.into(),
            stdout: output.stdout,
            stderr,
        })
    }
}

/// The process of a `runc exec` whose caller gave up on it (a health probe past its timeout):
/// killing `runc exec` leaves the process running in the container, so it is killed by the
/// PID runc wrote, unless the exec ended.
struct ExecGuard {
    /// `RUN/runc-exec/<random>.pid`; `None` when that directory cannot be made.
    pid_file: Option<PathBuf>,
    ended: bool,
}

impl ExecGuard {
    fn new(root: &Path) -> ExecGuard {
        let dir = root
            .parent()
            .map_or_else(|| root.join("exec"), |run| run.join("runc-exec"));
        let pid_file = std::fs::create_dir_all(&dir).ok().map(|()| {
            let name: [u8; 12] = rand10::random();
            dir.join(format!("{}.pid", hex::encode(name)))
        });
        ExecGuard {
            pid_file,
            ended: false,
        }
    }

    /// The exec ended by itself: nothing to kill.
    fn done(mut self) {
        self.ended = true;
    }
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        let Some(pid_file) = &self.pid_file else {
            return;
        };
        if !self.ended
            && let Ok(text) = std::fs::read_to_string(pid_file)
            && let Ok(pid) = text.trim().parse::<i32>()
            && pid > 1
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = std::fs::remove_file(pid_file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_64_hex_and_stable() {
        let id = container_id("abc");
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(id, container_id("abc"));
        assert_ne!(id, container_id("abd"));
    }

    #[test]
    fn missing_executables_read_as_docker_says() {
        let msg = "runc run failed: unable to start container process: exec: \"nope\": executable file not found in $PATH";
        assert_eq!(
            clean_runc_error(msg),
            "starting container failed: exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(clean_runc_error("other"), "other");
    }
}
