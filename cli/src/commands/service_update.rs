//! `mini service update` and `mini service rollback`: edits a service's spec as Docker's
//! flags say (or goes back to the previous spec), sends it with the version it was read at,
//! and (unless `--detach`) follows the rolling update until it converged, paused or rolled
//! back, as `docker service update` does.

use anyhow::{Result, bail};
use clap::Args;
use mini_proto::v1::{
    EndpointSpec, GetRequest, PortConfig, ServiceSpec, UpdateServiceRequest,
    control_client::ControlClient,
};
use tonic::transport::Channel;

use super::service::{parse_env, parse_publish};
use super::service_flags::WaitFlags;
use crate::progress::Wait;

/// Flags of `service rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// `--detach`, `--quiet`.
    #[command(flatten)]
    wait: WaitFlags,
    /// Service name or id.
    service: String,
}

/// Flags of `service update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Publish a port: PUBLISHED:TARGET[/tcp|udp] (repeatable; replaces the same PUBLISHED).
    #[arg(long = "publish-add", value_parser = parse_publish)]
    publish_add: Vec<PortConfig>,
    /// Stop publishing a port: PUBLISHED[:TARGET][/tcp|udp] (repeatable).
    #[arg(long = "publish-rm", value_parser = parse_published)]
    publish_rm: Vec<(u32, String)>,
    /// Add or change an environment variable K=V (repeatable).
    #[arg(long = "env-add", value_parser = parse_env)]
    env_add: Vec<String>,
    /// Remove an environment variable K (repeatable).
    #[arg(long = "env-rm")]
    env_rm: Vec<String>,
    /// Add a placement constraint (repeatable).
    #[arg(long = "constraint-add")]
    constraint_add: Vec<String>,
    /// Remove a placement constraint, written as it was added (repeatable).
    #[arg(long = "constraint-rm")]
    constraint_rm: Vec<String>,
    /// Add a placement preference, spread=node.labels.zone (repeatable).
    #[arg(long = "placement-pref-add")]
    placement_pref_add: Vec<String>,
    /// Remove a placement preference, spread=node.labels.zone (repeatable).
    #[arg(long = "placement-pref-rm")]
    placement_pref_rm: Vec<String>,
    /// Add or replace a mount: type=bind|volume|tmpfs,source=...,target=...[,readonly] (repeatable).
    #[arg(long = "mount-add", value_parser = super::service_flags::parse_mount)]
    mount_add: Vec<mini_proto::v1::Mount>,
    /// Remove the mount at this target path (repeatable).
    #[arg(long = "mount-rm")]
    mount_rm: Vec<String>,
    /// Attach the service to a network (repeatable): NAME or name=NAME,alias=ALIAS; its tasks
    /// are replaced by ones on it.
    #[arg(long = "network-add", value_parser = super::service_flags::parse_network)]
    network_add: Vec<String>,
    /// Detach the service from a network (repeatable).
    #[arg(long = "network-rm")]
    network_rm: Vec<String>,
    /// Add or change a service label K=V (repeatable).
    #[arg(long = "label-add", value_parser = parse_env)]
    label_add: Vec<String>,
    /// Remove a service label (repeatable).
    #[arg(long = "label-rm")]
    label_rm: Vec<String>,
    /// Add or change a container label K=V (repeatable).
    #[arg(long = "container-label-add", value_parser = parse_env)]
    container_label_add: Vec<String>,
    /// Remove a container label (repeatable).
    #[arg(long = "container-label-rm")]
    container_label_rm: Vec<String>,
    /// Endpoint mode: vip (a virtual IP in front of the tasks) or dnsrr (DNS round robin).
    #[arg(long, value_parser = ["vip", "dnsrr"])]
    endpoint_mode: Option<String>,
    /// Image to run from now on.
    #[arg(long)]
    image: Option<String>,
    /// Command and arguments after the image (words split as a shell would).
    #[arg(long)]
    args: Option<String>,
    /// Flags shared with `service create`.
    #[command(flatten)]
    flags: super::service_flags::SpecFlags,
    /// `--secret-add`, `--secret-rm`, `--config-add`, `--config-rm`.
    #[command(flatten)]
    secrets: super::service_flags::SecretUpdateFlags,
    /// Replace every task even if nothing else changed.
    #[arg(long)]
    force: bool,
    /// Rollback to previous specification.
    #[arg(long)]
    rollback: bool,
    /// `--detach` (return once the update is stored), `--quiet`.
    #[command(flatten)]
    wait: WaitFlags,
    /// Service name or id.
    service: String,
}

