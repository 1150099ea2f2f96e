//! Container health checks with Docker's semantics: which check a task runs (the service's
//! `--health-*` flags over the image's `HEALTHCHECK`, then Docker's defaults), the probe state
//! machine (start period, retries, a success resets the failing streak) and the monitor that
//! runs the check inside the task on its interval, with its timeout.
//!
//! What the states mean to the rest of the node is the agent's business: a task with a check
//! stays STARTING (out of DNS and the VIP's backends) until its first passing probe, as Docker's
//! swarm executor keeps it; an unhealthy task is stopped and reported failed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mini_proto::v1::HealthConfig;
use tokio::sync::watch;

use super::{ExecTarget, TaskRuntime};
use crate::image::Healthcheck;

/// Docker's default time between two probes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Docker's default time a probe may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Docker's default number of consecutive failures that make a container unhealthy.
pub const DEFAULT_RETRIES: u32 = 3;
/// Probe results kept per task (Docker keeps 5).
pub const MAX_LOG_ENTRIES: usize = 5;
/// Bytes of a probe's output kept (Docker keeps 4096).
pub const MAX_OUTPUT_LEN: usize = 4096;

/// The error a task stopped for failing its health check ends with (swarmkit's
/// `ErrContainerUnhealthy`, as `docker service ps` shows it after `task: non-zero exit (N): `).
pub const UNHEALTHY_ERROR: &str = "dockerexec: unhealthy container";

/// A resolved health check: what to run and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The command run inside the task (`CMD-SHELL c` becomes `/bin/sh -c c`).
    pub command: Vec<String>,
    /// Time between two probes (the first one runs one interval after the start).
    pub interval: Duration,
    /// Time a probe may take before it counts as failed.
    pub timeout: Duration,
    /// Time after the start during which failures do not count.
    pub start_period: Duration,
    /// Consecutive failures that make the task unhealthy.
    pub retries: u32,
}

impl HealthCheck {
    /// The check a task runs: each field of the service's `healthcheck` that is set wins over
    /// the image's `HEALTHCHECK`, then Docker's defaults apply (as Docker merges a container's
    /// config with its image's). `Ok(None)`: no check (none anywhere, or `["NONE"]`).
    pub fn resolve(
        service: Option<&HealthConfig>,
        image: Option<&Healthcheck>,
    ) -> Result<Option<HealthCheck>, String> {
        let service = service.cloned().unwrap_or_default();
        let test = if service.test.is_empty() {
            image.map(|i| i.test.clone()).unwrap_or_default()
        } else {
            service.test.clone()
        };
        let nanos = |ns: u64| (ns > 0).then(|| Duration::from_nanos(ns));
        let interval = nanos(service.interval_ns)
            .or(image.and_then(|i| i.interval))
            .unwrap_or(DEFAULT_INTERVAL);
        let timeout = nanos(service.timeout_ns)
            .or(image.and_then(|i| i.timeout))
            .unwrap_or(DEFAULT_TIMEOUT);
        let start_period = nanos(service.start_period_ns)
            .or(image.and_then(|i| i.start_period))
            .unwrap_or_default();
        if service.retries < 0 {
            return Err("Retries in Healthcheck cannot be negative".into());
        }
        let retries = u32::try_from(service.retries)
            .ok()
            .filter(|r| *r > 0)
            .or(image.and_then(|i| i.retries))
            .unwrap_or(DEFAULT_RETRIES);
        let command = match test.first().map(String::as_str) {
            None | Some("NONE") => return Ok(None),
            Some("CMD") if test.len() > 1 => test[1..].to_vec(),
            Some("CMD-SHELL") if test.len() > 1 => {
                vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")]
            }
            Some(kind @ ("CMD" | "CMD-SHELL")) => {
                return Err(format!("healthcheck {kind} has no command"));
            }
            Some(other) => {
                return Err(format!(
                    "unknown healthcheck type {other:?} (expected CMD, CMD-SHELL or NONE)"
                ));
            }
        };
        Ok(Some(HealthCheck {
            command,
            interval,
            timeout,
            start_period,
            retries,
        }))
    }
}

