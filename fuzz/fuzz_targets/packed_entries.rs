//! A `PackedEntries` frame as a peer sends it: each leaf block unpacked under a frame limit,
//! as the sync receiver does, and what comes out held against what the block said of itself.
#![no_main]

use credex_core::pb;
use credex_store::{PackedBlock, WireBlock};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

/// The receiver's limit on one block decompressed (its frame limit; small here so that the
/// fuzzer reaches it).
const MAX_RAW: usize = 1 << 16;

fuzz_target!(|frame: &[u8]| {
    let Ok(run) = pb::PackedEntries::decode(frame) else {
        return;
    };
    for b in run.blocks {
        let wire = WireBlock {
            count: b.count,
            raw_len: b.raw_len,
            zstd: b.zstd,
        };
        if let Ok(block) = PackedBlock::unpack(wire.clone(), MAX_RAW) {
            assert!(block.count() >= 1);
            assert!(wire.raw_len as usize <= MAX_RAW);
            assert_eq!(block.count(), wire.count);
            assert_eq!(block.leaves().len(), wire.count as usize);
            let bytes: usize = block.leaves().map(<[u8]>::len).sum();
            assert_eq!(4 + 4 * wire.count as usize + bytes, wire.raw_len as usize);
        }
    }
});
