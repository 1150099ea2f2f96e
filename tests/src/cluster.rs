//! A cluster of N "hosts" on one machine, for privileged end-to-end tests.
//!
//! Every host is a network namespace with an `eth0` (a veth whose peer sits on
//! a bridge in a namespace of the cluster's own) and runs its own `mini daemon`,
//! started with `nsenter --net=…` so it enters only the network namespace: the
//! namespace files it bind-mounts under its run dir stay visible to the test.
//!
//! Names are unique per cluster (`mt<pid % 10000>-<counter>-h<K>`, bridge
//! namespace `…-br`), and so are the addresses (a /24 inside 10.78.0.0/16,
//! though each cluster's bridge is private anyway), so tests run in parallel.
//! Nothing outside the cluster's own namespaces and temporary directory is
//! touched; the machine's network (root namespace) never is.
//!
//! Dropping a [`Cluster`] — also while a test panics — kills its daemons (by
//! PID) and whatever still runs in its namespaces, unmounts everything under
//! its directory, deletes its namespaces by name and removes the directory.
//! [`Cluster::resources`] captures what it made so a test can check that
//! nothing is left afterwards.
//!
//! Root is required: [`Cluster::start`] panics without it, so a privileged
//! test never passes silently.
//!
//! Fifty hosts fit on one machine: every namespace shares the kernel's neighbour table, whose
//! garbage-collected part is capped by `net.ipv4.neigh.default.gc_thresh3` (1024 by default),
//! and N hosts that all talk need N² entries. Every host gets a fixed MAC ([`host_mac`]) and
//! permanent entries for every other host (exempt from that cap), so the machine's settings
//! are never touched. Hosts are set up, and join, [`PARALLEL`] at a time.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::binary::mini_binary;
use crate::cli::{Output, run_mini};
use crate::wait::wait_for;

/// Stands for [`Cluster::outside_ip`] in daemon flags (`--registry-mirror
/// http://{outside}:5000`): the address is known only once the cluster is made.
pub const OUTSIDE: &str = "{outside}";

/// Stands for the host's number in daemon flags (`--label rack=r{k}`), so each host can
/// be told apart.
pub const HOST_INDEX: &str = "{k}";

/// How long a daemon may take to answer its socket.
const DAEMON_START: Duration = Duration::from_secs(30);
/// How long a daemon may take to exit after SIGTERM in [`Cluster::stop_host`]: it promises 2 s
/// (calls in flight get a moment, then are cut); past this, its shutdown hangs.
const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// How long the nodes may take to show up as ready after joining (plus a second per node).
const NODES_READY: Duration = Duration::from_secs(60);

/// Hosts set up, and joined, at the same time.
pub const PARALLEL: usize = 8;

/// Host `k`'s MAC on `eth0` (locally administered, fixed so that the other hosts can hold a
/// permanent neighbour entry for it): `02:6d:74:00:HH:LL`.
pub fn host_mac(k: usize) -> String {
    format!("02:6d:74:00:{:02x}:{:02x}", (k >> 8) & 0xff, k & 0xff)
}

/// The MAC of the bridge `br0` (where [`Cluster::outside_ip`] lives).
const BRIDGE_MAC: &str = "02:6d:74:00:ff:fe";

static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// One host of a cluster: its namespace, directory and daemon.
struct HostState {
    /// Network namespace name (`/run/netns/<ns>`).
    ns: String,
    /// The host's directory: `state/`, `run/`, `mini.sock`, `daemon.log`.
    dir: PathBuf,
    /// The running daemon, if any.
    child: Option<Child>,
}

/// N hosts as network namespaces on a private bridge, each running
/// `mini daemon`. See the module documentation.
pub struct Cluster {
    prefix: String,
    octet: u8,
    bridge_ns: Option<String>,
    hosts: Vec<HostState>,
    dir: Option<tempfile::TempDir>,
    /// Extra flags for every `mini daemon`.
    daemon_args: Vec<String>,
}

/// What a cluster made, to check after it is dropped that nothing is left.
#[derive(Debug, Clone)]
pub struct Resources {
    /// Network namespace names (files under `/run/netns`).
    pub namespaces: Vec<String>,
    /// PIDs of the daemons that were running.
    pub pids: Vec<i32>,
    /// The cluster's temporary directory (state, run dirs, sockets, logs).
    pub dir: PathBuf,
}

