//! The OCI runtime bundle of an image task: `config.json` built with
//! `oci-spec` from the image config and Docker's run options.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxMemoryBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder,
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, UserBuilder,
};

use super::image::{self, ImageTask, MIN_MEMORY_LIMIT, MountKind};
use super::{RuntimeError, TaskSpec};

/// Where `--init`'s init is mounted in the container (Docker's path).
pub const INIT_PATH: &str = "/sbin/docker-init";

/// CFS period Docker uses for `--cpus` / `--limit-cpu`.
const CPU_PERIOD: u64 = 100_000;

/// Docker's default capability set.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// The system calls the default seccomp profile refuses (EPERM): those
/// Docker's default profile leaves out for a container without extra
/// capabilities (kernel modules, keyrings, clocks, mounts and namespaces,
/// tracing other processes, BPF, reboot, swap, ...).
pub const DENIED_SYSCALLS: [&str; 46] = [
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "umount2",
    "unshare",
];

/// The default seccomp profile: every system call allowed but
/// [`DENIED_SYSCALLS`], which fail with EPERM (a deny list covering what
/// Docker's allow-list profile excludes; runc skips names this kernel lacks).
pub fn default_seccomp() -> Result<LinuxSeccomp, oci_spec::OciSpecError> {
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .syscalls(vec![
            LinuxSyscallBuilder::default()
                .names(
                    DENIED_SYSCALLS
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>(),
                )
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(libc::EPERM as u32)
                .build()?,
        ])
        .build()
}

/// The paths a bundle uses, all derived from the task's directory and its
/// container directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundlePaths {
    /// The bundle (`<task dir>/bundle`), holding `config.json`.
    pub bundle: PathBuf,
    /// The root filesystem mount point (`<bundle>/rootfs`).
    pub rootfs: PathBuf,
    /// The writable layer (`<container dir>/upper`).
    pub upper: PathBuf,
    /// overlayfs' work dir (`<container dir>/work`).
    pub work: PathBuf,
}

impl BundlePaths {
    /// The paths of a task whose directory is `dir`.
    pub fn new(dir: &Path, container_dir: &Path) -> Self {
        let bundle = dir.join("bundle");
        BundlePaths {
            rootfs: bundle.join("rootfs"),
            bundle,
            upper: container_dir.join("upper"),
            work: container_dir.join("work"),
        }
    }
}

/// What the checks of a spec found, for the task's error field.
fn invalid(spec: &TaskSpec, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidSpec {
        task_id: spec.task_id.clone(),
        reason: reason.into(),
    }
}

/// The overlayfs mount options of `image`'s layers with the task's upper
/// and work dirs (`lowerdir` lists the topmost layer first).
pub fn overlay_options(layers: &[PathBuf], paths: &BundlePaths) -> String {
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|l| l.display().to_string())
        .collect();
    format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        paths.upper.display(),
        paths.work.display()
    )
}

/// Checks what can be checked before anything is made: command, user,
/// limits, mounts. Returns the command and the resolved user.
pub fn check(
    spec: &TaskSpec,
    image: &ImageTask,
    init_binary: Option<&Path>,
) -> Result<(Vec<String>, image::ResolvedUser), RuntimeError> {
    if image.image.layers.is_empty() {
        return Err(invalid(
            spec,
            format!("image {} has no layers", image.image.reference),
        ));
    }
    let command =
        image::merge_command(&image.image.config, image.entrypoint.as_deref(), &spec.args)
            .map_err(|e| invalid(spec, e))?;
    let user = if image.user.is_empty() {
        &image.image.config.user
    } else {
        &image.user
    };
    let user = image::resolve_user(user, &image.image.layers).map_err(|e| invalid(spec, e))?;
    let limits = image.limits;
    if limits.memory_bytes > 0 && limits.memory_bytes < MIN_MEMORY_LIMIT {
        return Err(invalid(spec, "Minimum memory limit allowed is 6MB"));
    }
    let workdir = workdir(image);
    if !workdir.starts_with('/') {
        return Err(invalid(
            spec,
            format!(
                "the working directory {workdir:?} is invalid, it needs to be an absolute path"
            ),
        ));
    }
    for m in &image.mounts {
        if !m.target.starts_with('/') {
            return Err(invalid(
                spec,
                format!(
                    "invalid mount config: mount path must be absolute: {}",
                    m.target
                ),
            ));
        }
        match m.kind {
            MountKind::Bind if !Path::new(&m.source).exists() => {
                return Err(invalid(
                    spec,
                    format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        m.source
                    ),
                ));
            }
            MountKind::Bind if !m.source.starts_with('/') => {
                return Err(invalid(
                    spec,
                    format!(
                        "invalid mount config for type \"bind\": invalid mount path: '{}' mount path must be absolute",
                        m.source
                    ),
                ));
            }
            MountKind::Volume if m.source.contains('/') || m.source.starts_with('.') => {
                return Err(invalid(
                    spec,
                    format!(
                        "invalid mount config for type \"volume\": invalid volume name {:?}",
                        m.source
                    ),
                ));
            }
            _ => {}
        }
    }
    if image.init && init_binary.is_none_or(|p| !p.exists()) {
        return Err(invalid(
            spec,
            "--init needs tini (the tini package's /usr/bin/tini-static) on this node",
        ));
    }
    Ok((command, user))
}

