//! The same lab as [`crate::Cluster`], running Docker Swarm: one `dockerd` (Debian's
//! `docker.io` 20.10) per host, for the side-by-side benchmark (`src/bin/swarm_bench.rs`).
//! Root only.
//!
//! Every host is a network namespace with an `eth0` on a bridge in a namespace of the lab's own
//! (`sb<pid>-<n>-hK`, `…-br`; addresses 10.73.X.K/24, the bridge namespace holds .254), and
//! runs `nsenter --net=<host ns> unshare --uts -- sh -c 'hostname hK; exec dockerd …'`: the
//! daemon enters the host's network namespace and a UTS namespace of its own (so the node's
//! hostname is `hK`, as the mini lab's), nothing else. Each daemon has its own everything:
//!
//! ```text
//! <dir>/hK/data         --data-root (overlay2 or vfs layers, swarm state, containerd's root)
//! <dir>/hK/run          --exec-root: dockerd's managed containerd (containerd/containerd.sock,
//!                       containerd.pid), its netns/ (overlay namespaces 1-<net id>, sandboxes)
//! <dir>/hK/run/docker.sock, docker.pid      the API socket and the daemon's PID
//! <dir>/hK/daemon.json  --config-file (only `deprecated-key-path`: the engine key stays here,
//!                       not in /etc/docker); <dir>/hK/cli the CLI's DOCKER_CONFIG
//! cgroups               --cgroup-parent /<prefix>-hK (every controller)
//! ```
//!
//! Docker 20.10 also writes outside its roots, whatever the flags: shim sockets in
//! `/run/containerd/s/`, `/run/docker/plugins/` and load-balancer sandbox files in
//! `/var/lib/docker/network/files/`. Those paths are removed on drop when they did not exist
//! before the lab started (else only what the lab's networks put there).
//!
//! Dropping a [`DockerLab`] — also while panicking — SIGKILLs, by PID, each dockerd, its
//! containerd, the shims that name its containerd socket, and every process in its hosts'
//! namespaces or container cgroups; unmounts everything under its directory; removes the
//! cgroups, the namespaces and the directory. [`DockerLab::leftovers`] says what is left.
//! The root network namespace is never touched: no docker0, no iptables rule there (each
//! dockerd programs its own host namespace).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::cli::Output;
use crate::cluster::{inode, kill_until_gone, mounts_under, run_ok, unmount_all_under};
use crate::wait::wait_for;

/// Paths Docker 20.10 writes whatever its flags say.
const GLOBAL_PATHS: &[&str] = &["/run/containerd", "/run/docker", "/var/lib/docker"];

static LABS: AtomicUsize = AtomicUsize::new(0);

/// The docker CLI: `$DOCKER_BIN`, else Debian's `/usr/bin/docker` (a newer client elsewhere on
/// the PATH would also do: it negotiates the API version).
pub fn docker_binary() -> PathBuf {
    std::env::var_os("DOCKER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker"))
}

/// The dockerd binary: `$DOCKERD_BIN`, else `/usr/sbin/dockerd` (Debian's docker.io).
pub fn dockerd_binary() -> PathBuf {
    std::env::var_os("DOCKERD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/dockerd"))
}

struct DockerHost {
    ns: String,
    dir: PathBuf,
    child: Option<Child>,
}

/// N hosts as network namespaces on a private bridge, each running its own `dockerd`.
pub struct DockerLab {
    prefix: String,
    octet: u8,
    bridge_ns: Option<String>,
    hosts: Vec<DockerHost>,
    dir: Option<tempfile::TempDir>,
    /// Which of [`GLOBAL_PATHS`] existed before the lab started.
    existed: Vec<bool>,
    /// Overlay network ids made in this lab (their files under /var/lib/docker are removed).
    networks: Vec<String>,
}

