//! credex-node (being written).
