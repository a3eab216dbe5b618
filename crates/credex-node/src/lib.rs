//! credex-node: `credexd`, the city node.
//!
//! # Layout
//! - [`server`]: [`server::run`], the whole node as a library function, and its ordered shutdown.
//! - [`config`]: the node config and the consortium file (TOML, `CREDEX_*` overrides).
//! - [`tls`]: rustls mutual TLS, SPIFFE identities, the TLS dialer for tonic.
//! - [`acceptor`]: the TLS listener: handshake deadlines and per-source limits, so floods of
//!   unauthenticated connections cannot starve authenticated ones.
//! - [`auth`]: per-RPC authorisation, and admission within the caller's quotas.
//! - [`quota`]: per-client request rates and calls in flight, keyed by SPIFFE ID.
//! - [`engine`]: the domain service — receive path, publishing, checkpoints, witness, view,
//!   proofs — with no gRPC types.
//! - [`cosign`]: collecting witnesses' cosignatures for this city's checkpoints.
//! - [`sync`]: Exchange.Sync, serving and pulling, with reconnect and a verification pipeline.
//! - [`service`]: the gRPC adapters; the one place engine errors become statuses.
//! - [`metrics`]: Prometheus metrics, process metrics and the gRPC request layer.
//! - [`admin`]: the admin HTTP listener: `/metrics`, `/healthz`, `/readyz`.
//!
//! Only this crate (and `credex-cli`) knows tonic; only `credex-store` knows sled.

pub mod acceptor;
pub mod admin;
pub mod auth;
pub mod config;
pub mod cosign;
pub mod engine;
pub mod metrics;
pub mod quota;
pub mod server;
pub mod service;
pub mod sync;
pub mod tls;
