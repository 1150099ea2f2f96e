//! [`TaskRuntime`]: what the agent needs from a runtime (start, watch, stop,
//! exec), so the agent runs `host` tasks, runc tasks and a recording fake the
//! same way.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::{ExecOutput, HostRuntime, RunningTask, RuntimeError, TaskExit, TaskSpec};

/// Which running task an exec enters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTarget {
    /// The task's id (the runc container id is derived from it).
    pub task_id: String,
    /// PID of the task's first process, in the node's PID namespace.
    pub pid: u32,
}

/// A task a [`TaskRuntime`] started.
#[tonic::async_trait]
pub trait TaskHandle: Send + Sync {
    /// PID of the task's first process, in the node's PID namespace.
    fn pid(&self) -> u32;

    /// Waits for the task to end. Cancel-safe (usable in `select!`).
    async fn wait(&mut self) -> Result<TaskExit, RuntimeError>;

    /// Stops the task: its stop signal, then SIGKILL once `grace` has
    /// passed. Returns once every process of the task is gone.
    async fn stop(&mut self, grace: Duration) -> Result<TaskExit, RuntimeError>;

    /// Removes what the ended task leaves behind (root filesystem mount,
    /// bundle, runtime state, cgroup). Idempotent.
    async fn remove(&mut self);

    /// Lets the task run on without this handle (the daemon exits; a
    /// restarted daemon adopts the task, as Docker's live-restore): dropping
    /// the handle afterwards neither kills nor removes anything.
    fn detach(&mut self);
}

/// Starts tasks and runs commands inside them.
#[tonic::async_trait]
pub trait TaskRuntime: Send + Sync {
    /// The runtime's name, for logs (`host`, `runc`, `fake`).
    fn name(&self) -> &'static str;

    /// Starts `spec`; returns once its command runs. On error nothing of the
    /// task is left (no mount, no process, no state).
    async fn start(&self, spec: &TaskSpec) -> Result<Box<dyn TaskHandle>, RuntimeError>;

    /// Finds again the task `spec` describes that an earlier daemon started
    /// and left running (live-restore); `None` if it no longer runs as that
    /// daemon recorded it.
    async fn adopt(&self, spec: &TaskSpec) -> Option<Box<dyn TaskHandle>>;

    /// Runs `args` inside the running task `target` with the task's
    /// environment plus `env`, collecting its output.
    async fn exec(
        &self,
        target: &ExecTarget,
        args: &[String],
        env: &[String],
    ) -> Result<ExecOutput, RuntimeError>;
}

#[tonic::async_trait]
impl TaskHandle for RunningTask {
    fn pid(&self) -> u32 {
        RunningTask::pid(self)
    }

    async fn wait(&mut self) -> Result<TaskExit, RuntimeError> {
        RunningTask::wait(self).await
    }

    async fn stop(&mut self, grace: Duration) -> Result<TaskExit, RuntimeError> {
        let signal = self.stop_signal();
        RunningTask::stop_with(self, signal, grace).await
    }

    async fn remove(&mut self) {}

    fn detach(&mut self) {
        RunningTask::detach(self);
    }
}

#[tonic::async_trait]
impl TaskRuntime for HostRuntime {
    fn name(&self) -> &'static str {
        "host"
    }

    async fn start(&self, spec: &TaskSpec) -> Result<Box<dyn TaskHandle>, RuntimeError> {
        let mut task = HostRuntime::start(self, spec).await?;
        if let Some(signal) = spec.stop_signal()? {
            task.set_stop_signal(signal);
        }
        Ok(Box::new(task))
    }

    async fn adopt(&self, spec: &TaskSpec) -> Option<Box<dyn TaskHandle>> {
        let mut task = HostRuntime::adopt(self, &spec.task_id, &spec.dir)?;
        if let Ok(Some(signal)) = spec.stop_signal() {
            task.set_stop_signal(signal);
        }
        Some(Box::new(task))
    }

    async fn exec(
        &self,
        target: &ExecTarget,
        args: &[String],
        env: &[String],
    ) -> Result<ExecOutput, RuntimeError> {
        HostRuntime::exec(self, target.pid, args, env).await
    }
}

/// Parses a signal as Docker's `--stop-signal` takes it: `SIGTERM`, `TERM`
/// or a number.
pub fn parse_signal(text: &str) -> Option<Signal> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_as_docker_takes_them() {
        assert_eq!(parse_signal("SIGTERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("quit"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("SIGNOPE"), None);
        assert_eq!(parse_signal("999"), None);
    }
}
