//! A small image the tests build themselves: busybox-static as a root
//! filesystem, installed as a directory image (`<state>/images/dirs/busybox/
//! latest`) on a host, and what a runc task may leave behind.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The busybox the image is made of (Debian's `busybox-static`).
pub const BUSYBOX: &str = "/usr/bin/busybox";

/// `service create` arguments (image and command) of an image task that
/// answers `GET /` on port 80 with its hostname (busybox httpd).
pub const IMAGE_WEB: &[&str] = &[
    "busybox",
    "sh",
    "-c",
    "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www",
];

/// Installs the busybox image in `state_dir` (a host's `--state-dir`):
/// `rootfs/` holds busybox and its applet links, `/etc/passwd` (root and
/// `www-data`, uid 33) and `/etc/group`; `config.json` sets `PATH` and
/// `Cmd ["sh"]`, as Docker Hub's busybox.
pub fn install_busybox(state_dir: &Path) -> PathBuf {
    let dir = state_dir.join("images/dirs/busybox/latest");
    let rootfs = dir.join("rootfs");
    for d in ["bin", "etc", "tmp", "root", "var/www"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("image dirs");
    }
    let target = rootfs.join("bin/busybox");
    if !target.exists() {
        std::fs::hard_link(BUSYBOX, &target)
            .or_else(|_| std::fs::copy(BUSYBOX, &target).map(|_| ()))
            .expect("busybox-static is needed (apt-get install busybox-static)");
    }
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = rootfs.join("bin").join(applet);
        if applet != "busybox" && !link.exists() {
            std::os::unix::fs::symlink("busybox", link).expect("applet link");
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\n",
    )
    .expect("passwd");
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nwww-data:x:33:\n").expect("group");
    std::fs::write(
        dir.join("config.json"),
        r#"{"config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]}}"#,
    )
    .expect("image config");
    dir
}

/// What runc tasks of a host may leave: container root mounts, bundle
/// dirs, writable layers, runc state, cgroups of its containers. Empty
/// when every container was removed.
pub fn container_leftovers(run_dir: &Path, state_dir: &Path) -> Vec<String> {
    let mut left = Vec::new();
    for m in crate::cluster::mounts_under(run_dir) {
        if m.ends_with("bundle/rootfs") {
            left.push(format!("mount {}", m.display()));
        }
    }
    if let Ok(tasks) = std::fs::read_dir(run_dir.join("tasks")) {
        for t in tasks.flatten() {
            if t.path().join("bundle").exists() {
                left.push(format!("bundle {}", t.path().join("bundle").display()));
            }
        }
    }
    let mut ids = Vec::new();
    if let Ok(containers) = std::fs::read_dir(state_dir.join("containers")) {
        for c in containers.flatten() {
            left.push(format!("writable layer {}", c.path().display()));
            ids.push(c.file_name().to_string_lossy().into_owned());
        }
    }
    if let Ok(states) = std::fs::read_dir(run_dir.join("runc")) {
        for s in states.flatten() {
            left.push(format!("runc state {}", s.path().display()));
            ids.push(s.file_name().to_string_lossy().into_owned());
        }
    }
    for id in ids {
        for controller in ["memory", "pids", "cpu"] {
            let cg = Path::new("/sys/fs/cgroup")
                .join(controller)
                .join("mini")
                .join(&id);
            if cg.exists() {
                left.push(format!("cgroup {}", cg.display()));
            }
        }
    }
    left
}

/// The cgroups of containers under `/sys/fs/cgroup/<controller>/mini`.
pub fn container_cgroups() -> Vec<String> {
    let mut all = Vec::new();
    for controller in ["memory", "pids", "cpu"] {
        if let Ok(entries) =
            std::fs::read_dir(Path::new("/sys/fs/cgroup").join(controller).join("mini"))
        {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    all.push(format!("{controller}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
    }
    all
}

/// The container id of a task (as the runc runtime derives it).
pub fn container_id(task_id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(task_id.as_bytes()))
}

/// Kills and deletes every runc container whose state is under `root`
/// (cleanup of a host whose daemon was killed).
pub fn remove_runc_containers(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        let runc = |args: &[&str]| {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(root)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        runc(&["kill", &id, "KILL"]);
        runc(&["delete", "--force", &id]);
    }
}