/// `PUBLISHED[:TARGET][/tcp|udp]` → (published, protocol).
fn parse_published(s: &str) -> Result<(u32, String), String> {
    let (ports, protocol) = match s.split_once('/') {
        Some((ports, proto)) => (ports, proto.to_ascii_lowercase()),
        None => (s, "tcp".to_string()),
    };
    if protocol != "tcp" && protocol != "udp" {
        return Err(format!("{s:?}: protocol {protocol:?} is not tcp or udp"));
    }
    let published = ports.split_once(':').map_or(ports, |(p, _)| p);
    match published.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok((n, protocol)),
        _ => Err(format!("{s:?}: {published:?} is not a port (1-65535)")),
    }
}

/// `--label-add K=V` / `--label-rm K` (removing a label that is not there is not an error, as
/// in Docker).
fn edit_labels(
    labels: &mut std::collections::HashMap<String, String>,
    add: &[String],
    rm: &[String],
) {
    for key in rm {
        labels.remove(key);
    }
    for entry in add {
        let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
        labels.insert(k.to_string(), v.to_string());
    }
}

/// `--network-add` / `--network-rm`: `networks` are the names or ids given, `ids` the ids they
/// resolved to (in the same order).
fn edit_networks(
    spec: &mut ServiceSpec,
    add: &[(String, String)],
    rm: &[(String, String)],
) -> Result<()> {
    for (name, id) in rm {
        let before = spec.networks.len();
        spec.networks.retain(|n| n != id);
        if spec.networks.len() == before {
            bail!("service {} is not attached to network {name}", spec.name);
        }
    }
    for (name, id) in add {
        if spec.networks.contains(id) {
            bail!(
                "service {} is already attached to network {name}",
                spec.name
            );
        }
        spec.networks.push(id.clone());
    }
    Ok(())
}

/// The id of each network named, as (name, id).
async fn resolve_networks(
    client: &mut ControlClient<Channel>,
    names: &[String],
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for name in names {
        let network = client
            .get_network(GetRequest {
                name_or_id: name.clone(),
            })
            .await?
            .into_inner();
        if network.spec.as_ref().is_some_and(|s| s.ingress) {
            bail!(
                "the ingress network is attached by publishing ports (--publish-add), not with \
                 --network-add or --network-rm"
            );
        }
        out.push((name.clone(), network.id));
    }
    Ok(out)
}