impl Resources {
    /// Everything that still exists: namespaces, processes, mounts under the
    /// directory, the directory itself. Empty after a clean drop.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for ns in &self.namespaces {
            if Path::new("/run/netns").join(ns).exists() {
                left.push(format!("namespace {ns}"));
            }
        }
        for pid in &self.pids {
            if Path::new(&format!("/proc/{pid}")).exists() {
                left.push(format!("process {pid}"));
            }
        }
        for mount in mounts_under(&self.dir) {
            left.push(format!("mount {}", mount.display()));
        }
        if self.dir.exists() {
            left.push(format!("directory {}", self.dir.display()));
        }
        left
    }
}

/// A borrowed view of host `k` of a [`Cluster`], to run the CLI against it.
pub struct Host<'a> {
    cluster: &'a Cluster,
    k: usize,
}

impl Cluster {
    /// Makes `n` hosts and starts a daemon on each; waits until every daemon
    /// answers `mini info`. Panics (after cleaning up) if anything fails, and
    /// when not running as root.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, &[])
    }

    /// Like [`Cluster::start`], with extra `mini daemon` flags for every host.
    pub fn start_with(n: usize, daemon_args: &[&str]) -> Cluster {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root: it creates network namespaces and mounts \
             (run the privileged tests as root, e.g. `sudo -E cargo test -p mini-tests`)"
        );
        assert!(
            (1..=250).contains(&n),
            "a cluster has 1..=250 hosts, not {n}"
        );
        let counter = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() as usize;
        let prefix = format!("mt{}-{}", pid % 10000, counter);
        let octet = ((pid * 31 + counter) % 254 + 1) as u8;
        let dir = tempfile::Builder::new()
            .prefix(&format!("mini-{prefix}-"))
            .tempdir()
            .expect("tempdir");
        // From here on, a panic drops `cluster`, which removes what exists so far.
        let mut cluster = Cluster {
            prefix,
            octet,
            bridge_ns: None,
            hosts: Vec::new(),
            dir: Some(dir),
            daemon_args: daemon_args.iter().map(|a| a.to_string()).collect(),
        };
        let bridge = format!("{}-br", cluster.prefix);
        run_ok("ip", &["netns", "add", &bridge]);
        cluster.bridge_ns = Some(bridge.clone());
        run_ok("ip", &["-n", &bridge, "link", "set", "lo", "up"]);
        run_ok(
            "ip",
            &[
                "-n", &bridge, "link", "add", "br0", "address", BRIDGE_MAC, "type", "bridge",
            ],
        );
        run_ok("ip", &["-n", &bridge, "link", "set", "br0", "up"]);
        raise_open_files();
        for k in 1..=n {
            let ns = format!("{}-h{k}", cluster.prefix);
            let dir = cluster.dir().join(format!("h{k}"));
            std::fs::create_dir_all(dir.join("state")).expect("host state dir");
            std::fs::create_dir_all(dir.join("run")).expect("host run dir");
            cluster.hosts.push(HostState {
                ns,
                dir,
                child: None,
            });
        }
        // Namespaces, veths, addresses and the permanent neighbour entries, PARALLEL hosts
        // at a time (a failure panics after the cluster knows every name: the drop removes
        // what exists).
        let hosts: Vec<usize> = (1..=n).collect();
        for chunk in hosts.chunks(PARALLEL) {
            std::thread::scope(|scope| {
                for &k in chunk {
                    let cluster = &cluster;
                    scope.spawn(move || cluster.setup_host(k));
                }
            });
        }
        for k in 1..=n {
            cluster.spawn(k);
        }
        for k in 1..=n {
            cluster.wait_serving(k);
        }
        cluster
    }

    /// Host `k`'s namespace, its `eth0` (a veth whose peer is on `br0`) with its fixed MAC,
    /// and permanent neighbour entries for every other host and the outside address.
    fn setup_host(&self, k: usize) {
        let ns = &self.hosts[k - 1].ns;
        let bridge = self.bridge_ns();
        run_ok("ip", &["netns", "add", ns]);
        let veth = format!("h{k}");
        let mac = host_mac(k);
        // Both ends are made directly inside the cluster's namespaces.
        run_ok(
            "ip",
            &[
                "-n", bridge, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                "address", &mac, "netns", ns,
            ],
        );
        run_ok(
            "ip",
            &["-n", bridge, "link", "set", &veth, "master", "br0", "up"],
        );
        let mut batch = format!(
            "link set lo up\naddr add {}/24 dev eth0\nlink set eth0 up\n",
            self.addr(k)
        );
        for j in (1..=self.hosts.len()).filter(|&j| j != k) {
            batch += &format!(
                "neigh replace {} lladdr {} dev eth0 nud permanent\n",
                self.addr(j),
                host_mac(j)
            );
        }
        batch += &format!(
            "neigh replace {} lladdr {BRIDGE_MAC} dev eth0 nud permanent\n",
            self.outside_ip()
        );
        run_ok_with_input("ip", &["-n", ns, "-batch", "-"], batch.as_bytes());
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether the cluster has no hosts (never, once started).
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The cluster's name prefix, e.g. `mt1234-0` (namespaces are `<prefix>-h<K>`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The cluster's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("cluster dir").path()
    }

    /// Host `k` (1-based).
    pub fn host(&self, k: usize) -> Host<'_> {
        assert!(
            (1..=self.hosts.len()).contains(&k),
            "host {k} does not exist: the cluster has hosts 1..={}",
            self.hosts.len()
        );
        Host { cluster: self, k }
    }

    fn state(&self, k: usize) -> &HostState {
        let _ = self.host(k); // checks k
        &self.hosts[k - 1]
    }

    /// Host `k`'s address on the cluster network, e.g. `10.78.5.2`.
    pub fn addr(&self, k: usize) -> String {
        format!("10.78.{}.{k}", self.octet)
    }

    /// The address "outside the cluster" (in the bridge namespace, see
    /// [`Cluster::exec_outside`]); `{outside}` in daemon flags stands for it.
    pub fn outside_ip(&self) -> String {
        format!("10.78.{}.254", self.octet)
    }

    /// Name of the bridge namespace (where [`Cluster::outside_ip`] lives).
    pub fn bridge_ns(&self) -> &str {
        self.bridge_ns.as_deref().expect("bridge namespace")
    }

    /// Runs `cmd` from "outside the cluster": in the bridge namespace that
    /// joins the hosts, which gets the address 10.78.X.254 on first use.
    pub fn exec_outside(&self, cmd: &[&str]) -> Output {
        let bridge = self.bridge_ns.as_deref().expect("bridge namespace");
        let addr = format!("10.78.{}.254/24", self.octet);
        let present = Command::new("ip")
            .args(["-n", bridge, "-br", "addr", "show", "dev", "br0"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&addr));
        if !present {
            run_ok("ip", &["-n", bridge, "addr", "add", &addr, "dev", "br0"]);
        }
        exec_in_netns(&Path::new("/run/netns").join(bridge), cmd)
    }

    /// Path of host `k`'s network namespace file (for `nsenter --net=`).
    pub fn netns_path(&self, k: usize) -> PathBuf {
        Path::new("/run/netns").join(&self.state(k).ns)
    }

    /// Runs `cmd` inside host `k`'s network namespace (via `nsenter --net`).
    pub fn exec_in_host(&self, k: usize, cmd: &[&str]) -> Output {
        exec_in_netns(&self.netns_path(k), cmd)
    }

    /// `swarm init` on host 1, advertising its cluster address.
    pub fn init(&self) -> Output {
        let addr = self.addr(1);
        self.host(1)
            .ok(&["swarm", "init", "--advertise-addr", &addr])
    }

    /// Joins hosts 2..=N as workers to host 1 and waits until host 1 lists
    /// every node as ready.
    pub fn join_all(&self) {
        let hosts: Vec<usize> = (2..=self.len()).collect();
        for chunk in hosts.chunks(PARALLEL) {
            std::thread::scope(|scope| {
                for &k in chunk {
                    scope.spawn(move || self.join(k, "worker"));
                }
            });
        }
        self.wait_nodes_ready(self.len());
    }

    /// Joins host `k` to host 1 with the join token of `role` (`worker` or
    /// `manager`) without `--advertise-addr`: as Docker does, the daemon advertises its
    /// address on the route to the manager (host `k`'s cluster address), and says which role
    /// it joined as.
    pub fn join(&self, k: usize, role: &str) {
        let token = self
            .host(1)
            .ok(&["swarm", "join-token", "-q", role])
            .stdout
            .trim()
            .to_string();
        let manager = format!("{}:2377", self.addr(1));
        let out = self
            .host(k)
            .ok(&["swarm", "join", "--token", &token, &manager]);
        assert!(
            out.stdout
                .contains(&format!("This node joined a swarm as a {role}.")),
            "host {k} joined with a {role} token and said: {}",
            out.stdout
        );
    }

    /// Waits until host 1 lists exactly `n` nodes with status `ready`, and
    /// returns their inspect views.
    pub fn wait_nodes_ready(&self, n: usize) -> serde_json::Value {
        wait_for(
            &format!("{n} ready nodes in `node ls` on host 1"),
            NODES_READY + Duration::from_secs(n as u64),
            || {
                let out = self.host(1).listed(&["node", "ls"], "node");
                if !out.success {
                    return Err(out.stderr);
                }
                let nodes: serde_json::Value = serde_json::from_str(&out.stdout)
                    .map_err(|e| format!("{e}: {}", out.stdout))?;
                let ready = nodes
                    .as_array()
                    .map(|a| a.iter().filter(|n| n["status"] == "ready").count())
                    .unwrap_or(0);
                if ready == n {
                    Ok(nodes)
                } else {
                    Err(out.stdout)
                }
            },
        )
    }

    /// SIGKILLs host `k`'s daemon (by PID) and cuts its link: its veth on the
    /// cluster bridge goes down, so the host is gone for everyone else. Its
    /// tasks' processes keep running, as on a host that lost its network.
    pub fn kill_host(&mut self, k: usize) {
        self.kill_daemon(k);
        self.set_link(k, false);
    }

    /// Undoes [`Cluster::kill_host`]: the link comes back up and the daemon
    /// starts again on the same state dir.
    pub fn restart_host(&mut self, k: usize) {
        self.kill_daemon(k);
        self.set_link(k, true);
        self.spawn(k);
        self.wait_serving(k);
    }

    /// Stops host `k`'s daemon with SIGTERM (a clean shutdown) and waits for it. A daemon
    /// still running [`STOP_DEADLINE`] later is killed and the test fails with its log.
    pub fn stop_host(&mut self, k: usize) {
        if self.hosts[k - 1].child.is_some() {
            self.terminate_host(k, STOP_DEADLINE);
        }
    }

    /// Sends SIGTERM to host `k`'s daemon and waits for it to exit; returns how long that took.
    /// Past `deadline`, SIGKILLs it and panics with what was seen.
    pub fn terminate_host(&mut self, k: usize, deadline: Duration) -> Duration {
        let mut child = self.hosts[k - 1]
            .child
            .take()
            .unwrap_or_else(|| panic!("host {k}'s daemon does not run"));
        let since = std::time::Instant::now();
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return since.elapsed();
            }
            if since.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "host {k}'s daemon still ran {deadline:?} after SIGTERM (killed it)\n\
                     --- daemon log of host {k} ---\n{}",
                    self.host(k).log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts host `k`'s daemon again on the same state dir (after
    /// [`Cluster::stop_host`] or [`Cluster::kill_host`]) and waits until it serves.
    pub fn start_host(&mut self, k: usize) {
        assert!(
            self.hosts[k - 1].child.is_none(),
            "host {k}'s daemon still runs"
        );
        self.set_link(k, true);
        self.spawn(k);
        self.wait_serving(k);
    }

    /// Sets host `k`'s link on the cluster bridge up or down (a partition).
    pub fn set_link(&self, k: usize, up: bool) {
        let bridge = self.bridge_ns.as_deref().expect("bridge namespace");
        let veth = format!("h{k}");
        let state = if up { "up" } else { "down" };
        run_ok("ip", &["-n", bridge, "link", "set", &veth, state]);
    }

    /// PID of host `k`'s daemon, if it runs.
    pub fn daemon_pid(&self, k: usize) -> Option<i32> {
        self.state(k).child.as_ref().map(|c| c.id() as i32)
    }

    /// What this cluster made (namespaces, daemon PIDs, directory), for a
    /// leak check after it is dropped: see [`Resources::leftovers`].
    pub fn resources(&self) -> Resources {
        let mut namespaces: Vec<String> = self.bridge_ns.iter().cloned().collect();
        namespaces.extend(self.hosts.iter().map(|h| h.ns.clone()));
        Resources {
            namespaces,
            pids: (1..=self.len())
                .filter_map(|k| self.daemon_pid(k))
                .collect(),
            dir: self.dir().to_path_buf(),
        }
    }

    fn kill_daemon(&mut self, k: usize) {
        if let Some(mut child) = self.hosts[k - 1].child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    fn spawn(&mut self, k: usize) {
        let host = &self.hosts[k - 1];
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(host.dir.join("daemon.log"))
            .expect("daemon log");
        let socket = format!("unix://{}", host.dir.join("mini.sock").display());
        // nsenter with only --net execs the daemon: the child's PID is the daemon's.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", host.ns))
            .arg(mini_binary())
            .arg("daemon")
            .arg("--state-dir")
            .arg(host.dir.join("state"))
            .arg("--run-dir")
            .arg(host.dir.join("run"))
            .arg("--host")
            .arg(&socket)
            .arg("--hostname")
            .arg(format!("h{k}"))
            .args(self.daemon_args.iter().map(|a| {
                a.replace(OUTSIDE, &self.outside_ip())
                    .replace(HOST_INDEX, &k.to_string())
            }))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("cannot run nsenter to start mini daemon");
        self.hosts[k - 1].child = Some(child);
    }

    fn wait_serving(&mut self, k: usize) {
        wait_for(
            &format!("the daemon of host {k} to answer `mini info`"),
            DAEMON_START,
            || {
                let log = self.host(k).log();
                if let Some(child) = self.hosts[k - 1].child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    return Err(format!("daemon exited with {status}: {log}"));
                }
                let out = self.host(k).mini(&["info"]);
                if out.success { Ok(()) } else { Err(out.stderr) }
            },
        );
    }

    /// PIDs of processes whose network namespace is one this cluster made
    /// (host namespaces and namespace files under its directory), and of
    /// task inits whose command line names a directory of this cluster (a
    /// task whose sandbox file its killed daemon had already removed).
    fn pids_in_namespaces(&self) -> Vec<i32> {
        let mut inodes = HashSet::new();
        for ns in self.resources().namespaces {
            if let Some(ino) = inode(&Path::new("/run/netns").join(ns)) {
                inodes.insert(ino);
            }
        }
        for host in &self.hosts {
            if let Ok(entries) = std::fs::read_dir(host.dir.join("run/netns")) {
                for entry in entries.flatten() {
                    if let Some(ino) = inode(&entry.path()) {
                        inodes.insert(ino);
                    }
                }
            }
        }
        let me = std::process::id() as i32;
        let dir = self
            .dir
            .as_ref()
            .map(|d| format!("{}/", d.path().display()).into_bytes());
        let mut pids = Vec::new();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return pids;
        };
        for entry in procs.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(link) = std::fs::read_link(entry.path().join("ns/net")) else {
                continue;
            };
            let link = link.to_string_lossy().into_owned();
            let ino = link
                .strip_prefix("net:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok());
            let ours = ino.is_some_and(|i| inodes.contains(&i))
                || dir.as_ref().is_some_and(|d| {
                    std::fs::read(entry.path().join("cmdline"))
                        .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg.starts_with(d)))
                });
            if pid != me && ours {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Host<'_> {
    /// Host number (1-based).
    pub fn index(&self) -> usize {
        self.k
    }

    fn state(&self) -> &HostState {
        &self.cluster.hosts[self.k - 1]
    }

    /// The hostname the daemon reports: `h<K>`.
    pub fn hostname(&self) -> String {
        format!("h{}", self.k)
    }

    /// The host's address on the cluster network.
    pub fn addr(&self) -> String {
        self.cluster.addr(self.k)
    }

    /// `unix://…` address of the daemon's socket (for `MINI_HOST`).
    pub fn socket(&self) -> String {
        format!("unix://{}", self.state().dir.join("mini.sock").display())
    }

    /// The daemon's `--run-dir` (namespaces under `netns/`).
    pub fn run_dir(&self) -> PathBuf {
        self.state().dir.join("run")
    }

    /// The daemon's `--state-dir`.
    pub fn state_dir(&self) -> PathBuf {
        self.state().dir.join("state")
    }

    /// The host's network namespace file.
    pub fn netns_path(&self) -> PathBuf {
        self.cluster.netns_path(self.k)
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state().dir.join("daemon.log")).unwrap_or_default()
    }

    /// Runs `mini ARGS…` against this host's daemon.
    pub fn mini(&self, args: &[&str]) -> Output {
        run_mini(&self.socket(), args)
    }

    /// The addresses `name` resolves to inside task `task` (busybox nslookup on the embedded
    /// DNS server, 127.0.0.11); empty when it resolves to nothing.
    pub fn lookup(&self, task: &str, name: &str) -> std::collections::BTreeSet<String> {
        let out = self.mini(&["exec", task, "busybox", "nslookup", name, "127.0.0.11"]);
        // busybox prints the server first, then a "Name:"/"Address:" block per answer.
        let answers = out.stdout.split_once("Name:").map_or("", |(_, rest)| rest);
        answers
            .lines()
            .filter_map(|l| {
                l.trim()
                    .strip_prefix("Address:")
                    .map(|a| a.trim().to_string())
            })
            .collect()
    }

    /// Runs `mini ARGS…` against this host's daemon with `input` on its standard input.
    pub fn mini_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        crate::cli::run_mini_with_input(&self.socket(), args, input)
    }

    /// Runs `mini ARGS…` and panics, showing stderr and the daemon's log,
    /// unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.mini(args);
        assert!(
            out.success,
            "`mini {}` on host {} failed: {}\n--- daemon log of host {} ---\n{}",
            args.join(" "),
            self.k,
            out.stderr,
            self.k,
            self.log()
        );
        out
    }

    /// Runs `mini ARGS…`, expects failure with a message, and returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.mini(args);
        assert!(
            !out.success,
            "`mini {}` on host {} should have failed but printed: {}",
            args.join(" "),
            self.k,
            out.stdout
        );
        assert!(
            !out.stderr.trim().is_empty(),
            "`mini {}` failed without a message",
            args.join(" ")
        );
        out.stderr
    }

    /// Runs `cmd` inside this host's network namespace.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        self.cluster.exec_in_host(self.k, cmd)
    }

    /// `mini info --format json`, or the error it printed.
    pub fn info(&self) -> Result<serde_json::Value, String> {
        let out = self.mini(&["info", "--format", "json"]);
        if out.success {
            Ok(out.json())
        } else {
            Err(out.stderr)
        }
    }

    /// This host's node id (it must be in a swarm).
    pub fn node_id(&self) -> String {
        let info = self
            .info()
            .unwrap_or_else(|e| panic!("`mini info` on host {}: {e}", self.k));
        info["node_id"].as_str().unwrap_or_default().to_string()
    }

    /// The inspect views of what `list` lists (see [`crate::cli::listed_views`]): a JSON array
    /// in `stdout`.
    pub fn listed(&self, list: &[&str], kind: &str) -> Output {
        crate::cli::listed_views(&|args| self.mini(args), list, kind)
    }

    /// [`Host::listed`], failing the test when a command fails.
    pub fn ok_listed(&self, list: &[&str], kind: &str) -> Output {
        let out = self.listed(list, kind);
        assert!(
            out.success,
            "`mini {} -q` / inspect failed on host {}: {}",
            list.join(" "),
            self.k,
            out.stderr
        );
        out
    }

    /// Every task of `service`, history included (the inspect view of each task `service ps`
    /// lists); fails the test when the command fails.
    pub fn tasks(&self, service: &str) -> Vec<serde_json::Value> {
        self.ok_listed(&["service", "ps", service], "task")
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The tasks of `service` meant to run and running.
    pub fn running_tasks(&self, service: &str) -> Vec<serde_json::Value> {
        let out = self.listed(&["service", "ps", service], "task");
        if !out.success {
            return Vec::new();
        }
        out.json()
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t["desired_state"] == "Running" && t["current_state"] == "Running")
            .collect()
    }

    /// Waits until exactly `n` tasks of `service` are meant to run and running; returns them.
    pub fn wait_running(&self, service: &str, n: usize) -> Vec<serde_json::Value> {
        wait_for(
            &format!("{n} running tasks of {service} on host {}", self.k),
            Duration::from_secs(30),
            || {
                let tasks = self.running_tasks(service);
                if tasks.len() == n {
                    Ok(tasks)
                } else {
                    Err(format!("{} running: {tasks:?}", tasks.len()))
                }
            },
        )
    }
}

