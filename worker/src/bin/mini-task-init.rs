//! A stand-in for `mini task-init`, so the runtime's tests need not build
//! the `mini` binary: `mini-task-init task-init run|exec ...`.

use mini_worker::runtime::{INIT_SUBCOMMAND, task_init_main};

fn main() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(INIT_SUBCOMMAND.as_ref()) {
        eprintln!(
            "usage: mini-task-init {INIT_SUBCOMMAND} run|exec ... (started by the task runtime)"
        );
        std::process::exit(2);
    }
    task_init_main(args)
}
