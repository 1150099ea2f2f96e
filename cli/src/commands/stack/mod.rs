//! `mini stack deploy | ls | services | ps | rm`: services, networks (and, once they exist,
//! secrets and configs) described by compose files, named `<stack>_<name>` and labelled
//! `com.docker.stack.namespace=<stack>`, as `docker stack` does.
//!
//! - [`compose`]: the compose file format as typed structs.
//! - [`load`]: reading, interpolating and merging compose files.
//! - [`translate`]: compose services → the specs `service create` builds.
//! - here: the commands, talking to the daemon over the existing control API (stack
//!   membership is the namespace label, filtered client-side).

pub mod compose;
pub mod load;
pub mod translate;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use mini_proto::v1::{
    ConfigSpec, CreateConfigRequest, CreateNetworkRequest, CreateSecretRequest,
    CreateServiceRequest, GetRequest, ListConfigsRequest, ListNetworksRequest, ListSecretsRequest,
    ListServicesRequest, ListTasksRequest, Network, SecretSpec, Service, ServiceSpec,
    UpdateServiceRequest, control_client::ControlClient, service_spec::Mode,
};
use tonic::transport::Channel;

use crate::client::connect;
use crate::format::{Filters, ListArgs, print_rows};
use translate::{NAMESPACE_LABEL, Stack, StackNetwork, StackObject, StackService};

/// Stack subcommands.
#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Deploy a new stack or update an existing stack.
    #[command(alias = "up")]
    Deploy {
        /// Path to a compose file, or "-" to read from stdin (repeatable: later files
        /// override earlier ones).
        #[arg(short = 'c', long = "compose-file", required = true)]
        compose_file: Vec<String>,
        /// Prune services that are no longer referenced.
        #[arg(long)]
        prune: bool,
        /// Send registry authentication details (from `mini login`) to swarm agents.
        #[arg(long)]
        with_registry_auth: bool,
        /// Stack name.
        stack: String,
    },
    /// List stacks.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// List the services in the stack.
    Services {
        /// `-q`, `--filter`, `--format`, `--no-trunc`.
        #[command(flatten)]
        list: ListArgs,
        /// Stack name.
        stack: String,
    },
    /// List the tasks in the stack.
    Ps {
        /// `-q`, `--filter`, `--format`, `--no-trunc`.
        #[command(flatten)]
        list: ListArgs,
        /// Stack name.
        stack: String,
    },
    /// Remove one or more stacks.
    #[command(aliases = ["remove", "down"])]
    Rm {
        /// Stack names.
        #[arg(required = true)]
        stacks: Vec<String>,
    },
}

