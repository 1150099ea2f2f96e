//! Secrets and configs (issue #14) on a 3-host cluster (root only; needs runc and
//! busybox-static): a secret made from STDIN and a config from a file, a 2-replica busybox
//! service (runc) and a `host` service reading them as files with the owner and mode asked
//! for; the value never in `secret inspect`, `service inspect`, a daemon log or a file on any
//! host's disk; removal refused while a service uses them; `--secret-rm`; nothing mounted
//! after the services are gone.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use mini_tests::check::{files_holding, need_tools};
use mini_tests::image::install_busybox;
use mini_tests::{Cluster, Host, wait_for};
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(90);
/// The secret's value: searched for everywhere it must not be.
const VALUE: &str = "pa55-9f3c1e7b-never-on-disk";
const CONFIG: &str = "server_name example.test;\n";

/// `mini ARGS…` with `input` on STDIN.
fn mini_with_stdin(h: &Host, args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(mini_tests::binary::mini_binary())
        .args(args)
        .env("MINI_HOST", h.socket())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mini");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("mini")
}

/// `mini exec TASK CMD…` on the manager: (success, stdout).
fn exec(m: &Host, task: &str, cmd: &[&str]) -> (bool, String) {
    let mut args = vec!["exec", task];
    args.extend_from_slice(cmd);
    let out = m.mini(&args);
    (out.success, out.stdout)
}

fn id_of(t: &Value) -> String {
    t["id"].as_str().unwrap_or_default().to_string()
}

