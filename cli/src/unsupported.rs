//! Docker flags `mini` does not implement: refused with "not supported by mini: --flag", never
//! silently ignored, and never reported as a typo.

use clap::Command;

/// Flags of Docker's swarm commands that `mini` has no equivalent for, by command path.
/// A flag `mini` implements is parsed by clap before this list is consulted, so a flag that
/// gains an implementation simply stops reaching it.
#[rustfmt::skip]
const DOCKER_ONLY: &[(&str, &[&str])] = &[
    (
        "service create",
        &[
            "--cap-add", "--cap-drop", "--credential-spec", "--dns", "--dns-option",
            "--dns-search", "--env-file", "--generic-resource", "--group",
            "--isolation", "--log-driver", "--no-resolve-image", "--sysctl",
            "--tty", "-t", "--ulimit",
        ],
    ),
    (
        "service update",
        &[
            "--cap-add", "--cap-drop", "--credential-spec", "--dns-add", "--dns-rm",
            "--dns-option-add", "--dns-option-rm", "--dns-search-add", "--dns-search-rm",
            "--generic-resource-add", "--generic-resource-rm", "--group-add", "--group-rm",
            "--host-add", "--host-rm", "--isolation", "--log-driver",
            "--no-resolve-image", "--sysctl-add", "--sysctl-rm", "--tty", "-t", "--ulimit-add",
            "--ulimit-rm",
        ],
    ),
    ("service logs", &["--details", "--no-resolve", "--raw"]),
    ("service ls", &["--no-resolve"]),
    ("service ps", &["--no-resolve"]),
    (
        "network create",
        &[
            "--aux-address", "--config-from", "--config-only", "--ipam-driver", "--ipam-opt",
            "--ipv6", "--scope", "--ingress",
        ],
    ),
    (
        "swarm init",
        &[
            "--availability", "--data-path-addr", "--dispatcher-heartbeat", "--external-ca",
            "--force-new-cluster", "--max-snapshots", "--snapshot-interval",
            "--task-history-limit",
        ],
    ),
    ("swarm join", &["--availability", "--data-path-addr"]),
    (
        "swarm update",
        &[
            "--dispatcher-heartbeat", "--external-ca", "--max-snapshots", "--snapshot-interval",
            "--task-history-limit",
        ],
    ),
    ("swarm ca", &["--ca-cert", "--ca-key", "--external-ca", "--cert-expiry"]),
    ("secret create", &["--driver", "-d", "--template-driver"]),
    ("config create", &["--template-driver"]),
    ("stack deploy", &["--bundle-file", "--orchestrator"]),
    ("node update", &[]),
];

/// The subcommand path (`service create`) of `args` (without the program name), found by
/// walking `cmd`'s subcommands: flags and their values are skipped.
fn command_path(cmd: &Command, args: &[String]) -> String {
    let mut path = Vec::new();
    let mut current = cmd;
    for arg in args {
        if arg.starts_with('-') {
            continue;
        }
        match current.find_subcommand(arg) {
            Some(sub) => {
                path.push(sub.get_name().to_string());
                current = sub;
            }
            None => continue,
        }
    }
    path.join(" ")
}

/// "not supported by mini: --flag" when `bad` (as clap reported it: `--dns`, `--dns=1.1.1.1`,
/// `-t`) is a Docker flag of the command `args` names that `mini` does not implement.
pub fn refusal(cmd: &Command, args: &[String], bad: &str) -> Option<String> {
    let flag = bad.split_once('=').map_or(bad, |(f, _)| f);
    let path = command_path(cmd, args);
    DOCKER_ONLY
        .iter()
        .find(|(p, _)| *p == path)
        .filter(|(_, flags)| flags.contains(&flag))
        .map(|_| format!("not supported by mini: {flag}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn docker_only_flags_are_named_others_are_left_to_clap() {
        let cmd = crate::Cli::command();
        let line = args("service create --dns 1.1.1.1 --name web alpine sleep 1");
        assert_eq!(
            refusal(&cmd, &line, "--dns").as_deref(),
            Some("not supported by mini: --dns")
        );
        assert_eq!(
            refusal(&cmd, &line, "--dns=1.1.1.1").as_deref(),
            Some("not supported by mini: --dns")
        );
        let update = args("service update --ulimit-add nofile=10 web");
        assert!(refusal(&cmd, &update, "--ulimit-add").is_some());
        // A typo is not a Docker flag; a Docker flag of another command is not this one's.
        assert_eq!(refusal(&cmd, &line, "--nmae"), None);
        assert_eq!(
            refusal(&cmd, &args("node update --dns x n1"), "--dns"),
            None
        );
        assert_eq!(
            command_path(&cmd, &args("--host x service ls -q")),
            "service ls"
        );
    }

    #[test]
    fn every_listed_command_exists_and_lacks_the_listed_flags() {
        let cmd = crate::Cli::command();
        let mut implemented_flags = Vec::new();
        for (path, flags) in DOCKER_ONLY {
            let mut current = &cmd;
            for part in path.split(' ') {
                current = current
                    .find_subcommand(part)
                    .unwrap_or_else(|| panic!("no `mini {path}`"));
            }
            for flag in *flags {
                let implemented = current.get_arguments().any(|a| {
                    a.get_long().is_some_and(|l| format!("--{l}") == *flag)
                        || a.get_short().is_some_and(|s| format!("-{s}") == *flag)
                });
                if implemented {
                    implemented_flags.push(format!("{path} {flag}"));
                }
            }
        }
        assert!(
            implemented_flags.is_empty(),
            "implemented, so not Docker-only: {implemented_flags:?}"
        );
    }
}