/// The working directory: `--workdir`, else the image's, else `/`.
pub fn workdir(image: &ImageTask) -> String {
    match (&image.workdir, &image.image.config.working_dir) {
        (w, _) if !w.is_empty() => w.clone(),
        (_, w) if !w.is_empty() => w.clone(),
        _ => "/".into(),
    }
}

/// The directory of a named volume (`<volumes dir>/<name>/_data`, as Docker's).
pub fn volume_dir(volumes_dir: &Path, name: &str) -> PathBuf {
    volumes_dir.join(name).join("_data")
}

/// Builds the bundle's `config.json` for `spec` (already [`check`]ed). Named volumes are
/// bound from `image.volumes_dir`; `memsw` says whether the kernel accounts swap (then swap
/// is limited along with memory, as `--memory-swap` = memory).
#[allow(clippy::too_many_arguments)]
pub fn build_spec(
    spec: &TaskSpec,
    image: &ImageTask,
    command: Vec<String>,
    user: &image::ResolvedUser,
    paths: &BundlePaths,
    container_id: &str,
    init_binary: Option<&Path>,
    memsw: bool,
) -> Result<Spec, RuntimeError> {
    let oci = |e: oci_spec::OciSpecError| invalid(spec, format!("cannot build the OCI spec: {e}"));
    let default_linux = Spec::default().linux().clone().unwrap_or_default();
    let linux = LinuxBuilder::default()
        .namespaces(namespaces(spec).map_err(oci)?)
        .resources(resources(image.limits, memsw).map_err(oci)?)
        .cgroups_path(cgroup_path(container_id))
        .masked_paths(default_linux.masked_paths().clone().unwrap_or_default())
        .readonly_paths(default_linux.readonly_paths().clone().unwrap_or_default())
        .seccomp(default_seccomp().map_err(oci)?)
        .build()
        .map_err(oci)?;

    let mut oci_spec = Spec::default();
    oci_spec.set_hostname(Some(spec.hostname.clone()));
    oci_spec.set_root(Some(
        RootBuilder::default()
            .path(&paths.rootfs)
            .readonly(image.read_only)
            .build()
            .map_err(oci)?,
    ));
    oci_spec.set_process(Some(process(spec, image, command, user).map_err(oci)?));
    oci_spec.set_mounts(Some(mounts(spec, image, init_binary).map_err(oci)?));
    oci_spec.set_linux(Some(linux));
    Ok(oci_spec)
}

/// The container's process: its command (behind tini with `--init`), environment, working
/// directory, user, Docker's default capabilities, and no new privileges.
fn process(
    spec: &TaskSpec,
    image: &ImageTask,
    command: Vec<String>,
    user: &image::ResolvedUser,
) -> Result<oci_spec::runtime::Process, oci_spec::OciSpecError> {
    let env = image::merge_env(&image.image.config, &spec.env, &spec.hostname, &user.home);
    let args = if image.init {
        let mut args = vec![INIT_PATH.to_string(), "--".to_string()];
        args.extend(command);
        args
    } else {
        command
    };
    let caps: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()?;
    ProcessBuilder::default()
        .terminal(false)
        .args(args)
        .env(env)
        .cwd(workdir(image))
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.additional_gids.clone())
                .build()?,
        )
        .capabilities(capabilities)
        .no_new_privileges(true)
        .build()
}

