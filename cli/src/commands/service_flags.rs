//! The service flags `service create` and `service update` share (declared
//! once, flattened into both), and how they edit a [`ServiceSpec`].
//! Flags whose names differ between the two, as in Docker (`--env` vs
//! `--env-add`/`--env-rm`, `--mount` vs `--mount-add`/`--mount-rm`...),
//! stay with their command.

use anyhow::{Context, Result, bail};
use clap::Args;
use mini_proto::v1::{
    ConfigReference, FileTarget, GlobalJob, HealthConfig, ImageRegistryAuth, Mount,
    PlacementPreference, ReplicatedJob, Resources, RestartCondition, RestartPolicy,
    SecretReference, ServiceSpec, UpdateConfig, UpdateFailureAction, UpdateOrder,
    service_spec::Mode,
};

use mini_worker::image::Reference;

use super::credentials::Credentials;
use super::service::{parse_replicas, restart_condition};

/// Flags of both `service create` and `service update`. Unset flags keep
/// the spec's value (for `create`: Docker's defaults).
#[derive(Debug, Default, Args)]
pub struct SpecFlags {
    /// Number of tasks (replicated services).
    #[arg(long, allow_negative_numbers = true, value_parser = parse_replicas)]
    pub replicas: Option<u64>,
    /// When to restart tasks that end [default: any].
    #[arg(long, value_parser = ["any", "on-failure", "none"])]
    pub restart_condition: Option<String>,
    // ---- Restart policy, update and rollback policies (rollout) ----
    /// Delay between restart attempts (ns|us|ms|s|m|h) [default: 1s].
    #[arg(long, value_parser = parse_duration_ms)]
    pub restart_delay: Option<u64>,
    /// Maximum number of restarts before giving up (0: no limit) [default: 0].
    #[arg(long)]
    pub restart_max_attempts: Option<u64>,
    /// Window used to evaluate the restart policy (ns|us|ms|s|m|h; 0: every restart) [default: 0s].
    #[arg(long, value_parser = parse_duration_ms)]
    pub restart_window: Option<u64>,
    /// Maximum number of tasks updated simultaneously (0 to update all at once) [default: 1].
    #[arg(long)]
    pub update_parallelism: Option<u64>,
    /// Delay between updates (ns|us|ms|s|m|h) [default: 0s].
    #[arg(long, value_parser = parse_duration_ms)]
    pub update_delay: Option<u64>,
    /// Action on update failure ("pause", "continue", "rollback") [default: pause].
    #[arg(long, value_parser = ["pause", "continue", "rollback"])]
    pub update_failure_action: Option<String>,
    /// Duration after each task update to monitor for failure (ns|us|ms|s|m|h) [default: 5s].
    #[arg(long, value_parser = parse_duration_ms)]
    pub update_monitor: Option<u64>,
    /// Failure rate to tolerate during an update (0 to 1) [default: 0].
    #[arg(long, value_parser = parse_failure_ratio)]
    pub update_max_failure_ratio: Option<f32>,
    /// Update order ("start-first", "stop-first") [default: stop-first].
    #[arg(long, value_parser = ["start-first", "stop-first"])]
    pub update_order: Option<String>,
    /// Maximum number of tasks rolled back simultaneously (0 to roll back all at once) [default: 1].
    #[arg(long)]
    pub rollback_parallelism: Option<u64>,
    /// Delay between task rollbacks (ns|us|ms|s|m|h) [default: 0s].
    #[arg(long, value_parser = parse_duration_ms)]
    pub rollback_delay: Option<u64>,
    /// Action on rollback failure ("pause", "continue") [default: pause].
    #[arg(long, value_parser = ["pause", "continue"])]
    pub rollback_failure_action: Option<String>,
    /// Duration after each task rollback to monitor for failure (ns|us|ms|s|m|h) [default: 5s].
    #[arg(long, value_parser = parse_duration_ms)]
    pub rollback_monitor: Option<u64>,
    /// Failure rate to tolerate during a rollback (0 to 1) [default: 0].
    #[arg(long, value_parser = parse_failure_ratio)]
    pub rollback_max_failure_ratio: Option<f32>,
    /// Rollback order ("start-first", "stop-first") [default: stop-first].
    #[arg(long, value_parser = ["start-first", "stop-first"])]
    pub rollback_order: Option<String>,
    // ---- end of the rollout block ----
    /// Overwrite the image's ENTRYPOINT (words split as a shell would, without expansions).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Container hostname [default: the container id's first 12 hex digits].
    #[arg(long)]
    pub hostname: Option<String>,
    /// Mount the container's root filesystem as read only.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub read_only: Option<bool>,
    /// Use an init inside each container to forward signals and reap processes.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub init: Option<bool>,
    /// Limit CPUs (e.g. 0.5).
    #[arg(long, value_parser = parse_cpus)]
    pub limit_cpu: Option<i64>,
    /// Limit memory (e.g. 64M; at least 6M).
    #[arg(long, value_parser = parse_bytes)]
    pub limit_memory: Option<i64>,
    /// Limit the number of processes (0: no limit).
    #[arg(long)]
    pub limit_pids: Option<i64>,
    /// Reserve CPUs (e.g. 0.5): the task goes only to a node with that much unreserved.
    #[arg(long, value_parser = parse_cpus)]
    pub reserve_cpu: Option<i64>,
    /// Reserve memory (e.g. 64MiB, 64m): the task goes only to a node with that much unreserved.
    #[arg(long, value_parser = parse_bytes)]
    pub reserve_memory: Option<i64>,
    /// Signal to stop the container (e.g. SIGQUIT).
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Time to wait before force killing a container (e.g. 10s, 1m30s) [default: 10s].
    #[arg(long, value_parser = parse_duration_ms)]
    pub stop_grace_period: Option<u64>,
    /// Log driver options: max-size=10m, max-file=3 (repeatable).
    #[arg(long = "log-opt", value_parser = parse_log_opt)]
    pub log_opt: Vec<(String, String)>,
    /// Command to run to check health (run with /bin/sh -c inside the container).
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) [default: 30s].
    #[arg(long, allow_hyphen_values = true, value_parser = parse_positive_duration_ns)]
    pub health_interval: Option<u64>,
    /// Maximum time to allow one check to run (ms|s|m|h) [default: 30s].
    #[arg(long, allow_hyphen_values = true, value_parser = parse_positive_duration_ns)]
    pub health_timeout: Option<u64>,
    /// Consecutive failures needed to report unhealthy [default: 3].
    #[arg(long, allow_negative_numbers = true)]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before counting retries towards
    /// unstable (ms|s|m|h) [default: 0s].
    #[arg(long, allow_hyphen_values = true, value_parser = parse_positive_duration_ns)]
    pub health_start_period: Option<u64>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Send registry authentication details (from `mini login`) to swarm agents.
    #[arg(long)]
    pub with_registry_auth: bool,

    // --- stacks: fields set by compose translation only (no flag) ---
    /// A compose file's `healthcheck.test` as written (`["CMD", ...]`, `["CMD-SHELL", ...]`):
    /// replaces the check's command like `--health-cmd` (which is always `CMD-SHELL`).
    #[arg(skip)]
    pub health_test: Option<Vec<String>>,

    // --- Placement and jobs (placement helper). `--constraint`/`--placement-pref` (create)
    // and their `-add`/`-rm` forms (update) differ by command, so they live with their
    // command and reach the spec through [`Placement`]; these two are the same on both.
    /// Maximum number of tasks per node (0 = unlimited).
    #[arg(
        long = "replicas-max-per-node",
        visible_alias = "max-replicas-per-node"
    )]
    pub replicas_max_per_node: Option<u64>,
    /// Number of job tasks to run concurrently (replicated-job mode) [default: --replicas].
    #[arg(long)]
    pub max_concurrent: Option<u64>,
}

