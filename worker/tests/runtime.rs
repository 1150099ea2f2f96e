//! Privileged tests of the task runtime: real namespaces, mounts and
//! processes. They need root and fail (never pass silently) without it.
//!
//! Each test makes its own network namespace (a unique name, removed on
//! drop even when the test panics) to stand in for the netdriver's sandbox,
//! and runs tasks through the `mini-task-init` binary of this crate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mini_worker::runtime::{
    HostRuntime, LogFollower, RuntimeError, Stream, TaskExit, TaskFile, TaskSpec, read_logs,
};

const RESOLV: &str = "nameserver 127.0.0.11\noptions ndots:0\n";
const HOSTS: &str = "127.0.0.1\tlocalhost\n10.0.9.3\tweb.1.task\n";
const PATIENCE: Duration = Duration::from_secs(20);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the runtime tests need root (namespaces, mounts): run them as root, as CI does"
    );
}

/// A throwaway network namespace, `ip netns add`ed and deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "mini-rt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        Netns { name }
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let status = Command::new(cmd).args(args).status().expect(cmd);
    assert!(status.success(), "{cmd} {args:?}: {status}");
}

/// A runtime, a sandbox and a task directory.
struct Fixture {
    runtime: HostRuntime,
    netns: Netns,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        require_root();
        Fixture {
            runtime: HostRuntime::new(env!("CARGO_BIN_EXE_mini-task-init").into()),
            netns: Netns::new(),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn spec(&self, args: &[&str]) -> TaskSpec {
        TaskSpec {
            task_id: format!("task-{}", self.netns.name),
            hostname: format!("web.1.{}", self.netns.name),
            netns: self.netns.path(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["FOO=bar baz".into()],
            resolv_conf: RESOLV.into(),
            hosts: HOSTS.into(),
            dir: self.dir.path().join("task"),
            ..Default::default()
        }
    }

    async fn output(&self) -> Vec<(Stream, String)> {
        read_logs(&self.dir.path().join("task"))
            .await
            .expect("logs")
            .into_iter()
            .map(|l| (l.stream, l.text))
            .collect()
    }
}

fn stdout_lines(lines: &[(Stream, String)]) -> Vec<&str> {
    lines
        .iter()
        .filter(|(s, _)| *s == Stream::Stdout)
        .map(|(_, t)| t.as_str())
        .collect()
}

/// PIDs whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let after_comm = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
        let ppid = after_comm.split_whitespace().nth(1);
        if ppid.and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            children.push(child);
        }
    }
    children
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Lines of the node's mount table that concern a task: mounts on the
/// `/etc` files or from the task directory.
fn task_mounts(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"].contains(&fields[4])
                || l.contains(dir.to_str().unwrap())
        })
        .map(String::from)
        .collect()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn task_is_pid_1_with_its_own_hostname_files_env_and_network() {
    let fx = Fixture::new();
    let node_resolv = std::fs::read("/etc/resolv.conf").unwrap();
    let node_hosts = std::fs::read("/etc/hosts").unwrap();
    let node_hostname = nix::unistd::gethostname().unwrap();
    let script = r#"echo pid=$$
echo host=$(cat /proc/sys/kernel/hostname)
echo etc_hostname=$(cat /etc/hostname)
cat /etc/resolv.conf /etc/hosts
echo "foo=$FOO home=$HOME path=$PATH hostname=$HOSTNAME"
echo links=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ')
echo procs=$(ls /proc | grep '^[0-9]' | sort -n | head -1)
echo cwd=$(pwd)"#;
    let spec = fx.spec(&["sh", "-c", script]);
    let mut task = fx.runtime.start(&spec).await.expect("start");
    assert!(task.pid() > 1);
    assert_eq!(task.wait().await.unwrap(), TaskExit::Exited(0));

    let lines = fx.output().await;
    let out = stdout_lines(&lines);
    let mut expected = vec![
        "pid=1".to_string(),
        format!("host={}", spec.hostname),
        format!("etc_hostname={}", spec.hostname),
    ];
    expected.extend(RESOLV.lines().chain(HOSTS.lines()).map(String::from));
    expected.push(format!(
        "foo=bar baz home=/root path={} hostname={}",
        mini_worker::runtime::DEFAULT_PATH,
        spec.hostname
    ));
    expected.push("links=lo".into());
    expected.push("procs=1".into());
    expected.push("cwd=/".into());
    assert_eq!(out, expected, "all output: {lines:?}");

    // The node saw none of it.
    assert_eq!(std::fs::read("/etc/resolv.conf").unwrap(), node_resolv);
    assert_eq!(std::fs::read("/etc/hosts").unwrap(), node_hosts);
    assert_eq!(nix::unistd::gethostname().unwrap(), node_hostname);
    assert_eq!(task_mounts(fx.dir.path()), Vec::<String>::new());
    let pid_file = std::fs::read_to_string(spec.dir.join("pid")).unwrap();
    assert_eq!(pid_file.trim(), task.pid().to_string());
}