/// The variable name of a `K=V` environment entry.
fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Applies the flags to `spec`; refuses removals of what is not there (nothing is sent then).
fn edit(spec: &mut ServiceSpec, args: &UpdateArgs) -> Result<()> {
    args.flags.apply(spec)?;
    args.secrets.apply(spec)?;
    edit_labels(&mut spec.labels, &args.label_add, &args.label_rm);
    if let Some(mode) = &args.endpoint_mode {
        let endpoint = spec.endpoint.get_or_insert_with(Default::default);
        endpoint.set_mode(if mode == "dnsrr" {
            mini_proto::v1::EndpointMode::Dnsrr
        } else {
            mini_proto::v1::EndpointMode::Vip
        });
    }
    let container = spec.container.get_or_insert_with(Default::default);
    edit_labels(
        &mut container.labels,
        &args.container_label_add,
        &args.container_label_rm,
    );
    if let Some(image) = &args.image {
        container.image = image.clone();
    }
    if let Some(a) = &args.args {
        container.args = super::service_flags::split_words(a)?;
    }
    for target in &args.mount_rm {
        let before = container.mounts.len();
        container.mounts.retain(|m| &m.target != target);
        if container.mounts.len() == before {
            bail!("service {} has no mount at {target}", spec.name);
        }
    }
    for m in &args.mount_add {
        container.mounts.retain(|x| x.target != m.target);
        container.mounts.push(m.clone());
    }
    for key in &args.env_rm {
        let before = container.env.len();
        container.env.retain(|e| env_key(e) != key);
        if container.env.len() == before {
            bail!("service {} has no environment variable {key}", spec.name);
        }
    }
    for kv in &args.env_add {
        let key = env_key(kv);
        container.env.retain(|e| env_key(e) != key);
        container.env.push(kv.clone());
    }
    super::service_flags::Placement {
        constraint_add: args.constraint_add.clone(),
        constraint_rm: args.constraint_rm.clone(),
        pref_add: args.placement_pref_add.clone(),
        pref_rm: args.placement_pref_rm.clone(),
    }
    .apply(spec)?;
    let endpoint = spec.endpoint.get_or_insert_with(EndpointSpec::default);
    for (published, protocol) in &args.publish_rm {
        let before = endpoint.ports.len();
        endpoint
            .ports
            .retain(|p| !(p.published_port == *published && &p.protocol == protocol));
        if endpoint.ports.len() == before {
            bail!(
                "service {} does not publish port {published}/{protocol}",
                spec.name
            );
        }
    }
    for port in &args.publish_add {
        endpoint
            .ports
            .retain(|p| !(p.published_port == port.published_port && p.protocol == port.protocol));
        endpoint.ports.push(port.clone());
    }
    if args.force {
        spec.force_update += 1;
    }
    Ok(())
}

/// Runs `service update`.
pub async fn run(client: &mut ControlClient<Channel>, args: UpdateArgs) -> Result<()> {
    if args.rollback {
        if changes_something(&args) {
            bail!("other flags may not be combined with --rollback");
        }
        return rollback(
            client,
            RollbackArgs {
                wait: args.wait,
                service: args.service,
            },
        )
        .await;
    }
    let (network_add, alias_add) = super::service_flags::split_networks(&args.network_add);
    let network_add = resolve_networks(client, &network_add).await?;
    let network_rm = resolve_networks(client, &args.network_rm).await?;
    // The spec is edited from the version read; when the service changed meanwhile (the
    // orchestrator records its update's progress in it), it is read and edited again.
    let mut attempt = 0;
    let (updated, spec) = loop {
        let service = client
            .get_service(GetRequest {
                name_or_id: args.service.clone(),
            })
            .await?
            .into_inner();
        let mut spec = service.spec.clone().unwrap_or_default();
        edit(&mut spec, &args)?;
        edit_networks(&mut spec, &network_add, &network_rm)?;
        for alias in &alias_add {
            if !spec.aliases.contains(alias) {
                spec.aliases.push(alias.clone());
            }
        }
        let registry_auth = args.flags.registry_auth(&spec)?;
        let result = client
            .update_service(UpdateServiceRequest {
                name_or_id: service.id.clone(),
                version: service.meta.map_or(0, |m| m.version),
                spec: Some(spec.clone()),
                registry_auth,
                rollback: false,
            })
            .await;
        match result {
            Ok(updated) => break (updated.into_inner(), spec),
            // As Docker's CLI: the spec is edited from the version inspect read; when another
            // writer updated the service first, read it again and edit again (no change lost).
            Err(status)
                if attempt < OUT_OF_SEQUENCE_RETRIES
                    && status.code() == tonic::Code::Aborted
                    && status.message().starts_with("update out of sequence") =>
            {
                attempt += 1;
                // Many writers of one service: spread the next reads out a little.
                let most = 2 * attempt.min(25) as u64;
                tokio::time::sleep(std::time::Duration::from_millis(rand::random_range(
                    0..=most,
                )))
                .await;
            }
            Err(status) => return Err(status.into()),
        }
    };
    println!("{}", spec.name);
    if args.wait.detach {
        return Ok(());
    }
    crate::progress::service(client, &updated.id, Wait::Update, args.wait.quiet).await
}

/// How many times `service update` reads and edits again after another writer updated the
/// service between its read and its write.
const OUT_OF_SEQUENCE_RETRIES: usize = 100;

