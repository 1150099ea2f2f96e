//! `mini daemon --metrics-addr`: the node's Prometheus endpoint.
//!
//! Plain HTTP, `GET /metrics` in the Prometheus text format (0.0.4), as dockerd's
//! `--metrics-addr`. It carries no secrets (counts, latencies, states; no names of secrets, no
//! keys) but is not authenticated: bind it to loopback or an address on a trusted network.
//! Everything else answers 404; anything but GET/HEAD 405.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::encoding::prometheus_text::{CONTENT_TYPE, encode};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Every metric family of this node, under the `mini_` prefix.
pub struct NodeMetrics {
    /// The registry scrapes encode.
    pub registry: Registry,
    /// Raft, store, scheduler, dispatcher (reported while the node is a manager).
    pub manager: Arc<mini_manager::metrics::Metrics>,
    /// Gossip, DNS, tasks on this node, network driver.
    pub worker: Arc<mini_worker::metrics::Metrics>,
}

impl NodeMetrics {
    /// A registry holding the manager's and the worker's families.
    pub fn new() -> NodeMetrics {
        let mut registry = Registry::with_prefix("mini");
        let manager = Arc::new(mini_manager::metrics::Metrics::default());
        let worker = Arc::new(mini_worker::metrics::Metrics::default());
        manager.register(&mut registry);
        worker.register(&mut registry);
        NodeMetrics {
            registry,
            manager,
            worker,
        }
    }

    /// The scrape body.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Binds `addr` (before the daemon goes on, so a taken port is a start-up error).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --metrics-addr {addr}"))
}

/// Serves scrapes on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, metrics: Arc<NodeMetrics>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(%err, "metrics endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &metrics)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            // A scraper that stalls cannot hold a connection for ever.
            match tokio::time::timeout(std::time::Duration::from_secs(30), conn).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!(%peer, %err, "metrics endpoint: connection failed"),
                Err(_) => tracing::debug!(%peer, "metrics endpoint: connection timed out"),
            }
        });
    }
}

fn answer<B>(req: &Request<B>, metrics: &NodeMetrics) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    let text = "text/plain; charset=utf-8";
    if req.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND, text, "404 page not found\n".into());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            text,
            "405 method not allowed\n".into(),
        );
    }
    match metrics.encode() {
        Ok(body) => reply(StatusCode::OK, CONTENT_TYPE, body),
        Err(_) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            text,
            "cannot encode the metrics\n".into(),
        ),
    }
}
