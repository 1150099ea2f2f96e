//! Docker's convergence progress for `service create/update/scale/rollback` and `node update
//! --availability drain`: what `docker service create` shows while it waits (docker/cli's
//! `cli/command/service/progress`).
//!
//! Three parts:
//! - the updaters ([`Updater`]) turn one poll (the service, its up-to-date tasks, the nodes
//!   that are not down) into progress lines, as Docker's `progressUpdater`s do: `overall
//!   progress: 2 out of 3 tasks`, one line per slot (`1/3: running   [=====>]`, or the task's
//!   error, or why the scheduler cannot place it), `job progress`/`active tasks` for jobs;
//! - the [`Renderer`] writes them: on a terminal each id keeps its line and is redrawn in
//!   place (Docker's `jsonmessage` cursor movement, bars when the terminal is wider than 110
//!   columns); otherwise one plain `id: text` line whenever an id's text changes;
//! - the wait loops ([`service`], [`drain`]) poll every 200 ms with no time limit: they end
//!   when the service converged (then `verify: Service converged` after its monitor period,
//!   or `job complete`), on a paused update, or on Ctrl-C ("Operation continuing in
//!   background.": the swarm keeps converging).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use mini_proto::v1::{
    GetRequest, ListNodesRequest, ListTasksRequest, NodeState, Service, Task, TaskState,
    UpdateState, control_client::ControlClient, service_spec::Mode,
};
use tonic::transport::Channel;

/// Time between two polls (Docker's).
const POLL: Duration = Duration::from_millis(200);

/// How long a converged service must stay converged before it is reported so, when its
/// update config names no monitor period (Docker's default).
const DEFAULT_MONITOR: Duration = Duration::from_secs(5);

/// More slots than this: only the overall line (Docker's `maxProgressBars`).
const MAX_PROGRESS_BARS: usize = 20;

/// The width state names are padded to (`preparing`, `allocated`).
const LONGEST_STATE: usize = 9;

/// Docker's numbering of task states (the bars' length: running is 9 of 9).
fn numbered(state: TaskState) -> i64 {
    match state {
        TaskState::New => 1,
        TaskState::Pending => 3,
        TaskState::Assigned => 4,
        TaskState::Accepted => 5,
        TaskState::Preparing => 6,
        TaskState::Ready => 7,
        TaskState::Starting => 8,
        TaskState::Running => 9,
        TaskState::Complete => 10,
        TaskState::Shutdown => 11,
        TaskState::Failed => 12,
        TaskState::Rejected => 13,
        TaskState::Remove | TaskState::Orphaned => 14,
    }
}

fn terminal_state(state: TaskState) -> bool {
    numbered(state) > numbered(TaskState::Running)
}

/// Docker's lower-case state name (`running`).
fn state_word(state: TaskState) -> String {
    mini_proto::state_name(state).to_ascii_lowercase()
}

/// One line of progress: an id (`overall progress`, `1/3`, a node id, `verify`) and its text;
/// `bar` is (current, total) for the bar drawn on a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// What the line is about; each id keeps its own line on a terminal.
    pub id: String,
    /// Its text.
    pub text: String,
    /// The bar's (current, total), if it has one.
    pub bar: Option<(i64, i64)>,
}

impl Line {
    fn new(id: impl Into<String>, text: impl Into<String>) -> Self {
        Line {
            id: id.into(),
            text: text.into(),
            bar: None,
        }
    }

    fn with_bar(id: impl Into<String>, text: impl Into<String>, current: i64, total: i64) -> Self {
        Line {
            id: id.into(),
            text: text.into(),
            bar: Some((current, total)),
        }
    }
}

/// Long errors and newlines would break the layout (Docker's `truncError`).
fn trunc_error(err: &str) -> String {
    let err = err.replace('\n', " ");
    if err.chars().count() > 75 {
        let mut short: String = err.chars().take(74).collect();
        short.push('…');
        short
    } else {
        err
    }
}

