//! PURE: the keys that authenticate audit events (format 2). Each environment holds random
//! root keys, one per epoch, in `audit.age`, sealed to the environment's recipients like the
//! bundle and re-sealed with a new epoch whenever the recipients change; an event is MACed with
//! HMAC-SHA256 under a key derived (HKDF-SHA256, RFC 5869) from its epoch's root key, the vault
//! id and the environment. Without a recipient's identity nobody can compute a MAC. ring does
//! the HKDF and HMAC; nothing here is arithmetic of our own. Keys never reach `Debug`, errors or
//! events.
//!
//! The **backup lane**: a second key file, `backup-audit.age`, sealed to the recipients *and*
//! the backup-only recipients, holds lane keys (their own epochs, their own HKDF salt). An event
//! MACed under a lane key says so inside its hashed body (`"lane": "backup"`), and the chain
//! trusts such an event only for `backup.*` actions writing only backup records
//! ([`lane_may_record`]): a backup-only identity can record backups and nothing else.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::{hkdf, hmac};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::EventId;

/// HKDF salt: the purpose and format, so these keys can serve nothing else.
const SALT: &[u8] = b"talvault audit mac v2";
/// HKDF salt of the backup lane's keys: a lane key can never be a main key.
const LANE_SALT: &[u8] = b"talvault backup mac v2";
/// What the MAC covers besides the event id (domain separation).
const MAC_CONTEXT: &[u8] = b"talvault event\0";
/// The HMAC context of a derived-state cache's tag (never an event's).
const CACHE_CONTEXT: &[u8] = b"talvault chain cache v1\0";

/// The key that MACs the events of one environment and epoch.
#[derive(Clone)]
pub struct AuditKey(hmac::Key);

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey([redacted])")
    }
}

/// HKDF output length for an HMAC-SHA256 key.
struct HmacLen;

impl hkdf::KeyType for HmacLen {
    fn len(&self) -> usize {
        32
    }
}

impl AuditKey {
    /// Derives the key of `env` in `vault` from an epoch's root key.
    pub fn derive(root: &[u8], vault: &str, env: &str, epoch: u32) -> Option<AuditKey> {
        Self::derive_salted(SALT, root, vault, env, epoch)
    }

    /// Derives the backup lane key of `env` in `vault` from a lane epoch's root key.
    pub fn derive_lane(root: &[u8], vault: &str, env: &str, epoch: u32) -> Option<AuditKey> {
        Self::derive_salted(LANE_SALT, root, vault, env, epoch)
    }

    fn derive_salted(
        salt: &[u8],
        root: &[u8],
        vault: &str,
        env: &str,
        epoch: u32,
    ) -> Option<AuditKey> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(root);
        let epoch = epoch.to_be_bytes();
        let info: [&[u8]; 5] = [vault.as_bytes(), b"\0", env.as_bytes(), b"\0", &epoch];
        let okm = prk.expand(&info, HmacLen).ok()?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        okm.fill(&mut bytes[..]).ok()?;
        Some(AuditKey(hmac::Key::new(hmac::HMAC_SHA256, &bytes[..])))
    }

    /// The MAC of an event id, hex.
    pub fn mac(&self, id: &EventId) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(MAC_CONTEXT);
        ctx.update(id.as_str().as_bytes());
        crate::hex::encode(ctx.sign().as_ref())
    }

    /// The MAC of a derived-state cache's digest (`Keyring::cache_tag`), under its own
    /// context so that it can never pass for an event's MAC.
    fn mac_cache(&self, digest: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(CACHE_CONTEXT);
        ctx.update(digest.as_bytes());
        crate::hex::encode(ctx.sign().as_ref())
    }

    /// Whether `mac` (hex) is the MAC of `id` (compared in constant time).
    pub fn check(&self, id: &EventId, mac: &str) -> bool {
        let Some(tag) = crate::hex::decode(mac) else {
            return false;
        };
        let msg = [MAC_CONTEXT, id.as_str().as_bytes()].concat();
        hmac::verify(&self.0, &msg, &tag).is_ok()
    }
}

/// One epoch's root key (32 random bytes, base64).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochKey {
    /// The epoch: 1 at creation, one more at each recipients change.
    pub epoch: u32,
    /// The root key, base64.
    key: Zeroizing<String>,
}

impl fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EpochKey({}, [redacted])", self.epoch)
    }
}

impl EpochKey {
    /// An epoch's root key from 32 random bytes.
    pub fn new(epoch: u32, root: &[u8; 32]) -> Self {
        EpochKey {
            epoch,
            key: Zeroizing::new(STANDARD.encode(root)),
        }
    }

    /// The derived key for `env` in `vault`; `None` when the stored key is not 32 bytes.
    pub fn derive(&self, vault: &str, env: &str) -> Option<AuditKey> {
        let root = Zeroizing::new(STANDARD.decode(self.key.as_bytes()).ok()?);
        (root.len() == 32)
            .then(|| AuditKey::derive(&root, vault, env, self.epoch))
            .flatten()
    }

