//! Privileged tests of the embedded DNS server: real sockets in throwaway network namespaces.
//!
//! Each test makes two namespaces of its own: `node`, standing in for the node's namespace (the
//! daemon's tokio runtime runs there, forwarded queries leave from there, a fake upstream
//! resolver listens on its loopback), and `sandbox`, a task sandbox where the server listens on
//! `127.0.0.11:53` and clients ask. No traffic leaves those namespaces. They need root and fail
//! (never pass silently) without it.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use mini_netdriver::netns;
use mini_worker::dns::{DEFAULT_LISTEN, DnsConfig, DnsServer, NameIndex, Zone};
use mini_worker::gossip::{EndpointRecord, EndpointTable};

/// How long a client waits for any one reply.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (it creates network namespaces): run it as root"
    );
}

/// A network namespace bound to a file in a private temporary directory, with `lo` up;
/// unmounted and deleted on drop, also when the test panics.
struct TestNetns {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestNetns {
    fn new(tag: &str) -> TestNetns {
        let dir = tempfile::Builder::new()
            .prefix("mini-dns-test-")
            .tempdir()
            .expect("temporary directory");
        let path = dir.path().join(tag);
        netns::create(&path).expect("create a network namespace");
        let ns = TestNetns { path, _dir: dir };
        let status = netns::run_in(Some(&ns.path), || {
            std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
        })
        .expect("run ip");
        assert!(status.success(), "ip link set lo up failed");
        ns
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = netns::remove(&self.path);
    }
}

/// Runs `f` on a current-thread tokio runtime whose thread entered `node`.
fn in_node<F, Fut>(node: &TestNetns, f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    netns::run_in(Some(&node.path), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(f());
        Ok(())
    })
    .expect("the test body failed");
}

fn record(
    net: &str,
    service: &str,
    task: &str,
    ip: [u8; 4],
    vip: Option<[u8; 4]>,
) -> EndpointRecord {
    EndpointRecord {
        network_id: net.into(),
        endpoint_id: format!("{task}-{net}"),
        node_id: "node1".into(),
        vtep: Ipv4Addr::new(192, 168, 0, 1),
        ip: ip.into(),
        prefix_len: 24,
        mac: [2, 0x42, ip[0], ip[1], ip[2], ip[3]],
        service_id: format!("id-{service}"),
        service_name: service.into(),
        task_name: task.into(),
        vip: vip.map(Ipv4Addr::from),
        aliases: Vec::new(),
        ports: Vec::new(),
        version: 1,
        deleted: false,
        signature: Vec::new(),
    }
}

/// `web` (VIP 10.0.1.2, tasks .3 and .4) on `net1`; `secret` on `net2`, where the task is not.
fn table() -> EndpointTable {
    let mut t = EndpointTable::new();
    t.merge(record(
        "net1",
        "web",
        "web.1.aaa",
        [10, 0, 1, 3],
        Some([10, 0, 1, 2]),
    ));
    t.merge(record(
        "net1",
        "web",
        "web.2.bbb",
        [10, 0, 1, 4],
        Some([10, 0, 1, 2]),
    ));
    t.merge(record(
        "net2",
        "secret",
        "secret.1.ccc",
        [10, 0, 2, 3],
        Some([10, 0, 2, 2]),
    ));
    t
}

fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

/// Sends `packet` to `server` from inside `ns` (UDP or TCP) and returns the reply.
async fn exchange(
    ns: &Path,
    server: SocketAddr,
    packet: Vec<u8>,
    tcp: bool,
) -> io::Result<Message> {
    let bytes = netns::run_in_async(Some(ns.to_path_buf()), move || {
        if tcp {
            let mut s = std::net::TcpStream::connect_timeout(&server, CLIENT_TIMEOUT)?;
            s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
            let mut out = (packet.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&packet);
            s.write_all(&out)?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len)?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut buf)?;
            Ok(buf)
        } else {
            let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
            s.connect(server)?;
            s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
            s.send(&packet)?;
            let mut buf = vec![0u8; 4096];
            let n = s.recv(&mut buf)?;
            buf.truncate(n);
            Ok(buf)
        }
    })
    .await?;
    Message::from_vec(&bytes).map_err(io::Error::other)
}

async fn ask(ns: &Path, name: &str, qtype: RecordType, tcp: bool) -> Message {
    let reply = exchange(ns, DEFAULT_LISTEN, query(0x4242, name, qtype), tcp)
        .await
        .unwrap_or_else(|e| panic!("no reply for {name} (tcp: {tcp}): {e}"));
    assert_eq!(reply.metadata.id, 0x4242);
    reply
}