/// Lines of each daemon log printed when a test fails.
const LOG_TAIL_LINES: usize = 80;

impl Cluster {
    /// Copies every host's daemon log to `<to>/<cluster dir name>/hK.log`; the directory.
    fn copy_logs(&self, to: &Path) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let name = dir.path().file_name()?.to_string_lossy().into_owned();
        let keep = to.join(name);
        let _ = std::fs::create_dir_all(&keep);
        for (i, host) in self.hosts.iter().enumerate() {
            let _ = std::fs::copy(
                host.dir.join("daemon.log"),
                keep.join(format!("h{}.log", i + 1)),
            );
        }
        Some(keep)
    }

    /// After a failure: copies every host's daemon log to `$TMPDIR/mini-failed-logs/<dir>/` and
    /// prints the last lines of each, so a failed CI run shows what the daemons saw.
    fn keep_logs(&self) {
        let Some(keep) = self.copy_logs(&std::env::temp_dir().join("mini-failed-logs")) else {
            return;
        };
        for i in 0..self.hosts.len() {
            let log =
                std::fs::read_to_string(keep.join(format!("h{}.log", i + 1))).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "--- last {} lines of h{}'s daemon log (whole log: {}) ---\n{}",
                tail.len(),
                i + 1,
                keep.join(format!("h{}.log", i + 1)).display(),
                tail.join("\n")
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Never panic here: this may run while a test is already panicking.
        for k in 1..=self.hosts.len() {
            self.kill_daemon(k);
        }
        if std::thread::panicking() {
            self.keep_logs();
        } else if let Some(to) = std::env::var_os("MINI_KEEP_LOGS") {
            // A benchmark or a by-hand run that wants the daemons' logs after a success too.
            self.copy_logs(Path::new(&to));
        }
        // Containers (runc) of killed daemons: their state, cgroups and processes.
        for host in &self.hosts {
            crate::image::remove_runc_containers(&host.dir.join("run/runc"));
        }
        // Tasks whose daemon is gone, and anything else left in our namespaces.
        kill_until_gone(|| self.pids_in_namespaces());
        if let Some(dir) = self.dir.as_ref() {
            unmount_all_under(dir.path(), "cluster cleanup");
        }
        for ns in self.resources().namespaces {
            if Path::new("/run/netns").join(&ns).exists() {
                let out = Command::new("ip").args(["netns", "del", &ns]).output();
                match out {
                    Ok(o) if o.status.success() => {}
                    Ok(o) => eprintln!(
                        "cluster cleanup: ip netns del {ns}: {}",
                        String::from_utf8_lossy(&o.stderr)
                    ),
                    Err(e) => eprintln!("cluster cleanup: ip netns del {ns}: {e}"),
                }
            }
        }
        if let Some(dir) = self.dir.take()
            && let Err(e) = dir.close()
        {
            eprintln!("cluster cleanup: removing the directory: {e}");
        }
    }
}

