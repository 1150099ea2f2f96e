//! Parsing, interpolation, merging and translation of compose files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mini_proto::v1::{
    EndpointMode, RestartCondition, UpdateFailureAction, UpdateOrder, service_spec::Mode,
};

use super::compose::{EnvFile, EnvFiles, FileRef, PortEntry, StringOrList, VolumeEntry};
use super::load::{Loaded, Source, interpolate, load};
use super::translate::{IMAGE_LABEL, NAMESPACE_LABEL, Stack, StackService, translate};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose")
}

fn fixture(name: &str) -> Source {
    let path = fixtures().join(name);
    Source {
        name: path.display().to_string(),
        text: std::fs::read_to_string(&path).unwrap(),
    }
}

fn text(name: &str, text: &str) -> Source {
    Source {
        name: name.into(),
        text: text.into(),
    }
}

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_with(sources: &[Source], env: &HashMap<String, String>) -> Result<Loaded, String> {
    load(sources, &|k| env.get(k).cloned())
}

fn stack_of(sources: &[Source], env: &HashMap<String, String>) -> Result<Stack, String> {
    let loaded = load_with(sources, env)?;
    translate(&loaded.file, "app", &loaded.dir, &|k| env.get(k).cloned())
}

fn service<'a>(stack: &'a Stack, name: &str) -> &'a StackService {
    stack
        .services
        .iter()
        .find(|s| s.spec.name == name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

#[test]
fn the_specifications_illustrative_example_parses_and_translates() {
    let loaded = load_with(&[fixture("spec-illustrative.yml")], &vars(&[])).unwrap();
    let f = &loaded.file;
    assert_eq!(f.services.len(), 2);
    let front = &f.services["frontend"];
    assert_eq!(front.image.as_deref(), Some("awesome/webapp"));
    assert_eq!(
        front.secrets,
        vec![FileRef::Short("server-certificate".into())]
    );
    assert!(f.configs["httpd-config"].external.is_some());
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    let stack = translate(f, "app", &loaded.dir, &|_| None).unwrap();
    let names: Vec<&str> = stack
        .networks
        .iter()
        .map(|n| n.spec.name.as_str())
        .collect();
    assert_eq!(names, ["app_back-tier", "app_front-tier"]);
    for n in &stack.networks {
        assert_eq!(n.spec.driver, "overlay");
        assert_eq!(n.spec.labels[NAMESPACE_LABEL], "app");
    }
    let web = service(&stack, "app_frontend");
    assert_eq!(web.networks, ["app_back-tier", "app_front-tier"]);
    assert_eq!(web.spec.aliases, ["frontend"]);
    let ports = &web.spec.endpoint.as_ref().unwrap().ports;
    assert_eq!((ports[0].published_port, ports[0].target_port), (443, 8043));
    assert_eq!(web.spec.labels[NAMESPACE_LABEL], "app");
    assert_eq!(web.spec.labels[IMAGE_LABEL], "awesome/webapp");
    let db = service(&stack, "app_backend");
    let m = &db.spec.container.as_ref().unwrap().mounts[0];
    assert_eq!(
        (m.r#type.as_str(), m.source.as_str(), m.target.as_str()),
        ("volume", "app_db-data", "/etc/data")
    );
    // What mini does not do is said, not dropped.
    let all = stack.warnings.join("\n");
    for expected in ["driver \"flocker\"", "driver_opts"] {
        assert!(all.contains(expected), "no warning about {expected}: {all}");
    }
    // External secrets and configs keep their names; the files are named after the keys.
    let c = web.spec.container.as_ref().unwrap();
    assert_eq!(c.secrets[0].secret_name, "server-certificate");
    assert_eq!(
        c.secrets[0].file.as_ref().unwrap().name,
        "server-certificate"
    );
    assert_eq!(c.configs[0].config_name, "httpd-config");
    assert_eq!(c.configs[0].file.as_ref().unwrap().name, "/httpd-config");
    assert!(stack.secrets[0].external && stack.configs[0].external);
}

#[test]
fn the_specifications_deploy_examples_translate_to_service_specs() {
    let stack = stack_of(&[fixture("spec-deploy.yml")], &vars(&[])).unwrap();
    let wp = service(&stack, "app_wordpress");
    assert_eq!(wp.spec.mode, Some(Mode::Replicas(2)));
    assert_eq!(wp.networks, ["app_overlay"]);
    let mysql = service(&stack, "app_mysql");
    assert_eq!(
        mysql.spec.endpoint.as_ref().unwrap().mode(),
        EndpointMode::Dnsrr
    );
    let front = service(&stack, "app_frontend");
    assert_eq!(front.spec.mode, Some(Mode::Global(true)));
    assert_eq!(front.spec.constraints, ["node.labels.disktype==ssd"]);
    assert_eq!(
        front.spec.labels["com.example.description"],
        "This label will appear on the web service"
    );
    // No networks: the stack's default network, created because a service uses it.
    assert_eq!(front.networks, ["app_default"]);
    assert!(stack.networks.iter().any(|n| n.spec.name == "app_default"));
    let redis = service(&stack, "app_redis");
    let c = redis.spec.container.as_ref().unwrap();
    let limits = c.limits.unwrap();
    assert_eq!(
        (limits.nano_cpus, limits.memory_bytes, limits.pids),
        (500_000_000, 50 << 20, 1)
    );
    let res = c.reservations.unwrap();
    assert_eq!((res.nano_cpus, res.memory_bytes), (250_000_000, 20 << 20));
    let restart = redis.spec.restart.unwrap();
    assert_eq!(
        (
            restart.condition(),
            restart.delay_ms,
            restart.max_attempts,
            restart.window_ms
        ),
        (RestartCondition::OnFailure, 5000, 3, 120_000)
    );
    let update = redis.spec.update.unwrap();
    assert_eq!(
        (update.parallelism, update.delay_ms, update.order()),
        (2, 10_000, UpdateOrder::StopFirst)
    );
    let all = stack.warnings.join("\n");
    assert_eq!(
        front.spec.placement_preferences[0].spread,
        "node.labels.zone"
    );
    assert!(!all.contains("placement"), "{all}");
}

#[test]
fn the_specifications_service_examples_translate_to_service_specs() {
    let env = vars(&[("USER_INPUT", "typed")]);
    let loaded = load_with(&[fixture("spec-services.yml")], &env).unwrap();
    let web_c = &loaded.file.services["web"];
    assert_eq!(
        web_c.env_file,
        Some(EnvFiles::One(EnvFile::Path("web.env".into())))
    );
    assert!(matches!(web_c.entrypoint, Some(StringOrList::List(_))));
    let api_c = &loaded.file.services["api"];
    assert!(matches!(api_c.ports[0], PortEntry::Long(_)));
    assert!(matches!(api_c.volumes[3], VolumeEntry::Short(_)));
    // TAG is unset: its default applies, without a warning.
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    let stack = translate(&loaded.file, "app", &loaded.dir, &|k| env.get(k).cloned()).unwrap();
    let web = service(&stack, "app_web");
    let c = web.spec.container.as_ref().unwrap();
    assert_eq!(c.image, "example/web:latest");
    assert_eq!(c.args, ["bundle", "exec", "thin", "-p", "3000"]);
    assert_eq!(
        c.entrypoint,
        ["php", "-d", "memory_limit=-1", "vendor/bin/phpunit"]
    );
    // env_file first, `environment` over it; a key without value comes from the environment.
    assert_eq!(
        c.env,
        [
            "FROM_FILE=1",
            "RACK_ENV=development",
            "SHOW=true",
            "USER_INPUT=typed"
        ]
    );
    let hc = c.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["CMD", "curl", "-f", "http://localhost"]);
    assert_eq!(
        (
            hc.interval_ns,
            hc.timeout_ns,
            hc.retries,
            hc.start_period_ns
        ),
        (90_000_000_000, 10_000_000_000, 3, 40_000_000_000)
    );
    assert_eq!(c.labels["com.example.department"], "Finance");
    assert_eq!(c.labels[NAMESPACE_LABEL], "app");
    assert_eq!(c.stop_grace_period_ms, 90_000);
    assert_eq!(c.stop_signal, "SIGUSR1");
    assert_eq!((c.workdir.as_str(), c.user.as_str()), ("/srv", "1000:1000"));
    assert!(c.read_only && c.init);
    assert_eq!(c.log_options["max-size"], "200k");
    assert_eq!(c.log_options["max-file"], "10");
    let ports = &web.spec.endpoint.as_ref().unwrap().ports;
    assert_eq!(
        (ports[0].published_port, ports[0].target_port),
        (8001, 8001)
    );

    let api = service(&stack, "app_api");
    let c = api.spec.container.as_ref().unwrap();
    assert_eq!(c.env, ["RACK_ENV=development", "SHOW=true"]);
    assert_eq!(
        c.healthcheck.as_ref().unwrap().test,
        ["CMD-SHELL", "curl -f http://localhost || exit 1"]
    );
    let ports: Vec<(u32, u32, &str)> = api
        .spec
        .endpoint
        .as_ref()
        .unwrap()
        .ports
        .iter()
        .map(|p| (p.published_port, p.target_port, p.protocol.as_str()))
        .collect();
    assert_eq!(
        ports,
        [
            (8080, 80, "tcp"),
            (9090, 8080, "tcp"),
            (9091, 8081, "tcp"),
            (6060, 6060, "udp")
        ]
    );
    let mounts: Vec<(&str, &str, &str, bool)> = c
        .mounts
        .iter()
        .map(|m| {
            (
                m.r#type.as_str(),
                m.source.as_str(),
                m.target.as_str(),
                m.read_only,
            )
        })
        .collect();
    let static_dir = fixtures().join("static").display().to_string();
    assert_eq!(
        mounts,
        [
            ("volume", "app_mydata", "/data", false),
            ("bind", static_dir.as_str(), "/opt/app/static", false),
            ("tmpfs", "", "/cache", false),
            (
                "bind",
                "/var/run/postgres/postgres.sock",
                "/var/run/postgres/postgres.sock",
                true
            ),
        ]
    );
    assert_eq!(c.mounts[2].tmpfs_size, 64 << 20);
    // The secret's long syntax; the secret is the stack's, read from its file.
    let r = &c.secrets[0];
    let f = r.file.as_ref().unwrap();
    assert_eq!(
        (
            r.secret_name.as_str(),
            f.name.as_str(),
            f.uid.as_str(),
            f.gid.as_str(),
            f.mode
        ),
        ("app_server-certificate", "server.cert", "103", "103", 0o440)
    );
    assert_eq!(stack.secrets[0].name, "app_server-certificate");
    assert_eq!(stack.secrets[0].data, b"not a real certificate\n");
    assert_eq!(stack.secrets[0].labels[NAMESPACE_LABEL], "app");
    let quiet = service(&stack, "app_quiet");
    assert_eq!(
        quiet
            .spec
            .container
            .as_ref()
            .unwrap()
            .healthcheck
            .as_ref()
            .unwrap()
            .test,
        ["NONE"]
    );
    let all = stack.warnings.join("\n");
    assert!(all.contains("host address 127.0.0.1 is ignored"), "{all}");
}

#[test]
fn interpolation_follows_the_specification() {
    let env = vars(&[("SET", "value"), ("EMPTY", ""), ("N", "3")]);
    let lookup = |k: &str| env.get(k).cloned();
    let cases: &[(&str, &str)] = &[
        ("plain", "plain"),
        ("$SET", "value"),
        ("${SET}", "value"),
        ("a${SET}b", "avalueb"),
        ("$SET-x", "value-x"),
        ("${UNSET:-default}", "default"),
        ("${EMPTY:-default}", "default"),
        ("${EMPTY-default}", ""),
        ("${UNSET-default}", "default"),
        ("${SET:-default}", "value"),
        ("${SET:+replaced}", "replaced"),
        ("${EMPTY:+replaced}", ""),
        ("${EMPTY+replaced}", "replaced"),
        ("${UNSET+replaced}", ""),
        ("${UNSET:-${SET}}", "value"),
        ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
        ("$$SET", "$SET"),
        ("$${SET}", "${SET}"),
        ("cost: $$5", "cost: $5"),
        ("replicas ${N}", "replicas 3"),
        ("${SET:?must be set}", "value"),
    ];
    for (input, expected) in cases {
        let mut warnings = Vec::new();
        assert_eq!(
            interpolate(input, &lookup, &mut warnings).as_deref(),
            Ok(*expected),
            "{input}"
        );
        assert!(warnings.is_empty(), "{input}: {warnings:?}");
    }
    let mut warnings = Vec::new();
    assert_eq!(
        interpolate("x${UNSET}y", &lookup, &mut warnings).unwrap(),
        "xy"
    );
    assert_eq!(
        warnings,
        ["The UNSET variable is not set. Defaulting to a blank string."]
    );
    for (input, error) in [
        (
            "${UNSET:?give it}",
            "required variable UNSET is missing a value: give it",
        ),
        ("${EMPTY:?}", "required variable EMPTY is missing a value"),
        ("${UNSET?}", "required variable UNSET is missing a value"),
        ("${SET", "is not closed"),
        ("$ 5", "a $ must be followed by a variable name"),
        ("${}", "names no variable"),
        ("${SET:x}", "invalid interpolation format"),
    ] {
        let err = interpolate(input, &lookup, &mut Vec::new()).unwrap_err();
        assert!(err.contains(error), "{input}: {err}");
    }
    // Interpolation applies to values and says where it failed.
    let err = load_with(
        &[text(
            "app.yml",
            "services:\n  web:\n    image: ${IMAGE:?set IMAGE}\n",
        )],
        &env,
    )
    .unwrap_err();
    assert_eq!(
        err,
        "app.yml: services.web.image: required variable IMAGE is missing a value: set IMAGE"
    );
    // A number given by a variable is converted where it is used.
    let stack = stack_of(
        &[text(
            "app.yml",
            "services:\n  web:\n    image: host\n    deploy:\n      replicas: ${N}\n",
        )],
        &env,
    )
    .unwrap();
    assert_eq!(stack.services[0].spec.mode, Some(Mode::Replicas(3)));
    let err = stack_of(
        &[text(
            "app.yml",
            "services:\n  web:\n    image: host\n    deploy:\n      replicas: ${SET}\n",
        )],
        &env,
    )
    .unwrap_err();
    assert_eq!(
        err,
        "service web: deploy.replicas: \"value\" is not a non-negative integer"
    );
}

#[test]
fn a_second_file_overrides_the_first_as_compose_merges() {
    let base = text(
        "base.yml",
        r#"
services:
  web:
    image: host
    command: ["httpd", "-f"]
    environment:
      - A=1
      - B=2
    ports:
      - "8080:80"
    volumes:
      - /srv/a:/data
    deploy:
      replicas: 1
      labels:
        tier: front
  api:
    image: host
networks:
  back:
    driver: overlay
"#,
    );
    let over = text(
        "prod.yml",
        r#"
services:
  web:
    command: ["httpd", "-f", "-p", "81"]
    environment:
      B: "20"
      C: "3"
    ports:
      - "9090:90"
    volumes:
      - /srv/b:/data
    deploy:
      replicas: 4
      update_config:
        failure_action: rollback
        monitor: 10s
        max_failure_ratio: 0.2
        order: start-first
      rollback_config:
        parallelism: 0
        failure_action: continue
  db:
    image: host
networks:
  back:
    attachable: true
"#,
    );
    let stack = stack_of(&[base, over], &vars(&[])).unwrap();
    let names: Vec<&str> = stack
        .services
        .iter()
        .map(|s| s.spec.name.as_str())
        .collect();
    assert_eq!(names, ["app_api", "app_db", "app_web"]);
    let web = service(&stack, "app_web");
    let c = web.spec.container.as_ref().unwrap();
    // Lists that are values are replaced; maps merge key by key.
    assert_eq!(c.args, ["httpd", "-f", "-p", "81"]);
    assert_eq!(c.env, ["A=1", "B=20", "C=3"]);
    // Ports add up; mounts at the same target: the later file's.
    let ports: Vec<u32> = web
        .spec
        .endpoint
        .as_ref()
        .unwrap()
        .ports
        .iter()
        .map(|p| p.published_port)
        .collect();
    assert_eq!(ports, [8080, 9090]);
    assert_eq!(c.mounts.len(), 1);
    assert_eq!(c.mounts[0].source, "/srv/b");
    assert_eq!(web.spec.mode, Some(Mode::Replicas(4)));
    let u = web.spec.update.unwrap();
    assert_eq!(
        (
            u.failure_action(),
            u.monitor_ms,
            u.max_failure_ratio,
            u.order()
        ),
        (
            UpdateFailureAction::Rollback,
            10_000,
            0.2,
            UpdateOrder::StartFirst
        )
    );
    let r = web.spec.rollback.unwrap();
    assert_eq!(
        (r.parallelism, r.failure_action()),
        (0, UpdateFailureAction::Continue)
    );
    assert_eq!(web.spec.labels["tier"], "front");
    // api had no networks and gets the default one.
    assert_eq!(service(&stack, "app_api").networks, ["app_default"]);
}

#[test]
fn errors_name_the_file_line_and_column() {
    // YAML syntax.
    let err = load_with(
        &[text(
            "bad.yml",
            "services:\n  web:\n    image: host\n   ports: [\n",
        )],
        &vars(&[]),
    )
    .unwrap_err();
    assert!(err.starts_with("bad.yml: "), "{err}");
    assert!(err.contains("line 4 column"), "{err}");
    // A wrong type: where, and what was expected.
    let err = load_with(
        &[text(
            "types.yml",
            "services:\n  web:\n    image: host\n    ports:\n      - [8080]\n",
        )],
        &vars(&[]),
    )
    .unwrap_err();
    assert!(err.starts_with("types.yml: services.web.ports"), "{err}");
    assert!(
        err.contains("expected a port (\"8080:80\") or a mapping with `target`, got a list"),
        "{err}"
    );
    assert!(err.contains("line 5 column"), "{err}");
    let err = load_with(
        &[text(
            "deploy.yml",
            "services:\n  web:\n    image: host\n    deploy:\n      placement:\n        constraints: node.role==manager\n",
        )],
        &vars(&[]),
    )
    .unwrap_err();
    assert!(
        err.starts_with("deploy.yml: services.web.deploy.placement.constraints"),
        "{err}"
    );
    assert!(err.contains("expected a sequence"), "{err}");
    assert!(err.contains("line 6 column 22"), "{err}");
    // With two files, the file that has the error is named.
    let err = load_with(
        &[
            text("ok.yml", "services:\n  web:\n    image: host\n"),
            text(
                "second.yml",
                "services:\n  web:\n    healthcheck: yes please\n",
            ),
        ],
        &vars(&[]),
    )
    .unwrap_err();
    assert!(
        err.starts_with("second.yml: services.web.healthcheck"),
        "{err}"
    );
    assert!(err.contains("line 3 column 18"), "{err}");
}

#[test]
fn unknown_and_unsupported_keys_are_named() {
    let loaded = load_with(
        &[text(
            "app.yml",
            r#"
x-defaults: &defaults
  image: host
services:
  web:
    <<: *defaults
    x-note: mine
    imagee: typo
    build: .
    links: [db]
    container_name: web1
    cap_add: [NET_ADMIN]
    deploy:
      replicass: 3
  db:
    image: host
colour: blue
"#,
        )],
        &vars(&[]),
    )
    .unwrap();
    assert_eq!(
        loaded.warnings,
        [
            "unknown key colour is ignored",
            "unknown key services.web.deploy.replicass is ignored",
            "unknown key services.web.imagee is ignored",
        ]
    );
    let stack = translate(&loaded.file, "app", &loaded.dir, &|_| None).unwrap();
    assert_eq!(
        stack.warnings[0],
        "Ignoring unsupported options: build, links"
    );
    let all = stack.warnings.join("\n");
    assert!(
        all.contains("Ignoring deprecated option container_name (service web)"),
        "{all}"
    );
    assert!(
        all.contains("service web: cap_add is not supported by mini"),
        "{all}"
    );
    // The merge key gave web its image.
    assert_eq!(
        service(&stack, "app_web")
            .spec
            .container
            .as_ref()
            .unwrap()
            .image,
        "host"
    );
    // Docker refuses some keys outright.
    let err = stack_of(
        &[text(
            "app.yml",
            "services:\n  web:\n    image: host\n    mem_limit: 1g\n",
        )],
        &vars(&[]),
    )
    .unwrap_err();
    assert!(
        err.contains("Compose file contains unsupported option(s)"),
        "{err}"
    );
    assert!(err.contains("mem_limit"), "{err}");
}

#[test]
fn bad_services_are_refused_with_what_was_wrong() {
    for (yaml, error) in [
        (
            "services:\n  web:\n    command: x\n",
            "service web: no image",
        ),
        (
            "services:\n  web:\n    image: host\n    networks: [nowhere]\n",
            "service web: refers to undefined network nowhere",
        ),
        (
            "services:\n  web:\n    image: host\n    volumes: [\"data:/data\"]\n",
            "service web: undefined volume \"data\"",
        ),
        (
            "services:\n  web:\n    image: host\n    ports: [\"80\"]\n",
            "gives no published port",
        ),
        (
            "services:\n  web:\n    image: host\n    deploy:\n      mode: global\n      replicas: 2\n",
            "deploy.replicas can only be used with replicated or replicated-job mode",
        ),
        (
            "services:\n  web:\n    image: host\n    deploy:\n      mode: once\n",
            "deploy.mode \"once\" is not one of replicated, global, replicated-job, global-job",
        ),
        (
            "services:\n  web:\n    image: host\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      disable: true\n",
            "test and disable can't be set at the same time",
        ),
        (
            "services:\n  web:\n    image: host\n    deploy:\n      resources:\n        limits:\n          memory: 1k\n",
            "Minimum memory limit allowed is 6MB",
        ),
        (
            "version: \"2.4\"\nservices:\n  web:\n    image: host\n",
            "unsupported Compose file version: 2.4",
        ),
        (
            "services:\n  web:\n    image: host\nnetworks:\n  default:\n    driver_opts:\n      encrypted: \"\"\n",
            "--opt encrypted is not supported",
        ),
    ] {
        let err = stack_of(&[text("app.yml", yaml)], &vars(&[])).unwrap_err();
        assert!(err.contains(error), "{yaml}\n→ {err}");
    }
    let ok = load_with(
        &[text("app.yml", "services:\n  web:\n    image: host\n")],
        &vars(&[]),
    )
    .unwrap();
    assert!(
        translate(&ok.file, "bad name", &ok.dir, &|_| None)
            .unwrap_err()
            .contains("invalid stack name")
    );
}

#[test]
fn external_and_named_networks_keep_their_names() {
    let stack = stack_of(
        &[text(
            "app.yml",
            r#"
services:
  web:
    image: host
    networks:
      outside:
      own:
        aliases: [www]
networks:
  outside:
    external: true
    name: shared-net
  own:
    name: custom
    attachable: true
    ipam:
      config:
        - subnet: 10.9.0.0/24
    labels:
      team: a
"#,
        )],
        &vars(&[]),
    )
    .unwrap();
    let web = service(&stack, "app_web");
    assert_eq!(web.networks, ["custom", "shared-net"]);
    let outside = stack.networks.iter().find(|n| n.key == "outside").unwrap();
    assert!(outside.external);
    let own = stack.networks.iter().find(|n| n.key == "own").unwrap();
    assert!(!own.external && own.spec.attachable);
    assert_eq!(own.spec.subnet, "10.9.0.0/24");
    assert_eq!(own.spec.labels["team"], "a");
    assert_eq!(own.spec.labels[NAMESPACE_LABEL], "app");
    // The short name, then the aliases of the file; on every network of the service.
    assert_eq!(web.spec.aliases, ["web", "www"]);
    assert!(
        stack.warnings.iter().any(
            |w| w.contains("aliases (www): mini gives a service's aliases on all its networks")
        ),
        "{:?}",
        stack.warnings
    );
}

#[test]
fn jobs_and_placement_keys_reach_the_spec() {
    let stack = stack_of(
        &[text(
            "app.yml",
            r#"
services:
  migrate:
    image: host
    command: ["true"]
    deploy:
      mode: replicated-job
      replicas: 3
  sweep:
    image: host
    deploy:
      mode: global-job
  web:
    image: host
    deploy:
      replicas: 4
      placement:
        constraints: [node.labels.zone!=west]
        preferences:
          - spread: node.labels.rack
        max_replicas_per_node: 2
"#,
        )],
        &vars(&[]),
    )
    .unwrap();
    let migrate = service(&stack, "app_migrate");
    match migrate.spec.mode {
        Some(Mode::ReplicatedJob(j)) => {
            assert_eq!((j.total_completions, j.max_concurrent), (3, 3))
        }
        ref other => panic!("{other:?}"),
    }
    // Jobs are retried on failure only, as Docker's.
    assert_eq!(
        migrate.spec.restart.unwrap().condition(),
        RestartCondition::OnFailure
    );
    assert!(matches!(
        service(&stack, "app_sweep").spec.mode,
        Some(Mode::GlobalJob(_))
    ));
    let web = &service(&stack, "app_web").spec;
    assert_eq!(web.constraints, ["node.labels.zone!=west"]);
    assert_eq!(web.placement_preferences[0].spread, "node.labels.rack");
    assert_eq!(web.max_replicas_per_node, 2);
    assert!(stack.warnings.is_empty(), "{:?}", stack.warnings);
}
