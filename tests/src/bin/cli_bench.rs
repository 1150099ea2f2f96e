//! Benchmark of the CLI's own cost (issue #15): `mini service ls` with 500 services, against
//! the daemon's answer to the one call it makes. Root only.
//!
//! Starts one host with the test harness, `swarm init`, creates `--services` services (500;
//! `--replicas 0`, so no task runs) with the CLI, then, `--runs` times (20, after 3 warm-ups),
//! interleaved so that load on the machine hits all alike:
//!
//! - `rpc_ms`: a tonic client connects to the daemon's socket and calls `ListServices` (what
//!   `mini service ls` asks), in this process: the daemon's answer, with no process start;
//! - `service_ls_ms`: wall time of the `mini service ls` process (start, connect, call, table);
//! - `service_ls_q_ms`, `service_ls_json_ms`: the same with `-q`, `--format json`;
//! - `version_ms`: `mini --version`, the process start alone.
//!
//! `cli_overhead_ms` = p50(`service_ls_ms`) − p50(`rpc_ms`). Prints one JSON object.
//!
//! `sudo -E target/debug/cli_bench [--services 500] [--runs 20]` (uses `MINI_BIN` if set, else
//! target/debug/mini).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use mini_proto::v1::ListServicesRequest;
use mini_proto::v1::control_client::ControlClient;
use mini_tests::bench::{round1, summary};
use mini_tests::binary::mini_binary;
use mini_tests::{Cluster, wait_for};
use serde_json::json;
use tokio::net::UnixStream;
use tonic::transport::{Endpoint, Uri};

fn arg(name: &str, default: usize) -> usize {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} wants a number, not {v:?}"))
        })
}

/// Milliseconds `f` took.
fn ms(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1000.0
}

/// Runs the CLI against `host` and fails when it fails; its stdout is read and dropped.
fn cli(host: &str, args: &[&str]) {
    let out = Command::new(mini_binary())
        .args(args)
        .env("MINI_HOST", host)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run mini");
    assert!(
        out.status.success(),
        "mini {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    let services = arg("--services", 500);
    let runs = arg("--runs", 20);
    let date = Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cluster = Cluster::start(1);
    cluster.init();
    let h = cluster.host(1);
    let host = h.socket();
    let t = Instant::now();
    for i in 0..services {
        let name = format!("s{i:03}");
        h.ok(&[
            "service",
            "create",
            "--name",
            &name,
            "--replicas",
            "0",
            "host",
            "sleep",
            "1d",
        ]);
    }
    let create_s = round1(t.elapsed().as_secs_f64());
    wait_for(
        &format!("{services} services listed"),
        Duration::from_secs(60),
        || {
            let n = h.ok(&["service", "ls", "-q"]).stdout.lines().count();
            if n == services {
                Ok(())
            } else {
                Err(format!("{n} listed"))
            }
        },
    );
    let socket = PathBuf::from(host.strip_prefix("unix://").expect("unix:// socket"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rpc = || {
        let socket = socket.clone();
        runtime.block_on(async move {
            let channel = Endpoint::try_from("http://mini.sock")
                .expect("endpoint")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = socket.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .expect("cannot connect to the daemon's socket");
            let listed = ControlClient::new(channel)
                .max_decoding_message_size(64 << 20)
                .list_services(ListServicesRequest {})
                .await
                .expect("ListServices")
                .into_inner()
                .services
                .len();
            assert_eq!(listed, services);
        })
    };
    let (mut rpc_ms, mut ls_ms, mut q_ms, mut json_ms, mut version_ms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs + 3 {
        let sample = (
            ms(rpc),
            ms(|| cli(&host, &["service", "ls"])),
            ms(|| cli(&host, &["service", "ls", "-q"])),
            ms(|| cli(&host, &["service", "ls", "--format", "json"])),
            ms(|| cli(&host, &["--version"])),
        );
        if i >= 3 {
            rpc_ms.push(sample.0);
            ls_ms.push(sample.1);
            q_ms.push(sample.2);
            json_ms.push(sample.3);
            version_ms.push(sample.4);
        }
    }
    let p50 = |v: &[f64]| mini_tests::bench::pct(v, 50.0);
    let out = json!({
        "date": date,
        "binary": mini_binary().display().to_string(),
        "services": services,
        "create_services_s": create_s,
        "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "rpc_ms": summary(&rpc_ms),
        "service_ls_ms": summary(&ls_ms),
        "service_ls_q_ms": summary(&q_ms),
        "service_ls_json_ms": summary(&json_ms),
        "version_ms": summary(&version_ms),
        "cli_overhead_ms": round1(p50(&ls_ms) - p50(&rpc_ms)),
    });
    println!("{out}");
}
