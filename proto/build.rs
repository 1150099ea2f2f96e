//! Compiles the `.proto` files with the vendored `protoc`, so no system protoc
//! is needed and the global `PROTOC` variable is never touched (raft-proto's
//! build script rejects protoc versions it does not know).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    // Secrets: their Debug (lib.rs) leaves the password out of logs.
    config.skip_debug(["mini.v1.ImageRegistryAuth", "mini.v1.SecretSpec"]);
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
