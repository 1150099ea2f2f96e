//! Compiles the `.proto` files with the vendored `protoc`, so no system protoc
//! is needed and the global `PROTOC` variable is never touched (raft-proto's
//! build script rejects protoc versions it does not know).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    // Secrets: their Debug (lib.rs) leaves the password out of logs.
    // Join tokens, unlock keys, CA and gossip keys too: their Debug says only whether the
    // secret is there, so no `{:?}` of these messages at any log level prints one. (One call:
    // each call replaces the list.)
    config.skip_debug([
        "mini.v1.ImageRegistryAuth",
        "mini.v1.SecretSpec",
        "mini.v1.Cluster",
        "mini.v1.RootCaRotation",
        "mini.v1.GossipKey",
        "mini.v1.SwarmUnlockKeyResponse",
        "mini.v1.SwarmUnlockRequest",
        "mini.v1.JoinTokenResponse",
        "mini.v1.SwarmJoinRequest",
        "mini.v1.SwarmInitResponse",
        "mini.v1.JoinRequest",
    ]);
    let protos = [
        "proto/objects.proto",
        "proto/control.proto",
        "proto/dispatcher.proto",
        "proto/raft.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure().compile_with_config(config, &protos, &["proto"])?;
    Ok(())
}
