//! `mini version`: the client's and the daemon's builds, as `docker version` shows them.

use anyhow::Result;
use mini_proto::v1::{EngineVersion, InfoRequest};
use serde_json::json;

use crate::client::connect;

/// What this binary is built from.
pub fn this_binary() -> EngineVersion {
    EngineVersion {
        version: env!("CARGO_PKG_VERSION").into(),
        api_version: mini_proto::API_VERSION.into(),
        git_commit: env!("MINI_GIT_COMMIT").into(),
        rust_version: env!("MINI_RUST_VERSION").into(),
        os_arch: os_arch(),
    }
}

/// `linux/amd64`, as Go names platforms.
fn os_arch() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

fn lines(v: &EngineVersion, indent: &str) -> String {
    let rows = [
        ("Version:", &v.version),
        ("API version:", &v.api_version),
        ("Rust version:", &v.rust_version),
        ("Git commit:", &v.git_commit),
        ("OS/Arch:", &v.os_arch),
    ];
    rows.iter()
        .map(|(k, val)| format!("{indent}{k:<18}{val}\n"))
        .collect()
}

/// The text `mini version` prints: the client, then the daemon's engine when it answered.
pub fn render(client: &EngineVersion, server: Option<&EngineVersion>) -> String {
    let mut out = format!("Client:\n{}", lines(client, " "));
    if let Some(server) = server {
        out.push_str(&format!("\nServer:\n Engine:\n{}", lines(server, "  ")));
    }
    out
}

fn to_json(v: &EngineVersion) -> serde_json::Value {
    json!({
        "Version": v.version,
        "ApiVersion": v.api_version,
        "RustVersion": v.rust_version,
        "GitCommit": v.git_commit,
        "Os": v.os_arch.split('/').next().unwrap_or_default(),
        "Arch": v.os_arch.split('/').nth(1).unwrap_or_default(),
    })
}

/// Prints the client's version, then asks the daemon for its own; an unreachable daemon is an
/// error after the client part, as `docker version` does.
pub async fn run(host: &str, json_format: bool) -> Result<()> {
    let client_version = this_binary();
    let server = async {
        let mut client = connect(host).await?;
        let info = client.info(InfoRequest {}).await?.into_inner();
        Ok::<_, anyhow::Error>(info.engine.unwrap_or_default())
    }
    .await;
    if json_format {
        let value = json!({
            "Client": to_json(&client_version),
            "Server": server.as_ref().ok().map(to_json),
        });
        crate::output::write_stdout(&format!("{value}\n"));
    } else {
        crate::output::write_stdout(&render(&client_version, server.as_ref().ok()));
    }
    server.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_server_parts_as_docker_lays_them_out() {
        let v = EngineVersion {
            version: "0.1.0".into(),
            api_version: "1.0".into(),
            git_commit: "abc1234".into(),
            rust_version: "rustc 1.95.0".into(),
            os_arch: "linux/amd64".into(),
        };
        let text = render(&v, Some(&v));
        assert_eq!(
            text,
            "Client:\n Version:          0.1.0\n API version:      1.0\n Rust version:     rustc 1.95.0\n Git commit:       abc1234\n OS/Arch:          linux/amd64\n\nServer:\n Engine:\n  Version:          0.1.0\n  API version:      1.0\n  Rust version:     rustc 1.95.0\n  Git commit:       abc1234\n  OS/Arch:          linux/amd64\n"
        );
        assert!(!render(&v, None).contains("Server"));
        let me = this_binary();
        assert_eq!(me.version, env!("CARGO_PKG_VERSION"));
        assert!(me.os_arch.starts_with("linux/"), "{}", me.os_arch);
        assert!(!me.git_commit.is_empty());
    }
}
