//! How a stop signal reaches a task's main process.
//!
//! The command of a task is PID 1 of its PID namespace, and the kernel
//! drops any signal sent to a namespace's init that the init has no handler
//! for (only SIGKILL and SIGSTOP get through). `sleep`, `nginx -g 'daemon
//! off;'` and most programs that are not written to be an init would thus
//! never see their SIGTERM, and every stop would wait out the grace period
//! (Docker without `--init` has this surprise). The runtimes close the gap
//! as an init such as tini does for its child: a stop signal the main
//! process neither handles, ignores nor blocks, and whose default action
//! ends a process, ends it at once (SIGKILL, the only way to end a PID 1
//! from outside), and the task's exit reads as that signal's. A process
//! that handles the signal gets it as sent; one that ignores or blocks it
//! is killed when the grace period ends, as before.

use nix::sys::signal::Signal;

use super::TaskExit;

/// How a task's main process is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Send the signal itself: the process handles, ignores or blocks it,
    /// or is not a PID namespace's init.
    Send(Signal),
    /// The process is a PID 1 that would drop the signal whose default
    /// action ends it: SIGKILL stands in for that default action.
    KillAsDefault(Signal),
}

impl Delivery {
    /// The signal actually sent.
    pub(crate) fn sent(self) -> Signal {
        match self {
            Delivery::Send(sig) => sig,
            Delivery::KillAsDefault(_) => Signal::SIGKILL,
        }
    }
}

impl Delivery {
    /// The task's exit as the user expects it: a process killed in place
    /// of its stop signal's default action reads as killed by that signal.
    pub(crate) fn exit_as_sent(self, exit: TaskExit) -> TaskExit {
        match (self, exit) {
            // `runc run` exits with 128 + the signal of its container's end.
            (Delivery::KillAsDefault(sig), TaskExit::Signaled(9) | TaskExit::Exited(137)) => {
                match exit {
                    TaskExit::Signaled(_) => TaskExit::Signaled(sig as i32),
                    _ => TaskExit::Exited(128 + sig as i32),
                }
            }
            (_, exit) => exit,
        }
    }
}

/// Whether `sig`'s default action ends the process (terminate or core dump),
/// as signal(7) lists them.
fn ends_by_default(sig: Signal) -> bool {
    !matches!(
        sig,
        Signal::SIGCHLD
            | Signal::SIGCONT
            | Signal::SIGSTOP
            | Signal::SIGTSTP
            | Signal::SIGTTIN
            | Signal::SIGTTOU
            | Signal::SIGURG
            | Signal::SIGWINCH
            | Signal::SIGKILL
    )
}

/// Decides from the text of `/proc/<pid>/status` how `sig` reaches that
/// process (see the module's documentation). Text that cannot be read as a
/// status file gives [`Delivery::Send`].
pub(crate) fn delivery_from_status(status: &str, sig: Signal) -> Delivery {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    // The PID in each nested namespace, outermost first: an init's last one is 1.
    let is_ns_init = field("NSpid:").is_some_and(|pids| {
        let pids: Vec<&str> = pids.split_whitespace().collect();
        pids.len() > 1 && pids.last() == Some(&"1")
    });
    if !is_ns_init || !ends_by_default(sig) {
        return Delivery::Send(sig);
    }
    let bit = 1u64 << (sig as i32 - 1);
    let mut kept = false;
    for name in ["SigBlk:", "SigIgn:", "SigCgt:"] {
        match field(name).and_then(|mask| u64::from_str_radix(mask, 16).ok()) {
            Some(mask) => kept |= mask & bit != 0,
            // Unreadable: do not guess, send the signal as asked.
            None => return Delivery::Send(sig),
        }
    }
    if kept {
        Delivery::Send(sig)
    } else {
        Delivery::KillAsDefault(sig)
    }
}

