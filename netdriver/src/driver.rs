//! [`NetDriver`]: the declarative entry point (`apply`, `observe`, namespace paths).

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio::sync::Mutex;

use crate::error::Error;
use crate::kernel::Kernel;
use crate::model::{DesiredState, DriverConfig};
use crate::names;
use crate::observed::{NsState, Observed, Touched};
use crate::op::Op;
use crate::plan::plan_with;
use crate::service::LoadBalancing;

/// Converges a node's kernel networking to a [`DesiredState`].
///
/// The first `apply` reads everything the driver owns from the kernel (start-up reconcile: what
/// is not desired is removed, what is missing is created). Later applies plan against the state
/// left by the previous one, so a peer-only change costs exactly its neighbour/FDB writes and no
/// reads; a structural change (namespaces, links) is followed by a read of only the namespaces
/// it touched (see [`Touched`]); after a failure the next apply reads the whole kernel again.
/// [`NetDriver::resync`] forces a fresh read (e.g. periodically).
///
/// All methods take `&self`; applies are serialised internally.
pub struct NetDriver<K> {
    config: DriverConfig,
    kernel: K,
    state: Mutex<State>,
    /// Operations, failures and latencies (`mini_netdriver_*`).
    metrics: crate::metrics::Metrics,
}

#[derive(Default)]
struct State {
    /// What the kernel holds after the last apply, when it is known without reading it again.
    observed: Option<Observed>,
    /// Overlay namespace name → network id, from the last desired state.
    network_ids: BTreeMap<String, String>,
}

/// What one [`NetDriver::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// The operations executed, in order (empty when the kernel already matched).
    pub ops: Vec<Op>,
    /// Whether the kernel was read before planning.
    pub observed_kernel: bool,
    /// What was read back after the operations (the parts structural operations changed).
    pub reread: Touched,
}

/// The peer entries programmed in one overlay namespace (for `mini network check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedNetwork {
    /// Namespace file name (`1-…`).
    pub namespace: String,
    /// The network id, when the last desired state named this namespace.
    pub network_id: Option<String>,
    /// Neighbour and FDB entries of `vxlan0`, as read from the kernel; see [`NsState::peers`].
    pub state: NsState,
}

impl<K: Kernel> NetDriver<K> {
    /// A driver using `kernel`. Touches nothing until the first call.
    pub fn new(config: DriverConfig, kernel: K) -> Self {
        NetDriver {
            config,
            kernel,
            state: Mutex::new(State::default()),
            metrics: crate::metrics::Metrics::default(),
        }
    }

    /// Records operations, failures and latencies into `metrics` (the daemon's registered set).
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &DriverConfig {
        &self.config
    }

    /// The kernel implementation (e.g. to read its [`Kernel::counters`]).
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// Path of a task's sandbox namespace file (`RUN/netns/<task id, 12 chars>`), which the task
    /// runtime enters. It exists once an apply containing the sandbox succeeded.
    pub fn sandbox_netns_path(&self, task_id: &str) -> PathBuf {
        self.config.netns_dir().join(names::sandbox_ns(task_id))
    }

    /// Path of an overlay network's namespace file (`RUN/netns/1-<network id, 10 chars>`).
    pub fn overlay_netns_path(&self, network_id: &str) -> PathBuf {
        self.config.netns_dir().join(names::overlay_ns(network_id))
    }

    /// Converges the kernel to `desired` with no load balancing (no service VIPs, no ingress):
    /// [`NetDriver::apply_with`] and an empty [`LoadBalancing`].
    pub async fn apply(&self, desired: &DesiredState) -> Result<ApplyReport, Error> {
        self.apply_with(desired, &LoadBalancing::default()).await
    }

    /// Path of the ingress sandbox's namespace file (`RUN/netns/ingress_sbox`).
    pub fn ingress_netns_path(&self) -> PathBuf {
        self.config.netns_dir().join(crate::plan::INGRESS_SBOX)
    }

