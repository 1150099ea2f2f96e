//! [`LinuxKernel`]: the real [`Kernel`], over rtnetlink and nf_tables netlink.
//!
//! One rtnetlink connection per namespace, opened on a short-lived thread that entered the
//! namespace (or created it), then driven by tokio; likewise one nf_tables socket per namespace
//! ([`crate::nft_batch::NftSocket`]) that carries every nftables read (dumps) and write
//! (batches): the `nft` program is never run. Both are dropped when their namespace is
//! deleted.

mod observe;
mod ops;

use std::collections::HashMap;
use std::os::fd::IntoRawFd;
use std::os::unix::io::FromRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use netlink_sys::{Socket, TokioSocket, protocols::NETLINK_ROUTE};
use rtnetlink::Handle;

use crate::error::Error;
use crate::kernel::{AtomicCounters, Counters, Kernel};
use crate::model::DriverConfig;
use crate::netns;
use crate::nft_batch::{Batch, NftSocket};
use crate::nft_read::{self, Depth, TableDump};
use crate::observed::Observed;
use crate::op::{NsRef, Op};

/// `NFPROTO_IPV4`: `table ip`.
const NFPROTO_IPV4: u8 = 2;

/// The real kernel.
pub struct LinuxKernel {
    config: DriverConfig,
    /// Open rtnetlink connections by namespace. A std mutex: held only to clone or insert.
    handles: Mutex<HashMap<NsRef, Handle>>,
    /// Open nf_tables sockets by namespace (each used by one batch at a time).
    nft_sockets: Mutex<HashMap<NsRef, Arc<Mutex<NftSocket>>>>,
    counters: AtomicCounters,
}

impl std::fmt::Debug for LinuxKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxKernel")
            .field("run_dir", &self.config.run_dir)
            .field("counters", &self.counters())
            .finish()
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// Runs a netlink write, counting it; `ignore` lists errnos that mean "already done".
macro_rules! write_req {
    ($self:expr, $req:expr, $object:expr, $call:expr $(, ignore $($errno:expr),+)?) => {{
        $self.counters.write();
        match $req.await {
            Ok(()) => Ok(()),
            $(Err(e) if [$($errno),+].contains(&errno(&e).unwrap_or(0)) => Ok(()),)?
            Err(e) => Err(Error::netlink($object, $call, e)),
        }
    }};
}
pub(crate) use write_req;

