//! The task's init: the daemon binary re-executed as
//! `<exe> task-init run|exec ...` after the spawning process entered the
//! task's namespaces (as `runc init` does).
//!
//! It forks once more, because only the children of a process that
//! unshared (or entered) a PID namespace are in it: the child becomes the
//! command (PID 1 of the task's PID namespace for `run`, after
//! [`setup::prepare`]). The init itself stays in the node's PID namespace
//! and supervises the command:
//! - forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to it;
//! - for `run`, copies its stdout and stderr into the task's log (it is the
//!   task's shim, so the daemon need not be alive for the task to write);
//! - exits as the command did (same code, or killed by the same signal).
//!
//! The command's PID 1 is killed (PR_SET_PDEATHSIG) if the init dies, and
//! the kernel kills the rest of the PID namespace when PID 1 dies. PID 1 is
//! reaped (so the init exits) only once every process of its namespace is
//! gone: when the init has exited, nothing of the task is left.
//!
//! For `run`, the init reports on a status pipe inherited from the runtime:
//! `pid <N>` (PID 1 of the task, in the node's PID namespace) and, if the
//! command never started, `err <message>`. A successful `execve` closes the
//! pipe (close-on-exec), which is how the runtime learns the command runs.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::TaskExit;
use super::image::LogOptions;
use super::logs::{LineSplitter, RotatingLog, Stream, format_record, log_path};
use super::setup::{self, EXIT_SETUP};

/// The hidden subcommand of the daemon binary that runs [`task_init_main`].
pub const INIT_SUBCOMMAND: &str = "task-init";

/// The signals the init forwards to the command.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// What the init was asked to do.
#[derive(Debug)]
enum Mode {
    /// Start a task: set up its PID 1, log its output, report on `status_fd`.
    Run {
        status_fd: RawFd,
        hostname: OsString,
        dir: PathBuf,
    },
    /// Run a command in an existing task's namespaces, output inherited.
    Exec,
    /// Be the shim of a runc container: run the command (`runc run ...`)
    /// as is, copy its output into the task's rotated log, report on
    /// `status_fd`.
    Shim {
        status_fd: RawFd,
        dir: PathBuf,
        log: LogOptions,
    },
}

impl Mode {
    fn status_fd(&self) -> Option<RawFd> {
        match self {
            Mode::Run { status_fd, .. } | Mode::Shim { status_fd, .. } => Some(*status_fd),
            Mode::Exec => None,
        }
    }
}

/// The arguments after [`INIT_SUBCOMMAND`] for starting a task.
pub(crate) fn run_args(
    status_fd: RawFd,
    hostname: &str,
    dir: &Path,
    args: &[String],
) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![
        INIT_SUBCOMMAND.into(),
        "run".into(),
        status_fd.to_string().into(),
        hostname.into(),
        dir.into(),
        "--".into(),
    ];
    argv.extend(args.iter().map(OsString::from));
    argv
}

/// The arguments after [`INIT_SUBCOMMAND`] for an exec.
pub(crate) fn exec_args(args: &[String]) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![INIT_SUBCOMMAND.into(), "exec".into(), "--".into()];
    argv.extend(args.iter().map(OsString::from));
    argv
}

/// The arguments after [`INIT_SUBCOMMAND`] for the shim of a runc task.
pub(crate) fn shim_args(
    status_fd: RawFd,
    dir: &Path,
    log: LogOptions,
    command: &[OsString],
) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![
        INIT_SUBCOMMAND.into(),
        "shim".into(),
        status_fd.to_string().into(),
        dir.into(),
        log.max_size.to_string().into(),
        log.max_file.to_string().into(),
        "--".into(),
    ];
    argv.extend(command.iter().cloned());
    argv
}

