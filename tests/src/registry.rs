//! The test image and a real local registry, made with `deploy/registry`
//! (the same script `deploy/lab` uses): the image is busybox-static in two
//! layers (the second deletes `/etc/motd` and makes `/var/cache` opaque);
//! the registry is Debian's `docker-registry`, run in a cluster's bridge
//! namespace on [`Cluster::outside_ip`], stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cluster::Cluster;

/// The repository's `deploy/registry` script.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/registry")
}

fn run(args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run deploy/registry");
    assert!(
        out.status.success(),
        "deploy/registry {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Builds the test image as a `docker save` tarball at `out`, tagged `tag`,
/// with an extra layer of `pad_mb` MiB of random data when non-zero;
/// returns its id (`sha256:...`).
pub fn build_image(out: &Path, tag: &str, pad_mb: u32) -> String {
    run(&[
        "image",
        out.to_str().expect("utf-8 path"),
        "--tag",
        tag,
        "--pad-mb",
        &pad_mb.to_string(),
    ])
}

/// A `docker-registry` serving on `outside_ip:port` of a cluster.
pub struct LocalRegistry {
    dir: PathBuf,
    netns: String,
    /// `ip:port` it listens on.
    pub addr: String,
}

impl LocalRegistry {
    /// Starts a registry outside `cluster` on `port`, demanding basic auth
    /// when `htpasswd` (`user:password`) is given.
    pub fn start(cluster: &Cluster, port: u16, htpasswd: Option<&str>) -> LocalRegistry {
        // Gives the bridge namespace its outside address.
        cluster.exec_outside(&["true"]);
        let dir = cluster.dir().join(format!("registry-{port}"));
        let addr = format!("{}:{port}", cluster.outside_ip());
        let mut args = vec![
            "serve".to_string(),
            cluster.bridge_ns().to_string(),
            addr.clone(),
            dir.display().to_string(),
        ];
        if let Some(creds) = htpasswd {
            args.extend(["--htpasswd".to_string(), creds.to_string()]);
        }
        let registry = LocalRegistry {
            dir,
            netns: cluster.bridge_ns().to_string(),
            addr,
        };
        run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        registry
    }

    /// Starts a registry (no auth) inside network namespace `netns` on `ip:port`, storing under
    /// `dir`: for a lab other than a [`Cluster`] (the Docker lab of the side-by-side benchmark).
    pub fn start_in(netns: &str, ip: &str, port: u16, dir: PathBuf) -> LocalRegistry {
        let addr = format!("{ip}:{port}");
        let registry = LocalRegistry {
            dir,
            netns: netns.to_string(),
            addr,
        };
        run(&[
            "serve",
            netns,
            &registry.addr,
            registry.dir.to_str().expect("utf-8 path"),
        ]);
        registry
    }

    /// Copies a `docker save` tarball into the registry as `repo_tag`.
    pub fn push(&self, archive: &Path, repo_tag: &str, creds: Option<&str>) {
        let mut args = vec![
            "push",
            &self.netns,
            archive.to_str().expect("utf-8 path"),
            &self.addr,
            repo_tag,
        ];
        if let Some(c) = creds {
            args.extend(["--creds", c]);
        }
        run(&args);
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", self.dir.to_str().unwrap_or_default()])
            .stdin(Stdio::null())
            .output();
    }
}
