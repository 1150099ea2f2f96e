//! Gossip that only members can speak (issue #12, item 5), tried as an attacker on the lab's
//! switch would: a capture of UDP 7946 shows no endpoint data in the clear; thousands of
//! random and replayed-with-flipped-bits datagrams from a namespace that never joined, and
//! from a member's address, change no kernel peer entry and are counted as dropped; an
//! outsider's VXLAN datagrams are not decapsulated; the gossip key rotates; a node that left
//! is dropped from the members-only filter. Root only; needs `tcpdump`.
//!
//! `idle_gossip_bandwidth_per_node` (ignored: a measurement) reports idle gossip traffic per
//! node; run it with `--ignored`, and `MINI_BIN` set to another build to compare.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mini_tests::{Cluster, Host, cluster::exec_in_netns, wait_for};
use serde_json::Value;

/// A UDP datagram read from a capture.
#[derive(Debug, Clone)]
struct Datagram {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload: Vec<u8>,
}

/// The UDP datagrams of a pcap file (Ethernet link type), as `tcpdump -w` writes it.
fn parse_pcap(bytes: &[u8]) -> Vec<Datagram> {
    let mut out = Vec::new();
    if bytes.len() < 24 {
        return out;
    }
    let le = bytes[..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let u32_at = |b: &[u8], i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32_at(bytes, at + 8) as usize;
        let frame = &bytes[(at + 16).min(bytes.len())..(at + 16 + len).min(bytes.len())];
        at += 16 + len;
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 17 || ip.len() < ihl + 8 {
            continue;
        }
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        out.push(Datagram {
            src,
            dst,
            payload: ip[ihl + 8..].to_vec(),
        });
    }
    out
}

/// A running `tcpdump` in a host's namespace, writing UDP `port` traffic of `eth0` to a file.
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    fn start(cluster: &Cluster, k: usize, port: u16, name: &str) -> Capture {
        let file = cluster.dir().join(format!("{name}.pcap"));
        let netns = format!("--net={}", cluster.netns_path(k).display());
        let child = Command::new("nsenter")
            .args([
                &netns, "tcpdump", "-i", "eth0", "-U", "-n", "-Z", "root", "-w",
            ])
            .arg(&file)
            .args(["udp", "port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run tcpdump (install the tcpdump package)");
        let capture = Capture { child, file };
        wait_for(
            "tcpdump to open its file",
            Duration::from_secs(10),
            || match std::fs::metadata(&capture.file) {
                Ok(m) if m.len() >= 24 => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        capture
    }

    fn datagrams(&self) -> Vec<Datagram> {
        parse_pcap(&std::fs::read(&self.file).unwrap_or_default())
    }

    /// Stops tcpdump (by its PID) and returns what it captured.
    fn stop(mut self) -> Vec<Datagram> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = self.child.wait();
        self.datagrams()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `packets` to `to` over UDP from inside the network namespace at `netns` (a thread
/// that enters it first), paced so that no receive buffer overflows.
fn send_from(netns: &Path, to: SocketAddr, packets: &[Vec<u8>]) {
    let netns = netns.to_path_buf();
    let packets = packets.to_vec();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns).expect("open the namespace file");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for (i, p) in packets.iter().enumerate() {
            // An unreachable port may refuse a send (ICMP): keep going.
            let _ = socket.send_to(p, to);
            if i % 20 == 19 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    })
    .join()
    .expect("sender thread");
}

/// Pseudo-random datagrams (xorshift: no extra dependency), 1 to 1400 bytes.
fn random_datagrams(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let len = 1 + (next() % 1400) as usize;
            (0..len).map(|_| next() as u8).collect()
        })
        .collect()
}

/// `n` copies of captured payloads, each with one bit flipped (a different one each time).
fn flipped(captured: &[Datagram], n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut p = captured[i % captured.len()].payload.clone();
            let bit = (i / captured.len() * 7 + i) % (p.len() * 8);
            p[bit / 8] ^= 1 << (bit % 8);
            p
        })
        .collect()
}

