//! Log and witness Ed25519 keys in the C2SP signed-note key encodings, with their key ids.
//!
//! # Encodings
//! - Verifier key ([C2SP signed-note](https://c2sp.org/signed-note)):
//!   `<name>+<key id>+<base64(algorithm byte || 32-byte public key)>`.
//! - Signer key: `PRIVATE+KEY+<name>+<key id>+<base64(algorithm byte || 32-byte seed)>`. C2SP
//!   leaves private keys out; this is the encoding of Go's `golang.org/x/mod/sumdb/note`, which
//!   the `signed_note` crate follows too, so keys move between those tools and credex.
//!
//! The key id is `SHA-256(name || 0x0A || algorithm byte || public key)[:4]`, written as 8 hex
//! digits ([`signed_note::key_id`]). A signer key carries the id of its public key, and parsing
//! either encoding rejects an id that does not match, which catches a key pasted under the wrong
//! name.
//!
//! # Algorithms
//! Every key is an Ed25519 key pair; the algorithm byte says what it signs, and since the byte
//! enters the key id, one key pair used for both would still have two ids:
//! - [`KeyAlgorithm::Ed25519`] (0x01): a city's log key, signing checkpoints as signed-note
//!   Ed25519 signatures and entries.
//! - [`KeyAlgorithm::CosignatureV1`] (0x04): a city's witness key, signing C2SP
//!   `tlog-cosignature` cosignatures. Go's `note` package has no signer key encoding for it; the
//!   one here is the same layout with algorithm byte 0x04.
//!
//! # Which public keys exist
//! [`PublicKey`] only holds keys an honest key generator can produce, so code receiving one
//! needs no key checks of its own. Parsing rejects a point encoded non-canonically (two strings
//! for one key would have two key ids), a small-order ("weak") point, under which one signature
//! verifies for many messages, and a point with a small-order component. An honest public key is
//! `[a]B` and lies in the prime-order subgroup; a key with a torsion component admits signatures
//! that cofactored verifiers accept and `verify_strict` rejects, so nodes could disagree about
//! them.
//!
//! # Secrets
//! A [`SigningKeyPair`]'s `Debug` shows only its public half, and no [`KeyError`] quotes the text
//! it failed to parse: a signer key mistyped into a verifier-key field must not reach a log.

use base64::prelude::*;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use std::fmt;
use std::str::FromStr;

/// What every signer key starts with.
pub const SIGNER_KEY_PREFIX: &str = "PRIVATE+KEY+";

/// The length of the key data behind the base64 in both encodings: an algorithm byte and a
/// 32-byte Ed25519 public key or seed.
const KEY_DATA_LEN: usize = 33;

/// What a key signs, recorded as the algorithm byte of its encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// Signed-note Ed25519 signatures (algorithm byte 0x01): a log key.
    Ed25519,
    /// C2SP `tlog-cosignature` `cosignature/v1` (algorithm byte 0x04): a witness key.
    CosignatureV1,
}

impl KeyAlgorithm {
    /// The algorithm byte that prefixes the key in its encodings and in the key-id hash.
    pub const fn id(self) -> u8 {
        match self {
            Self::Ed25519 => 0x01,
            Self::CosignatureV1 => 0x04,
        }
    }

    /// The algorithm with this algorithm byte, if credex knows it.
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            0x01 => Some(Self::Ed25519),
            0x04 => Some(Self::CosignatureV1),
            _ => None,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ed25519 => "ed25519",
            Self::CosignatureV1 => "cosignature/v1",
        })
    }
}