#[tokio::test]
async fn exit_codes_signals_and_both_streams_are_reported() {
    let fx = Fixture::new();
    let script = "echo out; echo err >&2; echo more; exit 3";
    let mut task = fx
        .runtime
        .start(&fx.spec(&["sh", "-c", script]))
        .await
        .unwrap();
    assert_eq!(task.wait().await.unwrap(), TaskExit::Exited(3));
    // Each stream keeps its order; lines written to both at the same
    // instant may interleave either way (two pipes, as in Docker).
    let lines = fx.output().await;
    assert_eq!(stdout_lines(&lines), ["out", "more"]);
    assert!(
        lines.contains(&(Stream::Stderr, "err".to_string())),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 3, "{lines:?}");

    let mut task = fx.runtime.start(&fx.spec(&["true"])).await.unwrap();
    assert_eq!(task.wait().await.unwrap(), TaskExit::Exited(0));

    // Killed from outside (a PID 1 cannot be SIGKILLed from inside).
    let mut task = fx
        .runtime
        .start(&fx.spec(&["sleep", "1000"]))
        .await
        .unwrap();
    let pid = task.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let exit = task.wait().await.unwrap();
    assert_eq!(exit, TaskExit::Signaled(9));
    assert_eq!(exit.exit_code(), 137);
    assert!(!alive(pid));
}

