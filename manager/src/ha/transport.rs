//! The Raft transport over gRPC: one sender task per peer behind a bounded queue.
//!
//! The Raft loop hands messages to [`GrpcTransport::send`], which never blocks: each message goes
//! into its peer's queue ([`QUEUE`] deep). The peer's task drains the queue in batches and pushes
//! each batch, in order, on one long-lived `RaftTransport.SendStream` call to that peer, without
//! waiting for the previous batch's answer: a unary call per batch held every message behind the
//! last call's round trip (a new entry's append waited for the previous commit broadcast). The
//! peer acks the first batch it stepped and then at most one batch per 100 ms (an ack marks it
//! reached; acking every batch cost each write extra frames both ways). A stream that breaks, or stays full
//! for [`SEND_TIMEOUT`], is dropped and raft is told ([`Report::Unreachable`]): it then probes the
//! peer instead of streaming to it, and the next batch opens a new stream. Snapshots are
//! reported as delivered or failed ([`Report::Snapshot`]) so raft knows when to resume sending
//! entries.
//!
//! No call carries more than [`SEND_LIMIT`] bytes of messages: a snapshot, or any message over
//! that, goes alone on a call of its own (`RaftTransport.Send`, or in chunks with
//! `RaftTransport.SendChunked` when larger, see [`super::chunks`]), because every server refuses
//! messages over [`mini_proto::MAX_MESSAGE`].

use std::collections::HashMap;
use std::time::Duration;

use mini_proto::v1::raft_transport_client::RaftTransportClient;
use mini_proto::v1::{RaftAck, RaftMessages};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use super::Peers;
use super::chunks::{self, CHUNK, ChunkHeader, SEND_LIMIT};
use crate::raft::{RaftHandle, Transport};

/// Messages queued per peer before new ones are dropped (raft resends what matters).
pub const QUEUE: usize = 1024;
/// Longest a batch may take to reach a peer; a dead peer costs at most this per batch.
pub const SEND_TIMEOUT: Duration = Duration::from_millis(500);
/// Most messages sent in one call.
const BATCH: usize = 256;

/// What the transport tells raft about deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Messages to this peer were lost.
    Unreachable(u64),
    /// A snapshot to this peer was delivered (`true`) or lost.
    Snapshot(u64, bool),
}

/// The Raft transport of a manager. See the module docs.
pub struct GrpcTransport {
    peers: Peers,
    /// This node's Raft id.
    own_id: u64,
    queues: HashMap<u64, mpsc::Sender<Message>>,
    reports: mpsc::UnboundedSender<Report>,
}

impl GrpcTransport {
    /// A transport for node `own_id`, resolving peers through `peers` and reporting failed
    /// deliveries on `reports` (see [`forward_reports`]).
    pub fn new(peers: Peers, own_id: u64, reports: mpsc::UnboundedSender<Report>) -> Self {
        GrpcTransport {
            peers,
            own_id,
            queues: HashMap::new(),
            reports,
        }
    }

    fn queue(&mut self, to: u64) -> &mpsc::Sender<Message> {
        self.queues.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(sender(
                self.peers.clone(),
                self.own_id,
                to,
                rx,
                self.reports.clone(),
            ));
            tx
        })
    }
}

impl Transport for GrpcTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        for msg in msgs {
            let to = msg.to;
            let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
            if self.queue(to).try_send(msg).is_err() {
                let _ = self.reports.send(if snapshot {
                    Report::Snapshot(to, false)
                } else {
                    Report::Unreachable(to)
                });
            }
        }
    }
}

/// Feeds the transport's reports into the Raft loop until the transport is dropped.
pub async fn forward_reports<O: Send + 'static>(
    mut reports: mpsc::UnboundedReceiver<Report>,
    raft: RaftHandle<O>,
) {
    while let Some(report) = reports.recv().await {
        match report {
            Report::Unreachable(id) => raft.report_unreachable(id).await,
            Report::Snapshot(id, ok) => raft.report_snapshot(id, ok).await,
        }
    }
}

/// Sends everything queued for peer `to`, in order, until the transport is dropped: the
/// messages go in [`groups`]; a group without a snapshot on one long-lived `SendStream` call
/// ([`Link`]), any other group on calls of its own ([`deliver`]).
async fn sender(
    peers: Peers,
    own_id: u64,
    to: u64,
    mut rx: mpsc::Receiver<Message>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let mut link = Link {
        peers,
        to,
        reports,
        stream: None,
    };
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let from = ChunkHeader {
            cluster_id: link.peers.cluster_id(),
            from_id: own_id,
            from_addr: link.peers.own_addr(),
        };
        let messages: Vec<(bool, Vec<u8>)> = batch
            .drain(..)
            .filter_map(|m| {
                let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
                m.write_to_bytes().ok().map(|b| (snapshot, b))
            })
            .collect();
        let mut delivered = true;
        for group in groups(messages) {
            let outcome = match group {
                Group::Batch(messages) if messages.iter().all(|(snapshot, _)| !snapshot) => {
                    let messages = messages.into_iter().map(|(_, bytes)| bytes).collect();
                    delivered &= link.push(&from, messages).await;
                    continue;
                }
                group => match link.peers.channel_to(to) {
                    Some(channel) => deliver(channel, &from, group.into_messages()).await,
                    None => Delivery {
                        delivered: false,
                        snapshots: vec![false; group.snapshots()],
                    },
                },
            };
            delivered &= outcome.delivered;
            for ok in outcome.snapshots {
                let _ = link.reports.send(Report::Snapshot(to, ok));
            }
        }
        if !delivered {
            let _ = link.reports.send(Report::Unreachable(to));
        }
    }
}

