//! The agent with a fake kernel and a fake runtime: assignments in, task
//! states out, sandboxes made and removed, failures reported.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use mini_netdriver::{DriverConfig, FakeKernel, NetDriver};
use mini_proto::v1::{
    Assignments, ContainerSpec, HealthConfig, Network, NetworkAttachment, Task, TaskState,
    TaskStatus,
};

use super::dns_link::NodeDns;
use super::executor::Executor;
use super::images::DirImageSource;
use super::network::NodeNetwork;
use super::worker::{ImageRuntime, Runtimes, Shared, WorkerConfig};
use crate::gossip::{EndpointRecord, Gossip, GossipConfig, GossipKeys};
use crate::runtime::TaskExit;
use crate::runtime::fake::{FakeCall, FakeExec, FakeRuntime};

const PATIENCE: Duration = Duration::from_secs(10);

struct Fixture {
    _dir: tempfile::TempDir,
    shared: Arc<Shared<FakeKernel>>,
    executor: Arc<Executor<FakeKernel>>,
    host: FakeRuntime,
    images: FakeRuntime,
    /// The latest status of every task, as reported.
    seen: std::collections::BTreeMap<String, TaskStatus>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = WorkerConfig {
            run_dir: dir.path().join("run"),
            state_dir: dir.path().join("state"),
            self_exe: "/nonexistent/mini".into(),
            node_key: None,
            trust: mini_proto::tls::Trust::new(&dir.path().join("state")),
            stop_grace: Duration::from_secs(1),
            engine_labels: Default::default(),
            metrics: Default::default(),
        };
        let image_dir = dir.path().join("state/images/dirs/busybox/latest/rootfs");
        std::fs::create_dir_all(&image_dir).unwrap();
        let (host, images) = (FakeRuntime::new(), FakeRuntime::new());
        let runtimes = Runtimes {
            host: Arc::new(host.clone()),
            images: Some(ImageRuntime {
                runtime: Arc::new(images.clone()),
                source: Arc::new(DirImageSource::new(dir.path().join("state/images/dirs"))),
            }),
        };
        let vtep = Ipv4Addr::new(10, 0, 0, 1);
        let driver = NetDriver::new(DriverConfig::new(&config.run_dir, vtep), FakeKernel::new());
        let shared = Arc::new(Shared::new(
            config,
            runtimes,
            NodeNetwork::new(driver, "node1".into()),
            "node1".into(),
            vtep,
            7946,
            NodeDns::disabled(),
        ));
        let executor = Executor::new(Arc::clone(&shared));
        Fixture {
            _dir: dir,
            shared,
            executor,
            host,
            images,
            seen: Default::default(),
        }
    }

    /// Assigns `task_id` (busybox, desired running) and waits until it runs.
    async fn run_busybox(&mut self, task_id: &str) {
        self.executor
            .apply(assign(vec![task(task_id, "busybox", TaskState::Running)]))
            .await;
        self.wait_state(task_id, TaskState::Running).await;
    }

    /// Waits until `task_id` is reported in `state`; returns that status.
    async fn wait_state(&mut self, task_id: &str, state: TaskState) -> TaskStatus {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(s) = self.seen.get(task_id)
                && s.state() == state
            {
                return s.clone();
            }
            let batch = tokio::time::timeout_at(deadline, self.shared.reporter.take())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{task_id} never reported {state:?}; last seen: {:?}",
                        self.seen.get(task_id)
                    )
                });
            for u in batch {
                self.seen.insert(u.task_id, u.status.unwrap_or_default());
            }
        }
    }

    /// Starts the node's gossip agent on loopback, so published endpoints can be read back.
    async fn start_gossip(&self) {
        let config = GossipConfig::new(
            "node1",
            "127.0.0.1:0".parse().unwrap(),
            GossipKeys::random(1),
        );
        *self.shared.gossip.write().await = Some(Gossip::start(config).await.unwrap());
    }

    /// The endpoint record this node publishes for `task_id` on the test network.
    async fn record(&self, task_id: &str) -> Option<EndpointRecord> {
        let gossip = self.shared.gossip.read().await;
        gossip.as_ref()?.get(&network().id, task_id)
    }

    /// Whether the fake kernel holds `task_id`'s sandbox namespace.
    fn has_sandbox(&self, task_id: &str) -> bool {
        let name: String = task_id.chars().take(12).collect();
        self.shared
            .network
            .driver()
            .kernel()
            .state()
            .namespaces
            .contains_key(&name)
    }
}