/// The neighbour and FDB entries of `vxlan0` in an overlay namespace.
fn peer_entries(netns: &Path) -> (String, String) {
    let neigh = exec_in_netns(netns, &["ip", "neigh", "show", "dev", "vxlan0"]);
    let fdb = exec_in_netns(netns, &["bridge", "fdb", "show", "dev", "vxlan0"]);
    assert!(neigh.success && fdb.success, "{neigh:?} {fdb:?}");
    (neigh.stdout, fdb.stdout)
}

/// Packets received (decapsulated) by `vxlan0` in an overlay namespace.
fn vxlan_rx(netns: &Path) -> u64 {
    let out = exec_in_netns(netns, &["ip", "-s", "-j", "link", "show", "dev", "vxlan0"]);
    assert!(out.success, "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).expect("ip -j output");
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .expect("rx packets")
}

/// The members-only filter of a host: (member addresses, packets its rule dropped).
fn filter_of(cluster: &Cluster, k: usize) -> Result<(BTreeSet<String>, u64), String> {
    let out = cluster.exec_in_host(k, &["nft", "-j", "list", "table", "ip", "mini_filter"]);
    if !out.success {
        return Err(out.stderr);
    }
    let v: Value = serde_json::from_str(&out.stdout).map_err(|e| e.to_string())?;
    let mut members = BTreeSet::new();
    let mut dropped = 0;
    for item in v["nftables"].as_array().into_iter().flatten() {
        if let Some(elems) = item["set"]["elem"].as_array() {
            members.extend(elems.iter().filter_map(|e| e.as_str().map(str::to_string)));
        }
        for expr in item["rule"]["expr"].as_array().into_iter().flatten() {
            dropped += expr["counter"]["packets"].as_u64().unwrap_or(0);
        }
    }
    Ok((members, dropped))
}

/// Every node's gossip counters, by hostname, from `network inspect --verbose`.
fn gossip_counters(host: &Host, network: &str) -> Vec<(String, Value)> {
    let out = host.ok(&["network", "inspect", "--verbose", network]);
    out.json()[0]["peers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap_or_default().to_string(),
                n["gossip"].clone(),
            )
        })
        .collect()
}

fn counter(counters: &[(String, Value)], node: &str, name: &str) -> u64 {
    counters
        .iter()
        .find(|(n, _)| n == node)
        .and_then(|(_, g)| g[name].as_u64())
        .unwrap_or(0)
}

fn wait_consistent(host: &Host, network: &str) -> String {
    wait_for(
        &format!("`network check {network}` to pass"),
        Duration::from_secs(30),
        || {
            let out = host.mini(&["network", "check", network]);
            if out.success {
                Ok(out.stdout)
            } else {
                Err(out.stdout + &out.stderr)
            }
        },
    )
}