/// How long `stack rm` retries removing a network whose tasks are still shutting down.
const NETWORK_RM_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a stack subcommand against the daemon at `host`.
pub async fn run(host: &str, cmd: StackCommand) -> Result<()> {
    match cmd {
        StackCommand::Deploy {
            compose_file,
            prune,
            with_registry_auth,
            stack,
        } => {
            let env = |k: &str| std::env::var(k).ok();
            let sources = compose_file
                .iter()
                .map(|p| load::Source::read(p))
                .collect::<Result<Vec<_>, String>>()
                .map_err(|e| anyhow!(e))?;
            let loaded = load::load(&sources, &env).map_err(|e| anyhow!(e))?;
            let plan = translate::translate(&loaded.file, &stack, &loaded.dir, &env)
                .map_err(|e| anyhow!(e))?;
            for w in loaded.warnings.iter().chain(&plan.warnings) {
                eprintln!("WARNING: {w}");
            }
            let mut client = connect(host).await?;
            deploy(&mut client, &plan, prune, with_registry_auth).await
        }
        StackCommand::Ls(list) => {
            // `docker stack ls` takes no filter.
            Filters::parse(&list.filter, &[])?;
            let mut client = connect(host).await?;
            let mut stacks: BTreeMap<String, usize> = BTreeMap::new();
            for s in services(&mut client).await? {
                if let Some(name) = stack_of_service(&s) {
                    *stacks.entry(name.to_string()).or_default() += 1;
                }
            }
            print_rows(&crate::rows::stack_listing(&stacks), &list)
        }
        StackCommand::Services { list, stack } => {
            let mut client = connect(host).await?;
            let members = of_stack(services(&mut client).await?, &stack);
            if members.is_empty() {
                bail!("Nothing found in stack: {stack}");
            }
            super::service::print_services(&mut client, &list, &|s| {
                stack_of_service(s) == Some(stack.as_str())
            })
            .await
        }
        StackCommand::Ps { list, stack } => {
            let filters = crate::rows::task_filters(&list.filter)?;
            let mut client = connect(host).await?;
            let members = of_stack(services(&mut client).await?, &stack);
            if members.is_empty() {
                bail!("Nothing found in stack: {stack}");
            }
            let names = super::service::names(&mut client).await?;
            let mut tasks = Vec::new();
            for s in &members {
                tasks.extend(
                    client
                        .list_tasks(ListTasksRequest {
                            service: s.id.clone(),
                        })
                        .await?
                        .into_inner()
                        .tasks,
                );
            }
            super::service::print_tasks(&mut client, tasks, &names, &filters, &list).await
        }
        StackCommand::Rm { stacks } => {
            let mut client = connect(host).await?;
            let mut failed = false;
            for stack in stacks {
                if let Err(err) = remove(&mut client, &stack).await {
                    eprintln!("error: {}", super::describe(&err));
                    failed = true;
                }
            }
            if failed {
                bail!("not every stack was removed completely (see above)");
            }
            Ok(())
        }
    }
}

/// The stack a service belongs to (its namespace label).
fn stack_of_service(s: &Service) -> Option<&str> {
    s.spec
        .as_ref()
        .and_then(|spec| spec.labels.get(NAMESPACE_LABEL))
        .map(String::as_str)
}

/// The stack a network belongs to (its namespace label).
fn stack_of_network(n: &Network) -> Option<&str> {
    n.spec
        .as_ref()
        .and_then(|spec| spec.labels.get(NAMESPACE_LABEL))
        .map(String::as_str)
}

/// Every service.
async fn services(client: &mut ControlClient<Channel>) -> Result<Vec<Service>> {
    Ok(client
        .list_services(ListServicesRequest {})
        .await?
        .into_inner()
        .services
        .into_iter()
        .filter_map(|s| s.service)
        .collect())
}

/// The services of `stack`, by name.
fn of_stack(services: Vec<Service>, stack: &str) -> Vec<Service> {
    let mut members: Vec<Service> = services
        .into_iter()
        .filter(|s| stack_of_service(s) == Some(stack))
        .collect();
    members.sort_by(|a, b| spec_name(a).cmp(spec_name(b)));
    members
}

fn spec_name(s: &Service) -> &str {
    s.spec.as_ref().map_or("", |x| x.name.as_str())
}

/// What a deploy does to one service.
enum Step {
    /// Create it.
    Create,
    /// Replace its spec (a rolling update); the service's id and version.
    Update(String, u64, Box<ServiceSpec>),
    /// Nothing changed.
    Keep,
}

/// Creates what is missing, updates the services whose spec changed, and with `prune`
/// removes the stack's services no longer in the file. Everything that can be checked is
/// checked before the first change; a failure later says what was done before it.
async fn deploy(
    client: &mut ControlClient<Channel>,
    plan: &Stack,
    prune: bool,
    with_registry_auth: bool,
) -> Result<()> {
    let changes = changes(client, plan, prune).await?;
    let mut done: Vec<String> = Vec::new();
    let result = apply(client, plan, changes, with_registry_auth, &mut done).await;
    result.map_err(|err| {
        if done.is_empty() {
            err.context(format!("stack {}: nothing was changed", plan.name))
        } else {
            err.context(format!(
                "stack {} is half deployed; done before the failure: {}",
                plan.name,
                done.join(", ")
            ))
        }
    })
}

