//! The fake KMS core: space keys, who may fetch them, and outages. Sans-IO: no tokio, no clock,
//! no RNG of its own (randomness is passed in), so a driver (cloud-side HTTP, or a direct call
//! in a unit test) decides when requests arrive.
//!
//! ## Model (spec 56-60)
//!
//! - Every conversation (space) has a key, created together with the space. A key is named by a
//!   URI `kms://<kms-host>/keys/<uuid>` ([`key_uri`]); the host is [`CLOUD_HOST`] for the Webex
//!   cloud KMS or [`HDS_HOST`] for an on-premises Hybrid Data Security KMS (spec 58). That URI
//!   is the `kid` of every JWE made with the key ([`connector::proto::jwe`]).
//! - Each key has an authorization list of principals: user emails, and the ids of connectors
//!   serving a member. [`Kms::create_key`] authorizes the space's members; the cloud then adds
//!   and removes principals as members join and leave, or as a member's connector changes
//!   ([`Kms::authorize`], [`Kms::revoke`]). Spec 60: "adding a member grants key access; after
//!   leaving, key fetch returns 403".
//! - [`Kms::fetch_key`] releases the key only to an authorized principal; anyone else gets
//!   [`KmsError::Forbidden`] (HTTP 403), an unknown URI [`KmsError::NotFound`] (404).
//! - Outage fault: while [`Kms::set_outage`] is on, every request fails with
//!   [`KmsError::Unavailable`] (503) and changes nothing; keys and authorizations survive it.
//!
//! Simplifications: the real KMS speaks an ECDH-negotiated, JWE-wrapped request protocol
//! (spec 60) and has resource objects (`kmsResourceObjectUrl`) that group keys and carry the
//! authorizations. Here the authorization list hangs on the key itself and requests are plain
//! calls; the future HTTP layer carries them, and the cloud (which relays requests, spec 56-57)
//! names the requesting principal. Keys are never rotated or deleted.
//!
//! Deterministic: all state is in `BTreeMap`/`BTreeSet`, and key URIs and bytes come only from
//! the RNG passed to [`Kms::create_key`].

use connector::proto::jwe::{self, SpaceKey};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};

/// The host name of the Webex cloud KMS (docs/protocols.md).
pub const CLOUD_HOST: &str = "kms";

/// The host name of an on-premises Hybrid Data Security KMS (spec 58).
pub const HDS_HOST: &str = "hds";

/// Why a KMS request failed. Each variant maps to the HTTP status the KMS answers with
/// ([`KmsError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    /// No key has this URI (on this KMS).
    #[error("no KMS key {uri}")]
    NotFound {
        /// The URI asked for.
        uri: String,
    },
    /// The principal is not on the key's authorization list: not a member of the space, or no
    /// longer one.
    #[error("{principal} may not fetch KMS key {uri}")]
    Forbidden {
        /// The URI asked for.
        uri: String,
        /// Who asked.
        principal: String,
    },
    /// The KMS is down (outage fault).
    #[error("KMS unavailable")]
    Unavailable,
}

impl KmsError {
    /// The HTTP status code the KMS answers with: 404, 403 or 503.
    pub fn status(&self) -> u16 {
        match self {
            KmsError::NotFound { .. } => 404,
            KmsError::Forbidden { .. } => 403,
            KmsError::Unavailable => 503,
        }
    }
}

/// Counters for the run record and the checks. Every request is counted exactly once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KmsStats {
    /// Keys created ([`Kms::create_key`] successes).
    pub keys_created: u64,
    /// Key fetches answered with the key.
    pub fetches_granted: u64,
    /// Key fetches refused with 403: the principal was not authorized.
    pub fetches_denied: u64,
    /// Key fetches refused with 404: no such key.
    pub fetches_not_found: u64,
    /// Authorization changes applied ([`Kms::authorize`] and [`Kms::revoke`] successes, whether
    /// or not they changed the list).
    pub authorization_changes: u64,
    /// Authorization changes refused with 404: no such key.
    pub authorization_not_found: u64,
    /// Requests of any kind refused with 503 because of an outage.
    pub failed_during_outage: u64,
}

