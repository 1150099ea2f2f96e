//! Raft messages too large for one gRPC message (every server refuses more than
//! [`mini_proto::MAX_MESSAGE`]) travel as a stream of [`RaftChunk`]s: `RaftTransport.SendChunked`.
//!
//! The sender cuts the encoded message into [`CHUNK`]-byte pieces, copying one piece at a time
//! as the stream is polled. The receiver reads the announced length from the first chunk,
//! refuses it if it is over [`MAX_CHUNKED`], and reassembles one message at a time (a second
//! stream meanwhile is refused), each chunk within [`CHUNK_WAIT`] of the previous.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use mini_proto::v1::RaftChunk;
use tonic::Status;

/// Bytes per chunk.
pub const CHUNK: usize = 4 << 20;
/// Encoded messages up to this size go in `Send` batches; larger ones in chunks.
pub const SEND_LIMIT: usize = 8 << 20;
/// Largest message reassembled (a snapshot of the whole store).
pub const MAX_CHUNKED: usize = 256 << 20;
/// Longest wait for the next chunk.
pub const CHUNK_WAIT: Duration = Duration::from_secs(10);

/// Who sent a chunked message (the first chunk's header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkHeader {
    /// The sender's cluster.
    pub cluster_id: String,
    /// The sender's Raft id.
    pub from_id: u64,
    /// The sender's listener address.
    pub from_addr: String,
}

/// The chunks of `message` (an encoded raft message), `chunk` bytes each (the last shorter).
pub fn split(
    header: ChunkHeader,
    message: Vec<u8>,
    chunk: usize,
) -> impl Stream<Item = RaftChunk> + Send + 'static {
    let chunk = chunk.max(1);
    let total = message.len();
    let message = Arc::new(message);
    let count = total.div_ceil(chunk).max(1);
    futures::stream::iter((0..count).map(move |i| {
        let data = message[i * chunk..((i + 1) * chunk).min(total)].to_vec();
        if i == 0 {
            RaftChunk {
                cluster_id: header.cluster_id.clone(),
                from_id: header.from_id,
                from_addr: header.from_addr.clone(),
                total_len: total as u64,
                data,
            }
        } else {
            RaftChunk {
                data,
                ..Default::default()
            }
        }
    }))
}

/// One chunked message at a time per process: reassembly holds up to [`MAX_CHUNKED`] bytes.
pub static RECEIVING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// The header of a chunked message, from its first chunk, and the message once all of it came.
/// `limit` is [`MAX_CHUNKED`] and `gate` is [`RECEIVING`] outside tests. `admit` judges the
/// header before anything else is read (the cluster check), so a refused sender costs one chunk.
pub async fn reassemble<S>(
    mut chunks: S,
    limit: usize,
    gate: &tokio::sync::Semaphore,
    admit: impl FnOnce(&ChunkHeader) -> Result<(), Status>,
) -> Result<(ChunkHeader, Vec<u8>), Status>
where
    S: Stream<Item = Result<RaftChunk, Status>> + Unpin,
{
    let first = next_chunk(&mut chunks)
        .await?
        .ok_or_else(|| Status::invalid_argument("a chunked raft message without chunks"))?;
    let header = ChunkHeader {
        cluster_id: first.cluster_id,
        from_id: first.from_id,
        from_addr: first.from_addr,
    };
    admit(&header)?;
    let total = usize::try_from(first.total_len).unwrap_or(usize::MAX);
    if total == 0 || total > limit {
        return Err(Status::invalid_argument(format!(
            "a chunked raft message of {} bytes: the limit is {limit}",
            first.total_len
        )));
    }
    let _permit = gate
        .try_acquire()
        .map_err(|_| Status::resource_exhausted("another large raft message is being received"))?;
    let mut data = Vec::with_capacity(total.min(CHUNK));
    let mut chunk = first.data;
    loop {
        if data.len() + chunk.len() > total {
            return Err(Status::invalid_argument(format!(
                "chunks hold more than the announced {total} bytes"
            )));
        }
        data.extend_from_slice(&chunk);
        if data.len() == total {
            break;
        }
        chunk = match next_chunk(&mut chunks).await? {
            Some(c) => c.data,
            None => {
                return Err(Status::invalid_argument(format!(
                    "the chunks ended after {} of {total} bytes",
                    data.len()
                )));
            }
        };
    }
    Ok((header, data))
}

/// The next chunk, `None` at the end of the stream; an error after [`CHUNK_WAIT`].
async fn next_chunk<S>(chunks: &mut S) -> Result<Option<RaftChunk>, Status>
where
    S: Stream<Item = Result<RaftChunk, Status>> + Unpin,
{
    match tokio::time::timeout(CHUNK_WAIT, chunks.next()).await {
        Ok(Some(chunk)) => chunk.map(Some),
        Ok(None) => Ok(None),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no chunk within {} s",
            CHUNK_WAIT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests;