/// Placement edits, as plain fields (no clap): `service create --constraint`/`--placement-pref`
/// fill the `_add` lists, `service update` all four, and a compose file's `deploy.placement`
/// maps onto the `_add` lists too. Removals must name what is there.
#[derive(Debug, Default, Clone)]
pub struct Placement {
    /// Constraints to add (`node.labels.zone==east`); checked by the manager.
    pub constraint_add: Vec<String>,
    /// Constraints to remove, written as they were added.
    pub constraint_rm: Vec<String>,
    /// Preferences to add, `spread=node.labels.zone`.
    pub pref_add: Vec<String>,
    /// Preferences to remove, `spread=node.labels.zone`.
    pub pref_rm: Vec<String>,
}

impl Placement {
    /// Applies the edits to `spec` (removals first, then additions; nothing added twice).
    pub fn apply(&self, spec: &mut ServiceSpec) -> Result<()> {
        for c in &self.constraint_rm {
            let before = spec.constraints.len();
            spec.constraints.retain(|x| x != c);
            if spec.constraints.len() == before {
                bail!("service {} has no constraint {c:?}", spec.name);
            }
        }
        for c in &self.constraint_add {
            if !spec.constraints.contains(c) {
                spec.constraints.push(c.clone());
            }
        }
        for p in &self.pref_rm {
            let pref = parse_placement_pref(p).map_err(anyhow::Error::msg)?;
            let before = spec.placement_preferences.len();
            spec.placement_preferences.retain(|x| x != &pref);
            if spec.placement_preferences.len() == before {
                bail!("service {} has no placement preference {p:?}", spec.name);
            }
        }
        for p in &self.pref_add {
            let pref = parse_placement_pref(p).map_err(anyhow::Error::msg)?;
            if !spec.placement_preferences.contains(&pref) {
                spec.placement_preferences.push(pref);
            }
        }
        Ok(())
    }
}

/// `spread=node.labels.zone` (Docker's `--placement-pref`; spread is the only strategy).
pub fn parse_placement_pref(s: &str) -> Result<PlacementPreference, String> {
    match s.split_once('=') {
        Some(("spread", descriptor)) if !descriptor.is_empty() => Ok(PlacementPreference {
            spread: descriptor.to_owned(),
        }),
        Some((strategy, _)) if strategy != "spread" => Err(format!(
            "invalid placement preference {s:?}: unsupported strategy {strategy:?} (only spread is supported)"
        )),
        _ => Err(format!(
            "invalid placement preference {s:?}: expected spread=<label>, e.g. spread=node.labels.zone"
        )),
    }
}

/// The mode of a new service from `--mode` (`replicated`, `global`, `replicated-job`,
/// `global-job`), `--replicas` and `--max-concurrent`, as Docker builds it: a replicated job
/// runs `--replicas` completions (default 1), `--max-concurrent` at a time (default: the
/// replicas). `--replicas` with a global mode and `--max-concurrent` without replicated-job
/// are refused.
pub fn service_mode(
    mode: &str,
    replicas: Option<u64>,
    max_concurrent: Option<u64>,
) -> Result<Mode> {
    if max_concurrent.is_some() && mode != "replicated-job" {
        bail!("--max-concurrent can only be used with replicated-job mode");
    }
    Ok(match mode {
        "replicated" => Mode::Replicas(replicas.unwrap_or(1)),
        "global" | "global-job" if replicas.is_some() => {
            bail!("--replicas can only be used with replicated or replicated-job mode")
        }
        "global" => Mode::Global(true),
        "global-job" => Mode::GlobalJob(GlobalJob {}),
        "replicated-job" => {
            let total = replicas.unwrap_or(1);
            Mode::ReplicatedJob(ReplicatedJob {
                max_concurrent: max_concurrent.unwrap_or(total),
                total_completions: total,
            })
        }
        other => bail!(
            "invalid mode {other:?}: expected replicated, global, replicated-job or global-job"
        ),
    })
}

impl SpecFlags {
    /// With `--with-registry-auth`: the credentials `mini login` stored for
    /// the registry of `spec`'s image (none stored: none sent, as Docker).
    pub fn registry_auth(&self, spec: &ServiceSpec) -> Result<Option<ImageRegistryAuth>> {
        if !self.with_registry_auth {
            return Ok(None);
        }
        let image = spec.container.as_ref().map_or("", |c| c.image.as_str());
        if image == "host" {
            return Ok(None);
        }
        let reference = Reference::parse_normalized(image)
            .with_context(|| format!("invalid image reference {image:?}"))?;
        Ok(Credentials::load()?.get(&reference.domain))
    }

    /// Whether any `--health-*` flag is set.
    fn health_settings(&self) -> bool {
        self.health_cmd.is_some()
            || self.health_test.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
    }

    /// The health check after the `--health-*` and `--no-healthcheck` flags, as Docker's
    /// `service update` edits it: each flag set replaces its field, `--health-cmd ""` goes
    /// back to the image's command, `--no-healthcheck` disables any check (alone only).
    /// `Ok(None)`: the flags change nothing.
    fn healthcheck(&self, current: Option<&HealthConfig>) -> Result<Option<HealthConfig>> {
        if !self.no_healthcheck && !self.health_settings() {
            return Ok(None);
        }
        if self.no_healthcheck {
            if self.health_settings() {
                bail!("--no-healthcheck conflicts with --health-* options");
            }
            return Ok(Some(HealthConfig {
                test: vec!["NONE".into()],
                ..Default::default()
            }));
        }
        let mut hc = current.cloned().unwrap_or_default();
        if hc.test.first().is_some_and(|t| t == "NONE") {
            hc.test.clear();
        }
        if let Some(ns) = self.health_interval {
            hc.interval_ns = ns;
        }
        if let Some(ns) = self.health_timeout {
            hc.timeout_ns = ns;
        }
        if let Some(ns) = self.health_start_period {
            hc.start_period_ns = ns;
        }
        if let Some(r) = self.health_retries {
            if r < 0 {
                bail!("--health-retries cannot be negative");
            }
            hc.retries = i32::try_from(r)
                .map_err(|_| anyhow::anyhow!("--health-retries {r} is too large"))?;
        }
        if let Some(cmd) = &self.health_cmd {
            hc.test = if cmd.is_empty() {
                Vec::new()
            } else {
                vec!["CMD-SHELL".into(), cmd.clone()]
            };
        }
        if let Some(test) = &self.health_test {
            hc.test = test.clone();
        }
        Ok(Some(hc))
    }

