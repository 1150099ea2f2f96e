//! Privileged end-to-end tests of service VIPs and the routing mesh (root required).
//!
//! Three "hosts" (namespaces A, B, C) and an "outside" namespace X share an underlay bridge
//! (10.99.0.0/24, in a namespace of its own). Web tasks run `busybox httpd` answering with
//! their name: `web1` on A, `web2` on B; C runs no task. A client task on A uses the VIP.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{Lab, mounts_under, sh, try_sh};
use mini_netdriver::{
    Attachment, DesiredState, DriverConfig, Ingress, Kernel, LinuxKernel, LoadBalancing, MacAddr,
    NetDriver, Op, OverlayNetwork, Peer, Protocol, PublishedPort, Sandbox, ServiceLb,
};

const NET: &str = "lbnet0000test";
const INGRESS: &str = "ingress0000test";
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 100);

fn net_ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 9, last)
}

fn ing_ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 255, 9, last)
}

fn vtep(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, host)
}

/// Every endpoint of the cluster: (network, ip, host). Each driver gets all of them as peers
/// (its own are ignored), as gossip would deliver.
fn endpoints() -> Vec<(&'static str, Ipv4Addr, u8)> {
    vec![
        (NET, net_ip(10), 1), // client on A
        (NET, net_ip(2), 1),  // web1 on A
        (NET, net_ip(3), 2),  // web2 on B
        (INGRESS, ing_ip(2), 1),
        (INGRESS, ing_ip(3), 2),
        (INGRESS, ing_ip(251), 1), // ingress_sbox of A, B, C
        (INGRESS, ing_ip(252), 2),
        (INGRESS, ing_ip(253), 3),
    ]
}

fn network(id: &str, third: u8, vni: u32) -> OverlayNetwork {
    let peers = endpoints()
        .into_iter()
        .filter(|(n, _, _)| *n == id)
        .map(|(_, ip, h)| Peer {
            ip,
            mac: MacAddr::for_ip(ip),
            vtep: vtep(h),
        })
        .collect();
    OverlayNetwork {
        id: id.into(),
        vni,
        subnet: format!("10.{third}.9.0/24").parse().unwrap(),
        gateway: Ipv4Addr::new(10, third, 9, 1),
        peers,
        pinned: false,
    }
}

fn att(network: &str, ip: Ipv4Addr) -> Attachment {
    Attachment {
        network_id: network.into(),
        addr: ipnet::Ipv4Net::new(ip, 24).unwrap(),
        mac: MacAddr::for_ip(ip),
    }
}

/// The desired state of host `h` (1 = A, 2 = B, 3 = C).
fn desired(h: u8) -> DesiredState {
    let mut sandboxes = Vec::new();
    if h == 1 {
        sandboxes.push(Sandbox {
            id: "clientaaaaaaaaaa".into(),
            attachments: vec![att(NET, net_ip(10))],
        });
    }
    if h <= 2 {
        sandboxes.push(Sandbox {
            id: format!("web{h}xxxxxxxxxxxx"),
            attachments: vec![att(NET, net_ip(h + 1)), att(INGRESS, ing_ip(h + 1))],
        });
    }
    DesiredState {
        networks: vec![network(NET, 0, 4097), network(INGRESS, 255, 4096)],
        sandboxes,
        members: None,
    }
}

fn lb(h: u8, vip_backends: &[u8], published_backends: &[u8]) -> LoadBalancing {
    LoadBalancing {
        services: vec![ServiceLb {
            service_id: "web".into(),
            network_id: NET.into(),
            vip: VIP,
            backends: vip_backends.iter().map(|b| net_ip(*b)).collect(),
        }],
        ingress: Some(Ingress {
            network_id: INGRESS.into(),
            addr: ipnet::Ipv4Net::new(ing_ip(250 + h), 24).unwrap(),
            ports: vec![PublishedPort {
                protocol: Protocol::Tcp,
                published: 8080,
                backends: published_backends.iter().map(|b| ing_ip(*b)).collect(),
                target: 80,
            }],
        }),
    }
}

/// `busybox httpd` processes, killed (by their recorded PID) on drop.
struct Servers(Vec<Child>);

