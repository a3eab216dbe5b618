//! The cluster tests live in `cluster/`; this crate has no library code.