/// How `sig` reaches process `pid` (in the node's PID namespace); a process
/// whose status cannot be read (gone) gets the signal as asked.
pub(crate) fn delivery(pid: u32, sig: Signal) -> Delivery {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) if pid > 0 => delivery_from_status(&status, sig),
        _ => Delivery::Send(sig),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(nspid: &str, blk: u64, ign: u64, cgt: u64) -> String {
        format!(
            "Name:\tsleep\nNSpid:\t{nspid}\nSigQ:\t0/1\nSigPnd:\t0000000000000000\n\
             SigBlk:\t{blk:016x}\nSigIgn:\t{ign:016x}\nSigCgt:\t{cgt:016x}\n"
        )
    }

    const TERM: u64 = 1 << 14;

    #[test]
    fn a_pid_1_without_a_handler_ends_as_the_default_action_would() {
        let s = status("4242\t1", 0, 0, 0);
        assert_eq!(
            delivery_from_status(&s, Signal::SIGTERM),
            Delivery::KillAsDefault(Signal::SIGTERM)
        );
        assert_eq!(
            delivery_from_status(&s, Signal::SIGTERM).sent(),
            Signal::SIGKILL
        );
        // Handled, ignored or blocked: sent as is (ignored and blocked wait for the grace).
        for (blk, ign, cgt) in [(0, 0, TERM), (0, TERM, 0), (TERM, 0, 0)] {
            let s = status("4242\t1", blk, ign, cgt);
            assert_eq!(
                delivery_from_status(&s, Signal::SIGTERM),
                Delivery::Send(Signal::SIGTERM),
                "{s}"
            );
        }
        // A handler for another signal changes nothing for this one.
        let s = status("4242\t1", 0, 0, 1 << 1);
        assert_eq!(
            delivery_from_status(&s, Signal::SIGTERM),
            Delivery::KillAsDefault(Signal::SIGTERM)
        );
        // SIGQUIT is bit 3.
        let s = status("4242\t1", 0, 0, 1 << 2);
        assert_eq!(
            delivery_from_status(&s, Signal::SIGQUIT),
            Delivery::Send(Signal::SIGQUIT)
        );
    }

    #[test]
    fn a_kill_in_place_of_the_default_action_reads_as_the_stop_signal() {
        let kill = Delivery::KillAsDefault(Signal::SIGTERM);
        assert_eq!(
            kill.exit_as_sent(TaskExit::Signaled(9)),
            TaskExit::Signaled(15)
        );
        assert_eq!(
            kill.exit_as_sent(TaskExit::Exited(137)),
            TaskExit::Exited(143)
        );
        // The process ended otherwise (it exited first): as it did.
        assert_eq!(kill.exit_as_sent(TaskExit::Exited(0)), TaskExit::Exited(0));
        let send = Delivery::Send(Signal::SIGTERM);
        assert_eq!(
            send.exit_as_sent(TaskExit::Signaled(9)),
            TaskExit::Signaled(9)
        );
    }

    #[test]
    fn other_processes_and_harmless_signals_get_the_signal_itself() {
        // Not an init (no nested namespace, or not PID 1 in it).
        for nspid in ["4242", "4242\t7"] {
            let s = status(nspid, 0, 0, 0);
            assert_eq!(
                delivery_from_status(&s, Signal::SIGTERM),
                Delivery::Send(Signal::SIGTERM)
            );
        }
        // A stop signal whose default is not to end the process is never turned into a kill.
        let s = status("4242\t1", 0, 0, 0);
        assert_eq!(
            delivery_from_status(&s, Signal::SIGWINCH),
            Delivery::Send(Signal::SIGWINCH)
        );
        // Unreadable text: no guess.
        assert_eq!(
            delivery_from_status("garbage", Signal::SIGTERM),
            Delivery::Send(Signal::SIGTERM)
        );
        assert_eq!(
            delivery(0, Signal::SIGTERM),
            Delivery::Send(Signal::SIGTERM)
        );
    }

    #[test]
    fn this_process_reads_as_no_namespace_init() {
        // The test runs in the node's PID namespace, as PID != 1 of any nested one.
        assert_eq!(
            delivery(std::process::id(), Signal::SIGTERM),
            Delivery::Send(Signal::SIGTERM)
        );
    }
}