/// The container's mounts: the runtime's defaults (`/proc`, `/dev`, …), the task's
/// `resolv.conf`, `hostname` and `hosts`, its secrets and configs read-only, tini with
/// `--init`, and the service's `--mount`s.
fn mounts(
    spec: &TaskSpec,
    image: &ImageTask,
    init_binary: Option<&Path>,
) -> Result<Vec<oci_spec::runtime::Mount>, oci_spec::OciSpecError> {
    let mut mounts = Spec::default().mounts().clone().unwrap_or_default();
    let bind = |source: &Path, target: &str, ro: bool| {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if ro {
            options.push("ro".into());
        }
        MountBuilder::default()
            .destination(target)
            .typ("bind")
            .source(source)
            .options(options)
            .build()
    };
    for (name, target) in [
        ("resolv.conf", "/etc/resolv.conf"),
        ("hostname", "/etc/hostname"),
        ("hosts", "/etc/hosts"),
    ] {
        mounts.push(bind(&spec.dir.join(name), target, false)?);
    }
    // Secrets and configs: read-only binds of files on the task's tmpfs (Docker's way).
    for f in &spec.files {
        mounts.push(bind(&f.source, &f.target, true)?);
    }
    if image.init
        && let Some(init) = init_binary
    {
        mounts.push(bind(init, INIT_PATH, true)?);
    }
    for m in &image.mounts {
        let mount = match m.kind {
            MountKind::Bind => bind(Path::new(&m.source), &m.target, m.read_only),
            MountKind::Volume => bind(
                &volume_dir(&image.volumes_dir, &m.source),
                &m.target,
                m.read_only,
            ),
            MountKind::Tmpfs => {
                let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
                if m.tmpfs_size > 0 {
                    options.push(format!("size={}", m.tmpfs_size));
                }
                if m.read_only {
                    options.push("ro".into());
                }
                MountBuilder::default()
                    .destination(&m.target)
                    .typ("tmpfs")
                    .source("tmpfs")
                    .options(options)
                    .build()
            }
        };
        mounts.push(mount?);
    }
    Ok(mounts)
}

/// New pid, ipc, uts and mount namespaces; the network namespace is the task's sandbox.
fn namespaces(
    spec: &TaskSpec,
) -> Result<Vec<oci_spec::runtime::LinuxNamespace>, oci_spec::OciSpecError> {
    [
        (LinuxNamespaceType::Pid, None),
        (LinuxNamespaceType::Ipc, None),
        (LinuxNamespaceType::Uts, None),
        (LinuxNamespaceType::Mount, None),
        (LinuxNamespaceType::Network, Some(spec.netns.clone())),
    ]
    .into_iter()
    .map(|(typ, path)| {
        let mut ns = LinuxNamespaceBuilder::default().typ(typ);
        if let Some(path) = path {
            ns = ns.path(path);
        }
        ns.build()
    })
    .collect()
}

/// The cgroup limits: memory (and swap with it when `memsw`), CPU quota, pids.
fn resources(
    limits: image::Limits,
    memsw: bool,
) -> Result<oci_spec::runtime::LinuxResources, oci_spec::OciSpecError> {
    let mut resources = LinuxResourcesBuilder::default();
    if limits.memory_bytes > 0 {
        let bytes = i64::try_from(limits.memory_bytes).unwrap_or(i64::MAX);
        let mut memory = LinuxMemoryBuilder::default().limit(bytes);
        if memsw {
            memory = memory.swap(bytes);
        }
        resources = resources.memory(memory.build()?);
    }
    if limits.nano_cpus > 0 {
        let quota = (limits.nano_cpus as u128 * CPU_PERIOD as u128 / 1_000_000_000) as i64;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(quota.max(1000))
                .period(CPU_PERIOD)
                .build()?,
        );
    }
    if limits.pids > 0 {
        resources = resources.pids(
            LinuxPidsBuilder::default()
                .limit(i64::try_from(limits.pids).unwrap_or(i64::MAX))
                .build()?,
        );
    }
    resources.build()
}

