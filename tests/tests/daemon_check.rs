//! `mini daemon --check` (#15 "no surprise dependencies"): one line per thing the node needs,
//! exit 0 when the daemon can run; a missing `runc` is named with its Debian package and only
//! disables image tasks. Needs root (the kernel features are tried in a throwaway network
//! namespace).

use std::process::{Command, Output};

use mini_tests::binary::mini_binary;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_reports_every_item_and_exits_0_on_this_machine() {
    let out = Command::new(mini_binary())
        .args(["daemon", "--check"])
        .output()
        .expect("run mini daemon --check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    for name in ["vxlan", "bridge", "veth", "nf_tables", "overlay"] {
        assert!(
            lines.iter().any(|l| *l == format!("ok       {name}")),
            "{name} should be present here:\n{stdout}"
        );
    }
    assert!(
        lines.iter().any(|l| l.starts_with("ok       runc (")
            || *l == "missing  runc not found: install the Debian package runc (needed to run image tasks)"),
        "{stdout}"
    );
}

#[test]
fn check_without_runc_names_the_package_and_still_exits_0() {
    // runc hidden for this command only: a private mount namespace binds /dev/null over every
    // runc the daemon could find (PATH, then /usr/sbin, /usr/bin, /sbin), and PATH lacks it.
    let script = r#"for p in "$(command -v runc)" /usr/sbin/runc /usr/bin/runc /sbin/runc /usr/local/bin/runc /usr/local/sbin/runc; do
        [ -n "$p" ] && [ -f "$p" ] && mount --bind /dev/null "$p"
    done
    PATH=/nonexistent exec "$0" daemon --check"#;
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(mini_binary())
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout.lines().any(|l| l
            == "missing  runc not found: install the Debian package runc (needed to run image tasks)"),
        "{stdout}"
    );
    assert!(stdout.contains("ok       nf_tables"), "{stdout}");
}
