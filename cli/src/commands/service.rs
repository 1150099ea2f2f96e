//! `mini service create | ls | ps | inspect | scale | logs | rm` (`update`: see
//! [`super::service_update`]).

use anyhow::Result;
use clap::{Args, Subcommand};
use mini_proto::v1::{
    ContainerSpec, CreateServiceRequest, EndpointMode, EndpointSpec, GetRequest,
    ListNetworksRequest, ListNodesRequest, ListServicesRequest, ListTasksRequest, Mount,
    PortConfig, RestartCondition, ScaleServiceRequest, ServiceLogsRequest, ServiceSpec, Task,
    service_spec::Mode,
};

use mini_proto::v1::control_client::ControlClient;
use tonic::transport::Channel;

use crate::client::connect;
use crate::format::{ListArgs, print_inspect, print_rows};
use crate::views::{Names, ServiceView, short, task_name};

/// Service subcommands.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a service.
    Create(Box<CreateArgs>),
    /// List services.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// List the tasks of one or more services.
    Ps {
        /// Service names or ids.
        #[arg(required = true)]
        services: Vec<String>,
        /// `-q`, `--filter`, `--format`, `--no-trunc`.
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show services in detail (JSON).
    Inspect {
        /// Print the information in a human friendly format.
        #[arg(long)]
        pretty: bool,
        /// Format output using a Go template ('{{.name}}'), or 'json'.
        #[arg(short, long)]
        format: Option<String>,
        /// Service names or ids.
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Change a service; its tasks are replaced by a rolling update.
    Update(Box<super::service_update::UpdateArgs>),
    /// Revert changes to a service's configuration (back to its previous spec).
    Rollback(super::service_update::RollbackArgs),
    /// Scale replicated services: `SERVICE=REPLICAS`...
    Scale {
        /// Exit immediately instead of waiting for the service to converge.
        #[arg(short, long)]
        detach: bool,
        /// `SERVICE=REPLICAS` pairs.
        #[arg(required = true, value_parser = parse_scale)]
        scales: Vec<(String, u64)>,
    },
    /// Show the output of a service's tasks.
    Logs {
        /// Keep printing new output.
        #[arg(short, long)]
        follow: bool,
        /// Only lines since this time: a Unix timestamp (seconds) or a
        /// duration before now (e.g. 10m, 1h30m).
        #[arg(long, value_parser = parse_since)]
        since: Option<i64>,
        /// Number of lines to show from the end of each task's log (`all`).
        #[arg(short = 'n', long, default_value = "all")]
        tail: String,
        /// Show timestamps (RFC 3339, nanoseconds, UTC).
        #[arg(short, long)]
        timestamps: bool,
        /// Service name or id.
        service: String,
    },
    /// Remove services.
    #[command(alias = "remove")]
    Rm {
        /// Service names or ids.
        #[arg(required = true)]
        services: Vec<String>,
    },
}

/// Flags of `service create`; also what a compose file's service is translated into
/// (`stack deploy`), so that both build the spec with [`CreateArgs::spec`].
#[derive(Debug, Default, Args)]
pub struct CreateArgs {
    /// Service name (default: generated).
    #[arg(long)]
    pub name: Option<String>,
    /// Service mode.
    #[arg(long, value_parser = ["replicated", "global", "replicated-job", "global-job"], default_value = "replicated")]
    pub mode: String,
    /// Network to attach to (repeatable): NAME, or name=NAME,alias=ALIAS[,alias=...] (the
    /// aliases resolve to the service on its networks).
    #[arg(long = "network", value_parser = super::service_flags::parse_network)]
    pub networks: Vec<String>,
    /// Environment variable K=V (repeatable).
    #[arg(short = 'e', long = "env", value_parser = parse_env)]
    pub env: Vec<String>,
    /// Placement constraint, e.g. node.hostname==host1 (repeatable).
    #[arg(long = "constraint")]
    pub constraints: Vec<String>,
    /// Placement preference, spread=node.labels.zone (repeatable).
    #[arg(long = "placement-pref")]
    pub placement_prefs: Vec<String>,
    /// Publish a port on every node: PUBLISHED:TARGET[/tcp|udp] (repeatable).
    #[arg(short = 'p', long = "publish", value_parser = parse_publish)]
    pub publish: Vec<PortConfig>,
    /// Endpoint mode.
    #[arg(long, value_parser = ["vip", "dnsrr"], default_value = "vip")]
    pub endpoint_mode: String,
    /// Label K=V (repeatable).
    #[arg(short = 'l', long = "label", value_parser = parse_env)]
    pub labels: Vec<String>,
    /// More DNS names of the service on its networks (set by `stack deploy`: the compose
    /// service's short name and its network aliases; no flag).
    #[arg(skip)]
    pub aliases: Vec<String>,
    /// Container label K=V (repeatable).
    #[arg(long = "container-label", value_parser = parse_env)]
    pub container_labels: Vec<String>,
    /// Mount a volume, bind or tmpfs: type=bind|volume|tmpfs,source=...,target=...[,readonly] (repeatable).
    #[arg(long = "mount", value_parser = super::service_flags::parse_mount)]
    pub mounts: Vec<Mount>,
    /// Flags shared with `service update`.
    #[command(flatten)]
    pub flags: super::service_flags::SpecFlags,
    /// `--secret`, `--config`.
    #[command(flatten)]
    pub secrets: super::service_flags::SecretCreateFlags,
    /// `--detach`, `--quiet`.
    #[command(flatten)]
    pub wait: super::service_flags::WaitFlags,
    /// Image to run (`host`: the node's own filesystem in fresh namespaces).
    pub image: String,
    /// Command and arguments, passed verbatim (also ones starting with `-`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

impl CreateArgs {
    /// The spec of the service these flags create: Docker's defaults, then the flags.
    pub fn spec(&self) -> Result<ServiceSpec> {
        let mode = super::service_flags::service_mode(
            &self.mode,
            self.flags.replicas,
            self.flags.max_concurrent,
        )?;
        // Jobs run to completion: a task that exits 0 is done, one that fails is retried.
        let restart_condition = match mode {
            Mode::ReplicatedJob(_) | Mode::GlobalJob(_) => RestartCondition::OnFailure,
            _ => RestartCondition::Any,
        };
        let endpoint_mode = if self.endpoint_mode == "dnsrr" {
            EndpointMode::Dnsrr
        } else {
            EndpointMode::Vip
        };
        let mut spec = ServiceSpec {
            name: self.name.clone().unwrap_or_default(),
            container: Some(ContainerSpec {
                image: self.image.clone(),
                args: self.command.clone(),
                env: self.env.clone(),
                mounts: self.mounts.clone(),
                labels: pairs(&self.container_labels),
                ..Default::default()
            }),
            mode: Some(mode),
            networks: Vec::new(),
            restart: Some(mini_proto::v1::RestartPolicy {
                condition: restart_condition as i32,
                ..super::service_flags::default_restart_policy()
            }),
            constraints: Vec::new(),
            endpoint: Some(EndpointSpec {
                mode: endpoint_mode as i32,
                ports: self.publish.clone(),
            }),
            labels: pairs(&self.labels),
            update: Some(super::service_flags::default_update_config()),
            rollback: Some(super::service_flags::default_update_config()),
            force_update: 0,
            aliases: {
                let mut aliases = self.aliases.clone();
                for a in super::service_flags::split_networks(&self.networks).1 {
                    if !aliases.contains(&a) {
                        aliases.push(a);
                    }
                }
                aliases
            },
            ..Default::default()
        };
        super::service_flags::Placement {
            constraint_add: self.constraints.clone(),
            pref_add: self.placement_prefs.clone(),
            ..Default::default()
        }
        .apply(&mut spec)?;
        self.flags.apply(&mut spec)?;
        self.secrets.apply(&mut spec)?;
        Ok(spec)
    }
}

/// `K=V` strings (checked by [`parse_env`]) as a map.
fn pairs(kvs: &[String]) -> std::collections::HashMap<String, String> {
    kvs.iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn parse_replicas(s: &str) -> Result<u64, String> {
    match s.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!(
            "{n} is negative: the number of replicas must be 0 or more"
        )),
        Ok(n) => Ok(n as u64),
        Err(_) => Err(format!("{s:?} is not a number of replicas")),
    }
}

pub(super) fn parse_publish(s: &str) -> Result<PortConfig, String> {
    let (ports, protocol) = match s.split_once('/') {
        Some((ports, proto)) => (ports, proto.to_ascii_lowercase()),
        None => (s, "tcp".to_string()),
    };
    if protocol != "tcp" && protocol != "udp" {
        return Err(format!("{s:?}: protocol {protocol:?} is not tcp or udp"));
    }
    let Some((published, target)) = ports.split_once(':') else {
        return Err(format!("{s:?} is not PUBLISHED:TARGET[/tcp|udp]"));
    };
    let port = |p: &str| match p.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n),
        _ => Err(format!("{s:?}: {p:?} is not a port (1-65535)")),
    };
    Ok(PortConfig {
        protocol,
        published_port: port(published)?,
        target_port: port(target)?,
    })
}

