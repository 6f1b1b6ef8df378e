//! JWE compact serialization with `alg: dir` and `enc: A256GCM` (RFC 7516, RFC 7518), the
//! envelope of every Hybrid Message payload (spec 60).
//!
//! ## Format
//!
//! A token is five base64url (no padding) segments joined by dots:
//!
//! ```text
//! BASE64URL(protected header) . "" . BASE64URL(iv) . BASE64URL(ciphertext) . BASE64URL(tag)
//! ```
//!
//! - The protected header is `{"alg":"dir","enc":"A256GCM","kid":"<key URI>"}`, where the key
//!   URI is the space key's name at the KMS, `kms://<kms-host>/keys/<uuid>`. A receiver reads
//!   `kid` ([`key_id`]) to learn which key to fetch before it can decrypt.
//! - `dir` means the content key *is* the shared space key: the encrypted-key segment is empty.
//! - The IV is 96 bits, the tag 128 bits (RFC 7518 section 5.3).
//! - The additional authenticated data is the ASCII of the *encoded* protected header segment
//!   exactly as it appears in the token (RFC 7516 section 5.1 step 14), so any change to the
//!   header, even one that decodes to equivalent JSON, fails authentication.
//!
//! On decryption the header must name `dir` and `A256GCM`, carry a `kid` equal to the given
//! key's URI, and use no `zip` or `crit` (neither is supported, and RFC 7515 section 4.1.11
//! requires rejecting a `crit` we do not understand); other members are ignored, and a member
//! given twice is refused. Base64 must be canonical (no padding, no stray trailing bits), so a
//! token has exactly one spelling.
//!
//! ## Why hand-written
//!
//! The simulation must be reproducible from one seed (docs/architecture.md, Determinism). General JOSE crates
//! (josekit, biscuit) draw their IVs and keys from OpenSSL or ring, which cannot be seeded. Here
//! the caller passes the key and the IV, drawn from its own seeded RNG ([`draw_key_bytes`],
//! [`draw_iv`]); this module holds no RNG and is a pure function of its inputs. The AEAD itself
//! is RustCrypto's `aes-gcm`. The `jwe_interop` test checks the format against a real JOSE
//! implementation (Python `jwcrypto`) in both directions.
//!
//! Never reuse an IV with the same key: AES-GCM loses both confidentiality and integrity. Draw
//! a fresh IV per message.

use aes_gcm::aead::AeadInOut as _;
use aes_gcm::{Aes256Gcm, KeyInit as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::Rng;
use serde::Deserialize;
use std::fmt;

/// Length of an A256GCM content key (a space key), in bytes.
pub const KEY_BYTES: usize = 32;

/// Length of an A256GCM initialization vector, in bytes (RFC 7518 section 5.3: 96 bits).
pub const IV_BYTES: usize = 12;

/// Length of an A256GCM authentication tag, in bytes (RFC 7518 section 5.3: 128 bits).
pub const TAG_BYTES: usize = 16;

/// The only key management algorithm supported: direct use of a shared symmetric key.
pub const ALG: &str = "dir";

/// The only content encryption algorithm supported.
pub const ENC: &str = "A256GCM";

/// The largest plaintext [`encrypt`] accepts and [`decrypt`] will produce, in bytes. Webex text
/// messages are at most a few KiB and activities a few KiB of JSON; files travel as links, not
/// inline. 1 MiB leaves ample headroom and bounds what one untrusted token can make a receiver
/// allocate.
pub const PLAINTEXT_BYTES_MAX: usize = 1024 * 1024;

/// The longest key URI (`kid`) [`encrypt`] accepts, in bytes. Real ones are about 60 bytes.
pub const KID_BYTES_MAX: usize = 1024;

/// The longest encoded protected header accepted, in bytes: room for a [`KID_BYTES_MAX`] `kid`
/// even if every byte needs a six-byte JSON escape, plus a few extra members.
pub const HEADER_SEGMENT_BYTES_MAX: usize = 16 * 1024;

/// The longest compact token [`decrypt`] and [`key_id`] look at, in bytes; anything longer is
/// refused with [`JweError::TooLarge`] before any decoding.
pub const COMPACT_BYTES_MAX: usize = HEADER_SEGMENT_BYTES_MAX
    + encoded_len(IV_BYTES)
    + encoded_len(PLAINTEXT_BYTES_MAX)
    + encoded_len(TAG_BYTES)
    + 4;

/// Length of the unpadded base64url encoding of `n` bytes.
const fn encoded_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// A space (conversation) key as the KMS hands it out: its name and its 256-bit secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SpaceKey {
    /// The key's name, `kms://<kms-host>/keys/<uuid>`; it is the `kid` of every token made with
    /// this key.
    pub uri: String,
    /// The AES-256-GCM content key.
    pub bytes: [u8; KEY_BYTES],
}