/// Encoded messages (`(is a snapshot, bytes)`) as they travel, in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Group {
    /// Consecutive messages of at most [`SEND_LIMIT`] bytes each and together: one `Send` call
    /// or one batch on a stream.
    Batch(Vec<(bool, Vec<u8>)>),
    /// One larger message, alone in chunks (`SendChunked`).
    Chunked(bool, Vec<u8>),
}

impl Group {
    /// How many snapshots it holds.
    fn snapshots(&self) -> usize {
        match self {
            Group::Batch(messages) => messages.iter().filter(|(snapshot, _)| *snapshot).count(),
            Group::Chunked(snapshot, _) => usize::from(*snapshot),
        }
    }

    fn into_messages(self) -> Vec<(bool, Vec<u8>)> {
        match self {
            Group::Batch(messages) => messages,
            Group::Chunked(snapshot, bytes) => vec![(snapshot, bytes)],
        }
    }
}

/// Splits `messages` into the groups they travel in, in order: consecutive small ones together
/// up to [`SEND_LIMIT`] bytes, each larger one alone.
pub(crate) fn groups(messages: Vec<(bool, Vec<u8>)>) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut pending: Vec<(bool, Vec<u8>)> = Vec::new();
    let mut size = 0;
    for (snapshot, bytes) in messages {
        if bytes.len() > SEND_LIMIT || size + bytes.len() > SEND_LIMIT {
            if !pending.is_empty() {
                groups.push(Group::Batch(std::mem::take(&mut pending)));
                size = 0;
            }
            if bytes.len() > SEND_LIMIT {
                groups.push(Group::Chunked(snapshot, bytes));
                continue;
            }
        }
        size += bytes.len();
        pending.push((snapshot, bytes));
    }
    if !pending.is_empty() {
        groups.push(Group::Batch(pending));
    }
    groups
}

/// Batches queued on a stream before the sender waits (at most [`SEND_TIMEOUT`]) for room.
const STREAM_QUEUE: usize = 8;

/// The sending side of one peer's `SendStream` call.
struct Link {
    peers: Peers,
    to: u64,
    reports: mpsc::UnboundedSender<Report>,
    stream: Option<Stream>,
}

/// An open `SendStream` call: batches go in through `tx`; its task reads the peer's acks
/// (each one marks the peer reached; the peer sends at most one per 100 ms) and reports the
/// peer unreachable when the call breaks.
pub(crate) struct Stream {
    /// The peer's address and this node's certificate generation when it was opened: a
    /// stream to an old address, or presenting an old certificate, is replaced.
    key: (String, u64),
    tx: mpsc::Sender<RaftMessages>,
    call: tokio::task::JoinHandle<()>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.call.abort();
    }
}

impl Link {
    /// Queues one batch of encoded messages on the peer's stream, opening one if there is
    /// none or the last one broke. `false` if it could not be queued: the peer is unknown, or
    /// its stream broke or stayed full for [`SEND_TIMEOUT`] (then it is dropped, and the next
    /// batch opens a new one).
    async fn push(&mut self, from: &ChunkHeader, messages: Vec<Vec<u8>>) -> bool {
        let Some(addr) = self.peers.addr(self.to) else {
            tracing::debug!(peer = self.to, "no address for raft peer yet");
            return false;
        };
        let key = (addr, self.peers.generation());
        let stream = match &mut self.stream {
            Some(stream) if stream.key == key && !stream.ended() => stream,
            slot => {
                let Some(channel) = self.peers.channel(&key.0) else {
                    *slot = None;
                    return false;
                };
                slot.insert(open_link_stream(
                    &self.peers,
                    self.to,
                    &self.reports,
                    channel,
                    key,
                ))
            }
        };
        let batch = RaftMessages {
            cluster_id: from.cluster_id.clone(),
            from_id: from.from_id,
            from_addr: from.from_addr.clone(),
            messages,
        };
        if stream.push(batch).await {
            return true;
        }
        tracing::debug!(peer = self.to, "raft stream broke or stayed full");
        self.stream = None;
        false
    }
}

/// A stream to peer `to` whose acks mark it reached and whose end reports it unreachable.
fn open_link_stream(
    peers: &Peers,
    to: u64,
    reports: &mpsc::UnboundedSender<Report>,
    channel: tonic::transport::Channel,
    key: (String, u64),
) -> Stream {
    let (peers, reports) = (peers.clone(), reports.clone());
    Stream::open(
        channel,
        key,
        move || peers.delivered(to),
        move || {
            // Whatever was queued on it is lost: raft resends.
            let _ = reports.send(Report::Unreachable(to));
        },
    )
}