impl LinuxKernel {
    /// A kernel for `config` (its `run_dir` and `host_netns`). Creates `run_dir/netns` if
    /// missing.
    pub fn new(config: DriverConfig) -> Result<Self, Error> {
        let dir = config.netns_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::os(dir.display().to_string(), "mkdir", e))?;
        Ok(LinuxKernel {
            config,
            handles: Mutex::new(HashMap::new()),
            nft_sockets: Mutex::new(HashMap::new()),
            counters: AtomicCounters::default(),
        })
    }

    fn ns_path(&self, ns: &NsRef) -> Option<PathBuf> {
        match ns {
            NsRef::Host => self.config.host_netns.clone(),
            NsRef::Named(n) => Some(self.config.netns_dir().join(n)),
        }
    }

    fn named_path(&self, ns: &str) -> PathBuf {
        self.config.netns_dir().join(ns)
    }

    /// Hands a netlink socket opened in some namespace to tokio.
    fn adopt(&self, ns: &NsRef, socket: Socket) -> Handle {
        let fd = socket.into_raw_fd();
        // SAFETY: `into_raw_fd` released ownership of this open netlink socket fd to us and
        // nothing else refers to it; `TokioSocket` takes it over and closes it on drop.
        let socket = unsafe { TokioSocket::from_raw_fd(fd) };
        let (conn, handle, _) = rtnetlink::from_socket(socket);
        tokio::spawn(conn);
        self.handles
            .lock()
            .expect("handles lock")
            .insert(ns.clone(), handle.clone());
        handle
    }

    /// The connection to a namespace, opening it on a thread inside it if needed.
    async fn handle(&self, ns: &NsRef) -> Result<Handle, Error> {
        if let Some(h) = self.handles.lock().expect("handles lock").get(ns) {
            return Ok(h.clone());
        }
        let path = self.ns_path(ns);
        let socket = netns::run_in_async(path, || Socket::new(NETLINK_ROUTE))
            .await
            .map_err(|e| Error::os(ns.to_string(), "setns+socket(NETLINK_ROUTE)", e))?;
        Ok(self.adopt(ns, socket))
    }

    /// Drops the connections to a namespace that is going away (an open socket would keep
    /// the namespace alive). Closing the nf_tables socket can wait for an RCU grace period,
    /// so it is closed off the async threads.
    fn forget(&self, ns: &NsRef) {
        self.handles.lock().expect("handles lock").remove(ns);
        if let Some(socket) = self
            .nft_sockets
            .lock()
            .expect("nft sockets lock")
            .remove(ns)
        {
            tokio::task::spawn_blocking(move || drop(socket));
        }
    }

    /// The nf_tables socket of a namespace, opening it on a thread inside it if needed.
    async fn nft_socket(&self, ns: &NsRef) -> std::io::Result<Arc<Mutex<NftSocket>>> {
        if let Some(s) = self.nft_sockets.lock().expect("nft sockets lock").get(ns) {
            return Ok(s.clone());
        }
        let socket = netns::run_in_async(self.ns_path(ns), NftSocket::open).await?;
        let socket = Arc::new(Mutex::new(socket));
        self.nft_sockets
            .lock()
            .expect("nft sockets lock")
            .insert(ns.clone(), socket.clone());
        Ok(socket)
    }

    /// Index of the link `name`, if it exists.
    async fn index(&self, h: &Handle, ns: &NsRef, name: &str) -> Result<Option<u32>, Error> {
        self.counters.read();
        let mut links = h.link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(msg.header.index)),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(Error::netlink(
                format!("link {name} in {ns}"),
                "RTM_GETLINK",
                e,
            )),
        }
    }

    async fn need_index(&self, h: &Handle, ns: &NsRef, name: &str) -> Result<u32, Error> {
        self.index(h, ns, name)
            .await?
            .ok_or_else(|| Error::Missing {
                object: format!("link {name} in {ns}"),
            })
    }

    /// Reads table `table` (`table ip`) of namespace `ns` over netlink; `None` when there is
    /// none. Counted as one read.
    async fn read_table_in(
        &self,
        ns: &NsRef,
        table: &str,
        depth: Depth,
    ) -> Result<Option<TableDump>, Error> {
        self.counters.read();
        let name = table.to_string();
        let read = match self.nft_socket(ns).await {
            Ok(socket) => tokio::task::spawn_blocking(move || {
                let socket = socket.lock().expect("nft socket lock");
                nft_read::read_table(&socket, NFPROTO_IPV4, &name, depth)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e))),
            Err(e) => Err(e),
        };
        read.map_err(|e| Error::Nft {
            action: format!("list table ip {table}"),
            namespace: ns.to_string(),
            detail: e.to_string(),
        })
    }

    /// Sends an nf_tables netlink batch (one transaction) in namespace `ns`, on the
    /// namespace's open socket.
    async fn netlink_batch_in(&self, ns: &NsRef, action: &str, batch: Batch) -> Result<(), Error> {
        self.counters.write();
        let sent = match self.nft_socket(ns).await {
            Ok(socket) => tokio::task::spawn_blocking(move || {
                socket.lock().expect("nft socket lock").send(&batch)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e))),
            Err(e) => Err(e),
        };
        sent.map_err(|e| Error::Nft {
            action: action.to_string(),
            namespace: ns.to_string(),
            detail: e.to_string(),
        })
    }

    /// Reads or writes `/proc/sys/net/ipv4/ip_forward` of the host namespace.
    async fn ip_forward(&self, set: bool) -> Result<bool, Error> {
        self.ip_forward_in(&NsRef::Host, set).await
    }

    /// Reads or writes `/proc/sys/net/ipv4/ip_forward` of namespace `ns`.
    async fn ip_forward_in(&self, ns: &NsRef, set: bool) -> Result<bool, Error> {
        const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
        if set {
            self.counters.write();
        } else {
            self.counters.read();
        }
        netns::run_in_async(self.ns_path(ns), move || {
            if set {
                std::fs::write(PATH, "1\n")?;
            }
            Ok(std::fs::read_to_string(PATH)?.trim() == "1")
        })
        .await
        .map_err(|e| {
            Error::os(
                format!("{PATH} in {ns}"),
                if set { "write" } else { "read" },
                e,
            )
        })
    }
}

impl Kernel for LinuxKernel {
    async fn observe(&self) -> Result<Observed, Error> {
        self.observe_all().await
    }

    async fn observe_part(&self, touched: &crate::observed::Touched) -> Result<Observed, Error> {
        self.observe_touched(touched).await
    }

    async fn execute(&self, op: &Op) -> Result<(), Error> {
        self.execute_op(op).await
    }

    fn counters(&self) -> Counters {
        self.counters.get()
    }
}
