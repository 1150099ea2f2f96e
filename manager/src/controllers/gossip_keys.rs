//! Rotates the cluster's gossip key ring, as Docker rotates its gossip keys every 12 hours.
//!
//! Nodes learn a new ring over their sessions at slightly different moments, so a rotation
//! has two steps, each of which every node can take at its own pace without losing a packet:
//!
//! 1. **Install**: a new key is added behind the sealing key (`[current, new]`). Everyone
//!    still seals with `current`; nodes that already have the ring can open `new` too.
//! 2. **Use**, [`promote_delay`] later: the new key goes first (`[new, current]`). Nodes that
//!    have this ring seal with `new`, which every node has held since step 1; `current` still
//!    opens what lagging nodes seal.
//!
//! The next rotation drops the previous key (`[new, next]`, then `[next, new]`): from then on
//! it opens nothing. A cluster without a ring (made before gossip was sealed) gets one at once.

use std::time::Duration;

use mini_proto::v1::{Cluster, GossipKey, GossipKeyRing, store_action::Action};
use rand::Rng;

use super::{Plan, Reconciler, update};
use crate::store::{ObjectKind, Tables};

/// How often the gossip key is replaced (Docker's period).
pub const DEFAULT_ROTATION: Duration = Duration::from_secs(12 * 3600);
/// Bytes of a gossip key (ChaCha20-Poly1305).
pub const KEY_BYTES: usize = 32;

/// Time between installing a new key and sealing with it: a quarter of the period, at most a
/// minute (sessions hand a changed ring out within milliseconds).
pub fn promote_delay(period: Duration) -> Duration {
    (period / 4).min(Duration::from_secs(60))
}

/// A fresh key ring of one key (`swarm init`).
pub fn new_key_ring(now_ms: i64) -> GossipKeyRing {
    GossipKeyRing {
        keys: vec![new_key(1, now_ms)],
    }
}

/// Step 1 of a rotation: the sealing key, then a new key (the next id).
pub fn installed(ring: &GossipKeyRing, now_ms: i64) -> GossipKeyRing {
    let next_id = ring
        .keys
        .iter()
        .map(|k| k.id)
        .max()
        .unwrap_or(0)
        .wrapping_add(1);
    let mut keys: Vec<GossipKey> = ring.keys.iter().take(1).cloned().collect();
    keys.push(new_key(next_id.max(1), now_ms));
    GossipKeyRing { keys }
}

/// Step 2 of a rotation: the installed key first, then the previous sealing key.
pub fn promoted(ring: &GossipKeyRing) -> GossipKeyRing {
    let mut keys = ring.keys.clone();
    keys.reverse();
    GossipKeyRing { keys }
}