fn parse(args: Vec<OsString>) -> Result<(Mode, Vec<OsString>), String> {
    let split = args
        .iter()
        .position(|a| a == "--")
        .ok_or("missing `--` before the command")?;
    let (head, command) = (&args[..split], args[split + 1..].to_vec());
    if command.is_empty() {
        return Err("no command after `--`".into());
    }
    let mode = match head {
        [mode] if mode == "exec" => Mode::Exec,
        [mode, fd, hostname, dir] if mode == "run" => Mode::Run {
            status_fd: fd
                .to_str()
                .and_then(|s| s.parse().ok())
                .ok_or("the status fd is not a number")?,
            hostname: hostname.clone(),
            dir: PathBuf::from(dir),
        },
        [mode, fd, dir, max_size, max_file] if mode == "shim" => Mode::Shim {
            status_fd: fd
                .to_str()
                .and_then(|s| s.parse().ok())
                .ok_or("the status fd is not a number")?,
            dir: PathBuf::from(dir),
            log: LogOptions {
                max_size: max_size
                    .to_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or("max-size is not a number")?,
                max_file: max_file
                    .to_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or("max-file is not a number")?,
            },
        },
        _ => {
            return Err(
                "usage: task-init run FD HOSTNAME DIR -- CMD... | exec -- CMD... | shim FD DIR MAX_SIZE MAX_FILE -- CMD..."
                    .into(),
            );
        }
    };
    Ok((mode, command))
}

/// The entry point of the hidden `task-init` subcommand: `args` are the
/// arguments after it. Never returns: exits as the task's command did.
///
/// Must be called first thing in `main`, before any thread is started (in
/// particular before a tokio runtime is built): it forks.
pub fn task_init_main(args: impl IntoIterator<Item = OsString>) -> ! {
    // The daemon runs with umask 077 (its files are private); a task gets Docker's 022.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let code = match parse(args.into_iter().collect()) {
        Ok((mode, command)) => supervise(&mode, &command),
        Err(msg) => {
            eprintln!("mini {INIT_SUBCOMMAND}: {msg}");
            EXIT_SETUP
        }
    };
    std::process::exit(code)
}

/// Reports a failure before the command started, and returns the code to exit with.
fn fail(mode: &Mode, code: i32, msg: &str) -> i32 {
    if let Some(status_fd) = mode.status_fd() {
        // SAFETY: the runtime passed this fd open for us; ManuallyDrop-like
        // borrowing: it is only written here, never closed.
        let fd = unsafe { BorrowedFd::borrow_raw(status_fd) };
        let _ = nix::unistd::write(fd, format!("err {msg}\n").as_bytes());
    }
    eprintln!("{msg}");
    code
}

fn supervise(mode: &Mode, command: &[OsString]) -> i32 {
    let mut signals = SigSet::empty();
    for sig in FORWARDED.iter().chain(&[Signal::SIGCHLD]) {
        signals.add(*sig);
    }
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None) {
        return fail(mode, EXIT_SETUP, &format!("cannot block signals: {e}"));
    }
    let sfd = match SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(sfd) => sfd,
        Err(e) => return fail(mode, EXIT_SETUP, &format!("cannot create a signalfd: {e}")),
    };
    let pipes = match mode {
        Mode::Run { .. } | Mode::Shim { .. } => match (
            nix::unistd::pipe2(OFlag::O_CLOEXEC),
            nix::unistd::pipe2(OFlag::O_CLOEXEC),
        ) {
            (Ok(out), Ok(err)) => Some((out, err)),
            (Err(e), _) | (_, Err(e)) => {
                return fail(
                    mode,
                    EXIT_SETUP,
                    &format!("cannot create output pipes: {e}"),
                );
            }
        },
        Mode::Exec => None,
    };
    // SAFETY: this process is single-threaded (a fresh exec of the binary,
    // see `task_init_main`), so the child may do anything after the fork.
    let child = match unsafe { libc::fork() } {
        -1 => {
            let e = std::io::Error::last_os_error();
            return fail(
                mode,
                EXIT_SETUP,
                &format!("cannot fork the task's process: {e}"),
            );
        }
        0 => command_child(
            mode,
            command,
            &signals,
            pipes.map(|((_, out_w), (_, err_w))| (out_w, err_w)),
        ),
        pid => Pid::from_raw(pid),
    };
    let mut streams = Vec::new();
    if let Some(((out_r, out_w), (err_r, err_w))) = pipes {
        drop((out_w, err_w));
        streams.push(Output::new(Stream::Stdout, out_r));
        streams.push(Output::new(Stream::Stderr, err_r));
    }
    let mut sink = match mode {
        Mode::Shim { dir, log, .. } => LogSink::rotating(log_path(dir), *log),
        _ => LogSink::Stdout,
    };
    if let Some(status_fd) = mode.status_fd() {
        // SAFETY: the runtime passed this fd open for us and nothing else
        // owns it; closing it here is what lets the runtime see EOF.
        let status = unsafe { OwnedFd::from_raw_fd(status_fd) };
        let _ = nix::unistd::write(&status, format!("pid {child}\n").as_bytes());
    }
    let exit = supervise_loop(child, &sfd, &mut streams, &mut sink);
    // For a daemon that is not our parent (it restarted and adopted the task).
    if let Mode::Run { dir, .. } | Mode::Shim { dir, .. } = mode {
        let ended = match exit {
            Ended::Code(code) => TaskExit::Exited(code),
            Ended::Signal(sig) => TaskExit::Signaled(sig as i32),
        };
        super::adopt::write_exit(dir, ended);
    }
    mirror(exit)
}