    /// The restart policy, `--update-*` and `--rollback-*` flags: each group that has a flag
    /// set starts from what the spec has (else Docker's defaults) and changes what is named.
    fn apply_rollout(&self, spec: &mut ServiceSpec) -> Result<()> {
        if self.restart_condition.is_some()
            || self.restart_delay.is_some()
            || self.restart_max_attempts.is_some()
            || self.restart_window.is_some()
        {
            let restart = spec.restart.get_or_insert_with(default_restart_policy);
            if let Some(c) = &self.restart_condition {
                restart.condition = restart_condition(c) as i32;
            }
            if let Some(d) = self.restart_delay {
                restart.delay_ms = d;
            }
            if let Some(n) = self.restart_max_attempts {
                restart.max_attempts = n;
            }
            if let Some(w) = self.restart_window {
                restart.window_ms = w;
            }
        }
        let update = RolloutFlags {
            parallelism: self.update_parallelism,
            delay_ms: self.update_delay,
            failure_action: self.update_failure_action.as_deref(),
            monitor_ms: self.update_monitor,
            max_failure_ratio: self.update_max_failure_ratio,
            order: self.update_order.as_deref(),
        };
        update.apply(&mut spec.update)?;
        let rollback = RolloutFlags {
            parallelism: self.rollback_parallelism,
            delay_ms: self.rollback_delay,
            failure_action: self.rollback_failure_action.as_deref(),
            monitor_ms: self.rollback_monitor,
            max_failure_ratio: self.rollback_max_failure_ratio,
            order: self.rollback_order.as_deref(),
        };
        if rollback.failure_action == Some("rollback") {
            bail!("invalid --rollback-failure-action \"rollback\": pause or continue");
        }
        rollback.apply(&mut spec.rollback)?;
        Ok(())
    }

