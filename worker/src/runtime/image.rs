//! What an image task runs: the image (layers and config) and Docker's run
//! options, and how they combine as `docker run` combines them (env,
//! entrypoint and command, user, working directory).

use std::path::{Path, PathBuf};

/// The parts of an OCI image config a task uses: the image store's one definition.
pub use crate::image::ImageConfig;

/// An image ready to run: its unpacked layers and its config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRootfs {
    /// The image id (digest of its config).
    pub id: String,
    /// The reference it was resolved from.
    pub reference: String,
    /// Unpacked layer directories, lowest first.
    pub layers: Vec<PathBuf>,
    /// The image's config.
    pub config: ImageConfig,
}

/// The kind of a `--mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// `type=bind`: a path of the node.
    Bind,
    /// `type=volume`: a named volume under the state dir (anonymous when
    /// the source is empty), created on first use.
    Volume,
    /// `type=tmpfs`: a fresh tmpfs.
    Tmpfs,
}

/// One `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Its type.
    pub kind: MountKind,
    /// Bind: the node's path; volume: the volume's name; tmpfs: unused.
    pub source: String,
    /// Where it appears in the task.
    pub target: String,
    /// `readonly`.
    pub read_only: bool,
    /// tmpfs: `tmpfs-size` in bytes (0: the kernel's default).
    pub tmpfs_size: u64,
}

/// `--limit-*`: cgroup limits; 0 means none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// `--limit-cpu`, in billionths of a CPU.
    pub nano_cpus: u64,
    /// `--limit-memory`, in bytes.
    pub memory_bytes: u64,
    /// `--limit-pids`.
    pub pids: u64,
}

/// The smallest `--limit-memory` Docker accepts (6 MiB).
pub const MIN_MEMORY_LIMIT: u64 = 6 * 1024 * 1024;

/// `--log-opt max-size` and `max-file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// Bytes after which the log is rotated (0: never).
    pub max_size: u64,
    /// Files kept, the live one included (at least 1).
    pub max_file: u32,
}

impl Default for LogOptions {
    /// Docker's documented defaults for `json-file` with rotation: 10m, 3.
    fn default() -> Self {
        LogOptions {
            max_size: 10 * 1024 * 1024,
            max_file: 3,
        }
    }
}

/// An image task: the image and Docker's run options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageTask {
    /// The image.
    pub image: ImageRootfs,
    /// `--entrypoint`: `None` keeps the image's; `Some(vec![])` (from
    /// `--entrypoint ""`) clears it.
    pub entrypoint: Option<Vec<String>>,
    /// `--user` (empty: the image's).
    pub user: String,
    /// `--workdir` (empty: the image's).
    pub workdir: String,
    /// `--mount`s.
    pub mounts: Vec<Mount>,
    /// `--read-only`: the root filesystem is mounted read-only.
    pub read_only: bool,
    /// `--limit-cpu`, `--limit-memory`, `--limit-pids`.
    pub limits: Limits,
    /// `--init`: an init (tini) runs as PID 1 and reaps zombies.
    pub init: bool,
    /// The node's directory of named volumes (`<state>/volumes`).
    pub volumes_dir: PathBuf,
    /// The directory of the task's writable layer (`<state>/containers/<id>`).
    pub container_dir: PathBuf,
    /// `--log-opt max-size`, `max-file`.
    pub log: LogOptions,
}

/// The `--entrypoint` of a container spec as [`ImageTask::entrypoint`] takes
/// it: empty keeps the image's; `[""]` (what `--entrypoint ""` stores, as
/// `docker run` sends it) clears it; anything else replaces it.
pub fn entrypoint_override(spec: &[String]) -> Option<Vec<String>> {
    match spec {
        [] => None,
        [only] if only.is_empty() => Some(Vec::new()),
        words => Some(words.to_vec()),
    }
}

/// The command a container runs, merged as Docker merges it: the
/// entrypoint (`--entrypoint`, else the image's), then the arguments given
/// after the image (else the image's `Cmd`, unless `--entrypoint` was
/// given, which clears the image's `Cmd`).
pub fn merge_command(
    image: &ImageConfig,
    entrypoint: Option<&[String]>,
    args: &[String],
) -> Result<Vec<String>, String> {
    let (entrypoint, default_cmd): (&[String], &[String]) = match entrypoint {
        Some(e) => (e, &[]),
        None => (&image.entrypoint, &image.cmd),
    };
    let cmd = if args.is_empty() { default_cmd } else { args };
    let command: Vec<String> = entrypoint.iter().chain(cmd).cloned().collect();
    if command.is_empty() {
        return Err("no command specified".into());
    }
    Ok(command)
}