fn new_key(id: u32, now_ms: i64) -> GossipKey {
    let mut key = vec![0u8; KEY_BYTES];
    // `rand::rng()` is a cryptographically secure generator seeded from the OS.
    rand::rng().fill(&mut key[..]);
    GossipKey {
        id,
        key,
        created_at_ms: now_ms,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The leader-only controller that rotates the ring every `period`.
pub struct GossipKeyRotation {
    /// Time between rotations.
    pub period: Duration,
}

impl Reconciler for GossipKeyRotation {
    const NAME: &'static str = "gossip key rotation";
    const WATCHES: &'static [ObjectKind] = &[ObjectKind::Cluster];

    fn reconcile(&mut self, tables: &Tables, now_ms: i64) -> Plan {
        let Some(cluster) = tables.cluster.as_ref() else {
            return Plan::default();
        };
        let ring = cluster.gossip_keys.as_ref().filter(|r| !r.keys.is_empty());
        let (next, wake) = match ring {
            None => (new_key_ring(now_ms), now_ms + millis(self.period)),
            Some(ring) => {
                let sealing = &ring.keys[0];
                let installed_key = ring
                    .keys
                    .iter()
                    .skip(1)
                    .find(|k| k.created_at_ms > sealing.created_at_ms);
                match installed_key {
                    Some(key) => {
                        let due = key
                            .created_at_ms
                            .saturating_add(millis(promote_delay(self.period)));
                        if now_ms < due {
                            return Plan {
                                actions: Vec::new(),
                                wake_at_ms: Some(due),
                            };
                        }
                        tracing::info!(
                            key_id = key.id,
                            "sealing gossip with the new key (the previous one still opens until the next rotation)"
                        );
                        (promoted(ring), now_ms.saturating_add(millis(self.period)))
                    }
                    None => {
                        let due = sealing.created_at_ms.saturating_add(millis(self.period));
                        if now_ms < due {
                            return Plan {
                                actions: Vec::new(),
                                wake_at_ms: Some(due),
                            };
                        }
                        let next = installed(ring, now_ms);
                        tracing::info!(
                            key_id = next.keys[1].id,
                            "installing a new gossip key on every node"
                        );
                        (
                            next,
                            now_ms.saturating_add(millis(promote_delay(self.period))),
                        )
                    }
                }
            }
        };
        Plan {
            actions: vec![update(Action::PutCluster(Cluster {
                gossip_keys: Some(next),
                ..cluster.clone()
            }))],
            wake_at_ms: Some(wake),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables_with(ring: Option<GossipKeyRing>) -> Tables {
        Tables {
            cluster: Some(Cluster {
                id: "c".into(),
                gossip_keys: ring,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn written_ring(plan: &Plan) -> Option<GossipKeyRing> {
        match plan.actions.first()?.action.as_ref()? {
            Action::PutCluster(c) => c.gossip_keys.clone(),
            _ => None,
        }
    }

    fn ids(ring: &GossipKeyRing) -> Vec<u32> {
        ring.keys.iter().map(|k| k.id).collect()
    }

    #[test]
    fn a_rotation_installs_then_uses_the_new_key_and_keeps_the_previous_one_only() {
        let hour = Duration::from_secs(3600);
        let delay = 900_000; // a quarter of the period, at most a minute: 60 s
        let delay = delay.min(60_000);
        let mut c = GossipKeyRotation { period: hour };
        let t0 = 1_000_000;
        let ring = new_key_ring(t0);
        let early = c.reconcile(&tables_with(Some(ring.clone())), t0 + 1000);
        assert!(early.actions.is_empty());
        assert_eq!(early.wake_at_ms, Some(t0 + 3_600_000), "wakes when due");

        // Due: the new key is installed behind the sealing one.
        let due = t0 + 3_600_000;
        let step1 = written_ring(&c.reconcile(&tables_with(Some(ring.clone())), due)).unwrap();
        assert_eq!(ids(&step1), vec![1, 2], "key 1 still seals, key 2 opens");
        assert_eq!(step1.keys[0], ring.keys[0]);
        assert_ne!(step1.keys[1].key, ring.keys[0].key);
        assert_eq!(step1.keys[1].key.len(), KEY_BYTES);

        // Not yet sealing with it before the delay; then promoted.
        let wait = c.reconcile(&tables_with(Some(step1.clone())), due + delay - 1);
        assert!(wait.actions.is_empty());
        assert_eq!(wait.wake_at_ms, Some(due + delay));
        let step2 =
            written_ring(&c.reconcile(&tables_with(Some(step1.clone())), due + delay)).unwrap();
        assert_eq!(ids(&step2), vec![2, 1], "key 2 seals, key 1 still opens");

        // The next rotation retires key 1.
        let again = due + 3_600_000;
        assert!(
            c.reconcile(&tables_with(Some(step2.clone())), again - 1)
                .actions
                .is_empty()
        );
        let step3 = written_ring(&c.reconcile(&tables_with(Some(step2.clone())), again)).unwrap();
        assert_eq!(ids(&step3), vec![2, 3], "key 1 leaves the ring");
        let step4 = written_ring(&c.reconcile(&tables_with(Some(step3)), again + delay)).unwrap();
        assert_eq!(ids(&step4), vec![3, 2]);
        assert_eq!(
            promote_delay(Duration::from_secs(20)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_cluster_without_a_ring_gets_one_and_no_cluster_means_nothing() {
        let mut c = GossipKeyRotation {
            period: DEFAULT_ROTATION,
        };
        let ring = written_ring(&c.reconcile(&tables_with(None), 5)).unwrap();
        assert_eq!(ring.keys.len(), 1);
        assert_eq!(ring.keys[0].id, 1);
        assert!(c.reconcile(&Tables::default(), 5).actions.is_empty());
    }
}
