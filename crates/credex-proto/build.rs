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
    let mut builder = tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        .build_transport(grpc);
    if env::var_os("CARGO_FEATURE_JSON").is_some() {
        // What prost-reflect-build does for prost-build: every message names its descriptor,
        // so its proto3 JSON comes from the schema and a new field needs no code.
        let mut names = Vec::new();
        for file in &fds.file {
            let mut pending: Vec<_> = file
                .message_type
                .iter()
                .map(|m| (format!("{}.{}", file.package(), m.name()), m))
                .collect();
            while let Some((name, message)) = pending.pop() {
                pending.extend(
                    message
                        .nested_type
                        .iter()
                        .map(|m| (format!("{name}.{}", m.name()), m)),
                );
                names.push(name);
            }
        }
        for name in names {
            builder = builder.message_attribute(
                format!(".{name}"),
                format!(
                    "#[derive(::prost_reflect::ReflectMessage)] \
                     #[prost_reflect(descriptor_pool = \"crate::DESCRIPTOR_POOL\", \
                     message_name = \"{name}\")]"
                ),
            );
        }
    }
    builder.compile_fds(fds)?;
    Ok(())
}
