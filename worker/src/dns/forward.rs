//! Forwarding to the node's resolvers, from the daemon's own network namespace (like Docker:
//! the sandbox may have no route to them, the node always has).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use super::message::{self, Forward};

/// Largest reply read from an upstream over UDP.
const MAX_UPSTREAM_UDP: usize = 4096;

/// Asks each upstream in turn, each within `per_upstream`, and returns the first reply to
/// `query` (raw bytes, passed back to the client as they are). `None` when none answered.
pub(crate) async fn forward(
    upstreams: &[SocketAddr],
    packet: &[u8],
    query: &Forward,
    tcp: bool,
    per_upstream: Duration,
) -> Option<Vec<u8>> {
    for &upstream in upstreams {
        let deadline = Instant::now() + per_upstream;
        let reply = if tcp {
            timeout_at(deadline, ask_tcp(upstream, packet, query)).await
        } else {
            timeout_at(deadline, ask_udp(upstream, packet, query)).await
        };
        match reply {
            Ok(Ok(reply)) => return Some(reply),
            Ok(Err(e)) => tracing::debug!(%upstream, error = %e, "dns: upstream failed"),
            Err(_) => tracing::debug!(%upstream, "dns: upstream timed out"),
        }
    }
    None
}

/// One UDP exchange from a fresh socket (a random source port per query); datagrams that are
/// not the reply (another source, another id or question) are ignored until the deadline.
async fn ask_udp(upstream: SocketAddr, packet: &[u8], query: &Forward) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(packet).await?;
    let mut buf = vec![0u8; MAX_UPSTREAM_UDP];
    loop {
        let n = socket.recv(&mut buf).await?;
        if message::is_reply_to(&buf[..n], query) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

/// One TCP exchange: length-prefixed query, length-prefixed reply.
async fn ask_tcp(upstream: SocketAddr, packet: &[u8], query: &Forward) -> io::Result<Vec<u8>> {
    let len = u16::try_from(packet.len()).map_err(|_| io::Error::other("query too long"))?;
    let mut stream = TcpStream::connect(upstream).await?;
    let mut out = Vec::with_capacity(packet.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(packet);
    stream.write_all(&out).await?;
    let reply = read_frame(&mut stream).await?;
    if message::is_reply_to(&reply, query) {
        Ok(reply)
    } else {
        Err(io::Error::other(
            "upstream sent something that is not the reply",
        ))
    }
}

/// Reads one length-prefixed DNS message from a TCP stream (at most 65535 bytes: the prefix is
/// 16 bits, so the size is bounded by construction).
pub(crate) async fn read_frame<R: AsyncReadExt + Unpin>(stream: &mut R) -> io::Result<Vec<u8>> {
    let len = usize::from(stream.read_u16().await?);
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Writes one length-prefixed DNS message to a TCP stream.
pub(crate) async fn write_frame<W: AsyncWriteExt + Unpin>(
    stream: &mut W,
    message: &[u8],
) -> io::Result<()> {
    let len = u16::try_from(message.len()).map_err(|_| io::Error::other("reply too long"))?;
    let mut out = Vec::with_capacity(message.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    stream.write_all(&out).await
}
