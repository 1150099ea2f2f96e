//! Network namespace files, without forking: create (unshare + bind mount), enter on a
//! short-lived OS thread, remove. Public because the task runtime and the test harness need the
//! same primitives.
//!
//! Nothing here ever calls `setns` on the caller's thread: every namespace switch happens on a
//! dedicated thread that exits afterwards, so tokio workers stay in their namespace.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// True when `path` is a live (bind-mounted) namespace file: `statfs` reports nsfs.
pub fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

/// Runs `f` on a fresh OS thread and waits for it (blocking the caller).
fn on_thread<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    std::thread::Builder::new()
        .name("mini-netns".into())
        .spawn(f)?
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// Runs `f` on a fresh OS thread without blocking the async caller.
pub async fn on_thread_async<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("mini-netns".into())
        .spawn(move || {
            let _ = tx.send(f());
        })?;
    rx.await
        .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// Creates a new network namespace bound to the file `path` (which must not exist), then runs
/// `f` inside it (e.g. to open a netlink socket there). On any error nothing is left behind.
/// Call this from a thread you own or through [`on_thread_async`]; it spawns its own thread.
pub fn create_with<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path = path.to_path_buf();
    on_thread(move || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)?;
        let made = nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .and_then(|()| {
                nix::mount::mount(
                    Some("/proc/thread-self/ns/net"),
                    &path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
            })
            .map_err(io::Error::from);
        if let Err(e) = made {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        f().inspect_err(|_| {
            let _ = remove(&path);
        })
    })
}

/// Creates a new network namespace bound to `path`.
pub fn create(path: &Path) -> io::Result<()> {
    create_with(path, || Ok(()))
}

/// Unmounts and deletes a namespace file. Missing files and files that are not mounted are
/// fine. The namespace itself ends when nothing else (process, socket) holds it.
pub fn remove(path: &Path) -> io::Result<()> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Runs `f` on a fresh OS thread that entered the namespace of `path` (`None`: the caller's own
/// namespace). Processes spawned by `f` start in that namespace.
pub fn run_in<T: Send + 'static>(
    path: Option<&Path>,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path = path.map(Path::to_path_buf);
    on_thread(move || enter_then(path, f))
}

/// [`run_in`] for async callers.
pub async fn run_in_async<T: Send + 'static>(
    path: Option<PathBuf>,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    on_thread_async(move || enter_then(path, f)).await
}

fn enter_then<T>(path: Option<PathBuf>, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    if let Some(path) = path {
        let file = File::open(&path)?;
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)?;
    }
    f()
}
