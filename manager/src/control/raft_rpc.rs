//! The `RaftTransport` gRPC service a manager serves on its listener: Raft messages from the
//! other managers (a follower's writes among them, as `MsgPropose`), writes forwarded by
//! managers of earlier versions (`Propose`), and the commit index for followers' reads.
//!
//! Only managers of the same cluster reach these calls: the listener's authorization
//! (`mini_proto::tls::authz`) requires a manager certificate of this cluster's CA. Raft messages
//! are parsed with rust-protobuf 2, which has an open advisory on deeply nested hostile input:
//! that is why no one else may send them. The cluster id in the messages is checked too.

use mini_proto::v1::{
    ForwardedOutcome, ForwardedProposal, RaftAck, RaftChunk, RaftMessages, ReadIndexRequest,
    ReadIndexResponse, raft_transport_server::RaftTransport,
};
use protobuf::Message as _;
use tonic::{Request, Response, Status, Streaming};

use super::ControlApi;
use crate::ha::NOT_LEADER;
use crate::ha::chunks::{self, ChunkHeader};
use crate::manager::Manager;
use crate::raft::Role;

impl ControlApi {
    /// The manager, if the caller belongs to its cluster.
    async fn raft_peer(&self, cluster_id: &str) -> Result<std::sync::Arc<Manager>, Status> {
        let manager = self
            .inner
            .manager
            .read()
            .await
            .clone()
            .ok_or_else(|| Status::failed_precondition("this node is not a manager (yet)"))?;
        let ours = manager.peers().cluster_id();
        if !ours.is_empty() && !cluster_id.is_empty() && ours != cluster_id {
            // Neither id is named: the caller may not know ours, and must not learn it here.
            return Err(Status::permission_denied(
                "this manager belongs to another cluster",
            ));
        }
        Ok(manager)
    }
}

impl ControlApi {
    /// [`step_messages`](Self::step_messages) for one `Send` or `SendStream` batch.
    async fn step_batch(&self, batch: &RaftMessages) -> Result<(), Status> {
        self.step_messages(
            &batch.cluster_id,
            batch.from_id,
            &batch.from_addr,
            &batch.messages,
        )
        .await
    }

    /// Steps a batch of encoded raft messages from `from_id`: all of them, or (if one is bad)
    /// none.
    async fn step_messages(
        &self,
        cluster_id: &str,
        from_id: u64,
        from_addr: &str,
        messages: &[Vec<u8>],
    ) -> Result<(), Status> {
        if self.inner.manager.read().await.is_none() {
            // A worker the leader is adding to the Raft group (`node promote`).
            let to = messages
                .first()
                .and_then(|b| raft::eraftpb::Message::parse_from_bytes(b).ok())
                .map_or(0, |m| m.to);
            self.promoted(to, cluster_id).await?;
        }
        let manager = self.raft_peer(cluster_id).await?;
        let raft = manager.proposer().raft();
        // Every message is checked before any is stepped: a batch with one bad message changes
        // nothing.
        let own_id = raft.status().id;
        let msgs = messages
            .iter()
            .map(|bytes| {
                let msg = raft::eraftpb::Message::parse_from_bytes(bytes)
                    .map_err(|e| format!("not a raft message: {e}"))?;
                if msg.from != from_id {
                    return Err(format!(
                        "message from raft id {} in a batch from {from_id}",
                        msg.from
                    ));
                }
                crate::raft::guard::check_message(&msg, own_id)?;
                Ok(msg)
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|reason| {
                crate::raft::guard::note_refused_batch(from_id, &reason);
                Status::invalid_argument(format!("bad raft message: {reason}"))
            })?;
        manager.peers().insert(from_id, from_addr);
        for msg in msgs {
            raft.step(msg)
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
        }
        Ok(())
    }
}

/// Acks of one `SendStream` call, one per batch stepped.
type Acks = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<RaftAck, Status>> + Send>>;

/// Acks waiting for the sender to read them; more are dropped (they only tell it the peer is
/// alive, and the next one does that too).
const ACKS_QUEUED: usize = 16;

/// Least time between two acks on one stream. An ack only tells the sender that the peer is
/// alive ([`crate::ha::REACHABLE_WITHIN`], 1 s): acking every batch doubled the frames on the
/// wire, and their encryption and wake-ups on both managers, for every write (an append and its
/// answer are a batch each way). The first batch is acked at once, then the first batch after
/// each interval; Raft's heartbeats keep batches coming on an idle stream.
const ACK_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

#[tonic::async_trait]
impl RaftTransport for ControlApi {
    type SendStreamStream = Acks;