/// What a task's line says: its error, else why it waits (the scheduler's "no suitable node
/// (...)" on a pending task), else its state padded and its bar.
fn task_line(id: String, task: &Task, total: i64) -> Option<Line> {
    let status = task.status.clone().unwrap_or_default();
    if !status.err.is_empty() {
        return Some(Line::new(id, trunc_error(&status.err)));
    }
    let state = status.state();
    if state == TaskState::Pending && status.message.starts_with("no suitable node") {
        return Some(Line::new(id, trunc_error(&status.message)));
    }
    if terminal_state(task.desired_state()) || (terminal_state(state) && total != 10) {
        return None;
    }
    Some(Line::with_bar(
        id,
        format!("{:<LONGEST_STATE$}", state_word(state)),
        numbered(state),
        total,
    ))
}

fn overall(lines: &mut Vec<Line>, done: usize, want: usize, rollback: bool) {
    lines.push(Line::new(
        "overall progress",
        if rollback {
            format!("rolling back update: {done} out of {want} tasks")
        } else {
            format!("{done} out of {want} tasks")
        },
    ));
}

/// Of two tasks for one slot (or node), the one shown: the lower desired state, then the
/// lower observed state (Docker's rule; restarts and start-first updates leave two).
fn preferred<'a>(existing: Option<&'a Task>, task: &'a Task) -> &'a Task {
    let Some(existing) = existing else {
        return task;
    };
    let state = |t: &Task| numbered(mini_manager::orchestrator::observed_state(t));
    let desired = |t: &Task| numbered(t.desired_state());
    if desired(existing) < desired(task)
        || (desired(existing) == desired(task) && state(existing) <= state(task))
    {
        existing
    } else {
        task
    }
}

/// The per-mode progress of one service, fed one poll at a time.
#[derive(Debug)]
pub enum Updater {
    /// A replicated service: one line per slot.
    Replicated {
        /// Slot number → line number (1..), in order of first sight.
        slots: BTreeMap<u64, usize>,
        /// The lines were laid out.
        initialized: bool,
        /// Converged once (slot lines are no longer redrawn while it stays so).
        done: bool,
    },
    /// A global service: one line per node.
    Global {
        /// The lines were laid out.
        initialized: bool,
        /// Converged once.
        done: bool,
    },
    /// A replicated job: `job progress` and `active tasks`, one line per slot.
    ReplicatedJob {
        /// The job iteration followed.
        iteration: u64,
        /// Tasks run at once.
        concurrent: usize,
        /// Completions wanted.
        total: usize,
        /// The lines were laid out.
        initialized: bool,
    },
    /// A global job: `job progress`, one line per node of the first poll.
    GlobalJob {
        /// The job iteration followed.
        iteration: u64,
        /// The nodes it runs on (`None` until its tasks exist).
        nodes: Option<HashSet<String>>,
    },
}

/// One poll: what the wait read.
#[derive(Debug, Clone, Copy)]
pub struct Poll<'a> {
    /// The service.
    pub service: &'a Service,
    /// Its tasks made from its current spec (Docker's `_up-to-date` tasks).
    pub tasks: &'a [Task],
    /// Nodes not down.
    pub active_nodes: &'a HashSet<String>,
    /// A rollback is under way.
    pub rollback: bool,
}

impl Updater {
    /// The updater for the service's mode.
    pub fn for_service(service: &Service) -> Updater {
        let spec = service.spec.clone().unwrap_or_default();
        let iteration = mini_manager::orchestrator::job_iteration(service);
        match spec.mode {
            Some(Mode::Global(_)) => Updater::Global {
                initialized: false,
                done: false,
            },
            Some(Mode::ReplicatedJob(job)) => {
                let (concurrent, total) = mini_manager::orchestrator::job_counts(&job);
                Updater::ReplicatedJob {
                    iteration,
                    concurrent: concurrent as usize,
                    total: total as usize,
                    initialized: false,
                }
            }
            Some(Mode::GlobalJob(_)) => Updater::GlobalJob {
                iteration,
                nodes: None,
            },
            _ => Updater::Replicated {
                slots: BTreeMap::new(),
                initialized: false,
                done: false,
            },
        }
    }

    /// Whether the service is a job (its end is `job complete`, not a verified convergence).
    pub fn is_job(&self) -> bool {
        matches!(
            self,
            Updater::ReplicatedJob { .. } | Updater::GlobalJob { .. }
        )
    }

