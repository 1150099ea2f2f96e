//! The neighbour and FDB entries of one network namespace's `vxlan0`, read over rtnetlink by
//! hand (no fork per poll): what the benchmarks poll to see an endpoint reach a node's kernel.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// A NETLINK_ROUTE socket created inside one network namespace.
pub struct NlNs {
    fd: OwnedFd,
    vxlan_index: i32,
    seq: u32,
}

/// An overlay endpoint as the kernel knows it: (IP, MAC).
pub type Endpoint = ([u8; 4], [u8; 6]);

/// What one node's kernel holds on `vxlan0`.
#[derive(Default, Clone)]
pub struct Peers {
    /// (IP, MAC) neighbour entries with a link-layer address.
    pub neigh: BTreeSet<Endpoint>,
    /// MAC → remote VTEP.
    pub fdb: BTreeMap<[u8; 6], [u8; 4]>,
}

impl Peers {
    /// Endpoints (IP, MAC) with both a neighbour entry and an FDB entry pointing at `vtep`.
    pub fn at(&self, vtep: [u8; 4]) -> BTreeSet<Endpoint> {
        self.neigh
            .iter()
            .filter(|(_, mac)| self.fdb.get(mac) == Some(&vtep))
            .copied()
            .collect()
    }
}

impl NlNs {
    /// Opens a socket in the namespace of `ns_file` (from a short-lived thread that enters it).
    pub fn open(ns_file: &Path) -> Result<NlNs, String> {
        Self::open_with_groups(ns_file, 0)
    }

    /// Opens a socket in the namespace of `ns_file` that the kernel tells of every neighbour
    /// and FDB change there (RTNLGRP_NEIGH): [`NlNs::wait_changes`] then sleeps until the
    /// tables change instead of polling them.
    pub fn watch(ns_file: &Path) -> Result<NlNs, String> {
        Self::open_with_groups(ns_file, 1 << (libc::RTNLGRP_NEIGH - 1))
    }