impl fmt::Debug for SpaceKey {
    /// Shows the URI only: key material stays out of logs and assertion messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpaceKey")
            .field("uri", &self.uri)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

/// Why a token was refused. Every input to [`decrypt`] and [`key_id`] yields a token or one of
/// these, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    /// The encoded protected header is longer than [`HEADER_SEGMENT_BYTES_MAX`].
    #[error("JWE protected header longer than {HEADER_SEGMENT_BYTES_MAX} bytes")]
    HeaderTooLarge,
    /// The token is longer than [`COMPACT_BYTES_MAX`].
    #[error("JWE longer than {COMPACT_BYTES_MAX} bytes")]
    TooLarge,
    /// The token does not have exactly five dot-separated segments.
    #[error("JWE compact serialization has {0} segments, expected 5")]
    SegmentCount(usize),
    /// A segment is not canonical unpadded base64url.
    #[error("JWE {0} segment is not canonical base64url")]
    Base64(&'static str),
    /// The protected header is not a JSON object with string `alg` and `enc` members (or a
    /// member appears twice).
    #[error("JWE protected header is not valid: {0}")]
    Header(String),
    /// The header names a key management algorithm other than `dir`.
    #[error("unsupported JWE alg `{0}` (only `dir`)")]
    UnsupportedAlg(String),
    /// The header names a content encryption algorithm other than `A256GCM`.
    #[error("unsupported JWE enc `{0}` (only `A256GCM`)")]
    UnsupportedEnc(String),
    /// The header uses a member this implementation must not ignore (`zip` or `crit`).
    #[error("unsupported JWE header member `{0}`")]
    UnsupportedMember(&'static str),
    /// The header has no `kid`, so the receiver cannot tell which key to fetch.
    #[error("JWE protected header has no kid")]
    MissingKid,
    /// The token was made with a different key than the one given.
    #[error("JWE kid `{found}` does not match key `{expected}`")]
    KidMismatch {
        /// The URI of the key given to [`decrypt`].
        expected: String,
        /// The `kid` in the token.
        found: String,
    },
    /// The encrypted-key segment is not empty, as `dir` requires.
    #[error("JWE encrypted key must be empty for alg `dir`")]
    EncryptedKeyNotEmpty,
    /// The IV is not [`IV_BYTES`] long.
    #[error("JWE IV is {0} bytes, expected {IV_BYTES}")]
    IvLength(usize),
    /// The tag is not [`TAG_BYTES`] long.
    #[error("JWE tag is {0} bytes, expected {TAG_BYTES}")]
    TagLength(usize),
    /// The ciphertext decodes to more than [`PLAINTEXT_BYTES_MAX`] bytes.
    #[error("JWE ciphertext longer than {PLAINTEXT_BYTES_MAX} bytes")]
    CiphertextTooLarge,
    /// The tag does not authenticate the header, IV and ciphertext under this key: the token
    /// was altered, or the key bytes are wrong.
    #[error("JWE authentication failed")]
    Authentication,
}

/// Draws a fresh 256-bit content key from the caller's (seeded) RNG.
pub fn draw_key_bytes<R: Rng + ?Sized>(rng: &mut R) -> [u8; KEY_BYTES] {
    let mut bytes = [0u8; KEY_BYTES];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// Draws a fresh 96-bit IV from the caller's (seeded) RNG. Use one per message.
pub fn draw_iv<R: Rng + ?Sized>(rng: &mut R) -> [u8; IV_BYTES] {
    let mut iv = [0u8; IV_BYTES];
    rng.fill_bytes(&mut iv);
    iv
}

/// Encrypts `plaintext` under `key` with the given IV and returns the compact token, with
/// protected header `{"alg":"dir","enc":"A256GCM","kid":"<key.uri>"}`.
///
/// Deterministic: the same key, IV and plaintext always give the same token. The IV must never
/// be reused with the same key.
///
/// # Panics
/// If `plaintext` is longer than [`PLAINTEXT_BYTES_MAX`] or `key.uri` longer than
/// [`KID_BYTES_MAX`]: both are caller bugs, and [`decrypt`] would refuse the result.
pub fn encrypt(key: &SpaceKey, iv: [u8; IV_BYTES], plaintext: &[u8]) -> String {
    assert!(
        plaintext.len() <= PLAINTEXT_BYTES_MAX,
        "JWE plaintext of {} bytes exceeds PLAINTEXT_BYTES_MAX",
        plaintext.len()
    );
    assert!(
        key.uri.len() <= KID_BYTES_MAX,
        "JWE kid of {} bytes exceeds KID_BYTES_MAX",
        key.uri.len()
    );
    // Serializing a `&str` to JSON cannot fail; it adds the quotes and any escapes.
    let kid_json = serde_json::to_string(&key.uri).expect("a string always serializes");
    let header = format!(r#"{{"alg":"{ALG}","enc":"{ENC}","kid":{kid_json}}}"#);

    let mut out = String::with_capacity(
        encoded_len(header.len())
            + encoded_len(IV_BYTES)
            + encoded_len(plaintext.len())
            + encoded_len(TAG_BYTES)
            + 4,
    );
    URL_SAFE_NO_PAD.encode_string(header.as_bytes(), &mut out);
    // The AAD is the encoded header segment, which is exactly what `out` holds now.
    let mut buffer = plaintext.to_vec();
    let tag = Aes256Gcm::new(&key.bytes.into())
        .encrypt_inout_detached(&iv.into(), out.as_bytes(), buffer.as_mut_slice().into())
        .expect("AES-GCM encrypts any plaintext up to 64 GiB");

    out.push_str("..");
    URL_SAFE_NO_PAD.encode_string(iv, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&buffer, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut out);
    out
}

/// Decrypts a compact token made with `key` and returns the plaintext.
///
/// Checks, in order: the size bound, the structure and header ([`key_id`]'s checks), that the
/// `kid` is `key.uri`, then the authentication tag. Never panics.
pub fn decrypt(key: &SpaceKey, compact: &str) -> Result<Vec<u8>, JweError> {
    let parsed = parse(compact)?;
    if parsed.kid != key.uri {
        return Err(JweError::KidMismatch {
            expected: key.uri.clone(),
            found: parsed.kid,
        });
    }
    let mut buffer = parsed.ciphertext;
    Aes256Gcm::new(&key.bytes.into())
        .decrypt_inout_detached(
            &parsed.iv.into(),
            parsed.header_segment.as_bytes(),
            buffer.as_mut_slice().into(),
            &parsed.tag.into(),
        )
        .map_err(|_| JweError::Authentication)?;
    Ok(buffer)
}

/// Returns the `kid` (key URI) of a compact token without decrypting it, so that a receiver
/// knows which key to fetch. Validates the whole structure and header (everything [`decrypt`]
/// checks except the key and the tag), so garbage is refused before any key fetch. Never panics.
pub fn key_id(compact: &str) -> Result<String, JweError> {
    parse(compact).map(|parsed| parsed.kid)
}

/// A structurally valid token, not yet authenticated.
struct Parsed<'a> {
    /// The encoded protected header: the AAD.
    header_segment: &'a str,
    kid: String,
    iv: [u8; IV_BYTES],
    ciphertext: Vec<u8>,
    tag: [u8; TAG_BYTES],
}

/// The protected header members we interpret. Unknown members are ignored (RFC 7516 section 4);
/// `zip` and `crit` are only detected, so that they can be refused. serde refuses a known member
/// given twice, which closes the "which `alg` wins" ambiguity.
#[derive(Deserialize)]
struct Header {
    alg: String,
    enc: String,
    kid: Option<String>,
    zip: Option<serde::de::IgnoredAny>,
    crit: Option<serde::de::IgnoredAny>,
}

fn parse(compact: &str) -> Result<Parsed<'_>, JweError> {
    if compact.len() > COMPACT_BYTES_MAX {
        return Err(JweError::TooLarge);
    }
    let segments: Vec<&str> = compact.split('.').collect();
    let [header_segment, encrypted_key, iv, ciphertext, tag] = segments[..] else {
        return Err(JweError::SegmentCount(segments.len()));
    };

    if header_segment.len() > HEADER_SEGMENT_BYTES_MAX {
        return Err(JweError::HeaderTooLarge);
    }
    let header_json = decode(header_segment, "protected header")?;
    // serde would also accept a JSON array for a struct; the header must be an object.
    if header_json.trim_ascii_start().first() != Some(&b'{') {
        return Err(JweError::Header("not a JSON object".to_owned()));
    }
    let header: Header =
        serde_json::from_slice(&header_json).map_err(|e| JweError::Header(e.to_string()))?;
    if header.alg != ALG {
        return Err(JweError::UnsupportedAlg(header.alg));
    }
    if header.enc != ENC {
        return Err(JweError::UnsupportedEnc(header.enc));
    }
    if header.zip.is_some() {
        return Err(JweError::UnsupportedMember("zip"));
    }
    if header.crit.is_some() {
        return Err(JweError::UnsupportedMember("crit"));
    }
    let kid = header.kid.ok_or(JweError::MissingKid)?;

    if !encrypted_key.is_empty() {
        return Err(JweError::EncryptedKeyNotEmpty);
    }
    let iv = decode(iv, "IV")?;
    let iv: [u8; IV_BYTES] = iv[..]
        .try_into()
        .map_err(|_| JweError::IvLength(iv.len()))?;
    if ciphertext.len() > encoded_len(PLAINTEXT_BYTES_MAX) {
        return Err(JweError::CiphertextTooLarge);
    }
    let ciphertext = decode(ciphertext, "ciphertext")?;
    let tag = decode(tag, "tag")?;
    let tag: [u8; TAG_BYTES] = tag[..]
        .try_into()
        .map_err(|_| JweError::TagLength(tag.len()))?;

    Ok(Parsed {
        header_segment,
        kid,
        iv,
        ciphertext,
        tag,
    })
}

fn decode(segment: &str, what: &'static str) -> Result<Vec<u8>, JweError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JweError::Base64(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng as _;

    const KID: &str = "kms://kms/keys/0b8e2f5c-3d4a-4e6f-9a1b-2c3d4e5f6071";

    fn kat_key() -> SpaceKey {
        SpaceKey {
            uri: KID.to_owned(),
            bytes: core::array::from_fn(|i| i as u8),
        }
    }

    fn kat_iv() -> [u8; IV_BYTES] {
        core::array::from_fn(|i| 0xa0 + i as u8)
    }

    const KAT_PLAINTEXT: &str = "Hi Bob \u{2014} lunch at noon?";

    /// Computed once, independently of this crate, with Python `cryptography` 50.0.2
    /// (`AESGCM(key).encrypt(iv, plaintext, aad)`, key = bytes 0x00..=0x1f,
    /// iv = bytes 0xa0..=0xab, aad = the encoded header segment below) and checked to decrypt
    /// with `jwcrypto` 1.6.1 (`JWE().deserialize(token, JWK(kty="oct", k=...))`).
    const KAT_TOKEN: &str = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIiwia2lkIjoia21zOi8va21zL2tleXMvMGI4ZTJmNWMtM2Q0YS00ZTZmLTlhMWItMmMzZDRlNWY2MDcxIn0..oKGio6Slpqeoqaqr.rnFcbyqpIl3i8ae_chSjtlDNLTD82C0Cow.SnjJHtKjHUI5OZuj6_fuGA";

    fn segments(token: &str) -> Vec<String> {
        token.split('.').map(str::to_owned).collect()
    }

    /// Flips one bit of the decoded bytes of segment `index` and re-encodes it.
    fn flip_bit(token: &str, index: usize) -> String {
        let mut parts = segments(token);
        let mut bytes = URL_SAFE_NO_PAD.decode(&parts[index]).unwrap();
        bytes[0] ^= 0x01;
        parts[index] = URL_SAFE_NO_PAD.encode(bytes);
        parts.join(".")
    }

    fn with_header(token: &str, header_json: &str) -> String {
        let mut parts = segments(token);
        parts[0] = URL_SAFE_NO_PAD.encode(header_json);
        parts.join(".")
    }

    #[test]
    fn known_answer() {
        let token = encrypt(&kat_key(), kat_iv(), KAT_PLAINTEXT.as_bytes());
        assert_eq!(token, KAT_TOKEN);
        assert_eq!(
            decrypt(&kat_key(), KAT_TOKEN).unwrap(),
            KAT_PLAINTEXT.as_bytes()
        );
        assert_eq!(key_id(KAT_TOKEN).unwrap(), KID);
    }

    #[test]
    fn header_is_exactly_the_documented_one() {
        let header = URL_SAFE_NO_PAD.decode(&segments(KAT_TOKEN)[0]).unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!(r#"{{"alg":"dir","enc":"A256GCM","kid":"{KID}"}}"#)
        );
    }

    #[test]
    fn round_trip_with_seeded_key_and_iv() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let key = SpaceKey {
            uri: KID.to_owned(),
            bytes: draw_key_bytes(&mut rng),
        };
        for plaintext in [&b""[..], b"x", &[0xffu8; 200][..], &vec![7u8; 70_000][..]] {
            let token = encrypt(&key, draw_iv(&mut rng), plaintext);
            assert_eq!(decrypt(&key, &token).unwrap(), plaintext);
            assert_eq!(key_id(&token).unwrap(), KID);
        }
    }

    #[test]
    fn same_seed_same_token_and_fresh_iv_differs() {
        let draw = |seed| {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let key = SpaceKey {
                uri: KID.to_owned(),
                bytes: draw_key_bytes(&mut rng),
            };
            let first = encrypt(&key, draw_iv(&mut rng), b"same");
            let second = encrypt(&key, draw_iv(&mut rng), b"same");
            (first, second)
        };
        assert_eq!(draw(1), draw(1));
        let (first, second) = draw(1);
        assert_ne!(first, second, "a fresh IV must change the token");
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn kid_is_json_escaped() {
        let key = SpaceKey {
            uri: "kms://kms/keys/\"quoted\"\\\n".to_owned(),
            bytes: [9; KEY_BYTES],
        };
        let token = encrypt(&key, [1; IV_BYTES], b"hi");
        assert_eq!(key_id(&token).unwrap(), key.uri);
        assert_eq!(decrypt(&key, &token).unwrap(), b"hi");
    }

    #[test]
    fn tampered_iv_ciphertext_or_tag_fails() {
        for index in [2, 3, 4] {
            let token = flip_bit(KAT_TOKEN, index);
            assert_eq!(
                decrypt(&kat_key(), &token),
                Err(JweError::Authentication),
                "segment {index}"
            );
        }
    }

    #[test]
    fn tampered_header_fails() {
        // Same meaning, different bytes: the AAD changes, so authentication fails.
        let reordered = with_header(
            KAT_TOKEN,
            &format!(r#"{{"enc":"A256GCM","alg":"dir","kid":"{KID}"}}"#),
        );
        assert_eq!(key_id(&reordered).unwrap(), KID);
        assert_eq!(
            decrypt(&kat_key(), &reordered),
            Err(JweError::Authentication)
        );
        let extra = with_header(
            KAT_TOKEN,
            &format!(r#"{{"alg":"dir","enc":"A256GCM","kid":"{KID}","x":1}}"#),
        );
        assert_eq!(decrypt(&kat_key(), &extra), Err(JweError::Authentication));
    }

    #[test]
    fn wrong_key_bytes_fail_authentication() {
        let mut key = kat_key();
        key.bytes[31] ^= 0x80;
        assert_eq!(decrypt(&key, KAT_TOKEN), Err(JweError::Authentication));
    }

    #[test]
    fn other_key_uri_is_kid_mismatch() {
        let mut key = kat_key();
        key.uri = "kms://kms/keys/another".to_owned();
        assert_eq!(
            decrypt(&key, KAT_TOKEN),
            Err(JweError::KidMismatch {
                expected: key.uri.clone(),
                found: KID.to_owned(),
            })
        );
    }

    #[test]
    fn malformed_tokens_are_refused_with_the_right_error() {
        let key = kat_key();
        let parts = segments(KAT_TOKEN);
        let cases: Vec<(String, JweError)> = vec![
            (String::new(), JweError::SegmentCount(1)),
            (parts[..4].join("."), JweError::SegmentCount(4)),
            (format!("{KAT_TOKEN}."), JweError::SegmentCount(6)),
            (
                KAT_TOKEN.replacen("eyJ", "ey=", 1),
                JweError::Base64("protected header"),
            ),
            (
                with_header(KAT_TOKEN, r#"["dir","A256GCM","k",null,null]"#),
                JweError::Header("not a JSON object".to_owned()),
            ),
            (
                with_header(KAT_TOKEN, r#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":"k"}"#),
                JweError::UnsupportedAlg("RSA-OAEP".to_owned()),
            ),
            (
                with_header(KAT_TOKEN, r#"{"alg":"dir","enc":"A128GCM","kid":"k"}"#),
                JweError::UnsupportedEnc("A128GCM".to_owned()),
            ),
            (
                with_header(
                    KAT_TOKEN,
                    r#"{"alg":"dir","enc":"A256GCM","kid":"k","zip":"DEF"}"#,
                ),
                JweError::UnsupportedMember("zip"),
            ),
            (
                with_header(
                    KAT_TOKEN,
                    r#"{"alg":"dir","enc":"A256GCM","kid":"k","crit":["x"]}"#,
                ),
                JweError::UnsupportedMember("crit"),
            ),
            (
                with_header(KAT_TOKEN, r#"{"alg":"dir","enc":"A256GCM"}"#),
                JweError::MissingKid,
            ),
            (
                {
                    let mut p = parts.clone();
                    p[1] = "AAAA".to_owned();
                    p.join(".")
                },
                JweError::EncryptedKeyNotEmpty,
            ),
            (
                {
                    let mut p = parts.clone();
                    p[2] = URL_SAFE_NO_PAD.encode([0u8; 16]);
                    p.join(".")
                },
                JweError::IvLength(16),
            ),
            (
                {
                    let mut p = parts.clone();
                    p[4] = URL_SAFE_NO_PAD.encode([0u8; 12]);
                    p.join(".")
                },
                JweError::TagLength(12),
            ),
            (
                // Non-canonical base64: the last character carries stray low bits.
                {
                    let mut p = parts.clone();
                    p[4] = format!("{}B", &p[4][..p[4].len() - 1]);
                    p.join(".")
                },
                JweError::Base64("tag"),
            ),
            ("a".repeat(COMPACT_BYTES_MAX + 1), JweError::TooLarge),
        ];
        for (token, expected) in cases {
            assert_eq!(decrypt(&key, &token), Err(expected.clone()), "{token:.80}");
            assert_eq!(key_id(&token), Err(expected), "{token:.80}");
        }
    }

    #[test]
    fn header_that_is_not_json_is_refused() {
        for header in ["not json", "{", r#"{"alg":"dir","enc":5,"kid":"k"}"#, "{}"] {
            let token = with_header(KAT_TOKEN, header);
            assert!(
                matches!(key_id(&token), Err(JweError::Header(_))),
                "{header}"
            );
        }
    }

    #[test]
    fn duplicate_header_member_is_refused() {
        let token = with_header(
            KAT_TOKEN,
            &format!(r#"{{"alg":"dir","enc":"A256GCM","kid":"{KID}","alg":"none"}}"#),
        );
        assert!(matches!(key_id(&token), Err(JweError::Header(_))));
    }

    #[test]
    fn debug_does_not_print_key_bytes() {
        let shown = format!("{:?}", kat_key());
        assert!(shown.contains(KID));
        assert!(shown.contains("redacted"));
        assert!(!shown.contains("bytes: ["), "{shown}");
    }

    /// One way to damage a token.
    #[derive(Debug, Clone)]
    enum Mutation {
        /// Replace the character at this position (modulo the length) with this one.
        Replace(usize, char),
        /// Insert this text at this position.
        Insert(usize, String),
        /// Delete this many characters from this position.
        Delete(usize, usize),
        /// Flip a bit of the decoded bytes of one segment and re-encode it canonically.
        FlipDecodedBit(usize, usize, u8),
        /// Swap two segments.
        Swap(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), any::<char>()).prop_map(|(i, c)| Mutation::Replace(i, c)),
            (
                any::<usize>(),
                prop_oneof!["[A-Za-z0-9_=.-]{1,8}", ".{1,4}"]
            )
                .prop_map(|(i, s)| Mutation::Insert(i, s)),
            (any::<usize>(), 1usize..12).prop_map(|(i, n)| Mutation::Delete(i, n)),
            (0usize..5, any::<usize>(), 0u8..8)
                .prop_map(|(s, i, b)| Mutation::FlipDecodedBit(s, i, b)),
            (0usize..5, 0usize..5).prop_map(|(a, b)| Mutation::Swap(a, b)),
        ]
    }

    fn apply(token: &str, mutation: &Mutation) -> String {
        let chars: Vec<char> = token.chars().collect();
        match mutation {
            Mutation::Replace(..) | Mutation::Delete(..) if chars.is_empty() => token.to_owned(),
            Mutation::FlipDecodedBit(..) | Mutation::Swap(..) if token.split('.').count() != 5 => {
                token.to_owned()
            }
            Mutation::Replace(i, c) => {
                let mut chars = chars;
                let i = i % chars.len();
                chars[i] = *c;
                chars.into_iter().collect()
            }
            Mutation::Insert(i, s) => {
                let i = i % (chars.len() + 1);
                let mut out: String = chars[..i].iter().collect();
                out.push_str(s);
                out.extend(&chars[i..]);
                out
            }
            Mutation::Delete(i, n) => {
                let i = i % chars.len();
                let end = (i + n).min(chars.len());
                chars[..i].iter().chain(&chars[end..]).collect()
            }
            Mutation::FlipDecodedBit(s, i, b) => {
                let mut parts = segments(token);
                let Ok(mut bytes) = URL_SAFE_NO_PAD.decode(&parts[*s]) else {
                    return token.to_owned();
                };
                if bytes.is_empty() {
                    bytes.push(1 << b);
                } else {
                    let i = i % bytes.len();
                    bytes[i] ^= 1 << b;
                }
                parts[*s] = URL_SAFE_NO_PAD.encode(bytes);
                parts.join(".")
            }
            Mutation::Swap(a, b) => {
                let mut parts = segments(token);
                parts.swap(*a, *b);
                parts.join(".")
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_strings_are_refused_without_panic(s in ".{0,300}") {
            prop_assert!(decrypt(&kat_key(), &s).is_err());
            let _ = key_id(&s);
        }

        #[test]
        fn token_shaped_strings_are_refused_without_panic(
            s in "(eyJ[A-Za-z0-9_-]{0,80})?\\.[A-Za-z0-9_-]{0,6}\\.[A-Za-z0-9_-]{0,20}\\.[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,30}"
        ) {
            prop_assert!(decrypt(&kat_key(), &s).is_err());
            let _ = key_id(&s);
        }

        #[test]
        fn arbitrary_headers_are_refused_without_panic(header in ".{0,120}") {
            let token = with_header(KAT_TOKEN, &header);
            prop_assert!(decrypt(&kat_key(), &token).is_err());
            let _ = key_id(&token);
        }

        #[test]
        fn mutated_tokens_never_decrypt(
            mutations in proptest::collection::vec(mutation(), 1..4)
        ) {
            let mut token = KAT_TOKEN.to_owned();
            for m in &mutations {
                token = apply(&token, m);
            }
            let _ = key_id(&token);
            match decrypt(&kat_key(), &token) {
                Ok(plaintext) => {
                    // Only the untouched token may decrypt (a mutation can undo another).
                    prop_assert_eq!(&token, KAT_TOKEN);
                    prop_assert_eq!(plaintext, KAT_PLAINTEXT.as_bytes());
                }
                Err(_) => prop_assert_ne!(&token, KAT_TOKEN),
            }
        }

        #[test]
        fn round_trip_anything(
            bytes in any::<[u8; KEY_BYTES]>(),
            iv in any::<[u8; IV_BYTES]>(),
            uri in ".{0,80}",
            plaintext in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let key = SpaceKey { uri, bytes };
            let token = encrypt(&key, iv, &plaintext);
            prop_assert_eq!(key_id(&token).unwrap(), key.uri.clone());
            prop_assert_eq!(decrypt(&key, &token).unwrap(), plaintext);
        }
    }

    #[test]
    fn an_oversized_header_is_named_as_such() {
        let header = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"dir","enc":"A256GCM","kid":"{}"}}"#,
            "k".repeat(HEADER_SEGMENT_BYTES_MAX)
        ));
        let parts = segments(KAT_TOKEN);
        let token = format!("{header}..{}.{}.{}", parts[2], parts[3], parts[4]);
        assert!(token.len() < COMPACT_BYTES_MAX);
        let e = decrypt(&kat_key(), &token).expect_err("refused");
        assert_eq!(
            e.to_string(),
            format!("JWE protected header longer than {HEADER_SEGMENT_BYTES_MAX} bytes")
        );
    }
}
