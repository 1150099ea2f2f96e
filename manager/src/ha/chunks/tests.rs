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
    /// A batch that came on a `SendStream` call.
    Streamed(Vec<Vec<u8>>),
    Chunked(Vec<u8>),
}

#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Vec<Got>>>);

#[tonic::async_trait]
impl RaftTransport for Recording {
    type SendStreamStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<RaftAck, Status>> + Send>>;

    async fn send_stream(
        &self,
        request: Request<Streaming<RaftMessages>>,
    ) -> Result<Response<Self::SendStreamStream>, Status> {
        let mut incoming = request.into_inner();
        let got = Arc::clone(&self.0);
        let (acks, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok(Some(batch)) = incoming.message().await {
                // As the manager refuses a bad batch: the stream ends with the error.
                if batch.messages.first().is_some_and(|m| m == REFUSED) {
                    let _ = acks
                        .send(Err(Status::invalid_argument("bad raft message")))
                        .await;
                    break;
                }
                got.lock().unwrap().push(Got::Streamed(batch.messages));
                let _ = acks.try_send(Ok(RaftAck {}));
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

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

/// A message the test server refuses, ending the stream it came on.
const REFUSED: &[u8] = b"refused";

/// Serves `server` on loopback; a channel to it.
async fn serve(server: Recording) -> tonic::transport::Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(
                RaftTransportServer::new(server).max_decoding_message_size(mini_proto::MAX_MESSAGE),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Waits until `check` holds; panics with what `seen` says after 10 s.
async fn wait_until(what: &str, check: impl Fn() -> bool, seen: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} not seen in 10 s; seen: {}",
            seen()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn batches_on_a_stream_arrive_in_order_and_a_refused_one_ends_it() {
    use crate::ha::transport::Stream;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let server = Recording::default();
    let channel = serve(server.clone()).await;
    let acks = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let open = || {
        let (acks, ended) = (Arc::clone(&acks), Arc::clone(&ended));
        Stream::open(
            channel.clone(),
            ("peer".into(), 1),
            move || {
                acks.fetch_add(1, Ordering::SeqCst);
            },
            move || {
                ended.fetch_add(1, Ordering::SeqCst);
            },
        )
    };
    let batch = |messages: Vec<Vec<u8>>| RaftMessages {
        messages,
        ..Default::default()
    };
    let stream = open();
    // Pushed back to back, without waiting for any answer.
    for n in 0..100u8 {
        assert!(stream.push(batch(vec![vec![n; 10], vec![n; 20]])).await);
    }
    let got = || server.0.lock().unwrap().clone();
    wait_until(
        "100 batches stepped and acked",
        || got().len() == 100 && acks.load(Ordering::SeqCst) == 100,
        || {
            format!(
                "{} batches, {} acks",
                got().len(),
                acks.load(Ordering::SeqCst)
            )
        },
    )
    .await;
    let expected: Vec<Got> = (0..100u8)
        .map(|n| Got::Streamed(vec![vec![n; 10], vec![n; 20]]))
        .collect();
    assert_eq!(got(), expected, "in order, each batch whole");
    assert_eq!(ended.load(Ordering::SeqCst), 0);
    assert!(!stream.ended());

    // The peer refuses a batch: the call ends, once, and says so; what follows is not stepped.
    assert!(stream.push(batch(vec![REFUSED.to_vec()])).await);
    wait_until(
        "the refused stream's end",
        || stream.ended(),
        || format!("ended {}", ended.load(Ordering::SeqCst)),
    )
    .await;
    assert_eq!(ended.load(Ordering::SeqCst), 1);
    assert!(
        !stream.push(batch(vec![vec![7]])).await,
        "a batch was queued on an ended stream"
    );
    // A new stream on the same channel carries on.
    let again = open();
    assert!(again.push(batch(vec![vec![200]])).await);
    wait_until(
        "the new stream's batch",
        || got().len() == 101,
        || format!("{:?}", got().last()),
    )
    .await;
    assert_eq!(got()[100], Got::Streamed(vec![vec![200]]));
    // A stream dropped by its sender does not report an end.
    drop(again);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(ended.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_snapshot_larger_than_the_message_limit_travels_in_chunks() {
    let server = Recording::default();
    let channel = serve(server.clone()).await;

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