    /// The lines of this poll, and whether the service converged (every task running; for a
    /// job: every completion done).
    pub fn update(&mut self, poll: Poll<'_>) -> (Vec<Line>, bool) {
        match self {
            Updater::Replicated {
                slots,
                initialized,
                done,
            } => replicated(poll, slots, initialized, done),
            Updater::Global { initialized, done } => global(poll, initialized, done),
            Updater::ReplicatedJob {
                iteration,
                concurrent,
                total,
                initialized,
            } => replicated_job(poll, *iteration, *concurrent, *total, initialized),
            Updater::GlobalJob { iteration, nodes } => global_job(poll, *iteration, nodes),
        }
    }
}

/// A replicated service's lines: `overall progress` and one line per slot (its first slots
/// numbered 1..N in the order they appear).
fn replicated(
    poll: Poll<'_>,
    slots: &mut BTreeMap<u64, usize>,
    initialized: &mut bool,
    done: &mut bool,
) -> (Vec<Line>, bool) {
    let mut lines = Vec::new();
    let replicas = match poll.service.spec.as_ref().and_then(|s| s.mode.as_ref()) {
        Some(Mode::Replicas(n)) => *n as usize,
        _ => 0,
    };
    if !*initialized {
        overall(&mut lines, 0, replicas, poll.rollback);
        if replicas <= MAX_PROGRESS_BARS {
            for i in 1..=replicas {
                lines.push(Line::new(format!("{i}/{replicas}"), " "));
            }
        }
        *initialized = true;
    }
    let mut by_slot: BTreeMap<u64, &Task> = BTreeMap::new();
    for task in poll.tasks {
        if !task.node_id.is_empty() && !poll.active_nodes.contains(&task.node_id) {
            continue;
        }
        let existing = by_slot.get(&task.slot).copied();
        by_slot.insert(task.slot, preferred(existing, task));
    }
    if *done && by_slot.values().any(|t| state(t) != TaskState::Running) {
        *done = false;
    }
    let mut running = 0;
    for (slot, task) in &by_slot {
        let next = slots.len() + 1;
        let mapped = *slots.entry(*slot).or_insert(next);
        if !terminal_state(task.desired_state()) && state(task) == TaskState::Running {
            running += 1;
        }
        if !*done && replicas <= MAX_PROGRESS_BARS && mapped <= replicas {
            lines.extend(task_line(format!("{mapped}/{replicas}"), task, 9));
        }
    }
    if !*done {
        overall(&mut lines, running, replicas, poll.rollback);
        if running == replicas {
            *done = true;
        }
    }
    (lines, running == replicas)
}

/// A global service's lines: `overall progress` and one line per node.
fn global(poll: Poll<'_>, initialized: &mut bool, done: &mut bool) -> (Vec<Line>, bool) {
    let mut lines = Vec::new();
    let mut by_node: BTreeMap<&str, &Task> = BTreeMap::new();
    for task in poll.tasks {
        let existing = by_node.get(task.node_id.as_str()).copied();
        by_node.insert(&task.node_id, preferred(existing, task));
    }
    let nodes = by_node.len();
    if !*initialized {
        if nodes == 0 {
            lines.push(Line::new("overall progress", "waiting for new tasks"));
            return (lines, false);
        }
        overall(&mut lines, 0, nodes, poll.rollback);
        *initialized = true;
    }
    if *done && by_node.values().any(|t| state(t) != TaskState::Running) {
        *done = false;
    }
    let mut running = 0;
    for (node, task) in &by_node {
        if !poll.active_nodes.contains(*node) {
            continue;
        }
        if !terminal_state(task.desired_state()) && state(task) == TaskState::Running {
            running += 1;
        }
        if !*done && nodes <= MAX_PROGRESS_BARS {
            lines.extend(task_line(crate::views::short(node).to_string(), task, 9));
        }
    }
    if !*done {
        overall(&mut lines, running, nodes, poll.rollback);
        if running == nodes {
            *done = true;
        }
    }
    (lines, running == nodes)
}

