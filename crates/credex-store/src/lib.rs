//! credex-store: sled persistence (being written).
