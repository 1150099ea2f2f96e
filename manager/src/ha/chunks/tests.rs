//! Chunking: split and reassembly, their refusals, and a real gRPC round trip of a message
//! larger than the servers' limit.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use mini_proto::v1::raft_transport_client::RaftTransportClient;
use mini_proto::v1::raft_transport_server::{RaftTransport, RaftTransportServer};
use mini_proto::v1::{
    ForwardedOutcome, ForwardedProposal, RaftAck, RaftChunk, RaftMessages, ReadIndexRequest,
    ReadIndexResponse,
};
use tonic::{Request, Response, Status, Streaming};

use super::*;
use crate::ha::transport::{Delivery, deliver};

fn header() -> ChunkHeader {
    ChunkHeader {
        cluster_id: "c1".into(),
        from_id: 2,
        from_addr: "10.0.0.2:2377".into(),
    }
}

fn ok(chunks: Vec<RaftChunk>) -> impl Stream<Item = Result<RaftChunk, Status>> + Unpin {
    futures::stream::iter(chunks.into_iter().map(Ok))
}

/// A gate of the test's own: tests run in parallel, [`RECEIVING`] is one per process.
fn gate() -> tokio::sync::Semaphore {
    tokio::sync::Semaphore::new(1)
}

#[tokio::test]
async fn one_chunked_message_at_a_time() {
    let gate = gate();
    let _busy = gate.try_acquire().unwrap();
    let chunks: Vec<RaftChunk> = split(header(), vec![1; 20], 8).collect().await;
    let err = reassemble(ok(chunks), 100, &gate, admit_all)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
}

fn admit_all(_: &ChunkHeader) -> Result<(), Status> {
    Ok(())
}

#[tokio::test]
async fn split_and_reassemble_round_trip() {
    let message: Vec<u8> = (0..50u8).collect();
    let chunks: Vec<RaftChunk> = split(header(), message.clone(), 7).collect().await;
    assert_eq!(chunks.len(), 8);
    assert!(chunks.iter().all(|c| c.data.len() <= 7));
    assert_eq!(chunks[0].total_len, 50);
    assert!(
        chunks[1..]
            .iter()
            .all(|c| c.cluster_id.is_empty() && c.total_len == 0)
    );
    let (from, data) = reassemble(ok(chunks), 100, &gate(), admit_all)
        .await
        .unwrap();
    assert_eq!((from, data), (header(), message));
}

#[tokio::test]
async fn announced_lengths_over_the_limit_are_refused_at_the_first_chunk() {
    let first = RaftChunk {
        total_len: 300 << 20,
        data: vec![0; 10],
        ..Default::default()
    };
    // Anything after the first chunk would fail the test if it were read.
    let stream = futures::stream::iter(vec![
        Ok(first),
        Err(Status::internal("read past the refusal")),
    ]);
    let err = reassemble(stream, MAX_CHUNKED, &gate(), admit_all)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("the limit is"), "{}", err.message());
}

#[tokio::test]
async fn chunks_must_add_up_to_the_announced_length() {
    let mut chunks: Vec<RaftChunk> = split(header(), vec![1; 20], 8).collect().await;
    chunks.push(RaftChunk {
        data: vec![1],
        ..Default::default()
    });
    // 20 announced; the extra chunk is only read if the first ones fall short.
    chunks[0].total_len = 19;
    let err = reassemble(ok(chunks.clone()), 100, &gate(), admit_all)
        .await
        .unwrap_err();
    assert!(
        err.message().contains("more than the announced"),
        "{}",
        err.message()
    );
    chunks[0].total_len = 40;
    let err = reassemble(ok(chunks), 100, &gate(), admit_all)
        .await
        .unwrap_err();
    assert!(
        err.message().contains("ended after 21 of 40"),
        "{}",
        err.message()
    );
    let err = reassemble(ok(vec![]), 100, &gate(), admit_all)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn a_refused_header_ends_the_stream() {
    let chunks: Vec<RaftChunk> = split(header(), vec![1; 20], 8).collect().await;
    let err = reassemble(ok(chunks), 100, &gate(), |h| {
        assert_eq!(h.from_id, 2);
        Err(Status::permission_denied("another cluster"))
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
}

/// What the test server received, in order: `Send` batches and chunked messages.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Batch(Vec<Vec<u8>>),
    Chunked(Vec<u8>),
}

#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Vec<Got>>>);

#[tonic::async_trait]
impl RaftTransport for Recording {
    async fn send(&self, request: Request<RaftMessages>) -> Result<Response<RaftAck>, Status> {
        let batch = request.into_inner();
        self.0.lock().unwrap().push(Got::Batch(batch.messages));
        Ok(Response::new(RaftAck {}))
    }

    async fn send_chunked(
        &self,
        request: Request<Streaming<RaftChunk>>,
    ) -> Result<Response<RaftAck>, Status> {
        let (_, data) = reassemble(request.into_inner(), MAX_CHUNKED, &gate(), admit_all).await?;
        self.0.lock().unwrap().push(Got::Chunked(data));
        Ok(Response::new(RaftAck {}))
    }

    async fn propose(
        &self,
        _: Request<ForwardedProposal>,
    ) -> Result<Response<ForwardedOutcome>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn read_index(
        &self,
        _: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
}

#[tokio::test]
async fn a_snapshot_larger_than_the_message_limit_travels_in_chunks() {
    let server = Recording::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = server.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(
                RaftTransportServer::new(serving)
                    .max_decoding_message_size(mini_proto::MAX_MESSAGE),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // 40 MiB: more than the limit, so more than one chunk.
    let snapshot: Vec<u8> = (0..(40usize << 20)).map(|i| (i % 251) as u8).collect();
    assert!(snapshot.len() > mini_proto::MAX_MESSAGE && snapshot.len() > CHUNK);
    // Whole, the server refuses it.
    let whole = RaftTransportClient::new(channel.clone())
        .max_encoding_message_size(usize::MAX)
        .send(RaftMessages {
            messages: vec![snapshot.clone()],
            ..Default::default()
        })
        .await;
    assert!(whole.is_err(), "a 40 MiB message was accepted whole");
    assert!(server.0.lock().unwrap().is_empty());

    let small = |n: u8| vec![n; 100];
    let sent = deliver(
        channel,
        &header(),
        vec![
            (false, small(1)),
            (false, small(2)),
            (true, snapshot.clone()),
            (false, small(3)),
        ],
    )
    .await;
    assert_eq!(
        sent,
        Delivery {
            delivered: true,
            snapshots: vec![true],
        }
    );
    let got = server.0.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![
            Got::Batch(vec![small(1), small(2)]),
            Got::Chunked(snapshot),
            Got::Batch(vec![small(3)]),
        ]
    );
}