    /// The derived backup lane key for `env` in `vault` (this being a lane epoch's root key).
    pub fn derive_lane(&self, vault: &str, env: &str) -> Option<AuditKey> {
        let root = Zeroizing::new(STANDARD.decode(self.key.as_bytes()).ok()?);
        (root.len() == 32)
            .then(|| AuditKey::derive_lane(&root, vault, env, self.epoch))
            .flatten()
    }
}

/// The plaintext of `audit.age` (and, for the backup lane, of `backup-audit.age`): every
/// epoch's root key, and the SHA-256 of the environment's bundle plaintext, so that a file
/// planted by someone who cannot open the bundle (recipients are public: anyone can seal to
/// them) is recognised as foreign.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct AuditKeys {
    /// Hex SHA-256 of the bundle's plaintext.
    pub bundle_sha256: String,
    /// The root keys, oldest epoch first.
    pub keys: Vec<EpochKey>,
}

impl AuditKeys {
    /// The newest epoch's key.
    pub fn current(&self) -> Option<&EpochKey> {
        self.keys.iter().max_by_key(|k| k.epoch)
    }

    /// The key of `epoch`.
    pub fn epoch(&self, epoch: u32) -> Option<&EpochKey> {
        self.keys.iter().find(|k| k.epoch == epoch)
    }

    /// The file's plaintext (secret: it is sealed at once).
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads the plaintext; the message carries positions only.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "not an audit key file (line {}, column {})",
                e.line(),
                e.column()
            )
        })
    }
}

/// An environment's audit keys as a command uses them: derived for one vault and environment,
/// by epoch; the main keys (empty for a backup-only identity) and the backup lane's.
#[derive(Debug)]
pub struct Keyring {
    /// The newest epoch: it MACs new events.
    pub current: u32,
    /// Every epoch's key: older events verify under theirs.
    pub by_epoch: std::collections::BTreeMap<u32, AuditKey>,
    /// The newest backup lane epoch, when the lane keys were opened.
    pub lane_current: Option<u32>,
    /// Every backup lane epoch's key.
    pub lane: std::collections::BTreeMap<u32, AuditKey>,
}

impl Keyring {
    /// Derives every epoch's key of `keys` for `env` in `vault`.
    pub fn derive(keys: &AuditKeys, vault: &str, env: &str) -> Result<Keyring, &'static str> {
        let current = keys.current().ok_or("it holds no key")?.epoch;
        let mut by_epoch = std::collections::BTreeMap::new();
        for k in &keys.keys {
            let derived = k.derive(vault, env).ok_or("a key is not 32 bytes")?;
            by_epoch.insert(k.epoch, derived);
        }
        Ok(Keyring {
            current,
            by_epoch,
            lane_current: None,
            lane: std::collections::BTreeMap::new(),
        })
    }

    /// Only the backup lane's keys (a backup-only identity): it MACs `backup.*` events and
    /// authenticates nothing else.
    pub fn lane_only(lane: &AuditKeys, vault: &str, env: &str) -> Result<Keyring, &'static str> {
        Keyring {
            current: 0,
            by_epoch: std::collections::BTreeMap::new(),
            lane_current: None,
            lane: std::collections::BTreeMap::new(),
        }
        .with_lane(lane, vault, env)
    }

    /// Adds the backup lane's keys.
    pub fn with_lane(
        mut self,
        lane: &AuditKeys,
        vault: &str,
        env: &str,
    ) -> Result<Keyring, &'static str> {
        self.lane_current = Some(lane.current().ok_or("it holds no key")?.epoch);
        self.lane.clear();
        for k in &lane.keys {
            let derived = k.derive_lane(vault, env).ok_or("a key is not 32 bytes")?;
            self.lane.insert(k.epoch, derived);
        }
        Ok(self)
    }

    /// Whether the main keys are held (not a backup-only identity).
    pub fn has_main(&self) -> bool {
        !self.by_epoch.is_empty()
    }

    /// The key new events are MACed with.
    pub fn signing(&self) -> Option<&AuditKey> {
        self.by_epoch.get(&self.current)
    }

    /// The lane key new `backup.*` events of a backup-only identity are MACed with, and its
    /// epoch.
    pub fn lane_signing(&self) -> Option<(u32, &AuditKey)> {
        let epoch = self.lane_current?;
        self.lane.get(&epoch).map(|k| (epoch, k))
    }

    /// A tag over `digest` (a derived-state cache's SHA-256) under every key held, main and
    /// lane, each with its epoch: equal only for the same keys and the same digest, so a
    /// cache written with other keys, or edited, is never taken for this keyring's.
    pub fn cache_tag(&self, digest: &str) -> String {
        let main = self
            .by_epoch
            .iter()
            .map(|(e, k)| format!("m{e}:{}", k.mac_cache(digest)));
        let lane = self
            .lane
            .iter()
            .map(|(e, k)| format!("l{e}:{}", k.mac_cache(digest)));
        main.chain(lane).collect::<Vec<_>>().join(",")
    }

    /// Whether `mac` is the MAC of `id` under `epoch`'s key.
    pub fn check(&self, epoch: u32, id: &EventId, mac: &str) -> bool {
        self.by_epoch.get(&epoch).is_some_and(|k| k.check(id, mac))
    }

    /// Whether `mac` is the MAC of `id` under the lane (`lane`) or main key of `epoch`. Without
    /// the main keys (a backup-only identity) a main event rests on structure: `true`.
    pub fn check_any(&self, lane: bool, epoch: u32, id: &EventId, mac: &str) -> bool {
        if lane {
            self.lane.get(&epoch).is_some_and(|k| k.check(id, mac))
        } else if self.has_main() {
            self.check(epoch, id, mac)
        } else {
            true
        }
    }
}