fn network() -> Network {
    Network {
        id: "net1net1net1net1net1net1n".into(),
        subnet: "10.0.9.0/24".into(),
        gateway: "10.0.9.1".into(),
        vni: 4097,
        ..Default::default()
    }
}

fn task(id: &str, image: &str, desired: TaskState) -> Task {
    let mut t = Task {
        id: id.into(),
        service_id: "svc1".into(),
        service_name: "web".into(),
        slot: 1,
        node_id: "node1".into(),
        container: Some(ContainerSpec {
            image: image.into(),
            args: vec!["httpd".into(), "-f".into()],
            ..Default::default()
        }),
        status: Some(TaskStatus {
            state: TaskState::Assigned as i32,
            ..Default::default()
        }),
        networks: vec![NetworkAttachment {
            network_id: network().id,
            addr: "10.0.9.5/24".into(),
            mac: "02:42:0a:00:09:05".into(),
            vip: String::new(),
        }],
        ..Default::default()
    };
    t.set_desired_state(desired);
    t
}

fn assign(tasks: Vec<Task>) -> Assignments {
    Assignments {
        complete: true,
        tasks,
        networks: vec![network()],
        ..Default::default()
    }
}

#[tokio::test]
async fn an_image_task_runs_in_its_sandbox_and_stops_on_request() {
    let mut f = Fixture::new();
    let id = "task1task1task1task1task1";
    f.run_busybox(id).await;
    assert!(f.has_sandbox(id), "the task runs in a sandbox namespace");
    assert_eq!(
        f.images.calls(),
        vec![FakeCall::Start(
            id.into(),
            vec!["httpd".into(), "-f".into()]
        )]
    );
    assert!(
        f.host.calls().is_empty(),
        "an image task never reaches the host runtime"
    );
    // exec reaches the task's runtime.
    let out = f
        .executor
        .exec(id, &["echo".into(), "hi".into()], &[])
        .await
        .expect("the running task is an exec target")
        .unwrap();
    assert_eq!(out.stdout, b"echo hi");

    f.executor
        .apply(assign(vec![task(id, "busybox", TaskState::Shutdown)]))
        .await;
    let status = f.wait_state(id, TaskState::Shutdown).await;
    assert_eq!(status.exit_code, 128 + 15);
    assert_eq!(
        &f.images.calls()[1..],
        &[
            FakeCall::Exec(id.into(), vec!["echo".into(), "hi".into()]),
            FakeCall::Stop(id.into()),
            FakeCall::Remove(id.into())
        ]
    );
    assert!(!f.has_sandbox(id), "the sandbox goes with the task");
    assert!(f.executor.exec(id, &["x".into()], &[]).await.is_none());
}

#[tokio::test]
async fn host_tasks_use_the_host_runtime_and_exits_are_worded_as_docker() {
    let mut f = Fixture::new();
    let (ok, bad, oom) = (
        "okokokokokokokokokokokoko",
        "badbadbadbadbadbadbadbadb",
        "oomoomoomoomoomoomoomoomo",
    );
    f.executor
        .apply(assign(vec![
            task(ok, "host", TaskState::Running),
            task(bad, "host", TaskState::Running),
            task(oom, "busybox", TaskState::Running),
        ]))
        .await;
    for id in [ok, bad, oom] {
        f.wait_state(id, TaskState::Running).await;
    }
    assert_eq!(f.host.running(), vec![bad.to_string(), ok.to_string()]);
    assert!(f.host.exit(ok, TaskExit::Exited(0)));
    assert!(f.host.exit(bad, TaskExit::Exited(1)));
    assert!(f.images.exit(oom, TaskExit::OomKilled));
    assert_eq!(f.wait_state(ok, TaskState::Complete).await.exit_code, 0);
    let failed = f.wait_state(bad, TaskState::Failed).await;
    assert_eq!(
        (failed.err.as_str(), failed.exit_code),
        ("task: non-zero exit (1)", 1)
    );
    let killed = f.wait_state(oom, TaskState::Failed).await;
    assert_eq!((killed.err.as_str(), killed.exit_code), ("OOM killed", 137));
    for id in [ok, bad, oom] {
        assert!(!f.has_sandbox(id), "{id}: sandbox removed after the exit");
    }
}