/// A container's health, as `docker ps` shows it in parentheses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No probe has passed yet.
    Starting,
    /// The last probe passed, or failures since then are fewer than the retries.
    Healthy,
    /// `retries` consecutive probes failed (outside the start period).
    Unhealthy,
}

impl Health {
    /// Docker's word for it: `starting`, `healthy`, `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// One probe (Docker's `HealthcheckResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// 0: passed; anything else failed (-1: it could not run or timed out).
    pub exit_code: i32,
    /// Its stdout and stderr, at most [`MAX_OUTPUT_LEN`] bytes.
    pub output: String,
}

/// The health of one task: its status, failing streak and last probes (Docker's `Health`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthState {
    /// The current status.
    pub status: Health,
    /// Consecutive failures counted so far.
    pub failing_streak: u32,
    /// The last [`MAX_LOG_ENTRIES`] probes, oldest first.
    pub log: VecDeque<ProbeResult>,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState::new()
    }
}

impl HealthState {
    /// A task that has just started: `starting`, nothing counted.
    pub fn new() -> Self {
        HealthState {
            status: Health::Starting,
            failing_streak: 0,
            log: VecDeque::new(),
        }
    }

    /// Takes a probe that began `since_start` after the task started; returns the status
    /// after it. As Docker: a pass makes the task healthy and resets the streak; a failure
    /// counts unless the task is still starting within its start period; `retries`
    /// consecutive counted failures make it unhealthy.
    pub fn record(
        &mut self,
        check: &HealthCheck,
        result: ProbeResult,
        since_start: Duration,
    ) -> Health {
        if result.exit_code == 0 {
            self.failing_streak = 0;
            self.status = Health::Healthy;
        } else {
            let in_start_period =
                self.status == Health::Starting && since_start < check.start_period;
            if !in_start_period {
                self.failing_streak += 1;
                if self.failing_streak >= check.retries {
                    self.status = Health::Unhealthy;
                }
            }
        }
        self.log.push_back(result);
        while self.log.len() > MAX_LOG_ENTRIES {
            self.log.pop_front();
        }
        self.status
    }
}

/// `output` cut to [`MAX_OUTPUT_LEN`] bytes (on a character boundary).
fn truncate_output(mut output: String) -> String {
    if output.len() > MAX_OUTPUT_LEN {
        let mut end = MAX_OUTPUT_LEN;
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        output.truncate(end);
    }
    output
}

/// A duration as Go prints it (`30s`, `1.5s`, `500ms`, `1m30s`), for Docker's timeout message.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    let trim = |whole: u128, frac: u128, digits: usize, unit: &str| {
        let frac = format!("{frac:0digits$}");
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            format!("{whole}{unit}")
        } else {
            format!("{whole}.{frac}{unit}")
        }
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return trim(ns / 1_000, ns % 1_000, 3, "µs");
    }
    if ns < 1_000_000_000 {
        return trim(ns / 1_000_000, ns % 1_000_000, 6, "ms");
    }
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&trim(s, frac, 9, "s"));
    out
}

/// Runs one probe of `check` in `target`.
pub async fn probe(
    runtime: &dyn TaskRuntime,
    target: &ExecTarget,
    check: &HealthCheck,
) -> ProbeResult {
    let start = SystemTime::now();
    let (exit_code, output) = match tokio::time::timeout(
        check.timeout,
        runtime.exec(target, &check.command, &[]),
    )
    .await
    {
        Ok(Ok(out)) => {
            let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
            output.push_str(&String::from_utf8_lossy(&out.stderr));
            (out.exit.exit_code(), output)
        }
        Ok(Err(err)) => (-1, err.to_string()),
        Err(_) => (
            -1,
            format!(
                "Health check exceeded timeout ({})",
                go_duration(check.timeout)
            ),
        ),
    };
    ProbeResult {
        start,
        end: SystemTime::now(),
        exit_code,
        output: truncate_output(output),
    }
}

