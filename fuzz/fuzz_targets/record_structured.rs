//! Structure-aware record validation: a generated record changed by edits the fuzzer picks
//! (`credex_fuzz::records::FuzzRecord`), so most inputs stay near valid and reach every rule.
#![no_main]

use credex_fuzz::records::{FuzzRecord, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: FuzzRecord| {
    if input.edits.len() > 64 {
        return;
    }
    check(&input.build(), input.origin, input.day);
});
