//! `mini stack deploy | ls | services | ps | rm` on a 2-host lab (issue #14 item 1): a stack of
//! three services from a compose file (one publishing a port, one global), an unchanged
//! redeploy that changes nothing, a change that rolls only the service it touches, `--prune`,
//! a secret from a file in the task, services reaching each other by their compose names, and `stack rm` that removes the stack's services and networks and leaves another stack
//! alone. Root only.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use mini_tests::web::http_get;
use mini_tests::{Cluster, Host, wait_for};

/// The compose file of the `app` stack; without `agent` when `with_agent` is false.
fn app_yml(with_agent: bool) -> String {
    let mut yml = String::from(
        r#"version: "3.8"
services:
  web:
    image: host
    command: ["sh", "-c", "mount -t tmpfs web /mnt && hostname > /mnt/index.html && exec busybox httpd -f -p 80 -h /mnt"]
    ports:
      - "8090:80"
    stop_grace_period: 1s
    deploy:
      replicas: 2
      update_config:
        parallelism: 1
  api:
    image: host
    command: sleep 100000
    stop_grace_period: 1s
    environment:
      LEVEL: "1"
    labels:
      role: backend
    secrets:
      - db_pass
"#,
    );
    if with_agent {
        yml.push_str(
            r#"  agent:
    image: host
    command: ["sleep", "100000"]
    stop_grace_period: 1s
    deploy:
      mode: global
"#,
        );
    }
    yml.push_str(
        r#"secrets:
  db_pass:
    file: ./db_pass.txt
"#,
    );
    yml
}