/// The forked child: becomes the command. Never returns.
fn command_child(
    mode: &Mode,
    command: &[OsString],
    signals: &SigSet,
    stdio: Option<(OwnedFd, OwnedFd)>,
) -> ! {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(signals), None);
    let code = match mode {
        Mode::Run {
            status_fd,
            hostname,
            dir,
        } => {
            let _ = nix::unistd::setsid();
            if let Some((out_w, err_w)) = stdio {
                let _ = nix::unistd::dup2_stdout(&out_w);
                let _ = nix::unistd::dup2_stderr(&err_w);
            }
            // SAFETY: fcntl on an fd number only changes its flags; the
            // status fd stays open until execve closes it.
            unsafe { libc::fcntl(*status_fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            match setup::prepare(hostname, dir) {
                Err(msg) => fail(mode, EXIT_SETUP, &msg),
                Ok(()) => {
                    let err = setup::exec(command);
                    fail(mode, err.exit_code(), &err.to_string())
                }
            }
        }
        Mode::Exec => {
            let err = setup::exec(command);
            fail(mode, err.exit_code(), &err.to_string())
        }
        Mode::Shim { status_fd, .. } => {
            if let Some((out_w, err_w)) = stdio {
                let _ = nix::unistd::dup2_stdout(&out_w);
                let _ = nix::unistd::dup2_stderr(&err_w);
            }
            // SAFETY: as for `run`: only the fd's flags change.
            unsafe { libc::fcntl(*status_fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            let err = setup::exec(command);
            fail(mode, err.exit_code(), &err.to_string())
        }
    };
    std::process::exit(code)
}

/// One output stream of the command being copied into the log.
struct Output {
    stream: Stream,
    fd: Option<OwnedFd>,
    lines: LineSplitter,
}

impl Output {
    fn new(stream: Stream, fd: OwnedFd) -> Self {
        Output {
            stream,
            fd: Some(fd),
            lines: LineSplitter::default(),
        }
    }

    /// Reads what is available into `sink`; closes the stream at EOF.
    fn pump(&mut self, sink: &mut LogSink) {
        let Some(fd) = &self.fd else { return };
        let mut buf = [0u8; 16 * 1024];
        let lines = match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(_) => {
                self.fd = None;
                self.lines.finish().into_iter().collect()
            }
            Ok(n) => self.lines.push(&buf[..n]),
        };
        let now = SystemTime::now();
        for line in lines {
            // A full disk loses log lines, never the task.
            sink.write(&format_record(self.stream, now, &line));
        }
        sink.flush();
    }
}

/// Where the init writes log records: its stdout (the log file the runtime
/// opened, `run`), or a log file it rotates itself (`shim`).
enum LogSink {
    Stdout,
    Rotating(RotatingLog),
}

impl LogSink {
    fn rotating(path: PathBuf, options: LogOptions) -> Self {
        LogSink::Rotating(RotatingLog::open(path, options))
    }

    fn write(&mut self, record: &[u8]) {
        match self {
            LogSink::Stdout => {
                let _ = std::io::stdout().lock().write_all(record);
            }
            LogSink::Rotating(log) => log.write(record),
        }
    }

    fn flush(&mut self) {
        if let LogSink::Stdout = self {
            let _ = std::io::stdout().lock().flush();
        }
    }
}

/// How the command ended, as the init will mirror it.
#[derive(Debug, Clone, Copy)]
enum Ended {
    Code(i32),
    Signal(Signal),
}

/// Forwards signals and copies output until the command is reaped and its
/// output streams are closed.
fn supervise_loop(child: Pid, sfd: &SignalFd, streams: &mut [Output], sink: &mut LogSink) -> Ended {
    let mut ended = None;
    loop {
        if let Some(ended) = ended
            && streams.iter().all(|s| s.fd.is_none())
        {
            return ended;
        }
        let open: Vec<usize> = (0..streams.len())
            .filter(|&i| streams[i].fd.is_some())
            .collect();
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        for &i in &open {
            if let Some(fd) = &streams[i].fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return ended.unwrap_or(Ended::Code(EXIT_SETUP)),
        }
        let ready: Vec<bool> = fds.iter().map(|fd| fd.any().unwrap_or(true)).collect();
        drop(fds);
        if ready[0] {
            while let Ok(Some(info)) = sfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => {}
                    // Forward only while the child is unreaped, so its PID
                    // cannot have been reused.
                    Ok(sig) if ended.is_none() => {
                        let _ = nix::sys::signal::kill(child, sig);
                    }
                    _ => {}
                }
            }
            if ended.is_none() {
                ended = reap(child);
            }
        }
        for (k, &i) in open.iter().enumerate() {
            if ready[k + 1] {
                streams[i].pump(sink);
            }
        }
    }
}

