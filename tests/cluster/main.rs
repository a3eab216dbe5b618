//! Cluster tests: credex nodes through the real gRPC + mutual TLS stack and real stores.
//! One binary; the sandbox in [`sandbox`] starts the nodes.

mod admin;
mod authz;
mod browser;
mod catchup;
mod console_audit;
mod convergence;
mod enforcement;
mod equivocation;
mod floods;
mod hostile_peer;
mod limits;
mod rules;
mod sandbox;
mod security;
mod tampering;
mod tidy;
mod valid_time;