#[tokio::test]
async fn a_missing_image_fails_the_task_before_anything_is_made() {
    let mut f = Fixture::new();
    let id = "noimgnoimgnoimgnoimgnoimg";
    f.executor
        .apply(assign(vec![task(id, "alpine:3.19", TaskState::Running)]))
        .await;
    let status = f.wait_state(id, TaskState::Failed).await;
    assert_eq!(status.err, "No such image: alpine:3.19");
    assert!(f.images.calls().is_empty());
    assert!(!f.has_sandbox(id));
    assert!(
        f.shared.network.driver().kernel().log().is_empty(),
        "no kernel operation for a task whose image is missing: {:?}",
        f.shared.network.driver().kernel().log()
    );
}

#[tokio::test]
async fn a_start_failure_is_reported_and_its_sandbox_removed() {
    let mut f = Fixture::new();
    let id = "failfailfailfailfailfailf";
    f.images.fail_start(
        id,
        "invalid mount config for type \"bind\": bind source path does not exist: /nope",
    );
    f.executor
        .apply(assign(vec![task(id, "busybox", TaskState::Running)]))
        .await;
    let status = f.wait_state(id, TaskState::Failed).await;
    assert_eq!(
        status.err,
        "invalid mount config for type \"bind\": bind source path does not exist: /nope"
    );
    assert!(!f.has_sandbox(id), "no sandbox left after a failed start");
    assert!(f.images.running().is_empty());
}

#[tokio::test]
async fn bad_log_options_fail_the_task_with_dockers_words() {
    let mut f = Fixture::new();
    let id = "logoptlogoptlogoptlogoptl";
    let mut t = task(id, "busybox", TaskState::Running);
    if let Some(c) = t.container.as_mut() {
        c.log_options.insert("max-size".into(), "lots".into());
    }
    f.executor.apply(assign(vec![t])).await;
    let status = f.wait_state(id, TaskState::Failed).await;
    assert_eq!(status.err, "invalid value for log-opt max-size: lots");
    assert!(f.images.calls().is_empty());
    assert!(!f.has_sandbox(id));
}

#[test]
fn sizes_parse_as_docker_writes_them() {
    use super::task::parse_size;
    assert_eq!(parse_size("10m"), Some(10 << 20));
    assert_eq!(parse_size("512k"), Some(512 << 10));
    assert_eq!(parse_size("1g"), Some(1 << 30));
    assert_eq!(parse_size("1.5MB"), Some(3 << 19));
    assert_eq!(parse_size("100"), Some(100));
    assert_eq!(parse_size("lots"), None);
}

/// A task of service `web` with a VIP whose health check runs every 20 ms.
fn checked_task(id: &str, retries: i32) -> Task {
    let mut t = task(id, "busybox", TaskState::Running);
    t.networks[0].vip = "10.0.9.2/24".into();
    if let Some(c) = t.container.as_mut() {
        c.healthcheck = Some(HealthConfig {
            test: vec!["CMD-SHELL".into(), "wget -q localhost".into()],
            interval_ns: 20_000_000,
            retries,
            ..Default::default()
        });
    }
    t
}

