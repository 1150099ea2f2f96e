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
//! table's chains and sets into its cache before it writes); a batch costs well under one. Only
//! the hot, simple messages are built here (chains, rules, set elements of the `mini_lb`
//! entries, see [`crate::lb::netlink`]); whole tables are still loaded with `nft -f`.

use std::io;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

/// `NFNL_SUBSYS_NFTABLES`.
const SUBSYS_NFTABLES: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN`, `NFNL_MSG_BATCH_END`.
const BATCH_BEGIN: u16 = 0x10;
const BATCH_END: u16 = 0x11;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;

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
    /// `NFT_MSG_NEWSETELEM`.
    NewSetElem = 12,
    /// `NFT_MSG_DELSETELEM`.
    DelSetElem = 14,
}

impl MsgType {
    fn name(self) -> &'static str {
        match self {
            MsgType::NewRule => "NFT_MSG_NEWRULE",
            MsgType::NewChain => "NFT_MSG_NEWCHAIN",
            MsgType::DelChain => "NFT_MSG_DELCHAIN",
            MsgType::DelRule => "NFT_MSG_DELRULE",
            MsgType::NewSet => "NFT_MSG_NEWSET",
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
    /// Sequence number and type of every message that is acknowledged (numbered from 1, in
    /// order).
    sent: Vec<(u32, MsgType)>,
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

    /// Appends one message; `attrs` writes its attributes. Every message asks for an
    /// acknowledgement, so a failure names the message that caused it.
    pub fn push(&mut self, ty: MsgType, flags: u16, attrs: impl FnOnce(&mut Attrs<'_>)) {
        let seq = self.next_seq();
        let start = self.buf.len();
        push_header(
            &mut self.buf,
            (SUBSYS_NFTABLES << 8) | ty as u16,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
            self.family,
            0,
        );
        attrs(&mut Attrs { buf: &mut self.buf });
        finish_msg(&mut self.buf, start);
        self.sent.push((seq, ty));
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
        Ok(NftSocket { socket })
    }

    /// Sends `batch` and returns once the kernel acknowledged every message (committed) or
    /// refused one (nothing committed; the error names the refused message).
    pub fn send(&self, batch: &Batch) -> io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.drain();
        let bytes = batch.encode();
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

    /// Reads the acknowledgements the kernel queued while it processed the batch (it does so
    /// inside `sendmsg`, so they are all there: no waiting).
    fn read_acks(&self, batch: &Batch) -> io::Result<()> {
        let mut acked = 0;
        let mut failure: Option<io::Error> = None;
        let mut buf = Vec::with_capacity(64 * 1024);
        while acked < batch.sent.len() {
            buf.clear();
            match self.socket.recv(&mut buf, libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(failure.unwrap_or_else(|| {
                        io::Error::other(format!(
                            "nf_tables batch: the kernel acknowledged {acked} of {} messages",
                            batch.sent.len()
                        ))
                    }));
                }
                Err(e) => return Err(e),
            }
            for (seq, errno) in parse_acks(&buf) {
                acked += 1;
                if errno != 0 && failure.is_none() {
                    let what = batch
                        .sent
                        .iter()
                        .find(|(s, _)| *s == seq)
                        .map_or("the batch", |(_, ty)| ty.name());
                    let os = io::Error::from_raw_os_error(errno);
                    failure = Some(io::Error::new(os.kind(), format!("{what}: {os}")));
                }
            }
        }
        failure.map_or(Ok(()), Err)
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

impl Attrs<'_> {
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
