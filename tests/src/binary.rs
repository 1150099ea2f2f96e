//! Locating the `mini` binary under test.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Path of the `mini` binary of this workspace, built (once per test process)
/// with the same cargo that runs the tests, so it is never stale.
pub fn mini_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Ok(path) = std::env::var("MINI_BIN") {
                return PathBuf::from(path);
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
            let status = Command::new(cargo)
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "mini",
                    "--bin",
                    "mini",
                    "--manifest-path",
                    manifest,
                ])
                .status()
                .expect("cannot run cargo to build the mini binary");
            assert!(status.success(), "building the mini binary failed");
            // Test executables live in target/<profile>/deps; the binary one level up.
            let exe = std::env::current_exe().expect("current_exe");
            let profile_dir = exe
                .parent()
                .and_then(|p| p.parent())
                .expect("target/<profile>");
            let path = profile_dir.join("mini");
            assert!(path.exists(), "{} was not built", path.display());
            path
        })
        .clone()
}
