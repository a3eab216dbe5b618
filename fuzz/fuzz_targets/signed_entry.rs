//! A leaf (encoded `SignedEntry`) as a peer sends it: the envelope parser against prost's
//! decoder, and the whole verification under Changsha's log key.
#![no_main]

use credex_core::entry::{self, MAX_LEAF_BYTES};
use credex_core::pb;
use credex_fuzz::fixture;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|leaf: &[u8]| {
    let key = fixture().log_keys[0].public();
    if let Ok(parts) = entry::parse_leaf(leaf) {
        // The one accepted framing is a protobuf encoding any decoder reads the same way.
        let decoded = pb::SignedEntry::decode(leaf).expect("an accepted leaf is a SignedEntry");
        assert_eq!(decoded.entry, parts.entry);
        assert_eq!(decoded.key_id, parts.key_id);
        assert_eq!(decoded.signature, parts.signature);
    }
    match entry::verify_entry(leaf, &key) {
        Ok(verified) => {
            assert!(leaf.len() <= MAX_LEAF_BYTES);
            assert_eq!(verified.leaf, leaf, "a verified leaf is kept verbatim");
            assert!(verified.entry.record.is_some());
            let parts = entry::parse_leaf(leaf).expect("a verified leaf parses");
            assert_eq!(parts.key_id, key.key_id());
        }
        Err(err) => {
            assert!(entry::EntryError::REASON_CODES.contains(&err.reason_code()));
            let _ = err.to_string();
        }
    }
    // The batch path accepts exactly what the single path accepts.
    let single = entry::verify_entry(leaf, &key).map(|v| v.entry);
    let batch = entry::verify_entries(&[leaf, leaf], &key);
    for result in batch {
        assert_eq!(result.map(|v| v.entry), single);
    }
});