/// One key and who may have it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyEntry {
    /// The space the key was created for (diagnostics; spaces are the cloud's business).
    space_id: String,
    bytes: [u8; jwe::KEY_BYTES],
    /// Principals allowed to fetch: member emails and serving connectors' ids.
    authorized: BTreeSet<String>,
}

/// The fake KMS: all keys of one KMS host, their authorization lists, the outage switch and the
/// counters.
#[derive(Debug, Clone)]
pub struct Kms {
    host: String,
    keys: BTreeMap<String, KeyEntry>,
    outage: bool,
    stats: KmsStats,
}

/// The URI of key `uuid` on KMS `host`: `kms://<host>/keys/<uuid>`.
pub fn key_uri(host: &str, uuid: &str) -> String {
    format!("kms://{host}/keys/{uuid}")
}

/// Draws a random (version 4, RFC 9562 variant) UUID from `rng`, in its lowercase hyphenated
/// form.
pub fn draw_uuid<R: Rng + ?Sized>(rng: &mut R) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // variant 10xx
    let hex = |range: std::ops::Range<usize>| -> String {
        b[range].iter().map(|byte| format!("{byte:02x}")).collect()
    };
    format!(
        "{}-{}-{}-{}-{}",
        hex(0..4),
        hex(4..6),
        hex(6..8),
        hex(8..10),
        hex(10..16)
    )
}

impl Kms {
    /// A KMS with no keys, up, on `host` ([`CLOUD_HOST`], [`HDS_HOST`] or a scenario's own
    /// name), which goes into every key URI.
    pub fn new(host: impl Into<String>) -> Self {
        Kms {
            host: host.into(),
            keys: BTreeMap::new(),
            outage: false,
            stats: KmsStats::default(),
        }
    }

    /// The KMS host name, as it appears in key URIs.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the KMS is down.
    pub fn outage(&self) -> bool {
        self.outage
    }

    /// The counters so far.
    pub fn stats(&self) -> KmsStats {
        self.stats
    }

    /// How many keys exist.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The space a key was created for, or `None` for an unknown URI. An observer's view: no
    /// authorization check, works during an outage, not counted.
    pub fn space_of(&self, uri: &str) -> Option<&str> {
        self.keys.get(uri).map(|entry| entry.space_id.as_str())
    }

