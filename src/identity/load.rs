//! Reading and checking `identities.toml` (SPEC §5) into a [`Directory`].
//!
//! Apart from the lookups because only loading needs serde, TOML spans and diagnostics.
//! Loading checks every cross-reference (device → user, user → group) and every claim (an
//! address, a network or a DoH token belongs to one device or location) and reports every
//! problem at once with its position, because an operator fixing `dnsgate check` output
//! one error per run would give up (blocky's lesson).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::{Counts, Directory, Group, Identity, LabelMap, TokenMap, canonical_email};
use crate::diag::{Diagnostic, Lines};
use crate::netmap::{FastMap, PrefixMap, Shown, parse_net};

impl Directory {
    /// Loads `identities.toml`; every problem is a diagnostic with its position.
    pub fn load(path: &Path) -> Result<Self, Vec<Diagnostic>> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            vec![Diagnostic::file(
                path,
                format!("cannot read identity directory: {error}"),
            )]
        })?;
        Self::parse(path, &text)
    }

    /// Parses the text of an identity directory; `path` is only used in diagnostics.
    /// The diagnostics come sorted by position.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Vec<Diagnostic>> {
        Self::parse_all(&[IdentityFile {
            path,
            text,
            managed: false,
        }])
    }

    /// Parses several identity files as one directory (the identities file, then what the
    /// admin API made): an entry of one may name an entry of another, and an id, address
    /// or token is claimed once across them all. `path`s are only used in diagnostics,
    /// which come sorted by file and position.
    pub fn parse_all(files: &[IdentityFile<'_>]) -> Result<Self, Vec<Diagnostic>> {
        let mut loader = Loader {
            files: files
                .iter()
                .map(|f| Source {
                    path: f.path,
                    text: f.text,
                    lines: Lines::new(f.text),
                    managed: f.managed,
                })
                .collect(),
            cur: 0,
            diags: Vec::new(),
        };
        let directory = loader.load();
        let mut diags = loader.diags;
        if diags.is_empty() {
            return Ok(directory);
        }
        let order = |d: &Diagnostic| files.iter().position(|f| f.path == d.path);
        diags.sort_by_key(|d| (order(d), d.line, d.col));
        Err(diags)
    }
}

// ---------------------------------------------------------------------------------------
// The file format (SPEC §5). Every name or address that can be wrong is `Spanned`, so its
// diagnostic points at it.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupEntry {
    id: Spanned<String>,
    /// Defaults to the id.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    email: Spanned<String>,
    #[serde(default)]
    name: String,
    /// Group ids.
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    #[serde(default)]
    saml_attributes: HashMap<String, Vec<String>>,
    /// `false`: deprovisioned (SCIM `active: false`, or deleted): its devices keep their
    /// ids but have empty identity fields.
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceEntry {
    id: Spanned<String>,
    /// The user's e-mail address.
    #[serde(default)]
    user: Option<Spanned<String>>,
    /// Addresses or networks.
    #[serde(default)]
    ips: Vec<Spanned<String>>,
    #[serde(default)]
    doh_token: Option<Spanned<String>>,
    /// The SHA-256 of the token, in hex, instead of the token itself.
    #[serde(default)]
    doh_token_sha256: Option<Spanned<String>>,
    /// The label the device puts before `[server] hostname` in its DoT SNI.
    #[serde(default)]
    dot_name: Option<Spanned<String>>,
    /// The identity group (by name) the device is scoped to: its user must be in it
    /// (`group:NAME` API tokens manage it, SPEC §12).
    #[serde(default)]
    group: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocationEntry {
    name: Spanned<String>,
    #[serde(default)]
    networks: Vec<Spanned<String>>,
    #[serde(default)]
    doh_token: Option<Spanned<String>>,
    #[serde(default)]
    doh_token_sha256: Option<Spanned<String>>,
    #[serde(default)]
    dot_name: Option<Spanned<String>>,
}

/// The entries of one `[[section]]`, and whether any entry failed to load (then the
/// section is incomplete, and references into it are not checked, so that one mistake is
/// not reported again at every use).
struct Section<T> {
    entries: T,
    is_complete: bool,
}

impl<T: Default> Default for Section<T> {
    fn default() -> Self {
        Self {
            entries: T::default(),
            is_complete: true,
        }
    }
}

/// A user as devices see it.
struct User {
    email: String,
    name: String,
    groups: Vec<Group>,
    saml_attributes: HashMap<String, Vec<String>>,
    active: bool,
    /// From a file an identity provider manages.
    managed: bool,
}

/// A place in one of the files: (file index, byte offset).
type At = (usize, usize);

/// Which device or location claimed a network first, and where: for the messages.
type Claims = HashMap<IpNet, (String, At)>;

/// One identity file to load.
#[derive(Debug, Clone, Copy)]
pub struct IdentityFile<'a> {
    /// Its path (for diagnostics).
    pub path: &'a Path,
    /// Its text.
    pub text: &'a str,
    /// Its users and groups are managed by an identity provider (SCIM): a device whose
    /// `group` its user has left is a warning, not an error, since the provider's change
    /// must never be refused.
    pub managed: bool,
}