    async fn send_stream(
        &self,
        request: Request<Streaming<RaftMessages>>,
    ) -> Result<Response<Acks>, Status> {
        let mut incoming = request.into_inner();
        let api = self.clone();
        let (acks, rx) = tokio::sync::mpsc::channel(ACKS_QUEUED);
        tokio::spawn(async move {
            let mut acked: Option<tokio::time::Instant> = None;
            // Ends with the stream, at its first error, or when the sender stops reading.
            while let Ok(Some(batch)) = incoming.message().await {
                match api.step_batch(&batch).await {
                    Ok(()) if acked.is_some_and(|at| at.elapsed() < ACK_EVERY) => {}
                    Ok(()) => match acks.try_send(Ok(RaftAck {})) {
                        Ok(()) => acked = Some(tokio::time::Instant::now()),
                        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {}
                        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => break,
                    },
                    Err(status) => {
                        let _ = acks.send(Err(status)).await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn send(&self, request: Request<RaftMessages>) -> Result<Response<RaftAck>, Status> {
        self.step_batch(&request.into_inner()).await?;
        Ok(Response::new(RaftAck {}))
    }

    async fn send_chunked(
        &self,
        request: Request<Streaming<RaftChunk>>,
    ) -> Result<Response<RaftAck>, Status> {
        // A manager of another cluster is refused from the first chunk.
        let ours = match self.inner.manager.read().await.as_ref() {
            Some(m) => m.peers().cluster_id(),
            None => String::new(),
        };
        let admit = |h: &ChunkHeader| {
            if !ours.is_empty() && !h.cluster_id.is_empty() && ours != h.cluster_id {
                Err(Status::permission_denied(
                    "this manager belongs to another cluster",
                ))
            } else {
                Ok(())
            }
        };
        let (from, message) = chunks::reassemble(
            request.into_inner(),
            chunks::MAX_CHUNKED,
            &chunks::RECEIVING,
            admit,
        )
        .await?;
        self.step_messages(&from.cluster_id, from.from_id, &from.from_addr, &[message])
            .await?;
        Ok(Response::new(RaftAck {}))
    }

    async fn propose(
        &self,
        request: Request<ForwardedProposal>,
    ) -> Result<Response<ForwardedOutcome>, Status> {
        let forwarded = request.into_inner();
        let manager = self.raft_peer(&forwarded.cluster_id).await?;
        if manager.raft_status().role != Role::Leader {
            return Err(Status::failed_precondition(format!(
                "{NOT_LEADER} (leader: {})",
                manager.raft_status().leader_id
            )));
        }
        match manager.proposer().propose_here(forwarded.batch).await {
            // A refused entry is in the log too; the follower finds the same refusal.
            Ok((index, refused)) => Ok(Response::new(ForwardedOutcome {
                index,
                rejected: refused.map(|e| e.to_string()).unwrap_or_default(),
            })),
            Err(failed) => Err(Status::failed_precondition(failed.reason)),
        }
    }

    async fn read_index(
        &self,
        request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        let manager = self.raft_peer(&request.into_inner().cluster_id).await?;
        let status = manager.raft_status();
        if status.role != Role::Leader {
            return Err(Status::failed_precondition(format!(
                "{NOT_LEADER} (leader: {})",
                status.leader_id
            )));
        }
        // A leader that has not committed an entry of its term yet may not know its
        // predecessors' commit index: the follower asks again.
        let commit = status.leader_commit().ok_or_else(|| {
            Status::unavailable("the leader has not committed an entry of its term yet")
        })?;
        // The follower waits to apply this commit index: have it sent now, not with the next
        // heartbeat.
        manager.proposer().raft().broadcast_commit();
        Ok(Response::new(
            crate::ha::GroupView::of_leader(&status).to_response(commit),
        ))
    }
}
