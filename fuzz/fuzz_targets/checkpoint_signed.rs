//! Structure-aware checkpoints: the fuzzer picks the tree size, root, cosigners, their
//! timestamps and foreign signature lines; the target signs, cosigns and merges them with the
//! consortium's keys, and verification must then give back exactly what was signed.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use credex_core::merkle::Hash;
use credex_core::note::{self, Checkpoint, NoteError};
use credex_fuzz::fixture;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    city: u8,
    size: u64,
    root: [u8; 32],
    cosigners: Vec<(u8, u64)>,
    /// Lines by keys the consortium does not know: name, key id, signature bytes.
    foreign: Vec<(String, u32, Vec<u8>)>,
}

fuzz_target!(|input: Input| {
    let f = fixture();
    let city = usize::from(input.city % 4);
    let log = &f.log_keys[city];
    let cp = Checkpoint {
        origin: log.name().to_owned(),
        size: input.size,
        root: Hash(input.root),
    };
    let signed = note::sign_checkpoint(&cp, log).expect("a member's checkpoint signs");
    let mut lines = Vec::new();
    let mut expected = Vec::new();
    for &(w, timestamp) in input.cosigners.iter().take(8) {
        let witness = &f.witness_keys[usize::from(w % 4)];
        match note::cosign(&cp, witness, timestamp) {
            Ok(line) => {
                if !expected.iter().any(|(name, _)| name == witness.name()) {
                    expected.push((witness.name().to_owned(), timestamp));
                }
                lines.push(line);
            }
            Err(NoteError::TimestampTooLarge { .. }) => assert!(timestamp > i64::MAX as u64),
            Err(e) => panic!("cosigning fails: {e}"),
        }
    }
    for (name, id, sig) in input.foreign.iter().take(8) {
        lines.push(
            format!(
                "— {name} {}\n",
                BASE64.encode([&id.to_be_bytes()[..], sig].concat())
            )
            .into_bytes(),
        );
    }
    let Ok(merged) = note::add_signature_lines(&signed, &lines) else {
        // Only foreign lines can be malformed (a name with spaces, a newline).
        assert!(!input.foreign.is_empty());
        return;
    };
    let witnesses: Vec<_> = f.witness_keys.iter().map(|k| k.public()).collect();
    match note::verify_checkpoint(&merged, &log.public(), &witnesses) {
        Ok(verified) => {
            assert_eq!(verified.checkpoint, cp);
            let got: Vec<_> = verified
                .cosignatures
                .iter()
                .map(|c| (c.witness.clone(), c.timestamp))
                .collect();
            assert_eq!(got, expected, "every cosignature, in note order");
        }
        // A foreign line may borrow a member's key name and id; then it does not verify.
        Err(NoteError::BadSignature { name, .. } | NoteError::AmbiguousKey { name, .. })
            if input.foreign.iter().any(|(n, _, _)| *n == name) => {}
        Err(NoteError::MalformedNote) if !input.foreign.is_empty() => {}
        Err(e) => panic!("a signed and cosigned checkpoint fails: {e}"),
    }
});
