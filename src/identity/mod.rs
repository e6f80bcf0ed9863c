//! Users, groups, devices and locations from `identities.toml` (SPEC §5): the types, and
//! the lookups a query makes.
//!
//! Everything is resolved once, at load: each device gets one shared [`Identity`] with its
//! user's groups already looked up, so the query path does one hash probe per prefix
//! length in use and never allocates. Reading and checking the file, which the query path
//! never runs, is in `load`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::netmap::{FastMap, PrefixMap};

mod load;

pub use load::IdentityFile;
#[cfg(test)]
mod tests;

/// A group a user belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// `identity.groups.id`
    pub id: String,
    /// `identity.groups.name`
    pub name: String,
    /// `identity.groups.email` (lowercase)
    pub email: String,
}

/// When a device last asked anything: Unix seconds, 0 for never. A shared, lock-free cell
/// (every query of the device touches it); it takes no part in comparisons or clones of
/// the identity it belongs to.
#[derive(Debug, Default)]
pub struct LastSeen(AtomicU64);

impl LastSeen {
    /// Notes a query at `unix` seconds (written only when the second changes).
    #[inline]
    pub fn touch(&self, unix: u64) {
        if self.0.load(Ordering::Relaxed) != unix {
            self.0.store(unix, Ordering::Relaxed);
        }
    }

    /// Notes a query at `unix` seconds unless a later one is noted (a time kept across a
    /// restart never hides a newer one).
    pub fn at_least(&self, unix: u64) {
        self.0.fetch_max(unix, Ordering::Relaxed);
    }

    /// When, if ever.
    pub fn get(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&s| s > 0)
    }
}

