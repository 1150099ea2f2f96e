//! The hidden `mini task-init` subcommand: the first process of every task,
//! re-executed by the worker's runtime inside the task's namespaces. It is
//! dispatched before clap parses anything, and before any thread starts.

/// Runs the task init with the arguments after `task-init`; never returns.
pub fn run() -> ! {
    mini_worker::runtime::task_init_main(std::env::args_os().skip(2))
}
