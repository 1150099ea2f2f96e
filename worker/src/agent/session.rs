//! The session loop: connect to a manager, receive assignments, heartbeat,
//! send status reports; reconnect (to the next manager) when anything breaks.

use std::sync::Arc;
use std::time::Duration;

use mini_netdriver::Kernel;
use mini_proto::tls::{Peer, Trust, error_chain};
use mini_proto::v1::{
    HeartbeatRequest, SessionMessage, SessionRequest, UpdateTaskStatusRequest,
    dispatcher_client::DispatcherClient,
};
use tokio::sync::watch;
use tonic::Streaming;
use tonic::transport::Channel;

use super::executor::Executor;
use super::worker::Shared;

/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often a session checks whether the node's certificate changed.
const RENEWAL_POLL: Duration = Duration::from_millis(250);

/// A mutual-TLS channel to the manager at `addr`, with this node's certificate.
pub(crate) async fn dial(trust: &Trust, addr: &str) -> Result<Channel, String> {
    let endpoint =
        mini_proto::node_endpoint(addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    trust
        .connect(endpoint, Peer::Manager)
        .await
        .map_err(|e| format!("cannot reach manager {addr}: {}", error_chain(&e)))
}

/// Runs sessions until `stop` turns true.
pub async fn run<K: Kernel + 'static>(
    node_id: String,
    mut managers: Vec<String>,
    shared: Arc<Shared<K>>,
    executor: Arc<Executor<K>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut next = 0usize;
    loop {
        if *stop.borrow() {
            return;
        }
        let addr = managers[next % managers.len().max(1)].clone();
        next += 1;
        tokio::select! {
            result = session(&node_id, &addr, &shared, &executor, &mut managers) => {
                match result {
                    // Ended for a new certificate: back to the same manager at once.
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        next -= 1;
                        continue;
                    }
                    Err(err) => {
                        tracing::warn!(manager = %addr, %err, "session ended");
                        // A manager that is not the leader names the leader: try it next.
                        // (A manager that was `swarm init`ed knows only itself after a
                        // restart; without this its node never gets a session again.)
                        if let Some(leader) = leader_hint(&err) {
                            next = match managers.iter().position(|m| *m == leader) {
                                Some(i) => i,
                                None => {
                                    managers.push(leader);
                                    managers.len() - 1
                                }
                            };
                        }
                    }
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Aborts a spawned task when dropped (the session ends whichever way).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The heartbeat period a manager handed out, within sane bounds (100 ms to 1 min).
fn next_period(ms: u64) -> Duration {
    Duration::from_millis(ms.clamp(100, 60_000))
}

/// The leader's address in a manager's "this manager is not the leader; the leader is at
/// ADDR" refusal, if it names one.
fn leader_hint(err: &str) -> Option<String> {
    let (_, rest) = err.split_once("the leader is at ")?;
    let addr = rest.split_whitespace().next()?;
    addr.parse::<std::net::SocketAddr>()
        .ok()
        .map(|_| addr.to_string())
}

/// One session with the manager at `addr`, until it breaks.
async fn session<K: Kernel + 'static>(
    node_id: &str,
    addr: &str,
    shared: &Arc<Shared<K>>,
    executor: &Arc<Executor<K>>,
    managers: &mut Vec<String>,
) -> Result<(), String> {
    // The certificate this connection presents; a renewed one needs a new connection.
    let generation = shared.config.trust.generation();
    let (client, stream, first) = open(node_id, addr, shared).await?;
    let session_id = first.session_id.clone();
    let period = next_period(first.heartbeat_period_ms);
    tracing::info!(manager = %addr, session = %session_id, "session open");

    // Heartbeats and status reports run beside the stream; whichever fails
    // first ends the session. The heartbeats run as a task of their own: applying a large
    // assignment (or a slow network change) in this task must not delay them past the
    // manager's deadline.
    let mut heartbeat = AbortOnDrop(tokio::spawn(heartbeats(
        client.clone(),
        node_id.to_string(),
        session_id.clone(),
        period,
    )));
    let reports = reports(client, node_id.to_string(), session_id, Arc::clone(shared));
    let assignments = assignments(stream, first, shared, executor, managers);
    let reason = tokio::select! {
        r = &mut heartbeat.0 => r.unwrap_or_else(|e| format!("heartbeat task failed: {e}")),
        r = reports => r,
        r = assignments => r,
        () = renewed(shared, generation) => {
            tracing::info!(manager = %addr, "node certificate changed: reopening the session with it");
            return Ok(());
        }
    };
    Err(reason)
}

/// Opens the session stream at `addr`: the client, the stream and its first message.
async fn open<K: Kernel + 'static>(
    node_id: &str,
    addr: &str,
    shared: &Arc<Shared<K>>,
) -> Result<
    (
        DispatcherClient<Channel>,
        Streaming<SessionMessage>,
        SessionMessage,
    ),
    String,
> {
    let channel = dial(&shared.config.trust, addr).await?;
    let mut client = DispatcherClient::new(channel);
    let mut stream = client
        .session(SessionRequest {
            node_id: node_id.to_string(),
            resources: Some(super::capacity::node_capacity()),
            description: Some(super::capacity::node_description(
                &shared.config.engine_labels,
            )),
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let first = stream
        .message()
        .await
        .map_err(|s| s.message().to_string())?
        .ok_or("session closed at once")?;
    Ok((client, stream, first))
}

/// Sends heartbeats until one fails; returns why.
async fn heartbeats(
    mut client: DispatcherClient<Channel>,
    node_id: String,
    session_id: String,
    mut period: Duration,
) -> String {
    let mut first = true;
    loop {
        // The first one at once (the session's opening may have been slow on a loaded
        // machine), then each when the manager said.
        if !std::mem::take(&mut first) {
            tokio::time::sleep(period).await;
        }
        let request = HeartbeatRequest {
            node_id: node_id.clone(),
            session_id: session_id.clone(),
        };
        // The manager marks the node down after MISSED_HEARTBEATS (3) periods: waiting
        // longer would not help, giving up sooner would reconnect a slow but live
        // session (more load on a loaded manager).
        match tokio::time::timeout(period * 3, client.heartbeat(request)).await {
            // The manager says when the next one is due: its period grows with the
            // number of nodes, jittered (see the dispatcher's `scaled_period`).
            Ok(Ok(answer)) => period = next_period(answer.into_inner().period_ms),
            Ok(Err(status)) => return format!("heartbeat refused: {}", status.message()),
            Err(_) => return "heartbeat timed out".to_string(),
        }
    }
}

/// Sends the tasks' status reports as they come; returns why it stopped. A report that
/// could not be sent goes back to the queue for the next session.
async fn reports<K: Kernel + 'static>(
    mut client: DispatcherClient<Channel>,
    node_id: String,
    session_id: String,
    shared: Arc<Shared<K>>,
) -> String {
    loop {
        let updates = shared.reporter.take().await;
        let request = UpdateTaskStatusRequest {
            node_id: node_id.clone(),
            session_id: session_id.clone(),
            updates: updates.clone(),
        };
        if let Err(status) = client.update_task_status(request).await {
            shared.reporter.requeue(updates);
            return format!("status report failed: {}", status.message());
        }
    }
}

/// Takes in the session's messages, `first` and then each from `stream`; returns why the
/// stream ended.
async fn assignments<K: Kernel + 'static>(
    mut stream: Streaming<SessionMessage>,
    first: SessionMessage,
    shared: &Arc<Shared<K>>,
    executor: &Arc<Executor<K>>,
    managers: &mut Vec<String>,
) -> String {
    let mut message = first;
    loop {
        take_in(message, shared, executor, managers).await;
        message = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return "session stream ended".to_string(),
            Err(status) => return format!("session stream broke: {}", status.message()),
        };
    }
}

/// Acts on one session message: the managers, the cluster's trust (deny list, roles, root
/// CAs), gossip, and the assignments.
async fn take_in<K: Kernel + 'static>(
    m: SessionMessage,
    shared: &Arc<Shared<K>>,
    executor: &Arc<Executor<K>>,
    managers: &mut Vec<String>,
) {
    if !m.managers.is_empty() {
        *managers = m.managers.clone();
        *shared.managers.lock().unwrap_or_else(|e| e.into_inner()) = m.managers.clone();
    }
    take_trust(&m, shared);
    let keys = super::gossip_link::keys_from_session(m.gossip_keys.as_ref());
    let signed = super::gossip_link::set_certificates(shared, &m.gossip_certificates);
    super::gossip_link::ensure_started(shared, &m.gossip_peers, keys, signed).await;
    super::gossip_link::set_members(shared, &m.gossip_members).await;
    if let Some(a) = m.assignments {
        // Applied to the end even when the session ends meanwhile (a dropped apply
        // could leave a network change half made or an adopted task half declared).
        let executor = Arc::clone(executor);
        let _ = tokio::spawn(async move { executor.apply(a).await }).await;
    }
}