impl Stream {
    /// Opens a `SendStream` call on `channel`: `on_ack` runs for every ack the peer sends,
    /// `on_end` once when the call ends (refused, broken, or closed by the peer), unless the
    /// stream was dropped first.
    pub(crate) fn open(
        channel: tonic::transport::Channel,
        key: (String, u64),
        on_ack: impl Fn() + Send + 'static,
        on_end: impl FnOnce() + Send + 'static,
    ) -> Stream {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let call = tokio::spawn(async move {
            let mut client = RaftTransportClient::new(channel)
                .max_encoding_message_size(mini_proto::MAX_MESSAGE)
                .max_decoding_message_size(mini_proto::MAX_MESSAGE);
            let requests = tokio_stream::wrappers::ReceiverStream::new(rx);
            let ended = match client.send_stream(requests).await {
                Ok(acks) => {
                    let mut acks = acks.into_inner();
                    loop {
                        match acks.message().await {
                            Ok(Some(_)) => on_ack(),
                            Ok(None) => break None,
                            Err(status) => break Some(status),
                        }
                    }
                }
                Err(status) => Some(status),
            };
            if let Some(status) = ended {
                tracing::debug!(%status, "raft stream ended");
            }
            on_end();
        });
        Stream { key, tx, call }
    }

    /// Queues `batch`, waiting at most [`SEND_TIMEOUT`] for room; `false` if the call ended or
    /// stayed full.
    pub(crate) async fn push(&self, batch: RaftMessages) -> bool {
        matches!(
            tokio::time::timeout(SEND_TIMEOUT, self.tx.send(batch)).await,
            Ok(Ok(()))
        )
    }

    /// Whether the call ended.
    pub(crate) fn ended(&self) -> bool {
        self.call.is_finished()
    }
}

/// What became of a batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Every call succeeded.
    pub(crate) delivered: bool,
    /// Per snapshot in the batch, in order, whether its call succeeded.
    pub(crate) snapshots: Vec<bool>,
}

/// Sends encoded messages (`(is a snapshot, bytes)`) in order over `channel`: consecutive small
/// ones together in `Send` calls of at most [`SEND_LIMIT`] bytes, each larger one alone in
/// chunks (`SendChunked`). Stops at the first failed call: what follows would arrive out of
/// order (raft resends).
pub(crate) async fn deliver(
    channel: tonic::transport::Channel,
    from: &ChunkHeader,
    messages: Vec<(bool, Vec<u8>)>,
) -> Delivery {
    let mut client = RaftTransportClient::new(channel)
        .max_encoding_message_size(mini_proto::MAX_MESSAGE)
        .max_decoding_message_size(mini_proto::MAX_MESSAGE);
    let mut out = Delivery {
        delivered: true,
        snapshots: Vec::new(),
    };
    for group in groups(messages) {
        let snapshots = group.snapshots();
        let ok = out.delivered
            && match group {
                Group::Batch(messages) => {
                    let bytes = messages.into_iter().map(|(_, bytes)| bytes).collect();
                    send_batch(&mut client, from, bytes, snapshots > 0).await
                }
                Group::Chunked(_, bytes) => send_chunked(&mut client, from, bytes).await,
            };
        out.delivered &= ok;
        out.snapshots.extend(std::iter::repeat_n(ok, snapshots));
    }
    out
}

async fn send_batch(
    client: &mut RaftTransportClient<tonic::transport::Channel>,
    from: &ChunkHeader,
    messages: Vec<Vec<u8>>,
    has_snapshot: bool,
) -> bool {
    let request = RaftMessages {
        cluster_id: from.cluster_id.clone(),
        from_id: from.from_id,
        from_addr: from.from_addr.clone(),
        messages,
    };
    let timeout = if has_snapshot {
        SEND_TIMEOUT * 20
    } else {
        SEND_TIMEOUT
    };
    outcome(tokio::time::timeout(timeout, client.send(request)).await)
}

async fn send_chunked(
    client: &mut RaftTransportClient<tonic::transport::Channel>,
    from: &ChunkHeader,
    message: Vec<u8>,
) -> bool {
    // A 256 MiB snapshot at 100 MB/s takes under 3 s: 10 s, plus one per 4 chunks.
    let timeout = SEND_TIMEOUT * 20 + SEND_TIMEOUT * 2 * (message.len() / (CHUNK * 4)) as u32;
    let chunks = chunks::split(from.clone(), message, CHUNK);
    outcome(tokio::time::timeout(timeout, client.send_chunked(chunks)).await)
}

fn outcome(
    r: Result<Result<tonic::Response<RaftAck>, tonic::Status>, tokio::time::error::Elapsed>,
) -> bool {
    match r {
        Ok(Ok(_)) => true,
        Ok(Err(status)) => {
            tracing::debug!(%status, "raft messages refused");
            false
        }
        Err(_) => {
            tracing::debug!("raft messages timed out");
            false
        }
    }
}
