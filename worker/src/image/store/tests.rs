//! Store tests: loading `docker save` tarballs made here, sharing and
//! reference-counting layers, refusing to remove images in use, and
//! leaving nothing behind when a blob is bad.

use std::io::Write;

use super::*;
use crate::image::digest::sha256_digest;

/// A layer tar with the given regular files.
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn config_for(layers: &[Vec<u8>], cmd: &str, created: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {"Env": ["PATH=/bin"], "Cmd": [cmd]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// One image of a test archive: layers, config, tags.
type TestImage<'a> = (&'a [Vec<u8>], Vec<u8>, &'a [&'a str]);

/// A `docker save` tarball (current layout: blobs/sha256/...).
fn docker_save(images: &[TestImage<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: String, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data).unwrap();
    };
    let mut manifest = Vec::new();
    for (layers, config, tags) in images {
        let cfg = format!("blobs/sha256/{}", hex_of(&sha256_digest(config)));
        add(cfg.clone(), config);
        let mut paths = Vec::new();
        for l in *layers {
            let p = format!("blobs/sha256/{}", hex_of(&sha256_digest(l)));
            add(p.clone(), l);
            paths.push(p);
        }
        manifest.push(serde_json::json!({"Config": cfg, "RepoTags": tags, "Layers": paths}));
    }
    add(
        "manifest.json".into(),
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.into_inner().unwrap()
}

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("images"), RegistryOptions::default()).unwrap();
    (dir, store)
}

fn entries(path: &Path) -> usize {
    fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn load_resolve_and_share_layers() {
    let (_dir, store) = store();
    let base = layer(&[("bin/busybox", b"bb")]);
    let app = layer(&[("srv/app", b"app")]);
    let other = layer(&[("srv/other", b"o")]);
    let a_cfg = config_for(&[base.clone(), app.clone()], "app", "2026-01-02T00:00:00Z");
    let b_cfg = config_for(
        &[base.clone(), other.clone()],
        "other",
        "2026-01-01T00:00:00Z",
    );
    let tarball = docker_save(&[
        (&[base.clone(), app.clone()], a_cfg.clone(), &["app:1"]),
        (
            &[base.clone(), other.clone()],
            b_cfg.clone(),
            &["registry.local:5000/team/other:2"],
        ),
    ]);
    let loaded = store.load(&tarball[..]).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].tags, ["app:1"]);
    assert_eq!(loaded[0].id, sha256_digest(&a_cfg));
    assert_eq!(loaded[1].tags, ["registry.local:5000/team/other:2"]);
    assert_eq!(
        entries(&store.root().join("layers")),
        3,
        "the base layer is stored once for both images"
    );
    assert_eq!(entries(&store.root().join("tmp")), 0, "the spool is gone");

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let resolved = rt.block_on(store.resolve("app:1", None)).unwrap();
    assert_eq!(resolved.id, sha256_digest(&a_cfg));
    assert_eq!(resolved.reference, "docker.io/library/app:1");
    assert_eq!(resolved.config.cmd, ["app"]);
    assert_eq!(resolved.layers.len(), 2);
    assert_eq!(
        fs::read(resolved.layers[0].join("bin/busybox")).unwrap(),
        b"bb"
    );
    assert_eq!(
        fs::read(resolved.layers[1].join("srv/app")).unwrap(),
        b"app"
    );

    let listed: Vec<Vec<String>> = store.list().iter().map(|r| r.repo_tags.clone()).collect();
    assert_eq!(
        listed,
        [
            vec!["docker.io/library/app:1".to_string()],
            vec!["registry.local:5000/team/other:2".to_string()]
        ],
        "newest first"
    );

    // Removing one image keeps the layer the other still uses.
    let removed = store.remove("app:1", false).unwrap();
    assert_eq!(
        removed,
        [
            Removal::Untagged("app:1".into()),
            Removal::Deleted(sha256_digest(&a_cfg))
        ]
    );
    assert_eq!(entries(&store.root().join("layers")), 2);
    let other = store.find("registry.local:5000/team/other:2").unwrap();
    for chain in other.chain_ids() {
        assert!(store.has_layer(&chain));
    }
    assert!(matches!(store.find("app:1"), Err(ImageError::NotFound(_))));

    // A reopened store knows the remaining image.
    drop(store);
    let reopened =
        ImageStore::open(_dir.path().join("images"), RegistryOptions::default()).unwrap();
    assert_eq!(reopened.list().len(), 1);
}

