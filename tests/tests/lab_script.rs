//! `deploy/lab` for real (root only): up, a second up refused, status, env, down,
//! down again, and nothing left — namespaces, mounts, processes, directories.
//!
//! The test's lab has a name of its own (`MINI_LAB_NAME=mlab<pid>`): a user's lab
//! (`mini-lab-*`, `/run/mini-lab`) may run beside it and is never touched.

use std::path::Path;
use std::process::Command;

use mini_tests::Output;
use mini_tests::deploy_lab::DeployLab;

/// This test process's lab name.
fn name() -> String {
    format!("mlab{}", std::process::id())
}

fn lab(args: &[&str]) -> Output {
    the_lab().run(args)
}

fn the_lab() -> DeployLab {
    DeployLab::new(name(), 60)
}

fn lab_namespaces() -> Vec<String> {
    mini_tests::leftovers::namespaces(&name())
}

fn lab_mounts() -> Vec<String> {
    mini_tests::leftovers::mounts(&name())
}

#[test]
fn up_status_down_leaves_nothing() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: deploy/lab creates network namespaces"
    );
    let run = format!("/run/{}", name());
    assert!(
        !Path::new(&run).exists() && lab_namespaces().is_empty(),
        "a lab named {} is already running (namespaces {:?})",
        name(),
        lab_namespaces()
    );
    // A single host needs no join; the multi-host path is exercised by the
    // cluster end-to-end tests with the harness.
    let guard = the_lab().down_on_drop();
    let up = lab(&["up", "-n", "1"]);
    assert!(up.success, "up failed: {}{}", up.stdout, up.stderr);
    assert!(up.stdout.contains("lab-h1"), "{}", up.stdout);
    assert!(
        up.stdout.contains("eval \"$(deploy/lab env)\""),
        "{}",
        up.stdout
    );
    // The one line the lab prints puts `mini` on the PATH and points it at h1.
    let env = lab(&["env"]);
    assert!(env.success, "{}", env.stderr);
    assert!(
        env.stdout
            .contains(&format!("export MINI_HOST=unix://{run}/h1.sock")),
        "{}",
        env.stdout
    );
    let shell = Command::new("bash")
        .args(["-c", &format!("{}\nmini node ls", env.stdout)])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env_remove("MINI_HOST")
        .output()
        .expect("bash");
    let nodes = String::from_utf8_lossy(&shell.stdout);
    assert!(
        shell.status.success() && nodes.contains("lab-h1"),
        "mini node ls after eval of `deploy/lab env`: {nodes}{}",
        String::from_utf8_lossy(&shell.stderr)
    );
    let pid: i32 = std::fs::read_to_string(format!("{run}/h1.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    let again = lab(&["up"]);
    assert!(!again.success, "a second up must refuse");
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);

    let status = lab(&["status"]);
    assert!(status.success, "{}", status.stderr);
    assert!(status.stdout.contains("running (pid"), "{}", status.stdout);
    assert!(status.stdout.contains("Leader"), "{}", status.stdout);

    // The daemon exits on SIGTERM (within 2 s): down never has to SIGKILL it.
    let down = lab(&["down", "--purge"]);
    assert!(down.success, "down failed: {}", down.stderr);
    let said = format!("{}{}", down.stdout, down.stderr);
    assert!(!said.contains("SIGKILL"), "down had to SIGKILL: {said}");
    drop(guard);
    assert_eq!(lab_namespaces(), Vec::<String>::new());
    assert_eq!(lab_mounts(), Vec::<String>::new());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "daemon {pid} still runs"
    );
    assert!(!Path::new(&run).exists());
    assert!(!Path::new(&format!("/var/lib/{}", name())).exists());

    let twice = lab(&["down"]);
    assert!(
        twice.success,
        "a second down must succeed: {}",
        twice.stderr
    );
}

#[test]
fn usage_and_bad_input() {
    let help = lab(&["--help"]);
    assert!(
        help.success && help.stdout.contains("up [-n N]"),
        "{}",
        help.stdout
    );
    let bad = lab(&["frobnicate"]);
    assert!(
        !bad.success && bad.stderr.contains("unknown command"),
        "{}",
        bad.stderr
    );
    let bad_n = lab(&["up", "-n", "zero"]);
    assert!(
        !bad_n.success && bad_n.stderr.contains("-n must be"),
        "{}",
        bad_n.stderr
    );
}

/// A lab that does not fit on the machine says which limit and how to raise it, and changes
/// nothing (here: memory, with the per-host figure set absurdly high).
#[test]
fn a_lab_over_a_limit_names_it_and_changes_nothing() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: deploy/lab checks as root"
    );
    // A lab name of its own: the other tests of this file run beside it with theirs.
    let name = format!("mlim{}", std::process::id());
    let out = DeployLab::new(name.as_str(), 60)
        .with_env("MINI_LAB_MEM_PER_HOST", "100000000")
        .run(&["up", "-n", "2"]);
    let stderr = out.stderr;
    assert!(!out.success, "up must refuse: {stderr}");
    assert!(
        stderr.contains("nothing was changed")
            && stderr.contains("memory: 2 hosts need about")
            && stderr.contains("MemAvailable"),
        "{stderr}"
    );
    assert_eq!(
        mini_tests::leftovers::namespaces(&name),
        Vec::<String>::new()
    );
    assert!(!Path::new(&format!("/run/{name}")).exists());
    assert!(!Path::new(&format!("/var/lib/{name}")).exists());
}

#[test]
fn shellcheck_clean() {
    for name in ["lab", "registry", "install", "vm"] {
        let script = format!("{}/../deploy/{name}", env!("CARGO_MANIFEST_DIR"));
        match Command::new("shellcheck").arg(&script).output() {
            Ok(out) => assert!(
                out.status.success(),
                "shellcheck deploy/{name}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            ),
            Err(e) => panic!(
                "shellcheck is needed to check deploy/{name} ({e}): apt-get install shellcheck"
            ),
        }
    }
}