/// An override file: changes only api's environment.
const CHANGE_YML: &str = r#"services:
  api:
    environment:
      LEVEL: "2"
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The version of each service named.
fn versions(m: &Host, services: &[&str]) -> Vec<u64> {
    services
        .iter()
        .map(|s| {
            m.ok(&["service", "inspect", s]).json()[0]["version"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Ids of the tasks of `service` meant to run and running.
fn running_ids(m: &Host, service: &str) -> BTreeSet<String> {
    m.running_tasks(service)
        .iter()
        .map(|t| t["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Names of every service.
fn service_names(m: &Host) -> BTreeSet<String> {
    m.ok_listed(&["service", "ls"], "service")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Names of every swarm network (not the node's local gateway bridge).
fn network_names(m: &Host) -> BTreeSet<String> {
    m.ok_listed(&["network", "ls", "--filter", "scope=swarm"], "network")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_stack_is_deployed_updated_pruned_and_removed() {
    let cluster = Cluster::start(2);
    cluster.init();
    cluster.join_all();
    let m = cluster.host(1);
    let dir = cluster.dir();
    write(dir, "db_pass.txt", "s3cret-stack-value");
    let app = write(dir, "app.yml", &app_yml(true));
    let app_no_agent = write(dir, "app-no-agent.yml", &app_yml(false));
    let change = write(dir, "change.yml", CHANGE_YML);
    let other = write(
        dir,
        "other.yml",
        "services:\n  solo:\n    image: host\n    command: sleep 100000\n",
    );

    // A file with an error: file, line and column; nothing is created.
    let bad = write(
        dir,
        "bad.yml",
        "services:\n  web:\n    image: host\n    deploy:\n      replicas: [2]\n",
    );
    let err = m.fails(&["stack", "deploy", "-c", &bad, "bad"]);
    assert!(
        err.contains("bad.yml")
            && err.contains("services.web.deploy.replicas")
            && err.contains("line 5 column"),
        "{err}"
    );
    assert!(
        service_names(&m).is_empty(),
        "a refused deploy created services"
    );

    // Deploy: Docker's lines, objects named and labelled as Docker does.
    let out = m.ok(&["stack", "deploy", "-c", &app, "app"]);
    for line in [
        "Creating secret app_db_pass",
        "Creating network app_default",
        "Creating service app_agent",
        "Creating service app_api",
        "Creating service app_web",
    ] {
        assert!(out.stdout.contains(line), "no {line:?} in:\n{}", out.stdout);
    }
    m.wait_running("app_web", 2);
    m.wait_running("app_api", 1);
    m.wait_running("app_agent", 2);
    let web = &m.ok(&["service", "inspect", "app_web"]).json()[0];
    assert_eq!(web["labels"]["com.docker.stack.namespace"], "app", "{web}");
    assert_eq!(web["labels"]["com.docker.stack.image"], "host", "{web}");
    let api = &m.ok(&["service", "inspect", "app_api"]).json()[0];
    assert_eq!(api["container_labels"]["role"], "backend", "{api}");
    assert!(api["env"].to_string().contains("LEVEL=1"), "{api}");
    assert!(network_names(&m).contains("app_default"));
    for k in 1..=2 {
        let get = http_get(&cluster.addr(k), 8090);
        wait_for(
            &format!("app_web answering on port 8090 of h{k}"),
            Duration::from_secs(30),
            || {
                let out = cluster.exec_outside(&["sh", "-c", &get]);
                if out.stdout.trim().starts_with("app_web.") || out.stdout.trim().len() == 12 {
                    Ok(())
                } else {
                    Err(format!("{}{}", out.stdout, out.stderr))
                }
            },
        );
    }

    // The stack's secret is in api's task, named after its compose key.
    let secret = m.ok(&["exec", "app_api.1", "cat", "/run/secrets/db_pass"]);
    assert_eq!(secret.stdout, "s3cret-stack-value");

    // Services reach each other by their compose names (Docker's alias on the stack's
    // network): `web` is app_web's VIP, and answers HTTP.
    wait_for(
        "api resolving web to app_web's address",
        Duration::from_secs(30),
        || {
            let web = m.lookup("app_api.1", "web");
            let full = m.lookup("app_api.1", "app_web");
            let body = m.mini(&["exec", "app_api.1", "sh", "-c", &http_get("web", 80)]);
            if !web.is_empty() && web == full && !body.stdout.trim().is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "web → {web:?}, app_web → {full:?}, GET → {:?}",
                    body.stdout
                ))
            }
        },
    );

    // An unchanged redeploy changes nothing.
    let names = ["app_agent", "app_api", "app_web"];
    let before = versions(&m, &names);
    let web_tasks = running_ids(&m, "app_web");
    let api_tasks = running_ids(&m, "app_api");
    let out = m.ok(&["stack", "deploy", "-c", &app, "app"]);
    assert!(
        !out.stdout.contains("Creating") && !out.stdout.contains("Updating"),
        "an unchanged redeploy did something:\n{}",
        out.stdout
    );
    assert_eq!(versions(&m, &names), before, "versions moved");

    // A change to api (from a second -c file) rolls api only.
    let out = m.ok(&["stack", "deploy", "-c", &app, "-c", &change, "app"]);
    assert!(
        out.stdout.contains("Updating service app_api (id: "),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("app_web") && !out.stdout.contains("app_agent"),
        "services that did not change were touched:\n{}",
        out.stdout
    );
    let after = versions(&m, &names);
    assert_eq!(
        (after[0], after[2]),
        (before[0], before[2]),
        "{before:?} → {after:?}"
    );
    assert!(
        after[1] > before[1],
        "api was not updated: {before:?} → {after:?}"
    );
    wait_for(
        "app_api's task replaced by one with LEVEL=2",
        Duration::from_secs(30),
        || {
            let now = running_ids(&m, "app_api");
            if now.len() == 1 && now.is_disjoint(&api_tasks) {
                Ok(())
            } else {
                Err(format!("running {now:?}, before {api_tasks:?}"))
            }
        },
    );
    let api = &m.ok(&["service", "inspect", "app_api"]).json()[0];
    assert!(api["env"].to_string().contains("LEVEL=2"), "{api}");
    assert_eq!(
        running_ids(&m, "app_web"),
        web_tasks,
        "web's tasks were replaced"
    );

    // Another stack, then ls/services/ps.
    let out = m.ok(&["stack", "deploy", "-c", &other, "other"]);
    assert!(
        out.stdout.contains("Creating service other_solo"),
        "{}",
        out.stdout
    );
    m.wait_running("other_solo", 1);
    let ls = m.ok(&["stack", "ls"]).stdout;
    let rows: Vec<Vec<&str>> = ls.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [
            vec!["NAME", "SERVICES"],
            vec!["app", "3"],
            vec!["other", "1"]
        ],
        "{ls}"
    );
    let services: Vec<String> = m
        .ok_listed(&["stack", "services", "app"], "service")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(services, ["app_agent", "app_api", "app_web"]);
    let ps = m.ok(&["stack", "ps", "app"]).stdout;
    assert!(
        ps.contains("app_web.1") && ps.contains("app_web.2") && ps.contains("app_api.1"),
        "{ps}"
    );
    assert!(!ps.contains("other_solo"), "{ps}");
    assert!(
        m.fails(&["stack", "ps", "nothing"])
            .contains("Nothing found in stack: nothing")
    );

    // --prune removes what the file no longer has, and only that.
    let out = m.ok(&[
        "stack",
        "deploy",
        "--prune",
        "-c",
        &app_no_agent,
        "-c",
        &change,
        "app",
    ]);
    assert!(
        out.stdout.contains("Removing service app_agent"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("Updating"), "{}", out.stdout);
    assert_eq!(
        service_names(&m),
        ["app_api", "app_web", "other_solo"]
            .map(String::from)
            .into_iter()
            .collect()
    );

    // rm: the stack's services and network go; the other stack stays.
    let out = m.ok(&["stack", "rm", "app"]);
    for line in [
        "Removing service app_api",
        "Removing service app_web",
        "Removing secret app_db_pass",
        "Removing network app_default",
    ] {
        assert!(out.stdout.contains(line), "no {line:?} in:\n{}", out.stdout);
    }
    assert_eq!(
        service_names(&m),
        ["other_solo"].map(String::from).into_iter().collect()
    );
    let networks = network_names(&m);
    assert!(!networks.contains("app_default"), "{networks:?}");
    assert!(networks.contains("other_default"), "{networks:?}");
    assert_eq!(m.running_tasks("other_solo").len(), 1);
    wait_for("app's tasks gone", Duration::from_secs(30), || {
        let left: Vec<serde_json::Value> = m
            .ok_listed(&["service", "ps", "other_solo"], "task")
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default();
        let all = m.mini(&["stack", "ps", "app"]);
        if !all.success && left.len() == 1 {
            Ok(())
        } else {
            Err(format!("{}{}", all.stdout, all.stderr))
        }
    });
    let ls = m.ok(&["stack", "ls"]).stdout;
    assert!(!ls.contains("app"), "{ls}");
    let secrets = m.ok(&["secret", "ls"]).stdout;
    assert!(!secrets.contains("app_db_pass"), "{secrets}");
    assert!(
        m.fails(&["stack", "rm", "app"])
            .contains("Nothing found in stack: app")
    );
}

/// The 4-service stack of issue #14's test: web (published port, healthcheck), api (a secret and
/// a config), a job and a global service.
const FULL_YML: &str = r#"version: "3.8"
services:
  web:
    image: host
    command: ["sh", "-c", "mount -t tmpfs web /mnt && hostname > /mnt/index.html && exec busybox httpd -f -p 80 -h /mnt"]
    ports:
      - "8091:80"
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
      retries: 2
    deploy:
      replicas: 2
      update_config:
        parallelism: 1
        monitor: 3s
        failure_action: rollback
  api:
    image: host
    command: sleep 100000
    stop_grace_period: 1s
    secrets:
      - source: token
        target: api_token
        mode: 0400
    configs:
      - source: site
        target: /etc/mini-stack-site.conf
  migrate:
    image: host
    command: ["sh", "-c", "exit 0"]
    deploy:
      mode: replicated-job
      replicas: 2
  agent:
    image: host
    command: ["sleep", "100000"]
    stop_grace_period: 1s
    deploy:
      mode: global
secrets:
  token:
    file: ./token.txt
configs:
  site:
    file: ./site.conf
"#;

fn update_state(m: &Host, service: &str) -> String {
    m.ok(&["service", "inspect", service]).json()[0]["UpdateStatus"]["State"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_full_stack_runs_its_job_rolls_back_a_failing_update_and_is_removed() {
    let cluster = Cluster::start(2);
    cluster.init();
    cluster.join_all();
    let m = cluster.host(1);
    let dir = cluster.dir();
    write(dir, "token.txt", "tok-4f2a-stack");
    write(dir, "site.conf", "listen 8091\n");
    let full = write(dir, "full.yml", FULL_YML);

    let out = m.ok(&["stack", "deploy", "-c", &full, "full"]);
    for line in [
        "Creating secret full_token",
        "Creating config full_site",
        "Creating service full_web",
        "Creating service full_migrate",
    ] {
        assert!(out.stdout.contains(line), "no {line:?} in:\n{}", out.stdout);
    }
    m.wait_running("full_web", 2);
    m.wait_running("full_api", 1);
    m.wait_running("full_agent", 2);
    // The job runs to completion, twice, and is not run again.
    wait_for(
        "full_migrate's 2 completions",
        Duration::from_secs(60),
        || {
            let tasks = m.tasks("full_migrate");
            let complete = tasks
                .iter()
                .filter(|t| t["current_state"] == "Complete")
                .count();
            if complete == 2 && tasks.len() == 2 {
                Ok(())
            } else {
                Err(format!("{tasks:?}"))
            }
        },
    );
    // The secret and the config are in api's task, as the file asked.
    let token = m.ok(&["exec", "full_api.1", "cat", "/run/secrets/api_token"]);
    assert_eq!(token.stdout, "tok-4f2a-stack");
    let mode = m.ok(&[
        "exec",
        "full_api.1",
        "stat",
        "-c",
        "%a",
        "/run/secrets/api_token",
    ]);
    assert_eq!(mode.stdout.trim(), "400");
    let site = m.ok(&["exec", "full_api.1", "cat", "/etc/mini-stack-site.conf"]);
    assert_eq!(site.stdout, "listen 8091\n");
    let inspect = m.ok(&["secret", "inspect", "full_token"]).stdout;
    assert!(!inspect.contains("tok-4f2a-stack"), "{inspect}");
    let web = &m.ok(&["service", "inspect", "full_web"]).json()[0];
    assert_eq!(web["healthcheck"]["Test"][0], "CMD", "{web}");

    // A web whose new tasks exit at once: the update fails and is rolled back automatically.
    let before: BTreeSet<String> = running_ids(&m, "full_web");
    let broken = write(
        dir,
        "broken.yml",
        "services:\n  web:\n    command: [\"sh\", \"-c\", \"exit 3\"]\n",
    );
    let out = m.ok(&["stack", "deploy", "-c", &full, "-c", &broken, "full"]);
    assert!(
        out.stdout.contains("Updating service full_web"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("full_api"), "{}", out.stdout);
    wait_for(
        "full_web's update rolled back",
        Duration::from_secs(120),
        || {
            let state = update_state(&m, "full_web");
            if state == "rollback_completed" {
                Ok(())
            } else {
                Err(state)
            }
        },
    );
    let web = &m.ok(&["service", "inspect", "full_web"]).json()[0];
    assert!(web["args"].to_string().contains("httpd"), "{web}");
    m.wait_running("full_web", 2);
    let after = running_ids(&m, "full_web");
    assert_eq!(after.len(), 2, "{before:?} → {after:?}");

    // rm leaves nothing of the stack.
    let out = m.ok(&["stack", "rm", "full"]);
    assert!(
        out.stdout.contains("Removing config full_site"),
        "{}",
        out.stdout
    );
    assert!(service_names(&m).is_empty(), "{:?}", service_names(&m));
    assert!(!network_names(&m).contains("full_default"));
    let secrets = m.ok(&["secret", "ls"]).stdout;
    let configs = m.ok(&["config", "ls"]).stdout;
    assert!(
        !secrets.contains("full_") && !configs.contains("full_"),
        "{secrets}{configs}"
    );
}
