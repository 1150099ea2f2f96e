//! `mini service update`: edits a service's spec as Docker's flags say, sends it with the
//! version it was read at, and (unless `--detach`) waits until the rolling update converged.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use mini_proto::v1::{
    EndpointSpec, GetRequest, ListTasksRequest, PortConfig, ServiceSpec, TaskState,
    UpdateServiceRequest, control_client::ControlClient, service_spec::Mode,
};
use tonic::transport::Channel;

use super::service::{parse_env, parse_publish};

/// How long `service update` waits for the rollout before it gives up (exit 1).
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

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
    /// Image to run from now on.
    #[arg(long)]
    image: Option<String>,
    /// Command and arguments after the image (words split as a shell would).
    #[arg(long)]
    args: Option<String>,
    /// Flags shared with `service create`.
    #[command(flatten)]
    flags: super::service_flags::SpecFlags,
    /// Replace every task even if nothing else changed.
    #[arg(long)]
    force: bool,
    /// Return once the update is stored, without waiting for the tasks to be replaced.
    #[arg(short, long)]
    detach: bool,
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

/// The variable name of a `K=V` environment entry.
fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Applies the flags to `spec`; refuses removals of what is not there (nothing is sent then).
fn edit(spec: &mut ServiceSpec, args: &UpdateArgs) -> Result<()> {
    args.flags.apply(spec)?;
    let container = spec.container.get_or_insert_with(Default::default);
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
    let service = client
        .get_service(GetRequest {
            name_or_id: args.service.clone(),
        })
        .await?
        .into_inner();
    let mut spec = service.spec.clone().unwrap_or_default();
    edit(&mut spec, &args)?;
    let registry_auth = args.flags.registry_auth(&spec)?;
    let updated = client
        .update_service(UpdateServiceRequest {
            name_or_id: service.id.clone(),
            version: service.meta.map_or(0, |m| m.version),
            spec: Some(spec.clone()),
            registry_auth,
        })
        .await?
        .into_inner();
    println!("{}", spec.name);
    if args.detach {
        return Ok(());
    }
    if mini_manager::orchestrator::is_job(&spec) {
        return wait_job(client, &updated).await;
    }
    wait_converged(client, &updated.id, &spec).await
}

/// Waits until the job's new iteration completed: `total_completions` tasks (a replicated
/// job) or the task of every node it runs on (a global job) COMPLETE.
async fn wait_job(
    client: &mut ControlClient<Channel>,
    service: &mini_proto::v1::Service,
) -> Result<()> {
    let iteration = mini_manager::orchestrator::job_iteration(service);
    let spec = service.spec.clone().unwrap_or_default();
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let mut last = String::new();
    loop {
        let tasks = client
            .list_tasks(ListTasksRequest {
                service: service.id.clone(),
            })
            .await?
            .into_inner()
            .tasks;
        let of_iteration: Vec<_> = tasks
            .iter()
            .filter(|t| t.job_iteration == iteration)
            .collect();
        let completed = of_iteration
            .iter()
            .filter(|t| mini_manager::orchestrator::observed_state(t) == TaskState::Complete)
            .count();
        let want = match spec.mode {
            Some(Mode::ReplicatedJob(job)) => {
                mini_manager::orchestrator::job_counts(&job).1 as usize
            }
            _ => of_iteration
                .iter()
                .filter(|t| {
                    mini_manager::orchestrator::is_active(t)
                        || mini_manager::orchestrator::observed_state(t) == TaskState::Complete
                })
                .count()
                .max(1),
        };
        let progress = format!("{completed}/{want} tasks completed");
        if progress != last {
            println!("progress: {progress}");
            last = progress.clone();
        }
        if completed >= want {
            println!("verify: job complete");
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(anyhow::anyhow!(
                "the job did not complete within {} s ({progress}); see `mini service ps {}`",
                CONVERGE_TIMEOUT.as_secs(),
                spec.name
            ))
            .context("service update stored, job incomplete");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every task meant to run is made from `spec` and RUNNING, and there are as
/// many as the service wants (replicated), printing progress when it changes.
async fn wait_converged(
    client: &mut ControlClient<Channel>,
    service_id: &str,
    spec: &ServiceSpec,
) -> Result<()> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let mut last = String::new();
    loop {
        let tasks = client
            .list_tasks(ListTasksRequest {
                service: service_id.to_string(),
            })
            .await?
            .into_inner()
            .tasks;
        let meant: Vec<_> = tasks
            .iter()
            .filter(|t| t.desired_state() <= TaskState::Running)
            .collect();
        let done = meant
            .iter()
            .filter(|t| {
                !mini_manager::orchestrator::is_outdated(t, spec)
                    && mini_manager::orchestrator::observed_state(t) == TaskState::Running
            })
            .count();
        let want = match spec.mode {
            Some(Mode::Replicas(n)) => n as usize,
            _ => meant.len(),
        };
        let progress = format!("{done}/{want} tasks updated and running");
        if progress != last {
            println!("progress: {progress}");
            last = progress.clone();
        }
        if done == want && meant.len() == want {
            println!("verify: service converged");
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(anyhow::anyhow!(
                "the update did not converge within {} s ({progress}); see `mini service ps {}`",
                CONVERGE_TIMEOUT.as_secs(),
                spec.name
            ))
            .context("service update stored, rollout incomplete");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use mini_proto::v1::ContainerSpec;

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
    fn a_published_port_can_be_given_with_its_target() {
        assert_eq!(parse_published("8080:80/UDP"), Ok((8080, "udp".into())));
        assert!(parse_published("0").is_err());
        assert!(parse_published("80/sctp").is_err());
    }
}
