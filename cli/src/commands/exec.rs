//! `mini exec TASK CMD...`: run a command inside a task's namespaces.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use mini_proto::v1::ExecRequest;

use crate::client::connect;

/// Flags of `mini exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Environment variable K=V for the command (repeatable).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Task id, id prefix, or name (`service.slot`).
    task: String,
    /// Command and arguments, passed verbatim.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Runs the command and exits with its exit code.
pub async fn run(host: &str, args: ExecArgs) -> Result<()> {
    let mut client = connect(host).await?;
    let out = client
        .exec(ExecRequest {
            task: args.task,
            args: args.command,
            env: args.env,
        })
        .await?
        .into_inner();
    std::io::stdout().write_all(&out.stdout)?;
    std::io::stderr().write_all(&out.stderr)?;
    std::io::stdout().flush()?;
    if out.exit_code != 0 {
        std::process::exit(out.exit_code);
    }
    Ok(())
}