impl DockerLab {
    /// Makes `n` hosts and starts a dockerd on each (storage driver `storage`: `overlay2` or
    /// `vfs`; `insecure` registries allowed over plain HTTP, `{outside}` standing for
    /// [`DockerLab::outside_ip`]); waits until every daemon answers `docker info`. Panics (after
    /// cleaning up) when anything fails or when not root.
    pub fn start(n: usize, storage: &str, insecure: &[&str]) -> DockerLab {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the Docker lab needs root (network namespaces, mounts)"
        );
        assert!((1..=250).contains(&n), "a lab has 1..=250 hosts, not {n}");
        for (bin, pkg) in [
            (dockerd_binary(), "docker.io"),
            (docker_binary(), "docker.io"),
        ] {
            assert!(
                bin.exists(),
                "{} is missing: apt-get install --no-install-recommends {pkg} \
                 (see deploy/README.md: with a policy-rc.d that keeps its service from starting)",
                bin.display()
            );
        }
        let counter = LABS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() as usize;
        let prefix = format!("sb{}-{}", pid % 10000, counter);
        let octet = ((pid * 37 + counter) % 254 + 1) as u8;
        let dir = tempfile::Builder::new()
            .prefix(&format!("mini-{prefix}-"))
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let mut lab = DockerLab {
            prefix,
            octet,
            bridge_ns: None,
            hosts: Vec::new(),
            dir: Some(dir),
            existed: GLOBAL_PATHS.iter().map(|p| Path::new(p).exists()).collect(),
            networks: Vec::new(),
        };
        let bridge = format!("{}-br", lab.prefix);
        run_ok("ip", &["netns", "add", &bridge]);
        lab.bridge_ns = Some(bridge.clone());
        run_ok("ip", &["-n", &bridge, "link", "set", "lo", "up"]);
        run_ok(
            "ip",
            &["-n", &bridge, "link", "add", "br0", "type", "bridge"],
        );
        run_ok("ip", &["-n", &bridge, "link", "set", "br0", "up"]);
        let outside = format!("{}/24", lab.outside_ip());
        run_ok(
            "ip",
            &["-n", &bridge, "addr", "add", &outside, "dev", "br0"],
        );
        for k in 1..=n {
            let ns = format!("{}-h{k}", lab.prefix);
            run_ok("ip", &["netns", "add", &ns]);
            let dir = lab.dir().join(format!("h{k}"));
            for sub in ["data", "run", "cli"] {
                std::fs::create_dir_all(dir.join(sub)).expect("host dirs");
            }
            std::fs::write(
                dir.join("daemon.json"),
                format!(
                    "{{\"deprecated-key-path\": \"{}\"}}\n",
                    dir.join("key.json").display()
                ),
            )
            .expect("daemon.json");
            lab.hosts.push(DockerHost {
                ns: ns.clone(),
                dir,
                child: None,
            });
            let veth = format!("h{k}");
            run_ok("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            run_ok(
                "ip",
                &[
                    "-n", &bridge, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
            );
            run_ok(
                "ip",
                &["-n", &bridge, "link", "set", &veth, "master", "br0", "up"],
            );
            let addr = format!("{}/24", lab.addr(k));
            run_ok("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            run_ok("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        }
        let insecure: Vec<String> = insecure
            .iter()
            .map(|r| r.replace(crate::cluster::OUTSIDE, &lab.outside_ip()))
            .collect();
        for k in 1..=n {
            lab.spawn(k, storage, &insecure);
        }
        for k in 1..=n {
            lab.wait_serving(k);
        }
        lab
    }

    fn spawn(&mut self, k: usize, storage: &str, insecure: &[String]) {
        let host = &self.hosts[k - 1];
        let d = |sub: &str| host.dir.join(sub).display().to_string();
        let mut cmd = format!(
            "hostname h{k} && exec {} --config-file {} --data-root {} --exec-root {} \
             --pidfile {} -H unix://{} --cgroup-parent /{}-h{k} --storage-driver {storage}",
            dockerd_binary().display(),
            d("daemon.json"),
            d("data"),
            d("run"),
            d("run/docker.pid"),
            d("run/docker.sock"),
            self.prefix,
        );
        for r in insecure {
            cmd.push_str(&format!(" --insecure-registry {r}"));
        }
        let log = std::fs::File::create(host.dir.join("dockerd.log")).expect("log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", host.ns))
            .args(["unshare", "--uts", "--", "sh", "-c", &cmd])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("cannot run nsenter to start dockerd");
        self.hosts[k - 1].child = Some(child);
    }