/// One file of the directory.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    /// Built once: a directory with thousands of bad entries reports each in O(log n).
    lines: Lines,
    managed: bool,
}

/// Builds a [`Directory`], collecting diagnostics.
struct Loader<'a> {
    files: Vec<Source<'a>>,
    /// The file of the entry being read: offsets are in it.
    cur: usize,
    diags: Vec<Diagnostic>,
}

impl Loader<'_> {
    fn error(&mut self, offset: usize, message: impl Into<String>) {
        let f = &self.files[self.cur];
        let (line, col) = f.lines.line_col(f.text, offset);
        self.diags.push(Diagnostic {
            path: f.path.to_path_buf(),
            line,
            col,
            message: message.into(),
        });
    }

    /// Where the entry being read is: `(file, offset)`.
    fn at(&self, offset: usize) -> At {
        (self.cur, offset)
    }

    /// A place as a message names it: "line 3", or "line 3 of FILE" in another file.
    fn line(&self, (file, offset): At) -> String {
        let f = &self.files[file];
        let line = f.lines.line_col(f.text, offset).0;
        if file == self.cur {
            format!("line {line}")
        } else {
            format!("line {line} of {}", f.path.display())
        }
    }

    fn load(&mut self) -> Directory {
        let mut groups = Section::default();
        let mut users = Section::default();
        let mut devices = Section::default();
        let mut locations = Section::default();
        let mut syntax = false;
        for file in 0..self.files.len() {
            self.cur = file;
            let (root, syntax_errors) = DeTable::parse_recoverable(self.files[file].text);
            if !syntax_errors.is_empty() {
                // What follows a syntax error is guesswork; report only the syntax.
                for error in syntax_errors {
                    let offset = error.span().map_or(0, |span| span.start);
                    self.error(offset, error.message());
                }
                syntax = true;
                continue;
            }
            for (key, value) in root.into_inner() {
                match &**key.get_ref() {
                    "groups" => self.section(&key, &value, &mut groups),
                    "users" => self.section(&key, &value, &mut users),
                    "devices" => self.section(&key, &value, &mut devices),
                    "locations" => self.section(&key, &value, &mut locations),
                    other => self.error(
                        key.span().start,
                        format!(
                            "unknown key `{other}`, expected `groups`, `users`, `devices` or \
                             `locations`"
                        ),
                    ),
                }
            }
        }
        if syntax {
            return Directory::default();
        }
        let counts = Counts {
            groups: groups.entries.len(),
            users: users.entries.len(),
            devices: devices.entries.len(),
            locations: locations.entries.len(),
        };
        let groups = self.groups(groups);
        let users = self.users(users, &groups);
        let (devices, tokens, by_id, labels) = self.devices(devices, &users);
        let (locations, location_tokens, location_labels) =
            self.locations(locations, &tokens, &labels);
        Directory {
            devices,
            tokens,
            by_id,
            labels,
            locations,
            location_tokens,
            location_labels,
            counts,
        }
    }

    /// Deserializes each entry of an array of tables on its own, so that a mistake in one
    /// entry does not hide the mistakes in the others.
    /// The entries are added to `section`, each with its file.
    fn section<T: for<'de> Deserialize<'de>>(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
        section: &mut Section<Vec<(usize, T)>>,
    ) {
        let DeValue::Array(items) = value.get_ref() else {
            let key = key.get_ref();
            self.error(
                value.span().start,
                format!("`{key}` must be an array of tables: [[{key}]]"),
            );
            section.is_complete = false;
            return;
        };
        for item in items.iter() {
            let start = item.span().start;
            match T::deserialize(ValueDeserializer::from(item.clone())) {
                Ok(entry) => section.entries.push((self.cur, entry)),
                Err(error) => {
                    let offset = error.span().map_or(start, |span| span.start);
                    self.error(offset, error.message());
                    section.is_complete = false;
                }
            }
        }
    }

    /// Checks that a required name is not empty; `what` names it in the message.
    fn non_empty<'s>(&mut self, value: &'s Spanned<String>, what: &str) -> Option<&'s str> {
        let text = value.get_ref().trim();
        if text.is_empty() {
            self.error(value.span().start, format!("{what} must not be empty"));
            return None;
        }
        Some(text)
    }

    /// Parses an address or network of `owner` (a `kind`: device or location) and records
    /// the claim; `None`, with a diagnostic, if it is invalid or already claimed.
    fn claim(
        &mut self,
        claims: &mut Claims,
        text: &Spanned<String>,
        kind: &str,
        owner: &str,
    ) -> Option<IpNet> {
        let offset = text.span().start;
        let net = match parse_net(text.get_ref()) {
            Ok(net) => net,
            Err(bad) => {
                self.error(offset, bad.to_string());
                return None;
            }
        };
        if let Some((other, first)) = claims.get(&net) {
            let line = self.line(*first);
            let shown = Shown(net);
            let message = if other == owner {
                format!("`{shown}` is listed twice for {kind} `{owner}` (also on {line})")
            } else {
                format!("`{shown}` is already claimed by {kind} `{other}` ({line})")
            };
            self.error(offset, message);
            return None;
        }
        claims.insert(net, (owner.to_owned(), self.at(offset)));
        Some(net)
    }

    fn groups(
        &mut self,
        section: Section<Vec<(usize, GroupEntry)>>,
    ) -> Section<HashMap<String, Group>> {
        let mut by_id = HashMap::new();
        let mut first_seen: HashMap<String, At> = HashMap::new();
        let mut is_complete = section.is_complete;
        for (file, entry) in section.entries {
            self.cur = file;
            let Some(id) = self.non_empty(&entry.id, "group id") else {
                is_complete = false;
                continue;
            };
            let offset = entry.id.span().start;
            if let Some(first) = first_seen.get(id) {
                let line = self.line(*first);
                self.error(
                    offset,
                    format!("duplicate group id `{id}` (first defined on {line})"),
                );
                continue;
            }
            first_seen.insert(id.to_owned(), self.at(offset));
            let group = Group {
                id: id.to_owned(),
                name: entry.name.unwrap_or_else(|| id.to_owned()),
                email: entry.email.trim().to_ascii_lowercase(),
            };
            by_id.insert(id.to_owned(), group);
        }
        Section {
            entries: by_id,
            is_complete,
        }
    }

    fn users(
        &mut self,
        section: Section<Vec<(usize, UserEntry)>>,
        groups: &Section<HashMap<String, Group>>,
    ) -> Section<HashMap<String, User>> {
        let mut by_email = HashMap::new();
        let mut first_seen: HashMap<String, At> = HashMap::new();
        let mut is_complete = section.is_complete;
        for (file, entry) in section.entries {
            self.cur = file;
            let offset = entry.email.span().start;
            let email = entry.email.get_ref().trim().to_ascii_lowercase();
            if !is_email(&email) {
                self.error(
                    offset,
                    format!("`{}` is not an e-mail address", entry.email.get_ref()),
                );
                is_complete = false;
                continue;
            }
            if let Some(first) = first_seen.get(&email) {
                let line = self.line(*first);
                self.error(
                    offset,
                    format!("duplicate user `{email}` (first defined on {line})"),
                );
                continue;
            }
            first_seen.insert(email.clone(), self.at(offset));
            let mut user_groups: Vec<Group> = Vec::with_capacity(entry.groups.len());
            for id in &entry.groups {
                match groups.entries.get(id.get_ref().trim()) {
                    Some(group) if !user_groups.contains(group) => user_groups.push(group.clone()),
                    None if groups.is_complete => {
                        self.error(
                            id.span().start,
                            format!("unknown group id `{}`", id.get_ref()),
                        );
                    }
                    // Listed twice, or in a group entry that failed to load.
                    Some(_) | None => {}
                }
            }
            let user = User {
                email: email.clone(),
                name: entry.name,
                groups: user_groups,
                saml_attributes: entry.saml_attributes,
                active: entry.active,
                managed: self.files[self.cur].managed,
            };
            by_email.insert(email, user);
        }
        Section {
            entries: by_email,
            is_complete,
        }
    }

    fn devices(
        &mut self,
        section: Section<Vec<(usize, DeviceEntry)>>,
        users: &Section<HashMap<String, User>>,
    ) -> (PrefixMap<Arc<Identity>>, TokenMap, TokenMap, LabelMap) {
        let mut by_ip = PrefixMap::default();
        let mut tokens = FastMap::default();
        let mut by_id = FastMap::default();
        let mut dot_names: FastMap<Box<str>, Arc<Identity>> = FastMap::default();
        let mut id_labels: FastMap<Box<str>, Arc<Identity>> = FastMap::default();
        // Who claimed what first, for the messages: (device id, offset).
        let mut ids: HashMap<String, At> = HashMap::new();
        let mut claimed_nets = Claims::new();
        let mut claimed_tokens: HashMap<String, (String, At)> = HashMap::new();
        for (file, entry) in section.entries {
            self.cur = file;
            let Some(id) = self.non_empty(&entry.id, "device id") else {
                continue;
            };
            let id_offset = entry.id.span().start;
            if let Some(first) = ids.get(id) {
                let line = self.line(*first);
                self.error(
                    id_offset,
                    format!("duplicate device id `{id}` (first defined on {line})"),
                );
                continue;
            }
            ids.insert(id.to_owned(), self.at(id_offset));
            let mut identity = Identity {
                device_id: id.to_owned(),
                ..Identity::default()
            };
            if let Some(group) = &entry.group {
                let name = group.get_ref();
                let user = entry
                    .user
                    .as_ref()
                    .map(|u| u.get_ref().trim().to_ascii_lowercase());
                match user.as_ref().map(|e| users.entries.get(e)) {
                    None => self.error(
                        group.span().start,
                        format!("device `{id}` has group `{name}` but no user: a device of a group belongs to a user in it"),
                    ),
                    Some(Some(u)) if u.active && !u.groups.iter().any(|g| g.name == *name) => {
                        let message = format!(
                            "device `{id}`: its user `{}` is not in group `{name}`",
                            u.email
                        );
                        if u.managed {
                            tracing::warn!("{message} (the identity provider changed the membership)");
                        } else {
                            self.error(group.span().start, message);
                        }
                    }
                    // In it, or the user is unknown (reported below).
                    Some(_) => {}
                }
            }
            if let Some(user) = &entry.user {
                let email = user.get_ref().trim().to_ascii_lowercase();
                match users.entries.get(&email) {
                    // Deprovisioned: the device is known, its person no longer.
                    Some(u) if !u.active => {}
                    Some(u) => {
                        identity.email_canonical = canonical_email(&u.email);
                        identity.email = u.email.clone();
                        identity.name = u.name.clone();
                        identity.groups = u.groups.clone();
                        identity.saml_attributes = u.saml_attributes.clone();
                    }
                    None if users.is_complete => {
                        self.error(
                            user.span().start,
                            format!("unknown user `{}`", user.get_ref()),
                        );
                    }
                    None => {}
                }
            }
            let identity = Arc::new(identity);
            by_id.insert(id.into(), Arc::clone(&identity));
            id_labels.insert(id.to_ascii_lowercase().into(), Arc::clone(&identity));
            if let Some(name) = &entry.dot_name
                && let Some(label) = self.dot_name(name)
            {
                if dot_names.contains_key(label.as_str()) {
                    self.error(
                        name.span().start,
                        format!("dot_name `{label}` is used by another device"),
                    );
                } else {
                    dot_names.insert(label.into(), Arc::clone(&identity));
                }
            }
            for ip in &entry.ips {
                if let Some(net) = self.claim(&mut claimed_nets, ip, "device", id) {
                    by_ip.insert(net, Arc::clone(&identity));
                }
            }
            let digest = self.token(&entry.doh_token, &entry.doh_token_sha256);
            if let Some((offset, secret)) = digest {
                if let Some((other, first)) = claimed_tokens.get(secret.as_str()) {
                    // The token is a secret: name the other device, not the token.
                    let line = self.line(*first);
                    self.error(
                        offset,
                        format!("doh_token is already used by device `{other}` ({line})"),
                    );
                } else {
                    tokens.insert(secret.as_str().into(), Arc::clone(&identity));
                    claimed_tokens.insert(secret, (id.to_owned(), self.at(offset)));
                }
            }
        }
        (
            by_ip,
            tokens,
            by_id,
            LabelMap {
                dot_names,
                ids: id_labels,
            },
        )
    }

    /// A device's or location's token, as its SHA-256 (lowercase hex) and its offset:
    /// given as the token, or as its hash.
    fn token(
        &mut self,
        token: &Option<Spanned<String>>,
        sha256: &Option<Spanned<String>>,
    ) -> Option<(usize, String)> {
        match (token, sha256) {
            (Some(t), Some(_)) => {
                self.error(
                    t.span().start,
                    "give doh_token or doh_token_sha256, not both",
                );
                None
            }
            (Some(t), None) if t.get_ref().is_empty() => {
                self.error(t.span().start, "doh_token must not be empty");
                None
            }
            (Some(t), None) => Some((t.span().start, super::token_digest(t.get_ref()))),
            (None, Some(h)) => {
                let hex = h.get_ref().to_ascii_lowercase();
                if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Some((h.span().start, hex))
                } else {
                    self.error(
                        h.span().start,
                        "doh_token_sha256 must be 64 hex digits (the SHA-256 of the token)",
                    );
                    None
                }
            }
            (None, None) => None,
        }
    }

    /// A `dot_name`, lowercased, if it is one DNS label.
    fn dot_name(&mut self, name: &Spanned<String>) -> Option<String> {
        let label = name.get_ref().to_ascii_lowercase();
        let valid = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            self.error(
                name.span().start,
                format!(
                    "dot_name `{}` is not one DNS label (letters, digits, -)",
                    name.get_ref()
                ),
            );
            return None;
        }
        if label.len() < 16 {
            tracing::warn!(
                "dot_name `{label}` is shorter than 16 characters: it lets a client outside allow_networks in, so make it hard to guess"
            );
        }
        Some(label)
    }

    fn locations(
        &mut self,
        section: Section<Vec<(usize, LocationEntry)>>,
        devices: &TokenMap,
        device_labels: &LabelMap,
    ) -> LocationMaps {
        let mut tokens: FastMap<Box<str>, Arc<str>> = FastMap::default();
        let mut labels: FastMap<Box<str>, Arc<str>> = FastMap::default();
        let mut by_net = PrefixMap::default();
        let mut names: HashMap<String, At> = HashMap::new();
        let mut claimed = Claims::new();
        for (file, entry) in section.entries {
            self.cur = file;
            let Some(name) = self.non_empty(&entry.name, "location name") else {
                continue;
            };
            let name_offset = entry.name.span().start;
            if let Some(first) = names.get(name) {
                let line = self.line(*first);
                self.error(
                    name_offset,
                    format!("duplicate location `{name}` (first defined on {line})"),
                );
                continue;
            }
            names.insert(name.to_owned(), self.at(name_offset));
            let shared: Arc<str> = name.into();
            for network in &entry.networks {
                if let Some(net) = self.claim(&mut claimed, network, "location", name) {
                    by_net.insert(net, Arc::clone(&shared));
                }
            }
            if let Some((offset, digest)) = self.token(&entry.doh_token, &entry.doh_token_sha256) {
                if devices.contains_key(digest.as_str()) || tokens.contains_key(digest.as_str()) {
                    self.error(
                        offset,
                        "doh_token is already used by another device or location",
                    );
                } else {
                    tokens.insert(digest.into(), Arc::clone(&shared));
                }
            }
            if let Some(dn) = &entry.dot_name
                && let Some(label) = self.dot_name(dn)
            {
                if device_labels.dot_names.contains_key(label.as_str())
                    || labels.contains_key(label.as_str())
                {
                    self.error(
                        dn.span().start,
                        format!("dot_name `{label}` is used by another device or location"),
                    );
                } else {
                    labels.insert(label.into(), Arc::clone(&shared));
                }
            }
        }
        (by_net, tokens, labels)
    }
}

/// Location names by network, by token digest and by DoT label.
type LocationMaps = (
    PrefixMap<Arc<str>>,
    FastMap<Box<str>, Arc<str>>,
    FastMap<Box<str>, Arc<str>>,
);

/// A plausible e-mail address: something on each side of the last `@`.
fn is_email(email: &str) -> bool {
    email
        .rsplit_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
}
