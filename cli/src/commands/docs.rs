//! `mini completion bash|zsh|fish` (clap_complete) and the man pages (clap_mangen) that
//! `deploy/install` puts in place.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Command;

/// Shells `mini completion` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// bash (`/usr/share/bash-completion/completions/mini`).
    Bash,
    /// zsh (`_mini` in a directory of `$fpath`).
    Zsh,
    /// fish (`~/.config/fish/completions/mini.fish`).
    Fish,
}

/// Writes the completion script for `shell` to stdout.
pub fn completion(mut cmd: Command, shell: Shell) {
    let mut out = Vec::new();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut cmd, "mini", &mut out);
    crate::output::write_stdout(&String::from_utf8_lossy(&out));
}

/// Writes `mini.1` and one page per subcommand (`mini-service-create.1`, ...) into `dir`.
/// Returns the number of pages written.
pub fn man_pages(cmd: Command, dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = cmd;
    // Building gives each subcommand its display name (`mini-service-create`) and bin name
    // (`mini service create`), which the pages use.
    cmd.build();
    write_pages(&cmd, dir)
}

fn write_pages(cmd: &Command, dir: &Path) -> Result<usize> {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
    let mut written = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        written += write_pages(sub, dir)?;
    }
    Ok(written)
}