/// Whether an event MACed under a backup lane key may be trusted: a `backup.*` action (not
/// `backup-recipients.*`) whose files are backup records only.
pub fn lane_may_record<'a>(action: &str, mut files: impl Iterator<Item = &'a str>) -> bool {
    action.starts_with("backup.")
        && files.all(|f| {
            f.strip_prefix("backups/")
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_depend_on_key_vault_environment_and_epoch() {
        let id = EventId::parse(&"ab".repeat(32)).unwrap();
        let other = EventId::parse(&"cd".repeat(32)).unwrap();
        let root = [7u8; 32];
        let k = AuditKey::derive(&root, "v1", "prod", 1).unwrap();
        let mac = k.mac(&id);
        assert_eq!(mac.len(), 64);
        assert!(k.check(&id, &mac));
        assert!(!k.check(&other, &mac));
        assert!(!k.check(&id, &mac[..62]));
        assert!(!k.check(&id, "zz"));
        for (vault, env, epoch, key) in [
            ("v2", "prod", 1, root),
            ("v1", "stage", 1, root),
            ("v1", "prod", 2, root),
            ("v1", "prod", 1, [8u8; 32]),
        ] {
            let k2 = AuditKey::derive(&key, vault, env, epoch).unwrap();
            assert!(!k2.check(&id, &mac), "{vault} {env} {epoch}");
        }
        // The file keeps keys by epoch and never prints them.
        let keys = AuditKeys {
            bundle_sha256: "00".repeat(32),
            keys: vec![EpochKey::new(1, &root), EpochKey::new(2, &[9u8; 32])],
        };
        let json = keys.to_json();
        let back = AuditKeys::from_json(&json).unwrap();
        assert_eq!(back.current().unwrap().epoch, 2);
        assert!(
            back.epoch(1)
                .unwrap()
                .derive("v1", "prod")
                .unwrap()
                .check(&id, &mac)
        );
        let shown = format!("{back:?}");
        assert!(!shown.contains(&STANDARD.encode(root)), "{shown}");
        assert!(AuditKeys::from_json(b"{\"keys\":1}").is_err());
    }

    #[test]
    fn lane_keys_are_not_main_keys_and_record_only_backups() {
        let id = EventId::parse(&"ab".repeat(32)).unwrap();
        let root = [7u8; 32];
        let main = AuditKey::derive(&root, "v1", "prod", 1).unwrap();
        let lane = AuditKey::derive_lane(&root, "v1", "prod", 1).unwrap();
        assert!(!lane.check(&id, &main.mac(&id)));
        assert!(!main.check(&id, &lane.mac(&id)));
        let keys = AuditKeys {
            bundle_sha256: "00".repeat(32),
            keys: vec![EpochKey::new(1, &root)],
        };
        let ring = Keyring::lane_only(&keys, "v1", "prod").unwrap();
        assert!(!ring.has_main());
        assert!(ring.check_any(true, 1, &id, &lane.mac(&id)));
        assert!(!ring.check_any(true, 1, &id, &main.mac(&id)));
        assert!(!ring.check_any(true, 2, &id, &lane.mac(&id)));
        assert!(lane_may_record(
            "backup.seal",
            ["backups/0a.yaml"].into_iter()
        ));
        assert!(lane_may_record("backup.verify", std::iter::empty()));
        for (action, files) in [
            ("issuer.create", vec![]),
            ("policy.accept", vec![]),
            ("recipients.add", vec![]),
            ("backup-recipients.add", vec![]),
            ("backup.seal", vec!["bundle.age"]),
            ("backup.seal", vec!["backups/x/y.yaml"]),
            ("backup.prune", vec!["backup-recipients.txt"]),
        ] {
            assert!(!lane_may_record(action, files.into_iter()), "{action}");
        }
    }
}
