//! `service create/update --with-registry-auth` (issue #13) on a 2-host
//! cluster and a real registry with htpasswd auth (root only; needs
//! docker-registry, skopeo, apache2-utils, busybox-static, runc): a task on
//! the worker cannot pull the private image anonymously; after `mini login` on
//! the manager only, the credentials travel with the service to the worker,
//! which pulls and runs it; they never appear in `service inspect` or a log.

use std::process::{Command, Output};
use std::time::Duration;

use mini_tests::check::{field, files_holding, need_tools, summary};
use mini_tests::registry::{LocalRegistry, build_image};
use mini_tests::{Cluster, Host, wait_for};

const PATIENCE: Duration = Duration::from_secs(90);
const PASSWORD: &str = "s3cret-p4ss";

fn wait_running_on(h: &Host, service: &str, node: &str) {
    wait_for(&format!("{service} running on {node}"), PATIENCE, || {
        let all = h.tasks(service);
        if all.iter().any(|t| {
            field(t, "desired_state") == "Running"
                && field(t, "current_state") == "Running"
                && field(t, "node") == node
        }) {
            Ok(())
        } else {
            Err(summary(&all))
        }
    });
}

#[test]
fn registry_credentials_reach_only_the_node_that_pulls() {
    need_tools(
        &["docker-registry", "skopeo", "htpasswd", "busybox", "runc"],
        "docker-registry skopeo apache2-utils busybox-static runc",
    );
    let cluster = Cluster::start_with(2, &["--insecure-registry", "{outside}:5001"]);
    let private = LocalRegistry::start(&cluster, 5001, Some(&format!("alice:{PASSWORD}")));
    let archive = cluster.dir().join("app.tar");
    build_image(&archive, "app:1", 0);
    private.push(&archive, "team/app:1", Some(&format!("alice:{PASSWORD}")));
    cluster.init();
    cluster.join_all();
    let m = cluster.host(1);
    let image = format!("{}/team/app:1", private.addr);

    // The CLI of the manager, with its own credentials file.
    let config = cluster.dir().join("client-config");
    let cli = |args: &[&str]| -> Output {
        Command::new(mini_tests::binary::mini_binary())
            .args(args)
            .env("MINI_HOST", m.socket())
            .env("MINI_CONFIG", &config)
            .output()
            .expect("mini")
    };
    let create = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "service",
            "create",
            "--detach",
            "--name",
            name,
            "--constraint",
            "node.hostname==h2",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[image.as_str(), "sleep", "100000"]);
        let out = cli(&args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    };

    // Without credentials the worker's pull is refused, in Docker's words.
    // (It retries: `--restart-delay` keeps the retries few.)
    create(
        "anon",
        &["--restart-condition", "on-failure", "--restart-delay", "2s"],
    );
    let error = wait_for("anon's pull to fail on h2", PATIENCE, || {
        let all = m.tasks("anon");
        match all.iter().find(|t| !field(t, "error").is_empty()) {
            Some(t) => Ok(field(t, "error").to_string()),
            None => Err(summary(&all)),
        }
    });
    assert!(
        error.contains("pull access denied") && error.contains("team/app"),
        "{error}"
    );
    // --with-registry-auth before `mini login` sends nothing (as Docker).
    create(
        "early",
        &["--with-registry-auth", "--restart-condition", "none"],
    );
    let early = wait_for("early's pull to fail on h2", PATIENCE, || {
        let all = m.tasks("early");
        match all.iter().find(|t| !field(t, "error").is_empty()) {
            Some(t) => Ok(field(t, "error").to_string()),
            None => Err(summary(&all)),
        }
    });
    assert!(early.contains("pull access denied"), "{early}");

    // `mini login` on the manager only; h2 never logs in.
    let login = cli(&["login", "-u", "alice", "-p", PASSWORD, &private.addr]);
    assert!(login.status.success(), "{login:?}");
    create(
        "private",
        &["--with-registry-auth", "--restart-condition", "none"],
    );
    wait_running_on(&m, "private", "h2");

    // `service update --with-registry-auth` hands credentials to an existing service.
    let update = cli(&[
        "service",
        "update",
        "--with-registry-auth",
        "--force",
        "--detach",
        "anon",
    ]);
    assert!(update.status.success(), "{update:?}");
    wait_running_on(&m, "anon", "h2");

    // The credentials are nowhere a user or a log shows them.
    for service in ["private", "anon"] {
        let inspect = cli(&["service", "inspect", service]);
        let text = String::from_utf8_lossy(&inspect.stdout);
        assert!(
            inspect.status.success() && text.contains("team/app"),
            "{inspect:?}"
        );
        assert!(
            !text.contains(PASSWORD),
            "service inspect shows the password: {text}"
        );
    }
    let ps = m.ok_listed(&["service", "ps", "private"], "task").stdout;
    assert!(!ps.contains(PASSWORD), "{ps}");
    for k in 1..=2 {
        let log = cluster.host(k).log();
        assert!(!log.is_empty(), "h{k} has a daemon log");
        assert!(
            !log.contains(PASSWORD),
            "h{k}'s daemon log holds the password"
        );
        // Nor on any node's disk: the managers' Raft stores are encrypted at rest, the
        // workers keep the credentials in memory.
        let state_dir = cluster.host(k).state_dir();
        let on_disk = files_holding(&state_dir, PASSWORD.as_bytes());
        let on_disk: Vec<_> = on_disk.iter().map(|p| p.display().to_string()).collect();
        assert!(
            on_disk.is_empty(),
            "h{k}'s state dir holds the password: {on_disk:?}"
        );
    }
    drop(private);
}