/// A replicated job's lines: `job progress`, `active tasks` and one line per slot of the
/// iteration followed.
fn replicated_job(
    poll: Poll<'_>,
    iteration: u64,
    concurrent: usize,
    total: usize,
    initialized: &mut bool,
) -> (Vec<Line>, bool) {
    let mut lines = Vec::new();
    let digits = total.to_string().len();
    let job_lines = |lines: &mut Vec<Line>, active: usize, complete: usize| {
        lines.push(Line::with_bar(
            "job progress",
            format!("{complete:>digits$} out of {total} complete"),
            complete as i64,
            total as i64,
        ));
        let want = (total - complete.min(total)).min(concurrent);
        let width = concurrent.to_string().len();
        lines.push(Line::new(
            "active tasks",
            format!("{active:>width$} out of {want:>width$} tasks"),
        ));
    };
    if !*initialized {
        job_lines(&mut lines, 0, 0);
        if total <= MAX_PROGRESS_BARS {
            for i in 1..=total {
                lines.push(Line::new(format!("{i}/{total}"), " "));
            }
        }
        *initialized = true;
    }
    let mut by_slot: BTreeMap<u64, &Task> = BTreeMap::new();
    for task in poll.tasks.iter().filter(|t| t.job_iteration == iteration) {
        match by_slot.get(&task.slot) {
            Some(existing) if numbered(state(existing)) <= numbered(state(task)) => {}
            _ => {
                by_slot.insert(task.slot, task);
            }
        }
    }
    let (mut active, mut complete) = (0, 0);
    for (slot, task) in &by_slot {
        if total <= MAX_PROGRESS_BARS {
            lines.extend(task_line(format!("{slot}/{total}"), task, 10));
        }
        if numbered(state(task)) < numbered(TaskState::Complete) {
            active += 1;
        }
        if state(task) == TaskState::Complete {
            complete += 1;
        }
    }
    job_lines(&mut lines, active, complete);
    (lines, complete >= total)
}

/// A global job's lines: `job progress` and one line per node of the first poll that had
/// the iteration's tasks.
fn global_job(
    poll: Poll<'_>,
    iteration: u64,
    nodes: &mut Option<HashSet<String>>,
) -> (Vec<Line>, bool) {
    let mut lines = Vec::new();
    let of_iteration: Vec<&Task> = poll
        .tasks
        .iter()
        .filter(|t| t.job_iteration == iteration)
        .collect();
    if nodes.is_none() {
        if of_iteration.is_empty() && !poll.active_nodes.is_empty() {
            lines.push(Line::new("job progress", "waiting for tasks"));
            return (lines, false);
        }
        *nodes = Some(of_iteration.iter().map(|t| t.node_id.clone()).collect());
    }
    let nodes = nodes.as_ref().map_or(0, HashSet::len);
    let digits = nodes.to_string().len();
    let mut by_node: BTreeMap<&str, &Task> = BTreeMap::new();
    for task in of_iteration {
        match by_node.get(task.node_id.as_str()) {
            Some(existing) if numbered(state(existing)) <= numbered(state(task)) => {}
            _ => {
                by_node.insert(&task.node_id, task);
            }
        }
    }
    let mut complete = 0;
    for (node, task) in &by_node {
        if nodes <= MAX_PROGRESS_BARS {
            lines.extend(task_line(crate::views::short(node).to_string(), task, 10));
        }
        if state(task) == TaskState::Complete {
            complete += 1;
        }
    }
    lines.push(Line::with_bar(
        "job progress",
        format!("{complete:>digits$} out of {nodes} complete"),
        complete as i64,
        nodes as i64,
    ));
    (lines, complete == nodes)
}

/// A task's observed state.
fn state(task: &Task) -> TaskState {
    mini_manager::orchestrator::observed_state(task)
}

/// Writes progress lines: redrawn in place on a terminal, or one plain line per change.
#[derive(Debug)]
pub struct Renderer {
    terminal: bool,
    width: u16,
    /// Terminal: the line number of each id since the last message.
    rows: HashMap<String, usize>,
    /// Plain: the last text written for each id.
    last: HashMap<String, String>,
}

impl Renderer {
    /// A renderer for a terminal `width` columns wide, or (`terminal` false) for a pipe or file.
    pub fn new(terminal: bool, width: u16) -> Self {
        Renderer {
            terminal,
            width,
            rows: HashMap::new(),
            last: HashMap::new(),
        }
    }

    /// A renderer for this process's stdout.
    pub fn stdout() -> Self {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
        Renderer::new(terminal, if terminal { terminal_width() } else { 0 })
    }

