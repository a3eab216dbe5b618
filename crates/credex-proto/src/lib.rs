//! The credex shared schema (标准统一), generated from `proto/credex/v1`.
//!
//! # Layout
//! - [`v1`]: the messages (`CreditRecord`, `Entry`, `SignedEntry`, …) and, with the
//!   default `grpc` feature, the tonic clients and servers of Exchange, Witness,
//!   Publisher, View, Audit and Operator.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptor set, for gRPC reflection.
//! - With the `json` feature, `DESCRIPTOR_POOL` (that set decoded) and
//!   `prost_reflect::ReflectMessage` for every message: the proto3 JSON mapping of any
//!   message through `prost_reflect::DynamicMessage` (`credexctl`'s JSON).
//!
//! `credex-core` depends on this crate without the `grpc` feature, so the domain
//! never links tonic.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/credex.v1.rs"));
}

/// The encoded `FileDescriptorSet` of every credex proto file.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/credex_descriptor.bin"));

/// [`FILE_DESCRIPTOR_SET`] decoded, once: every message's `ReflectMessage::descriptor`.
#[cfg(feature = "json")]
pub static DESCRIPTOR_POOL: std::sync::LazyLock<prost_reflect::DescriptorPool> =
    std::sync::LazyLock::new(|| {
        prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .expect("the descriptor set built with this crate decodes")
    });

/// The schema version entries carry in `Entry.schema_version`.
pub const SCHEMA_VERSION: u32 = 1;
