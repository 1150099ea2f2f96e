//! Writers without a lock: two calls that decide from the same view race; the deterministic
//! apply lets one through and refuses (or makes decide again) the other, and the store stays
//! consistent.

use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use mini_proto::v1::{
    Cluster, EndpointSpec, Network, NetworkSpec, PortConfig, Service, ServiceSpec, StoreAction,
    StoreBatch, store_action::Action,
};
use tokio::sync::Barrier;

use super::*;
use crate::allocator::{allocate_network, allocate_service_vips};

/// Holds the first `gated` proposals until all of them arrived, so those writers all decided
/// from the same view before any of them is applied; later proposals pass at once.
struct Gate {
    inner: LocalProposer,
    barrier: Barrier,
    gated: usize,
    seen: AtomicUsize,
}

impl Gate {
    fn new(store: &Store, gated: usize) -> Self {
        Gate {
            inner: LocalProposer::new(store.clone()),
            barrier: Barrier::new(gated),
            gated,
            seen: AtomicUsize::new(0),
        }
    }
}

impl Proposer for Gate {
    async fn propose(&self, batch: StoreBatch) -> Result<u64, WriteError> {
        if self.seen.fetch_add(1, Ordering::SeqCst) < self.gated {
            self.barrier.wait().await;
        }
        self.inner.propose(batch).await
    }
}

fn seed(store: &Store, actions: Vec<StoreAction>) {
    let index = store.applied_index() + 1;
    store
        .apply(
            index,
            &StoreBatch {
                actions,
                proposed_at_ms: 1,
                ..Default::default()
            },
        )
        .unwrap();
}

fn overlay(id: &str, name: &str, subnet: &str) -> Network {
    Network {
        id: id.into(),
        spec: Some(NetworkSpec {
            name: name.into(),
            driver: "overlay".into(),
            ..Default::default()
        }),
        subnet: subnet.into(),
        gateway: subnet.replace(".0/24", ".1"),
        vni: 4097,
        ..Default::default()
    }
}

