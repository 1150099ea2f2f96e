//! What the task's PID 1 does before it becomes the command: make the
//! mount namespace private, mount a fresh `/proc`, bind the task's own
//! `/etc` files, set the hostname, then find and execute the command.
//!
//! Runs in the forked child of the task's init, which is single-threaded,
//! so allocating here is fine.

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::unistd::{AccessFlags, access};

/// Exit status of a task whose setup (mounts, hostname) failed.
pub(crate) const EXIT_SETUP: i32 = 125;
/// Exit status of a task whose command exists but cannot be executed.
pub(crate) const EXIT_CANNOT_EXEC: i32 = 126;
/// Exit status of a task whose command does not exist (as in a shell).
pub(crate) const EXIT_NOT_FOUND: i32 = 127;

/// The files of the task directory bind-mounted over the node's: (file in
/// the task directory, target, whether the target must exist).
pub(crate) const ETC_FILES: [(&str, &str, bool); 3] = [
    ("resolv.conf", "/etc/resolv.conf", true),
    ("hosts", "/etc/hosts", true),
    ("hostname", "/etc/hostname", false),
];

/// The directory, in a `host` task's directory, where its init mounts a tmpfs private to the
/// task's mount namespace: the upper layers of the overlays that make missing file targets
/// (so nothing is ever created on the node's own filesystem).
pub(crate) const SCRATCH_DIR: &str = "scratch";

/// An open file or directory (`O_PATH`), to bind-mount from `/proc/self/fd/N` after overlays
/// may have hidden its path.
fn open_path(path: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

fn fd_path(file: &std::fs::File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Makes `target` an (empty) file the task sees, without touching the node's filesystem: the
/// deepest existing ancestor gets an overlay whose upper layer is on the scratch tmpfs.
/// `n` numbers the overlays.
fn make_target(scratch: &Path, target: &Path, n: usize) -> Result<(), String> {
    let mut ancestor = target.parent();
    while let Some(a) = ancestor
        && !a.exists()
    {
        ancestor = a.parent();
    }
    let ancestor = ancestor.unwrap_or(Path::new("/"));
    let shown = ancestor.to_string_lossy();
    if ancestor == Path::new("/") || !ancestor.is_dir() || shown.contains([',', ':']) {
        return Err(format!(
            "cannot place a file at {} in a host task: the host runtime creates files only \
             inside an existing directory other than / (give a target such as /run/secrets/NAME \
             or /etc/NAME)",
            target.display()
        ));
    }
    let upper = scratch.join(format!("upper{n}"));
    let work = scratch.join(format!("work{n}"));
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let options = format!(
        "lowerdir={shown},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        ancestor,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| format!("cannot make {} writable for the task: {e}", shown))?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::File::create(target)
        .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    Ok(())
}

/// Binds `source` (an open file) read-only on `target`.
fn bind_read_only(source: &std::fs::File, target: &Path) -> Result<(), String> {
    let from = fd_path(source);
    mount(
        Some(&from),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("cannot bind-mount a file on {}: {e}", target.display()))?;
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|e| format!("cannot make {} read-only: {e}", target.display()))
}

/// Prepares the task's private view of the node: mounts and hostname.
/// Returns the message for the task's error on failure.
pub(crate) fn prepare(hostname: &OsStr, dir: &Path) -> Result<(), String> {
    // First of all, so that nothing below propagates to the node's mounts.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("cannot make the task's mounts private: {e}"))?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| format!("cannot mount /proc for the task: {e}"))?;
    // Every source is opened before an overlay (for a secret's or config's target) may hide
    // the task directory's path.
    let mut etc = Vec::new();
    for (name, target, required) in ETC_FILES {
        if !required && !Path::new(target).exists() {
            continue;
        }
        etc.push((open_path(&dir.join(name))?, target));
    }
    let files =
        super::spec::decode_files(&std::fs::read(dir.join(super::FILES_LIST)).unwrap_or_default());
    if !files.is_empty() {
        let sources = files
            .iter()
            .map(|f| open_path(&f.source))
            .collect::<Result<Vec<_>, _>>()?;
        let scratch = dir.join(SCRATCH_DIR);
        mount(
            Some("tmpfs"),
            &scratch,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0700"),
        )
        .map_err(|e| format!("cannot mount the task's scratch tmpfs: {e}"))?;
        for (n, (file, source)) in files.iter().zip(&sources).enumerate() {
            let target = Path::new(&file.target);
            if !target.is_file() {
                make_target(&scratch, target, n)?;
            }
            bind_read_only(source, target)?;
        }
    }
    for (source, target) in &etc {
        mount(
            Some(&fd_path(source)),
            *target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("cannot bind-mount the task's {target}: {e}"))?;
    }
    nix::unistd::sethostname(hostname)
        .map_err(|e| format!("cannot set the hostname {hostname:?}: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("cannot change directory to /: {e}"))?;
    Ok(())
}

/// Why the command could not be executed.
#[derive(Debug)]
pub(crate) enum ExecError {
    /// No such file (in `PATH`, or at the given path).
    NotFound(OsString),
    /// Found but not executable.
    Denied(OsString),
    /// `execve` failed otherwise.
    Other(OsString, Errno),
}

impl ExecError {
    /// The exit status a shell would give.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            ExecError::NotFound(_) => EXIT_NOT_FOUND,
            ExecError::Denied(_) | ExecError::Other(..) => EXIT_CANNOT_EXEC,
        }
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::NotFound(cmd) => {
                write!(f, "executable file not found: {}", cmd.to_string_lossy())
            }
            ExecError::Denied(cmd) => write!(f, "permission denied: {}", cmd.to_string_lossy()),
            ExecError::Other(cmd, errno) => {
                write!(f, "cannot execute {}: {errno}", cmd.to_string_lossy())
            }
        }
    }
}

/// Replaces this process with `args` (looked up in the `PATH` of this
/// process's environment), passing this process's environment on.
/// Returns only on failure.
pub(crate) fn exec(args: &[OsString]) -> ExecError {
    let cmd = args[0].clone();
    let program = match find_executable(&cmd, std::env::var_os("PATH").as_deref()) {
        Ok(program) => program,
        Err(err) => return err,
    };
    let to_c = |s: &OsStr| CString::new(s.as_bytes());
    let argv: Result<Vec<CString>, _> = args.iter().map(|a| to_c(a)).collect();
    let envp: Result<Vec<CString>, _> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            to_c(&kv)
        })
        .collect();
    let (Ok(path), Ok(argv), Ok(envp)) = (to_c(program.as_os_str()), argv, envp) else {
        return ExecError::Other(cmd, Errno::EINVAL);
    };
    let errno = match nix::unistd::execve(&path, &argv, &envp) {
        Err(errno) => errno,
        Ok(never) => match never {},
    };
    match errno {
        Errno::ENOENT | Errno::ENOTDIR => ExecError::NotFound(cmd),
        Errno::EACCES | Errno::EPERM => ExecError::Denied(cmd),
        errno => ExecError::Other(cmd, errno),
    }
}