    /// Applies the flags that are set to `spec`; on error `spec` may be half edited (the
    /// callers send nothing then).
    pub fn apply(&self, spec: &mut ServiceSpec) -> Result<()> {
        let healthcheck =
            self.healthcheck(spec.container.as_ref().and_then(|c| c.healthcheck.as_ref()))?;
        if let Some(n) = self.replicas {
            match &mut spec.mode {
                Some(Mode::Global(_) | Mode::GlobalJob(_)) if spec.name.is_empty() => {
                    bail!("--replicas can only be used with replicated or replicated-job mode")
                }
                Some(Mode::Global(_) | Mode::GlobalJob(_)) => bail!(
                    "service {} is global: --replicas can only be used with replicated or replicated-job mode",
                    spec.name
                ),
                Some(Mode::ReplicatedJob(job)) => job.total_completions = n,
                _ => spec.mode = Some(Mode::Replicas(n)),
            }
        }
        if let Some(n) = self.max_concurrent {
            match &mut spec.mode {
                Some(Mode::ReplicatedJob(job)) => job.max_concurrent = n,
                _ => bail!("--max-concurrent can only be used with replicated-job mode"),
            }
        }
        if let Some(n) = self.replicas_max_per_node {
            match spec.mode {
                Some(Mode::Global(_) | Mode::GlobalJob(_)) => {
                    bail!("--replicas-max-per-node can only be used with replicated mode")
                }
                _ => spec.max_replicas_per_node = n,
            }
        }
        self.apply_rollout(spec)?;
        let c = spec.container.get_or_insert_with(Default::default);
        if let Some(e) = &self.entrypoint {
            c.entrypoint = split_words(e)?;
            if c.entrypoint.is_empty() {
                // `--entrypoint ""` clears the image's entrypoint: stored as
                // `[""]`, as `docker run` sends it (empty means the image's).
                c.entrypoint = vec![String::new()];
            }
        }
        if let Some(u) = &self.user {
            c.user = u.clone();
        }
        if let Some(w) = &self.workdir {
            c.workdir = w.clone();
        }
        if let Some(h) = &self.hostname {
            c.hostname = h.clone();
        }
        if let Some(r) = self.read_only {
            c.read_only = r;
        }
        if let Some(i) = self.init {
            c.init = i;
        }
        let limits = [self.limit_cpu, self.limit_memory, self.limit_pids];
        if limits.iter().any(Option::is_some) {
            let l = c.limits.get_or_insert_with(Resources::default);
            if let Some(v) = self.limit_cpu {
                l.nano_cpus = v;
            }
            if let Some(v) = self.limit_memory {
                if v > 0 && v < 6 * 1024 * 1024 {
                    bail!("invalid --limit-memory: Minimum memory limit allowed is 6MB");
                }
                l.memory_bytes = v;
            }
            if let Some(v) = self.limit_pids {
                if v < 0 {
                    bail!("invalid --limit-pids {v}: must be 0 (no limit) or more");
                }
                l.pids = v;
            }
        }
        if self.reserve_cpu.is_some() || self.reserve_memory.is_some() {
            let r = c.reservations.get_or_insert_with(Resources::default);
            if let Some(v) = self.reserve_cpu {
                r.nano_cpus = v;
            }
            if let Some(v) = self.reserve_memory {
                r.memory_bytes = v;
            }
        }
        if let Some(s) = &self.stop_signal {
            if mini_worker::runtime::parse_signal(s).is_none() {
                bail!("invalid --stop-signal {s:?}: not a signal name (SIGTERM) or number");
            }
            c.stop_signal = s.clone();
        }
        if let Some(ms) = self.stop_grace_period {
            c.stop_grace_period_ms = ms;
        }
        for (k, v) in &self.log_opt {
            c.log_options.insert(k.clone(), v.clone());
        }
        if let Some(hc) = healthcheck {
            c.healthcheck = Some(hc);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Secrets and configs (`--secret`, `--config` on create; `--secret-add`, `--secret-rm`,
// `--config-add`, `--config-rm` on update, as Docker names them). The flags only name the
// objects: the manager resolves names into ids and fills Docker's defaults (secret target
// `/run/secrets/<source>`, config target `/<source>`, uid and gid 0, mode 0444). Compose
// files (`secrets:`/`configs:` of a service) build the same references with
// [`secret_reference`] / [`config_reference`] and edit a spec with [`edit_secrets`].
// ---------------------------------------------------------------------------------------

/// `service create --secret` and `--config`.
#[derive(Debug, Default, Args)]
pub struct SecretCreateFlags {
    /// Give the service access to a secret: NAME, or source=NAME[,target=FILE][,uid=UID][,gid=GID][,mode=MODE] (repeatable).
    #[arg(long = "secret", value_parser = parse_secret)]
    pub secret: Vec<SecretReference>,
    /// Give the service access to a config: NAME, or source=NAME[,target=PATH][,uid=UID][,gid=GID][,mode=MODE] (repeatable).
    #[arg(long = "config", value_parser = parse_config)]
    pub config: Vec<ConfigReference>,
}

impl SecretCreateFlags {
    /// Adds the references to `spec` (as `--secret-add`/`--config-add` would).
    pub fn apply(&self, spec: &mut ServiceSpec) -> Result<()> {
        edit_secrets(spec, &self.secret, &[], &self.config, &[])
    }
}

/// `service update --secret-add/--secret-rm/--config-add/--config-rm`.
#[derive(Debug, Default, Args)]
pub struct SecretUpdateFlags {
    /// Add or update a secret on a service: NAME or source=NAME[,target=...][,uid=][,gid=][,mode=] (repeatable).
    #[arg(long = "secret-add", value_parser = parse_secret)]
    pub secret_add: Vec<SecretReference>,
    /// Remove a secret, by name (repeatable).
    #[arg(long = "secret-rm")]
    pub secret_rm: Vec<String>,
    /// Add or update a config file on a service: NAME or source=NAME[,target=...][,uid=][,gid=][,mode=] (repeatable).
    #[arg(long = "config-add", value_parser = parse_config)]
    pub config_add: Vec<ConfigReference>,
    /// Remove a configuration file, by name (repeatable).
    #[arg(long = "config-rm")]
    pub config_rm: Vec<String>,
}

impl SecretUpdateFlags {
    /// Removes, then adds, the references the flags name.
    pub fn apply(&self, spec: &mut ServiceSpec) -> Result<()> {
        edit_secrets(
            spec,
            &self.secret_add,
            &self.secret_rm,
            &self.config_add,
            &self.config_rm,
        )
    }
}

/// The fields of Docker's `--secret`/`--config` value: `NAME`, or CSV `source=...,target=...`.
fn parse_file_reference(kind: &str, s: &str) -> Result<(String, FileTarget), String> {
    let mut source = String::new();
    let mut file = FileTarget::default();
    if !s.contains('=') {
        if s.is_empty() {
            return Err(format!("invalid {kind}: empty"));
        }
        return Ok((s.to_string(), file));
    }
    for field in s.split(',') {
        let Some((key, value)) = field.split_once('=') else {
            return Err(format!("invalid field '{field}' must be a key=value pair"));
        };
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        match key.as_str() {
            "source" | "src" => source = value.to_string(),
            "target" => file.name = value.to_string(),
            "uid" => file.uid = value.to_string(),
            "gid" => file.gid = value.to_string(),
            "mode" => {
                // Docker parses with base 0: `0444` is octal, `0x124` hex, `292` decimal.
                let parsed = if let Some(hex) = value.strip_prefix("0x") {
                    u32::from_str_radix(hex, 16)
                } else if let Some(oct) = value.strip_prefix("0o") {
                    u32::from_str_radix(oct, 8)
                } else if value.len() > 1 && value.starts_with('0') {
                    u32::from_str_radix(&value[1..], 8)
                } else {
                    value.parse()
                };
                file.mode = parsed.map_err(|_| format!("invalid mode specified: {value:?}"))?;
                if file.mode > 0o7777 {
                    return Err(format!("invalid mode specified: {value:?}"));
                }
            }
            _ => return Err(format!("invalid field key {key}")),
        }
    }
    if source.is_empty() {
        return Err(format!("source is required for a {kind}"));
    }
    for (what, id) in [("uid", &file.uid), ("gid", &file.gid)] {
        if !id.is_empty() && id.parse::<u32>().is_err() {
            return Err(format!("invalid {what} {id:?}: a number is needed"));
        }
    }
    Ok((source, file))
}

/// The file target as sent: `None` when nothing was given (the manager's defaults).
fn file_or_default(file: FileTarget) -> Option<FileTarget> {
    (file != FileTarget::default()).then_some(file)
}

/// Parses a `--secret`/`--secret-add` value into a reference by name.
pub fn parse_secret(s: &str) -> Result<SecretReference, String> {
    let (source, file) = parse_file_reference("secret", s)?;
    Ok(secret_reference(&source, file))
}

/// Parses a `--config`/`--config-add` value into a reference by name.
pub fn parse_config(s: &str) -> Result<ConfigReference, String> {
    let (source, file) = parse_file_reference("config", s)?;
    Ok(config_reference(&source, file))
}

/// A reference to the secret `name` (empty fields of `file`: the manager's defaults).
pub fn secret_reference(name: &str, file: FileTarget) -> SecretReference {
    SecretReference {
        secret_id: String::new(),
        secret_name: name.to_string(),
        file: file_or_default(file),
    }
}

/// A reference to the config `name` (empty fields of `file`: the manager's defaults).
pub fn config_reference(name: &str, file: FileTarget) -> ConfigReference {
    ConfigReference {
        config_id: String::new(),
        config_name: name.to_string(),
        file: file_or_default(file),
    }
}

/// The target a reference will have, for matching an added one with an existing one
/// (`None`: the default, decided by the manager from the name).
fn target_of(name: &str, file: &Option<FileTarget>) -> String {
    file.as_ref()
        .map(|f| f.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| name.to_string())
}

/// Edits `spec`'s references: removes the secrets and configs named in `*_rm` (by name or
/// id; one that is not there is an error), then adds `*_add`, each replacing a reference
/// to the same object or with the same target.
pub fn edit_secrets(
    spec: &mut ServiceSpec,
    secret_add: &[SecretReference],
    secret_rm: &[String],
    config_add: &[ConfigReference],
    config_rm: &[String],
) -> Result<()> {
    let service = spec.name.clone();
    let c = spec.container.get_or_insert_with(Default::default);
    for name in secret_rm {
        let before = c.secrets.len();
        c.secrets
            .retain(|r| &r.secret_name != name && &r.secret_id != name);
        if c.secrets.len() == before {
            bail!("service {service} does not use secret {name}");
        }
    }
    for add in secret_add {
        let target = target_of(&add.secret_name, &add.file);
        c.secrets.retain(|r| {
            r.secret_name != add.secret_name && target_of(&r.secret_name, &r.file) != target
        });
        c.secrets.push(add.clone());
    }
    for name in config_rm {
        let before = c.configs.len();
        c.configs
            .retain(|r| &r.config_name != name && &r.config_id != name);
        if c.configs.len() == before {
            bail!("service {service} does not use config {name}");
        }
    }
    for add in config_add {
        let target = target_of(&add.config_name, &add.file);
        c.configs.retain(|r| {
            r.config_name != add.config_name && target_of(&r.config_name, &r.file) != target
        });
        c.configs.push(add.clone());
    }
    Ok(())
}

/// Docker's restart policy for a new service: condition any; this project restarts after 1 s.
pub fn default_restart_policy() -> RestartPolicy {
    RestartPolicy {
        condition: RestartCondition::Any as i32,
        delay_ms: 1000,
        max_attempts: 0,
        window_ms: 0,
    }
}

/// Docker's update (and rollback) config for a new service: parallelism 1, no delay, pause
/// on failure, monitor 5 s, max failure ratio 0, stop-first.
pub fn default_update_config() -> UpdateConfig {
    mini_manager::orchestrator::update::docker_default()
}

/// One group of `--update-*` or `--rollback-*` flags (plain fields: the compose translation
/// fills it too).
#[derive(Debug, Default, Clone, Copy)]
pub struct RolloutFlags<'a> {
    /// Tasks replaced at a time (0: all).
    pub parallelism: Option<u64>,
    /// Delay between batches, in milliseconds.
    pub delay_ms: Option<u64>,
    /// `pause`, `continue` or `rollback`.
    pub failure_action: Option<&'a str>,
    /// Monitor window, in milliseconds.
    pub monitor_ms: Option<u64>,
    /// Failure ratio tolerated (0 to 1).
    pub max_failure_ratio: Option<f32>,
    /// `stop-first` or `start-first`.
    pub order: Option<&'a str>,
}

impl RolloutFlags<'_> {
    /// Whether any field is set.
    pub fn any(&self) -> bool {
        self.parallelism.is_some()
            || self.delay_ms.is_some()
            || self.failure_action.is_some()
            || self.monitor_ms.is_some()
            || self.max_failure_ratio.is_some()
            || self.order.is_some()
    }

    /// Writes the set fields into `config` (created with Docker's defaults when unset).
    pub fn apply(&self, config: &mut Option<UpdateConfig>) -> Result<()> {
        if !self.any() {
            return Ok(());
        }
        let c = config.get_or_insert_with(default_update_config);
        if let Some(p) = self.parallelism {
            c.parallelism = p;
        }
        if let Some(d) = self.delay_ms {
            c.delay_ms = d;
        }
        if let Some(a) = self.failure_action {
            c.failure_action = match a {
                "pause" => UpdateFailureAction::Pause,
                "continue" => UpdateFailureAction::Continue,
                "rollback" => UpdateFailureAction::Rollback,
                other => bail!("invalid failure action {other:?}: pause, continue or rollback"),
            } as i32;
        }
        if let Some(m) = self.monitor_ms {
            c.monitor_ms = m;
        }
        if let Some(r) = self.max_failure_ratio {
            parse_failure_ratio(&r.to_string()).map_err(anyhow::Error::msg)?;
            c.max_failure_ratio = r;
        }
        if let Some(o) = self.order {
            c.order = match o {
                "stop-first" => UpdateOrder::StopFirst,
                "start-first" => UpdateOrder::StartFirst,
                other => bail!("invalid update order {other:?}: stop-first or start-first"),
            } as i32;
        }
        Ok(())
    }
}

/// `--update-max-failure-ratio`: a number from 0 to 1.
pub fn parse_failure_ratio(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "invalid failure ratio {s:?}: a number from 0 to 1 (e.g. 0.2)"
        )),
    }
}