/// What a deploy changes, decided (and checked) before the first change.
struct Changes<'a> {
    secrets: Vec<&'a StackObject>,
    configs: Vec<&'a StackObject>,
    networks: Vec<&'a StackNetwork>,
    /// One step per service of the file, in its order.
    steps: Vec<Step>,
    /// The stack's services that are no longer in the file (with `prune`).
    obsolete: Vec<Service>,
}

/// Reads the cluster and decides what `plan` changes in it, refusing what Docker refuses: a
/// missing external network, secret or config, a service whose networks or mode changed.
async fn changes<'a>(
    client: &mut ControlClient<Channel>,
    plan: &'a Stack,
    prune: bool,
) -> Result<Changes<'a>> {
    let networks = client
        .list_networks(ListNetworksRequest {})
        .await?
        .into_inner()
        .networks;
    let ingress: Vec<String> = networks
        .iter()
        .filter(|n| n.spec.as_ref().is_some_and(|s| s.ingress))
        .map(|n| n.id.clone())
        .collect();
    let by_name: BTreeMap<&str, &Network> = networks
        .iter()
        .filter_map(|n| Some((n.spec.as_ref()?.name.as_str(), n)))
        .collect();
    let mut networks_to_create = Vec::new();
    for n in &plan.networks {
        match by_name.get(n.spec.name.as_str()) {
            Some(_) => {}
            None if n.external => bail!(
                "network {:?} is declared as external, but could not be found. You need to create a swarm-scoped network before the stack is deployed",
                n.spec.name
            ),
            None => networks_to_create.push(n),
        }
    }

    // Secrets and configs: the external ones must exist; the others are created when
    // missing (an existing one is kept: their values cannot change, as in Docker).
    let secrets: Vec<String> = client
        .list_secrets(ListSecretsRequest {})
        .await?
        .into_inner()
        .secrets
        .into_iter()
        .filter_map(|s| Some(s.spec?.name))
        .collect();
    let configs: Vec<String> = client
        .list_configs(ListConfigsRequest {})
        .await?
        .into_inner()
        .configs
        .into_iter()
        .filter_map(|c| Some(c.spec?.name))
        .collect();
    let mut secrets_to_create = Vec::new();
    let mut configs_to_create = Vec::new();
    for (kind, objects, existing, to_create) in [
        ("secret", &plan.secrets, &secrets, &mut secrets_to_create),
        ("config", &plan.configs, &configs, &mut configs_to_create),
    ] {
        for o in objects {
            match (existing.contains(&o.name), o.external) {
                (true, _) => {}
                (false, true) => bail!("{kind} not found: {} (declared as external)", o.name),
                (false, false) => to_create.push(o),
            }
        }
    }

    let existing = services(client).await?;
    let steps = plan
        .services
        .iter()
        .map(|s| service_step(s, &existing, &ingress, &by_name))
        .collect::<Result<Vec<Step>>>()?;
    let obsolete: Vec<Service> = if prune {
        existing
            .into_iter()
            .filter(|e| stack_of_service(e) == Some(plan.name.as_str()))
            .filter(|e| !plan.services.iter().any(|s| s.spec.name == spec_name(e)))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Changes {
        secrets: secrets_to_create,
        configs: configs_to_create,
        networks: networks_to_create,
        steps,
        obsolete,
    })
}

