//! Checks several end-to-end tests share: tools a test needs, a one-line summary of tasks for
//! failure messages, and files on disk that hold a value that must not be there.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Fails the test, naming the Debian packages to install, unless every tool is on the PATH.
pub fn need_tools(tools: &[&str], packages: &str) {
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "{tool} is not installed: apt-get install {packages}");
    }
}

/// A string field of a task (`service ps --format json`), empty when absent.
pub fn field<'a>(t: &'a Value, key: &str) -> &'a str {
    t[key].as_str().unwrap_or_default()
}

/// "name@node desired/current message error" of every task, for failure messages.
pub fn summary(all: &[Value]) -> String {
    all.iter()
        .map(|t| {
            format!(
                "{}@{} {}/{} {:?}{:?}",
                field(t, "name"),
                field(t, "node"),
                field(t, "desired_state"),
                field(t, "current_state"),
                field(t, "message"),
                field(t, "error"),
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every regular file under `dir` whose contents hold `needle`, not descending into other
/// filesystems (the tasks' tmpfs mounts, container root filesystems).
pub fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return found;
    };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.dev() != root.dev() {
                continue;
            }
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file()
                && std::fs::read(&path)
                    .is_ok_and(|data| data.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path);
            }
        }
    }
    found
}
