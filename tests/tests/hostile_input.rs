//! Hostile bytes on port 2377 and private state, as an attacker and a user would check them:
//! a raft heartbeat that used to panic raft-rs, a 200 MiB message, a task id that walks out of
//! the task directory, the state dir's and the control socket's permissions.
//! Root only (namespaces).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mini_proto::v1::node_agent_client::NodeAgentClient;
use mini_proto::v1::raft_transport_client::RaftTransportClient;
use mini_proto::v1::{ExecRequest, RaftMessages, TaskLogsRequest};
use mini_tests::{Cluster, wait_for};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

/// Runs the future `f` makes on a thread inside the network namespace `netns` (the sockets it
/// opens live there), on a runtime of that thread alone.
fn in_netns<T, F, Fut>(netns: PathBuf, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns).expect("netns file");
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
    .join()
    .expect("netns thread")
}

/// A kB figure of `/proc/PID/status`.
fn status_kb(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A mutual-TLS channel to `addr`'s listener with the identity kept in `state_dir` (a manager's:
/// the hostile bytes come from a peer that holds a valid manager certificate, a compromised or
/// buggy manager, since nothing else gets past the authorization table).
async fn channel(addr: &str, state_dir: &std::path::Path) -> tonic::transport::Channel {
    let endpoint = mini_proto::node_endpoint(&format!("{addr}:2377"), Duration::from_secs(5))
        .expect("endpoint");
    let trust = mini_proto::tls::Trust::new(state_dir);
    assert!(
        trust.load().expect("read the manager's certificates"),
        "no certificate under {}",
        state_dir.display()
    );
    trust
        .connect(endpoint, mini_proto::tls::Peer::Manager)
        .await
        .expect("connect to the node listener")
}

#[test]
fn hostile_bytes_on_2377_change_nothing() {
    let cluster = Cluster::start(1);
    let h1 = cluster.host(1);
    h1.ok(&["swarm", "init", "--advertise-addr", &h1.addr()]);
    h1.ok(&[
        "service", "create", "--detach", "--name", "sleeper", "host", "sleep", "1000",
    ]);
    let task = h1.wait_running("sleeper", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pid = cluster.daemon_pid(1).unwrap();
    let addr = h1.addr();
    let state_dir = h1.state_dir();

    // 1. The heartbeat that made raft-rs panic: term 1000, commit 10^9.
    let mut hb = Message::default();
    hb.set_msg_type(MessageType::MsgHeartbeat);
    hb.from = 2;
    hb.to = 1;
    hb.term = 1000;
    hb.commit = 1_000_000_000;
    let hb = hb.write_to_bytes().unwrap();
    // A proposal as a raft message that is not what a follower sends (its entry's context does
    // not name the sender): raft-rs would append it to the log.
    let mut prop = Message::default();
    prop.set_msg_type(MessageType::MsgPropose);
    prop.from = 2;
    prop.to = 1;
    let entry = raft::eraftpb::Entry {
        data: b"forged".to_vec().into(),
        ..Default::default()
    };
    prop.set_entries(vec![entry].into());
    let prop = prop.write_to_bytes().unwrap();
    // 2. One 200 MiB message.
    // 3. A task id that leads out of the task directory.
    let traversal = format!("../../../h1/run/tasks/{task}");
    let (heartbeat, proposal, huge, huge_took, logs, exec, hwm_before, hwm_after) =
        in_netns(cluster.netns_path(1), move || async move {
            let ch = channel(&addr, &state_dir).await;
            let mut raft =
                RaftTransportClient::new(ch.clone()).max_encoding_message_size(usize::MAX);
            let heartbeat = raft
                .send(RaftMessages {
                    cluster_id: String::new(),
                    from_id: 2,
                    from_addr: "10.99.99.99:2377".into(),
                    messages: vec![hb],
                })
                .await;

            let proposal = raft
                .send(RaftMessages {
                    cluster_id: String::new(),
                    from_id: 2,
                    from_addr: "10.99.99.99:2377".into(),
                    messages: vec![prop],
                })
                .await;

            // Peak RSS from here on (writing 5 to clear_refs resets VmHWM).
            std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
            let hwm_before = status_kb(pid, "VmHWM:");
            let started = Instant::now();
            let huge = raft
                .send(RaftMessages {
                    messages: vec![vec![7u8; 200 << 20]],
                    ..Default::default()
                })
                .await;
            let huge_took = started.elapsed();
            let hwm_after = status_kb(pid, "VmHWM:");

            let mut agent = NodeAgentClient::new(ch);
            let logs = agent
                .task_logs(TaskLogsRequest {
                    task_ids: vec![traversal.clone()],
                    follow: false,
                    ..Default::default()
                })
                .await
                .map(|_| ());
            let exec = agent
                .exec(ExecRequest {
                    task: traversal,
                    args: vec!["true".into()],
                    ..Default::default()
                })
                .await
                .map(|_| ());
            (
                heartbeat, proposal, huge, huge_took, logs, exec, hwm_before, hwm_after,
            )
        });

    // The proposal was refused at the door.
    let err = proposal.expect_err("a forged raft-level proposal was accepted");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .contains("a proposed entry's context does not name its sender 2"),
        "{err:?}"
    );

    // The heartbeat was taken in and refused by the Raft loop: the node still leads and writes.
    assert!(heartbeat.is_ok(), "{heartbeat:?}");
    wait_for(
        "the Raft loop's refusal in the log",
        Duration::from_secs(10),
        || {
            let log = h1.log();
            if log.contains("refused a message from another manager")
                && log.contains("past this node's last index")
            {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    );
    let nodes = h1.ok_listed(&["node", "ls"], "node").json();
    assert_eq!(nodes[0]["manager_status"], "leader", "{nodes}");
    h1.ok(&["network", "create", "-d", "overlay", "after-attack"]);
    assert!(
        !h1.log().contains("raft node stopped") && !h1.log().contains("panicked"),
        "{}",
        h1.log()
    );

    // The 200 MiB message was refused from its length prefix, cheaply.
    let err = huge.expect_err("a 200 MiB message was accepted");
    let grew_mb = hwm_after.saturating_sub(hwm_before) / 1024;
    eprintln!(
        "200 MiB message: refused in {huge_took:?} ({}: {}), daemon peak RSS {} -> {} MB",
        err.code(),
        err.message(),
        hwm_before / 1024,
        hwm_after / 1024
    );
    assert!(
        grew_mb < 48,
        "the daemon's peak RSS grew by {grew_mb} MB for a refused message"
    );
    assert!(huge_took < Duration::from_secs(10), "took {huge_took:?}");

    // The task ids that lead out of the task directory are refused as such.
    for (what, r) in [("TaskLogs", logs), ("Exec", exec)] {
        let err = r.expect_err(what);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().contains("invalid task id"), "{what}: {err:?}");
    }

    // Private state: nothing in the state dir is open to group or others; the socket is root's.
    let state = h1.state_dir();
    let open = std::process::Command::new("find")
        .arg(&state)
        .args(["-perm", "/077"])
        .output()
        .unwrap();
    let open = String::from_utf8_lossy(&open.stdout).to_string();
    assert!(open.trim().is_empty(), "readable by others: {open}");
    assert!(
        state.join("raft").is_dir(),
        "the Raft log is in the state dir"
    );
    let socket = h1.socket().trim_start_matches("unix://").to_string();
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0);
}

/// The first group of /etc/group other than root's: (name, gid).
fn some_group() -> (String, u32) {
    std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?))
        })
        .find(|(_, gid)| *gid != 0)
        .expect("a group other than root in /etc/group")
}

#[test]
fn the_control_socket_belongs_to_the_group_given() {
    let (group, gid) = some_group();
    let cluster = Cluster::start_with(1, &["--group", &group]);
    let h1 = cluster.host(1);
    h1.ok(&["swarm", "init", "--advertise-addr", &h1.addr()]);
    let socket = h1.socket().trim_start_matches("unix://").to_string();
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "{socket}");
    assert_eq!((meta.uid(), meta.gid()), (0, gid), "{socket}");

    // A group that does not exist: the daemon says so and starts nothing.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = std::process::Command::new(mini_tests::binary::mini_binary())
        .args(["daemon", "--group", "no-such-group-mini"])
        .arg("--state-dir")
        .arg(&state)
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .arg("--host")
        .arg(format!("unix://{}/mini.sock", dir.path().display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("group no-such-group-mini does not exist"),
        "{stderr}"
    );
    assert!(!state.exists() && !dir.path().join("mini.sock").exists());
}