fn reap(child: Pid) -> Option<Ended> {
    match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(Ended::Code(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(Ended::Signal(sig)),
        Ok(_) => None,
        Err(_) => Some(Ended::Code(EXIT_SETUP)),
    }
}

/// Exits like the command: with its code, or killed by its signal.
fn mirror(ended: Ended) -> i32 {
    let sig = match ended {
        Ended::Code(code) => return code,
        Ended::Signal(sig) => sig,
    };
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass; a core dump of the init
    // would only be noise.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    // SAFETY: restoring the default action of a signal; no handler involved.
    let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
    let mut only = SigSet::empty();
    only.add(sig);
    let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&only), None);
    let _ = nix::sys::signal::raise(sig);
    128 + sig as i32
}

/// For tests of the argument protocol.
#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn run_and_exec_arguments_round_trip() {
        let args = vec!["sh".to_string(), "-c".into(), "echo --".into()];
        let argv = run_args(7, "web.1.x", Path::new("/run/t"), &args);
        assert_eq!(argv[0], INIT_SUBCOMMAND);
        let (mode, command) = parse(argv[1..].to_vec()).unwrap();
        match mode {
            Mode::Run {
                status_fd,
                hostname,
                dir,
            } => {
                assert_eq!(
                    (status_fd, hostname.as_os_str(), dir.as_path()),
                    (7, OsStr::new("web.1.x"), Path::new("/run/t"))
                );
            }
            _ => panic!("expected run"),
        }
        assert_eq!(command, ["sh", "-c", "echo --"]);
        let (mode, command) = parse(exec_args(&args)[1..].to_vec()).unwrap();
        assert!(matches!(mode, Mode::Exec));
        assert_eq!(command, ["sh", "-c", "echo --"]);
        assert!(parse(vec!["run".into(), "--".into(), "x".into()]).is_err());
        assert!(parse(vec!["exec".into(), "--".into()]).is_err());
        let log = LogOptions {
            max_size: 1000,
            max_file: 2,
        };
        let runc: Vec<OsString> = vec!["runc".into(), "run".into()];
        let (mode, command) =
            parse(shim_args(5, Path::new("/run/t"), log, &runc)[1..].to_vec()).unwrap();
        assert!(
            matches!(mode, Mode::Shim { status_fd: 5, ref dir, log: l } if dir == Path::new("/run/t") && l == log)
        );
        assert_eq!(command, runc);
    }
}