fn parse_scale(s: &str) -> Result<(String, u64), String> {
    let Some((name, n)) = s.split_once('=') else {
        return Err(format!("{s:?} is not SERVICE=REPLICAS"));
    };
    if name.is_empty() {
        return Err(format!("{s:?} names no service: expected SERVICE=REPLICAS"));
    }
    Ok((name.to_string(), parse_replicas(n)?))
}

/// `--since`: Unix seconds, or a duration before now → Unix ms.
fn parse_since(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1000.0) as i64);
    }
    let ago = super::service_flags::parse_duration_ms(s)
        .map_err(|_| format!("{s:?} is not a Unix timestamp or a duration (e.g. 10m)"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Ok(now - ago as i64)
}

/// `--tail`: `all` or a number of lines.
fn parse_tail(s: &str) -> Result<Option<u64>, String> {
    if s == "all" {
        return Ok(None);
    }
    s.parse::<u64>()
        .map(Some)
        .map_err(|_| format!("{s:?} is not a number of lines or `all`"))
}

/// Unix nanoseconds as RFC 3339 in UTC with nanoseconds, as `docker logs -t` prints them.
pub(crate) fn rfc3339_ns(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub(super) fn parse_env(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((k, _)) if !k.is_empty() => Ok(s.to_string()),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// `any`, `on-failure` or `none` (clap checked the spelling).
pub(super) fn restart_condition(s: &str) -> RestartCondition {
    match s {
        "on-failure" => RestartCondition::OnFailure,
        "none" => RestartCondition::None,
        _ => RestartCondition::Any,
    }
}

/// Runs a service subcommand against the daemon at `host`.
pub async fn run(host: &str, cmd: ServiceCommand) -> Result<()> {
    let mut client = connect(host).await?;
    match cmd {
        ServiceCommand::Create(args) => create(&mut client, &args).await,
        ServiceCommand::Ls(list) => print_services(&mut client, &list, &|_| true).await,
        ServiceCommand::Ps { services, list } => ps(&mut client, services, &list).await,
        ServiceCommand::Inspect {
            pretty,
            format,
            services,
        } => inspect(&mut client, pretty, format.as_deref(), services).await,
        ServiceCommand::Update(args) => super::service_update::run(&mut client, *args).await,
        ServiceCommand::Rollback(args) => super::service_update::rollback(&mut client, args).await,
        ServiceCommand::Scale { detach, scales } => scale(&mut client, detach, scales).await,
        ServiceCommand::Logs {
            follow,
            since,
            tail,
            timestamps,
            service,
        } => {
            let tail = parse_tail(&tail).map_err(anyhow::Error::msg)?;
            let request = ServiceLogsRequest {
                service,
                follow,
                since_ms: since.unwrap_or(0),
                tail,
            };
            logs(&mut client, request, timestamps).await
        }
        ServiceCommand::Rm { services } => {
            for name_or_id in services {
                client
                    .remove_service(GetRequest {
                        name_or_id: name_or_id.clone(),
                    })
                    .await?;
                println!("{name_or_id}");
            }
            Ok(())
        }
    }
}

/// `service create`: prints the new service's ID, then (unless `--detach`) waits for it to
/// converge, showing Docker's progress.
async fn create(client: &mut ControlClient<Channel>, args: &CreateArgs) -> Result<()> {
    let spec = args.spec()?;
    let registry_auth = args.flags.registry_auth(&spec)?;
    let service = client
        .create_service(CreateServiceRequest {
            spec: Some(spec),
            networks: super::service_flags::split_networks(&args.networks).0,
            registry_auth,
        })
        .await?
        .into_inner();
    println!("{}", service.id);
    if !args.wait.detach {
        crate::progress::service(
            client,
            &service.id,
            crate::progress::Wait::Converge,
            args.wait.quiet,
        )
        .await?;
    }
    Ok(())
}

/// `service ps`: the tasks of every service named.
async fn ps(
    client: &mut ControlClient<Channel>,
    services: Vec<String>,
    list: &ListArgs,
) -> Result<()> {
    let filters = crate::rows::task_filters(&list.filter)?;
    let names = names(client).await?;
    let mut tasks = Vec::new();
    for service in services {
        tasks.extend(
            client
                .list_tasks(ListTasksRequest { service })
                .await?
                .into_inner()
                .tasks,
        );
    }
    print_tasks(client, tasks, &names, &filters, list).await
}

/// `service inspect`: JSON (or `--format`), or Docker's `--pretty` text.
async fn inspect(
    client: &mut ControlClient<Channel>,
    pretty: bool,
    format: Option<&str>,
    services: Vec<String>,
) -> Result<()> {
    let names = names(client).await?;
    let mut views = Vec::new();
    let mut text = Vec::new();
    for name_or_id in services {
        let s = client
            .get_service(GetRequest { name_or_id })
            .await?
            .into_inner();
        text.push(crate::views::pretty_service(&s, &names));
        views.push(ServiceView::new(&s, None, &names));
    }
    if pretty && format.is_none() {
        println!("{}", text.join("\n\n"));
        Ok(())
    } else {
        print_inspect(&views, format)
    }
}

/// `service scale`: as Docker, every service is scaled, then (unless `--detach`) each is
/// waited for in turn.
async fn scale(
    client: &mut ControlClient<Channel>,
    detach: bool,
    scales: Vec<(String, u64)>,
) -> Result<()> {
    let mut scaled = Vec::new();
    for (name_or_id, replicas) in scales {
        let service = client
            .scale_service(ScaleServiceRequest {
                name_or_id: name_or_id.clone(),
                replicas,
            })
            .await?
            .into_inner();
        println!("{name_or_id} scaled to {replicas}");
        scaled.push(service.id);
    }
    if !detach {
        for id in scaled {
            crate::progress::service(client, &id, crate::progress::Wait::Converge, false).await?;
        }
    }
    Ok(())
}

/// `service logs`: each line prefixed with its task (`name.slot.id@node`), stderr lines on
/// stderr, with `--timestamps` the line's time first.
async fn logs(
    client: &mut ControlClient<Channel>,
    request: ServiceLogsRequest,
    timestamps: bool,
) -> Result<()> {
    let tasks = client
        .list_tasks(ListTasksRequest {
            service: request.service.clone(),
        })
        .await?
        .into_inner()
        .tasks;
    let names = names(client).await?;
    let label: std::collections::HashMap<String, String> = tasks
        .iter()
        .map(|t| {
            let node = names.nodes.get(&t.node_id).cloned().unwrap_or_default();
            (
                t.id.clone(),
                format!("{}.{}@{}", task_name(t), short(&t.id), node),
            )
        })
        .collect();
    let mut stream = client.service_logs(request).await?.into_inner();
    while let Some(line) = stream.message().await? {
        let who = label
            .get(&line.task_id)
            .cloned()
            .unwrap_or_else(|| line.task_id.clone());
        let stamp = if timestamps {
            format!("{} ", rfc3339_ns(line.timestamp_ns))
        } else {
            String::new()
        };
        if line.stream == "stderr" {
            eprintln!("{who}    | {stamp}{}", line.line);
        } else {
            println!("{who}    | {stamp}{}", line.line);
        }
    }
    Ok(())
}

/// `service ls`'s output for the services `keep` accepts (`stack services`: a stack's).
pub(super) async fn print_services(
    client: &mut ControlClient<Channel>,
    list: &ListArgs,
    keep: &dyn Fn(&mini_proto::v1::Service) -> bool,
) -> Result<()> {
    let filters = crate::rows::service_filters(&list.filter)?;
    let mut services = client
        .list_services(ListServicesRequest {})
        .await?
        .into_inner()
        .services;
    services.retain(|s| s.service.as_ref().is_some_and(keep));
    print_rows(
        &crate::rows::service_listing(&services, &filters, list.no_trunc),
        list,
    )
}

/// Names of networks and nodes, for the views.
pub(super) async fn names(client: &mut ControlClient<Channel>) -> Result<Names> {
    let networks = client
        .list_networks(ListNetworksRequest {})
        .await?
        .into_inner()
        .networks;
    let nodes = client
        .list_nodes(ListNodesRequest {})
        .await?
        .into_inner()
        .nodes;
    Ok(Names::new(&networks, &nodes))
}

/// Prints tasks as `service ps` (and `node ps`, `stack ps`) does: filtered, in Docker's
/// order, with Docker's columns.
pub(super) async fn print_tasks(
    client: &mut ControlClient<Channel>,
    mut tasks: Vec<Task>,
    names: &Names,
    filters: &crate::format::Filters,
    list: &ListArgs,
) -> Result<()> {
    let local = if filters.get("node").iter().any(|n| n == "self") {
        client
            .info(mini_proto::v1::InfoRequest {})
            .await?
            .into_inner()
            .node_id
    } else {
        String::new()
    };
    tasks.retain(|t| crate::rows::task_matches(filters, t, names, &local));
    crate::rows::order_tasks(&mut tasks);
    let listing =
        crate::rows::task_listing(&tasks, names, mini_manager::ids::now_ms(), list.no_trunc);
    print_rows(&listing, list)
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_timestamps_and_flags_read_as_docker_writes_them() {
        assert_eq!(super::rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            super::rfc3339_ns(1_796_338_934_365_000_123),
            "2026-12-03T23:02:14.365000123Z"
        );
        assert_eq!(super::parse_tail("all"), Ok(None));
        assert_eq!(super::parse_tail("5"), Ok(Some(5)));
        assert!(super::parse_tail("x").is_err());
        assert_eq!(super::parse_since("1700000000"), Ok(1_700_000_000_000));
        let ago = super::parse_since("10m").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((now - ago - 600_000).abs() < 5_000);
    }

    use super::*;

    #[test]
    fn replicas_must_not_be_negative() {
        assert_eq!(parse_replicas("3"), Ok(3));
        assert!(parse_replicas("-1").unwrap_err().contains("negative"));
        assert!(parse_scale("web").unwrap_err().contains("SERVICE=REPLICAS"));
        assert_eq!(parse_scale("web=5"), Ok(("web".into(), 5)));
    }
}