/// The environment of a container, as Docker builds it: `PATH` (Docker's
/// default unless the image or service sets it), `HOSTNAME`, the image's
/// `Env`, the service's `--env` (a later key replaces an earlier one), and
/// `HOME` from the user's entry unless set.
pub fn merge_env(
    image: &ImageConfig,
    service: &[String],
    hostname: &str,
    home: &str,
) -> Vec<String> {
    let defaults = [
        format!("PATH={}", super::DEFAULT_PATH),
        format!("HOSTNAME={hostname}"),
    ];
    let mut env = super::spec::merge_env(
        defaults
            .iter()
            .chain(&image.env)
            .chain(service)
            .map(String::as_str),
    );
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), home.into()));
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// A user resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary gids (the groups listing the user by name).
    pub additional_gids: Vec<u32>,
    /// The home directory from the user's passwd entry (`/` if none, `/root` for root).
    pub home: String,
}

/// Resolves `user` (`uid`, `uid:gid`, `name`, `name:group`, empty = root)
/// against the `/etc/passwd` and `/etc/group` of the image (the topmost
/// layer holding each file wins), as Docker does.
pub fn resolve_user(user: &str, layers: &[PathBuf]) -> Result<ResolvedUser, String> {
    let passwd = read_from_layers(layers, "etc/passwd");
    let group = read_from_layers(layers, "etc/group");
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let by_name = entries.iter().find(|f| f[0] == user_part);
    let (uid, mut gid, name, home) = match (user_part.parse::<u32>(), by_name) {
        (_, Some(f)) => (
            f[2].parse()
                .map_err(|_| format!("bad uid for user {user_part:?} in /etc/passwd"))?,
            f[3].parse().unwrap_or(0),
            Some(f[0].to_string()),
            f[5].to_string(),
        ),
        (Ok(uid), None) => match entries.iter().find(|f| f[2] == uid.to_string()) {
            Some(f) => (
                uid,
                f[3].parse().unwrap_or(0),
                Some(f[0].to_string()),
                f[5].to_string(),
            ),
            None => (uid, 0, None, "/".into()),
        },
        (Err(_), None) => {
            return Err(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            ));
        }
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        };
    }
    let additional_gids = match &name {
        Some(name) => groups
            .iter()
            .filter(|f| f[3].split(',').any(|m| m == name))
            .filter_map(|f| f[2].parse().ok())
            .filter(|g| *g != gid)
            .collect(),
        None => Vec::new(),
    };
    let home = if home.is_empty() {
        if uid == 0 { "/root".into() } else { "/".into() }
    } else {
        home
    };
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// The contents of `rel` in the topmost layer that has it (empty if none).
fn read_from_layers(layers: &[PathBuf], rel: &str) -> String {
    layers
        .iter()
        .rev()
        .map(|l| l.join(rel))
        .find(|p| Path::new(p).exists())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    type Case = (
        ImageConfig,
        Option<Vec<String>>,
        Vec<String>,
        Result<Vec<String>, String>,
    );

    /// Docker's table (docs: "Understand how CMD and ENTRYPOINT interact",
    /// plus `--entrypoint` clearing the image's CMD).
    #[test]
    fn entrypoint_and_cmd_merge_as_docker_does() {
        let image = |e: &[&str], c: &[&str]| ImageConfig {
            entrypoint: v(e),
            cmd: v(c),
            ..Default::default()
        };
        let none: &[&str] = &[];
        let cases: Vec<Case> = vec![
            // No ENTRYPOINT: CMD runs; args replace it.
            (
                image(none, &["sh", "-c", "httpd"]),
                None,
                vec![],
                Ok(v(&["sh", "-c", "httpd"])),
            ),
            (
                image(none, &["sh"]),
                None,
                v(&["echo", "hi"]),
                Ok(v(&["echo", "hi"])),
            ),
            // ENTRYPOINT exec form: CMD is its default arguments; args replace them.
            (
                image(&["/bin/ep"], &["-x"]),
                None,
                vec![],
                Ok(v(&["/bin/ep", "-x"])),
            ),
            (
                image(&["/bin/ep"], &["-x"]),
                None,
                v(&["-y"]),
                Ok(v(&["/bin/ep", "-y"])),
            ),
            (image(&["/bin/ep"], none), None, vec![], Ok(v(&["/bin/ep"]))),
            // --entrypoint overrides and clears the image's CMD.
            (
                image(&["/bin/ep"], &["-x"]),
                Some(v(&["sh"])),
                vec![],
                Ok(v(&["sh"])),
            ),
            (
                image(&["/bin/ep"], &["-x"]),
                Some(v(&["sh"])),
                v(&["-c", "id"]),
                Ok(v(&["sh", "-c", "id"])),
            ),
            // --entrypoint "" resets it: the args alone run.
            (
                image(&["/bin/ep"], &["-x"]),
                Some(vec![]),
                v(&["id"]),
                Ok(v(&["id"])),
            ),
            // Nothing at all to run.
            (
                image(none, none),
                None,
                vec![],
                Err("no command specified".into()),
            ),
            (
                image(&["/bin/ep"], &["-x"]),
                Some(vec![]),
                vec![],
                Err("no command specified".into()),
            ),
        ];
        for (i, (config, entrypoint, args, want)) in cases.into_iter().enumerate() {
            let got = merge_command(&config, entrypoint.as_deref(), &args);
            assert_eq!(got, want, "case {i}: {config:?} {entrypoint:?} {args:?}");
        }
    }

    /// What `--entrypoint` stores in the container spec, merged: nothing keeps
    /// the image's, `[""]` (`--entrypoint ""`) clears it and the image's CMD.
    #[test]
    fn entrypoint_of_the_spec_merges_as_docker_does() {
        let config = ImageConfig {
            entrypoint: v(&["/bin/ep"]),
            cmd: v(&["-x"]),
            ..Default::default()
        };
        let merged = |spec: &[&str], args: &[&str]| {
            merge_command(&config, entrypoint_override(&v(spec)).as_deref(), &v(args))
        };
        assert_eq!(merged(&[], &[]), Ok(v(&["/bin/ep", "-x"])));
        assert_eq!(merged(&[], &["-y"]), Ok(v(&["/bin/ep", "-y"])));
        assert_eq!(merged(&[""], &["id", "-u"]), Ok(v(&["id", "-u"])));
        assert_eq!(merged(&[""], &[]), Err("no command specified".into()));
        assert_eq!(merged(&["sh", "-c"], &["id"]), Ok(v(&["sh", "-c", "id"])));
        assert_eq!(merged(&["sh"], &[]), Ok(v(&["sh"])));
    }

    #[test]
    fn env_is_defaults_then_image_then_service() {
        let image = ImageConfig {
            env: v(&["PATH=/img/bin", "A=image", "B=image"]),
            ..Default::default()
        };
        let env = merge_env(&image, &v(&["B=service", "C=3"]), "abc123def456", "/root");
        assert_eq!(
            env,
            v(&[
                "PATH=/img/bin",
                "HOSTNAME=abc123def456",
                "A=image",
                "B=service",
                "C=3",
                "HOME=/root"
            ])
        );
        let env = merge_env(&ImageConfig::default(), &v(&["HOME=/srv"]), "h", "/root");
        assert_eq!(env[0], format!("PATH={}", crate::runtime::DEFAULT_PATH));
        assert_eq!(env.last().unwrap(), "HOME=/srv");
    }

    #[test]
    fn users_resolve_against_the_image_files() {
        let dir = tempfile::tempdir().unwrap();
        let (low, high) = (dir.path().join("l1"), dir.path().join("l2"));
        std::fs::create_dir_all(low.join("etc")).unwrap();
        std::fs::create_dir_all(high.join("etc")).unwrap();
        std::fs::write(low.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(
            high.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            high.join("etc/group"),
            "root:x:0:\nwww:x:33:\nlogs:x:40:www\n",
        )
        .unwrap();
        let layers = vec![low, high];
        let www = resolve_user("www", &layers).unwrap();
        assert_eq!((www.uid, www.gid, www.home.as_str()), (33, 33, "/var/www"));
        assert_eq!(www.additional_gids, vec![40]);
        let root = resolve_user("", &layers).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let numeric = resolve_user("1000:logs", &layers).unwrap();
        assert_eq!(
            (numeric.uid, numeric.gid, numeric.home.as_str()),
            (1000, 40, "/")
        );
        assert!(
            resolve_user("nobody", &layers)
                .unwrap_err()
                .contains("unable to find user nobody")
        );
        assert!(
            resolve_user("www:nogroup", &layers)
                .unwrap_err()
                .contains("unable to find group")
        );
    }
}
