//! nf_tables transactions sent over netlink directly, without spawning `nft`.
//!
//! A [`Batch`] is one atomic nf_tables transaction: `NFNL_MSG_BATCH_BEGIN`, the messages,
//! `NFNL_MSG_BATCH_END`, encoded into one buffer and sent with one `sendmsg` on a
//! `NETLINK_NETFILTER` socket opened in the namespace the caller's thread is in. The kernel
//! processes the whole batch inside that call and queues one acknowledgement per message, so
//! [`Batch::send`] reads them without waiting. Any failed message aborts the transaction:
//! nothing of it stays.
//!
//! Spawning `nft` costs 10–20 ms per transaction on a small VM (fork/exec, and `nft` reads the
//! table's chains and sets into its cache before it writes); a batch costs well under one.
//! Every nf_tables write of the driver is a batch: the per-entry changes of `mini_lb`
//! ([`crate::lb::netlink`]) and whole-table loads ([`crate::nft_expr`] builds their rules).
//! Reads are dumps on the same socket ([`NftSocket::dump`], decoded by [`crate::nft_read`]),
//! so the daemon never runs the `nft` program.

use std::io;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

/// `NFNL_SUBSYS_NFTABLES`.
const SUBSYS_NFTABLES: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN`, `NFNL_MSG_BATCH_END`.
const BATCH_BEGIN: u16 = 0x10;
const BATCH_END: u16 = 0x11;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`.
const NLMSG_DONE: u16 = 3;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
const NLM_F_DUMP: u16 = 0x300;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_CREATE` (without `NLM_F_EXCL`: an existing object is fine).
pub const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_APPEND`: a new rule goes last in its chain.
pub const NLM_F_APPEND: u16 = 0x800;
/// `NLA_F_NESTED`, set on nested attributes as `nft` does.
const NLA_F_NESTED: u16 = 0x8000;

/// The nf_tables messages a batch may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    /// `NFT_MSG_NEWTABLE`.
    NewTable = 0,
    /// `NFT_MSG_DELTABLE`.
    DelTable = 2,
    /// `NFT_MSG_NEWRULE`.
    NewRule = 6,
    /// `NFT_MSG_NEWCHAIN`.
    NewChain = 3,
    /// `NFT_MSG_DELCHAIN`.
    DelChain = 5,
    /// `NFT_MSG_DELRULE` (without a handle: every rule of the chain).
    DelRule = 8,
    /// `NFT_MSG_NEWSET`.
    NewSet = 9,
    /// `NFT_MSG_DELSET`.
    DelSet = 11,
    /// `NFT_MSG_NEWSETELEM`.
    NewSetElem = 12,
    /// `NFT_MSG_DELSETELEM`.
    DelSetElem = 14,
}

impl MsgType {
    fn name(self) -> &'static str {
        match self {
            MsgType::NewTable => "NFT_MSG_NEWTABLE",
            MsgType::DelTable => "NFT_MSG_DELTABLE",
            MsgType::NewRule => "NFT_MSG_NEWRULE",
            MsgType::NewChain => "NFT_MSG_NEWCHAIN",
            MsgType::DelChain => "NFT_MSG_DELCHAIN",
            MsgType::DelRule => "NFT_MSG_DELRULE",
            MsgType::NewSet => "NFT_MSG_NEWSET",
            MsgType::DelSet => "NFT_MSG_DELSET",
            MsgType::NewSetElem => "NFT_MSG_NEWSETELEM",
            MsgType::DelSetElem => "NFT_MSG_DELSETELEM",
        }
    }
}

/// One nf_tables transaction being built.
#[derive(Debug, Clone)]
pub struct Batch {
    buf: Vec<u8>,
    family: u8,
    /// Sequence number, type and offset in `buf` of every message (numbered from 1, in order).
    sent: Vec<(u32, MsgType, usize)>,
    next_set_id: u32,
}