impl Servers {
    fn start(&mut self, ns: &Path, dir: &Path, name: &str) {
        let root = dir.join(name);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), format!("{name}\n")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(["busybox", "httpd", "-f", "-p", "80", "-h"])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start busybox httpd");
        self.0.push(child);
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP GET from namespace `ns`; the body, or the error text.
fn get(ns: &Path, url: &str) -> Result<String, String> {
    let (ok, out) = try_sh(ns, &format!("timeout 5 busybox wget -q -O - {url}"));
    if ok {
        Ok(out.trim().to_string())
    } else {
        Err(out)
    }
}

/// The bodies of `n` GETs (each a new TCP connection).
fn answers(ns: &Path, url: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| get(ns, url).unwrap_or_else(|e| panic!("GET {url}: {e}")))
        .collect()
}

/// Waits until httpd answers inside `ns` (it starts asynchronously).
fn wait_listening(ns: &Path) {
    for _ in 0..50 {
        if try_sh(ns, "timeout 1 busybox wget -q -O - http://127.0.0.1/").0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("httpd did not start in {}", ns.display());
}

struct Cluster {
    lab: Lab,
    hosts: Vec<PathBuf>,
    x: PathBuf,
    drivers: Vec<NetDriver<LinuxKernel>>,
    configs: Vec<DriverConfig>,
}

fn cluster() -> Cluster {
    let mut lab = Lab::new();
    let sw = lab.host("sw");
    sh(
        &sw,
        "ip link add name sw0 type bridge && ip link set sw0 up",
    );
    let mut hosts = Vec::new();
    let mut wire = |name: &str, addr: &str| {
        let ns = lab.host(name);
        sh(
            &sw,
            &format!(
                "ip link add p{name} type veth peer name u0 netns {} && \
                 ip link set p{name} master sw0 up",
                ns.display()
            ),
        );
        sh(
            &ns,
            &format!("ip addr add {addr}/24 dev u0 && ip link set u0 up"),
        );
        ns
    };
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        hosts.push(wire(name, &vtep(i as u8 + 1).to_string()));
    }
    let x = wire("x", "10.99.0.9");
    let mut drivers = Vec::new();
    let mut configs = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let mut cfg = DriverConfig::new(lab.run_dir(&format!("{i}")), vtep(i as u8 + 1));
        cfg.host_netns = Some(host.clone());
        drivers.push(NetDriver::new(
            cfg.clone(),
            LinuxKernel::new(cfg.clone()).unwrap(),
        ));
        configs.push(cfg);
    }
    Cluster {
        lab,
        hosts,
        x,
        drivers,
        configs,
    }
}