    /// Every key issued so far, with its bytes. An observer's view for checks (the secrets
    /// check scans logs for key material): works during an outage, not counted.
    pub fn issued_keys(&self) -> impl Iterator<Item = SpaceKey> + '_ {
        self.keys.iter().map(|(uri, entry)| SpaceKey {
            uri: uri.clone(),
            bytes: entry.bytes,
        })
    }

    /// Whether `principal` may fetch key `uri` (false for an unknown URI). An observer's view for
    /// checks: works during an outage, not counted.
    pub fn is_authorized(&self, uri: &str, principal: &str) -> bool {
        self.keys
            .get(uri)
            .is_some_and(|entry| entry.authorized.contains(principal))
    }

    /// Turns the outage fault on or off. Keys and authorizations are kept across an outage.
    pub fn set_outage(&mut self, outage: bool) {
        self.outage = outage;
    }

    /// Creates the key of a new space and authorizes `members` (emails, and connector ids for
    /// members served by a connector) to fetch it. The UUID in the URI and then the key bytes
    /// are drawn from `rng`, so the same seed gives the same keys.
    ///
    /// # Errors
    /// [`KmsError::Unavailable`] during an outage (nothing is drawn from `rng` then).
    ///
    /// # Panics
    /// If the drawn URI already exists: with 122 random bits that means the RNG is broken.
    pub fn create_key<R: Rng + ?Sized>(
        &mut self,
        space_id: &str,
        members: &[String],
        rng: &mut R,
    ) -> Result<SpaceKey, KmsError> {
        self.check_up()?;
        let uri = key_uri(&self.host, &draw_uuid(rng));
        let bytes = jwe::draw_key_bytes(rng);
        assert!(
            !self.keys.contains_key(&uri),
            "KMS drew the existing key URI {uri} twice: the RNG repeats"
        );
        self.keys.insert(
            uri.clone(),
            KeyEntry {
                space_id: space_id.to_owned(),
                bytes,
                authorized: members.iter().cloned().collect(),
            },
        );
        self.stats.keys_created += 1;
        Ok(SpaceKey { uri, bytes })
    }

    /// Releases key `uri` to `principal` if it is on the key's authorization list.
    ///
    /// # Errors
    /// [`KmsError::Unavailable`] during an outage, [`KmsError::NotFound`] for an unknown URI,
    /// [`KmsError::Forbidden`] for a principal not (or no longer) authorized.
    pub fn fetch_key(&mut self, uri: &str, principal: &str) -> Result<SpaceKey, KmsError> {
        self.check_up()?;
        let Some(entry) = self.keys.get(uri) else {
            self.stats.fetches_not_found += 1;
            return Err(KmsError::NotFound {
                uri: uri.to_owned(),
            });
        };
        if !entry.authorized.contains(principal) {
            self.stats.fetches_denied += 1;
            return Err(KmsError::Forbidden {
                uri: uri.to_owned(),
                principal: principal.to_owned(),
            });
        }
        self.stats.fetches_granted += 1;
        Ok(SpaceKey {
            uri: uri.to_owned(),
            bytes: entry.bytes,
        })
    }

    /// Adds `principal` to key `uri`'s authorization list (a member joined the space, or a
    /// connector now serves a member). Returns whether it was newly added; adding twice is
    /// harmless.
    ///
    /// # Errors
    /// [`KmsError::Unavailable`] during an outage, [`KmsError::NotFound`] for an unknown URI.
    pub fn authorize(&mut self, uri: &str, principal: &str) -> Result<bool, KmsError> {
        let entry = self.entry_for_change(uri)?;
        Ok(entry.authorized.insert(principal.to_owned()))
    }

    /// Removes `principal` from key `uri`'s authorization list (a member left the space, or a
    /// connector stopped serving a member); its later fetches get 403. Returns whether it was on
    /// the list; revoking twice is harmless.
    ///
    /// # Errors
    /// [`KmsError::Unavailable`] during an outage, [`KmsError::NotFound`] for an unknown URI.
    pub fn revoke(&mut self, uri: &str, principal: &str) -> Result<bool, KmsError> {
        let entry = self.entry_for_change(uri)?;
        Ok(entry.authorized.remove(principal))
    }

    /// Counts an authorization change and returns the key's entry, or the error to answer.
    fn entry_for_change(&mut self, uri: &str) -> Result<&mut KeyEntry, KmsError> {
        self.check_up()?;
        match self.keys.get_mut(uri) {
            Some(entry) => {
                self.stats.authorization_changes += 1;
                Ok(entry)
            }
            None => {
                self.stats.authorization_not_found += 1;
                Err(KmsError::NotFound {
                    uri: uri.to_owned(),
                })
            }
        }
    }

    /// Refuses (and counts) a request while the outage fault is on.
    pub(crate) fn check_up(&mut self) -> Result<(), KmsError> {
        if self.outage {
            self.stats.failed_during_outage += 1;
            return Err(KmsError::Unavailable);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;
    use rand_chacha::ChaCha20Rng;

    const ALICE: &str = "alice@example.com";
    const BOB: &str = "bob@example.com";
    const MALLORY: &str = "mallory@example.com";
    const CONNECTOR: &str = "connector:exp-a-1";

    fn members() -> Vec<String> {
        vec![ALICE.to_owned(), BOB.to_owned()]
    }

    fn kms_with_space(seed: u64) -> (Kms, SpaceKey) {
        let mut kms = Kms::new(CLOUD_HOST);
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let key = kms.create_key("space-1", &members(), &mut rng).unwrap();
        (kms, key)
    }

    #[test]
    fn key_uri_names_host_and_v4_uuid() {
        let (kms, key) = kms_with_space(1);
        let uuid = key.uri.strip_prefix("kms://kms/keys/").unwrap();
        let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{uuid}");
        assert!(
            uuid.chars()
                .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(&uuid[14..15], "4", "version nibble: {uuid}");
        assert!("89ab".contains(&uuid[19..20]), "variant: {uuid}");
        assert_eq!(kms.space_of(&key.uri), Some("space-1"));
        assert_eq!(kms.stats().keys_created, 1);

        let mut hds = Kms::new(HDS_HOST);
        let key = hds
            .create_key("space-1", &members(), &mut ChaCha20Rng::seed_from_u64(1))
            .unwrap();
        assert!(key.uri.starts_with("kms://hds/keys/"), "{}", key.uri);
    }

    #[test]
    fn members_get_the_key() {
        let (mut kms, key) = kms_with_space(1);
        assert_eq!(kms.fetch_key(&key.uri, ALICE), Ok(key.clone()));
        assert_eq!(kms.fetch_key(&key.uri, BOB), Ok(key.clone()));
        assert_eq!(kms.stats().fetches_granted, 2);
        // The key works end to end: Alice encrypts, Bob decrypts.
        let token = jwe::encrypt(&key, [3; jwe::IV_BYTES], b"hi bob");
        let bobs = kms.fetch_key(&jwe::key_id(&token).unwrap(), BOB).unwrap();
        assert_eq!(jwe::decrypt(&bobs, &token).unwrap(), b"hi bob");
    }

    #[test]
    fn non_member_is_forbidden() {
        let (mut kms, key) = kms_with_space(1);
        let error = kms.fetch_key(&key.uri, MALLORY).unwrap_err();
        assert_eq!(
            error,
            KmsError::Forbidden {
                uri: key.uri.clone(),
                principal: MALLORY.to_owned(),
            }
        );
        assert_eq!(error.status(), 403);
        assert_eq!(kms.stats().fetches_denied, 1);
        assert_eq!(kms.stats().fetches_granted, 0);
    }

    #[test]
    fn unknown_key_is_not_found() {
        let (mut kms, _) = kms_with_space(1);
        let uri = key_uri(CLOUD_HOST, "00000000-0000-4000-8000-000000000000");
        let error = kms.fetch_key(&uri, ALICE).unwrap_err();
        assert_eq!(error, KmsError::NotFound { uri: uri.clone() });
        assert_eq!(error.status(), 404);
        assert_eq!(
            kms.authorize(&uri, ALICE),
            Err(KmsError::NotFound { uri: uri.clone() })
        );
        assert_eq!(kms.revoke(&uri, ALICE), Err(KmsError::NotFound { uri }));
        let stats = kms.stats();
        assert_eq!(stats.fetches_not_found, 1);
        assert_eq!(stats.authorization_not_found, 2);
        assert_eq!(stats.authorization_changes, 0);
    }

    #[test]
    fn a_key_of_another_kms_is_not_found_here() {
        let (_, cloud_key) = kms_with_space(1);
        let mut hds = Kms::new(HDS_HOST);
        assert!(matches!(
            hds.fetch_key(&cloud_key.uri, ALICE),
            Err(KmsError::NotFound { .. })
        ));
    }

    #[test]
    fn member_who_leaves_is_forbidden_and_can_rejoin() {
        let (mut kms, key) = kms_with_space(1);
        assert_eq!(kms.revoke(&key.uri, BOB), Ok(true));
        assert_eq!(
            kms.revoke(&key.uri, BOB),
            Ok(false),
            "revoking twice is harmless"
        );
        assert!(!kms.is_authorized(&key.uri, BOB));
        assert_eq!(kms.fetch_key(&key.uri, BOB).unwrap_err().status(), 403);
        assert_eq!(
            kms.fetch_key(&key.uri, ALICE),
            Ok(key.clone()),
            "others keep access"
        );
        assert_eq!(kms.authorize(&key.uri, BOB), Ok(true));
        assert_eq!(kms.fetch_key(&key.uri, BOB), Ok(key));
        assert_eq!(kms.stats().authorization_changes, 3);
    }

    #[test]
    fn connector_serving_a_member_is_authorized_by_the_cloud() {
        let (mut kms, key) = kms_with_space(1);
        assert_eq!(
            kms.fetch_key(&key.uri, CONNECTOR).unwrap_err().status(),
            403
        );
        assert_eq!(kms.authorize(&key.uri, CONNECTOR), Ok(true));
        assert_eq!(
            kms.authorize(&key.uri, CONNECTOR),
            Ok(false),
            "adding twice is harmless"
        );
        assert_eq!(kms.fetch_key(&key.uri, CONNECTOR), Ok(key.clone()));
        // The member moves off the connector (or leaves): the connector loses access.
        assert_eq!(kms.revoke(&key.uri, CONNECTOR), Ok(true));
        assert_eq!(
            kms.fetch_key(&key.uri, CONNECTOR).unwrap_err().status(),
            403
        );
    }

    #[test]
    fn outage_refuses_everything_then_recovers() {
        let (mut kms, key) = kms_with_space(1);
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        kms.set_outage(true);
        assert!(kms.outage());
        assert_eq!(kms.fetch_key(&key.uri, ALICE), Err(KmsError::Unavailable));
        assert_eq!(KmsError::Unavailable.status(), 503);
        assert_eq!(kms.fetch_key(&key.uri, MALLORY), Err(KmsError::Unavailable));
        assert_eq!(
            kms.fetch_key("kms://kms/keys/x", ALICE),
            Err(KmsError::Unavailable)
        );
        assert_eq!(
            kms.create_key("space-2", &members(), &mut rng),
            Err(KmsError::Unavailable)
        );
        assert_eq!(kms.authorize(&key.uri, MALLORY), Err(KmsError::Unavailable));
        assert_eq!(kms.revoke(&key.uri, ALICE), Err(KmsError::Unavailable));
        let stats = kms.stats();
        assert_eq!(stats.failed_during_outage, 6);
        assert_eq!(stats.keys_created, 1);
        assert_eq!(
            stats.fetches_granted + stats.fetches_denied + stats.fetches_not_found,
            0
        );
        assert_eq!(stats.authorization_changes, 0);

        kms.set_outage(false);
        assert_eq!(
            kms.fetch_key(&key.uri, ALICE),
            Ok(key.clone()),
            "state survives"
        );
        assert_eq!(kms.fetch_key(&key.uri, MALLORY).unwrap_err().status(), 403);
        // Nothing was drawn during the outage: the next key is the one the seed gives first.
        let next = kms.create_key("space-2", &members(), &mut rng).unwrap();
        let mut fresh = Kms::new(CLOUD_HOST);
        let expected = fresh
            .create_key("space-2", &members(), &mut ChaCha20Rng::seed_from_u64(2))
            .unwrap();
        assert_eq!(next, expected);
    }

    #[test]
    fn same_seed_gives_same_uris_and_key_bytes() {
        let run = |seed| {
            let mut kms = Kms::new(CLOUD_HOST);
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            (0..5)
                .map(|i| {
                    kms.create_key(&format!("space-{i}"), &members(), &mut rng)
                        .unwrap()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn two_spaces_get_different_keys_with_separate_members() {
        let mut kms = Kms::new(CLOUD_HOST);
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let first = kms.create_key("space-1", &members(), &mut rng).unwrap();
        let second = kms
            .create_key("space-2", &[MALLORY.to_owned()], &mut rng)
            .unwrap();
        assert_ne!(first.uri, second.uri);
        assert_ne!(first.bytes, second.bytes);
        assert_eq!(kms.key_count(), 2);
        assert_eq!(
            kms.fetch_key(&first.uri, MALLORY).unwrap_err().status(),
            403
        );
        assert_eq!(kms.fetch_key(&second.uri, ALICE).unwrap_err().status(), 403);
        assert_eq!(kms.fetch_key(&second.uri, MALLORY), Ok(second.clone()));
        // A token of one space does not open with the other space's key.
        let token = jwe::encrypt(&first, [5; jwe::IV_BYTES], b"space one");
        let mut forged = second;
        forged.uri = first.uri;
        assert!(jwe::decrypt(&forged, &token).is_err());
    }
}
