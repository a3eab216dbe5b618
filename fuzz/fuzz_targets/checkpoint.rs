//! Checkpoint notes and cosignature lines as peers and witnesses send them: body parsing
//! (canonical, so it writes back byte for byte), verification under Changsha's log key and
//! every witness key, and merging signature lines. The input is a note, then optionally a NUL
//! byte and signature lines to add, separated by NUL bytes.
#![no_main]

use credex_core::note::{self, Checkpoint, MAX_NOTE_BYTES, NoteError};
use credex_fuzz::fixture;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut parts = data.split(|&b| b == 0);
    let note = parts.next().unwrap_or_default();
    let lines: Vec<Vec<u8>> = parts.map(<[u8]>::to_vec).collect();

    if let Ok(cp) = Checkpoint::parse_body(note) {
        assert_eq!(cp.body(), note, "checkpoint bodies have one encoding");
    }
    let origin = f.log_keys[0].public();
    let witnesses: Vec<_> = f.witness_keys.iter().map(|k| k.public()).collect();
    let verified = note::verify_checkpoint(note, &origin, &witnesses);
    if let Ok(signed) = &verified {
        assert_eq!(signed.note, note);
        assert_eq!(signed.checkpoint.origin, origin.name());
        for c in &signed.cosignatures {
            assert!(
                witnesses
                    .iter()
                    .any(|w| w.name() == c.witness && w.key_id() == c.key_id)
            );
        }
    }
    if let Err(e) = &verified {
        let _ = e.to_string();
    }

    match note::add_signature_lines(note, &lines) {
        Ok(merged) => {
            assert!(merged.starts_with(note), "existing lines stay verbatim");
            assert!(merged.len() <= MAX_NOTE_BYTES);
            assert_eq!(
                note::add_signature_lines(&merged, &lines).unwrap(),
                merged,
                "adding the same lines twice adds nothing"
            );
            if let Ok(before) = &verified {
                match note::verify_checkpoint(&merged, &origin, &witnesses) {
                    Ok(after) => {
                        assert_eq!(after.checkpoint, before.checkpoint);
                        assert!(after.cosignatures.len() >= before.cosignatures.len());
                    }
                    Err(NoteError::BadSignature { .. } | NoteError::AmbiguousKey { .. }) => {}
                    Err(e) => panic!("a verified note with lines added fails with {e}"),
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