impl Batch {
    /// An empty transaction on tables of `family` (`NFPROTO_IPV4` = 2 for `table ip`).
    pub fn new(family: u8) -> Self {
        let mut buf = Vec::with_capacity(1024);
        push_header(&mut buf, BATCH_BEGIN, NLM_F_REQUEST, 0, 0, SUBSYS_NFTABLES);
        finish_msg(&mut buf, 0);
        Batch {
            buf,
            family,
            sent: Vec::new(),
            next_set_id: 1,
        }
    }

    /// A batch-unique id for a set created in this batch (`NFTA_SET_ID`), by which later
    /// messages of the same batch refer to it before the kernel has named it.
    pub fn set_id(&mut self) -> u32 {
        let id = self.next_set_id;
        self.next_set_id += 1;
        id
    }

    /// Appends one message; `attrs` writes its attributes. Only the last message of a batch
    /// asks for an acknowledgement (the kernel reports every failed message anyway, by its
    /// sequence number, so a failure still names the message that caused it; one
    /// acknowledgement per message would overflow the socket's receive buffer on a batch that
    /// loads a table of 1,000s of entries).
    pub fn push(&mut self, ty: MsgType, flags: u16, attrs: impl FnOnce(&mut Attrs<'_>)) {
        let seq = self.next_seq();
        let start = self.buf.len();
        push_header(
            &mut self.buf,
            (SUBSYS_NFTABLES << 8) | ty as u16,
            NLM_F_REQUEST | flags,
            seq,
            self.family,
            0,
        );
        attrs(&mut Attrs { buf: &mut self.buf });
        finish_msg(&mut self.buf, start);
        self.sent.push((seq, ty, start));
    }

    /// The sequence number of the acknowledged (last) message.
    fn last_seq(&self) -> u32 {
        self.sent.last().map_or(0, |(seq, _, _)| *seq)
    }

    fn next_seq(&self) -> u32 {
        self.sent.len() as u32 + 1
    }

    /// How many messages the batch carries (begin and end not counted).
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// True when no message was pushed.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// The encoded transaction, begin and end included.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = self.buf.clone();
        if let Some((_, _, at)) = self.sent.last() {
            let flags = u16::from_ne_bytes([buf[at + 6], buf[at + 7]]) | NLM_F_ACK;
            buf[at + 6..at + 8].copy_from_slice(&flags.to_ne_bytes());
        }
        let start = buf.len();
        push_header(
            &mut buf,
            BATCH_END,
            NLM_F_REQUEST,
            self.next_seq(),
            0,
            SUBSYS_NFTABLES,
        );
        finish_msg(&mut buf, start);
        buf
    }

    /// Sends the transaction on a socket opened for it in the network namespace of the
    /// calling thread; see [`NftSocket::send`]. Closing that socket waits for the kernel to
    /// release the transaction's objects, so callers that write often keep an [`NftSocket`].
    pub fn send(&self) -> io::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        NftSocket::open()?.send(self)
    }
}

/// A `NETLINK_NETFILTER` socket, bound in the namespace of the thread that opened it; it
/// sends batches into that namespace from any thread.
///
/// Keep it open: closing an nf_tables socket right after a transaction waits until the kernel
/// has released that transaction's deleted objects (an RCU grace period, 7–15 ms on this
/// project's VM), which would otherwise dominate every change.
#[derive(Debug)]
pub struct NftSocket {
    socket: Socket,
}