    /// Writes one progress line.
    pub fn line(&mut self, out: &mut dyn Write, line: &Line) {
        if !self.terminal {
            let text = line.text.trim_end();
            if text.is_empty() || self.last.get(&line.id).is_some_and(|t| t == text) {
                return;
            }
            self.last.insert(line.id.clone(), text.to_string());
            let _ = writeln!(out, "{}: {text}", line.id);
            return;
        }
        let next = self.rows.len();
        let row = *self.rows.entry(line.id.clone()).or_insert_with(|| {
            let _ = writeln!(out);
            next
        });
        let up = self.rows.len() - row;
        let bar = match line.bar {
            Some((current, total)) if total > 0 && self.width > 110 => {
                let filled = ((current as f64 / total as f64 * 100.0) as usize / 2).min(50);
                format!("[{}>{}] ", "=".repeat(filled), " ".repeat(50 - filled))
            }
            _ => String::new(),
        };
        let _ = write!(
            out,
            "\x1b[{up}A\x1b[2K\r{}: {} {bar}\r\x1b[{up}B",
            line.id, line.text
        );
        let _ = out.flush();
    }

    /// Writes a message below the progress lines (`verify: Service converged`, `job
    /// complete`): the lines above are not redrawn after it.
    pub fn message(&mut self, out: &mut dyn Write, id: &str, text: &str) {
        self.rows.clear();
        self.last.remove(id);
        if id.is_empty() {
            let _ = writeln!(out, "{text}");
        } else {
            let _ = writeln!(out, "{id}: {text}");
        }
        let _ = out.flush();
    }
}

/// The terminal's width in columns (200 when it cannot be read, as Docker).
fn terminal_width() -> u16 {
    let mut size = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the valid, writable struct passed; fd 1
    // is only read from.
    let ok = unsafe { nix::libc::ioctl(1, nix::libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        size.ws_col
    } else {
        200
    }
}

/// How the wait ended when it did not converge.
fn interrupted(out: &mut dyn Write, renderer: &mut Renderer, what: &str) {
    renderer.message(out, "", "Operation continuing in background.");
    renderer.message(
        out,
        "",
        &format!("Use `mini service ps {what}` to check progress."),
    );
}

/// Why a wait for a service was started: an update or rollback ends on its update status,
/// a create or scale only on the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// `service create` / `service scale`.
    Converge,
    /// `service update`.
    Update,
    /// `service rollback` / `service update --rollback`.
    Rollback,
}

/// Waits until the service converged, drawing Docker's progress on stdout; no time limit
/// (Ctrl-C ends the wait, the swarm goes on). An update that pauses, or that the swarm rolled
/// back when `wait` is [`Wait::Update`], ends with an error carrying its status message.
pub async fn service(
    client: &mut ControlClient<Channel>,
    service_id: &str,
    wait: Wait,
    quiet: bool,
) -> Result<()> {
    let mut out: Box<dyn Write> = if quiet {
        Box::new(std::io::sink())
    } else {
        Box::new(std::io::stdout())
    };
    let out = out.as_mut();
    let mut renderer = Renderer::stdout();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut updater: Option<Updater> = None;
    let mut converged_at: Option<Instant> = None;
    let mut rollback = false;
    let mut rolled_back: Option<String> = None;
    loop {
        let service = client
            .get_service(GetRequest {
                name_or_id: service_id.to_string(),
            })
            .await?
            .into_inner();
        let spec = service.spec.clone().unwrap_or_default();
        let monitor = spec
            .update
            .as_ref()
            .filter(|u| u.monitor_ms > 0)
            .map_or(DEFAULT_MONITOR, |u| Duration::from_millis(u.monitor_ms));
        let updater = updater.get_or_insert_with(|| Updater::for_service(&service));
        let status = service.update_status.clone().unwrap_or_default();
        let update_state = status.state();
        match update_state {
            UpdateState::Updating => rollback = false,
            UpdateState::Paused => bail!("service update paused: {}", status.message),
            UpdateState::RollbackPaused => bail!("service rollback paused: {}", status.message),
            UpdateState::RollbackStarted => {
                if !rollback && !status.message.is_empty() {
                    renderer.line(out, &Line::new("rollback", status.message.clone()));
                }
                rollback = true;
            }
            UpdateState::RollbackCompleted => {
                // `service update` whose update the swarm rolled back: it ends in an error.
                if wait == Wait::Update {
                    rolled_back = Some(status.message.clone());
                }
                rollback = true;
            }
            _ => {}
        }
        // An update is complete once the swarm says so (after its own monitor period).
        let settled = wait == Wait::Converge
            || !matches!(
                update_state,
                UpdateState::Updating | UpdateState::RollbackStarted
            );
        if let Some(at) = converged_at
            && at.elapsed() >= monitor
            && settled
        {
            renderer.message(out, "verify", "Service converged");
            if let Some(message) = rolled_back {
                renderer.message(out, "rollback", &message);
                bail!("service rolled back: {message}");
            }
            return Ok(());
        }
        let all = client
            .list_tasks(ListTasksRequest {
                service: service.id.clone(),
            })
            .await?
            .into_inner()
            .tasks;
        let tasks: Vec<Task> = all
            .into_iter()
            .filter(|t| updater.is_job() || !mini_manager::orchestrator::is_outdated(t, &spec))
            .collect();
        let active_nodes = active_nodes(client).await?;
        let (lines, converged) = updater.update(Poll {
            service: &service,
            tasks: &tasks,
            active_nodes: &active_nodes,
            rollback,
        });
        for line in &lines {
            renderer.line(out, line);
        }
        if converged {
            if updater.is_job() {
                renderer.message(out, "", "job complete");
                return Ok(());
            }
            let at = *converged_at.get_or_insert_with(Instant::now);
            let left = monitor.saturating_sub(at.elapsed());
            renderer.line(
                out,
                &Line::new(
                    "verify",
                    format!(
                        "Waiting {} seconds to verify that tasks are stable...",
                        left.as_secs() + 1
                    ),
                ),
            );
        } else {
            if converged_at.is_some() {
                renderer.line(out, &Line::new("verify", "Detected task failure"));
            }
            converged_at = None;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = &mut ctrl_c => {
                if converged_at.is_none() {
                    interrupted(out, &mut renderer, &spec.name);
                }
                return Ok(());
            }
        }
    }
}