    /// Waits up to `timeout` for neighbour or FDB changes on `vxlan0` (a socket from
    /// [`NlNs::watch`]) and returns those that came (none: the timeout passed). `None` when
    /// the socket overflowed: changes were lost, dump the tables again.
    pub fn wait_changes(&mut self, timeout: std::time::Duration) -> Option<Vec<NeighChange>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one pollfd we own, count 1.
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            return Some(Vec::new());
        }
        let vx = self.vxlan_index;
        let mut changes = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: receiving into a buffer we own, of the length we pass, without blocking.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                return (e.kind() == std::io::ErrorKind::WouldBlock).then_some(changes);
            }
            if n == 0 {
                return Some(changes);
            }
            for_each_message(&buf[..n as usize], |kind, _, body| {
                let gone = kind == libc::RTM_DELNEIGH;
                if !gone && kind != libc::RTM_NEWNEIGH {
                    return;
                }
                let Some((nd, attrs)) = neigh_message(body) else {
                    return;
                };
                if i32::from_ne_bytes(nd[4..8].try_into().unwrap()) != vx {
                    return;
                }
                let state = u16::from_ne_bytes(nd[8..10].try_into().unwrap());
                let dst = attrs.get(&1).and_then(|d| <[u8; 4]>::try_from(&d[..]).ok());
                let ll = attrs.get(&2).and_then(|l| <[u8; 6]>::try_from(&l[..]).ok());
                match nd[0] as i32 {
                    libc::AF_INET => {
                        let bad = libc::NUD_INCOMPLETE | libc::NUD_FAILED;
                        if let Some(ip) = dst {
                            let mac = if gone || state & bad != 0 { None } else { ll };
                            changes.push(NeighChange::Neighbour { ip, mac });
                        }
                    }
                    libc::AF_BRIDGE => {
                        if let Some(mac) = ll {
                            let vtep = if gone { None } else { dst };
                            changes.push(NeighChange::Fdb { mac, vtep });
                        }
                    }
                    _ => {}
                }
            });
        }
    }

    fn open_with_groups(ns_file: &Path, groups: u32) -> Result<NlNs, String> {
        let path = ns_file.to_path_buf();
        std::thread::spawn(move || -> Result<NlNs, String> {
            let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns {}: {e}", path.display()))?;
            // SAFETY: plain socket(2) call; the result is checked.
            let fd = unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::NETLINK_ROUTE,
                )
            };
            if fd < 0 {
                return Err(format!("socket: {}", std::io::Error::last_os_error()));
            }
            // SAFETY: fd is a fresh descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            if groups != 0 {
                // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
                let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
                addr.nl_family = libc::AF_NETLINK as u16;
                addr.nl_groups = groups;
                // SAFETY: binding our own socket to an address of the size we pass.
                let rc = unsafe {
                    libc::bind(
                        fd.as_raw_fd(),
                        (&addr as *const libc::sockaddr_nl).cast(),
                        std::mem::size_of::<libc::sockaddr_nl>() as u32,
                    )
                };
                if rc < 0 {
                    return Err(format!("bind: {}", std::io::Error::last_os_error()));
                }
            }
            // SAFETY: the name is a NUL-terminated literal.
            let idx = unsafe { libc::if_nametoindex(c"vxlan0".as_ptr()) };
            if idx == 0 {
                return Err(format!("no vxlan0 in {}", path.display()));
            }
            Ok(NlNs {
                fd,
                vxlan_index: idx as i32,
                seq: 1,
            })
        })
        .join()
        .map_err(|_| "netns thread panicked".to_string())?
    }

    /// One RTM_GETNEIGH dump of `family`; calls `f(ndmsg, attributes)` for every entry.
    fn dump(&mut self, family: u8, mut f: impl FnMut(&[u8], &HashMap<u16, Vec<u8>>)) {
        self.seq += 1;
        let mut req = Vec::with_capacity(28);
        req.extend_from_slice(&28u32.to_ne_bytes());
        req.extend_from_slice(&(libc::RTM_GETNEIGH).to_ne_bytes());
        req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
        req.extend_from_slice(&self.seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(&[family, 0, 0, 0]);
        req.extend_from_slice(&[0u8; 8]);
        let fd = self.fd.as_raw_fd();
        // SAFETY: sending a buffer we own to a socket we own; an unbound netlink socket
        // talks to the kernel.
        let sent = unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) };
        if sent < 0 {
            return;
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: receiving into a buffer we own, of the length we pass.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                return;
            }
            let mut done = false;
            for_each_message(&buf[..n as usize], |kind, seq, body| {
                if seq != self.seq {
                    return;
                }
                if kind == libc::NLMSG_DONE as u16 || kind == libc::NLMSG_ERROR as u16 {
                    done = true;
                } else if kind == libc::RTM_NEWNEIGH
                    && let Some((nd, attrs)) = neigh_message(body)
                {
                    f(nd, &attrs);
                }
            });
            if done {
                return;
            }
        }
    }

    /// The neighbour and FDB entries on vxlan0.
    pub fn peers(&mut self) -> Peers {
        let vx = self.vxlan_index;
        let mut p = Peers::default();
        let ifindex = |nd: &[u8]| i32::from_ne_bytes(nd[4..8].try_into().unwrap());
        let state = |nd: &[u8]| u16::from_ne_bytes(nd[8..10].try_into().unwrap());
        self.dump(libc::AF_INET as u8, |nd, attrs| {
            let bad = libc::NUD_INCOMPLETE | libc::NUD_FAILED;
            if ifindex(nd) != vx || state(nd) & bad != 0 {
                return;
            }
            if let (Some(dst), Some(ll)) = (attrs.get(&1), attrs.get(&2))
                && let (Ok(ip), Ok(mac)) =
                    (<[u8; 4]>::try_from(&dst[..]), <[u8; 6]>::try_from(&ll[..]))
            {
                p.neigh.insert((ip, mac));
            }
        });
        self.dump(libc::AF_BRIDGE as u8, |nd, attrs| {
            if ifindex(nd) != vx {
                return;
            }
            if let (Some(dst), Some(ll)) = (attrs.get(&1), attrs.get(&2))
                && let (Ok(ip), Ok(mac)) =
                    (<[u8; 4]>::try_from(&dst[..]), <[u8; 6]>::try_from(&ll[..]))
            {
                p.fdb.insert(mac, ip);
            }
        });
        p
    }
}

/// A neighbour or FDB change on `vxlan0`, as the kernel reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighChange {
    /// The neighbour entry of `ip` now points at `mac`, or is gone (`None`).
    Neighbour {
        /// The entry's IP.
        ip: [u8; 4],
        /// Its link-layer address, if it is still a usable entry.
        mac: Option<[u8; 6]>,
    },
    /// The FDB entry of `mac` now points at `vtep`, or is gone (`None`).
    Fdb {
        /// The entry's MAC.
        mac: [u8; 6],
        /// Its remote VTEP, if it is still there.
        vtep: Option<[u8; 4]>,
    },
}

/// Calls `f(type, seq, body)` for every netlink message in `data`.
fn for_each_message(data: &[u8], mut f: impl FnMut(u16, u32, &[u8])) {
    let mut off = 0;
    while off + 16 <= data.len() {
        let len = u32::from_ne_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(data[off + 4..off + 6].try_into().unwrap());
        let seq = u32::from_ne_bytes(data[off + 8..off + 12].try_into().unwrap());
        if len < 16 || off + len > data.len() {
            return;
        }
        f(kind, seq, &data[off + 16..off + len]);
        off += (len + 3) & !3;
    }
}

/// A netlink message's attributes by type.
type Attributes = HashMap<u16, Vec<u8>>;

/// Splits a neighbour message's body into its `ndmsg` header and its attributes.
fn neigh_message(body: &[u8]) -> Option<(&[u8], Attributes)> {
    if body.len() < 12 {
        return None;
    }
    let (nd, mut rest) = body.split_at(12);
    let mut attrs = HashMap::new();
    while rest.len() >= 4 {
        let alen = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let atype = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if alen < 4 || alen > rest.len() {
            break;
        }
        attrs.insert(atype, rest[4..alen].to_vec());
        rest = &rest[((alen + 3) & !3).min(rest.len())..];
    }
    Some((nd, attrs))
}
