//! Ends a root CA rotation (`swarm ca --rotate`) once every node that is not down has a
//! certificate of the new root: the new root becomes the cluster's, the old one is dropped
//! (its certificates are refused from then on) and join tokens carry the new digest.

use mini_proto::v1::store_action::Action;

use super::{Plan, Reconciler, update};
use crate::dispatcher::ca;
use crate::store::{ObjectKind, Tables};

/// The leader-only controller that finishes root rotations.
pub struct RootRotation;

impl Reconciler for RootRotation {
    const NAME: &'static str = "root CA rotation";
    const WATCHES: &'static [ObjectKind] = &[ObjectKind::Cluster, ObjectKind::Node];

    fn reconcile(&mut self, tables: &Tables, _now_ms: i64) -> Plan {
        let Some(cluster) = tables.cluster.as_ref() else {
            return Plan::default();
        };
        match ca::finish_rotation(cluster, tables.nodes.values()) {
            Some(done) => {
                tracing::info!(
                    "root CA rotation complete: every node has a certificate of the new root; \
                     certificates of the old root are refused from now on"
                );
                Plan {
                    actions: vec![update(Action::PutCluster(done))],
                    wake_at_ms: None,
                }
            }
            None => Plan::default(),
        }
    }
}