#[tokio::test]
async fn a_missing_command_fails_to_start_with_127_and_a_message() {
    let fx = Fixture::new();
    for (cmd, shown) in [
        ("no-such-command-mini", "no-such-command-mini"),
        ("/nonexistent/bin/tool", "/nonexistent/bin/tool"),
    ] {
        match fx.runtime.start(&fx.spec(&[cmd, "arg"])).await {
            Err(RuntimeError::StartFailed { message, exit, .. }) => {
                assert_eq!(message, format!("executable file not found: {shown}"));
                assert_eq!(exit, TaskExit::Exited(127));
            }
            other => panic!("expected StartFailed for {cmd}, got {other:?}"),
        }
    }
    let lines = fx.output().await;
    assert!(
        lines.contains(&(
            Stream::Stderr,
            "executable file not found: no-such-command-mini".to_string()
        )),
        "{lines:?}"
    );
    assert_eq!(task_mounts(fx.dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_missing_netns_is_a_clear_error() {
    let fx = Fixture::new();
    let mut spec = fx.spec(&["true"]);
    spec.netns = fx.dir.path().join("no-such-netns");
    let err = fx.runtime.start(&spec).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Netns { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-netns"), "{err}");
}

#[tokio::test]
async fn stop_kills_after_the_grace_period_and_leaves_nothing() {
    let fx = Fixture::new();
    let script = "trap '' TERM; sleep 1000 & sleep 1000";
    let mut task = fx
        .runtime
        .start(&fx.spec(&["sh", "-c", script]))
        .await
        .unwrap();
    let pid = task.pid();
    let mut pids = Vec::new();
    wait_until("the task's two sleeps", || {
        pids = children_of(pid);
        pids.len() == 2
    })
    .await;
    pids.push(pid);

    let grace = Duration::from_millis(500);
    let started = Instant::now();
    let exit = task.stop(grace).await.unwrap();
    assert!(
        started.elapsed() >= grace,
        "stopped after {:?}",
        started.elapsed()
    );
    assert_eq!(exit, TaskExit::Signaled(9));
    for pid in pids {
        assert!(!alive(pid), "process {pid} of the task is still alive");
    }
    assert_eq!(task_mounts(fx.dir.path()), Vec::<String>::new());
    // Stopping again is harmless and reports the same.
    assert_eq!(task.stop(grace).await.unwrap(), exit);
}

#[tokio::test]
async fn stop_of_a_task_that_handles_sigterm_does_not_wait_for_the_grace() {
    let fx = Fixture::new();
    let script = "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.05; done";
    let spec = fx.spec(&["sh", "-c", script]);
    let mut task = fx.runtime.start(&spec).await.unwrap();
    // A PID 1 drops a signal it has no handler for yet: wait for the trap.
    let mut follower = LogFollower::new(&spec.dir);
    let ready = tokio::time::timeout(PATIENCE, follower.next_line()).await;
    assert_eq!(ready.expect("ready in time").unwrap().text, "ready");
    let started = Instant::now();
    assert_eq!(
        task.stop(Duration::from_secs(30)).await.unwrap(),
        TaskExit::Exited(0)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(stdout_lines(&fx.output().await), ["ready", "bye"]);
}

#[tokio::test]
async fn stop_of_a_pid_1_without_a_handler_does_not_wait_for_the_grace() {
    let fx = Fixture::new();
    // `sleep` as PID 1 of its namespace: the kernel would drop its SIGTERM.
    let mut task = fx
        .runtime
        .start(&fx.spec(&["sleep", "1000"]))
        .await
        .unwrap();
    let pid = task.pid();
    let started = Instant::now();
    let exit = task.stop(Duration::from_secs(30)).await.unwrap();
    let took = started.elapsed();
    // Reads as SIGTERM's default action (143), not as a kill at the end of the grace.
    assert_eq!(exit, TaskExit::Signaled(15), "after {took:?}");
    assert!(took < Duration::from_secs(10), "stopped after {took:?}");
    assert!(!alive(pid), "the task's process {pid} is still alive");
    assert_eq!(task_mounts(fx.dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn exec_runs_inside_the_task() {
    let fx = Fixture::new();
    let spec = fx.spec(&["sleep", "1000"]);
    let mut task = fx.runtime.start(&spec).await.unwrap();
    let script = r#"tr '\0' ' ' < /proc/1/cmdline; echo
cat /proc/sys/kernel/hostname
echo $$
echo "$FOO/$EXTRA"
echo links=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ')
cat /etc/resolv.conf"#;
    let args: Vec<String> = ["sh", "-c", script].map(String::from).to_vec();
    let out = fx
        .runtime
        .exec(task.pid(), &args, &["EXTRA=e".into()])
        .await
        .unwrap();
    assert_eq!(out.exit, TaskExit::Exited(0), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0].trim(), "sleep 1000");
    assert_eq!(lines[1], spec.hostname);
    let own_pid: u32 = lines[2].parse().unwrap();
    assert!(
        own_pid > 1 && own_pid < 100,
        "exec'd shell has pid {own_pid}"
    );
    assert_eq!(lines[3], "bar baz/e");
    assert_eq!(lines[4], "links=lo");
    assert_eq!(lines[5..].join("\n") + "\n", RESOLV);

    let missing = ["nope-not-here".to_string()];
    let out = fx.runtime.exec(task.pid(), &missing, &[]).await.unwrap();
    assert_eq!(out.exit, TaskExit::Exited(127));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "executable file not found: nope-not-here"
    );

    task.stop(Duration::from_millis(100)).await.unwrap();
    let gone = fx.runtime.exec(task.pid(), &args, &[]).await;
    assert!(
        matches!(gone, Err(RuntimeError::ExecTarget { .. })),
        "{gone:?}"
    );
}

#[tokio::test]
async fn follow_yields_lines_as_they_are_written() {
    let fx = Fixture::new();
    let script = "echo one; sleep 0.3; echo two >&2; sleep 0.3; printf three";
    let spec = fx.spec(&["sh", "-c", script]);
    let mut follower = LogFollower::new(&spec.dir);
    let mut task = fx.runtime.start(&spec).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let line = tokio::time::timeout(PATIENCE, follower.next_line())
            .await
            .expect("a log line in time")
            .unwrap();
        seen.push((line.stream, line.text));
    }
    assert_eq!(
        seen,
        [
            (Stream::Stdout, "one".to_string()),
            (Stream::Stderr, "two".to_string()),
            (Stream::Stdout, "three".to_string()),
        ]
    );
    assert_eq!(task.wait().await.unwrap(), TaskExit::Exited(0));
    assert_eq!(fx.output().await, seen);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), follower.next_line())
            .await
            .is_err(),
        "no line after the last one"
    );
}

#[tokio::test]
async fn dropping_a_running_task_kills_it() {
    let fx = Fixture::new();
    let task = fx
        .runtime
        .start(&fx.spec(&["sleep", "1000"]))
        .await
        .unwrap();
    let pid = task.pid();
    assert!(alive(pid));
    drop(task);
    wait_until("the dropped task to die", || !alive(pid)).await;
}

#[tokio::test]
async fn files_are_bound_read_only_without_touching_the_nodes_filesystem() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    let sources = fx.dir.path().join("sources");
    std::fs::create_dir_all(&sources).unwrap();
    let secret = sources.join("secret-0");
    std::fs::write(&secret, "s3cr3t-value").unwrap();
    std::os::unix::fs::chown(&secret, Some(33), Some(44)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o400)).unwrap();
    let config = sources.join("config-0");
    std::fs::write(&config, "listen 80;").unwrap();
    let secret_target = format!("/run/secrets/mini-rt-{}", fx.netns.name);
    let config_target = format!("/etc/mini-rt-{}/site.conf", fx.netns.name);
    let had_run_secrets = Path::new("/run/secrets").exists();
    let script = format!(
        "cat {secret_target}; echo; stat -c '%a %u %g' {secret_target}; cat {config_target}; echo; \
         (echo x > {secret_target}) 2>/dev/null && echo writable || echo read-only"
    );
    let mut spec = fx.spec(&["sh", "-c", &script]);
    spec.files = vec![
        TaskFile {
            source: secret.clone(),
            target: secret_target.clone(),
        },
        TaskFile {
            source: config.clone(),
            target: config_target.clone(),
        },
    ];
    let mut task = fx.runtime.start(&spec).await.expect("start");
    assert_eq!(task.wait().await.unwrap(), TaskExit::Exited(0));
    let lines = fx.output().await;
    assert_eq!(
        stdout_lines(&lines),
        ["s3cr3t-value", "400 33 44", "listen 80;", "read-only"],
        "all output: {lines:?}"
    );
    // The node's filesystem got none of the targets, and no mount is left.
    assert!(!Path::new(&secret_target).exists());
    assert!(!Path::new(&config_target).parent().unwrap().exists());
    assert_eq!(Path::new("/run/secrets").exists(), had_run_secrets);
    assert_eq!(task_mounts(fx.dir.path()), Vec::<String>::new());
    // A target the host runtime cannot make without writing to / is refused clearly.
    let mut at_root = fx.spec(&["true"]);
    at_root.files = vec![TaskFile {
        source: config,
        target: format!("/mini-rt-{}", fx.netns.name),
    }];
    let Err(err) = fx.runtime.start(&at_root).await else {
        panic!("a file at / was placed");
    };
    assert!(
        err.to_string()
            .contains("inside an existing directory other than /"),
        "{err}"
    );
}
