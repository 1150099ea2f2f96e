//! Images end to end (root): pulls from a real local registry (Debian's
//! `docker-registry`) as the Docker Hub mirror and with htpasswd auth,
//! `image load` of a docker-save tarball, `image ls/inspect/save/rm`, and
//! the layer store on disk (whiteout and opaque directory of the test image).

use std::path::Path;
use std::process::Command;

use mini_tests::Cluster;
use mini_tests::check::need_tools;
use mini_tests::registry::{LocalRegistry, build_image};

/// Rows of `image ls --format json` (one JSON object per line, as Docker prints them).
fn images(host: &mini_tests::Host<'_>) -> Vec<serde_json::Value> {
    host.ok(&["image", "ls", "--format", "json"])
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn layer_dirs(state: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(state.join("images/layers"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn alpine_resolves_through_the_registry_mirror_and_private_registries_need_login() {
    need_tools(
        &["docker-registry", "skopeo", "htpasswd", "busybox", "curl"],
        "docker-registry skopeo apache2-utils busybox-static curl",
    );
    let cluster = Cluster::start_with(
        1,
        &[
            "--registry-mirror",
            "http://{outside}:5000",
            "--insecure-registry",
            "{outside}:5001",
        ],
    );
    let hub = LocalRegistry::start(&cluster, 5000, None);
    let private = LocalRegistry::start(&cluster, 5001, Some("alice:s3cret"));
    let archive = cluster.dir().join("alpine.tar");
    let id = build_image(&archive, "alpine:latest", 0);
    hub.push(&archive, "library/alpine:latest", None);
    private.push(&archive, "team/app:1.2", Some("alice:s3cret"));
    let h1 = cluster.host(1);

    // `alpine` is docker.io/library/alpine:latest, served by the mirror.
    let pulled = h1.ok(&["image", "pull", "alpine"]);
    assert!(
        pulled.stdout.contains("Using default tag: latest")
            && pulled
                .stdout
                .contains("Status: Downloaded newer image for alpine:latest")
            && pulled
                .stdout
                .trim_end()
                .ends_with("docker.io/library/alpine:latest"),
        "{pulled:?}"
    );
    let rows = images(&h1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["Repository"], "alpine");
    assert_eq!(rows[0]["Tag"], "latest");
    assert_eq!(rows[0]["ID"], id.trim_start_matches("sha256:")[..12]);
    let table = h1.ok(&["image", "ls"]).stdout;
    assert!(
        table.starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{table}"
    );

    // The layers on disk: the second one hides /etc/motd and makes /var/cache opaque.
    let state = h1.state_dir();
    let layers = layer_dirs(&state);
    assert_eq!(layers.len(), 2, "{layers:?}");
    let upper = layers
        .iter()
        .find(|l| l.join("etc/layer2").exists())
        .expect("the second layer");
    let motd = std::fs::symlink_metadata(upper.join("etc/motd")).expect("whiteout");
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(
        motd.file_type().is_char_device() && motd.rdev() == 0,
        "etc/motd is an overlay whiteout"
    );
    let opaque = Command::new("getfattr")
        .args(["--absolute-names", "-n", "trusted.overlay.opaque"])
        .arg(upper.join("var/cache"))
        .output();
    if let Ok(o) = opaque
        && o.status.success()
    {
        assert!(String::from_utf8_lossy(&o.stdout).contains("\"y\""));
    }

    // An unknown tag: Docker's wording, nothing recorded.
    let err = h1.fails(&["image", "pull", "alpine:nope"]);
    assert!(
        err.contains("manifest for alpine:nope not found: manifest unknown"),
        "{err}"
    );

    // The private registry refuses anonymous pulls and wrong passwords.
    let private_ref = format!("{}/team/app:1.2", private.addr);
    let err = h1.fails(&["image", "pull", &private_ref]);
    assert!(err.contains("pull access denied"), "{err}");
    let config = cluster.dir().join("client-config");
    let login = |user: &str, password: &str| {
        Command::new(mini_tests::binary::mini_binary())
            .args(["login", "-u", user, "-p", password, &private.addr])
            .env("MINI_HOST", h1.socket())
            .env("MINI_CONFIG", &config)
            .output()
            .expect("mini login")
    };
    let wrong = login("alice", "nope");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("failed with status: 401"),
        "{wrong:?}"
    );
    assert!(
        !config.join("config.json").exists(),
        "a failed login stores nothing"
    );
    let right = login("alice", "s3cret");
    assert!(right.status.success(), "{right:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(config.join("config.json"))
        .expect("credentials file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "credentials are private");
    let pulled = Command::new(mini_tests::binary::mini_binary())
        .args(["image", "pull", &private_ref])
        .env("MINI_HOST", h1.socket())
        .env("MINI_CONFIG", &config)
        .output()
        .expect("mini image pull");
    assert!(pulled.status.success(), "{pulled:?}");
    let rows = images(&h1);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        layer_dirs(&state).len(),
        2,
        "the same image from another registry shares the layers"
    );
    drop(private);
    drop(hub);
}

#[test]
fn image_load_of_a_docker_save_tarball_then_ls_save_and_rm() {
    need_tools(
        &["docker-registry", "skopeo", "htpasswd", "busybox", "curl"],
        "docker-registry skopeo apache2-utils busybox-static curl",
    );
    let cluster = Cluster::start(1);
    let h1 = cluster.host(1);
    let archive = cluster.dir().join("web.tar");
    let id = build_image(&archive, "web:1", 0);
    let loaded = h1.ok(&["image", "load", "-i", archive.to_str().unwrap()]);
    assert_eq!(loaded.stdout, "Loaded image: web:1\n");
    let rows = images(&h1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["Repository"], "web");
    assert_eq!(rows[0]["Tag"], "1");

    let inspect = h1.ok(&["image", "inspect", "web:1"]).json();
    assert_eq!(inspect[0]["Id"], id);
    assert_eq!(inspect[0]["Config"]["Cmd"][0], "sh");
    assert_eq!(
        inspect[0]["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(2)
    );

    // save, rm, load from stdin: the same image comes back.
    let saved = cluster.dir().join("saved.tar");
    h1.ok(&["image", "save", "-o", saved.to_str().unwrap(), "web:1"]);
    let removed = h1.ok(&["image", "rm", "web:1"]);
    assert_eq!(
        removed.stdout,
        format!("Untagged: web:1\nDeleted: {id}\n"),
        "Docker's rm lines"
    );
    assert!(images(&h1).is_empty());
    assert!(
        layer_dirs(&h1.state_dir()).is_empty(),
        "the layers went with it"
    );
    let err = h1.fails(&["image", "rm", "web:1"]);
    assert!(err.contains("No such image: web:1"), "{err}");

    let out = Command::new(mini_tests::binary::mini_binary())
        .args(["image", "load"])
        .env("MINI_HOST", h1.socket())
        .stdin(std::fs::File::open(&saved).unwrap())
        .output()
        .expect("mini image load");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Loaded image: web:1\n"
    );
    assert_eq!(images(&h1)[0]["ID"], id.trim_start_matches("sha256:")[..12]);

    // A file that is not an image archive changes nothing.
    let junk = cluster.dir().join("junk.tar");
    std::fs::write(&junk, b"not a tarball at all").unwrap();
    let err = h1.fails(&["image", "load", "-i", junk.to_str().unwrap()]);
    assert!(err.contains("invalid archive"), "{err}");
    assert_eq!(images(&h1).len(), 1);
    let tmp = h1.state_dir().join("images/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0),
        0,
        "nothing half-made in {}",
        tmp.display()
    );
}