#[tokio::test]
async fn a_starting_task_is_reachable_but_unpublished_until_its_check_passes() {
    let mut f = Fixture::new();
    f.start_gossip().await;
    let id = "startstartstartstartstart";
    f.images.script_exec(id, [FakeExec::Exit(1)]);
    f.executor.apply(assign(vec![checked_task(id, 1000)])).await;
    let starting = f.wait_state(id, TaskState::Starting).await;
    assert_eq!(starting.health, "starting");
    // Probes fail: it stays STARTING, its record carries where it lives and nothing else.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while f
        .images
        .calls()
        .iter()
        .filter(|c| matches!(c, FakeCall::Exec(..)))
        .count()
        < 3
    {
        assert!(tokio::time::Instant::now() < deadline, "no probes ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let unbound = f
        .record(id)
        .await
        .expect("the starting task is on the overlay");
    assert_eq!(unbound.ip, Ipv4Addr::new(10, 0, 9, 5));
    assert_eq!(
        (
            unbound.service_name.as_str(),
            unbound.task_name.as_str(),
            unbound.vip,
            unbound.deleted
        ),
        ("", "", None, false),
        "a starting task is in no name and behind no VIP"
    );
    assert_eq!(
        f.images.calls().get(1),
        Some(&FakeCall::Exec(
            id.into(),
            vec!["/bin/sh".into(), "-c".into(), "wget -q localhost".into()]
        ))
    );
    for u in f.shared.reporter.take_now() {
        f.seen.insert(u.task_id, u.status.unwrap_or_default());
    }
    assert_eq!(
        f.seen.get(id).map(TaskStatus::state),
        Some(TaskState::Starting),
        "still STARTING while its checks fail"
    );
    // The check passes: RUNNING, healthy, and bound to its service.
    f.images.script_exec(id, [FakeExec::Exit(0)]);
    let running = f.wait_state(id, TaskState::Running).await;
    assert_eq!(running.health, "healthy");
    let bound = f.record(id).await.unwrap();
    assert_eq!(
        (bound.service_name.as_str(), bound.vip),
        ("web", Some(Ipv4Addr::new(10, 0, 9, 2)))
    );
    assert!(bound.task_name.starts_with("web.1."));
}

#[tokio::test]
async fn an_unhealthy_task_is_stopped_withdrawn_and_reported_failed_as_swarmkit_words_it() {
    let mut f = Fixture::new();
    f.start_gossip().await;
    let id = "sicksicksicksicksicksicks";
    f.images
        .script_exec(id, [FakeExec::Exit(0), FakeExec::Exit(1)]);
    f.executor.apply(assign(vec![checked_task(id, 2)])).await;
    assert_eq!(f.wait_state(id, TaskState::Running).await.health, "healthy");
    let failed = f.wait_state(id, TaskState::Failed).await;
    // The fake ends a stopped task with SIGTERM: 128 + 15.
    assert_eq!(
        (
            failed.err.as_str(),
            failed.exit_code,
            failed.health.as_str()
        ),
        (
            "task: non-zero exit (143): dockerexec: unhealthy container",
            143,
            "unhealthy"
        )
    );
    assert!(f.images.calls().contains(&FakeCall::Stop(id.into())));
    assert!(f.images.running().is_empty());
    assert!(!f.has_sandbox(id), "the sandbox goes with the task");
    assert!(
        f.record(id).await.is_none_or(|r| r.deleted),
        "the unhealthy task's endpoint is withdrawn"
    );
}

#[tokio::test]
async fn an_invalid_health_check_fails_the_task_before_anything_is_made() {
    let mut f = Fixture::new();
    let id = "badhcbadhcbadhcbadhcbadhc";
    let mut t = checked_task(id, 1);
    if let Some(c) = t.container.as_mut() {
        c.healthcheck = Some(HealthConfig {
            test: vec!["HTTP".into(), "/".into()],
            ..Default::default()
        });
    }
    f.executor.apply(assign(vec![t])).await;
    let status = f.wait_state(id, TaskState::Failed).await;
    assert_eq!(
        status.err,
        "unknown healthcheck type \"HTTP\" (expected CMD, CMD-SHELL or NONE)"
    );
    assert!(f.images.calls().is_empty());
    assert!(!f.has_sandbox(id));
}

#[tokio::test]
async fn a_daemon_that_exits_leaves_its_tasks_and_sandboxes_in_place() {
    let mut f = Fixture::new();
    let id = "task4task4task4task4task4";
    f.executor
        .apply(assign(vec![task(id, "host", TaskState::Running)]))
        .await;
    f.wait_state(id, TaskState::Running).await;
    tokio::time::timeout(PATIENCE, f.executor.detach_all())
        .await
        .expect("detach_all returns");
    // Neither stopped nor removed: left running, with its sandbox.
    assert_eq!(
        &f.host.calls()[1..],
        &[FakeCall::Detach(id.into())],
        "{:?}",
        f.host.calls()
    );
    assert_eq!(f.host.running(), vec![id.to_string()]);
    assert!(f.has_sandbox(id), "the sandbox stays for the task");
    // Nothing was reported after RUNNING (the next daemon reports what became of it).
    assert_eq!(f.seen[id].state(), TaskState::Running);
    let late = tokio::time::timeout(Duration::from_millis(200), f.shared.reporter.take()).await;
    assert!(late.is_err(), "reported after detaching: {late:?}");
}

#[test]
fn the_gateway_bridge_the_managers_list_is_the_one_the_netdriver_makes() {
    let bridge = mini_netdriver::model::GatewayBridgeConfig::default();
    assert_eq!(bridge.name, mini_proto::GATEWAY_BRIDGE);
    assert_eq!(bridge.subnet.to_string(), mini_proto::GATEWAY_BRIDGE_SUBNET);
}

/// Waits until `f.host` has seen `n` starts.
async fn wait_starts(f: &Fixture, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let started: Vec<String> = f
            .host
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                crate::runtime::fake::FakeCall::Start(id, _) => Some(id),
                _ => None,
            })
            .collect();
        if started.len() >= n {
            return started;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} starts: {started:?}",
            started.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn task_starts_are_admitted_a_few_at_a_time_and_a_waiting_task_can_be_stopped() {
    let mut f = Fixture::new();
    let limit = super::worker::concurrent_starts();
    // A slow node: every start takes until the test lets it go.
    f.host.hold_starts(true);
    let ids: Vec<String> = (0..limit + 3)
        .map(|i| format!("t{i:02}{}", &"admit".repeat(5)[..22]))
        .collect();
    let tasks = |stopped: Option<&str>| {
        ids.iter()
            .enumerate()
            .map(|(i, id)| {
                let desired = match Some(id.as_str()) == stopped {
                    true => TaskState::Shutdown,
                    false => TaskState::Running,
                };
                let mut t = task(id, "host", desired);
                t.networks[0].addr = format!("10.0.9.{}/24", 10 + i);
                t.networks[0].mac = format!("02:42:0a:00:09:{:02x}", 10 + i);
                t
            })
            .collect::<Vec<_>>()
    };
    f.executor.apply(assign(tasks(None))).await;
    let started = wait_starts(&f, limit).await;
    let waiting: Vec<&String> = ids.iter().filter(|id| !started.contains(id)).collect();
    assert_eq!(waiting.len(), 3, "{started:?}");
    // The others wait PREPARING, and the runtime never sees more than `limit` starts at once.
    for id in &waiting {
        let s = f.wait_state(id, TaskState::Preparing).await;
        assert_eq!(s.message, "preparing");
    }
    assert_eq!(f.host.starting(), (limit, limit));

    // One that waits is told to stop (a duplicate after a false node-down): it never starts.
    let gone = waiting[0].clone();
    f.executor.apply(assign(tasks(Some(&gone)))).await;
    let s = f.wait_state(&gone, TaskState::Shutdown).await;
    assert_eq!(s.message, "shutdown before start");

    // The node catches up: everything else runs, never more than `limit` starts at once.
    f.host.hold_starts(false);
    for id in ids.iter().filter(|id| **id != gone) {
        f.wait_state(id, TaskState::Running).await;
    }
    assert_eq!(f.host.starting(), (0, limit));
    let started = wait_starts(&f, limit + 2).await;
    assert!(!started.contains(&gone), "{started:?}");
}

#[tokio::test]
async fn exec_right_after_a_restart_waits_for_the_adopted_task() {
    let mut f = Fixture::new();
    let id = "adoptadoptadoptadoptadopt";
    f.run_busybox(id).await;
    // The daemon exits and a new one starts: the task keeps running and is adoptable, but the
    // new executor has not yet heard from the manager (which still reports the task running).
    f.executor.detach_all().await;
    f.shared
        .adoptable
        .lock()
        .unwrap()
        .insert(id.into(), f.shared.task_dir(id).unwrap());
    let restarted = Executor::new(Arc::clone(&f.shared));
    let exec = tokio::spawn({
        let restarted = Arc::clone(&restarted);
        async move {
            restarted
                .exec(id, &["echo".into(), "back".into()], &[])
                .await
        }
    });
    // A task this node never ran is not waited for.
    let unknown = tokio::time::timeout(
        Duration::from_secs(1),
        restarted.exec("nonenonenonenonenonenonen", &["x".into()], &[]),
    )
    .await
    .expect("an exec in an unknown task answers at once");
    assert!(unknown.is_none());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !exec.is_finished(),
        "exec answered before the task was adopted"
    );

    let mut observed = task(id, "busybox", TaskState::Running);
    observed.status.as_mut().unwrap().state = TaskState::Running as i32;
    restarted.apply(assign(vec![observed])).await;
    let out = tokio::time::timeout(PATIENCE, exec)
        .await
        .expect("exec answered once the task was adopted")
        .unwrap()
        .expect("the adopted task is an exec target")
        .unwrap();
    assert_eq!(out.stdout, b"echo back");
    assert!(
        f.images.calls().contains(&FakeCall::Adopt(id.into(), true)),
        "the restarted executor adopted the task: {:?}",
        f.images.calls()
    );
}
