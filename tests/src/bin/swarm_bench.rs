//! mini and Docker Swarm side by side (issue #16, item 4). Root only.
//!
//! One run measures both systems, one after the other (never at the same time: they would share
//! the two cores), on the same lab: `--hosts` network namespaces on a private bridge, one daemon
//! per host — `mini daemon` through the test harness ([`mini_tests::Cluster`]), `dockerd`
//! (Debian's docker.io 20.10, its own containerd, data root, exec root and cgroup parent per
//! host) through [`mini_tests::docker_lab::DockerLab`]. Host 1 runs `swarm init`, the others
//! join as workers. Both pull the same image (deploy/registry's busybox, two layers) from a
//! `docker-registry` in the lab's bridge namespace over plain HTTP, and run
//! `sleep 100000` tasks with `--stop-signal SIGKILL` (so scale-down measures the orchestrator,
//! not a 10 s stop grace period) on an overlay network (10.201.0.0/16). The same CLI commands
//! (`service create/scale/rm`, `service ls --format '{{.Name}} {{.Replicas}}'`,
//! `node ls --format '{{.Hostname}} {{.Status}}'`) drive both, through host 1.
//!
//! For each system, in order:
//! 1. `warm`: a global service (every host pulls the image), removed again; not a figure.
//! 2. `create_30`, `create_300`: `service create --replicas N` → REPLICAS shows N/N.
//!    After each, `idle`: with the N tasks running and nothing changing, each host's daemons'
//!    RSS (VmRSS) and PSS (Pss, shared pages split) — mini: the daemon + its per-task
//!    `task-init shim`s; Swarm: dockerd + containerd + every containerd-shim of the host — and CPU%
//!    (utime+stime over `--idle-secs`). Then `rm`: `service rm` → every task sandbox gone.
//! 3. `scale`: on the 30-task service, `service scale 3` → 3/3, then `scale 30` → 30/30.
//! 4. `propagation`: one pinned service per host (`--constraint node.hostname==hK`, one task
//!    each, so every host has the network); then `--samples` times a task is added on host A
//!    (rotating) and the time is taken until the new endpoint's neighbour entry (IP → MAC on
//!    `vxlan0`) AND FDB entry (MAC → A's address) exist in the overlay namespace of every other
//!    host (`<run dir>/netns/1-<network id[..10]>`: mini's --run-dir, dockerd's --exec-root;
//!    read over rtnetlink every `--poll-ms`). Start points: the scale command, the task's
//!    sandbox namespace file appearing on A, and the task's RUNNING timestamp (mini's
//!    `since_ms`, Docker's `Status.Timestamp`).
//! 5. `death`: SIGKILL of host N's daemon (dockerd; its containerd and tasks keep running, cut
//!    off, like mini's) and its link down → no survivor holds a neighbour or FDB entry of it
//!    (every survivor read every `--poll-ms`), and host 1's `node ls` shows it Down (asked on a
//!    thread of its own, so the CLI's own time does not slow the survivors' reads).
//!
//! Prints one JSON object (both systems' figures and their ratios, mini / Swarm) on stdout.
//! Everything a lab made is removed when it is dropped, also after a failure (see
//! [`mini_tests::docker_lab`] for what dockerd writes outside its roots).
//!
//! Set-up (once): `apt-get install --no-install-recommends docker.io` with a
//! `/usr/sbin/policy-rc.d` that exits 101 (so no dockerd starts in the machine's own network
//! namespace; see deploy/README.md), and docker-registry, skopeo, busybox-static.
//!
//! `sudo -E MINI_BIN=target/release/mini target/release/swarm_bench --hosts 5`
//! (`--only mini|swarm`, `--tasks 30,300`, `--samples 10`, `--idle-secs 10`, `--poll-ms 5`,
//! `--storage overlay2|vfs`)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mini_tests::bench::{cpu_secs, round1, rss_kib, summary, wall_ms};
use mini_tests::cli::Output;
use mini_tests::docker_lab::DockerLab;
use mini_tests::registry::{LocalRegistry, build_image};
use mini_tests::vxlan_peers::{Endpoint, NlNs};
use mini_tests::{Cluster, wait_for};
use serde_json::{Value, json};

const NETWORK: &str = "benchnet";
const SUBNET: &str = "10.201.0.0/16";
const PORT: u16 = 5000;

