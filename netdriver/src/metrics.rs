//! Prometheus metrics of the network driver: kernel operations by kind (count, failures,
//! latency) and the time to program a service's VIP load balancing.
//!
//! The crate owns no registry: the daemon registers a [`Metrics`] (names without the `mini_`
//! prefix, which the daemon's registry adds) and hands it to [`NetDriver::with_metrics`](
//! crate::NetDriver::with_metrics). A driver without one counts into an unregistered default.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::op::Op;

/// Label set of the per-kind families: `[("op", kind)]`.
pub type OpLabel = [(&'static str, &'static str); 1];

/// Operation latency buckets in seconds: 0.1 ms to about 3.3 s, doubling (16 buckets).
pub fn op_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 16)
}

fn op_histogram() -> Histogram {
    Histogram::new(op_buckets())
}

/// The driver's metric handles (each clone shares the same values).
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Operations executed, by kind.
    pub operations: Family<OpLabel, Counter>,
    /// Operations that failed, by kind.
    pub failures: Family<OpLabel, Counter>,
    /// Time of one operation, by kind.
    pub duration: Family<OpLabel, Histogram, fn() -> Histogram>,
    /// Time to program one change of service VIP load balancing (the `mini_lb` operations of
    /// one apply, run concurrently across namespaces).
    pub vip_programming: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Metrics {
            operations: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(op_histogram),
            vip_programming: Histogram::new(op_buckets()),
        };
        // Every kind shows from the first scrape, at 0 (a rate over a series that appears only
        // with its first failure would miss that failure).
        for kind in OP_KINDS {
            let _ = metrics.operations.get_or_create(&[("op", kind)]);
            let _ = metrics.failures.get_or_create(&[("op", kind)]);
        }
        metrics
    }
}

/// Every value of [`op_kind`].
pub const OP_KINDS: [&str; 21] = [
    "enable_forwarding",
    "create_gateway_bridge",
    "set_nat",
    "delete_nat",
    "create_overlay",
    "create_sandbox",
    "delete_namespace",
    "delete_link",
    "attach_overlay",
    "attach_gateway",
    "set_neighbour",
    "delete_neighbour",
    "set_fdb",
    "delete_fdb",
    "set_lb_table",
    "set_lb_entry",
    "delete_lb_entry",
    "delete_lb_table",
    "set_filter",
    "set_filter_members",
    "delete_filter",
];

impl Metrics {
    /// Registers the driver's families in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "netdriver_operations",
            "Kernel networking operations executed by the network driver, by kind",
            self.operations.clone(),
        );
        registry.register(
            "netdriver_operation_failures",
            "Kernel networking operations that failed, by kind",
            self.failures.clone(),
        );
        registry.register(
            "netdriver_operation_duration_seconds",
            "Time of one kernel networking operation, by kind",
            self.duration.clone(),
        );
        registry.register(
            "netdriver_vip_programming_duration_seconds",
            "Time to program one change of service VIP load balancing (nftables mini_lb)",
            self.vip_programming.clone(),
        );
    }

    /// Records one executed operation.
    pub fn record(&self, op: &Op, seconds: f64, ok: bool) {
        let label = [("op", op_kind(op))];
        self.operations.get_or_create(&label).inc();
        self.duration.get_or_create(&label).observe(seconds);
        if !ok {
            self.failures.get_or_create(&label).inc();
        }
    }
}

/// The kind of an operation, as a label value (`create_sandbox`, `set_fdb`, …).
pub fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::EnableForwarding => "enable_forwarding",
        Op::CreateGatewayBridge { .. } => "create_gateway_bridge",
        Op::SetNat { .. } => "set_nat",
        Op::DeleteNat { .. } => "delete_nat",
        Op::CreateOverlay { .. } => "create_overlay",
        Op::CreateSandbox { .. } => "create_sandbox",
        Op::DeleteNamespace { .. } => "delete_namespace",
        Op::DeleteLink { .. } => "delete_link",
        Op::AttachOverlay { .. } => "attach_overlay",
        Op::AttachGateway { .. } => "attach_gateway",
        Op::SetNeighbour { .. } => "set_neighbour",
        Op::DelNeighbour { .. } => "delete_neighbour",
        Op::SetFdb { .. } => "set_fdb",
        Op::DelFdb { .. } => "delete_fdb",
        Op::SetLbTable { .. } => "set_lb_table",
        Op::SetLbEntry { .. } => "set_lb_entry",
        Op::DelLbEntry { .. } => "delete_lb_entry",
        Op::DeleteLbTable { .. } => "delete_lb_table",
        Op::SetFilter { .. } => "set_filter",
        Op::SetFilterMembers { .. } => "set_filter_members",
        Op::DeleteFilter => "delete_filter",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_counted_by_kind_with_failures_apart() {
        let m = Metrics::default();
        let op = Op::CreateSandbox { ns: "x".into() };
        m.record(&op, 0.002, true);
        m.record(&op, 0.004, false);
        let mut registry = Registry::with_prefix("mini");
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        for line in [
            "mini_netdriver_operations_total{op=\"create_sandbox\"} 2\n",
            "mini_netdriver_operation_failures_total{op=\"create_sandbox\"} 1\n",
            "mini_netdriver_operation_failures_total{op=\"set_fdb\"} 0\n",
            "mini_netdriver_operation_duration_seconds_count{op=\"create_sandbox\"} 2\n",
            "mini_netdriver_operation_duration_seconds_bucket{op=\"create_sandbox\",le=\"0.0032\"} 1\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn every_kind_is_listed_once() {
        let kinds: std::collections::BTreeSet<&str> = OP_KINDS.into_iter().collect();
        assert_eq!(kinds.len(), OP_KINDS.len());
        for op in [
            Op::EnableForwarding,
            Op::DeleteFilter,
            Op::CreateSandbox { ns: "x".into() },
            Op::DeleteNat { name: "x".into() },
        ] {
            assert!(kinds.contains(op_kind(&op)), "{op}");
        }
    }

    #[test]
    fn op_buckets_span_a_tenth_of_a_millisecond_to_seconds() {
        let b: Vec<f64> = op_buckets().collect();
        assert_eq!((b.len(), b[0]), (16, 0.0001));
        assert!((3.0..4.0).contains(&b[15]), "{b:?}");
    }
}
