//! A recording [`TaskRuntime`] for tests: it starts nothing, records every
//! call, and lets the test end tasks (or make starts fail) at will.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::task_runtime::{ExecTarget, TaskHandle, TaskRuntime};
use super::{ExecOutput, RuntimeError, TaskExit, TaskSpec};

/// One call the fake saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeCall {
    /// `start` of this task (its id and args).
    Start(String, Vec<String>),
    /// `stop` of this task.
    Stop(String),
    /// `remove` of this task.
    Remove(String),
    /// `exec` in this task.
    Exec(String, Vec<String>),
    /// `detach` of this task (left running).
    Detach(String),
    /// `adopt` of this task, and whether it was found running.
    Adopt(String, bool),
}

/// What a scripted `exec` in the fake does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeExec {
    /// Ends at once with this exit code (its stdout is the command line).
    Exit(i32),
    /// Never ends.
    Hang,
}

#[derive(Default)]
struct Inner {
    /// Task id → what its next execs do, in order; the last one repeats.
    exec_script: HashMap<String, std::collections::VecDeque<FakeExec>>,
    calls: Vec<FakeCall>,
    /// Task id → the sender that ends it.
    running: HashMap<String, watch::Sender<Option<TaskExit>>>,
    /// Task ids whose start fails, with the error message.
    fail_start: HashMap<String, String>,
    next_pid: u32,
    /// Starts under way now, and the most there were at once.
    starting: usize,
    most_starting: usize,
}

/// The recording fake. Cheap to clone (clones share their record).
#[derive(Clone, Default)]
pub struct FakeRuntime {
    inner: Arc<Mutex<Inner>>,
    /// True: starts wait until it turns false again ([`FakeRuntime::hold_starts`]).
    held: Arc<watch::Sender<bool>>,
}

impl FakeRuntime {
    /// A fake with no tasks.
    pub fn new() -> Self {
        FakeRuntime::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<FakeCall> {
        self.lock().calls.clone()
    }

    /// The ids of the tasks running now, sorted.
    pub fn running(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().running.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Makes the next start of `task_id` fail with `message`.
    pub fn fail_start(&self, task_id: &str, message: &str) {
        self.lock()
            .fail_start
            .insert(task_id.into(), message.into());
    }

    /// Scripts the execs in `task_id`: each exec takes the next entry, the last one repeats
    /// (unscripted tasks' execs end with 0).
    pub fn script_exec(&self, task_id: &str, script: impl IntoIterator<Item = FakeExec>) {
        self.lock()
            .exec_script
            .insert(task_id.into(), script.into_iter().collect());
    }

    /// Makes every start wait (`true`) until called with `false`: a slow node.
    pub fn hold_starts(&self, held: bool) {
        self.held.send_replace(held);
    }

    /// How many starts are under way now (waiting while held), and the most there were at once.
    pub fn starting(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.starting, inner.most_starting)
    }

    /// Ends the running task `task_id` as `exit`; false if it does not run.
    pub fn exit(&self, task_id: &str, exit: TaskExit) -> bool {
        match self.lock().running.remove(task_id) {
            Some(tx) => tx.send(Some(exit)).is_ok(),
            None => false,
        }
    }
}

struct FakeTask {
    runtime: FakeRuntime,
    task_id: String,
    pid: u32,
    ended: watch::Receiver<Option<TaskExit>>,
}

#[tonic::async_trait]
impl TaskHandle for FakeTask {
    fn pid(&self) -> u32 {
        self.pid
    }

    async fn wait(&mut self) -> Result<TaskExit, RuntimeError> {
        let ended = self
            .ended
            .wait_for(Option::is_some)
            .await
            .map(|v| v.unwrap_or(TaskExit::Signaled(9)))
            .unwrap_or(TaskExit::Signaled(9));
        Ok(ended)
    }

    async fn stop(&mut self, _grace: Duration) -> Result<TaskExit, RuntimeError> {
        self.runtime
            .lock()
            .calls
            .push(FakeCall::Stop(self.task_id.clone()));
        self.runtime.exit(&self.task_id, TaskExit::Signaled(15));
        self.wait().await
    }

    async fn remove(&mut self) {
        let mut inner = self.runtime.lock();
        inner.running.remove(&self.task_id);
        inner.calls.push(FakeCall::Remove(self.task_id.clone()));
    }

    fn detach(&mut self) {
        self.runtime
            .lock()
            .calls
            .push(FakeCall::Detach(self.task_id.clone()));
    }
}

#[tonic::async_trait]
impl TaskRuntime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn start(&self, spec: &TaskSpec) -> Result<Box<dyn TaskHandle>, RuntimeError> {
        {
            let mut inner = self.lock();
            inner.starting += 1;
            inner.most_starting = inner.most_starting.max(inner.starting);
            inner
                .calls
                .push(FakeCall::Start(spec.task_id.clone(), spec.args.clone()));
        }
        let mut held = self.held.subscribe();
        let _ = held.wait_for(|h| !*h).await;
        let mut inner = self.lock();
        inner.starting -= 1;
        if let Some(message) = inner.fail_start.remove(&spec.task_id) {
            return Err(RuntimeError::StartFailed {
                task_id: spec.task_id.clone(),
                message,
                exit: TaskExit::Exited(127),
            });
        }
        inner.next_pid += 1;
        let (tx, rx) = watch::channel(None);
        inner.running.insert(spec.task_id.clone(), tx);
        Ok(Box::new(FakeTask {
            runtime: self.clone(),
            task_id: spec.task_id.clone(),
            pid: 1000 + inner.next_pid,
            ended: rx,
        }))
    }

    async fn adopt(&self, spec: &TaskSpec) -> Option<Box<dyn TaskHandle>> {
        let mut inner = self.lock();
        let ended = inner.running.get(&spec.task_id).map(|tx| tx.subscribe());
        inner
            .calls
            .push(FakeCall::Adopt(spec.task_id.clone(), ended.is_some()));
        let ended = ended?;
        inner.next_pid += 1;
        Some(Box::new(FakeTask {
            runtime: self.clone(),
            task_id: spec.task_id.clone(),
            pid: 1000 + inner.next_pid,
            ended,
        }))
    }

    async fn exec(
        &self,
        target: &ExecTarget,
        args: &[String],
        _env: &[String],
    ) -> Result<ExecOutput, RuntimeError> {
        let next = {
            let mut inner = self.lock();
            inner
                .calls
                .push(FakeCall::Exec(target.task_id.clone(), args.to_vec()));
            match inner.exec_script.get_mut(&target.task_id) {
                Some(script) if script.len() > 1 => script.pop_front(),
                Some(script) => script.front().copied(),
                None => None,
            }
            .unwrap_or(FakeExec::Exit(0))
        };
        let code = match next {
            FakeExec::Exit(code) => code,
            FakeExec::Hang => std::future::pending().await,
        };
        Ok(ExecOutput {
            exit: TaskExit::Exited(code),
            stdout: args.join(" ").into_bytes(),
            stderr: Vec::new(),
        })
    }
}