struct Args {
    hosts: usize,
    tasks: Vec<usize>,
    samples: usize,
    idle_secs: u64,
    poll_ms: u64,
    only: Option<String>,
    storage: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        hosts: 5,
        tasks: vec![30, 300],
        samples: 10,
        idle_secs: 10,
        poll_ms: 5,
        only: None,
        storage: "overlay2".into(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let flag = argv[i].as_str();
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        let num = || -> u64 {
            value.parse().unwrap_or_else(|_| {
                eprintln!("swarm_bench: {flag} wants a number, not {value:?}");
                std::process::exit(2)
            })
        };
        match flag {
            "--hosts" => a.hosts = num() as usize,
            "--samples" => a.samples = num() as usize,
            "--idle-secs" => a.idle_secs = num().max(1),
            "--poll-ms" => a.poll_ms = num().max(1),
            "--tasks" => {
                a.tasks = value
                    .split(',')
                    .map(|t| {
                        t.parse().unwrap_or_else(|_| {
                            eprintln!(
                                "swarm_bench: --tasks wants numbers like 30,300, not {value:?}"
                            );
                            std::process::exit(2)
                        })
                    })
                    .collect()
            }
            "--only" if value == "mini" || value == "swarm" => a.only = Some(value),
            "--storage" if value == "overlay2" || value == "vfs" => a.storage = value,
            "--only" | "--storage" => {
                eprintln!("swarm_bench: {flag} {value:?}: see --help for the values");
                std::process::exit(2)
            }
            "--help" | "-h" => {
                eprintln!(
                    "swarm_bench [--hosts N (5)] [--tasks 30,300] [--samples S (10)] \
                     [--idle-secs S (10)] [--poll-ms MS (5)] [--only mini|swarm] \
                     [--storage overlay2|vfs]"
                );
                std::process::exit(0);
            }
            other => {
                eprintln!("swarm_bench: unknown flag {other} (see --help)");
                std::process::exit(2)
            }
        }
        i += 2;
    }
    if a.hosts < 2 {
        eprintln!("swarm_bench: --hosts must be at least 2");
        std::process::exit(2);
    }
    if !a.tasks.contains(&30) {
        a.tasks.insert(0, 30);
    }
    a
}

// ---------------------------------------------------------------------------------------------
// The two systems behind one interface.

enum Lab {
    Mini(Cluster),
    Swarm(DockerLab),
}

/// One system's lab, its registry and the image reference its tasks run.
struct System {
    // Dropped first: the registry lives in the lab's directory.
    registry: Option<LocalRegistry>,
    lab: Lab,
    image: String,
    net_id: String,
}