/// Why a key could not be created or parsed.
///
/// Messages name the key by `name` or `name+keyid`, never by the text that failed to parse.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A name given to [`SigningKeyPair::generate`] or [`SigningKeyPair::from_seed`] breaks the
    /// signed-note rules.
    #[error(
        "key name {name:?} is not valid: it must be non-empty and contain no whitespace or '+'"
    )]
    InvalidName { name: String },
    /// The text does not have the shape of the encoding.
    #[error("{encoding} is malformed: {problem}")]
    Malformed {
        encoding: &'static str,
        problem: &'static str,
    },
    /// The key data is not one algorithm byte and a 32-byte key.
    #[error(
        "key {name}: key data is {len} bytes, expected 33 (an algorithm byte and a 32-byte key)"
    )]
    KeyDataLength { name: String, len: usize },
    /// The algorithm byte is neither 0x01 nor 0x04.
    #[error(
        "key {name}: unknown algorithm byte 0x{alg:02x}, expected 0x01 (ed25519) or 0x04 (cosignature/v1)"
    )]
    UnknownAlgorithm { name: String, alg: u8 },
    /// The key id written in the key is not the id of the key under that name.
    #[error("key {name}: key id {found:08x} does not match the key, whose id is {computed:08x}")]
    KeyIdMismatch {
        name: String,
        found: u32,
        computed: u32,
    },
    /// The 32 bytes are not the encoding of a curve point.
    #[error("key {name}+{key_id:08x}: public key is not a point on the curve")]
    NotOnCurve { name: String, key_id: u32 },
    /// The 32 bytes encode a point, but not in its canonical encoding.
    #[error("key {name}+{key_id:08x}: public key is not canonically encoded")]
    NonCanonical { name: String, key_id: u32 },
    /// The public key has small order.
    #[error("key {name}+{key_id:08x}: public key has small order (a weak key)")]
    WeakKey { name: String, key_id: u32 },
    /// The public key has a small-order component, which no honestly generated key has.
    #[error(
        "key {name}+{key_id:08x}: public key has a small-order component, which no honestly generated key has"
    )]
    TorsionComponent { name: String, key_id: u32 },
}

fn malformed(encoding: &'static str, problem: &'static str) -> KeyError {
    KeyError::Malformed { encoding, problem }
}

/// A public key with its name, algorithm and key id, as pinned in the consortium file.
///
/// The `Display` and `FromStr` forms, and the serde form, are the verifier key encoding.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    algorithm: KeyAlgorithm,
    key_id: u32,
    key: VerifyingKey,
}

impl PublicKey {
    /// Parses a verifier key `<name>+<key id>+<base64 key data>`.
    ///
    /// Rejects a key id that does not match, and keys outside the prime-order subgroup or not
    /// canonically encoded (see the module docs).
    pub fn parse(vkey: &str) -> Result<Self, KeyError> {
        const ENCODING: &str = "verifier key";
        if vkey.starts_with(SIGNER_KEY_PREFIX) {
            return Err(malformed(
                ENCODING,
                "it is a signer key (PRIVATE+KEY+...); give the public verifier key",
            ));
        }
        let (name, found, data) = split_key(ENCODING, vkey)?;
        let (algorithm, key_bytes) = split_key_data(name, &data)?;
        let key_bytes: [u8; 32] = *key_bytes;
        let computed = key_id(name, algorithm, &key_bytes);
        if found != computed {
            return Err(KeyError::KeyIdMismatch {
                name: name.to_owned(),
                found,
                computed,
            });
        }
        let key = checked_verifying_key(name, computed, &key_bytes)?;
        Ok(Self {
            name: name.to_owned(),
            algorithm,
            key_id: computed,
            key,
        })
    }

    /// Wraps an Ed25519 public key, with the same checks as [`PublicKey::parse`].
    pub fn from_verifying_key(
        name: &str,
        algorithm: KeyAlgorithm,
        key: &VerifyingKey,
    ) -> Result<Self, KeyError> {
        check_name(name)?;
        let key_id = key_id(name, algorithm, key.as_bytes());
        let key = checked_verifying_key(name, key_id, key.as_bytes())?;
        Ok(Self {
            name: name.to_owned(),
            algorithm,
            key_id,
            key,
        })
    }

