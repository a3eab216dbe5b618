//! credex-cli: the library behind `credexctl`, shared with the cluster tests and benchmarks.
//!
//! # Layout
//! - [`consortium`]: `consortium init`, a whole dev consortium in one folder.
//! - [`home`]: the consortium folder's layout.
//! - [`pki`]: the dev CA and certificates (rcgen).
//! - [`city`]: member cities on the command line; the four capitals.
//! - [`generator`]: realistic generated credit records.
//! - [`import`]: reading platform exports (CSV with Chinese headers, UTF-8 or GBK) for `credexctl import`.
//! - [`json`]: the JSON Lines record format of `publish` and `gen`.
//! - [`publish`]: streaming publish: records read, batched and sent as they come.
//! - [`output`]: tables and JSON output.
//! - [`health`]: waiting for nodes to serve.
//! - [`mod@bench`]: `bench catchup`, `bench publish`, `bench propagation`.
//! - [`audit`]: how `credexctl audit` shows a verified record (verification is the `credex_audit` crate's).

pub mod audit;
pub mod bench;
pub mod city;
pub mod consortium;
pub mod generator;
pub mod health;
pub mod home;
pub mod import;
pub mod json;
pub mod output;
pub mod pki;
pub mod publish;