#[test]
fn images_in_use_are_not_removed_until_released() {
    let (_dir, store) = store();
    let base = layer(&[("bin/sh", b"sh")]);
    let cfg = config_for(std::slice::from_ref(&base), "sh", "2026-01-01T00:00:00Z");
    let id = sha256_digest(&cfg);
    store
        .load(&docker_save(&[(std::slice::from_ref(&base), cfg, &["alpine:latest"])])[..])
        .unwrap();
    store.hold(&id, "taskaaaaaaaaaaaaaaaa").unwrap();
    store.hold(&id, "taskbbbbbbbbbbbbbbbb").unwrap();
    let err = store.remove("alpine", false).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "conflict: unable to remove repository reference \"alpine\" (must force) - container task"
        ),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            "is using its referenced image {}",
            &hex_of(&id)[..12]
        )),
        "{err}"
    );
    let forced = store.remove(&id, true).unwrap_err().to_string();
    assert!(
        forced.contains("(cannot be forced) - image is being used by running container"),
        "{forced}"
    );
    assert_eq!(
        store.prune(true).unwrap().0,
        [],
        "prune -a spares images in use"
    );

    store.release("taskaaaaaaaaaaaaaaaa");
    assert!(
        store.remove("alpine", false).is_err(),
        "one task still holds it"
    );
    store.release("taskbbbbbbbbbbbbbbbb");
    store.release("taskbbbbbbbbbbbbbbbb"); // twice: harmless
    let removed = store.remove("alpine", false).unwrap();
    assert_eq!(removed.last(), Some(&Removal::Deleted(id.clone())));
    assert_eq!(
        entries(&store.root().join("layers")),
        0,
        "the last user's layers go"
    );
    assert_eq!(
        entries(&store.root().join("blobs/sha256")),
        0,
        "and its blobs"
    );
    assert!(matches!(
        store.hold(&id, "taskc"),
        Err(ImageError::NotFound(_))
    ));
}

#[test]
fn untag_keeps_an_image_with_other_names_and_prune_takes_dangling() {
    let (_dir, store) = store();
    let l = layer(&[("a", b"a")]);
    let cfg = config_for(std::slice::from_ref(&l), "a", "2026-01-01T00:00:00Z");
    store
        .load(&docker_save(&[(std::slice::from_ref(&l), cfg.clone(), &["a:1", "a:2"])])[..])
        .unwrap();
    assert_eq!(
        store.remove("a:1", false).unwrap(),
        [Removal::Untagged("a:1".into())]
    );
    assert!(store.find("a:2").is_ok());
    // Loading the same image with a new tag moves nothing else.
    let l2 = layer(&[("b", b"b")]);
    let cfg2 = config_for(std::slice::from_ref(&l2), "b", "2026-01-02T00:00:00Z");
    store
        .load(&docker_save(&[(std::slice::from_ref(&l2), cfg2.clone(), &["a:2"])])[..])
        .unwrap();
    let old = store.find(&sha256_digest(&cfg)).unwrap();
    assert!(
        old.repo_tags.is_empty(),
        "the tag moved to the new image: the old one dangles"
    );
    let (pruned, freed) = store.prune(false).unwrap();
    assert_eq!(pruned, [Removal::Deleted(sha256_digest(&cfg))]);
    assert!(freed > 0);
    assert!(
        store.find("a:2").is_ok(),
        "tagged images survive prune without -a"
    );
}