/// Finds `cmd` as `execvp` would: as given if it contains `/`, else the
/// first executable `dir/cmd` over `PATH` (an empty entry is `.`).
pub(crate) fn find_executable(cmd: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, ExecError> {
    if cmd.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(cmd));
    }
    let path = path.unwrap_or(OsStr::new(super::spec::DEFAULT_PATH));
    let mut denied = false;
    for dir in path.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() { b"." } else { dir };
        let candidate = Path::new(OsStr::from_bytes(dir)).join(cmd);
        if !candidate.is_file() {
            continue;
        }
        if access(&candidate, AccessFlags::X_OK).is_ok() {
            return Ok(candidate);
        }
        denied = true;
    }
    Err(if denied {
        ExecError::Denied(cmd.to_owned())
    } else {
        ExecError::NotFound(cmd.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_commands_in_path_and_keeps_paths() {
        let path = OsStr::new("/nonexistent:/usr/bin:/bin");
        let sh = find_executable(OsStr::new("sh"), Some(path)).unwrap();
        assert!(sh.ends_with("sh") && sh.is_absolute(), "{}", sh.display());
        assert_eq!(
            find_executable(OsStr::new("./x/y"), Some(path)).unwrap(),
            PathBuf::from("./x/y")
        );
        let err = find_executable(OsStr::new("no-such-command-mini"), Some(path)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "executable file not found: no-such-command-mini"
        );
        assert_eq!(err.exit_code(), 127);
    }

    #[test]
    fn a_file_that_is_not_executable_is_denied() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data"), "x").unwrap();
        let err = find_executable(OsStr::new("data"), Some(dir.path().as_os_str())).unwrap_err();
        // root may execute any file with an x bit; this one has none.
        assert_eq!(err.to_string(), "permission denied: data");
        assert_eq!(err.exit_code(), 126);
    }
}