    /// Converges the kernel to `desired` and `lb`, executing only the differences.
    ///
    /// A backend change costs one nf_tables netlink transaction per local sandbox on that
    /// network (and no kernel read); see [`crate::lb`].
    ///
    /// On error, the failed operation has been rolled back, earlier ones stay; the next apply
    /// re-reads the kernel and continues from there.
    pub async fn apply_with(
        &self,
        desired: &DesiredState,
        lb: &LoadBalancing,
    ) -> Result<ApplyReport, Error> {
        let mut st = self.state.lock().await;
        let observed_kernel = st.observed.is_none();
        let mut observed = match st.observed.take() {
            Some(o) => o,
            None => self.kernel.observe().await?,
        };
        let ops = match plan_with(&self.config, desired, lb, &observed) {
            Ok(ops) => ops,
            Err(e) => {
                st.observed = Some(observed);
                return Err(e);
            }
        };
        st.network_ids = desired
            .networks
            .iter()
            .map(|n| (names::overlay_ns(&n.id), n.id.clone()))
            .collect();
        // What structural operations change is read back afterwards, judged on the picture
        // the plan was made from; everything else is recorded op by op.
        let mut touched = Touched::default();
        for op in &ops {
            touched.add(op, &observed);
        }
        // Consecutive `mini_lb` operations address one table each (the planner emits at most
        // one per namespace in a row for a backend change): they run concurrently, since each
        // is a transaction of its own (one nf_tables netlink batch). Consecutive neighbour and
        // FDB operations on distinct entries run concurrently too (see `batches`).
        for batch in batches(&ops) {
            let batch_started = std::time::Instant::now();
            let mut results = Vec::with_capacity(batch.len());
            for part in batch.chunks(IN_FLIGHT) {
                results.extend(
                    futures::future::join_all(part.iter().map(|op| async move {
                        tracing::debug!(%op, "netdriver: executing");
                        let started = std::time::Instant::now();
                        let result = tokio::time::timeout(OP_DEADLINE, self.kernel.execute(op))
                            .await
                            .unwrap_or(Err(Error::Unanswered { after: OP_DEADLINE }));
                        let seconds = started.elapsed().as_secs_f64();
                        self.metrics.record(op, seconds, result.is_ok());
                        result
                    }))
                    .await,
                );
            }
            if batch.iter().any(Op::is_lb_op) {
                self.metrics
                    .vip_programming
                    .observe(batch_started.elapsed().as_secs_f64());
            }
            for (op, r) in batch.iter().zip(results) {
                if let Err(e) = r {
                    return Err(Error::Step {
                        op: op.to_string(),
                        source: Box::new(e),
                    });
                }
                observed.record_op(op);
            }
        }
        if !touched.is_empty() {
            match self.kernel.observe_part(&touched).await {
                Ok(fresh) => observed.merge(&touched, fresh),
                Err(e) => {
                    // Applied all the same; the next apply reads the whole kernel.
                    tracing::warn!(%e, "netdriver: reading back what an apply changed failed");
                    return Ok(ApplyReport {
                        ops,
                        observed_kernel,
                        reread: touched,
                    });
                }
            }
        }
        st.observed = Some(observed);
        Ok(ApplyReport {
            ops,
            observed_kernel,
            reread: touched,
        })
    }

    /// Reads the overlay namespaces from the kernel (not from memory) and returns their
    /// neighbour and FDB entries.
    pub async fn observe(&self) -> Result<Vec<ObservedNetwork>, Error> {
        let mut st = self.state.lock().await;
        let observed = self.kernel.observe().await?;
        let out = observed
            .namespaces
            .iter()
            .filter(|(name, _)| names::is_overlay_ns(name))
            .filter_map(|(name, ns)| {
                ns.as_ref().map(|ns| ObservedNetwork {
                    namespace: name.clone(),
                    network_id: st.network_ids.get(name).cloned(),
                    state: NsState {
                        links: BTreeMap::new(),
                        neighbours: ns.neighbours.clone(),
                        fdb: ns.fdb.clone(),
                        default_route: None,
                        lb: None,
                    },
                })
            })
            .collect();
        st.observed = Some(observed);
        Ok(out)
    }