/// `0.5` CPUs → billionths of a CPU.
pub fn parse_cpus(s: &str) -> Result<i64, String> {
    match s.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok((v * 1e9).round() as i64),
        _ => Err(format!("{s:?} is not a number of CPUs (e.g. 0.5)")),
    }
}

/// Docker's memory sizes (go-units' `RAMInBytes`): a number, an optional
/// space, then an optional unit `k`, `m`, `g`, `t` or `p` (powers of 1024, any
/// case) followed by an optional `b` or `ib`, or just `b`: `64MiB`, `64m`,
/// `64MB`, `1.5g`, `512 KiB`, `1024`.
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let bad =
        || format!("invalid size {s:?}: expected a number and a unit, e.g. 64MiB, 64m, 512k, 1g");
    let split = s
        .rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
        .ok_or_else(bad)?;
    let (number, suffix) = if s.as_bytes()[split] == b' ' {
        (&s[..split], &s[split + 1..])
    } else {
        (&s[..=split], &s[split + 1..])
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    if !(value >= 0.0 && value.is_finite()) {
        return Err(bad());
    }
    let suffix = suffix.to_ascii_lowercase();
    let unit: i64 = match suffix.as_bytes() {
        [] | [b'b'] => 1,
        [u] | [u, b'b'] | [u, b'i', b'b'] => match u {
            b'k' => 1 << 10,
            b'm' => 1 << 20,
            b'g' => 1 << 30,
            b't' => 1 << 40,
            b'p' => 1 << 50,
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    let bytes = value * unit as f64;
    if bytes >= i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

/// A Go duration in nanoseconds that must not be negative (Docker's `PositiveDurationOpt`).
pub fn parse_positive_duration_ns(s: &str) -> Result<u64, String> {
    if s.trim().starts_with('-') {
        return Err("duration cannot be negative".into());
    }
    parse_duration_ns(s)
}

/// Go durations in nanoseconds: `10s`, `1m30s`, `500ms`, `250us`, `2h`.
pub fn parse_duration_ns(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 10s, 1m30s, 500ms)");
    let mut total: u128 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest == "0" {
        return Ok(0);
    }
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number = &rest[..end];
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit: u128 = match &rest[..unit_end] {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_end..];
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let mut part = whole.checked_mul(unit).ok_or_else(bad)?;
        let mut scale = unit;
        for digit in frac.chars() {
            let d = digit.to_digit(10).ok_or_else(bad)? as u128;
            scale /= 10;
            part += d * scale;
        }
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    u64::try_from(total).map_err(|_| bad())
}

/// Go durations as Docker takes them: `10s`, `1m30s`, `500ms`, `2h`.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 10s, 1m30s, 500ms)");
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest == "0" {
        return Ok(0);
    }
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..end].parse().map_err(|_| bad())?;
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let ms = match &rest[..unit_end] {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return Err(bad()),
        };
        total += value * ms;
        rest = &rest[unit_end..];
    }
    Ok(total.round() as u64)
}