/// The cgroup (under every controller's root) of a container.
pub fn cgroup_path(container_id: &str) -> PathBuf {
    PathBuf::from(format!("/mini/{container_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::image::{ImageConfig, ImageRootfs, Limits, Mount};

    fn task(dir: &Path) -> (TaskSpec, ImageTask) {
        let layer = dir.join("layer");
        std::fs::create_dir_all(layer.join("etc")).unwrap();
        std::fs::write(
            layer.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n",
        )
        .unwrap();
        let image = ImageTask {
            image: ImageRootfs {
                id: "sha256:abc".into(),
                reference: "busybox:latest".into(),
                layers: vec![layer],
                config: ImageConfig {
                    env: vec!["PATH=/bin".into(), "FROM_IMAGE=1".into()],
                    cmd: vec!["sh".into()],
                    working_dir: "/srv".into(),
                    ..Default::default()
                },
            },
            user: "www".into(),
            mounts: vec![
                Mount {
                    kind: MountKind::Tmpfs,
                    source: String::new(),
                    target: "/scratch".into(),
                    read_only: false,
                    tmpfs_size: 1 << 20,
                },
                Mount {
                    kind: MountKind::Volume,
                    source: "data".into(),
                    target: "/data".into(),
                    read_only: true,
                    tmpfs_size: 0,
                },
            ],
            read_only: true,
            limits: Limits {
                nano_cpus: 500_000_000,
                memory_bytes: 64 << 20,
                pids: 100,
            },
            volumes_dir: dir.join("volumes"),
            container_dir: dir.join("container"),
            ..Default::default()
        };
        let spec = TaskSpec {
            task_id: "t1".into(),
            hostname: "0123456789ab".into(),
            netns: "/run/mini/netns/t1".into(),
            args: vec!["httpd".into(), "-f".into()],
            env: vec!["FROM_SERVICE=2".into()],
            dir: dir.join("task"),
            image: Some(image.clone()),
            ..Default::default()
        };
        (spec, image)
    }

    #[test]
    fn bundle_carries_dockers_run_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, image) = task(dir.path());
        let (command, user) = check(&spec, &image, None).unwrap();
        let paths = BundlePaths::new(&spec.dir, &image.container_dir);
        let oci = build_spec(&spec, &image, command, &user, &paths, "cid", None, true).unwrap();
        let json = serde_json::to_value(&oci).unwrap();
        let process = &json["process"];
        assert_eq!(process["args"], serde_json::json!(["httpd", "-f"]));
        assert_eq!(process["cwd"], "/srv");
        assert_eq!(process["user"]["uid"], 33);
        assert_eq!(process["noNewPrivileges"], true);
        assert_eq!(
            process["env"],
            serde_json::json!([
                "PATH=/bin",
                "HOSTNAME=0123456789ab",
                "FROM_IMAGE=1",
                "FROM_SERVICE=2",
                "HOME=/var/www"
            ])
        );
        let caps = process["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(caps.len(), 14);
        assert!(caps.contains(&serde_json::json!("CAP_NET_BIND_SERVICE")));
        assert!(!caps.contains(&serde_json::json!("CAP_SYS_ADMIN")));
        assert_eq!(json["hostname"], "0123456789ab");
        assert_eq!(json["root"]["readonly"], true);
        let namespaces = json["linux"]["namespaces"].as_array().unwrap();
        let net = namespaces.iter().find(|n| n["type"] == "network").unwrap();
        assert_eq!(net["path"], "/run/mini/netns/t1");
        let resources = &json["linux"]["resources"];
        assert_eq!(resources["memory"]["limit"], 64 << 20);
        assert_eq!(resources["memory"]["swap"], 64 << 20);
        assert_eq!(resources["cpu"]["quota"], 50_000);
        assert_eq!(resources["cpu"]["period"], 100_000);
        assert_eq!(resources["pids"]["limit"], 100);
        assert_eq!(json["linux"]["cgroupsPath"], "/mini/cid");
        let seccomp = &json["linux"]["seccomp"];
        assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(seccomp["syscalls"][0]["action"], "SCMP_ACT_ERRNO");
        let denied = seccomp["syscalls"][0]["names"].as_array().unwrap();
        for name in ["mount", "ptrace", "bpf", "kexec_load", "unshare"] {
            assert!(denied.contains(&serde_json::json!(name)), "{name}");
        }
        let mounts = json["mounts"].as_array().unwrap();
        let find = |dest: &str| mounts.iter().find(|m| m["destination"] == dest).cloned();
        assert_eq!(find("/proc").unwrap()["type"], "proc");
        assert_eq!(
            find("/etc/resolv.conf").unwrap()["source"],
            spec.dir.join("resolv.conf").display().to_string()
        );
        assert_eq!(find("/scratch").unwrap()["type"], "tmpfs");
        let data = find("/data").unwrap();
        assert_eq!(
            data["source"],
            dir.path().join("volumes/data/_data").display().to_string()
        );
        assert!(
            data["options"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("ro"))
        );
        assert_eq!(
            overlay_options(&[PathBuf::from("/l1"), PathBuf::from("/l2")], &paths),
            format!(
                "lowerdir=/l2:/l1,upperdir={},workdir={}",
                paths.upper.display(),
                paths.work.display()
            )
        );
    }

    #[test]
    fn secrets_and_configs_are_read_only_binds() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spec, image) = task(dir.path());
        let source = dir.path().join("task/secrets/secret-0");
        spec.files = vec![super::super::TaskFile {
            source: source.clone(),
            target: "/run/secrets/db".into(),
        }];
        let (command, user) = check(&spec, &image, None).unwrap();
        let paths = BundlePaths::new(&spec.dir, &image.container_dir);
        let oci = build_spec(&spec, &image, command, &user, &paths, "cid", None, true).unwrap();
        let json = serde_json::to_value(&oci).unwrap();
        let mounts = json["mounts"].as_array().unwrap();
        let secret = mounts
            .iter()
            .find(|m| m["destination"] == "/run/secrets/db")
            .expect("the secret is mounted");
        assert_eq!(secret["type"], "bind");
        assert_eq!(secret["source"], source.display().to_string());
        assert!(
            secret["options"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("ro"))
        );
    }

    #[test]
    fn init_runs_the_command_under_tini() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, mut image) = task(dir.path());
        image.init = true;
        let tini = dir.path().join("tini");
        std::fs::write(&tini, "").unwrap();
        let (command, user) = check(&spec, &image, Some(&tini)).unwrap();
        let paths = BundlePaths::new(&spec.dir, &image.container_dir);
        let oci = build_spec(
            &spec,
            &image,
            command,
            &user,
            &paths,
            "cid",
            Some(&tini),
            false,
        )
        .unwrap();
        let json = serde_json::to_value(&oci).unwrap();
        assert_eq!(
            json["process"]["args"],
            serde_json::json!([INIT_PATH, "--", "httpd", "-f"])
        );
        assert!(json["linux"]["resources"]["memory"]["swap"].is_null());
        let missing = check(&spec, &image, Some(&dir.path().join("nope"))).unwrap_err();
        assert!(
            missing.to_string().contains("--init needs tini"),
            "{missing}"
        );
    }

    #[test]
    fn bad_input_is_refused_with_dockers_words() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, image) = task(dir.path());
        let mut low = image.clone();
        low.limits.memory_bytes = 4 << 20;
        assert!(
            check(&spec, &low, None)
                .unwrap_err()
                .to_string()
                .contains("Minimum memory limit allowed is 6MB")
        );
        let mut bind = image.clone();
        bind.mounts.push(Mount {
            kind: MountKind::Bind,
            source: "/no/such/dir".into(),
            target: "/x".into(),
            read_only: false,
            tmpfs_size: 0,
        });
        let err = check(&spec, &bind, None).unwrap_err().to_string();
        assert!(
            err.contains("invalid mount config for type \"bind\": bind source path does not exist: /no/such/dir"),
            "{err}"
        );
        let mut user = image.clone();
        user.user = "nobody".into();
        assert!(
            check(&spec, &user, None)
                .unwrap_err()
                .to_string()
                .contains("unable to find user nobody")
        );
        let mut nothing = image;
        nothing.image.config.cmd.clear();
        let mut spec = spec;
        spec.args.clear();
        assert!(
            check(&spec, &nothing, None)
                .unwrap_err()
                .to_string()
                .contains("no command specified")
        );
    }
}