    /// The verifier key encoding.
    pub fn encode(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            BASE64_STANDARD.encode(key_data(self.algorithm, self.key.as_bytes()))
        )
    }

    /// The key's name: for a log key the log's origin, for a witness key the witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signed-note key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The Ed25519 key. It is canonically encoded and in the prime-order subgroup.
    pub fn verifying_key(&self) -> &ed25519_dalek::VerifyingKey {
        &self.key
    }

    /// Whether `sig` is a valid signature of `msg` under `verify_strict`: canonical `S`,
    /// canonically encoded `R` of large order, and the cofactorless equation. A `sig` that is
    /// not 64 bytes is invalid.
    pub fn verify_strict(&self, msg: &[u8], sig: &[u8]) -> bool {
        match Signature::from_slice(sig) {
            Ok(sig) => self.key.verify_strict(msg, &sig).is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.encode()).finish()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A named Ed25519 signing key: a city's log key or witness key.
///
/// Not `Clone`, so the secret exists once; share it behind an `Arc`. The secret is zeroed when
/// the pair is dropped.
pub struct SigningKeyPair {
    signing: SigningKey,
    public: PublicKey,
}

impl SigningKeyPair {
    /// A new key from the operating system's random number generator.
    pub fn generate(name: &str, algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        check_name(name)?;
        Ok(Self::from_signing_key(
            name,
            algorithm,
            SigningKey::generate(&mut rand_core::OsRng),
        ))
    }

    /// The key with this RFC 8032 secret key (seed).
    pub fn from_seed(
        name: &str,
        algorithm: KeyAlgorithm,
        seed: [u8; 32],
    ) -> Result<Self, KeyError> {
        check_name(name)?;
        Ok(Self::from_signing_key(
            name,
            algorithm,
            SigningKey::from_bytes(&seed),
        ))
    }

    /// Parses a signer key `PRIVATE+KEY+<name>+<key id>+<base64 key data>`.
    pub fn parse(skey: &str) -> Result<Self, KeyError> {
        const ENCODING: &str = "signer key";
        let rest = skey
            .strip_prefix(SIGNER_KEY_PREFIX)
            .ok_or_else(|| malformed(ENCODING, "it does not start with PRIVATE+KEY+"))?;
        let (name, found, mut data) = split_key(ENCODING, rest)?;
        let parsed = split_key_data(name, &data).map(|(algorithm, seed)| {
            (
                algorithm,
                Self::from_signing_key(name, algorithm, SigningKey::from_bytes(seed)),
            )
        });
        wipe(&mut data);
        let (_, pair) = parsed?;
        if found != pair.key_id() {
            return Err(KeyError::KeyIdMismatch {
                name: name.to_owned(),
                found,
                computed: pair.key_id(),
            });
        }
        Ok(pair)
    }

    /// The signer key encoding. The returned string is the secret.
    pub fn encode(&self) -> String {
        let mut data = key_data(self.algorithm(), self.signing.as_bytes());
        let encoded = format!(
            "{SIGNER_KEY_PREFIX}{}+{:08x}+{}",
            self.name(),
            self.key_id(),
            BASE64_STANDARD.encode(data)
        );
        wipe(&mut data);
        encoded
    }

    pub fn public(&self) -> PublicKey {
        self.public.clone()
    }

    pub fn name(&self) -> &str {
        self.public.name()
    }

    pub fn key_id(&self) -> u32 {
        self.public.key_id()
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.public.algorithm()
    }

    /// The RFC 8032 Ed25519 signature of `msg`. It is deterministic: the same key and message
    /// always give the same signature.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    fn from_signing_key(name: &str, algorithm: KeyAlgorithm, signing: SigningKey) -> Self {
        // A key derived from a seed is [a]B with a clamped scalar a: canonical, in the
        // prime-order subgroup, never weak, so the public-key checks are skipped.
        let key = signing.verifying_key();
        let public = PublicKey {
            name: name.to_owned(),
            algorithm,
            key_id: key_id(name, algorithm, key.as_bytes()),
            key,
        };
        Self { signing, public }
    }
}

impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The signed-note key id of `key` under `name` and `algorithm`.
pub fn key_id(name: &str, algorithm: KeyAlgorithm, key: &[u8; 32]) -> u32 {
    signed_note::key_id(name, &key_data(algorithm, key))
}

fn key_data(algorithm: KeyAlgorithm, key: &[u8; 32]) -> [u8; KEY_DATA_LEN] {
    let mut data = [0; KEY_DATA_LEN];
    data[0] = algorithm.id();
    data[1..].copy_from_slice(key);
    data
}