/// `--log-opt KEY=VALUE`: `max-size` or `max-file`.
pub fn parse_log_opt(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k @ ("max-size" | "max-file"), v)) if !v.is_empty() => {
            Ok((k.to_string(), v.to_string()))
        }
        Some((k, _)) if k != "max-size" && k != "max-file" => Err(format!(
            "unknown log opt '{k}': max-size and max-file are supported"
        )),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Splits `--entrypoint`'s words as a shell would (quotes and backslashes,
/// no expansions).
pub fn split_words(s: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => word.push(c),
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
                in_word = true;
            }
            (_, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        bail!("invalid --entrypoint {s:?}: unterminated quote");
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// `--mount type=bind,source=/a,target=/b,readonly` (Docker's CSV syntax).
pub fn parse_mount(s: &str) -> Result<Mount, String> {
    let mut m = Mount {
        r#type: "volume".into(),
        ..Default::default()
    };
    for field in s.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (field.trim(), None),
        };
        match (k, v) {
            ("type", Some(t @ ("bind" | "volume" | "tmpfs"))) => m.r#type = t.into(),
            ("type", Some(t)) => {
                return Err(format!("invalid mount type {t:?}: bind, volume or tmpfs"));
            }
            ("source" | "src", Some(v)) => m.source = v.into(),
            ("target" | "destination" | "dst", Some(v)) => m.target = v.into(),
            ("readonly" | "ro", None) => m.read_only = true,
            ("readonly" | "ro", Some(v)) => {
                m.read_only = matches!(v, "1" | "true");
                if !matches!(v, "0" | "1" | "true" | "false") {
                    return Err(format!("invalid value for {k}: {v}"));
                }
            }
            ("tmpfs-size", Some(v)) => {
                m.tmpfs_size = parse_bytes(v)? as u64;
            }
            _ => return Err(format!("unexpected key '{k}' in '{field}'")),
        }
    }
    if m.target.is_empty() {
        return Err("target is required".into());
    }
    if m.r#type == "bind" && m.source.is_empty() {
        return Err("source is required when type is bind".into());
    }
    if m.r#type == "tmpfs" && !m.source.is_empty() {
        return Err("source must not be specified for type tmpfs".into());
    }
    Ok(m)
}

// --- Waiting for convergence (issue #15, progress): `--detach` and `--quiet` of `service
// create`, `update` and `rollback` (see `crate::progress`).