/// (overlay IP, task id) of the running tasks of `service`.
fn running(host: &Host, service: &str, n: usize) -> Vec<(String, String)> {
    host.wait_running(service, n)
        .iter()
        .map(|t| {
            let ip = t["networks"][0]["addr"]
                .as_str()
                .unwrap_or_default()
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            (ip, t["id"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

#[test]
fn only_members_speak_gossip_and_vxlan() {
    // Four hosts; h4 never joins: the attacker on the same switch.
    let cluster = Cluster::start_with(4, &["--gossip-key-rotation", "30s"]);
    cluster.init();
    cluster.join(2, "worker");
    cluster.join(3, "worker");
    cluster.wait_nodes_ready(3);
    let manager = cluster.host(1);
    let members: BTreeSet<String> = (1..=3).map(|k| cluster.addr(k)).collect();
    for k in 1..=3 {
        wait_for(
            &format!("h{k}'s members-only filter to list h1..h3"),
            Duration::from_secs(30),
            || match filter_of(&cluster, k) {
                Ok((m, _)) if m == members => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }
    assert!(
        filter_of(&cluster, 4).is_err(),
        "the outsider has no filter"
    );

    manager.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "192.168.213.0/24",
        "secnet",
    ]);
    let network = manager.ok(&["network", "inspect", "secnet"]).json()[0].clone();
    let network_id = network["id"].as_str().expect("network id").to_string();
    let vni = network["vni"].as_u64().expect("vni") as u32;
    manager.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "secret-web",
        "--replicas",
        "3",
        "--network",
        "secnet",
        "host",
        "sleep",
        "100000",
    ]);
    running(&manager, "secret-web", 3);
    wait_consistent(&manager, "secnet");

    // 1. A capture of 7946 while endpoints come and go shows no endpoint data in the clear.
    let capture = Capture::start(&cluster, 2, 7946, "h2-gossip");
    manager.ok(&["service", "scale", "--detach", "secret-web=5"]);
    let tasks = running(&manager, "secret-web", 5);
    wait_consistent(&manager, "secnet");
    wait_for(
        "the capture to hold gossip traffic",
        Duration::from_secs(20),
        || {
            let n = capture.datagrams().len();
            if n >= 50 {
                Ok(())
            } else {
                Err(format!("{n} datagrams"))
            }
        },
    );
    let captured = capture.stop();
    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        ("service name".into(), b"secret-web".to_vec()),
        ("network id".into(), network_id.as_bytes().to_vec()),
    ];
    for (ip, id) in &tasks {
        let octets = ip.parse::<Ipv4Addr>().expect("task ip").octets().to_vec();
        secrets.push((format!("overlay IP {ip}"), octets));
        secrets.push((format!("task id {id}"), id.as_bytes()[..12].to_vec()));
    }
    for d in &captured {
        for (what, bytes) in &secrets {
            assert!(
                !d.payload.windows(bytes.len()).any(|w| w == &bytes[..]),
                "{what} in clear in a gossip datagram {} -> {}",
                d.src,
                d.dst
            );
        }
    }
    let h2: Ipv4Addr = cluster.addr(2).parse().unwrap();
    let to_h2: Vec<Datagram> = captured.iter().filter(|d| d.dst == h2).cloned().collect();
    eprintln!(
        "captured {} gossip datagrams on h2 ({} to h2): no plaintext endpoint data",
        captured.len(),
        to_h2.len()
    );
    assert!(!to_h2.is_empty());

    let overlay = |k: usize| {
        cluster
            .host(k)
            .run_dir()
            .join("netns")
            .join(format!("1-{}", &network_id[..10]))
    };
    let peers_before: Vec<_> = (1..=3).map(|k| peer_entries(&overlay(k))).collect();
    let gossip_at =
        |k: usize| SocketAddr::from((cluster.addr(k).parse::<Ipv4Addr>().unwrap(), 7946));

    // 2. From the outsider: 2,000 random and 2,000 replayed-with-flipped-bits datagrams (and
    //    the captured ones replayed as they are) to h1 and h2: the filter drops them all.
    let junk = random_datagrams(2000, 0x9e37_79b9_7f4a_7c15);
    let forged = flipped(&captured, 2000);
    let replays: Vec<Vec<u8>> = to_h2.iter().map(|d| d.payload.clone()).collect();
    let dropped_before: Vec<u64> = (1..=2)
        .map(|k| filter_of(&cluster, k).expect("filter").1)
        .collect();
    let outsider = cluster.netns_path(4);
    for k in 1..=2 {
        send_from(&outsider, gossip_at(k), &junk);
        send_from(&outsider, gossip_at(k), &forged);
        send_from(&outsider, gossip_at(k), &replays);
    }
    let sent = (junk.len() + forged.len() + replays.len()) as u64;
    for k in 1..=2 {
        wait_for(
            &format!("h{k}'s filter to drop the outsider's {sent} datagrams"),
            Duration::from_secs(20),
            || {
                let dropped = filter_of(&cluster, k)?.1 - dropped_before[k - 1];
                if dropped >= sent {
                    Ok(())
                } else {
                    Err(format!("{dropped} dropped"))
                }
            },
        );
    }

    // 3. The same from a member's address (h3's namespace: the filter lets it through):
    //    h2's gossip agent drops and counts every one.
    let before = gossip_counters(&manager, "secnet");
    let member = cluster.netns_path(3);
    let flipped_to_h2 = flipped(&to_h2, 2000);
    send_from(&member, gossip_at(2), &junk);
    send_from(&member, gossip_at(2), &flipped_to_h2);
    send_from(&member, gossip_at(2), &replays);
    let expected = (junk.len() + flipped_to_h2.len() + replays.len()) as u64;
    let counted = wait_for(
        "h2 to count the forged and replayed datagrams",
        Duration::from_secs(20),
        || {
            let now = gossip_counters(&manager, "secnet");
            let delta = |name: &str| counter(&now, "h2", name) - counter(&before, "h2", name);
            let (forged, replayed) = (delta("dropped_unauthenticated"), delta("dropped_replayed"));
            if forged + replayed >= expected {
                Ok((forged, replayed))
            } else {
                Err(format!(
                    "{forged} forged + {replayed} replayed of {expected}: {now:?}"
                ))
            }
        },
    );
    eprintln!(
        "h2 dropped {} unauthenticated and {} replayed datagrams from a member's address",
        counted.0, counted.1
    );
    assert!(counted.0 >= (junk.len() + flipped_to_h2.len()) as u64);

    // No kernel peer entry changed; every node still agrees with the live endpoints.
    let peers_after: Vec<_> = (1..=3).map(|k| peer_entries(&overlay(k))).collect();
    assert_eq!(peers_before, peers_after, "kernel peer entries changed");
    wait_consistent(&manager, "secnet");

    // 4. An outsider's VXLAN datagrams are not decapsulated; a member's are (the control).
    let mut frame = vec![0x08, 0, 0, 0];
    frame.extend_from_slice(&(vni << 8).to_be_bytes());
    frame.extend_from_slice(&[0xff; 6]); // broadcast
    frame.extend_from_slice(&[0x02, 0x42, 0xde, 0xad, 0xbe, 0xef]);
    frame.extend_from_slice(&[0x08, 0x06]); // ARP
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&[0x02, 0x42, 0xde, 0xad, 0xbe, 0xef, 192, 0, 2, 7]);
    frame.extend_from_slice(&[0, 0, 0, 0, 0, 0, 192, 0, 2, 1]);
    let frames = vec![frame; 50];
    let vxlan_at = SocketAddr::from((cluster.addr(1).parse::<Ipv4Addr>().unwrap(), 4789));
    let rx_before = vxlan_rx(&overlay(1));
    let dropped = filter_of(&cluster, 1).expect("filter").1;
    send_from(&outsider, vxlan_at, &frames);
    wait_for(
        "h1's filter to drop the outsider's VXLAN datagrams",
        Duration::from_secs(10),
        || {
            let now = filter_of(&cluster, 1)?.1 - dropped;
            if now >= 50 {
                Ok(())
            } else {
                Err(format!("{now} dropped"))
            }
        },
    );
    let rx_outsider = vxlan_rx(&overlay(1)) - rx_before;
    send_from(&member, vxlan_at, &frames);
    let rx_member = wait_for(
        "a member's VXLAN datagrams to be decapsulated (the control)",
        Duration::from_secs(10),
        || {
            let n = vxlan_rx(&overlay(1)) - rx_before;
            if n >= 50 {
                Ok(n)
            } else {
                Err(format!("{n} received"))
            }
        },
    );
    eprintln!(
        "vxlan0 on h1 received {rx_outsider} of the outsider's 50 frames, {rx_member} after a member's 50"
    );
    assert!(
        rx_outsider < 5,
        "{rx_outsider} of the outsider's frames were decapsulated"
    );

    // 5. The key rotates (every 30 s here) and every node follows; nothing breaks.
    let key_id = wait_for(
        "the gossip key to rotate on every node",
        Duration::from_secs(90),
        || {
            let info = manager.info()?;
            let id = info["cluster"]["gossip_keys"][0]["id"]
                .as_u64()
                .unwrap_or(0);
            let nodes = gossip_counters(&manager, "secnet");
            let ids: Vec<u64> = nodes
                .iter()
                .map(|(_, g)| g["key_id"].as_u64().unwrap_or(0))
                .collect();
            if id >= 2 && ids.len() == 3 && ids.iter().all(|&i| i == id) {
                Ok(id)
            } else {
                Err(format!("manager key {id}, nodes {ids:?}"))
            }
        },
    );
    let info = manager.info().expect("info");
    assert!(
        info["cluster"]["gossip_keys"].to_string().len() < 200,
        "info shows key ids, not keys: {}",
        info["cluster"]["gossip_keys"]
    );
    manager.ok(&["service", "scale", "--detach", "secret-web=6"]);
    running(&manager, "secret-web", 6);
    wait_consistent(&manager, "secnet");
    eprintln!("gossip key rotated to {key_id}; the overlay still converges");

    // 6. A node that leaves is dropped from every member's filter.
    cluster.host(3).ok(&["swarm", "leave"]);
    let left: BTreeSet<String> = (1..=2).map(|k| cluster.addr(k)).collect();
    for k in 1..=2 {
        wait_for(
            &format!("h{k}'s filter to drop h3, which left"),
            Duration::from_secs(30),
            || match filter_of(&cluster, k) {
                Ok((m, _)) if m == left => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }
}

/// A measurement (its figures are in BENCHMARKS.md), not part of the suite: run it with
/// `--ignored`, and with `MINI_BIN` pointing at another build to compare.
#[test]
#[ignore = "benchmark: 50 s of idle traffic; run with --ignored"]
fn idle_gossip_bandwidth_per_node() {
    let cluster = Cluster::start(3);
    cluster.init();
    cluster.join_all();
    let manager = cluster.host(1);
    manager.ok(&["network", "create", "-d", "overlay", "idlenet"]);
    manager.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "idle",
        "--replicas",
        "3",
        "--network",
        "idlenet",
        "host",
        "sleep",
        "100000",
    ]);
    manager.wait_running("idle", 3);
    wait_consistent(&manager, "idlenet");
    // The publication bursts are over once every node agrees; then the traffic is idle.
    let capture = Capture::start(&cluster, 2, 7946, "h2-idle");
    // The measurement is the traffic of a fixed window.
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(30));
    let captured = capture.stop();
    let secs = started.elapsed().as_secs_f64();
    let h2: Ipv4Addr = cluster.addr(2).parse().unwrap();
    // IPv4 + UDP headers count too (28 bytes); Ethernet's do not.
    let bytes = |f: &dyn Fn(&Datagram) -> bool| -> f64 {
        captured
            .iter()
            .filter(|d| f(d))
            .map(|d| (d.payload.len() + 28) as f64)
            .sum()
    };
    let sent_kbit = bytes(&|d| d.src == h2) * 8.0 / secs / 1000.0;
    let received_kbit = bytes(&|d| d.dst == h2) * 8.0 / secs / 1000.0;
    let packets = captured.iter().filter(|d| d.src == h2).count() as f64 / secs;
    eprintln!(
        "idle gossip on h2 of 3 hosts over {secs:.1} s: sent {sent_kbit:.2} kbit/s \
         ({packets:.1} packets/s), received {received_kbit:.2} kbit/s"
    );
    assert!(sent_kbit > 0.0, "no gossip captured");
    assert!(
        sent_kbit <= 10.0,
        "idle gossip is {sent_kbit:.2} kbit/s per node, above the 10 kbit/s budget"
    );
}