fn check_name(name: &str) -> Result<(), KeyError> {
    if signed_note::is_key_name_valid(name) {
        Ok(())
    } else {
        Err(KeyError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// Splits `<name>+<key id>+<base64>` into the name, the id and the decoded key data.
///
/// Only the first two '+' split: names have none, base64 may.
fn split_key<'a>(
    encoding: &'static str,
    text: &'a str,
) -> Result<(&'a str, u32, Vec<u8>), KeyError> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed(encoding, "expected <name>+<key id>+<key data>"));
    };
    if !signed_note::is_key_name_valid(name) {
        return Err(malformed(
            encoding,
            "the key name is empty or contains whitespace",
        ));
    }
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed(
            encoding,
            "the key id is not 8 hexadecimal digits",
        ));
    }
    let id = u32::from_str_radix(id, 16).expect("8 hex digits fit in a u32");
    let data = BASE64_STANDARD
        .decode(data)
        .map_err(|_| malformed(encoding, "the key data is not padded standard base64"))?;
    Ok((name, id, data))
}

/// Splits decoded key data into its algorithm and 32-byte key.
fn split_key_data<'a>(
    name: &str,
    data: &'a [u8],
) -> Result<(KeyAlgorithm, &'a [u8; 32]), KeyError> {
    let Some((&alg, key)) = data.split_first().filter(|_| data.len() == KEY_DATA_LEN) else {
        return Err(KeyError::KeyDataLength {
            name: name.to_owned(),
            len: data.len(),
        });
    };
    let algorithm = KeyAlgorithm::from_id(alg).ok_or_else(|| KeyError::UnknownAlgorithm {
        name: name.to_owned(),
        alg,
    })?;
    Ok((algorithm, key.try_into().expect("length checked above")))
}

fn checked_verifying_key(
    name: &str,
    key_id: u32,
    bytes: &[u8; 32],
) -> Result<VerifyingKey, KeyError> {
    let err_name = || name.to_owned();
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::NotOnCurve {
        name: err_name(),
        key_id,
    })?;
    let point = key.to_edwards();
    if point.compress().as_bytes() != bytes {
        return Err(KeyError::NonCanonical {
            name: err_name(),
            key_id,
        });
    }
    if key.is_weak() {
        return Err(KeyError::WeakKey {
            name: err_name(),
            key_id,
        });
    }
    if !point.is_torsion_free() {
        return Err(KeyError::TorsionComponent {
            name: err_name(),
            key_id,
        });
    }
    Ok(key)
}

