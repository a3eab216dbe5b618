//! Makes a stopped node lie about its own log, for the fault scenario
//! `deploy/fault/lying-relay.sh`: in one leaf of an origin's log, one digit of a record id's hex
//! part becomes another digit (`0`↔`1`, `2`↔`3`, …), so the entry still decodes and its record
//! is still well formed, but its origin never signed it. The store's size, root and tree hashes
//! stay those of the original entry, so the node goes on serving checkpoints it signed over the
//! original beside an entry that is not it ([`Store::tamper_leaf`]).
//!
//! `cargo run -p credex-store --features test-support --example tamper_leaf -- <store dir> <origin> <record id> [<seq>]`
//!
//! `<store dir>` is a node's `<data dir>/store` (the node stopped: the store is opened for
//! writing); `<origin>` its full name or its last part, the city (`changsha`). The leaf is the
//! one at `<seq>`, which must hold the record id, or else the first that holds it. The altered
//! digit is the first in the id's last 16 bytes. Not the log's last leaf: open checks that one
//! against its stored hash and would refuse the store.

use std::error::Error;
use std::path::Path;

use credex_store::Store;

/// Leaves read at a time when looking for the record id.
const PAGE: usize = 1000;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, city, needle, seq) = match &args[..] {
        [dir, origin, needle] => (dir, origin, needle, None),
        [dir, origin, needle, seq] => (dir, origin, needle, Some(seq.parse::<u64>()?)),
        _ => return Err("usage: tamper_leaf <store dir> <origin> <record id> [<seq>]".into()),
    };
    let dir = Path::new(dir);
    let needle = needle.as_bytes();
    if needle.is_empty() {
        return Err("the record id is empty".into());
    }
    let store = Store::open(dir)?;

    let origins = store.origins();
    let suffix = format!("/{city}");
    let matching: Vec<_> = origins
        .iter()
        .filter(|(name, _)| name == city || name.ends_with(&suffix))
        .collect();
    let [(origin, state)] = matching[..] else {
        let names: Vec<_> = origins.iter().map(|(name, _)| name.as_str()).collect();
        return Err(format!("origin {city}: not one of the store's origins {names:?}").into());
    };

    let seq = match seq {
        Some(seq) => seq,
        None => find(&store, origin, state.size, needle)?.ok_or_else(|| {
            format!(
                "origin {origin}: no leaf holds {}",
                String::from_utf8_lossy(needle)
            )
        })?,
    };
    let mut leaf = store.leaf(origin, seq)?.ok_or_else(|| {
        format!(
            "origin {origin}: no leaf {seq}, the log holds {}",
            state.size
        )
    })?;
    if seq + 1 == state.size {
        return Err(format!(
            "origin {origin}: leaf {seq} is the log's last, which open checks against its stored hash"
        )
        .into());
    }
    let at = position(&leaf, needle).ok_or_else(|| {
        format!(
            "origin {origin}: leaf {seq} does not hold {}",
            String::from_utf8_lossy(needle)
        )
    })?;
    // The id's hex part: its last 16 bytes (`changsha-1bfa613972390db2`).
    let mut hex = at + needle.len().saturating_sub(16)..at + needle.len();
    let digit = hex.find(|&i| leaf[i].is_ascii_digit()).ok_or_else(|| {
        format!(
            "{} has no digit in its last 16 bytes",
            String::from_utf8_lossy(needle)
        )
    })?;
    let was = leaf[digit];
    // An ASCII digit with its lowest bit flipped is a digit still: 0x30..=0x39.
    leaf[digit] ^= 0x01;
    let now = leaf[digit];
    store.tamper_leaf(origin, seq, &leaf)?;
    drop(store);

    // What the node will serve once it restarts: the store opens and hands out the altered leaf.
    let store = Store::open(dir)?;
    if store.leaf(origin, seq)?.as_deref() != Some(&leaf[..]) {
        return Err(format!("origin {origin}: leaf {seq} does not read back altered").into());
    }
    println!(
        "origin {origin}: leaf {seq}: {} now reads {} ('{}' → '{}' at byte {digit} of {})",
        String::from_utf8_lossy(needle),
        String::from_utf8_lossy(&leaf[at..at + needle.len()]),
        char::from(was),
        char::from(now),
        leaf.len()
    );
    Ok(())
}

/// The seq of the first leaf of `origin`'s log holding `needle`.
fn find(
    store: &Store,
    origin: &str,
    size: u64,
    needle: &[u8],
) -> Result<Option<u64>, credex_store::StoreError> {
    let mut start = 0;
    while start < size {
        let page = store.leaves(origin, start, PAGE)?;
        if page.is_empty() {
            break;
        }
        if let Some(i) = page.iter().position(|l| position(l, needle).is_some()) {
            return Ok(Some(start + i as u64));
        }
        start += page.len() as u64;
    }
    Ok(None)
}

fn position(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