#[test]
fn secrets_and_configs_reach_their_tasks_and_nothing_else() {
    need_tools(&["busybox", "runc"], "busybox-static runc");
    let mut cluster = Cluster::start(3);
    for k in 1..=cluster.len() {
        install_busybox(&cluster.host(k).state_dir());
    }
    cluster.init();
    cluster.join_all();
    let m = cluster.host(1);

    // A secret from STDIN (its id printed), a config from a file.
    let out = mini_with_stdin(
        &m,
        &["secret", "create", "-l", "env=test", "db_pass", "-"],
        VALUE,
    );
    assert!(out.status.success(), "{out:?}");
    let secret_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(secret_id.len(), 25, "{secret_id:?}");
    let config_file = cluster.dir().join("site.conf");
    std::fs::write(&config_file, CONFIG).unwrap();
    let config_file = config_file.to_str().unwrap();
    m.ok(&["config", "create", "site", config_file]);

    // Bad input is refused with Docker's reasons, and makes nothing.
    let dup = m.fails(&["secret", "create", "db_pass", config_file]);
    assert!(dup.contains("secret db_pass already exists"), "{dup}");
    let bad = m.fails(&["secret", "create", "bad name!", config_file]);
    assert!(bad.contains("invalid secret name"), "{bad}");
    let big = cluster.dir().join("big");
    std::fs::write(&big, vec![b'x'; 500 * 1024]).unwrap();
    let too_big = m.fails(&["config", "create", "big", big.to_str().unwrap()]);
    assert!(too_big.contains("less than 500 KB"), "{too_big}");
    assert_eq!(m.ok(&["secret", "ls", "-q"]).stdout.trim(), secret_id);
    let ls = m.ok(&["secret", "ls"]).stdout;
    assert!(
        ls.starts_with("ID") && ls.contains("DRIVER") && ls.contains("db_pass"),
        "{ls}"
    );
    assert_eq!(m.ok(&["config", "ls", "-q"]).stdout.lines().count(), 1);
    let listed = m.ok_listed(&["secret", "ls"], "secret").json();
    assert_eq!(listed[0]["Spec"]["Name"], "db_pass");
    assert!(!listed.to_string().contains(VALUE), "{listed}");

    // inspect: the secret without its value, the config with its data (base64; --pretty: text).
    let inspect = m.ok(&["secret", "inspect", "db_pass"]);
    assert!(!inspect.stdout.contains(VALUE), "{}", inspect.stdout);
    let json = inspect.json();
    assert_eq!(json[0]["ID"], secret_id.as_str());
    assert_eq!(json[0]["Spec"]["Name"], "db_pass");
    assert_eq!(json[0]["Spec"]["Labels"]["env"], "test");
    assert!(json[0]["Spec"].get("Data").is_none(), "{json}");
    let pretty = m.ok(&["secret", "inspect", "--pretty", "db_pass"]).stdout;
    assert!(
        pretty.contains("Name:            db_pass") && !pretty.contains(VALUE),
        "{pretty}"
    );
    let config = m.ok(&["config", "inspect", "site"]).json();
    assert_eq!(
        config[0]["Spec"]["Data"],
        "c2VydmVyX25hbWUgZXhhbXBsZS50ZXN0Owo="
    );
    let pretty = m.ok(&["config", "inspect", "--pretty", "site"]).stdout;
    assert!(pretty.ends_with(&format!("Data:\n{CONFIG}")), "{pretty}");

    // A service naming an unknown secret is refused; nothing is made.
    let unknown = m.fails(&[
        "service", "create", "--detach", "--name", "nope", "--secret", "missing", "host", "sleep",
        "1000",
    ]);
    assert!(unknown.contains("no such secret: missing"), "{unknown}");
    assert!(!m.mini(&["service", "inspect", "nope"]).success);

    // Two busybox replicas (runc): the secret at a target with owner and mode, the config at
    // its default target /site. One `host` task: the short form, /run/secrets/db_pass.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "2",
        "--secret",
        "source=db_pass,target=db,uid=33,gid=33,mode=0400",
        "--config",
        "site",
        "--constraint",
        "node.role==worker",
        "busybox",
        "sleep",
        "100000",
    ]);
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "hostapp",
        "--secret",
        "db_pass",
        "--config",
        "source=site,target=/etc/mini-site.conf",
        "--constraint",
        "node.role==manager",
        "host",
        "sleep",
        "100000",
    ]);
    let web = m.wait_running("web", 2);
    let hostapp = m.wait_running("hostapp", 1);
    for t in &web {
        let id = id_of(t);
        let read = wait_for(
            &format!("the secret in task {id}"),
            PATIENCE,
            || match exec(&m, &id, &["cat", "/run/secrets/db"]) {
                (true, out) => Ok(out),
                other => Err(format!("{other:?}")),
            },
        );
        assert_eq!(read, VALUE);
        let (ok, stat) = exec(&m, &id, &["stat", "-c", "%a %u %g", "/run/secrets/db"]);
        assert!(ok, "{stat}");
        assert_eq!(stat.trim(), "400 33 33");
        let (ok, site) = exec(&m, &id, &["cat", "/site"]);
        assert!(ok && site == CONFIG, "{site:?}");
        let (ok, stat) = exec(&m, &id, &["stat", "-c", "%a %u", "/site"]);
        assert!(ok && stat.trim() == "444 0", "{stat}");
        // Read-only, as Docker mounts them.
        let (written, _) = exec(&m, &id, &["sh", "-c", "echo x > /run/secrets/db"]);
        assert!(!written, "the secret file is writable");
    }
    let host_task = id_of(&hostapp[0]);
    let (ok, read) = exec(&m, &host_task, &["cat", "/run/secrets/db_pass"]);
    assert!(ok && read == VALUE, "{read:?}");
    let (ok, stat) = exec(
        &m,
        &host_task,
        &["stat", "-c", "%a %u", "/run/secrets/db_pass"],
    );
    assert!(ok && stat.trim() == "444 0", "{stat}");
    let (ok, site) = exec(&m, &host_task, &["cat", "/etc/mini-site.conf"]);
    assert!(ok && site == CONFIG, "{site:?}");

    // service inspect names the secret, never its value.
    let svc = m.ok(&["service", "inspect", "web"]);
    assert!(!svc.stdout.contains(VALUE), "{}", svc.stdout);
    let svc = svc.json();
    let svc = if svc.is_array() { svc[0].clone() } else { svc };
    assert_eq!(svc["Secrets"][0]["SecretName"], "db_pass");
    assert_eq!(svc["Secrets"][0]["SecretID"], secret_id.as_str());
    assert_eq!(svc["Secrets"][0]["File"]["Name"], "db");
    assert_eq!(svc["Secrets"][0]["File"]["UID"], "33");
    assert_eq!(svc["Secrets"][0]["File"]["Mode"], 0o400);
    assert_eq!(svc["Configs"][0]["File"]["Name"], "/site");

    // The value is in no daemon log and in no file on any host's disk, the Raft store
    // (encrypted at rest) included. Tasks' tmpfs mounts are not disk and are not searched
    // (another filesystem).
    for k in 1..=cluster.len() {
        let h = cluster.host(k);
        assert!(
            !h.log().contains(VALUE),
            "h{k}'s daemon log holds the secret"
        );
        let host_dir = h.state_dir().parent().unwrap().to_path_buf();
        if k == 1 {
            // The search finds what it looks for (a canary in a state dir).
            let canary = h.state_dir().join("canary");
            std::fs::write(&canary, format!("x{VALUE}y")).unwrap();
            assert_eq!(
                files_holding(&host_dir, VALUE.as_bytes()),
                vec![canary.clone()]
            );
            std::fs::remove_file(&canary).unwrap();
        }
        let found = files_holding(&host_dir, VALUE.as_bytes());
        assert!(found.is_empty(), "h{k} wrote the secret to {found:?}");
    }

    // A worker daemon killed while its task holds the secret, then restarted: it adopts the
    // task (live-restore), whose secrets stay mounted while it runs; had the node been declared
    // down meanwhile, the task was replaced and its secrets must be gone. Either way: a task's
    // secrets tmpfs exists exactly while the task runs, and goes with it.
    let lost = web[0].clone();
    let node = lost["node"].as_str().unwrap_or_default().to_string();
    let k: usize = node.trim_start_matches('h').parse().expect("hostname hN");
    let lost_id = id_of(&lost);
    let lost_dir = cluster.host(k).run_dir().join("tasks").join(&lost_id);
    let has_secrets = |dir: &std::path::Path| {
        mini_tests::cluster::mounts_under(dir)
            .iter()
            .any(|p| p.ends_with("secrets"))
    };
    assert!(
        has_secrets(&lost_dir),
        "task {lost_id} has no secrets tmpfs"
    );
    cluster.restart_host(k);
    let m = cluster.host(1);
    let running = m.wait_running("web", 2);
    if running.iter().any(|t| id_of(t) == lost_id) {
        assert!(
            has_secrets(&lost_dir),
            "adopted task {lost_id} lost its secrets tmpfs"
        );
        let out = m.mini(&["exec", &lost_id, "cat", "/run/secrets/db"]);
        assert!(
            out.success && out.stdout.contains(VALUE),
            "adopted task {lost_id}: {out:?}"
        );
    } else {
        wait_for(
            &format!("{node} unmounted the replaced task's secrets"),
            PATIENCE,
            || {
                let left = mini_tests::cluster::mounts_under(&lost_dir);
                if left.is_empty() && !lost_dir.exists() {
                    Ok(())
                } else {
                    Err(format!("{left:?}"))
                }
            },
        );
    }

    // Removal is refused while services use them, naming the services.
    let in_use = m.fails(&["secret", "rm", "db_pass"]);
    assert!(
        in_use.contains("secret 'db_pass' is in use by the following services: hostapp, web"),
        "{in_use}"
    );
    let in_use = m.fails(&["config", "rm", "site"]);
    assert!(
        in_use.contains("config 'site' is in use by the following services: hostapp, web"),
        "{in_use}"
    );

    // --secret-rm: the replaced tasks no longer see it.
    m.ok(&["service", "update", "--secret-rm", "db_pass", "web"]);
    let web = m.wait_running("web", 2);
    // The task that lived through the restart has ended now, and its secrets went with it (its
    // directory stays while the task is in the service's history, as every ended task's).
    wait_for(
        &format!("{node} unmounted the secrets of task {lost_id}"),
        PATIENCE,
        || {
            let left = mini_tests::cluster::mounts_under(&lost_dir);
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    );
    for t in &web {
        let id = id_of(t);
        let (ok, out) = exec(&m, &id, &["cat", "/run/secrets/db"]);
        assert!(!ok, "task {id} still reads the secret: {out}");
    }
    m.ok(&["service", "rm", "hostapp"]);
    assert_eq!(m.ok(&["secret", "rm", "db_pass"]).stdout.trim(), "db_pass");
    assert_eq!(m.ok(&["secret", "ls", "-q"]).stdout.trim(), "");
    let still = m.fails(&["config", "rm", "site"]);
    assert!(
        still.contains("is in use by the following service: web"),
        "{still}"
    );
    m.ok(&["service", "rm", "web"]);
    m.ok(&["config", "rm", "site"]);

    // Nothing of the tasks' secrets stays mounted on any host.
    wait_for("secrets tmpfs unmounted everywhere", PATIENCE, || {
        let left: Vec<PathBuf> = (1..=cluster.len())
            .flat_map(|k| mini_tests::cluster::mounts_under(&cluster.host(k).run_dir()))
            .filter(|p| p.ends_with("secrets"))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
    let resources = cluster.resources();
    drop(cluster);
    assert_eq!(resources.leftovers(), Vec::<String>::new());
}