fn addrs(m: &Message) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = m
        .answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(A(ip)) => Some(ip),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn ips(list: &[[u8; 4]]) -> Vec<Ipv4Addr> {
    list.iter().map(|&b| Ipv4Addr::from(b)).collect()
}

/// Polls `cond` every few milliseconds until it holds or `deadline` passes.
async fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn cluster_names_are_answered_inside_the_sandbox() {
    require_root();
    let node = TestNetns::new("node");
    let sandbox = TestNetns::new("sandbox");
    let sb = sandbox.path.clone();
    in_node(&node, move || async move {
        let config = DnsConfig::new(&sb, vec!["net1".into()])
            .with_zone(Zone::new().with_cluster_domain("mini.local"));
        let server = DnsServer::start(config, Arc::new(NameIndex::from_table(&table())))
            .await
            .expect("start the server in the sandbox");
        assert_eq!(server.local_addr(), DEFAULT_LISTEN);

        for tcp in [false, true] {
            let m = ask(&sb, "web", RecordType::A, tcp).await;
            assert_eq!(
                addrs(&m),
                ips(&[[10, 0, 1, 2]]),
                "service -> VIP (tcp: {tcp})"
            );
            let m = ask(&sb, "tasks.web.", RecordType::A, tcp).await;
            assert_eq!(
                addrs(&m),
                ips(&[[10, 0, 1, 3], [10, 0, 1, 4]]),
                "tasks.service"
            );
        }
        let m = ask(&sb, "WEB.2.BBB.mini.local", RecordType::A, false).await;
        assert_eq!(
            addrs(&m),
            ips(&[[10, 0, 1, 4]]),
            "task name, any case, cluster domain"
        );
        let m = ask(&sb, "web", RecordType::AAAA, false).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty(), "AAAA of a known name: empty NOERROR");
        for unknown in ["nothing", "tasks.nothing", "x.mini.local", "secret"] {
            let m = ask(&sb, unknown, RecordType::A, false).await;
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NXDomain,
                "{unknown}"
            );
        }

        // Garbage: too short, a response, undecodable, oversized. The server survives.
        let before = server.stats().received;
        let garbage: Vec<Vec<u8>> = vec![
            vec![1, 2, 3],
            {
                let mut r = query(1, "web", RecordType::A);
                r[2] |= 0x80;
                r
            },
            vec![0xff; 100],
            vec![0x00; 9000],
        ];
        let count = garbage.len() as u64;
        netns::run_in_async(Some(sb.clone()), move || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
            for g in garbage {
                let _ = s.send_to(&g, DEFAULT_LISTEN);
            }
            Ok(())
        })
        .await
        .unwrap();
        wait_until("the garbage to be read", CLIENT_TIMEOUT, || {
            server.stats().received >= before + count
        })
        .await;
        // A query header (QR clear) followed by a question that does not parse: FORMERR.
        let mut formerr = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        formerr.extend_from_slice(&[0xff; 40]);
        let m = exchange(&sb, DEFAULT_LISTEN, formerr, false).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        let m = ask(&sb, "web", RecordType::A, false).await;
        assert_eq!(
            addrs(&m),
            ips(&[[10, 0, 1, 2]]),
            "still serving after garbage"
        );

        // New names without a restart.
        let mut t = table();
        t.merge(record("net1", "api", "api.1.ddd", [10, 0, 1, 9], None));
        server.set_names(Arc::new(NameIndex::from_table(&t)));
        let m = ask(&sb, "api", RecordType::A, false).await;
        assert_eq!(
            addrs(&m),
            ips(&[[10, 0, 1, 9]]),
            "dnsrr service after set_names"
        );
        server.set_networks(vec!["net1".into(), "net2".into()]);
        let m = ask(&sb, "secret", RecordType::A, true).await;
        assert_eq!(addrs(&m), ips(&[[10, 0, 2, 2]]), "after set_networks");

        // A real client: busybox nslookup inside the sandbox.
        let out = tokio::process::Command::new("nsenter")
            .arg(format!("--net={}", sb.display()))
            .args(["busybox", "nslookup", "tasks.web", "127.0.0.11"])
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(10), out)
            .await
            .expect("nslookup timed out")
            .expect("run nsenter busybox nslookup");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("10.0.1.3") && stdout.contains("10.0.1.4"),
            "busybox nslookup tasks.web: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Stopped: both sockets are closed.
        server.stop().await;
        let tcp = exchange(&sb, DEFAULT_LISTEN, query(1, "web", RecordType::A), true).await;
        assert_eq!(tcp.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
        let udp = exchange(&sb, DEFAULT_LISTEN, query(1, "web", RecordType::A), false).await;
        assert_eq!(udp.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    });
}

