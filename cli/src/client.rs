//! Connecting to a daemon's control API over its unix socket.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use hyper_util::rt::TokioIo;
use mini_proto::v1::control_client::ControlClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// The default daemon address.
pub const DEFAULT_HOST: &str = "unix:///run/mini/mini.sock";

/// The socket path of a `unix://PATH` host address.
pub fn socket_path(host: &str) -> Result<PathBuf> {
    match host.strip_prefix("unix://") {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => bail!("invalid --host {host:?}: expected unix:///path/to/mini.sock"),
    }
}

/// A control API client connected to the daemon at `host`.
pub async fn connect(host: &str) -> Result<ControlClient<Channel>> {
    Ok(ControlClient::new(channel(host).await?).max_decoding_message_size(64 << 20))
}

/// A channel to the daemon at `host` (any of the services on its socket).
pub async fn channel(host: &str) -> Result<Channel> {
    let path = socket_path(host)?;
    if !path.exists() {
        bail!(
            "cannot reach the mini daemon: {} does not exist (is `mini daemon` running? set --host or MINI_HOST)",
            path.display()
        );
    }
    let connect_path = path.clone();
    // The URI is required by the API but unused: the connector dials the socket.
    let channel = Endpoint::try_from("http://mini.sock")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = connect_path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .with_context(|| format!("cannot reach the mini daemon at {}", path.display()))?;
    Ok(channel)
}