fn service(id: &str, name: &str, networks: &[&str], port: Option<u32>) -> Service {
    Service {
        id: id.into(),
        spec: Some(ServiceSpec {
            name: name.into(),
            networks: networks.iter().map(|n| n.to_string()).collect(),
            endpoint: port.map(|p| EndpointSpec {
                ports: vec![PortConfig {
                    protocol: "tcp".into(),
                    target_port: 80,
                    published_port: p,
                }],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Runs two read-check-writes at once through `gate`; `decide(i, tables)` is writer i's step.
async fn race<T: Send + 'static>(
    store: &Store,
    gate: &Gate,
    decide: impl Fn(usize, &Tables) -> Result<(Vec<StoreAction>, T), WriteError> + Sync,
) -> [Result<T, WriteError>; 2] {
    let one = read_check_write(store, gate, |t| decide(0, t));
    let two = read_check_write(store, gate, |t| decide(1, t));
    let (a, b) = tokio::join!(one, two);
    [a, b]
}

#[tokio::test(flavor = "current_thread")]
async fn two_creates_of_one_service_name_one_wins_the_other_is_refused() {
    let store = Store::new();
    let gate = Gate::new(&store, 2);
    let results = race(&store, &gate, |i, _| {
        let s = service(&format!("s{i}"), "web", &[], None);
        Ok((vec![create_action(Action::PutService(s))], i))
    })
    .await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    let refused = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(
        matches!(refused, WriteError::Rejected(ApplyError::NameTaken { .. })),
        "{refused:?}"
    );
    assert_eq!(
        refused.to_string(),
        format!(
            "service with name web already exists ({})",
            store.view(|t| t.services.keys().next().unwrap().clone())
        )
    );
    assert_eq!(store.view(|t| t.services.len()), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn two_network_creates_from_one_view_get_different_subnets_and_vnis() {
    let store = Store::new();
    seed(
        &store,
        vec![create_action(Action::PutCluster(Cluster {
            id: "c".into(),
            next_vni: 4097,
            ..Default::default()
        }))],
    );
    let gate = Gate::new(&store, 2);
    let decided = StdMutex::new(Vec::new());
    let results = race(&store, &gate, |i, t| {
        let spec = NetworkSpec {
            name: format!("net{i}"),
            driver: "overlay".into(),
            ..Default::default()
        };
        let mut cluster = t.cluster.clone().unwrap();
        let existing: Vec<Network> = t.networks.values().cloned().collect();
        let a = allocate_network(&spec, &cluster, &existing).unwrap();
        decided.lock().unwrap().push((i, a.subnet.to_string()));
        cluster.next_vni = cluster.next_vni.max(a.vni + 1);
        let network = Network {
            id: format!("n{i}"),
            spec: Some(spec),
            subnet: a.subnet.to_string(),
            gateway: a.gateway.to_string(),
            vni: a.vni,
            ..Default::default()
        };
        Ok((
            vec![
                create_action(Action::PutNetwork(network)),
                update_action(Action::PutCluster(cluster)),
            ],
            (),
        ))
    })
    .await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    // Both decided 10.0.0.0/24 first; the loser was refused as stale and decided again.
    assert_eq!(decided.lock().unwrap().len(), 3, "{decided:?}");
    let (subnets, vnis): (Vec<String>, Vec<u32>) = store.view(|t| {
        t.networks
            .values()
            .map(|n| (n.subnet.clone(), n.vni))
            .unzip()
    });
    assert_ne!(subnets[0], subnets[1], "{subnets:?}");
    assert_ne!(vnis[0], vnis[1], "{vnis:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn two_services_on_one_network_from_one_view_get_different_vips() {
    let store = Store::new();
    seed(
        &store,
        vec![create_action(Action::PutNetwork(overlay(
            "n1",
            "front",
            "10.0.0.0/24",
        )))],
    );
    let gate = Gate::new(&store, 2);
    let results = race(&store, &gate, |i, t| {
        let mut s = service(&format!("s{i}"), &format!("web{i}"), &["n1"], None);
        let networks: Vec<Network> = t.networks.values().cloned().collect();
        let tasks: Vec<_> = t.tasks.values().cloned().collect();
        let services: Vec<_> = t.services.values().cloned().collect();
        let vips = allocate_service_vips(&s, &networks, &tasks, &services).unwrap();
        s.vips = vips.vips;
        let mut actions = vec![create_action(Action::PutService(s))];
        actions.extend(
            vips.networks
                .into_iter()
                .map(|n| update_action(Action::PutNetwork(n))),
        );
        Ok((actions, ()))
    })
    .await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let vips: Vec<String> = store.view(|t| {
        t.services
            .values()
            .map(|s| s.vips[0].addr.clone())
            .collect()
    });
    assert_eq!(vips.len(), 2);
    assert_ne!(vips[0], vips[1], "{vips:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn two_services_publishing_one_port_one_wins() {
    let store = Store::new();
    let gate = Gate::new(&store, 2);
    let results = race(&store, &gate, |i, _| {
        let s = service(&format!("s{i}"), &format!("web{i}"), &[], Some(8080));
        Ok((vec![create_action(Action::PutService(s))], ()))
    })
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    let refused = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(
        refused
            .to_string()
            .starts_with("port 8080/tcp is already published by service web"),
        "{refused}"
    );
    assert_eq!(store.view(|t| t.services.len()), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn network_rm_racing_a_service_that_uses_it_leaves_no_dangling_reference() {
    let store = Store::new();
    seed(
        &store,
        vec![create_action(Action::PutNetwork(overlay(
            "n1",
            "front",
            "10.0.0.0/24",
        )))],
    );
    let gate = Gate::new(&store, 2);
    // Writer 0 creates a service on the network, writer 1 removes it (its view: unused).
    let results = race(&store, &gate, |i, _| {
        let action = if i == 0 {
            create_action(Action::PutService(service("s1", "web", &["n1"], None)))
        } else {
            update_action(Action::RemoveNetwork("n1".into()))
        };
        Ok((vec![action], ()))
    })
    .await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    store.view(|t| {
        for s in t.services.values() {
            for n in &s.spec.as_ref().unwrap().networks {
                assert!(
                    t.networks.contains_key(n),
                    "service refers to a removed network"
                );
            }
        }
    });
    // And the other order: the removal applies first, the create is refused.
    let store = Store::new();
    seed(
        &store,
        vec![create_action(Action::PutNetwork(overlay(
            "n1",
            "front",
            "10.0.0.0/24",
        )))],
    );
    seed(
        &store,
        vec![update_action(Action::RemoveNetwork("n1".into()))],
    );
    let err = store
        .apply(
            9,
            &StoreBatch {
                actions: vec![create_action(Action::PutService(service(
                    "s1",
                    "web",
                    &["n1"],
                    None,
                )))],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "network n1 does not exist");
    // A network a service uses is not removed.
    let store = Store::new();
    seed(
        &store,
        vec![create_action(Action::PutNetwork(overlay(
            "n1",
            "front",
            "10.0.0.0/24",
        )))],
    );
    seed(
        &store,
        vec![create_action(Action::PutService(service(
            "s1",
            "web",
            &["n1"],
            None,
        )))],
    );
    let err = store
        .apply(
            9,
            &StoreBatch {
                actions: vec![update_action(Action::RemoveNetwork("n1".into()))],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "network front is in use by service web");
}

#[tokio::test(flavor = "current_thread")]
async fn many_writers_of_one_object_all_get_through_without_a_lost_change() {
    // 64 writers each add their own label to one node, all deciding from the same first
    // view: every one is refused as stale until it decides on the newest version; the ones
    // that lost wait their turn for the node.
    let store = Store::new();
    seed(
        &store,
        vec![create_action(Action::PutNode(mini_proto::v1::Node {
            id: "n".into(),
            ..Default::default()
        }))],
    );
    let gate = Gate::new(&store, 64);
    let contention = Contention::default();
    let writers = (0..64).map(|i| {
        let (store, gate, contention) = (&store, &gate, &contention);
        async move {
            read_check_write_queued(store, gate, contention, |t| {
                let mut node = t.nodes["n"].clone();
                let labels = &mut node.spec.get_or_insert_default().labels;
                labels.insert(format!("w{i}"), "1".into());
                Ok::<_, WriteError>((vec![update_action(Action::PutNode(node))], ()))
            })
            .await
        }
    });
    let results = futures::future::join_all(writers).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(
        store.view(|t| t.nodes["n"].spec.as_ref().unwrap().labels.len()),
        64,
        "no change lost"
    );
}