fn distinct(v: &[String]) -> BTreeSet<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vip_and_published_port_balance_across_hosts_and_leave_nothing() {
    let c = cluster();
    let both = [2u8, 3];
    for (i, d) in c.drivers.iter().enumerate() {
        let h = i as u8 + 1;
        d.apply_with(&desired(h), &lb(h, &both, &both))
            .await
            .unwrap_or_else(|e| panic!("apply on host {h}: {e}"));
    }
    let web_dir = c.lab.path().join("www");
    let mut servers = Servers(Vec::new());
    for (h, d) in c.drivers.iter().take(2).enumerate() {
        let task = format!("web{}xxxxxxxxxxxx", h + 1);
        let ns = d.sandbox_netns_path(&task);
        servers.start(&ns, &web_dir, &format!("web{}", h + 1));
        wait_listening(&ns);
    }
    let client = c.drivers[0].sandbox_netns_path("clientaaaaaaaaaa");
    let vip_url = format!("http://{VIP}/");

    // (a) The VIP reaches every backend, on A and on B, round robin.
    let got = answers(&client, &vip_url, 6);
    assert_eq!(distinct(&got), BTreeSet::from(["web1", "web2"]), "{got:?}");
    let nft = sh(&client, "nft list table ip mini_lb");
    assert!(nft.contains("numgen inc mod 2"), "{nft}");

    // (d) Re-applying the same state writes nothing, also from a freshly started driver.
    for (i, d) in c.drivers.iter().enumerate() {
        let h = i as u8 + 1;
        let before = d.kernel().counters();
        let again = d
            .apply_with(&desired(h), &lb(h, &both, &both))
            .await
            .unwrap();
        assert!(again.ops.is_empty(), "host {h}: {:?}", again.ops);
        assert_eq!((d.kernel().counters() - before).writes, 0);
        let cfg = c.configs[i].clone();
        let fresh = NetDriver::new(cfg.clone(), LinuxKernel::new(cfg).unwrap());
        let again = fresh
            .apply_with(&desired(h), &lb(h, &both, &both))
            .await
            .unwrap();
        assert!(again.observed_kernel);
        assert!(
            again.ops.is_empty(),
            "restart of host {h} found: {:?}",
            again.ops
        );
        assert_eq!(fresh.kernel().counters().writes, 0);
    }

    // Removing web2 from the VIP: on A, one entry rewritten in each sandbox on the network
    // (client and web1), nothing else; new connections avoid web2.
    let report = c.drivers[0]
        .apply_with(&desired(1), &lb(1, &[2], &both))
        .await
        .unwrap();
    assert_eq!(report.ops.len(), 2, "{:?}", report.ops);
    assert!(
        report
            .ops
            .iter()
            .all(|o| matches!(o, Op::SetLbEntry { .. })),
        "{:?}",
        report.ops
    );
    let got = answers(&client, &vip_url, 4);
    assert_eq!(distinct(&got), BTreeSet::from(["web1"]), "{got:?}");
    // No backends: refused at once (TCP reset), not blackholed.
    c.drivers[0]
        .apply_with(&desired(1), &lb(1, &[], &both))
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    let err = get(&client, &vip_url).unwrap_err();
    // (A locally generated SYN rejected in `output` fails connect() at once; wget reports it
    // as "refused" or "no route to host" depending on the reject path.)
    assert!(err.contains("refused") || err.contains("No route"), "{err}");
    assert!(t0.elapsed().as_secs() < 2, "took {:?}", t0.elapsed());
    c.drivers[0]
        .apply_with(&desired(1), &lb(1, &both, &both))
        .await
        .unwrap();

    // (b) The published port answers from outside on every host, including C (no task),
    // balanced over both backends.
    for (h, host) in ["10.99.0.1", "10.99.0.2", "10.99.0.3"].iter().enumerate() {
        let got = answers(&c.x, &format!("http://{host}:8080/"), 6);
        assert_eq!(
            distinct(&got),
            BTreeSet::from(["web1", "web2"]),
            "host {}: {got:?}",
            h + 1
        );
    }
    // From the host namespace itself, to its own address (OUTPUT path).
    let got = answers(&c.hosts[2], "http://10.99.0.3:8080/", 4);
    assert_eq!(distinct(&got), BTreeSet::from(["web1", "web2"]), "{got:?}");
    // Tasks see ingress_sbox's ingress address (masquerade), not the outside client.
    let host_nft = sh(&c.hosts[2], "nft list table ip mini_lb");
    assert!(
        host_nft.contains("tcp . 8080 : goto tcp_8080"),
        "{host_nft}"
    );
    let sbox_nft = sh(
        &c.drivers[2].ingress_netns_path(),
        "nft list table ip mini_lb",
    );
    assert!(sbox_nft.contains("masquerade"), "{sbox_nft}");

    // (c) Teardown leaves no namespace, mount, link or table.
    drop(servers);
    for (d, host) in c.drivers.iter().zip(&c.hosts) {
        d.apply(&DesiredState::default()).await.unwrap();
        let cfg = d.config();
        let left: Vec<_> = std::fs::read_dir(cfg.netns_dir()).unwrap().collect();
        assert!(left.is_empty(), "namespace files left: {left:?}");
        assert!(mounts_under(&cfg.run_dir).is_empty());
        let (_, tables) = try_sh(host, "nft list tables");
        assert!(tables.trim().is_empty(), "tables left: {tables}");
        let links = sh(host, "ip -br link");
        assert!(
            !links.contains("mini_gwbridge") && !links.contains("mgw"),
            "{links}"
        );
    }
}
