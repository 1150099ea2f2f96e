//! The Raft transport over gRPC: one sender task per peer behind a bounded queue.
//!
//! The Raft loop hands messages to [`GrpcTransport::send`], which never blocks: each message goes
//! into its peer's queue ([`QUEUE`] deep). The peer's task drains the queue in batches and sends
//! each batch as one `RaftTransport.Send` call, so the messages to one peer stay in order. A batch
//! that cannot be delivered is dropped and raft is told ([`Report::Unreachable`]): it then probes
//! the peer instead of streaming to it. Snapshots are reported as delivered or failed
//! ([`Report::Snapshot`]) so raft knows when to resume sending entries.

use std::collections::HashMap;
use std::time::Duration;

use mini_proto::v1::RaftMessages;
use mini_proto::v1::raft_transport_client::RaftTransportClient;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use super::Peers;
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

/// Sends everything queued for peer `to`, in order, until the transport is dropped.
async fn sender(
    peers: Peers,
    own_id: u64,
    to: u64,
    mut rx: mpsc::Receiver<Message>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let snapshots = batch
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
            .count();
        let messages: Vec<Vec<u8>> = batch
            .drain(..)
            .filter_map(|m| m.write_to_bytes().ok())
            .collect();
        let delivered = match peers.channel_to(to) {
            Some(channel) => {
                let request = RaftMessages {
                    cluster_id: peers.cluster_id(),
                    from_id: own_id,
                    from_addr: peers.own_addr(),
                    messages,
                };
                let timeout = if snapshots > 0 {
                    SEND_TIMEOUT * 20
                } else {
                    SEND_TIMEOUT
                };
                let mut client =
                    RaftTransportClient::new(channel).max_encoding_message_size(256 << 20);
                let call = client.send(request);
                match tokio::time::timeout(timeout, call).await {
                    Ok(Ok(_)) => true,
                    Ok(Err(status)) => {
                        tracing::debug!(peer = to, %status, "raft messages refused");
                        false
                    }
                    Err(_) => {
                        tracing::debug!(peer = to, "raft messages timed out");
                        false
                    }
                }
            }
            None => {
                tracing::debug!(peer = to, "no address for raft peer yet");
                false
            }
        };
        if delivered {
            peers.delivered(to);
        } else {
            let _ = reports.send(Report::Unreachable(to));
        }
        for _ in 0..snapshots {
            let _ = reports.send(Report::Snapshot(to, delivered));
        }
    }
}
