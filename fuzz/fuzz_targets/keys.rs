//! Verifier and signer keys in their signed-note text encodings, as pinned in the consortium
//! file and read from key files: whatever parses encodes back to the same text (the key id's
//! hex digits in lowercase; like Go's note package, uppercase ones are read too).
#![no_main]

use credex_core::keys::{PublicKey, SigningKeyPair};
use libfuzzer_sys::fuzz_target;

/// `s` with the key id (the 8 characters after the `skip`-th '+') in lowercase.
fn lowercase_id(s: &str, skip: usize) -> String {
    let start = s.match_indices('+').nth(skip).map_or(0, |(i, _)| i + 1);
    let mut out = s.to_owned();
    out[start..start + 8].make_ascii_lowercase();
    out
}

fuzz_target!(|s: &str| {
    if let Ok(key) = PublicKey::parse(s) {
        assert_eq!(key.encode(), lowercase_id(s, 0));
        assert_eq!(PublicKey::parse(&key.encode()).unwrap(), key);
    }
    if let Ok(pair) = SigningKeyPair::parse(s) {
        assert_eq!(pair.encode(), lowercase_id(s, 2));
        let public = pair.public();
        assert_eq!(PublicKey::parse(&public.encode()).unwrap(), public);
        let sig = pair.sign(b"message");
        assert!(public.verify_strict(b"message", &sig));
    }
});