/// `-d/--detach` and `-q/--quiet`: whether the command waits for the service to converge and
/// whether it shows the progress while it waits.
#[derive(Debug, Default, Clone, Copy, Args)]
pub struct WaitFlags {
    /// Exit immediately instead of waiting for the service to converge.
    #[arg(short, long)]
    pub detach: bool,
    /// Suppress progress output.
    #[arg(short, long)]
    pub quiet: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_docker_writes_them() {
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert!(parse_cpus("half").is_err());
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("512k"), Ok(512 << 10));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert!(parse_bytes("big").is_err());
        // go-units' RAMInBytes table, as `docker service create --reserve-memory` parses.
        for (text, bytes) in [
            ("32", 32),
            ("32b", 32),
            ("32B", 32),
            ("32k", 32 << 10),
            ("32K", 32 << 10),
            ("32kb", 32 << 10),
            ("32Kb", 32 << 10),
            ("32Mb", 32 << 20),
            ("32Gb", 32 << 30),
            ("32Tb", 32 << 40),
            ("8Pb", 8 << 50),
            ("32KiB", 32 << 10),
            ("64MiB", 64 << 20),
            ("64m", 64 << 20),
            ("32 mb", 32 << 20),
            ("32.3", 32),
            ("0.3", 0),
            ("1.5g", 3 << 29),
        ] {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
        for text in [
            "", "hello", "-32", " 32 ", "32m b", "32bm", "32mib ", "32ib", "32mbb", "32x", "1e40g",
        ] {
            assert!(parse_bytes(text).is_err(), "{text:?} parsed");
        }
        assert_eq!(parse_duration_ms("10s"), Ok(10_000));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert!(parse_duration_ms("10").is_err());
        assert_eq!(
            split_words(r#"sh -c "echo 'a b'" x\ y"#).unwrap(),
            vec!["sh", "-c", "echo 'a b'", "x y"]
        );
        assert!(split_words("'open").is_err());
        let m = parse_mount("type=bind,source=/srv,target=/data,readonly").unwrap();
        assert_eq!(
            (
                m.r#type.as_str(),
                m.source.as_str(),
                m.target.as_str(),
                m.read_only
            ),
            ("bind", "/srv", "/data", true)
        );
        let v = parse_mount("src=cache,dst=/cache").unwrap();
        assert_eq!((v.r#type.as_str(), v.source.as_str()), ("volume", "cache"));
        let t = parse_mount("type=tmpfs,target=/tmp,tmpfs-size=1m").unwrap();
        assert_eq!(t.tmpfs_size, 1 << 20);
        assert_eq!(
            parse_mount("type=bind,target=/x").unwrap_err(),
            "source is required when type is bind"
        );
        assert!(parse_mount("type=nfs,target=/x").is_err());
        assert!(parse_log_opt("max-size=10m").is_ok());
        assert!(parse_log_opt("compress=true").is_err());
    }

    #[test]
    fn health_flags_edit_the_check_as_docker_does() {
        let mut spec = ServiceSpec {
            name: "web".into(),
            ..Default::default()
        };
        let hc = |spec: &ServiceSpec| spec.container.clone().unwrap().healthcheck.unwrap();
        SpecFlags {
            health_cmd: Some("curl -f localhost || exit 1".into()),
            health_interval: Some(5_000_000_000),
            health_retries: Some(2),
            ..Default::default()
        }
        .apply(&mut spec)
        .unwrap();
        assert_eq!(
            hc(&spec),
            HealthConfig {
                test: vec!["CMD-SHELL".into(), "curl -f localhost || exit 1".into()],
                interval_ns: 5_000_000_000,
                retries: 2,
                ..Default::default()
            }
        );
        // An update changes only the fields it names.
        SpecFlags {
            health_timeout: Some(1_500_000_000),
            ..Default::default()
        }
        .apply(&mut spec)
        .unwrap();
        let h = hc(&spec);
        assert_eq!(
            (h.test.len(), h.interval_ns, h.timeout_ns, h.retries),
            (2, 5_000_000_000, 1_500_000_000, 2)
        );
        // --no-healthcheck alone disables it; with --health-* it is refused.
        let conflict = SpecFlags {
            no_healthcheck: true,
            health_retries: Some(1),
            ..Default::default()
        };
        assert_eq!(
            conflict.apply(&mut spec.clone()).unwrap_err().to_string(),
            "--no-healthcheck conflicts with --health-* options"
        );
        SpecFlags {
            no_healthcheck: true,
            ..Default::default()
        }
        .apply(&mut spec)
        .unwrap();
        assert_eq!(hc(&spec).test, ["NONE"]);
        // A --health-* flag after NONE goes back to the image's command.
        SpecFlags {
            health_start_period: Some(1_000_000_000),
            ..Default::default()
        }
        .apply(&mut spec)
        .unwrap();
        assert_eq!(
            (hc(&spec).test.len(), hc(&spec).start_period_ns),
            (0, 1_000_000_000)
        );
        let negative = SpecFlags {
            health_retries: Some(-1),
            ..Default::default()
        };
        assert_eq!(
            negative.apply(&mut spec.clone()).unwrap_err().to_string(),
            "--health-retries cannot be negative"
        );
        assert_eq!(
            parse_positive_duration_ns("-1s").unwrap_err(),
            "duration cannot be negative"
        );
        assert_eq!(parse_positive_duration_ns("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_positive_duration_ns("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_positive_duration_ns("250us"), Ok(250_000));
        assert!(parse_positive_duration_ns("5").is_err());
    }

    #[test]
    fn flags_edit_the_container_spec() {
        let mut spec = ServiceSpec {
            name: "web".into(),
            mode: Some(Mode::Replicas(1)),
            ..Default::default()
        };
        let flags = SpecFlags {
            replicas: Some(3),
            entrypoint: Some("/bin/sh -c".into()),
            user: Some("www".into()),
            limit_memory: Some(64 << 20),
            limit_cpu: Some(500_000_000),
            reserve_cpu: Some(250_000_000),
            reserve_memory: Some(32 << 20),
            stop_signal: Some("SIGQUIT".into()),
            stop_grace_period: Some(2000),
            read_only: Some(true),
            log_opt: vec![("max-size".into(), "1m".into())],
            ..Default::default()
        };
        flags.apply(&mut spec).unwrap();
        let c = spec.container.clone().unwrap();
        assert_eq!(spec.mode, Some(Mode::Replicas(3)));
        assert_eq!(c.entrypoint, vec!["/bin/sh", "-c"]);
        let mut cleared = spec.clone();
        SpecFlags {
            entrypoint: Some(String::new()),
            ..Default::default()
        }
        .apply(&mut cleared)
        .unwrap();
        assert_eq!(cleared.container.unwrap().entrypoint, vec![""]);
        assert_eq!(c.user, "www");
        assert_eq!(c.limits.unwrap().memory_bytes, 64 << 20);
        assert_eq!(c.limits.unwrap().nano_cpus, 500_000_000);
        let r = c.reservations.unwrap();
        assert_eq!((r.nano_cpus, r.memory_bytes), (250_000_000, 32 << 20));
        assert_eq!(
            (c.stop_signal.as_str(), c.stop_grace_period_ms),
            ("SIGQUIT", 2000)
        );
        assert!(c.read_only);
        assert_eq!(
            c.log_options.get("max-size").map(String::as_str),
            Some("1m")
        );
        // Unset flags change nothing.
        SpecFlags::default().apply(&mut spec).unwrap();
        assert_eq!(spec.container.clone().unwrap(), c);
        let low = SpecFlags {
            limit_memory: Some(1 << 20),
            ..Default::default()
        };
        assert!(
            low.apply(&mut spec)
                .unwrap_err()
                .to_string()
                .contains("Minimum memory limit allowed is 6MB")
        );
        let mut global = ServiceSpec {
            mode: Some(Mode::Global(true)),
            ..Default::default()
        };
        let replicas = SpecFlags {
            replicas: Some(2),
            ..Default::default()
        };
        assert!(replicas.apply(&mut global).is_err());
    }

    #[test]
    fn secret_flags_parse_as_docker_does() {
        let short = parse_secret("db_pass").unwrap();
        assert_eq!(short.secret_name, "db_pass");
        assert_eq!(short.file, None);
        let long = parse_secret("source=db_pass,target=db,uid=33,gid=44,mode=0400").unwrap();
        let f = long.file.clone().unwrap();
        assert_eq!(
            (
                long.secret_name.as_str(),
                f.name.as_str(),
                f.uid.as_str(),
                f.gid.as_str(),
                f.mode
            ),
            ("db_pass", "db", "33", "44", 0o400)
        );
        // Base 0, as Docker's strconv.ParseUint(v, 0, 32).
        assert_eq!(
            parse_secret("src=a,mode=292").unwrap().file.unwrap().mode,
            0o444
        );
        assert_eq!(
            parse_secret("target=x").unwrap_err(),
            "source is required for a secret"
        );
        assert!(parse_secret("source=a,mode=rw").is_err());
        assert!(parse_secret("source=a,uid=www").is_err());
        assert_eq!(
            parse_secret("source=a,color=red").unwrap_err(),
            "invalid field key color"
        );
        let c = parse_config("source=site,target=/etc/nginx/nginx.conf").unwrap();
        assert_eq!(c.config_name, "site");
        assert_eq!(c.file.unwrap().name, "/etc/nginx/nginx.conf");
    }

    #[test]
    fn secret_add_and_rm_edit_the_references() {
        let mut spec = ServiceSpec {
            name: "web".into(),
            ..Default::default()
        };
        SecretCreateFlags {
            secret: vec![
                parse_secret("a").unwrap(),
                parse_secret("source=b,target=bee").unwrap(),
            ],
            config: vec![parse_config("conf").unwrap()],
        }
        .apply(&mut spec)
        .unwrap();
        let names = |spec: &ServiceSpec| -> Vec<String> {
            let c = spec.container.clone().unwrap();
            c.secrets
                .iter()
                .map(|r| r.secret_name.clone())
                .chain(
                    c.configs
                        .iter()
                        .map(|r| format!("config:{}", r.config_name)),
                )
                .collect()
        };
        assert_eq!(names(&spec), ["a", "b", "config:conf"]);
        // A resolved reference (with an id) is removed by name or by id.
        spec.container.as_mut().unwrap().secrets[0].secret_id = "id-of-a".into();
        let update = SecretUpdateFlags {
            secret_rm: vec!["id-of-a".into()],
            secret_add: vec![parse_secret("source=c,target=bee").unwrap()],
            config_rm: vec!["conf".into()],
            ..Default::default()
        };
        update.apply(&mut spec).unwrap();
        // c took over b's target: b is replaced.
        assert_eq!(names(&spec), ["c"]);
        let missing = SecretUpdateFlags {
            secret_rm: vec!["zzz".into()],
            ..Default::default()
        };
        assert_eq!(
            missing.apply(&mut spec).unwrap_err().to_string(),
            "service web does not use secret zzz"
        );
    }

    #[test]
    fn modes_and_placement_build_the_spec_as_docker_does() {
        assert_eq!(
            service_mode("replicated", Some(3), None).unwrap(),
            Mode::Replicas(3)
        );
        assert_eq!(
            service_mode("replicated-job", Some(3), None).unwrap(),
            Mode::ReplicatedJob(ReplicatedJob {
                max_concurrent: 3,
                total_completions: 3,
            })
        );
        assert_eq!(
            service_mode("replicated-job", None, Some(2)).unwrap(),
            Mode::ReplicatedJob(ReplicatedJob {
                max_concurrent: 2,
                total_completions: 1,
            })
        );
        assert_eq!(
            service_mode("global-job", None, None).unwrap(),
            Mode::GlobalJob(GlobalJob {})
        );
        assert_eq!(
            service_mode("global", Some(2), None)
                .unwrap_err()
                .to_string(),
            "--replicas can only be used with replicated or replicated-job mode"
        );
        assert_eq!(
            service_mode("replicated", None, Some(2))
                .unwrap_err()
                .to_string(),
            "--max-concurrent can only be used with replicated-job mode"
        );

        // --replicas on a replicated job sets its completions; --max-concurrent its concurrency.
        let mut job = ServiceSpec {
            name: "batch".into(),
            mode: Some(service_mode("replicated-job", Some(1), None).unwrap()),
            ..Default::default()
        };
        SpecFlags {
            replicas: Some(5),
            max_concurrent: Some(2),
            ..Default::default()
        }
        .apply(&mut job)
        .unwrap();
        assert_eq!(
            job.mode,
            Some(Mode::ReplicatedJob(ReplicatedJob {
                max_concurrent: 2,
                total_completions: 5,
            }))
        );
        let mut web = ServiceSpec {
            name: "web".into(),
            mode: Some(Mode::Replicas(4)),
            ..Default::default()
        };
        SpecFlags {
            replicas_max_per_node: Some(1),
            ..Default::default()
        }
        .apply(&mut web)
        .unwrap();
        assert_eq!(web.max_replicas_per_node, 1);
        assert!(
            SpecFlags {
                max_concurrent: Some(1),
                ..Default::default()
            }
            .apply(&mut web)
            .is_err()
        );

        Placement {
            constraint_add: vec!["node.labels.zone==east".into()],
            pref_add: vec!["spread=node.labels.zone".into()],
            ..Default::default()
        }
        .apply(&mut web)
        .unwrap();
        assert_eq!(web.constraints, ["node.labels.zone==east"]);
        assert_eq!(web.placement_preferences[0].spread, "node.labels.zone");
        let err = Placement {
            pref_rm: vec!["spread=node.labels.rack".into()],
            ..Default::default()
        }
        .apply(&mut web.clone())
        .unwrap_err();
        assert!(err.to_string().contains("no placement preference"), "{err}");
        Placement {
            pref_rm: vec!["spread=node.labels.zone".into()],
            constraint_rm: vec!["node.labels.zone==east".into()],
            ..Default::default()
        }
        .apply(&mut web)
        .unwrap();
        assert!(web.placement_preferences.is_empty() && web.constraints.is_empty());
        assert!(
            parse_placement_pref("binpack=node.labels.zone")
                .unwrap_err()
                .contains("only spread is supported")
        );
        assert!(parse_placement_pref("spread=").is_err());
    }
}

// ---- `--network` / `--network-add` long syntax (lead) ----

/// `--network` as Docker takes it: `NAME`, or `name=NAME,alias=A[,alias=B]`. Returns the
/// network (name or id) and the aliases. Driver options and link-local addresses are refused.
pub fn network_attachment(value: &str) -> Result<(String, Vec<String>), String> {
    if !value.contains('=') {
        return Ok((value.to_string(), Vec::new()));
    }
    let mut name = None;
    let mut aliases = Vec::new();
    for field in value.split(',') {
        let (key, val) = field
            .split_once('=')
            .ok_or_else(|| format!("invalid field {field:?}: must be a key=value pair"))?;
        match key.trim().to_ascii_lowercase().as_str() {
            "name" | "target" => name = Some(val.to_string()),
            "alias" => {
                let valid = !val.is_empty()
                    && val.len() <= 255
                    && val
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !valid {
                    return Err(format!(
                        "invalid alias {val:?}: a DNS name (letters, digits, '-', '_', '.')"
                    ));
                }
                if !aliases.iter().any(|a| a == val) {
                    aliases.push(val.to_string());
                }
            }
            "driver-opt" | "link-local-ip" | "ip" | "ipv4-address" => {
                return Err(format!("not supported by mini: --network {key}=..."));
            }
            other => {
                return Err(format!(
                    "invalid field key {other:?} in --network {value:?}"
                ));
            }
        }
    }
    match name {
        Some(n) if !n.is_empty() => Ok((n, aliases)),
        _ => Err(format!("--network {value:?}: name= is required")),
    }
}

/// Value parser of `--network`: checks the syntax, keeps the text.
pub fn parse_network(value: &str) -> Result<String, String> {
    network_attachment(value).map(|_| value.to_string())
}

/// Splits `--network` values into the networks and the aliases they give (a service's aliases
/// hold on all its networks in mini).
pub fn split_networks(values: &[String]) -> (Vec<String>, Vec<String>) {
    let mut networks = Vec::new();
    let mut aliases: Vec<String> = Vec::new();
    for value in values {
        // parse_network checked every value.
        if let Ok((network, more)) = network_attachment(value) {
            networks.push(network);
            for a in more {
                if !aliases.contains(&a) {
                    aliases.push(a);
                }
            }
        }
    }
    (networks, aliases)
}

#[cfg(test)]
mod network_tests {
    use super::*;

    #[test]
    fn network_long_syntax_gives_aliases() {
        assert_eq!(
            network_attachment("backend").unwrap(),
            ("backend".into(), vec![])
        );
        assert_eq!(
            network_attachment("name=backend,alias=db,alias=pg").unwrap(),
            ("backend".into(), vec!["db".into(), "pg".into()])
        );
        assert!(
            network_attachment("alias=db")
                .unwrap_err()
                .contains("name= is required")
        );
        assert!(
            network_attachment("name=n,alias=a b")
                .unwrap_err()
                .contains("invalid alias")
        );
        assert!(
            network_attachment("name=n,driver-opt=x=y")
                .unwrap_err()
                .contains("not supported by mini")
        );
        assert!(
            network_attachment("name=n,colour=red")
                .unwrap_err()
                .contains("colour")
        );
        let (nets, aliases) = split_networks(&[
            "a".into(),
            "name=b,alias=x".into(),
            "name=c,alias=x,alias=y".into(),
        ]);
        assert_eq!(nets, ["a", "b", "c"]);
        assert_eq!(aliases, ["x", "y"]);
    }
}
