//! Live-restore: finding again the tasks an earlier daemon left running.
//!
//! Each task's supervisor (the `task-init` of a `host` task, the shim of a
//! runc container) runs in its own process group with its output going to
//! the task's log file, so it outlives the daemon. At start the runtime
//! records, in the task's directory ([`RECORD_FILE`], mode 0600), the
//! supervisor's and the main process's PIDs with their start times; a
//! restarted daemon adopts the task only if both processes still run with
//! those start times (a reused PID is never taken for the task). When a
//! supervisor ends it writes how its command ended in [`EXIT_FILE`], which is
//! how a daemon that is not its parent learns the task's exit.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::io::unix::AsyncFd;

use super::TaskExit;

/// The file, in a task's directory, recording its processes for adoption.
pub const RECORD_FILE: &str = "processes";

/// The file, in a task's directory, where the supervisor writes how the
/// command ended (`exited N` or `signaled N`).
pub const EXIT_FILE: &str = "exit";

/// The start time of process `pid` (field 22 of `/proc/PID/stat`, clock
/// ticks since boot): with the PID, it names one process for good.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); a zombie is not a running task.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(22 - 3)?.parse().ok()
}

/// The processes of a task, as recorded at its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// The supervisor (task init or shim), in the node's PID namespace.
    pub supervisor: u32,
    /// Its start time.
    pub supervisor_start: u64,
    /// The task's main process (PID 1 of its namespace), in the node's PID namespace.
    pub pid: u32,
    /// Its start time.
    pub pid_start: u64,
}

impl Record {
    /// The record of running processes `supervisor` and `pid`; `None` if either is gone.
    pub fn of(supervisor: u32, pid: u32) -> Option<Record> {
        Some(Record {
            supervisor,
            supervisor_start: start_time(supervisor)?,
            pid,
            pid_start: start_time(pid)?,
        })
    }

    /// Writes the record in `dir` (mode 0600, replacing any older one).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{RECORD_FILE}.tmp"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(
            file,
            "{} {} {} {}",
            self.supervisor, self.supervisor_start, self.pid, self.pid_start
        )?;
        std::fs::rename(tmp, dir.join(RECORD_FILE))
    }

    /// Parses a record's text.
    pub fn parse(text: &str) -> Option<Record> {
        let n: Vec<u64> = text
            .split_whitespace()
            .map(|w| w.parse().ok())
            .collect::<Option<_>>()?;
        match n[..] {
            [supervisor, supervisor_start, pid, pid_start] => Some(Record {
                supervisor: u32::try_from(supervisor).ok()?,
                supervisor_start,
                pid: u32::try_from(pid).ok()?,
                pid_start,
            }),
            _ => None,
        }
    }

    /// The record in `dir`, if both of its processes still run as recorded.
    pub fn load_alive(dir: &Path) -> Option<Record> {
        let record = Record::parse(&std::fs::read_to_string(dir.join(RECORD_FILE)).ok()?)?;
        let alive = |pid: u32, start: u64| pid > 1 && start_time(pid) == Some(start);
        (alive(record.supervisor, record.supervisor_start) && alive(record.pid, record.pid_start))
            .then_some(record)
    }
}

/// Writes how the command ended into `dir`'s [`EXIT_FILE`] (by the supervisor).
pub(crate) fn write_exit(dir: &Path, exit: TaskExit) {
    let text = match exit {
        TaskExit::Exited(code) => format!("exited {code}\n"),
        TaskExit::Signaled(sig) => format!("signaled {sig}\n"),
        TaskExit::OomKilled => "signaled 9\n".to_string(),
    };
    let _ = std::fs::write(dir.join(EXIT_FILE), text);
}

/// How the command of the task in `dir` ended, as its supervisor wrote it.
pub fn read_exit(dir: &Path) -> Option<TaskExit> {
    let text = std::fs::read_to_string(dir.join(EXIT_FILE)).ok()?;
    let (kind, n) = text.trim().split_once(' ')?;
    let n: i32 = n.parse().ok()?;
    match kind {
        "exited" => Some(TaskExit::Exited(n)),
        "signaled" => Some(TaskExit::Signaled(n)),
        _ => None,
    }
}

/// A pidfd of `pid`, if it still is the process that started at `start`.
fn pidfd_of(pid: u32, start: u64) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a PID and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // Checked once the pidfd is open: it designates the recorded process.
    (start_time(pid) == Some(start)).then_some(fd)
}

/// The supervisor of a task: our child (a task this daemon started), or a
/// process an earlier daemon started (adopted), watched through a pidfd.
#[derive(Debug)]
pub(crate) enum Supervisor {
    /// Started by this daemon.
    Child(tokio::process::Child),
    /// Adopted: not our child, so its exit status comes from [`EXIT_FILE`].
    Adopted {
        pid: u32,
        pidfd: AsyncFd<OwnedFd>,
        dir: PathBuf,
    },
}

impl Supervisor {
    /// The supervisor of the record's task, if it still runs.
    pub(crate) fn adopt(record: &Record, dir: &Path) -> Option<Supervisor> {
        let pidfd = pidfd_of(record.supervisor, record.supervisor_start)?;
        // SAFETY: the OwnedFd is a valid pidfd, owned by the AsyncFd from now on and
        // neither closed nor replaced while registered.
        let pidfd =
            unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
                .ok()?;
        Some(Supervisor::Adopted {
            pid: record.supervisor,
            pidfd,
            dir: dir.to_path_buf(),
        })
    }

    /// Its PID, while it runs.
    pub(crate) fn id(&self) -> Option<u32> {
        match self {
            Supervisor::Child(child) => child.id(),
            Supervisor::Adopted { pid, .. } => Some(*pid),
        }
    }

    /// Waits for it to end; cancel-safe.
    pub(crate) async fn wait(&mut self) -> std::io::Result<TaskExit> {
        match self {
            Supervisor::Child(child) => child.wait().await.map(TaskExit::from),
            Supervisor::Adopted { pidfd, dir, .. } => {
                // A pidfd turns readable when its process ends.
                let mut ready = pidfd.readable().await?;
                ready.retain_ready();
                // Not ours to reap: how it ended is in its exit file (SIGKILLed: no file).
                Ok(read_exit(dir).unwrap_or(TaskExit::Signaled(9)))
            }
        }
    }

    /// SIGKILLs it (no wait).
    pub(crate) fn start_kill(&mut self) {
        match self {
            Supervisor::Child(child) => {
                let _ = child.start_kill();
            }
            Supervisor::Adopted { pidfd, .. } => {
                // SAFETY: pidfd_send_signal with a valid pidfd, SIGKILL, no siginfo, no flags.
                unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        pidfd.get_ref().as_raw_fd(),
                        libc::SIGKILL,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_privately_and_only_live_ones_load() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let record = Record::of(me, me).expect("this process runs");
        record.save(dir.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(RECORD_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Record::load_alive(dir.path()), Some(record));
        // Same PID, another start time: a reused PID, not the task.
        let reused = Record {
            pid_start: record.pid_start + 1,
            ..record
        };
        reused.save(dir.path()).unwrap();
        assert_eq!(Record::load_alive(dir.path()), None);
        assert_eq!(Record::parse("1 2 3"), None);
        assert_eq!(Record::parse("a b c d"), None);
    }

    #[test]
    fn exits_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_exit(dir.path()), None);
        for exit in [
            TaskExit::Exited(0),
            TaskExit::Exited(3),
            TaskExit::Signaled(15),
        ] {
            write_exit(dir.path(), exit);
            assert_eq!(read_exit(dir.path()), Some(exit));
        }
    }
}