/// Probes `target` every `check.interval` (the first probe one interval after `started`) and
/// publishes its health in `state` after every probe. Runs until dropped or nobody watches.
pub async fn monitor(
    runtime: Arc<dyn TaskRuntime>,
    target: ExecTarget,
    check: HealthCheck,
    started: tokio::time::Instant,
    state: watch::Sender<HealthState>,
) {
    let mut next = started + check.interval;
    loop {
        tokio::time::sleep_until(next).await;
        let began = tokio::time::Instant::now();
        let result = probe(runtime.as_ref(), &target, &check).await;
        if result.exit_code != 0 {
            tracing::debug!(
                task = %target.task_id,
                exit_code = result.exit_code,
                output = %result.output.trim_end(),
                "health probe failed"
            );
        }
        let mut current = state.borrow().clone();
        current.record(&check, result, began.saturating_duration_since(started));
        if state.send(current).is_err() {
            return;
        }
        // Docker waits one interval after a probe ends before the next one.
        next = tokio::time::Instant::now() + check.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::{FakeExec, FakeRuntime};

    fn check(retries: u32, start_period: Duration) -> HealthCheck {
        HealthCheck {
            command: vec!["true".into()],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            start_period,
            retries,
        }
    }

    fn result(exit_code: i32) -> ProbeResult {
        ProbeResult {
            start: SystemTime::UNIX_EPOCH,
            end: SystemTime::UNIX_EPOCH,
            exit_code,
            output: String::new(),
        }
    }

    #[test]
    fn consecutive_failures_up_to_retries_make_a_task_unhealthy() {
        let c = check(3, Duration::ZERO);
        let mut s = HealthState::new();
        let at = Duration::from_secs(5);
        assert_eq!(s.record(&c, result(1), at), Health::Starting);
        assert_eq!(s.record(&c, result(1), at), Health::Starting);
        assert_eq!(s.failing_streak, 2);
        assert_eq!(s.record(&c, result(1), at), Health::Unhealthy);
        assert_eq!(s.failing_streak, 3);
    }

    #[test]
    fn a_pass_makes_a_task_healthy_and_resets_the_streak() {
        let c = check(2, Duration::ZERO);
        let mut s = HealthState::new();
        let at = Duration::from_secs(5);
        assert_eq!(s.record(&c, result(1), at), Health::Starting);
        assert_eq!(s.record(&c, result(0), at), Health::Healthy);
        assert_eq!(s.failing_streak, 0);
        // One failure is fewer than the retries: still healthy.
        assert_eq!(s.record(&c, result(1), at), Health::Healthy);
        assert_eq!(s.record(&c, result(0), at), Health::Healthy);
        assert_eq!(s.record(&c, result(1), at), Health::Healthy);
        assert_eq!(s.record(&c, result(2), at), Health::Unhealthy);
        // A later pass heals it (a standalone Docker container does so too).
        assert_eq!(s.record(&c, result(0), at), Health::Healthy);
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_but_a_pass_ends_it() {
        let c = check(1, Duration::from_secs(10));
        let mut s = HealthState::new();
        for t in [1, 5, 9] {
            assert_eq!(
                s.record(&c, result(1), Duration::from_secs(t)),
                Health::Starting
            );
        }
        assert_eq!(s.failing_streak, 0);
        // Past the start period a failure counts.
        assert_eq!(
            s.record(&c, result(1), Duration::from_secs(10)),
            Health::Unhealthy
        );

        let mut s = HealthState::new();
        assert_eq!(
            s.record(&c, result(0), Duration::from_secs(2)),
            Health::Healthy
        );
        // Once healthy the start period is over: a failure counts at once.
        assert_eq!(
            s.record(&c, result(1), Duration::from_secs(3)),
            Health::Unhealthy
        );
    }

    #[test]
    fn the_log_keeps_the_last_five_probes() {
        let c = check(100, Duration::ZERO);
        let mut s = HealthState::new();
        for code in 0..8 {
            s.record(&c, result(code), Duration::ZERO);
        }
        let codes: Vec<i32> = s.log.iter().map(|r| r.exit_code).collect();
        assert_eq!(codes, [3, 4, 5, 6, 7]);
        assert_eq!(truncate_output("é".repeat(3000)).len(), 4096);
    }

    #[test]
    fn the_service_overrides_the_image_field_by_field_with_dockers_defaults() {
        let image = Healthcheck {
            test: vec!["CMD".into(), "/check".into(), "-q".into()],
            interval: Some(Duration::from_secs(5)),
            timeout: None,
            start_period: Some(Duration::from_secs(7)),
            retries: Some(4),
        };
        let from_image = HealthCheck::resolve(None, Some(&image)).unwrap().unwrap();
        assert_eq!(
            from_image,
            HealthCheck {
                command: vec!["/check".into(), "-q".into()],
                interval: Duration::from_secs(5),
                timeout: DEFAULT_TIMEOUT,
                start_period: Duration::from_secs(7),
                retries: 4,
            }
        );
        let service = HealthConfig {
            test: vec!["CMD-SHELL".into(), "curl -f localhost || exit 1".into()],
            interval_ns: 2_000_000_000,
            retries: 1,
            ..Default::default()
        };
        let merged = HealthCheck::resolve(Some(&service), Some(&image))
            .unwrap()
            .unwrap();
        assert_eq!(
            merged.command,
            ["/bin/sh", "-c", "curl -f localhost || exit 1"]
        );
        assert_eq!(merged.interval, Duration::from_secs(2));
        assert_eq!(merged.start_period, Duration::from_secs(7));
        assert_eq!(merged.retries, 1);
        // Only timing flags: the image's command with the service's timing.
        let timing = HealthConfig {
            timeout_ns: 1_000_000_000,
            ..Default::default()
        };
        let t = HealthCheck::resolve(Some(&timing), Some(&image))
            .unwrap()
            .unwrap();
        assert_eq!((t.command.len(), t.timeout), (2, Duration::from_secs(1)));
        // Docker's defaults when nothing says otherwise.
        let bare = HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            ..Default::default()
        };
        let d = HealthCheck::resolve(Some(&bare), None).unwrap().unwrap();
        assert_eq!(
            (d.interval, d.timeout, d.start_period, d.retries),
            (
                Duration::from_secs(30),
                Duration::from_secs(30),
                Duration::ZERO,
                3
            )
        );
        // NONE disables the image's check; no check anywhere is no check.
        let none = HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        assert_eq!(HealthCheck::resolve(Some(&none), Some(&image)), Ok(None));
        assert_eq!(HealthCheck::resolve(None, None), Ok(None));
        let weird = HealthConfig {
            test: vec!["HTTP".into(), "/".into()],
            ..Default::default()
        };
        assert_eq!(
            HealthCheck::resolve(Some(&weird), None).unwrap_err(),
            "unknown healthcheck type \"HTTP\" (expected CMD, CMD-SHELL or NONE)"
        );
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[tokio::test]
    async fn probes_report_exit_codes_output_and_timeouts() {
        let fake = FakeRuntime::new();
        let target = ExecTarget {
            task_id: "t1".into(),
            pid: 1,
        };
        let mut c = check(1, Duration::ZERO);
        c.timeout = Duration::from_millis(50);
        fake.script_exec("t1", [FakeExec::Exit(3), FakeExec::Hang]);
        let failed = probe(&fake, &target, &c).await;
        assert_eq!(failed.exit_code, 3);
        assert_eq!(failed.output, "true");
        let hung = probe(&fake, &target, &c).await;
        assert_eq!(
            (hung.exit_code, hung.output.as_str()),
            (-1, "Health check exceeded timeout (50ms)")
        );
    }

    #[tokio::test]
    async fn the_monitor_turns_a_failing_task_unhealthy_after_the_retries() {
        let fake = FakeRuntime::new();
        fake.script_exec("t1", [FakeExec::Exit(0), FakeExec::Exit(1)]);
        let target = ExecTarget {
            task_id: "t1".into(),
            pid: 1,
        };
        let mut c = check(2, Duration::ZERO);
        c.interval = Duration::from_millis(10);
        let (tx, mut rx) = watch::channel(HealthState::new());
        let monitor = tokio::spawn(monitor(
            Arc::new(fake.clone()),
            target,
            c,
            tokio::time::Instant::now(),
            tx,
        ));
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            let mut seen = vec![];
            loop {
                rx.changed().await.unwrap();
                let status = rx.borrow().status;
                if seen.last() != Some(&status) {
                    seen.push(status);
                }
                if status == Health::Unhealthy {
                    return seen;
                }
            }
        })
        .await
        .expect("the task never turned unhealthy");
        monitor.abort();
        assert_eq!(seen, [Health::Healthy, Health::Unhealthy]);
        assert_eq!(rx.borrow().failing_streak, 2);
    }
}