impl NftSocket {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.set_ext_ack(true)?;
        socket.set_cap_ack(true)?;
        let socket = NftSocket { socket };
        // A dump that stalls (it should not) fails after this instead of hanging the daemon.
        socket.setsockopt(
            libc::SO_RCVTIMEO,
            &libc::timeval {
                tv_sec: 10,
                tv_usec: 0,
            },
        )?;
        Ok(socket)
    }

    fn setsockopt<T>(&self, opt: libc::c_int, value: &T) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: `value` points to a live `T` of the size passed; the fd is our open socket.
        let r = unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (value as *const T).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Makes the send buffer large enough for one datagram of `len` bytes (a whole-table load
    /// can exceed the default 208 KiB); `SO_SNDBUFFORCE` needs `CAP_NET_ADMIN`, which writing
    /// nf_tables needs anyway.
    fn fit_sndbuf(&self, len: usize) -> io::Result<()> {
        const DEFAULT: usize = 200 * 1024;
        if len + 4096 <= DEFAULT {
            return Ok(());
        }
        let size = libc::c_int::try_from(len + 64 * 1024).unwrap_or(libc::c_int::MAX);
        self.setsockopt(libc::SO_SNDBUFFORCE, &size)
    }

    /// Sends `batch` and returns once the kernel acknowledged every message (committed) or
    /// refused one (nothing committed; the error names the refused message).
    pub fn send(&self, batch: &Batch) -> io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.drain();
        let bytes = batch.encode();
        self.fit_sndbuf(bytes.len())?;
        let n = self.socket.send_to(&bytes, &SocketAddr::new(0, 0), 0)?;
        if n != bytes.len() {
            return Err(io::Error::other(format!(
                "nf_tables batch: sent {n} of {} bytes",
                bytes.len()
            )));
        }
        self.read_acks(batch)
    }

    /// Discards anything left from an earlier exchange (there should be nothing).
    fn drain(&self) {
        let mut buf = Vec::with_capacity(4096);
        while self.socket.recv(&mut buf, libc::MSG_DONTWAIT).is_ok() {
            buf.clear();
        }
    }

    /// Reads the errors and the final acknowledgement the kernel queued while it processed
    /// the batch (it does so inside `sendmsg`, so they are all there: no waiting).
    fn read_acks(&self, batch: &Batch) -> io::Result<()> {
        let last = batch.last_seq();
        let mut done = false;
        let mut failure: Option<io::Error> = None;
        let mut buf = Vec::with_capacity(64 * 1024);
        while !done {
            buf.clear();
            match self.socket.recv(&mut buf, libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(failure.unwrap_or_else(|| {
                        io::Error::other(format!(
                            "nf_tables batch of {} messages: the kernel did not acknowledge it",
                            batch.sent.len()
                        ))
                    }));
                }
                Err(e) => return Err(e),
            }
            for (seq, errno) in parse_acks(&buf) {
                done |= seq == last;
                if errno != 0 && failure.is_none() {
                    let what = batch
                        .sent
                        .iter()
                        .find(|(s, _, _)| *s == seq)
                        .map_or("the batch", |(_, ty, _)| ty.name());
                    let os = io::Error::from_raw_os_error(errno);
                    failure = Some(io::Error::new(os.kind(), format!("{what}: {os}")));
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// The nf_tables requests a dump may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetType {
    /// `NFT_MSG_GETTABLE`.
    Table = 1,
    /// `NFT_MSG_GETCHAIN`.
    Chain = 4,
    /// `NFT_MSG_GETRULE`.
    Rule = 7,
    /// `NFT_MSG_GETSET`.
    Set = 10,
    /// `NFT_MSG_GETSETELEM`.
    SetElem = 13,
}

impl NftSocket {
    /// Sends one `GET` request (a dump when `dump`, else a lookup of one object named in
    /// `attrs`) and returns the attribute bytes of every answer (after `struct nfgenmsg`).
    /// `Ok(None)`: the kernel answered `ENOENT` (no such table, chain or set).
    pub fn dump(
        &self,
        ty: GetType,
        family: u8,
        dump: bool,
        attrs: impl FnOnce(&mut Attrs<'_>),
    ) -> io::Result<Option<Vec<Vec<u8>>>> {
        self.drain();
        const SEQ: u32 = 1;
        let mut req = Vec::with_capacity(128);
        let flags = NLM_F_REQUEST | NLM_F_ACK | if dump { NLM_F_DUMP } else { 0 };
        push_header(
            &mut req,
            (SUBSYS_NFTABLES << 8) | ty as u16,
            flags,
            SEQ,
            family,
            0,
        );
        attrs(&mut Attrs { buf: &mut req });
        finish_msg(&mut req, 0);
        self.socket.send_to(&req, &SocketAddr::new(0, 0), 0)?;
        let mut out = Vec::new();
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            buf.clear();
            self.socket.recv(&mut buf, 0)?;
            let mut data = &buf[..];
            while data.len() >= 16 {
                let len = u32::from_ne_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
                if len < 16 || len > data.len() {
                    break;
                }
                let mtype = u16::from_ne_bytes(data[4..6].try_into().expect("2 bytes"));
                let seq = u32::from_ne_bytes(data[8..12].try_into().expect("4 bytes"));
                let msg = &data[..len];
                data = &data[align(len).min(data.len())..];
                if seq != SEQ {
                    continue;
                }
                match mtype {
                    // A dump that failed midway carries the errno after the header.
                    NLMSG_DONE if len >= 20 => {
                        let err = -i32::from_ne_bytes(msg[16..20].try_into().expect("4 bytes"));
                        return match err {
                            0 => Ok(Some(out)),
                            libc::ENOENT => Ok(None),
                            e => Err(io::Error::from_raw_os_error(e)),
                        };
                    }
                    NLMSG_DONE => return Ok(Some(out)),
                    NLMSG_ERROR if len >= 20 => {
                        let err = -i32::from_ne_bytes(msg[16..20].try_into().expect("4 bytes"));
                        return match err {
                            0 => Ok(Some(out)),
                            libc::ENOENT => Ok(None),
                            e => Err(io::Error::from_raw_os_error(e)),
                        };
                    }
                    _ if len >= 20 => out.push(msg[20..].to_vec()),
                    _ => {}
                }
            }
        }
    }
}

/// Appends a `struct nlmsghdr` (length 0 until [`finish_msg`]) and a `struct nfgenmsg`.
fn push_header(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    buf.push(family);
    buf.push(0); // NFNETLINK_V0
    buf.extend_from_slice(&res_id.to_be_bytes());
}

/// Sets the length of the message that starts at `start` and ends at the buffer's end.
fn finish_msg(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// (sequence number, errno) of every `NLMSG_ERROR` in one datagram (errno 0: acknowledged).
fn parse_acks(mut data: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    while data.len() >= 16 {
        let len = u32::from_ne_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
        if len < 16 || len > data.len() {
            break;
        }
        let ty = u16::from_ne_bytes(data[4..6].try_into().expect("2 bytes"));
        let seq = u32::from_ne_bytes(data[8..12].try_into().expect("4 bytes"));
        if ty == NLMSG_ERROR && len >= 20 {
            let err = i32::from_ne_bytes(data[16..20].try_into().expect("4 bytes"));
            out.push((seq, -err));
        }
        data = &data[align(len).min(data.len())..];
    }
    out
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// Writes the attributes of one message (or of one nested attribute).
#[derive(Debug)]
pub struct Attrs<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Attrs<'a> {
    /// Writes attributes at the end of `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Attrs { buf }
    }

    /// An attribute holding `value` as is.
    pub fn bytes(&mut self, ty: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
        self
    }

    /// A NUL-terminated string attribute (names of tables, chains, sets, expressions).
    pub fn str(&mut self, ty: u16, value: &str) -> &mut Self {
        let mut v = Vec::with_capacity(value.len() + 1);
        v.extend_from_slice(value.as_bytes());
        v.push(0);
        self.bytes(ty, &v)
    }

    /// A 32-bit big-endian attribute (nf_tables' numbers: registers, flags, lengths, ids).
    pub fn be32(&mut self, ty: u16, value: u32) -> &mut Self {
        self.bytes(ty, &value.to_be_bytes())
    }

    /// A nested attribute whose content `inner` writes.
    pub fn nested(&mut self, ty: u16, inner: impl FnOnce(&mut Attrs<'_>)) -> &mut Self {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        inner(&mut Attrs { buf: self.buf });
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

#[cfg(test)]
mod tests;