/// Overwrites a buffer that held secret key material.
///
/// `black_box` makes the compiler treat the zeroed buffer as read, so the writes are not
/// removed as dead stores. (The `zeroize` crate is not a dependency of credex-core; the
/// `SigningKey` itself is zeroed on drop by ed25519-dalek.)
fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    std::hint::black_box(buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};
    use proptest::prelude::*;
    use sha2::{Digest, Sha256, Sha512};

    /// RFC 8032 section 7.1, TEST 1024: the 1023-byte message.
    const RFC8032_TEST_1024_MESSAGE: &str = concat!(
        "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1",
        "e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d",
        "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a",
        "7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e",
        "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc10",
        "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1",
        "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d",
        "502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270",
        "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089b",
        "eccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba",
        "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af8969b",
        "e3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7",
        "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988d",
        "cda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df",
        "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7",
        "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4",
        "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac09",
        "43bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f",
        "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f161",
        "0e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d",
        "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8ca",
        "c60c905c15fc910840b94c00a0b9d0",
    );

    /// RFC 8032 section 7.1: (name, secret key, public key, message, signature), all hex.
    /// The message of TEST SHA(abc) is SHA-512("abc"), computed in the test.
    const RFC8032_VECTORS: &[(&str, &str, &str, &str, &str)] = &[
        (
            "TEST 1",
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "TEST 2",
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "TEST 3",
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
        (
            "TEST 1024",
            "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
            "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
            RFC8032_TEST_1024_MESSAGE,
            "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
        ),
        (
            "TEST SHA(abc)",
            "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
            "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
            "",
            "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
        ),
    ];

    /// From golang.org/x/mod/sumdb/note's tests and the signed_note crate's docs.
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const NOTE_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                             then you don't know what your problem is.\n";
    const PETER_NOTE_SIG: &str = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";
    /// The same tests' key generated from an all-zero random source, i.e. the all-zero seed.
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const ENOCH_NOTE_SIG: &str = "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=";

    fn bytes32(hex_str: &str) -> [u8; 32] {
        hex::decode(hex_str).unwrap().try_into().unwrap()
    }

    #[test]
    fn rfc8032_vectors_sign_byte_for_byte_and_verify() {
        for &(test, secret, public, message, signature) in RFC8032_VECTORS {
            let message = if test == "TEST SHA(abc)" {
                Sha512::digest(b"abc").to_vec()
            } else {
                hex::decode(message).unwrap()
            };
            let pair = SigningKeyPair::from_seed("rfc8032", KeyAlgorithm::Ed25519, bytes32(secret))
                .unwrap();
            assert_eq!(
                hex::encode(pair.public().verifying_key().as_bytes()),
                public,
                "{test}"
            );
            let sig = pair.sign(&message);
            assert_eq!(hex::encode(sig), signature, "{test}");
            assert!(pair.public().verify_strict(&message, &sig), "{test}");
            let mut tampered = message.clone();
            tampered.push(0);
            assert!(!pair.public().verify_strict(&tampered, &sig), "{test}");
        }
        assert_eq!(hex::decode(RFC8032_TEST_1024_MESSAGE).unwrap().len(), 1023);
    }

    #[test]
    fn go_note_vectors_parse_with_matching_ids() {
        let public = PublicKey::parse(PETER_VKEY).unwrap();
        assert_eq!(public.name(), "PeterNeumann");
        assert_eq!(public.key_id(), 0xc74f20a3);
        assert_eq!(public.algorithm(), KeyAlgorithm::Ed25519);
        assert_eq!(public.encode(), PETER_VKEY);

        let pair = SigningKeyPair::parse(PETER_SKEY).unwrap();
        assert_eq!(pair.name(), "PeterNeumann");
        assert_eq!(pair.key_id(), 0xc74f20a3);
        assert_eq!(pair.public(), public);
        assert_eq!(pair.encode(), PETER_SKEY);

        // A note signature line's base64 is the key id (big-endian) and the signature.
        let line = BASE64_STANDARD.decode(PETER_NOTE_SIG).unwrap();
        assert_eq!(line[..4], 0xc74f20a3_u32.to_be_bytes());
        assert_eq!(pair.sign(NOTE_TEXT.as_bytes())[..], line[4..]);
        assert!(public.verify_strict(NOTE_TEXT.as_bytes(), &line[4..]));

        let enoch = SigningKeyPair::from_seed("EnochRoot", KeyAlgorithm::Ed25519, [0; 32]).unwrap();
        assert_eq!(enoch.public().encode(), ENOCH_VKEY);
        let line = BASE64_STANDARD.decode(ENOCH_NOTE_SIG).unwrap();
        assert_eq!(line[..4], enoch.key_id().to_be_bytes());
        assert_eq!(enoch.sign(NOTE_TEXT.as_bytes())[..], line[4..]);
    }

    #[test]
    fn keys_agree_with_the_signed_note_crate() {
        let pair =
            SigningKeyPair::from_seed("credex/test/changsha", KeyAlgorithm::Ed25519, [7; 32])
                .unwrap();
        let verifier = signed_note::StandardVerifier::new(&pair.public().encode()).unwrap();
        let signer = signed_note::StandardSigner::new(&pair.encode()).unwrap();
        use signed_note::{Signer as _, Verifier as _};
        assert_eq!(verifier.key_id(), pair.key_id());
        assert_eq!(signer.key_id(), pair.key_id());
        assert_eq!(signer.sign(b"msg\n").unwrap(), pair.sign(b"msg\n"));
        assert!(verifier.verify(b"msg\n", &pair.sign(b"msg\n")));
    }

    #[test]
    fn cosignature_key_id_hashes_algorithm_byte_0x04() {
        let name = "witness.changsha.example/w1";
        let seed = [42; 32];
        let witness = SigningKeyPair::from_seed(name, KeyAlgorithm::CosignatureV1, seed).unwrap();
        let log = SigningKeyPair::from_seed(name, KeyAlgorithm::Ed25519, seed).unwrap();
        let public = witness.public().verifying_key().to_bytes();

        // tlog-cosignature: key ID = SHA-256(key name || 0x0A || 0x04 || public key)[:4].
        let mut hasher = Sha256::new();
        hasher.update(name.as_bytes());
        hasher.update([0x0a, 0x04]);
        hasher.update(public);
        let expected = u32::from_be_bytes(hasher.finalize()[..4].try_into().unwrap());
        assert_eq!(witness.key_id(), expected);
        assert_ne!(witness.key_id(), log.key_id());

        let vkey = witness.public().encode();
        assert_eq!(
            BASE64_STANDARD
                .decode(vkey.splitn(3, '+').nth(2).unwrap())
                .unwrap()[0],
            0x04
        );
        let parsed = PublicKey::parse(&vkey).unwrap();
        assert_eq!(parsed.algorithm(), KeyAlgorithm::CosignatureV1);
        assert_eq!(parsed, witness.public());
        let reparsed = SigningKeyPair::parse(&witness.encode()).unwrap();
        assert_eq!(reparsed.algorithm(), KeyAlgorithm::CosignatureV1);
        assert_eq!(reparsed.public(), witness.public());
    }

    /// A verifier key with the right key id for whatever data it carries.
    fn vkey(name: &str, alg: u8, key: &[u8]) -> String {
        let data = [&[alg], key].concat();
        let id = signed_note::key_id(name, &data);
        format!("{name}+{id:08x}+{}", BASE64_STANDARD.encode(data))
    }

    /// An order-2 point, (0, -1).
    const ORDER_2: &str = "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";
    /// An order-8 point.
    const ORDER_8: &str = "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a";
    /// y = p, a non-canonical encoding of y = 0.
    const Y_IS_P: &str = "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";

    fn check_vkey(vkey: &str, expect: Expect) {
        let actual = match PublicKey::parse(vkey) {
            Ok(key) => format!("ok {}", key.encode()),
            Err(err) => err.to_string(),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn verifier_key_parse_errors() {
        let peter = bytes32("1a5cd907143c384c41e831c5bcf12aa8817ec5649aaabf2c31388b35b2d744d6");
        let mixed = (VerifyingKey::from_bytes(&peter).unwrap().to_edwards()
            + VerifyingKey::from_bytes(&bytes32(ORDER_2))
                .unwrap()
                .to_edwards())
        .compress()
        .to_bytes();

        check_vkey(
            PETER_VKEY,
            expect!["ok PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"],
        );
        check_vkey(
            &vkey("PeterNeumann", 1, &peter),
            expect![
                "key PeterNeumann+daa209e8: public key has a small-order component, which no honestly generated key has"
            ],
        );
        check_vkey(
            "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            expect!["ok PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"],
        );
        check_vkey(
            "",
            expect!["verifier key is malformed: expected <name>+<key id>+<key data>"],
        );
        check_vkey(
            "PeterNeumann+c74f20a3",
            expect!["verifier key is malformed: expected <name>+<key id>+<key data>"],
        );
        check_vkey(
            "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            expect!["verifier key is malformed: the key name is empty or contains whitespace"],
        );
        check_vkey(
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            expect!["verifier key is malformed: the key name is empty or contains whitespace"],
        );
        check_vkey(
            "彼得\u{3000}诺伊曼+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            expect!["verifier key is malformed: the key name is empty or contains whitespace"],
        );
        check_vkey(
            "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            expect!["verifier key is malformed: the key id is not 8 hexadecimal digits"],
        );
        check_vkey(
            "PeterNeumann+c74f20ag+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            expect!["verifier key is malformed: the key id is not 8 hexadecimal digits"],
        );
        check_vkey(
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
            expect!["verifier key is malformed: the key data is not padded standard base64"],
        );
        check_vkey(
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",
            expect!["verifier key is malformed: the key data is not padded standard base64"],
        );
        check_vkey(
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            expect![
                "key PeterNeumann: key id c74f20a4 does not match the key, whose id is c74f20a3"
            ],
        );
        check_vkey(
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TX",
            expect![
                "key PeterNeumann: key id c74f20a3 does not match the key, whose id is a79e8a0c"
            ],
        );
        check_vkey(
            PETER_SKEY,
            expect![
                "verifier key is malformed: it is a signer key (PRIVATE+KEY+...); give the public verifier key"
            ],
        );
        check_vkey(
            &vkey("PeterNeumann", 1, &peter[..31]),
            expect![
                "key PeterNeumann: key data is 32 bytes, expected 33 (an algorithm byte and a 32-byte key)"
            ],
        );
        check_vkey(
            &vkey("PeterNeumann", 2, &peter),
            expect![
                "key PeterNeumann: unknown algorithm byte 0x02, expected 0x01 (ed25519) or 0x04 (cosignature/v1)"
            ],
        );
        check_vkey(
            &vkey("NotAPoint", 1, &bytes32(&format!("02{}", "00".repeat(31)))),
            expect!["key NotAPoint+8b4a2e54: public key is not a point on the curve"],
        );
        check_vkey(
            &vkey("NonCanonical", 1, &bytes32(Y_IS_P)),
            expect!["key NonCanonical+0c761fa6: public key is not canonically encoded"],
        );
        check_vkey(
            &vkey("Identity", 1, &bytes32(&format!("01{}", "00".repeat(31)))),
            expect!["key Identity+a9a903d4: public key has small order (a weak key)"],
        );
        check_vkey(
            &vkey("Order8", 4, &bytes32(ORDER_8)),
            expect!["key Order8+143c08dc: public key has small order (a weak key)"],
        );
        check_vkey(
            &vkey("MixedOrder", 1, &mixed),
            expect![
                "key MixedOrder+04af3f00: public key has a small-order component, which no honestly generated key has"
            ],
        );
    }

    fn check_skey(skey: &str, expect: Expect) {
        let actual = match SigningKeyPair::parse(skey) {
            Ok(pair) => format!("ok {}", pair.public()),
            Err(err) => err.to_string(),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn signer_key_parse_errors() {
        check_skey(
            PETER_SKEY,
            expect!["ok PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"],
        );
        check_skey(
            PETER_VKEY,
            expect!["signer key is malformed: it does not start with PRIVATE+KEY+"],
        );
        check_skey(
            "PRIVATE+KEY+PeterNeumann+c74f20a3",
            expect!["signer key is malformed: expected <name>+<key id>+<key data>"],
        );
        check_skey(
            "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            expect![
                "key PeterNeumann: key id c74f20a4 does not match the key, whose id is c74f20a3"
            ],
        );
        check_skey(
            "PRIVATE+KEY+PeterNeumann+c74f20a3+BIEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            expect![
                "key PeterNeumann: key id c74f20a3 does not match the key, whose id is 18b9780b"
            ],
        );
        check_skey(
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AoEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            expect![
                "key PeterNeumann: unknown algorithm byte 0x02, expected 0x01 (ed25519) or 0x04 (cosignature/v1)"
            ],
        );
        check_skey(
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKD",
            expect!["signer key is malformed: the key data is not padded standard base64"],
        );
        check_skey(
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz!",
            expect!["signer key is malformed: the key data is not padded standard base64"],
        );
        check_skey(
            "PRIVATE+KEY+Peter Neumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            expect!["signer key is malformed: the key name is empty or contains whitespace"],
        );
    }

    #[test]
    fn errors_never_quote_the_secret() {
        // Key data may contain '+': it is everything after the fourth '+'.
        let secret_b64 = PETER_SKEY.splitn(5, '+').nth(4).unwrap();
        let secret = &secret_b64[4..40];
        let mangled = [
            PETER_SKEY.replace('+', " "),
            PETER_SKEY.replacen("c74f20a3", "c74f20a4", 1),
            PETER_SKEY.replacen("PRIVATE", "private", 1),
            format!("{PETER_SKEY}="),
        ];
        for text in &mangled {
            for err in [
                PublicKey::parse(text).unwrap_err(),
                SigningKeyPair::parse(text).unwrap_err(),
            ] {
                let message = format!("{err} {err:?}");
                assert!(!message.contains(secret), "{message}");
            }
        }
        let pair = SigningKeyPair::parse(PETER_SKEY).unwrap();
        let debug = format!("{pair:?}");
        assert!(!debug.contains(secret), "{debug}");
        assert!(debug.contains(PETER_VKEY), "{debug}");
        let seed_hex = hex::encode(BASE64_STANDARD.decode(secret_b64).unwrap());
        assert!(!debug.contains(&seed_hex[2..]), "{debug}");
    }

    #[test]
    fn names_follow_signed_note_rules() {
        for name in ["", "a b", "a+b", "a\tb", "a\nb", "长沙\u{3000}节点"] {
            let err = SigningKeyPair::generate(name, KeyAlgorithm::Ed25519).unwrap_err();
            assert!(
                matches!(err, KeyError::InvalidName { .. }),
                "{name:?}: {err}"
            );
        }
        expect![[
            r#"key name "a+b" is not valid: it must be non-empty and contain no whitespace or '+'"#
        ]]
        .assert_eq(
            &SigningKeyPair::from_seed("a+b", KeyAlgorithm::Ed25519, [0; 32])
                .unwrap_err()
                .to_string(),
        );
        let pair =
            SigningKeyPair::generate("credex/xiangjiang/长沙", KeyAlgorithm::Ed25519).unwrap();
        assert_eq!(
            PublicKey::parse(&pair.public().encode()).unwrap(),
            pair.public()
        );
    }

    #[test]
    fn generated_keys_differ() {
        let a = SigningKeyPair::generate("n", KeyAlgorithm::Ed25519).unwrap();
        let b = SigningKeyPair::generate("n", KeyAlgorithm::Ed25519).unwrap();
        assert_ne!(a.public(), b.public());
    }

    #[test]
    fn public_keys_round_trip_through_serde() {
        let public = PublicKey::parse(PETER_VKEY).unwrap();
        let json = serde_json::to_string(&public).unwrap();
        assert_eq!(json, format!("\"{PETER_VKEY}\""));
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), public);
        let err = serde_json::from_str::<PublicKey>(
            "\"PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not match the key"), "{err}");
    }

    #[test]
    fn from_verifying_key_checks_like_parse() {
        let peter = PublicKey::parse(PETER_VKEY).unwrap();
        let wrapped = PublicKey::from_verifying_key(
            "PeterNeumann",
            KeyAlgorithm::Ed25519,
            peter.verifying_key(),
        )
        .unwrap();
        assert_eq!(wrapped, peter);
        let identity =
            VerifyingKey::from_bytes(&bytes32(&format!("01{}", "00".repeat(31)))).unwrap();
        let err =
            PublicKey::from_verifying_key("w", KeyAlgorithm::CosignatureV1, &identity).unwrap_err();
        assert!(matches!(err, KeyError::WeakKey { .. }), "{err}");
        let err =
            PublicKey::from_verifying_key("a b", KeyAlgorithm::Ed25519, peter.verifying_key())
                .unwrap_err();
        assert!(matches!(err, KeyError::InvalidName { .. }), "{err}");
    }

    #[test]
    fn verify_strict_rejects_wrong_lengths() {
        let pair = SigningKeyPair::from_seed("n", KeyAlgorithm::Ed25519, [1; 32]).unwrap();
        let sig = pair.sign(b"m");
        assert!(pair.public().verify_strict(b"m", &sig));
        assert!(!pair.public().verify_strict(b"m", &sig[..63]));
        assert!(
            !pair
                .public()
                .verify_strict(b"m", &[&sig[..], &[0]].concat())
        );
    }

    fn algorithm() -> impl Strategy<Value = KeyAlgorithm> {
        prop_oneof![
            Just(KeyAlgorithm::Ed25519),
            Just(KeyAlgorithm::CosignatureV1)
        ]
    }

    proptest! {
        #[test]
        fn encodings_round_trip(
            name in "[a-z0-9./长沙武汉合肥南昌-]{1,24}",
            alg in algorithm(),
            seed in any::<[u8; 32]>(),
        ) {
            let pair = SigningKeyPair::from_seed(&name, alg, seed).unwrap();
            let reparsed = SigningKeyPair::parse(&pair.encode()).unwrap();
            prop_assert_eq!(reparsed.public(), pair.public());
            prop_assert_eq!(reparsed.encode(), pair.encode());
            let public = PublicKey::parse(&pair.public().encode()).unwrap();
            prop_assert_eq!(&public, &pair.public());
            prop_assert_eq!(public.key_id(), key_id(&name, alg, &pair.public().verifying_key().to_bytes()));
            let sig = pair.sign(name.as_bytes());
            prop_assert!(public.verify_strict(name.as_bytes(), &sig));
        }
    }
}