/// Runs `cmd` inside the network namespace whose file is `netns` (a host's,
/// or a task sandbox under a host's run dir), via `nsenter --net`.
pub fn exec_in_netns(netns: &Path, cmd: &[&str]) -> Output {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run nsenter");
    Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Mount points at or below `dir`, in /proc/self/mountinfo order (parents first).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(d)) = (bytes[i], octal) {
            let value = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// SIGKILLs every PID `pids` finds, again and again (up to 5 s) until it finds none.
pub(crate) fn kill_until_gone(mut pids: impl FnMut() -> Vec<i32>) {
    for _ in 0..50 {
        let found = pids();
        if found.is_empty() {
            break;
        }
        for pid in found {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Unmounts everything mounted under `dir`, deepest first (lazily when busy); `who` starts
/// the message of a mount that cannot go.
pub(crate) fn unmount_all_under(dir: &Path, who: &str) {
    for mount in mounts_under(dir).into_iter().rev() {
        if nix::mount::umount(&mount).is_err()
            && let Err(e) = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH)
        {
            eprintln!("{who}: cannot unmount {}: {e}", mount.display());
        }
    }
}

/// Inode of the namespace behind a namespace file.
pub(crate) fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Raises this process's soft limit on open files to the hard one (the daemons inherit it: a
/// manager holds a session per node).
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we own; setrlimit only reads it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Runs a setup command with `input` on its standard input; panics with its stderr unless it
/// succeeds.
fn run_ok_with_input(program: &str, args: &[&str], input: &[u8]) {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let written = child.stdin.take().expect("stdin").write_all(input);
    let out = child.wait_with_output().expect("wait");
    assert!(
        written.is_ok() && out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a setup command and panics with its stderr unless it succeeds.
pub(crate) fn run_ok(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