#[test]
fn a_layer_that_does_not_match_its_diff_id_leaves_nothing() {
    let (_dir, store) = store();
    let good = layer(&[("bin/sh", b"sh")]);
    let cfg = config_for(std::slice::from_ref(&good), "sh", "2026-01-01T00:00:00Z");
    let evil = layer(&[("bin/sh", b"evil")]);
    // The archive names the layer by its real hash, but the config promises another diff id.
    let tarball = docker_save(&[(&[evil], cfg, &["alpine:latest"])]);
    let err = store.load(&tarball[..]).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(store.list().is_empty());
    assert_eq!(
        entries(&store.root().join("layers")),
        0,
        "no half-made layer"
    );
    assert_eq!(entries(&store.root().join("tmp")), 0, "no temporary left");
}

#[test]
fn a_config_that_does_not_match_its_name_is_refused() {
    let (_dir, store) = store();
    let l = layer(&[("a", b"a")]);
    let cfg = config_for(std::slice::from_ref(&l), "a", "2026-01-01T00:00:00Z");
    let mut tarball = docker_save(&[(&[l], cfg.clone(), &["a:1"])]);
    // Flip one byte of the config's "Cmd" inside the tar.
    let pos = tarball.windows(5).position(|w| w == b"\"Cmd\"").unwrap();
    tarball[pos + 9] = b'z';
    let err = store.load(&tarball[..]).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(store.list().is_empty());
}

#[test]
fn bad_archives_say_what_is_wrong() {
    let (_dir, store) = store();
    let empty = store.load(&b""[..]).unwrap_err().to_string();
    assert!(empty.contains("empty input"), "{empty}");
    let not_image = layer(&[("hello.txt", b"hi")]);
    let err = store.load(&not_image[..]).unwrap_err().to_string();
    assert!(err.contains("neither a docker save tarball"), "{err}");
}

#[test]
fn gzip_archives_and_save_round_trip() {
    let (_dir, store) = store();
    let l = layer(&[("etc/motd", b"hello")]);
    let cfg = config_for(std::slice::from_ref(&l), "cat", "2026-01-01T00:00:00Z");
    let tarball = docker_save(&[(&[l], cfg.clone(), &["motd:1"])]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tarball).unwrap();
    store.load(&gz.finish().unwrap()[..]).unwrap();

    let mut saved = Vec::new();
    crate::image::save_images(&store, &["motd:1".to_string()], &mut saved).unwrap();
    let (_dir2, other) = self::store();
    let loaded = other.load(&saved[..]).unwrap();
    assert_eq!(loaded[0].id, sha256_digest(&cfg));
    assert_eq!(loaded[0].tags, ["motd:1"]);
}

#[test]
fn concurrent_resolves_of_a_missing_image_share_one_answer() {
    let (_dir, store) = store();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // No registry listens on this port of this address: both fail the same way.
    let r = "127.0.0.1:9/nothing:here";
    let (a, b) =
        rt.block_on(async { tokio::join!(store.resolve(r, None), store.resolve(r, None)) });
    let (a, b) = (a.unwrap_err(), b.unwrap_err());
    assert_eq!(a.to_string(), b.to_string());
    assert!(a.to_string().contains("127.0.0.1:9"), "{a}");
}

#[test]
fn a_loaded_image_is_used_when_its_registry_cannot_be_reached() {
    let (_dir, store) = store();
    let l = layer(&[("bin/app", b"app")]);
    let cfg = config_for(std::slice::from_ref(&l), "app", "2026-01-01T00:00:00Z");
    // Nothing listens on 127.0.0.1:9 (loopback only).
    store
        .load(
            &docker_save(&[(
                std::slice::from_ref(&l),
                cfg.clone(),
                &["127.0.0.1:9/team/app:1"],
            )])[..],
        )
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pulled = rt
        .block_on(store.pull("127.0.0.1:9/team/app:1", None))
        .expect("falls back to the local copy");
    assert_eq!(pulled.id, sha256_digest(&cfg));
    let missing = rt.block_on(store.pull("127.0.0.1:9/team/other:1", None));
    assert!(
        matches!(missing, Err(ImageError::Unreachable { .. })),
        "{missing:?}"
    );
}
