//! The small things a Docker user expects of the CLI (#15): `mini version` with the daemon's
//! build, Docker flags `mini` lacks refused by name, a closed pipe ending a command quietly,
//! and `deploy/install`'s completions and man pages.

use std::process::Command;

use mini_tests::binary::mini_binary;
use mini_tests::{Cluster, wait_for};

#[test]
fn version_shows_the_client_and_the_daemon() {
    let cluster = Cluster::start(1);
    let host = cluster.host(1);
    let out = host.ok(&["version"]);
    let commits: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Git commit:"))
        .map(str::trim)
        .collect();
    assert!(
        out.stdout.contains("Client:") && out.stdout.contains("Server:\n Engine:"),
        "{}",
        out.stdout
    );
    // The same binary on both sides: the same commit, and not an empty one.
    assert_eq!(commits.len(), 2, "{}", out.stdout);
    assert_eq!(commits[0], commits[1], "{}", out.stdout);
    assert!(!commits[0].is_empty(), "{}", out.stdout);
    let json = host.ok(&["version", "--format", "json"]).json();
    assert_eq!(
        json["Client"]["Version"], json["Server"]["Version"],
        "{json}"
    );
    assert_eq!(json["Server"]["Os"], "linux", "{json}");
}

#[test]
fn docker_flags_mini_lacks_are_refused_by_name_and_change_nothing() {
    let cluster = Cluster::start(1);
    cluster.init();
    let host = cluster.host(1);
    for (args, flag) in [
        (
            vec![
                "service", "create", "--dns", "1.1.1.1", "--name", "x", "host", "true",
            ],
            "--dns",
        ),
        (
            vec![
                "service",
                "create",
                "--log-driver=json-file",
                "host",
                "true",
            ],
            "--log-driver",
        ),
        (
            vec!["network", "create", "--ipv6", "-d", "overlay", "n6"],
            "--ipv6",
        ),
        (
            vec!["swarm", "update", "--task-history-limit", "3"],
            "--task-history-limit",
        ),
    ] {
        let err = host.fails(&args);
        assert!(
            err.contains(&format!("not supported by mini: {flag}")),
            "{args:?}: {err}"
        );
    }
    // A typo stays a typo, with clap's suggestion.
    let err = host.fails(&["service", "create", "--nmae", "x", "host", "true"]);
    assert!(err.contains("--name"), "{err}");
    assert!(!err.contains("not supported"), "{err}");
    // Nothing was made: no service (json prints one object per line, so none).
    assert_eq!(host.ok(&["service", "ls", "--format", "json"]).stdout, "");
    // By the NAME column: a random network id may contain "n6" (e.g. 0ucvo3aqen6c).
    let networks = host.ok(&["network", "ls"]).stdout;
    assert!(
        !networks
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("n6")),
        "{networks}"
    );
}

#[test]
fn a_closed_pipe_ends_a_following_command_quietly() {
    let cluster = Cluster::start(1);
    cluster.init();
    let host = cluster.host(1);
    host.ok(&[
        "service",
        "create",
        "--name",
        "chatty",
        "host",
        "sh",
        "-c",
        "i=0; while :; do echo line $i; i=$((i+1)); sleep 0.2; done",
    ]);
    wait_for(
        "a log line of chatty",
        std::time::Duration::from_secs(60),
        || {
            let out = host.mini(&["service", "logs", "chatty"]);
            out.stdout.contains("line ").then_some(()).ok_or(out.stdout)
        },
    );
    // `| head -1`: head leaves after one line; mini's next write hits a closed pipe.
    let script = format!(
        "timeout 60 {} service logs -f chatty | head -1; echo \"status ${{PIPESTATUS[0]}}\" >&2",
        mini_binary().display()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .env("MINI_HOST", host.socket())
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("line "), "{stdout}");
    // Ended by SIGPIPE (128 + 13) as `yes | head -1` is; not by the timeout (124), and no
    // panic message.
    assert!(stderr.contains("status 141"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn install_puts_completions_and_man_pages_in_place() {
    let root = tempfile::tempdir().expect("tempdir");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/install");
    let out = Command::new(script)
        .args(["--bin", &mini_binary().display().to_string(), "--root"])
        .arg(root.path())
        .output()
        .expect("deploy/install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = root.path();
    assert!(r.join("usr/local/bin/mini").exists());
    assert!(r.join("etc/systemd/system/mini.service").exists());
    assert!(r.join("usr/share/zsh/vendor-completions/_mini").exists());
    assert!(
        r.join("usr/share/fish/vendor_completions.d/mini.fish")
            .exists()
    );
    let page = std::fs::read_to_string(r.join("usr/local/share/man/man1/mini-service-create.1"))
        .expect("man page of service create");
    assert!(page.contains("\\-\\-replicas"), "{page}");
    // bash completes `mini service cr` to `create` (bash calls the function with the command,
    // the word being completed and the word before it).
    let completion = r.join("usr/share/bash-completion/completions/mini");
    let bash = format!(
        "source {}; COMP_WORDS=(mini service cr); COMP_CWORD=2; _mini mini cr service; echo \"${{COMPREPLY[@]}}\"",
        completion.display()
    );
    let out = Command::new("bash")
        .args(["-c", &bash])
        .output()
        .expect("bash");
    let words = String::from_utf8_lossy(&out.stdout);
    assert!(words.split_whitespace().any(|w| w == "create"), "{words}");
}

#[test]
fn network_aliases_given_with_the_long_syntax_resolve() {
    let cluster = Cluster::start(1);
    cluster.init();
    let host = cluster.host(1);
    host.ok(&["network", "create", "-d", "overlay", "backend"]);
    host.ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--network",
        "name=backend,alias=db,alias=db2",
        "host",
        "sleep",
        "1d",
    ]);
    host.ok(&[
        "service",
        "create",
        "--name",
        "client",
        "--network",
        "backend",
        "host",
        "sleep",
        "1d",
    ]);
    let bad = host.fails(&[
        "service",
        "create",
        "--network",
        "alias=x",
        "host",
        "sleep",
        "1d",
    ]);
    assert!(bad.contains("name= is required"), "{bad}");
    let (web, db, db2) = wait_for(
        "web, db and db2 to resolve in client.1",
        std::time::Duration::from_secs(90),
        || {
            let names = ["web", "db", "db2"].map(|n| host.lookup("client.1", n));
            if names.iter().all(|a| !a.is_empty()) {
                let [a, b, c] = names;
                Ok((a, b, c))
            } else {
                Err(format!("{names:?}"))
            }
        },
    );
    assert_eq!(web, db, "db is web's alias");
    assert_eq!(web, db2, "db2 is web's alias");
    // Inspect shows them, as Docker's Networks[].Aliases and in the pretty form.
    let aliases = host
        .ok(&[
            "service",
            "inspect",
            "-f",
            "{{json (index .Networks 0).Aliases}}",
            "web",
        ])
        .stdout;
    assert_eq!(aliases.trim(), r#"["db","db2"]"#);
    let pretty = host.ok(&["service", "inspect", "--pretty", "web"]).stdout;
    assert!(pretty.contains("Aliases:\tdb db2"), "{pretty}");
}
