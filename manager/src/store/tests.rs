//! Store apply: atomic batches, versions, names, snapshots.

use mini_proto::v1::{
    Meta, Network, NetworkSpec, Service, ServiceSpec, StoreAction, StoreBatch, Task,
    store_action::Action,
};

use super::*;

fn network(id: &str, name: &str) -> Network {
    Network {
        id: id.into(),
        spec: Some(NetworkSpec {
            name: name.into(),
            driver: "overlay".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

use super::{create_action as create, update_action as update};

fn batch(actions: Vec<StoreAction>) -> StoreBatch {
    StoreBatch {
        actions,
        proposed_at_ms: 1_000,
        ..Default::default()
    }
}

#[test]
fn create_sets_version_to_index_and_timestamps_from_batch() {
    let store = Store::new();
    store
        .apply(
            7,
            &batch(vec![create(Action::PutNetwork(network("n1", "demonet")))]),
        )
        .unwrap();
    let meta = store.view(|t| t.networks["n1"].meta).unwrap();
    assert_eq!(
        meta,
        Meta {
            version: 7,
            created_at_ms: 1_000,
            updated_at_ms: 1_000
        }
    );
    assert_eq!(store.applied_index(), 7);
}

#[test]
fn duplicate_name_is_refused_and_batch_is_atomic() {
    let store = Store::new();
    store
        .apply(
            1,
            &batch(vec![create(Action::PutNetwork(network("n1", "demonet")))]),
        )
        .unwrap();
    let err = store
        .apply(
            2,
            &batch(vec![
                create(Action::PutNetwork(network("n2", "other"))),
                create(Action::PutNetwork(network("n3", "demonet"))),
            ]),
        )
        .unwrap_err();
    assert_eq!(
        err,
        ApplyError::NameTaken {
            kind: ObjectKind::Network,
            name: "demonet".into(),
            id: "n1".into()
        }
    );
    // n2 came before the failing action in the same batch: rolled back too.
    assert_eq!(
        store.view(|t| t.networks.keys().cloned().collect::<Vec<_>>()),
        vec!["n1"]
    );
}

#[test]
fn stale_update_is_refused() {
    let store = Store::new();
    store
        .apply(
            1,
            &batch(vec![create(Action::PutNetwork(network("n1", "a")))]),
        )
        .unwrap();
    let mut current = store.view(|t| t.networks["n1"].clone());
    current.vni = 4097;
    store
        .apply(2, &batch(vec![update(Action::PutNetwork(current.clone()))]))
        .unwrap();
    // `current` still carries version 1: a second writer that read version 1 loses.
    let err = store
        .apply(3, &batch(vec![update(Action::PutNetwork(current))]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApplyError::Stale {
                given: 1,
                stored: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        store.view(|t| t.networks["n1"].meta.as_ref().unwrap().version),
        2
    );
}

#[test]
fn remove_of_missing_object_fails_and_keeps_others() {
    let store = Store::new();
    store
        .apply(
            1,
            &batch(vec![create(Action::PutNetwork(network("n1", "a")))]),
        )
        .unwrap();
    let err = store
        .apply(
            2,
            &batch(vec![
                StoreAction {
                    action: Some(Action::RemoveNetwork("n1".into())),
                    create: false,
                },
                StoreAction {
                    action: Some(Action::RemoveService("nope".into())),
                    create: false,
                },
            ]),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        ApplyError::Missing {
            kind: ObjectKind::Service,
            ..
        }
    ));
    assert!(store.view(|t| t.networks.contains_key("n1")));
}

#[test]
fn snapshot_restore_round_trip_and_watch() {
    let store = Store::new();
    let mut events = store.watch();
    let svc = Service {
        id: "s1".into(),
        spec: Some(ServiceSpec {
            name: "web".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    store
        .apply(
            3,
            &batch(vec![
                create(Action::PutNetwork(network("n1", "a"))),
                create(Action::PutService(svc)),
            ]),
        )
        .unwrap();
    let event = events.try_recv().unwrap();
    assert_eq!(event.index, 3);
    assert!(event.touches(ObjectKind::Service) && event.touches(ObjectKind::Network));
    assert!(!event.touches(ObjectKind::Task));

    let (index, bytes) = store.snapshot();
    let copy = Store::new();
    copy.restore(index, &bytes).unwrap();
    assert_eq!(copy.applied_index(), 3);
    assert_eq!(copy.view(|t| t.clone()), store.view(|t| t.clone()));
}

#[test]
fn lookup_by_id_name_and_prefix() {
    let store = Store::new();
    store
        .apply(
            1,
            &batch(vec![
                create(Action::PutNetwork(network("abc123", "demonet"))),
                create(Action::PutNetwork(network("abd456", "other"))),
            ]),
        )
        .unwrap();
    store.view(|t| {
        assert_eq!(t.network("demonet").unwrap().id, "abc123");
        assert_eq!(t.network("abd").unwrap().id, "abd456");
        assert!(matches!(
            t.network("ab"),
            Err(LookupError::Ambiguous { count: 2, .. })
        ));
        assert!(matches!(
            t.network("zzz"),
            Err(LookupError::NotFound { .. })
        ));
    });
}

#[tokio::test]
async fn local_proposer_applies_in_order() {
    let store = Store::new();
    let proposer = LocalProposer::new(store.clone());
    let i1 = proposer
        .propose(batch(vec![create(Action::PutNetwork(network("n1", "a")))]))
        .await
        .unwrap();
    let err = proposer
        .propose(batch(vec![create(Action::PutNetwork(network("n2", "a")))]))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        WriteError::Rejected(ApplyError::NameTaken { .. })
    ));
    let i3 = proposer
        .propose(batch(vec![create(Action::PutNetwork(network("n3", "b")))]))
        .await
        .unwrap();
    assert_eq!((i1, i3), (1, 3));
}

#[test]
fn secrets_and_configs_apply_keep_unique_names_and_survive_snapshots() {
    use mini_proto::v1::{Config, ConfigSpec, Secret, SecretSpec};
    let secret = |id: &str, name: &str| Secret {
        id: id.into(),
        meta: None,
        spec: Some(SecretSpec {
            name: name.into(),
            data: b"v".to_vec(),
            ..Default::default()
        }),
    };
    let store = Store::new();
    store
        .apply(
            3,
            &batch(vec![
                create(Action::PutSecret(secret("s1", "db"))),
                create(Action::PutConfig(Config {
                    id: "c1".into(),
                    meta: None,
                    spec: Some(ConfigSpec {
                        name: "db".into(),
                        data: b"x".to_vec(),
                        ..Default::default()
                    }),
                })),
            ]),
        )
        .unwrap();
    // A second secret named db is refused (a config may share the name).
    let err = store
        .apply(
            4,
            &batch(vec![create(Action::PutSecret(secret("s2", "db")))]),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApplyError::NameTaken {
                kind: ObjectKind::Secret,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        store.view(|t| t.secret("db").map(|s| s.id.clone())),
        Ok("s1".into())
    );
    let (index, bytes) = store.snapshot();
    let restored = Store::new();
    restored.restore(index, &bytes).unwrap();
    assert_eq!(restored.view(|t| t.clone()), store.view(|t| t.clone()));
    assert_eq!(restored.view(|t| t.configs.len()), 1);
    store
        .apply(5, &batch(vec![update(Action::RemoveSecret("s1".into()))]))
        .unwrap();
    assert!(store.view(|t| t.secrets.is_empty()));
}

#[test]
fn a_retried_proposal_is_applied_once_and_answers_applied_even_after_a_snapshot() {
    let store = Store::new();
    let mut events = store.watch();
    let first = StoreBatch {
        proposal_id: 77,
        ..batch(vec![create(Action::PutNetwork(network("n1", "demonet")))])
    };
    store.apply(5, &first).unwrap();
    // The same proposal committed again (a forwarded write retried after a leader change):
    // not applied twice, and not "already exists" either.
    assert_eq!(store.apply(6, &first), Ok(()));
    assert_eq!(store.applied_index(), 6);
    assert_eq!(store.view(|t| t.networks["n1"].meta.unwrap().version), 5);
    assert_eq!(events.try_recv().unwrap().index, 5);
    assert!(events.try_recv().is_err(), "the retry changed nothing");
    // A different proposal with the same content is a real duplicate.
    let other = StoreBatch {
        proposal_id: 78,
        ..first.clone()
    };
    assert!(matches!(
        store.apply(7, &other),
        Err(ApplyError::Exists { .. })
    ));
    // A manager restored from a snapshot skips the same retries.
    let (index, bytes) = store.snapshot();
    let copy = Store::new();
    copy.restore(index, &bytes).unwrap();
    assert_eq!(copy.apply(8, &first), Ok(()));
    assert_eq!(copy.view(|t| t.clone()), store.view(|t| t.clone()));
}

#[test]
fn a_refused_proposal_is_not_remembered_and_old_ids_are_forgotten() {
    let store = Store::new();
    let refused = StoreBatch {
        proposal_id: 9,
        ..batch(vec![update(Action::RemoveNetwork("n1".into()))])
    };
    assert!(store.apply(1, &refused).is_err());
    store
        .apply(
            2,
            &batch(vec![create(Action::PutNetwork(network("n1", "demonet")))]),
        )
        .unwrap();
    // Its retry applies: the first attempt changed nothing.
    assert_eq!(store.apply(3, &refused), Ok(()));
    assert!(store.view(|t| t.networks.is_empty()));
    // Ids of batches proposed long before the one being applied are forgotten.
    let old = StoreBatch {
        proposal_id: 10,
        proposed_at_ms: 1_000,
        ..batch(vec![create(Action::PutNetwork(network("n2", "a")))])
    };
    store.apply(4, &old).unwrap();
    let later = StoreBatch {
        proposal_id: 11,
        proposed_at_ms: 1_000 + 60_000,
        ..batch(vec![create(Action::PutNetwork(network("n3", "b")))])
    };
    store.apply(5, &later).unwrap();
    assert!(matches!(
        store.apply(6, &old),
        Err(ApplyError::Exists { .. })
    ));
}

/// A view taken inside a view's closure deadlocks as soon as the Raft loop waits to write in
/// between (the events follower did this on start): debug builds refuse it at once.
#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "the store's lock taken again inside a view")]
fn a_view_inside_a_view_is_refused_in_debug_builds() {
    let store = Store::new();
    store.view(|_| store.applied_index());
}

/// The lock mark is per thread and ends with the view: views one after the other, and on
/// other threads at the same time, are fine.
#[test]
fn views_in_turn_and_on_other_threads_are_fine() {
    let store = Store::new();
    store.view(|_| ());
    assert_eq!(store.applied_index(), 0);
    store.view(|_| {
        let other = store.clone();
        std::thread::spawn(move || other.applied_index())
            .join()
            .expect("a view on another thread")
    });
    store
        .apply(
            1,
            &batch(vec![create(Action::PutNetwork(network("n1", "a")))]),
        )
        .unwrap();
    assert_eq!(store.view(|t| t.networks.len()), 1);
}

/// A task of service `s-<first letter of its id>` (`s-t` for `t1`, `t2`…; `s-p` for
/// `pending`), on `node_id`.
fn task(id: &str, node_id: &str) -> Task {
    Task {
        id: id.into(),
        node_id: node_id.into(),
        service_id: format!("s-{}", &id[..1]),
        ..Default::default()
    }
}

/// An index of the tasks by `key` rebuilt from scratch, by a scan of every task.
fn scanned_index(tables: &Tables, key: fn(&Task) -> &str) -> TaskIndex {
    let mut index = TaskIndex::new();
    for t in tables.tasks.values().filter(|t| !key(t).is_empty()) {
        index
            .entry(key(t).to_string())
            .or_default()
            .insert(t.id.clone());
    }
    index
}

/// The indexes of `store` equal a full scan of its tasks, and each node's and service's tasks
/// are the ones a scan finds, in id order.
fn assert_index_matches_scan(store: &Store, step: &str) {
    store.view(|t| {
        assert_eq!(
            t.tasks.node_index(),
            &scanned_index(t, |t| &t.node_id),
            "after {step}"
        );
        assert_eq!(
            t.tasks.service_index(),
            &scanned_index(t, |t| &t.service_id),
            "services after {step}"
        );
        // The tasks with `value` as their `key`, from the index and from a scan.
        let check = |what: &str, value: &str, key: fn(&Task) -> &str, indexed: Vec<&Task>| {
            let ids = |tasks: Vec<&Task>| -> Vec<String> {
                tasks.into_iter().map(|t| t.id.clone()).collect()
            };
            let scanned = t
                .tasks
                .values()
                .filter(|t| !value.is_empty() && key(t) == value)
                .collect();
            assert_eq!(ids(indexed), ids(scanned), "{what} {value:?} after {step}");
        };
        for service in ["", "s-t", "s-p", "s-g", "s-x"] {
            let indexed = t.tasks_of_service(service).collect();
            check("service", service, |t| &t.service_id, indexed);
        }
        for node in ["", "a", "b", "c"] {
            check(
                "node",
                node,
                |t| &t.node_id,
                t.tasks.on_node(node).collect(),
            );
        }
    });
}

#[test]
fn the_task_indexes_follow_every_write_rollback_and_restore() {
    let store = Store::new();
    let moved = |store: &Store, id: &str, node_id: &str| {
        let mut t = store.view(|t| t.tasks[id].clone());
        t.node_id = node_id.into();
        update(Action::PutTask(t))
    };
    store
        .apply(
            1,
            &batch(vec![
                create(Action::PutTask(task("t1", "a"))),
                create(Action::PutTask(task("t2", "a"))),
                create(Action::PutTask(task("t3", "b"))),
                create(Action::PutTask(task("pending", ""))),
            ]),
        )
        .unwrap();
    assert_index_matches_scan(&store, "creates");
    assert_eq!(
        store.view(|t| t.tasks.node_index().keys().cloned().collect::<Vec<_>>()),
        ["a", "b"],
        "an unscheduled task is not indexed"
    );

    // Scheduled, moved (b is left with no task), and updated in place on its node.
    let batch2 = batch(vec![
        moved(&store, "pending", "c"),
        moved(&store, "t3", "a"),
        moved(&store, "t1", "a"),
    ]);
    store.apply(2, &batch2).unwrap();
    assert_index_matches_scan(&store, "moves");
    assert!(!store.view(|t| t.tasks.node_index().contains_key("b")));

    // A task's service never changes in practice; the index follows even so.
    let mut other = store.view(|t| t.tasks["t2"].clone());
    other.service_id = "s-x".into();
    store
        .apply(3, &batch(vec![update(Action::PutTask(other))]))
        .unwrap();
    assert_index_matches_scan(&store, "a change of service");
    assert_eq!(
        store.view(|t| t.tasks.service_index().keys().cloned().collect::<Vec<_>>()),
        ["s-p", "s-t", "s-x"]
    );

    // Removed.
    store
        .apply(4, &batch(vec![update(Action::RemoveTask("t2".into()))]))
        .unwrap();
    assert_index_matches_scan(&store, "a removal");

    // A refused batch rolls back a create, a move and a removal.
    let err = store
        .apply(
            5,
            &batch(vec![
                create(Action::PutTask(task("t4", "b"))),
                moved(&store, "t3", "b"),
                update(Action::RemoveTask("t1".into())),
                update(Action::RemoveTask("missing".into())),
            ]),
        )
        .unwrap_err();
    assert!(matches!(err, ApplyError::Missing { .. }), "{err:?}");
    assert_index_matches_scan(&store, "a rollback");
    assert_eq!(
        store.view(|t| t
            .tasks
            .on_node("a")
            .map(|t| t.id.clone())
            .collect::<Vec<_>>()),
        ["t1", "t3"]
    );

    // Restored over a store that held other tasks: nothing of those stays in the index.
    let (index, bytes) = store.snapshot();
    let copy = Store::new();
    copy.apply(
        1,
        &batch(vec![
            create(Action::PutTask(task("t1", "b"))),
            create(Action::PutTask(task("gone", "d"))),
        ]),
    )
    .unwrap();
    copy.restore(index, &bytes).unwrap();
    assert_index_matches_scan(&copy, "a restore");
    assert_eq!(
        copy.view(|t| t.tasks.node_index().clone()),
        store.view(|t| t.tasks.node_index().clone())
    );
}