/// Whether the flags ask for any change of the spec (Docker refuses them with `--rollback`).
fn changes_something(args: &UpdateArgs) -> bool {
    let base = ServiceSpec {
        container: Some(Default::default()),
        endpoint: Some(EndpointSpec::default()),
        ..Default::default()
    };
    let mut probe = base.clone();
    edit(&mut probe, args).is_err() || probe != base || args.flags.with_registry_auth
}

/// Runs `service rollback` (and `service update --rollback`): back to the previous spec.
pub async fn rollback(client: &mut ControlClient<Channel>, args: RollbackArgs) -> Result<()> {
    let service = client
        .get_service(GetRequest {
            name_or_id: args.service.clone(),
        })
        .await?
        .into_inner();
    let updated = client
        .update_service(UpdateServiceRequest {
            name_or_id: service.id.clone(),
            // Nothing is edited from what was read: no version check (the orchestrator may
            // have recorded its update's progress since).
            version: 0,
            spec: None,
            registry_auth: None,
            rollback: true,
        })
        .await?
        .into_inner();
    println!("{}", crate::views::service_name(&updated));
    if args.wait.detach {
        return Ok(());
    }
    crate::progress::service(client, &updated.id, Wait::Rollback, args.wait.quiet).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use mini_proto::v1::{ContainerSpec, service_spec::Mode};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: UpdateArgs,
    }

    fn args(flags: &[&str]) -> UpdateArgs {
        let mut argv = vec!["update"];
        argv.extend_from_slice(flags);
        argv.push("web");
        Cli::try_parse_from(argv).expect("flags parse").args
    }

    fn web() -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            container: Some(ContainerSpec {
                image: "host".into(),
                args: vec!["httpd".into()],
                env: vec!["A=1".into(), "B=2".into()],
                ..Default::default()
            }),
            mode: Some(Mode::Replicas(2)),
            endpoint: Some(EndpointSpec {
                mode: 0,
                ports: vec![PortConfig {
                    protocol: "tcp".into(),
                    published_port: 8080,
                    target_port: 80,
                }],
            }),
            ..ServiceSpec::default()
        }
    }

    #[test]
    fn flags_edit_the_spec_like_docker() {
        let mut spec = web();
        edit(
            &mut spec,
            &args(&[
                "--env-add",
                "A=3",
                "--env-rm",
                "B",
                "--publish-rm",
                "8080",
                "--publish-add",
                "9090:80/udp",
                "--replicas",
                "5",
                "--update-parallelism",
                "2",
                "--force",
            ]),
        )
        .unwrap();
        assert_eq!(spec.container.as_ref().unwrap().env, vec!["A=3"]);
        let ports = &spec.endpoint.as_ref().unwrap().ports;
        assert_eq!(ports.len(), 1);
        assert_eq!(
            (
                ports[0].published_port,
                ports[0].target_port,
                ports[0].protocol.as_str()
            ),
            (9090, 80, "udp")
        );
        assert_eq!(spec.mode, Some(Mode::Replicas(5)));
        assert_eq!(spec.update.unwrap().parallelism, 2);
        assert_eq!(spec.force_update, 1);
    }

    #[test]
    fn update_and_rollback_flags_take_dockers_names_and_durations() {
        use mini_proto::v1::{UpdateFailureAction, UpdateOrder};
        let mut spec = web();
        edit(
            &mut spec,
            &args(&[
                "--update-delay",
                "1m30s",
                "--update-failure-action",
                "rollback",
                "--update-monitor",
                "10s",
                "--update-max-failure-ratio",
                "0.25",
                "--update-order",
                "start-first",
                "--rollback-parallelism",
                "0",
                "--rollback-monitor",
                "500ms",
                "--restart-delay",
                "2s",
                "--restart-max-attempts",
                "3",
                "--restart-window",
                "1m",
            ]),
        )
        .unwrap();
        let u = spec.update.unwrap();
        assert_eq!(
            (u.parallelism, u.delay_ms, u.monitor_ms, u.max_failure_ratio),
            (1, 90_000, 10_000, 0.25),
            "unset fields keep Docker's defaults"
        );
        assert_eq!(u.failure_action(), UpdateFailureAction::Rollback);
        assert_eq!(u.order(), UpdateOrder::StartFirst);
        let r = spec.rollback.unwrap();
        assert_eq!((r.parallelism, r.monitor_ms), (0, 500));
        assert_eq!(r.failure_action(), UpdateFailureAction::Pause);
        let restart = spec.restart.unwrap();
        assert_eq!(
            (restart.delay_ms, restart.max_attempts, restart.window_ms),
            (2000, 3, 60_000)
        );
        // Bad values are refused by the parser, naming what is expected.
        for flags in [
            &["--update-max-failure-ratio", "1.5"][..],
            &["--update-failure-action", "retry"][..],
            &["--update-order", "random"][..],
            &["--update-delay", "10"][..],
            &["--rollback-failure-action", "rollback"][..],
            &["--update-delay-ms", "10"][..],
        ] {
            let mut argv = vec!["update"];
            argv.extend_from_slice(flags);
            argv.push("web");
            assert!(Cli::try_parse_from(argv).is_err(), "{flags:?} accepted");
        }
        assert!(args(&["--rollback"]).rollback);
        assert!(!changes_something(&args(&[
            "--rollback",
            "--detach",
            "--quiet"
        ])));
        for flags in [
            &["--rollback", "--env-add", "A=1"][..],
            &["--rollback", "--update-delay", "1s"][..],
            &["--rollback", "--force"][..],
        ] {
            assert!(changes_something(&args(flags)), "{flags:?}");
        }
    }

    #[test]
    fn removing_what_is_not_there_is_refused() {
        for (flags, message) in [
            (
                &["--publish-rm", "9999"][..],
                "does not publish port 9999/tcp",
            ),
            (
                &["--publish-rm", "8080/udp"][..],
                "does not publish port 8080/udp",
            ),
            (&["--env-rm", "C"][..], "no environment variable C"),
            (
                &["--constraint-rm", "node.role==manager"][..],
                "no constraint",
            ),
        ] {
            let err = edit(&mut web(), &args(flags)).unwrap_err().to_string();
            assert!(err.contains(message), "{flags:?}: {err}");
        }
    }

    #[test]
    fn networks_and_labels_are_edited_as_docker_does() {
        let mut spec = web();
        spec.networks = vec!["id-a".into()];
        let add = [("b".to_string(), "id-b".to_string())];
        let rm = [("a".to_string(), "id-a".to_string())];
        edit_networks(&mut spec, &add, &rm).unwrap();
        assert_eq!(spec.networks, ["id-b"]);
        let err = edit_networks(&mut spec, &add, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service web is already attached to network b"
        );
        let err = edit_networks(&mut spec, &[], &rm).unwrap_err();
        assert_eq!(err.to_string(), "service web is not attached to network a");

        let mut labels = std::collections::HashMap::from([("tier".to_string(), "1".to_string())]);
        edit_labels(
            &mut labels,
            &["tier=2".to_string(), "canary".to_string()],
            &["gone".to_string()],
        );
        assert_eq!(labels["tier"], "2");
        assert_eq!(labels["canary"], "");
        edit_labels(&mut labels, &[], &["canary".to_string()]);
        assert!(!labels.contains_key("canary"));
        let mut spec = web();
        edit(
            &mut spec,
            &args(&[
                "--label-add",
                "team=db",
                "--container-label-add",
                "log=json",
            ]),
        )
        .unwrap();
        assert_eq!(spec.labels["team"], "db");
        assert_eq!(spec.container.unwrap().labels["log"], "json");
        let mut spec = web();
        edit(&mut spec, &args(&["--endpoint-mode", "dnsrr"])).unwrap();
        assert_eq!(
            spec.endpoint.unwrap().mode(),
            mini_proto::v1::EndpointMode::Dnsrr
        );
    }

    #[test]
    fn a_published_port_can_be_given_with_its_target() {
        assert_eq!(parse_published("8080:80/UDP"), Ok((8080, "udp".into())));
        assert!(parse_published("0").is_err());
        assert!(parse_published("80/sctp").is_err());
    }
}