/// The ids of the nodes that are not down.
async fn active_nodes(client: &mut ControlClient<Channel>) -> Result<HashSet<String>> {
    Ok(client
        .list_nodes(ListNodesRequest {})
        .await?
        .into_inner()
        .nodes
        .into_iter()
        .filter(|n| n.status.as_ref().map(|s| s.state()) != Some(NodeState::Down))
        .map(|n| n.id)
        .collect())
}

/// The lines of a drain: how many of the tasks that ran on the node are still there, and
/// one line per task still on it (its service's name and slot, and its state).
pub fn drain_lines(node_id: &str, tasks: &[Task], total: usize) -> (Vec<Line>, bool) {
    let state = mini_manager::orchestrator::observed_state;
    let left: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.node_id == node_id && !terminal_state(state(t)))
        .collect();
    let moved = total.saturating_sub(left.len());
    let mut lines = vec![Line::with_bar(
        "overall progress",
        format!("{moved} out of {total} tasks moved off the node"),
        moved as i64,
        total as i64,
    )];
    if left.len() <= MAX_PROGRESS_BARS {
        for task in &left {
            lines.push(Line::new(
                mini_proto::task_name(task),
                format!(
                    "{:<LONGEST_STATE$} (desired {})",
                    state_word(state(task)),
                    state_word(task.desired_state())
                ),
            ));
        }
    }
    (lines, left.is_empty())
}

/// `node update --availability drain`: waits until no task runs on the node any more (they
/// are shut down and, for services, started elsewhere), drawing the progress.
pub async fn drain(client: &mut ControlClient<Channel>, node_id: &str) -> Result<()> {
    let mut out = std::io::stdout();
    let mut renderer = Renderer::stdout();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut total: Option<usize> = None;
    loop {
        let tasks = client
            .list_tasks(ListTasksRequest {
                service: String::new(),
            })
            .await?
            .into_inner()
            .tasks;
        let state = mini_manager::orchestrator::observed_state;
        let on_node = tasks
            .iter()
            .filter(|t| t.node_id == node_id && !terminal_state(state(t)))
            .count();
        let total = *total.get_or_insert(on_node);
        let (lines, done) = drain_lines(node_id, &tasks, total);
        for line in &lines {
            renderer.line(&mut out, line);
        }
        if done {
            renderer.message(&mut out, "verify", "Node drained");
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = &mut ctrl_c => {
                renderer.message(&mut out, "", "Operation continuing in background.");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests;