/// What a deploy does to service `s` of the file, given the services that exist.
fn service_step(
    s: &StackService,
    existing: &[Service],
    ingress: &[String],
    by_name: &BTreeMap<&str, &Network>,
) -> Result<Step> {
    let Some(old) = existing.iter().find(|e| spec_name(e) == s.spec.name) else {
        return Ok(Step::Create);
    };
    let old_spec = old.spec.clone().unwrap_or_default();
    let user_networks: Vec<&str> = old_spec
        .networks
        .iter()
        .filter(|id| !ingress.contains(id))
        .map(String::as_str)
        .collect();
    let wanted: Vec<&str> = s
        .networks
        .iter()
        .map(|name| by_name.get(name.as_str()).map_or("", |n| n.id.as_str()))
        .collect();
    if user_networks != wanted {
        bail!(
            "service {} is attached to other networks than the compose file gives it; changing a service's networks is not supported: remove the service (or the stack) and deploy again",
            s.spec.name
        );
    }
    let global = |spec: &ServiceSpec| matches!(spec.mode, Some(Mode::Global(_)));
    if global(&old_spec) != global(&s.spec) {
        bail!(
            "service {} cannot change between replicated and global mode: remove the service (or the stack) and deploy again",
            s.spec.name
        );
    }
    let mut candidate = s.spec.clone();
    candidate.networks = old_spec.networks.clone();
    candidate.force_update = old_spec.force_update;
    same_reference_ids(&mut candidate, &old_spec);
    Ok(if candidate == old_spec {
        Step::Keep
    } else {
        Step::Update(
            old.id.clone(),
            old.meta.as_ref().map_or(0, |m| m.version),
            Box::new(candidate),
        )
    })
}

/// Makes `changes`, in Docker's order: secrets, configs, networks, services, then the removal
/// of obsolete services. Each change done is added to `done`.
async fn apply(
    client: &mut ControlClient<Channel>,
    plan: &Stack,
    changes: Changes<'_>,
    with_registry_auth: bool,
    done: &mut Vec<String>,
) -> Result<()> {
    for o in changes.secrets {
        println!("Creating secret {}", o.name);
        client
            .create_secret(CreateSecretRequest {
                spec: Some(SecretSpec {
                    name: o.name.clone(),
                    labels: o.labels.clone().into_iter().collect(),
                    data: o.data.clone(),
                }),
            })
            .await
            .map_err(|e| anyhow!("cannot create secret {}: {}", o.name, e.message()))?;
        done.push(format!("created secret {}", o.name));
    }
    for o in changes.configs {
        println!("Creating config {}", o.name);
        client
            .create_config(CreateConfigRequest {
                spec: Some(ConfigSpec {
                    name: o.name.clone(),
                    labels: o.labels.clone().into_iter().collect(),
                    data: o.data.clone(),
                }),
            })
            .await
            .map_err(|e| anyhow!("cannot create config {}: {}", o.name, e.message()))?;
        done.push(format!("created config {}", o.name));
    }
    for n in changes.networks {
        println!("Creating network {}", n.spec.name);
        client
            .create_network(CreateNetworkRequest {
                spec: Some(n.spec.clone()),
            })
            .await
            .map_err(|e| anyhow!("cannot create network {}: {}", n.spec.name, e.message()))?;
        done.push(format!("created network {}", n.spec.name));
    }
    let auth = crate::commands::service_flags::SpecFlags {
        with_registry_auth,
        ..Default::default()
    };
    for (s, step) in plan.services.iter().zip(changes.steps) {
        let registry_auth = auth.registry_auth(&s.spec)?;
        match step {
            Step::Keep => {}
            Step::Create => {
                println!("Creating service {}", s.spec.name);
                client
                    .create_service(CreateServiceRequest {
                        spec: Some(s.spec.clone()),
                        networks: s.networks.clone(),
                        registry_auth,
                    })
                    .await
                    .map_err(|e| {
                        anyhow!("cannot create service {}: {}", s.spec.name, e.message())
                    })?;
                done.push(format!("created service {}", s.spec.name));
            }
            Step::Update(id, version, spec) => {
                println!("Updating service {} (id: {id})", s.spec.name);
                client
                    .update_service(UpdateServiceRequest {
                        name_or_id: id.clone(),
                        version,
                        spec: Some(*spec),
                        registry_auth,
                        rollback: false,
                    })
                    .await
                    .map_err(|e| {
                        anyhow!("cannot update service {}: {}", s.spec.name, e.message())
                    })?;
                done.push(format!("updated service {}", s.spec.name));
            }
        }
    }
    for old in &changes.obsolete {
        let name = spec_name(old);
        println!("Removing service {name}");
        client
            .remove_service(GetRequest {
                name_or_id: old.id.clone(),
            })
            .await
            .map_err(|e| anyhow!("cannot remove service {name}: {}", e.message()))?;
        done.push(format!("removed service {name}"));
    }
    Ok(())
}