    /// What the driver believes the kernel holds (`None`: the next apply reads it).
    #[cfg(test)]
    pub(crate) async fn cached(&self) -> Option<Observed> {
        self.state.lock().await.observed.clone()
    }

    /// Forgets what the driver believes the kernel holds: the next apply reads it again.
    pub async fn resync(&self) {
        self.state.lock().await.observed = None;
    }
}

/// At most this many operations of a batch are in flight at once. A netlink socket's receive
/// buffer (about 208 KiB by default, charged about 1 KiB per answer whatever its size) holds
/// some 200 answers; past that the kernel drops them (the socket reports an overrun) and each
/// request whose answer was dropped waits forever: a node adding 2,000 peers at once hung its
/// converge, and with it every task start, that way.
const IN_FLIGHT: usize = 32;

/// How long one operation may wait for the kernel. Past it the apply fails (and the next one
/// reads the kernel again) rather than wait forever on an answer that was lost: every later
/// converge, and every task start behind it, would wait too. Far above any real operation,
/// even on a saturated machine.
pub const OP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// What an operation that may share a batch touches: the operations of one batch touch
/// distinct things of one kind.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum BatchKey {
    /// A namespace's `mini_lb` table.
    Lb(crate::op::NsRef),
    /// A neighbour entry on `vxlan0`.
    Neighbour(String, std::net::Ipv4Addr),
    /// An FDB entry on `vxlan0`.
    Fdb(String, crate::model::MacAddr),
}

impl BatchKey {
    fn of(op: &Op) -> Option<BatchKey> {
        Some(match op {
            Op::SetLbTable { ns, .. }
            | Op::SetLbEntry { ns, .. }
            | Op::DelLbEntry { ns, .. }
            | Op::DeleteLbTable { ns } => BatchKey::Lb(ns.clone()),
            Op::SetNeighbour { ns, ip, .. } | Op::DelNeighbour { ns, ip } => {
                BatchKey::Neighbour(ns.clone(), *ip)
            }
            Op::SetFdb { ns, mac, .. } | Op::DelFdb { ns, mac } => BatchKey::Fdb(ns.clone(), *mac),
            _ => return None,
        })
    }

    /// Keys of one kind may share a batch: `mini_lb` tables with each other, neighbour and FDB
    /// entries with each other.
    fn kind(&self) -> u8 {
        match self {
            BatchKey::Lb(_) => 0,
            BatchKey::Neighbour(..) | BatchKey::Fdb(..) => 1,
        }
    }
}

/// Splits a plan into batches whose operations run concurrently, batch after batch in order:
/// runs of `mini_lb` operations on distinct namespaces (each a transaction of its own), runs
/// of neighbour and FDB operations on distinct entries (one request each, pipelined on the
/// namespace's netlink socket instead of one round trip after another: a dead node's 40
/// endpoints are 80 of them); every other operation alone.
fn batches(ops: &[Op]) -> Vec<&[Op]> {
    let mut out = Vec::new();
    let mut start = 0;
    // The kind of the batch being built (`None`: an operation that runs alone), and its keys.
    let mut kind = None;
    let mut seen = std::collections::BTreeSet::new();
    for (i, op) in ops.iter().enumerate() {
        let key = BatchKey::of(op);
        let joins = i > start
            && key
                .as_ref()
                .is_some_and(|k| kind == Some(k.kind()) && !seen.contains(k));
        if !joins && i > start {
            out.push(&ops[start..i]);
            start = i;
            seen.clear();
        }
        if i == start {
            kind = key.as_ref().map(BatchKey::kind);
        }
        if let Some(key) = key {
            seen.insert(key);
        }
    }
    if start < ops.len() {
        out.push(&ops[start..]);
    }
    out
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod lb_tests;
