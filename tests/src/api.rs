//! The control API over a daemon's unix socket, from the test process (no CLI process): for
//! tests and benchmarks that make many calls at once.

use hyper_util::rt::TokioIo;
use mini_proto::v1::control_client::ControlClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// A control client on its own connection to the daemon at `socket` (`unix://…` or a path).
/// Panics when the daemon does not answer.
pub async fn connect(socket: &str) -> ControlClient<Channel> {
    let path = socket.strip_prefix("unix://").unwrap_or(socket).to_string();
    let channel = Endpoint::try_from("http://mini.sock")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .expect("cannot connect to the daemon's socket");
    ControlClient::new(channel).max_decoding_message_size(mini_proto::MAX_MESSAGE)
}
