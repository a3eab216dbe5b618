//! What the credex fuzz targets share: a consortium whose private keys the targets hold (so a
//! structured target can sign what it builds and get past the signature checks), realistic
//! records, and second implementations of the identifier checks to hold the real ones against.
//!
//! # Layout
//! - `fuzz_targets/`: one libFuzzer target per decoder or validator (README "Fuzzing").
//! - `examples/seed.rs`: writes the seed corpora in `corpus/<target>/` from real encoded entries,
//!   notes, proof files, records and config files.
//! - `run.sh`: runs every target for a given time and prints the figures.

use std::sync::OnceLock;

use chrono::NaiveDate;
use credex_cli::city::capitals;
use credex_cli::generator::Generator;
use credex_core::catalogue::Catalogue;
use credex_core::date::Date;
use credex_core::keys::{KeyAlgorithm, SigningKeyPair};
use credex_core::pb;
use credex_core::rules::Rules;
use credex_core::validate::{Mode, Validator};
use credex_core::consortium::{self, Consortium};

/// The consortium the targets use: the four capitals, with keys from fixed seeds.
pub const CONSORTIUM_NAME: &str = "mid-yangtze";

/// The reference date records are generated for and validated on.
pub fn today() -> Date {
    NaiveDate::from_ymd_opt(2026, 5, 1).expect("a calendar date")
}

/// The shared fixture, built once per process.
pub struct Fixture {
    /// The consortium file's text, as `Consortium::parse` reads it.
    pub consortium_toml: String,
    pub consortium: Consortium,
    /// Log and witness keys, in the order of `consortium.members`.
    pub log_keys: Vec<SigningKeyPair>,
    pub witness_keys: Vec<SigningKeyPair>,
    pub rules: Rules,
}

impl Fixture {
    pub fn validator(&self, mode: Mode, origin_index: usize, today: Date) -> Validator<'_> {
        Validator {
            catalogue: Catalogue::builtin(),
            rules: &self.rules,
            mode,
            origin: &self.consortium.members[origin_index % self.consortium.members.len()].city,
            today,
        }
    }
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let cities = capitals();
        let key = |name: String, algorithm, seed: u8| {
            SigningKeyPair::from_seed(&name, algorithm, [seed; 32]).expect("a valid key name")
        };
        let log_keys: Vec<_> = (0u8..)
            .zip(&cities)
            .map(|(i, c)| {
                key(
                    consortium::origin(CONSORTIUM_NAME, &c.id),
                    KeyAlgorithm::Ed25519,
                    2 * i + 1,
                )
            })
            .collect();
        let witness_keys: Vec<_> = (0u8..)
            .zip(&cities)
            .map(|(i, c)| {
                key(
                    consortium::witness_name(CONSORTIUM_NAME, &c.id),
                    KeyAlgorithm::CosignatureV1,
                    2 * i + 2,
                )
            })
            .collect();
        let mut toml = format!(
            "name = \"{CONSORTIUM_NAME}\"\nca_cert = \"ca.pem\"\n\n[rules]\n\
             legacy_uscc_allow_list = [\"91350100M000100Y42\"]\ndecision_days_ahead = 1\n"
        );
        for (i, c) in cities.iter().enumerate() {
            toml += &format!(
                "\n[[members]]\ncity = \"{}\"\nname_zh = \"{}\"\ndivision = \"{}\"\n\
                 log_key = \"{}\"\nwitness_key = \"{}\"\naddress = \"127.0.0.1:{}\"\n",
                c.id,
                c.name,
                c.division,
                log_keys[i].public().encode(),
                witness_keys[i].public().encode(),
                7001 + i,
            );
        }
        // At an absolute path, as a node finds it, so the paths in it are absolute too.
        let consortium = Consortium::parse(&toml, "/etc/credex/consortium.toml".as_ref())
            .unwrap_or_else(|e| panic!("the fixture consortium is invalid: {e}"));
        let rules = consortium.rules();
        Fixture {
            consortium_toml: toml,
            consortium,
            log_keys,
            witness_keys,
            rules,
        }
    })
}

/// `n` realistic records of member `city_index` (valid on [`today`] in publish mode), from
/// the generator behind `credexctl gen`.
pub fn sample_records(city_index: usize, seed: u64, n: usize) -> Vec<pb::CreditRecord> {
    let cities = capitals();
    let mut generator = Generator::new(&cities[city_index % cities.len()], seed, today());
    (0..n).map(|_| generator.record()).collect()
}

/// The entry `city_index` logs at `seq` around it.
pub fn entry_of(city_index: usize, seq: u64, record: pb::CreditRecord) -> pb::Entry {
    pb::Entry {
        origin: capitals()[city_index % 4].id.clone(),
        seq,
        // 2026-05-01 10:00 UTC+8 plus a second per seq.
        logged_at: 1_777_600_800_000 + seq as i64 * 1000,
        schema_version: 1,
        record: Some(record),
    }
}

// ------------------------------------------------------------------ reference identifiers

/// The GB 32100 character set, again: digits and capitals but I, O, S, V, Z.
const USCC_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// A second implementation of the USCC check (GB 32100-2015), written from the standard rather
/// than from `credex_core::ident`: `Some((code uppercased, check character correct))` when `s`
/// has a USCC's shape (18 characters of the set, positions 3-8 digits).
pub fn reference_uscc(s: &str) -> Option<(String, bool)> {
    let code: Vec<u8> = s
        .chars()
        .map(|c| u8::try_from(c.to_ascii_uppercase()).unwrap_or(0))
        .collect();
    if code.len() != 18 {
        return None;
    }
    for (i, &b) in code.iter().enumerate() {
        let ok = if (2..8).contains(&i) {
            b.is_ascii_digit()
        } else {
            USCC_CHARS.contains(&b)
        };
        if !ok {
            return None;
        }
    }
    let value = |b: u8| USCC_CHARS.iter().position(|&c| c == b).expect("checked") as u64;
    // Weight of position i (1-based) is 3^(i-1) mod 31.
    let sum: u64 = (0..17)
        .map(|i| value(code[i]) * 3u64.pow(i as u32) % 31)
        .sum();
    let check = USCC_CHARS[((31 - sum % 31) % 31) as usize];
    let text = String::from_utf8(code.clone()).expect("ascii");
    Some((text, code[17] == check))
}

/// A second implementation of the resident ID number check (GB 11643-1999): the number
/// uppercased when `s` is one (17 digits, a birth date in 1800-2099 at positions 7-14, the
/// MOD 11-2 check character).
pub fn reference_id_number(s: &str) -> Option<String> {
    let id: Vec<u8> = s
        .chars()
        .map(|c| u8::try_from(c.to_ascii_uppercase()).unwrap_or(0))
        .collect();
    if id.len() != 18
        || !id[..17].iter().all(u8::is_ascii_digit)
        || !(id[17].is_ascii_digit() || id[17] == b'X')
    {
        return None;
    }
    let text = String::from_utf8(id.clone()).expect("ascii");
    let year: i32 = text[6..10].parse().ok()?;
    let month: u32 = text[10..12].parse().ok()?;
    let day: u32 = text[12..14].parse().ok()?;
    if !(1800..=2099).contains(&year) || NaiveDate::from_ymd_opt(year, month, day).is_none() {
        return None;
    }
    // Weight of position i (1-based) is 2^(18-i) mod 11.
    let sum: u64 = (0..17)
        .map(|i| u64::from(id[i] - b'0') * (1u64 << (17 - i)) % 11)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize];
    (id[17] == check).then_some(text)
}

// ------------------------------------------------------------------ records

pub mod records;
