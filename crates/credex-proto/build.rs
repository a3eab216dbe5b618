//! Generates the schema code from `proto/credex/v1` with protox (no system protoc).

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files =
        ["record.proto", "log.proto", "services.proto"].map(|f| root.join("credex/v1").join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;

    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("credex_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    let grpc = env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        .build_transport(grpc)
        .compile_fds(fds)?;
    Ok(())
}