    fn wait_serving(&mut self, k: usize) {
        wait_for(
            &format!("dockerd of host {k} to answer `docker info`"),
            Duration::from_secs(60),
            || {
                if let Some(child) = self.hosts[k - 1].child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    return Err(format!("dockerd exited with {status}: {}", self.log(k)));
                }
                let out = self.docker(k, &["info", "--format", "{{.ServerVersion}}"]);
                if out.success { Ok(()) } else { Err(out.stderr) }
            },
        );
    }

    /// `dockerd --version` (e.g. "Docker version 20.10.24+dfsg1, build 5d6db84").
    pub fn version() -> String {
        Command::new(dockerd_binary())
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether the lab has no hosts (never, once started).
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The lab's directory.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("lab dir").path()
    }

    /// Host `k`'s address, e.g. `10.73.5.2`.
    pub fn addr(&self, k: usize) -> String {
        format!("10.73.{}.{k}", self.octet)
    }

    /// The address of the bridge namespace (where a registry can listen).
    pub fn outside_ip(&self) -> String {
        format!("10.73.{}.254", self.octet)
    }

    /// Name of the bridge namespace.
    pub fn bridge_ns(&self) -> &str {
        self.bridge_ns.as_deref().expect("bridge namespace")
    }

    /// Path of host `k`'s network namespace file.
    pub fn netns_path(&self, k: usize) -> PathBuf {
        Path::new("/run/netns").join(&self.hosts[k - 1].ns)
    }

    /// Host `k`'s `--exec-root` (namespaces under `netns/`).
    pub fn run_dir(&self, k: usize) -> PathBuf {
        self.hosts[k - 1].dir.join("run")
    }

    /// Host `k`'s dockerd log so far.
    pub fn log(&self, k: usize) -> String {
        std::fs::read_to_string(self.hosts[k - 1].dir.join("dockerd.log")).unwrap_or_default()
    }

    /// Runs `docker ARGS…` against host `k`'s daemon.
    pub fn docker(&self, k: usize, args: &[&str]) -> Output {
        let host = &self.hosts[k - 1];
        let out = Command::new(docker_binary())
            .args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", host.dir.join("run/docker.sock").display()),
            )
            .env("DOCKER_CONFIG", host.dir.join("cli"))
            .stdin(Stdio::null())
            .output()
            .expect("cannot run docker");
        Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `docker ARGS…` on host `k`; panics with stderr and the daemon log's tail unless it
    /// succeeds.
    pub fn ok(&self, k: usize, args: &[&str]) -> Output {
        let out = self.docker(k, args);
        if !out.success {
            let log = self.log(k);
            let lines: Vec<&str> = log.lines().collect();
            panic!(
                "`docker {}` on host {k} failed: {}\n--- dockerd log of h{k} (tail) ---\n{}",
                args.join(" "),
                out.stderr,
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        out
    }

    /// `docker swarm init` on host 1, advertising its lab address.
    pub fn init(&self) {
        self.ok(1, &["swarm", "init", "--advertise-addr", &self.addr(1)]);
    }

    /// Joins hosts 2..=N as workers and waits until host 1 lists every node as Ready.
    pub fn join_all(&self) {
        let token = self
            .ok(1, &["swarm", "join-token", "-q", "worker"])
            .stdout
            .trim()
            .to_string();
        let manager = format!("{}:2377", self.addr(1));
        for k in 2..=self.len() {
            let addr = self.addr(k);
            self.ok(
                k,
                &[
                    "swarm",
                    "join",
                    "--token",
                    &token,
                    "--advertise-addr",
                    &addr,
                    &manager,
                ],
            );
        }
        let n = self.len();
        wait_for(
            &format!("{n} Ready nodes in `docker node ls`"),
            Duration::from_secs(60),
            || {
                let out = self.docker(1, &["node", "ls", "--format", "{{.Status}}"]);
                let ready = out.stdout.lines().filter(|l| l.trim() == "Ready").count();
                if ready == n { Ok(()) } else { Err(out.stdout) }
            },
        );
    }

    /// Records an overlay network id made in this lab (its load-balancer files under
    /// /var/lib/docker/network/files are removed on drop).
    pub fn note_network(&mut self, id: &str) {
        self.networks.push(id.to_string());
    }

    /// PID of host `k`'s dockerd, if it runs.
    pub fn dockerd_pid(&self, k: usize) -> Option<i32> {
        self.hosts[k - 1].child.as_ref().map(|c| c.id() as i32)
    }

    /// PID of host `k`'s containerd (dockerd's managed one), from its pid file.
    pub fn containerd_pid(&self, k: usize) -> Option<i32> {
        std::fs::read_to_string(self.run_dir(k).join("containerd/containerd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// PIDs of the containerd shims of host `k` (those naming its containerd socket).
    pub fn shim_pids(&self, k: usize) -> Vec<i32> {
        let sock = self.run_dir(k).join("containerd/containerd.sock");
        let sock = sock.to_string_lossy().into_owned();
        procs()
            .into_iter()
            .filter(|&pid| {
                let cmd = cmdline(pid);
                cmd.first().is_some_and(|c| c.contains("containerd-shim")) && cmd.contains(&sock)
            })
            .collect()
    }

    /// SIGKILLs host `k`'s dockerd (by PID) and sets its link on the lab bridge down. Its
    /// containerd, shims and containers keep running, cut off, as mini's tasks do in
    /// [`crate::Cluster::kill_host`].
    pub fn kill_host(&mut self, k: usize) {
        if let Some(mut child) = self.hosts[k - 1].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let bridge = self.bridge_ns().to_string();
        run_ok(
            "ip",
            &["-n", &bridge, "link", "set", &format!("h{k}"), "down"],
        );
    }

    /// The cgroup directories (every controller) of host `k`'s containers.
    fn cgroup_dirs(&self, k: usize) -> Vec<PathBuf> {
        let name = format!("{}-h{k}", self.prefix);
        let mut dirs = Vec::new();
        if let Ok(ctrls) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in ctrls.flatten() {
                let d = c.path().join(&name);
                if d.is_dir() {
                    dirs.push(d.clone());
                }
            }
        }
        dirs
    }

    /// PIDs of every process the lab started or that runs in its namespaces or cgroups.
    fn lab_pids(&self) -> Vec<i32> {
        let mut pids: HashSet<i32> = HashSet::new();
        let mut inodes = HashSet::new();
        for ns in self.namespaces() {
            if let Some(i) = inode(&Path::new("/run/netns").join(ns)) {
                inodes.insert(i);
            }
        }
        for k in 1..=self.len() {
            if let Ok(entries) = std::fs::read_dir(self.run_dir(k).join("netns")) {
                for e in entries.flatten() {
                    if let Some(i) = inode(&e.path()) {
                        inodes.insert(i);
                    }
                }
            }
            pids.extend(self.dockerd_pid(k));
            pids.extend(self.containerd_pid(k));
            pids.extend(self.shim_pids(k));
            for cg in self.cgroup_dirs(k) {
                for p in walk_dirs(&cg) {
                    if let Ok(s) = std::fs::read_to_string(p.join("cgroup.procs")) {
                        pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
                    }
                }
            }
        }
        let dir = format!("{}/", self.dir().display());
        for pid in procs() {
            let Ok(link) = std::fs::read_link(format!("/proc/{pid}/ns/net")) else {
                continue;
            };
            let ino = link
                .to_string_lossy()
                .strip_prefix("net:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok());
            if ino.is_some_and(|i| inodes.contains(&i))
                || cmdline(pid).iter().any(|a| a.starts_with(&dir))
            {
                pids.insert(pid);
            }
        }
        pids.remove(&(std::process::id() as i32));
        pids.into_iter().collect()
    }

    fn namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self.bridge_ns.iter().cloned().collect();
        v.extend(self.hosts.iter().map(|h| h.ns.clone()));
        v
    }

    /// What the lab left behind (after drop: nothing): namespaces, processes in its
    /// cgroups, mounts under its directory, the directory, cgroups.
    pub fn leftovers(prefix_dir: &(Vec<String>, PathBuf, Vec<PathBuf>)) -> Vec<String> {
        let (namespaces, dir, cgroups) = prefix_dir;
        let mut left = Vec::new();
        for ns in namespaces {
            if Path::new("/run/netns").join(ns).exists() {
                left.push(format!("namespace {ns}"));
            }
        }
        for m in mounts_under(dir) {
            left.push(format!("mount {}", m.display()));
        }
        if dir.exists() {
            left.push(format!("directory {}", dir.display()));
        }
        for cg in cgroups {
            if cg.exists() {
                left.push(format!("cgroup {}", cg.display()));
            }
        }
        left
    }

    /// Namespaces, directory and cgroups of the lab, for [`DockerLab::leftovers`] after drop.
    pub fn resources(&self) -> (Vec<String>, PathBuf, Vec<PathBuf>) {
        let cgroups = (1..=self.len()).flat_map(|k| self.cgroup_dirs(k)).collect();
        (self.namespaces(), self.dir().to_path_buf(), cgroups)
    }
}

impl Drop for DockerLab {
    fn drop(&mut self) {
        // Never panic here. dockerd first (so it restarts nothing), then everything else.
        for h in &mut self.hosts {
            if let Some(mut child) = h.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        kill_until_gone(|| self.lab_pids());
        if let Some(dir) = self.dir.as_ref() {
            unmount_all_under(dir.path(), "docker lab cleanup");
        }
        for k in 1..=self.hosts.len() {
            for cg in self.cgroup_dirs(k) {
                let mut dirs = walk_dirs(&cg);
                dirs.reverse(); // children first
                for d in dirs {
                    if let Err(e) = std::fs::remove_dir(&d) {
                        eprintln!("docker lab cleanup: rmdir {}: {e}", d.display());
                    }
                }
            }
        }
        for ns in self.namespaces() {
            if Path::new("/run/netns").join(&ns).exists() {
                let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            }
        }
        for (path, existed) in GLOBAL_PATHS.iter().zip(&self.existed) {
            if !existed {
                let _ = std::fs::remove_dir_all(path);
            }
        }
        for id in &self.networks {
            let _ = std::fs::remove_dir_all(format!("/var/lib/docker/network/files/lb_{id}"));
        }
        if let Some(dir) = self.dir.take()
            && let Err(e) = dir.close()
        {
            eprintln!("docker lab cleanup: removing the directory: {e}");
        }
    }
}

/// Every PID in /proc.
fn procs() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The arguments of `pid`.
fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `dir` and every directory below it, parents first.
fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = std::fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}