impl Clone for LastSeen {
    fn clone(&self) -> Self {
        Self(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

impl PartialEq for LastSeen {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LastSeen {}

/// The identity behind a query: a device and, if assigned, its user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `identity.device_id`
    pub device_id: String,
    /// `identity.email` (lowercase; empty without a user)
    pub email: String,
    /// [`canonical_email`] of `email`, for extended e-mail matching (SPEC §5).
    pub email_canonical: String,
    /// `identity.name`
    pub name: String,
    /// The user's groups.
    pub groups: Vec<Group>,
    /// `identity.saml_attributes`
    pub saml_attributes: HashMap<String, Vec<String>>,
    /// When the device last asked (the API shows it).
    pub last_seen: LastSeen,
}

/// Device identities by DoH token (or by id).
type TokenMap = FastMap<Box<str>, Arc<Identity>>;

/// Device identities by DoT label: `dot_name`s and (lowercased) ids.
#[derive(Debug, Default)]
pub(crate) struct LabelMap {
    pub(crate) dot_names: FastMap<Box<str>, Arc<Identity>>,
    pub(crate) ids: FastMap<Box<str>, Arc<Identity>>,
}

/// The SHA-256 of a DoH token, lowercase hex: how tokens are kept and compared (the
/// identities file may hold only this, `doh_token_sha256`).
pub fn token_digest(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// The SHA-256 of `bytes`, lowercase hex (tokens here, API secrets and audit lines above).
pub fn sha256_hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// The loaded identity directory.
#[derive(Debug, Default)]
pub struct Directory {
    /// Device identities by address: single addresses are /32 and /128 entries.
    devices: PrefixMap<Arc<Identity>>,
    tokens: TokenMap,
    /// Device identities by device id.
    by_id: TokenMap,
    /// Device identities by DoT label.
    labels: LabelMap,
    locations: PrefixMap<Arc<str>>,
    /// Location names by token digest and by DoT label.
    location_tokens: FastMap<Box<str>, Arc<str>>,
    location_labels: FastMap<Box<str>, Arc<str>>,
    counts: Counts,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    groups: usize,
    users: usize,
    devices: usize,
    locations: usize,
}

impl Directory {
    /// The identity of the device with this source address: an exact address first, then
    /// the device network holding it with the longest prefix. IPv4-mapped IPv6 sources
    /// match IPv4 entries.
    pub fn identity_for_ip(&self, ip: IpAddr) -> Option<&Arc<Identity>> {
        self.devices.get(ip.to_canonical())
    }

    /// The identity of the device with this DoH token.
    pub fn identity_for_token(&self, token: &str) -> Option<&Arc<Identity>> {
        self.tokens.get(token_digest(token).as_str())
    }

    /// The identity of the device with this id (`device = ...` in a policy test case).
    pub fn identity_for_device(&self, id: &str) -> Option<&Arc<Identity>> {
        self.by_id.get(id)
    }

    /// The device a DoT SNI label names (case-insensitive): by `dot_name` first (`true`:
    /// a secret enough to let a client outside `allow_networks` in), else by id (`false`).
    pub fn identity_for_label(&self, label: &str) -> Option<(&Arc<Identity>, bool)> {
        let label = label.to_ascii_lowercase();
        if let Some(i) = self.labels.dot_names.get(label.as_str()) {
            return Some((i, true));
        }
        self.labels.ids.get(label.as_str()).map(|i| (i, false))
    }

    /// The device and the location a DoH token names (hashed once for both).
    pub fn named_by_token(&self, token: &str) -> (Option<&Arc<Identity>>, Option<&str>) {
        let digest = token_digest(token);
        (
            self.tokens.get(digest.as_str()),
            self.location_tokens.get(digest.as_str()).map(|n| &**n),
        )
    }

    /// The location a DoH token names.
    pub fn location_for_token(&self, token: &str) -> Option<&str> {
        self.location_tokens
            .get(token_digest(token).as_str())
            .map(|n| &**n)
    }

    /// The location a DoT label (`dot_name`) names.
    pub fn location_for_label(&self, label: &str) -> Option<&str> {
        self.location_labels
            .get(label.to_ascii_lowercase().as_str())
            .map(|n| &**n)
    }

    /// The name of the location whose networks hold this address (most specific wins).
    pub fn location_for_ip(&self, ip: IpAddr) -> Option<&str> {
        self.locations.get(ip.to_canonical()).map(|name| &**name)
    }

    /// Stops device `id`'s token and label identity (revoked through the API): its DoH
    /// token and DoT labels name nobody from now on; its addresses still name it.
    /// `false` if there is no such device.
    pub fn revoke(&mut self, id: &str) -> bool {
        let Some(identity) = self.by_id.get(id).cloned() else {
            return false;
        };
        self.tokens.retain(|_, i| !Arc::ptr_eq(i, &identity));
        self.labels
            .dot_names
            .retain(|_, i| !Arc::ptr_eq(i, &identity));
        self.labels.ids.retain(|_, i| !Arc::ptr_eq(i, &identity));
        true
    }

    /// Gives device `id` a new DoH token, by its SHA-256 (`token_digest`): the old one
    /// names nobody from now on. `false` if there is no such device.
    pub fn replace_token(&mut self, id: &str, digest: &str) -> bool {
        let Some(identity) = self.by_id.get(id).cloned() else {
            return false;
        };
        self.tokens.retain(|_, i| !Arc::ptr_eq(i, &identity));
        self.tokens.insert(digest.into(), identity);
        true
    }

    /// The devices by id.
    pub fn devices(&self) -> impl Iterator<Item = (&str, &Arc<Identity>)> {
        self.by_id.iter().map(|(id, d)| (&**id, d))
    }

    /// Carries over when each device was last seen from the directory `old` replaces (a
    /// reload builds new identities).
    pub fn adopt_last_seen(&self, old: &Self) {
        for (id, identity) in &self.by_id {
            if let Some(when) = old.by_id.get(id).and_then(|o| o.last_seen.get()) {
                identity.last_seen.touch(when);
            }
        }
    }

    /// How many groups the directory defines.
    pub fn len_groups(&self) -> usize {
        self.counts.groups
    }

    /// How many users the directory defines.
    pub fn len_users(&self) -> usize {
        self.counts.users
    }

    /// How many devices the directory defines.
    pub fn len_devices(&self) -> usize {
        self.counts.devices
    }

    /// How many locations the directory defines.
    pub fn len_locations(&self) -> usize {
        self.counts.locations
    }

    /// Whether the directory defines nothing at all.
    pub fn is_empty(&self) -> bool {
        let Counts {
            groups,
            users,
            devices,
            locations,
        } = self.counts;
        groups + users + devices + locations == 0
    }
}

/// The canonical form of an e-mail address for "extended e-mail" matching (SPEC §5):
/// lowercase, `+tag` dropped from the local part, dots removed from the local part.
/// `con.tact+1@Example.com` → `contact@example.com`.
pub fn canonical_email(email: &str) -> String {
    let email = email.to_ascii_lowercase();
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let local = local.split_once('+').map_or(local, |(l, _)| l);
            let local: String = local.chars().filter(|&c| c != '.').collect();
            format!("{local}@{domain}")
        }
        None => email,
    }
}