/// A fake upstream resolver on `addr` (UDP and TCP) in the node's namespace: `example.test` is
/// 192.0.2.1, anything else NXDOMAIN. Counts the queries it saw.
async fn fake_upstream(addr: SocketAddr) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    fn answer(packet: &[u8]) -> Option<Vec<u8>> {
        let q = Message::from_vec(packet).ok()?;
        let mut r = Message::response(q.metadata.id, OpCode::Query);
        r.add_queries(q.queries.iter().cloned());
        let first = q.queries.first()?;
        if first.name().to_ascii() == "example.test." {
            r.add_answer(Record::from_rdata(
                first.name().clone(),
                60,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            ));
        } else {
            r.metadata.response_code = ResponseCode::NXDomain;
        }
        r.to_vec().ok()
    }
    let seen = Arc::new(AtomicUsize::new(0));
    let udp = tokio::net::UdpSocket::bind(addr)
        .await
        .expect("bind fake upstream udp");
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind fake upstream tcp");
    let counter = seen.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                Ok((n, peer)) = udp.recv_from(&mut buf) => {
                    counter.fetch_add(1, Ordering::SeqCst);
                    if let Some(r) = answer(&buf[..n]) {
                        let _ = udp.send_to(&r, peer).await;
                    }
                }
                Ok((mut s, _)) = tcp.accept() => {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    counter.fetch_add(1, Ordering::SeqCst);
                    let Ok(len) = s.read_u16().await else { continue };
                    let mut q = vec![0u8; usize::from(len)];
                    if s.read_exact(&mut q).await.is_err() { continue }
                    if let Some(r) = answer(&q) {
                        let mut out = (r.len() as u16).to_be_bytes().to_vec();
                        out.extend_from_slice(&r);
                        let _ = s.write_all(&out).await;
                    }
                }
            }
        }
    });
    (seen, task)
}

#[test]
fn other_names_are_forwarded_from_the_node_namespace() {
    require_root();
    let node = TestNetns::new("node");
    let sandbox = TestNetns::new("sandbox");
    let sb = sandbox.path.clone();
    in_node(&node, move || async move {
        // 127.0.0.1:53 of the *node*: unreachable from the sandbox (its own loopback has no
        // listener), so an answer proves the query left from the node's namespace.
        let upstream: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let (seen, _upstream_task) = fake_upstream(upstream).await;
        // First a dead upstream (nothing listens: refused at once), then the live one.
        let dead: SocketAddr = "127.0.0.1:54".parse().unwrap();
        let config = DnsConfig::new(&sb, vec!["net1".into()]).with_upstream(vec![dead, upstream]);
        let server = DnsServer::start(config, Arc::new(NameIndex::from_table(&table())))
            .await
            .expect("start the server in the sandbox");

        for tcp in [false, true] {
            let m = ask(&sb, "example.test", RecordType::A, tcp).await;
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NoError,
                "tcp: {tcp}"
            );
            assert_eq!(addrs(&m), ips(&[[192, 0, 2, 1]]), "forwarded (tcp: {tcp})");
            let m = ask(&sb, "missing.example.test", RecordType::A, tcp).await;
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NXDomain,
                "upstream's NXDOMAIN"
            );
        }
        assert_eq!(seen.load(Ordering::SeqCst), 4);
        let m = ask(&sb, "web", RecordType::A, false).await;
        assert_eq!(
            addrs(&m),
            ips(&[[10, 0, 1, 2]]),
            "cluster names are not forwarded"
        );
        let m = ask(&sb, "nothing", RecordType::A, false).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            4,
            "nothing more reached the upstream"
        );
        let stats = server.stats();
        assert_eq!((stats.forwarded, stats.failed), (4, 0));
        server.stop().await;

        // An upstream that never answers: SERVFAIL once the timeout passes.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut config = DnsConfig::new(&sb, vec!["net1".into()])
            .with_upstream(vec![silent.local_addr().unwrap()]);
        config.forward_timeout = Duration::from_millis(300);
        let server = DnsServer::start(config, Arc::new(NameIndex::new()))
            .await
            .expect("restart the server in the sandbox");
        let started = Instant::now();
        let m = ask(&sb, "example.test", RecordType::A, false).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(server.stats().failed, 1);
        // And none at all.
        drop(server);
    });
}

#[test]
fn start_names_the_namespace_it_could_not_enter() {
    let config = DnsConfig::new("/nonexistent/netns/abc", vec![]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(DnsServer::start(config, Arc::new(NameIndex::new())))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/netns/abc") && text.contains("127.0.0.11:53"),
        "{text}"
    );
}
