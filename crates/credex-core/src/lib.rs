//! credex-core: the pure domain of credex. No I/O, no async runtime, no gRPC, no storage.
//!
//! # Layout
//! - [`ident`]: USCC (GB 32100) and resident ID number (GB 11643) validation, masking, the legacy allow-list.
//! - [`catalogue`]: the shared category catalogue, a versioned data file compiled in.
//! - [`date`]: UTC+8 calendar dates and the injectable [`date::Clock`].
//! - [`consortium`]: the consortium file, the trust root: members, their pinned keys, the origin strings.
//! - [`rules`]: the consortium's rulebook (legacy allow-list, date tolerance, members' divisions).
//! - [`validate`]: record validation; every error names its field path.
//! - [`keys`]: log and witness Ed25519 keys in signed-note key encodings, with key ids.
//! - [`entry`]: entry encoding, Ed25519 signing with domain separation, single and batch verification.
//! - [`merkle`]: RFC 6962 tree hashing, inclusion and consistency proofs over a hash store.
//! - [`note`]: C2SP signed-note checkpoints and tlog-cosignature cosignatures.
//! - [`parallel`]: CPU-bound work over a slice on every core (scoped threads), the core count read once.
//! - [`history`]: a record's versions over time: fixed identity, final revocation, the version in force on a date.
//! - [`policy`]: recognition policies: which lists and categories a node recognises from which origins.
//! - [`view`]: the mutually recognised view as a pure function of records, policy and date.
//!
//! The schema's messages (`credex_proto::v1`) are the domain's record types: the shared
//! schema is the contract between cities, so the core validates and signs those exact types.

pub mod catalogue;
pub mod consortium;
pub mod date;
pub mod entry;
pub mod history;
pub mod ident;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod parallel;
pub mod policy;
pub mod rules;
pub mod validate;
pub mod view;

pub use credex_proto::v1 as pb;