/// The trust a session message carries: the deny list, this node's role, the root CAs.
/// Asks for a new certificate when the role changed or another root signs now.
fn take_trust<K: Kernel + 'static>(m: &SessionMessage, shared: &Arc<Shared<K>>) {
    let trust = &shared.config.trust;
    // The deny list this node's listener (its node agent) enforces.
    trust.set_removed(m.removed_nodes.iter().cloned());
    // A role change (`node promote`/`demote`) takes effect with a new certificate.
    *shared.wanted_role.lock().unwrap_or_else(|e| e.into_inner()) = Some(m.role());
    // A root CA rotation: trust the roots the cluster trusts now, and renew at once a
    // certificate that the signing root did not issue.
    if let Err(err) = trust.set_roots(m.trusted_roots.clone()) {
        tracing::warn!(%err, "cannot update the trusted root CAs");
    }
    let held = trust.credentials();
    let held_role = trust.identity().map(|id| id.role);
    let other_root = !m.signing_ca.is_empty()
        && held
            .as_ref()
            .is_some_and(|c| !mini_proto::tls::pki::issued_by(&c.cert_der, &m.signing_ca));
    if held_role.is_some_and(|role| role != m.role()) || other_root {
        shared.renew_now.notify_one();
    }
}

/// Returns when this node's certificate changed since `generation`.
///
/// TLS authenticates a connection once, at its handshake: after a renewal (or a root CA
/// change) this one would keep presenting the old certificate until it expires and every
/// call is refused. The session is reopened on a new connection instead; the dispatcher keeps
/// the node Ready across the reconnection (`RECONNECT_GRACE`).
async fn renewed<K: Kernel + 'static>(shared: &Arc<Shared<K>>, generation: u64) {
    loop {
        tokio::time::sleep(RENEWAL_POLL).await;
        if shared.config.trust.generation() != generation {
            return;
        }
    }
}

#[cfg(test)]
mod leader_hint_tests {
    use super::leader_hint;

    #[test]
    fn a_refusal_names_the_leader() {
        assert_eq!(
            leader_hint("this manager is not the leader; the leader is at 192.168.56.12:2377"),
            Some("192.168.56.12:2377".to_string())
        );
        assert_eq!(
            leader_hint(
                "this manager is not the leader; the leader is at (unknown: election running)"
            ),
            None
        );
        assert_eq!(leader_hint("heartbeat timed out"), None);
    }
}