impl System {
    fn name(&self) -> &'static str {
        match self.lab {
            Lab::Mini(_) => "mini",
            Lab::Swarm(_) => "swarm",
        }
    }

    fn n(&self) -> usize {
        match &self.lab {
            Lab::Mini(c) => c.len(),
            Lab::Swarm(d) => d.len(),
        }
    }

    /// The CLI (`mini` or `docker`) on host `k`.
    fn cli_on(&self, k: usize, args: &[&str]) -> Output {
        match &self.lab {
            Lab::Mini(c) => c.host(k).mini(args),
            Lab::Swarm(d) => d.docker(k, args),
        }
    }

    /// The CLI on host 1 (the manager).
    fn cli(&self, args: &[&str]) -> Output {
        self.cli_on(1, args)
    }

    /// The CLI on host 1, retried (up to 10 times, 100 ms apart) on a write conflict; panics
    /// with stderr unless it succeeds.
    fn ok(&self, args: &[&str]) -> Output {
        let mut out = self.cli(args);
        for _ in 0..10 {
            if out.success
                || !(out.stderr.contains("changed meanwhile")
                    || out.stderr.contains("out of sequence"))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            out = self.cli(args);
        }
        assert!(
            out.success,
            "{}: `{}` failed: {}",
            self.name(),
            args.join(" "),
            out.stderr
        );
        out
    }

    fn addr(&self, k: usize) -> String {
        match &self.lab {
            Lab::Mini(c) => c.addr(k),
            Lab::Swarm(d) => d.addr(k),
        }
    }

    fn vtep(&self, k: usize) -> [u8; 4] {
        self.addr(k).parse::<Ipv4Addr>().expect("address").octets()
    }

    fn run_dir(&self, k: usize) -> PathBuf {
        match &self.lab {
            Lab::Mini(c) => c.host(k).run_dir(),
            Lab::Swarm(d) => d.run_dir(k),
        }
    }

    fn overlay_ns(&self, k: usize) -> PathBuf {
        self.run_dir(k)
            .join("netns")
            .join(format!("1-{}", &self.net_id[..10]))
    }

    /// Task sandbox namespace files on host `k` (not overlay, load-balancer or ingress ones).
    fn sandboxes(&self, k: usize) -> BTreeSet<String> {
        std::fs::read_dir(self.run_dir(k).join("netns"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| {
                        !n.starts_with("1-") && !n.starts_with("lb_") && n != "ingress_sbox"
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn all_sandboxes(&self) -> usize {
        (1..=self.n()).map(|k| self.sandboxes(k).len()).sum()
    }

    /// (running, desired) of `service` as `service ls` shows them (REPLICAS).
    fn replicas(&self, service: &str) -> Option<(usize, usize)> {
        let query = mini_tests::bench::replicas_query(service);
        let out = self.cli(&query.each_ref().map(String::as_str));
        mini_tests::bench::parse_replicas(&out.stdout, service)
    }

    /// Waits until `service ls` shows `n/n`; returns the seconds since `t0`.
    fn wait_replicas(&self, service: &str, n: usize, t0: Instant, limit: Duration) -> f64 {
        wait_for(
            &format!("{}: {service} at {n}/{n}", self.name()),
            limit,
            || match self.replicas(service) {
                Some((r, d)) if r == n && d == n => Ok(t0.elapsed().as_secs_f64()),
                other => Err(format!("{other:?}")),
            },
        )
    }

    fn create(&self, name: &str, replicas: Option<usize>, extra: &[&str]) {
        let n = replicas.map(|r| r.to_string());
        let mut args = vec!["service", "create", "--detach", "--name", name];
        if let Some(n) = &n {
            args.extend(["--replicas", n]);
        }
        args.extend(["--network", NETWORK, "--stop-signal", "SIGKILL"]);
        args.extend(extra);
        args.extend([self.image.as_str(), "sleep", "100000"]);
        self.ok(&args);
    }

    /// `service rm`, then waits until every task sandbox of the lab is gone but `keep`; returns
    /// the seconds that took.
    fn remove(&self, name: &str, keep: usize) -> f64 {
        let t0 = Instant::now();
        self.ok(&["service", "rm", name]);
        wait_for(
            &format!("{}: the tasks of {name} gone", self.name()),
            Duration::from_secs(600),
            || {
                let left = self.all_sandboxes();
                if left <= keep {
                    Ok(t0.elapsed().as_secs_f64())
                } else {
                    Err(format!("{left} sandboxes"))
                }
            },
        )
    }

    /// The daemon processes of host `k`, by role.
    fn daemons(&self, k: usize) -> Vec<(&'static str, i32)> {
        match &self.lab {
            Lab::Mini(c) => {
                let mut v: Vec<(&'static str, i32)> =
                    c.daemon_pid(k).map(|p| ("mini", p)).into_iter().collect();
                v.extend(
                    mini_shims(&c.host(k).run_dir())
                        .into_iter()
                        .map(|p| ("shims", p)),
                );
                v
            }
            Lab::Swarm(d) => {
                let mut v: Vec<(&'static str, i32)> = Vec::new();
                v.extend(d.dockerd_pid(k).map(|p| ("dockerd", p)));
                v.extend(d.containerd_pid(k).map(|p| ("containerd", p)));
                v.extend(d.shim_pids(k).into_iter().map(|p| ("shims", p)));
                v
            }
        }
    }

    fn kill_host(&mut self, k: usize) {
        match &mut self.lab {
            Lab::Mini(c) => c.kill_host(k),
            Lab::Swarm(d) => d.kill_host(k),
        }
    }

    /// Whether host 1's `node ls` shows host `k` Down.
    fn node_down(&self, k: usize) -> bool {
        let out = self.cli(&mini_tests::bench::NODE_STATUS_QUERY);
        mini_tests::bench::shows_down(&out.stdout, &format!("h{k}"))
    }

    /// Wall-clock ms at which the running task of `service` with overlay address `ip` was
    /// stamped RUNNING, once the manager knows it.
    fn running_stamp(&self, service: &str, ip: [u8; 4]) -> Option<f64> {
        let want = Ipv4Addr::from(ip).to_string();
        let ids = self.cli(&["service", "ps", "-q", "--no-trunc", service]);
        let ids: Vec<&str> = ids.stdout.split_whitespace().collect();
        if ids.is_empty() {
            return None;
        }
        let mut args = vec!["inspect", "--type", "task"];
        args.extend(ids);
        let out = self.cli(&args);
        let tasks: Value = serde_json::from_str(&out.stdout).ok()?;
        for t in tasks.as_array()? {
            match &self.lab {
                Lab::Mini(_) => {
                    let addr = t["networks"][0]["addr"].as_str().unwrap_or_default();
                    if t["current_state"] == "Running" && addr.split('/').next() == Some(&want) {
                        return t["since_ms"].as_f64();
                    }
                }
                Lab::Swarm(_) => {
                    let has = t["NetworksAttachments"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|a| a["Addresses"].as_array().into_iter().flatten())
                        .any(|a| a.as_str().and_then(|s| s.split('/').next()) == Some(&want));
                    if t["Status"]["State"] == "running" && has {
                        return t["Status"]["Timestamp"].as_str().and_then(rfc3339_ms);
                    }
                }
            }
        }
        None
    }
}

/// Milliseconds since the epoch of an RFC 3339 UTC timestamp (`2026-12-04T15:26:07.0573Z`).
fn rfc3339_ms(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + hh * 3600 + mm * 60 + ss;
    Some((secs as f64 + frac) * 1000.0)
}

// ---------------------------------------------------------------------------------------------
// Process figures.

fn rss_mib(pid: i32) -> f64 {
    rss_kib(pid) as f64 / 1024.0
}

/// Proportional set size (Pss, shared pages split between their users) of `pid`, in MiB.
fn pss_mib(pid: i32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// PIDs of mini's per-task shims (`mini task-init shim … <run dir>/tasks/…`) of the host whose
/// run dir is `run_dir`: they are mini's counterpart of containerd-shim.
fn mini_shims(run_dir: &Path) -> Vec<i32> {
    let dir = format!("{}/", run_dir.display());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> = cmd
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.get(1).map(String::as_str) == Some("task-init")
                && args.get(2).map(String::as_str) == Some("shim")
                && args.iter().any(|a| a.starts_with(&dir))
        })
        .collect()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// RSS and CPU% of every host's daemons over `secs` with nothing changing.
fn idle(sys: &System, secs: u64, tasks: usize) -> Value {
    std::thread::sleep(Duration::from_secs(3));
    let n = sys.n();
    let procs: Vec<Vec<(&str, i32)>> = (1..=n).map(|k| sys.daemons(k)).collect();
    let cpu0: Vec<Vec<f64>> = procs
        .iter()
        .map(|ps| ps.iter().map(|(_, p)| cpu_secs(*p)).collect())
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let elapsed = t0.elapsed().as_secs_f64();
    let mut per_host = Vec::new();
    let (mut rss_all, mut cpu_all, mut pss_all) = (Vec::new(), Vec::new(), Vec::new());
    for (k, ps) in procs.iter().enumerate() {
        let mut by_role: BTreeMap<&str, (f64, f64, usize, f64)> = BTreeMap::new();
        for (i, (role, pid)) in ps.iter().enumerate() {
            let e = by_role.entry(*role).or_default();
            e.0 += rss_mib(*pid);
            e.1 += (cpu_secs(*pid) - cpu0[k][i]) / elapsed * 100.0;
            e.2 += 1;
            e.3 += pss_mib(*pid);
        }
        let rss: f64 = by_role.values().map(|v| v.0).sum();
        let cpu: f64 = by_role.values().map(|v| v.1).sum();
        let pss: f64 = by_role.values().map(|v| v.3).sum();
        rss_all.push(rss);
        cpu_all.push(cpu);
        pss_all.push(pss);
        per_host.push(json!({
            "host": format!("h{}", k + 1),
            "rss_mib": round1(rss),
            "pss_mib": round1(pss),
            "cpu_pct": (cpu * 100.0).round() / 100.0,
            "processes": by_role.iter().map(|(r, v)| json!({
                "role": r, "count": v.2, "rss_mib": round1(v.0), "pss_mib": round1(v.3),
                "cpu_pct": (v.1 * 100.0).round() / 100.0,
            })).collect::<Vec<_>>(),
        }));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    json!({
        "tasks_running": tasks,
        "window_s": round1(elapsed),
        "rss_mib_manager_h1": round1(rss_all[0]),
        "rss_mib_worker_mean": round1(mean(&rss_all[1..])),
        "rss_mib_total": round1(rss_all.iter().sum()),
        "pss_mib_manager_h1": round1(pss_all[0]),
        "pss_mib_worker_mean": round1(mean(&pss_all[1..])),
        "pss_mib_total": round1(pss_all.iter().sum()),
        "cpu_pct_manager_h1": (cpu_all[0] * 100.0).round() / 100.0,
        "cpu_pct_worker_mean": (mean(&cpu_all[1..]) * 100.0).round() / 100.0,
        "cpu_pct_total": (cpu_all.iter().sum::<f64>() * 100.0).round() / 100.0,
        "per_host": per_host,
        "loadavg": loadavg(),
    })
}

// ---------------------------------------------------------------------------------------------
// The measurements.

fn setup(which: &str, n: usize, storage: &str) -> System {
    let started = Instant::now();
    let mut sys = if which == "mini" {
        let cluster = Cluster::start_with(n, &["--insecure-registry", "{outside}:5000"]);
        cluster.exec_outside(&["true"]); // gives the bridge namespace its address
        let registry = LocalRegistry::start_in(
            cluster.bridge_ns(),
            &cluster.outside_ip(),
            PORT,
            cluster.dir().join("registry"),
        );
        System {
            image: format!("{}/busybox:latest", registry.addr),
            registry: Some(registry),
            lab: Lab::Mini(cluster),
            net_id: String::new(),
        }
    } else {
        let lab = DockerLab::start(n, storage, &["{outside}:5000"]);
        let registry = LocalRegistry::start_in(
            lab.bridge_ns(),
            &lab.outside_ip(),
            PORT,
            lab.dir().join("registry"),
        );
        System {
            image: format!("{}/busybox:latest", registry.addr),
            registry: Some(registry),
            lab: Lab::Swarm(lab),
            net_id: String::new(),
        }
    };
    let dir = match &sys.lab {
        Lab::Mini(c) => c.dir().to_path_buf(),
        Lab::Swarm(d) => d.dir().to_path_buf(),
    };
    let archive = dir.join("busybox.tar");
    build_image(&archive, "busybox:latest", 0);
    sys.registry
        .as_ref()
        .expect("registry")
        .push(&archive, "busybox:latest", None);
    match &mut sys.lab {
        Lab::Mini(c) => {
            c.init();
            c.join_all();
        }
        Lab::Swarm(d) => {
            d.init();
            d.join_all();
        }
    }
    sys.ok(&[
        "network", "create", "-d", "overlay", "--subnet", SUBNET, NETWORK,
    ]);
    let id = sys.cli(&["network", "inspect", "--format", "{{.ID}}", NETWORK]);
    let mut id = id.stdout.trim().to_string();
    if id.len() < 10 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        // mini without --format on network inspect: its JSON view.
        let v = sys.ok(&["network", "inspect", NETWORK]).json();
        id = v[0]["id"].as_str().unwrap_or_default().to_string();
    }
    assert!(id.len() >= 10, "{}: network id {id:?}", sys.name());
    if let Lab::Swarm(d) = &mut sys.lab {
        d.note_network(&id);
    }
    sys.net_id = id;
    eprintln!(
        "{}: {n} hosts up, swarm formed, network {} ({:.1} s)",
        sys.name(),
        &sys.net_id[..12],
        started.elapsed().as_secs_f64()
    );
    sys
}

struct Sample {
    from_command_ms: f64,
    from_sandbox_ms: f64,
    from_running_ms: f64,
}

fn propagate_one(
    sys: &System,
    socks: &mut [NlNs],
    a: usize,
    count: &mut [usize],
    poll: Duration,
) -> Result<Sample, String> {
    let n = sys.n();
    let va = sys.vtep(a);
    let others: Vec<usize> = (1..=n).filter(|&k| k != a).collect();
    let base: HashMap<usize, BTreeSet<Endpoint>> = others
        .iter()
        .map(|&k| (k, socks[k - 1].peers().at(va)))
        .collect();
    let before = sys.sandboxes(a).len();
    count[a - 1] += 1;
    let service = format!("p-h{a}");
    let t_cmd = wall_ms();
    sys.ok(&[
        "service",
        "scale",
        "--detach",
        &format!("{service}={}", count[a - 1]),
    ]);
    let mut t_sandbox = None;
    let mut seen: HashMap<usize, (f64, Endpoint)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < others.len() {
        if Instant::now() > deadline {
            return Err(format!(
                "{}: endpoint on h{a} not everywhere after 60 s: seen on {:?}",
                sys.name(),
                seen.keys().collect::<Vec<_>>()
            ));
        }
        if t_sandbox.is_none() && sys.sandboxes(a).len() > before {
            t_sandbox = Some(wall_ms());
        }
        for &k in &others {
            if seen.contains_key(&k) {
                continue;
            }
            let now = wall_ms();
            let new: Vec<_> = socks[k - 1]
                .peers()
                .at(va)
                .difference(&base[&k])
                .copied()
                .collect();
            if let Some(ep) = new.first() {
                seen.insert(k, (now, *ep));
            }
        }
        std::thread::sleep(poll);
    }
    let eps: BTreeSet<_> = seen.values().map(|(_, e)| *e).collect();
    if eps.len() != 1 {
        return Err(format!("nodes saw different new endpoints: {eps:?}"));
    }
    let (ip, _) = *eps.iter().next().expect("one endpoint");
    let last = seen.values().map(|(t, _)| *t).fold(f64::MIN, f64::max);
    let deadline = Instant::now() + Duration::from_secs(20);
    let t_running = loop {
        if let Some(t) = sys.running_stamp(&service, ip) {
            break t;
        }
        if Instant::now() > deadline {
            break f64::NAN;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Sample {
        from_command_ms: last - t_cmd,
        from_sandbox_ms: last - t_sandbox.unwrap_or(f64::NAN),
        from_running_ms: last - t_running,
    })
}

/// Everything for one system; the lab is dropped (removed) at the end, also on panic.
fn run(which: &str, args: &Args) -> Value {
    let started = Instant::now();
    let n = args.hosts;
    let mut sys = setup(which, n, &args.storage);
    let name = sys.name();
    let mut out = serde_json::Map::new();
    out.insert("loadavg_start".into(), json!(loadavg()));

    // 1. Warm-up: every host pulls the image.
    let t0 = Instant::now();
    sys.create("warm", None, &["--mode", "global"]);
    let warm = sys.wait_replicas("warm", n, t0, Duration::from_secs(300));
    let warm_rm = sys.remove("warm", 0);
    eprintln!(
        "{name}: warm-up (global service, image pulled on {n} hosts) {warm:.1} s, rm {warm_rm:.1} s"
    );
    out.insert(
        "warmup_global_s".into(),
        json!({"create": round1(warm), "rm": round1(warm_rm)}),
    );

    // 2./3. Create N, idle, (scale), remove.
    for &t in &args.tasks {
        let svc = format!("s{t}");
        let t0 = Instant::now();
        let load = loadavg();
        sys.create(&svc, Some(t), &[]);
        let secs = sys.wait_replicas(&svc, t, t0, Duration::from_secs(900));
        eprintln!("{name}: service create → {t}/{t} running in {secs:.2} s");
        out.insert(
            format!("create_{t}"),
            json!({"seconds": (secs * 1000.0).round() / 1000.0,
                   "tasks_per_s": round1(t as f64 / secs), "loadavg_before": load}),
        );
        let idle_fig = idle(&sys, args.idle_secs, t);
        eprintln!("{name}: idle with {t} tasks: {idle_fig}");
        out.insert(format!("idle_{t}"), idle_fig);
        if t == 30 {
            let t0 = Instant::now();
            sys.ok(&["service", "scale", "--detach", "s30=3"]);
            let down = sys.wait_replicas(&svc, 3, t0, Duration::from_secs(300));
            // The tasks' sandboxes gone (the containers really stopped).
            wait_for("27 sandboxes gone", Duration::from_secs(300), || {
                let s = sys.all_sandboxes();
                if s <= 3 { Ok(()) } else { Err(format!("{s}")) }
            });
            let down_gone = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            sys.ok(&["service", "scale", "--detach", "s30=30"]);
            let up = sys.wait_replicas(&svc, 30, t1, Duration::from_secs(300));
            eprintln!(
                "{name}: scale 30→3 {down:.2} s (sandboxes gone {down_gone:.2} s), 3→30 {up:.2} s"
            );
            out.insert(
                "scale".into(),
                json!({"down_30_to_3_s": (down * 1000.0).round() / 1000.0,
                       "down_sandboxes_gone_s": (down_gone * 1000.0).round() / 1000.0,
                       "up_3_to_30_s": (up * 1000.0).round() / 1000.0}),
            );
        }
        let rm = sys.remove(&svc, 0);
        eprintln!("{name}: service rm of {t} tasks → sandboxes gone in {rm:.2} s");
        out.insert(
            format!("rm_{t}"),
            json!({"seconds": (rm * 1000.0).round() / 1000.0}),
        );
    }

    // 4. Propagation.
    for k in 1..=n {
        sys.create(
            &format!("p-h{k}"),
            Some(1),
            &["--constraint", &format!("node.hostname==h{k}")],
        );
    }
    for k in 1..=n {
        sys.wait_replicas(
            &format!("p-h{k}"),
            1,
            Instant::now(),
            Duration::from_secs(300),
        );
    }
    let mut socks: Vec<NlNs> = (1..=n)
        .map(|k| {
            let path = sys.overlay_ns(k);
            wait_for(
                &format!("{name}: overlay namespace of h{k}"),
                Duration::from_secs(30),
                || NlNs::open(&path),
            )
        })
        .collect();
    // Every host holds every other host's pinned endpoint before the first sample.
    wait_for(
        &format!("{name}: the pinned endpoints everywhere"),
        Duration::from_secs(60),
        || {
            for k in 1..=n {
                let p = socks[k - 1].peers();
                for j in (1..=n).filter(|&j| j != k) {
                    if p.at(sys.vtep(j)).is_empty() {
                        return Err(format!("h{k} lacks h{j}'s endpoint"));
                    }
                }
            }
            Ok(())
        },
    );
    let poll = Duration::from_millis(args.poll_ms);
    let mut count = vec![1usize; n];
    let (mut cmd, mut sbx, mut run_ms, mut errors) = (vec![], vec![], vec![], vec![]);
    for i in 0..args.samples {
        let a = i % n + 1;
        match propagate_one(&sys, &mut socks, a, &mut count, poll) {
            Ok(s) => {
                cmd.push(s.from_command_ms);
                sbx.push(s.from_sandbox_ms);
                if s.from_running_ms.is_finite() {
                    run_ms.push(s.from_running_ms);
                }
            }
            Err(e) => errors.push(e),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let prop = json!({
        "samples": cmd.len(),
        "poll_interval_ms": args.poll_ms,
        "from_scale_command_ms": summary(&cmd),
        "from_sandbox_file_ms": summary(&sbx),
        "from_running_ms": summary(&run_ms),
        "errors": errors,
    });
    eprintln!("{name}: propagation {prop}");
    out.insert("propagation".into(), prop);

    // 5. Node death.
    let victim = n;
    let dead = sys.vtep(victim);
    let survivors: Vec<usize> = (1..victim).collect();
    let dead_eps: BTreeSet<Endpoint> = survivors
        .iter()
        .flat_map(|&k| socks[k - 1].peers().at(dead))
        .collect();
    let t0 = Instant::now();
    sys.kill_host(victim);
    let deadline = t0 + Duration::from_secs(120);
    let every = poll.max(Duration::from_millis(20));
    // `node ls` on its own thread: one CLI call takes 0.1–0.3 s (docker's more than mini's),
    // and inside the survivors' loop it set the resolution of their purge times.
    let (purged_at, down_at) = std::thread::scope(|scope| {
        let sys = &sys;
        let down = scope.spawn(move || {
            while Instant::now() < deadline {
                if sys.node_down(victim) {
                    return Some(t0.elapsed().as_secs_f64());
                }
                std::thread::sleep(every);
            }
            None
        });
        let mut purged_at: HashMap<usize, f64> = HashMap::new();
        while purged_at.len() < survivors.len() && Instant::now() < deadline {
            for &k in &survivors {
                if purged_at.contains_key(&k) {
                    continue;
                }
                let p = socks[k - 1].peers();
                let stale = p.fdb.values().any(|v| *v == dead)
                    || p.neigh.iter().any(|e| dead_eps.contains(e));
                if !stale {
                    purged_at.insert(k, t0.elapsed().as_secs_f64());
                }
            }
            std::thread::sleep(every);
        }
        (purged_at, down.join().expect("the node ls thread"))
    });
    let purged = (purged_at.len() == survivors.len())
        .then(|| purged_at.values().copied().fold(f64::MIN, f64::max));
    let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
    let death = json!({
        "victim": format!("h{victim}"),
        "endpoints_of_victim": dead_eps.len(),
        "peers_purged_everywhere_s": purged.map(r3),
        "node_down_s": down_at.map(r3),
        "per_node_purged_s": survivors.iter().map(|k| purged_at.get(k).map(|v| r3(*v))).collect::<Vec<_>>(),
        "waited_s": round1(t0.elapsed().as_secs_f64()),
    });
    eprintln!("{name}: node death {death}");
    out.insert("death".into(), death);
    out.insert("loadavg_end".into(), json!(loadavg()));
    out.insert(
        "duration_s".into(),
        json!(round1(started.elapsed().as_secs_f64())),
    );
    drop(socks);
    drop(sys);
    Value::Object(out)
}

/// mini's figure / Swarm's, three decimals.
fn ratio(mini: &Value, swarm: &Value) -> Value {
    match (mini.as_f64(), swarm.as_f64()) {
        (Some(m), Some(s)) if s != 0.0 => json!((m / s * 1000.0).round() / 1000.0),
        _ => Value::Null,
    }
}

fn main() {
    let args = parse_args();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("swarm_bench: needs root (namespaces, mounts, dockerd)");
        std::process::exit(1);
    }
    let started = Instant::now();
    let date = std::process::Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let load_before = loadavg();
    let systems: Vec<&str> = match args.only.as_deref() {
        Some(s) => vec![s],
        None => vec!["mini", "swarm"],
    };
    let mut results = serde_json::Map::new();
    for s in &systems {
        // A system that fails (e.g. a wait that times out on an overloaded machine) is reported
        // as such; its lab is removed while unwinding and the other system still runs.
        let fig = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(s, &args)))
            .unwrap_or_else(|e| {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|m| m.to_string()))
                    .unwrap_or_default();
                let first = msg.lines().next().unwrap_or_default().to_string();
                eprintln!("{s}: FAILED: {first}");
                json!({"error": first, "loadavg": loadavg()})
            });
        results.insert(s.to_string(), fig);
    }
    let mut ratios = serde_json::Map::new();
    if let (Some(m), Some(s)) = (results.get("mini"), results.get("swarm")) {
        let mut put = |key: &str, path: &[&str]| {
            let get = |v: &Value| path.iter().fold(v.clone(), |v, p| v[*p].clone());
            ratios.insert(key.into(), ratio(&get(m), &get(s)));
        };
        for t in &args.tasks {
            put(
                &format!("create_{t}_s"),
                &[format!("create_{t}").as_str(), "seconds"],
            );
            put(&format!("rm_{t}_s"), &[&format!("rm_{t}"), "seconds"]);
            put(
                &format!("idle_{t}_rss_mib_worker_mean"),
                &[&format!("idle_{t}"), "rss_mib_worker_mean"],
            );
            put(
                &format!("idle_{t}_rss_mib_manager_h1"),
                &[&format!("idle_{t}"), "rss_mib_manager_h1"],
            );
            put(
                &format!("idle_{t}_pss_mib_total"),
                &[&format!("idle_{t}"), "pss_mib_total"],
            );
            put(
                &format!("idle_{t}_rss_mib_total"),
                &[&format!("idle_{t}"), "rss_mib_total"],
            );
            put(
                &format!("idle_{t}_cpu_pct_total"),
                &[&format!("idle_{t}"), "cpu_pct_total"],
            );
        }
        put("scale_down_30_to_3_s", &["scale", "down_30_to_3_s"]);
        put("scale_up_3_to_30_s", &["scale", "up_3_to_30_s"]);
        put(
            "propagation_p50_from_command_ms",
            &["propagation", "from_scale_command_ms", "p50"],
        );
        put(
            "propagation_p50_from_running_ms",
            &["propagation", "from_running_ms", "p50"],
        );
        put(
            "propagation_p99_from_running_ms",
            &["propagation", "from_running_ms", "p99"],
        );
        put(
            "death_peers_purged_s",
            &["death", "peers_purged_everywhere_s"],
        );
        put("death_node_down_s", &["death", "node_down_s"]);
    }
    let docker_version = DockerLab::version();
    let report = json!({
        "bench": "mini_vs_swarm",
        "date": date,
        "hosts": args.hosts,
        "tasks": args.tasks,
        "mini_binary": mini_tests::binary::mini_binary().display().to_string(),
        "docker": docker_version,
        "storage_driver": args.storage,
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "results": results,
        "ratio_mini_over_swarm": ratios,
        "duration_s": round1(started.elapsed().as_secs_f64()),
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}
