//! The network boundary of the Raft node: where outgoing messages go.
//!
//! The node never opens a socket. Whoever runs several managers (issue #7) implements
//! [`Transport`] over gRPC and feeds received messages back with
//! [`RaftHandle::step`](super::RaftHandle::step). A one-voter cluster needs no network at all.

use raft::eraftpb::Message;

/// Sends Raft messages to other nodes. Delivery is best effort: raft retries what is lost.
pub trait Transport: Send + 'static {
    /// Hand `msgs` (each addressed by its `to` field) to the network. Must not block for long:
    /// it runs on the Raft loop. Queue and send asynchronously.
    fn send(&mut self, msgs: Vec<Message>);
}

/// The transport of a one-voter cluster: there is nobody to talk to, messages are dropped.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTransport;

impl Transport for NoTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        if !msgs.is_empty() {
            tracing::trace!(count = msgs.len(), "raft: no transport, dropping messages");
        }
    }
}