/// Gives `candidate`'s secret and config references the ids the manager resolved in `old`
/// (the file names them only), so that an unchanged file compares equal.
fn same_reference_ids(candidate: &mut ServiceSpec, old: &ServiceSpec) {
    let (Some(c), Some(o)) = (candidate.container.as_mut(), old.container.as_ref()) else {
        return;
    };
    for r in &mut c.secrets {
        if let Some(x) = o.secrets.iter().find(|x| x.secret_name == r.secret_name) {
            r.secret_id = x.secret_id.clone();
        }
    }
    for r in &mut c.configs {
        if let Some(x) = o.configs.iter().find(|x| x.config_name == r.config_name) {
            r.config_id = x.config_id.clone();
        }
    }
}

/// Removes the services, then the secrets, configs and networks, labelled as `stack`'s.
async fn remove(client: &mut ControlClient<Channel>, stack: &str) -> Result<()> {
    let members = of_stack(services(client).await?, stack);
    let networks: Vec<Network> = client
        .list_networks(ListNetworksRequest {})
        .await?
        .into_inner()
        .networks
        .into_iter()
        .filter(|n| stack_of_network(n) == Some(stack))
        .collect();
    let secrets: Vec<(String, String)> = client
        .list_secrets(ListSecretsRequest {})
        .await?
        .into_inner()
        .secrets
        .into_iter()
        .filter_map(|s| {
            let spec = s.spec?;
            (spec.labels.get(NAMESPACE_LABEL).map(String::as_str) == Some(stack))
                .then_some((s.id, spec.name))
        })
        .collect();
    let configs: Vec<(String, String)> = client
        .list_configs(ListConfigsRequest {})
        .await?
        .into_inner()
        .configs
        .into_iter()
        .filter_map(|c| {
            let spec = c.spec?;
            (spec.labels.get(NAMESPACE_LABEL).map(String::as_str) == Some(stack))
                .then_some((c.id, spec.name))
        })
        .collect();
    if members.is_empty() && networks.is_empty() && secrets.is_empty() && configs.is_empty() {
        bail!("Nothing found in stack: {stack}");
    }
    let mut errors = Vec::new();
    for s in &members {
        println!("Removing service {}", spec_name(s));
        if let Err(e) = client
            .remove_service(GetRequest {
                name_or_id: s.id.clone(),
            })
            .await
        {
            errors.push(format!(
                "cannot remove service {}: {}",
                spec_name(s),
                e.message()
            ));
        }
    }
    for (id, name) in &secrets {
        println!("Removing secret {name}");
        if let Err(e) = client
            .remove_secret(GetRequest {
                name_or_id: id.clone(),
            })
            .await
        {
            errors.push(format!("cannot remove secret {name}: {}", e.message()));
        }
    }
    for (id, name) in &configs {
        println!("Removing config {name}");
        if let Err(e) = client
            .remove_config(GetRequest {
                name_or_id: id.clone(),
            })
            .await
        {
            errors.push(format!("cannot remove config {name}: {}", e.message()));
        }
    }
    for n in &networks {
        let name = n.spec.as_ref().map_or("", |s| s.name.as_str());
        println!("Removing network {name}");
        // The tasks of the removed services are shutting down: their addresses are freed
        // when they are gone; retry until then.
        let deadline = Instant::now() + NETWORK_RM_TIMEOUT;
        loop {
            match client
                .remove_network(GetRequest {
                    name_or_id: n.id.clone(),
                })
                .await
            {
                Ok(_) => break,
                Err(e) if e.message().contains("shutting down") => {
                    if Instant::now() > deadline {
                        errors.push(format!("cannot remove network {name}: {}", e.message()));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => {
                    errors.push(format!("cannot remove network {name}: {}", e.message()));
                    break;
                }
            }
        }
    }
    if !errors.is_empty() {
        bail!("stack {stack}: {}", errors.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
