//! Users, groups, devices and locations from `identities.toml` (SPEC §5).
//!
//! Everything is resolved once, at load: each device gets one shared [`Identity`] with its
//! user's groups already looked up, so the query path does one hash probe per prefix
//! length in use and never allocates. Loading checks every cross-reference (device → user,
//! user → group) and every claim (an address, a network or a DoH token belongs to one
//! device or location) and reports every problem at once with its position, because an
//! operator fixing `dnsgate check` output one error per run would give up (blocky's lesson).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diag::{Diagnostic, line_col};
use crate::netmap::{FastMap, PrefixMap, Shown, parse_net};

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
}

/// Device identities by DoH token.
type TokenMap = FastMap<Box<str>, Arc<Identity>>;

/// The loaded identity directory.
#[derive(Debug, Default)]
pub struct Directory {
    /// Device identities by address: single addresses are /32 and /128 entries.
    devices: PrefixMap<Arc<Identity>>,
    tokens: TokenMap,
    locations: PrefixMap<Arc<str>>,
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
        let mut loader = Loader {
            path,
            text,
            diags: Vec::new(),
        };
        let directory = loader.load();
        let mut diags = loader.diags;
        if diags.is_empty() {
            return Ok(directory);
        }
        diags.sort_by_key(|d| (d.line, d.col));
        Err(diags)
    }

    /// The identity of the device with this source address: an exact address first, then
    /// the device network holding it with the longest prefix. IPv4-mapped IPv6 sources
    /// match IPv4 entries.
    pub fn identity_for_ip(&self, ip: IpAddr) -> Option<&Arc<Identity>> {
        self.devices.get(ip.to_canonical())
    }

    /// The identity of the device with this DoH token.
    pub fn identity_for_token(&self, token: &str) -> Option<&Arc<Identity>> {
        self.tokens.get(token)
    }

    /// The name of the location whose networks hold this address (most specific wins).
    pub fn location_for_ip(&self, ip: IpAddr) -> Option<&str> {
        self.locations.get(ip.to_canonical()).map(|name| &**name)
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocationEntry {
    name: Spanned<String>,
    #[serde(default)]
    networks: Vec<Spanned<String>>,
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
}

/// Which device or location claimed a network first, and where: for the messages.
type Claims = HashMap<IpNet, (String, usize)>;

/// Builds a [`Directory`], collecting diagnostics.
struct Loader<'a> {
    path: &'a Path,
    text: &'a str,
    diags: Vec<Diagnostic>,
}

impl Loader<'_> {
    fn error(&mut self, offset: usize, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::at_offset(self.path, self.text, offset, message));
    }

    fn line(&self, offset: usize) -> usize {
        line_col(self.text, offset).0
    }

    fn load(&mut self) -> Directory {
        let (root, syntax_errors) = DeTable::parse_recoverable(self.text);
        if !syntax_errors.is_empty() {
            // What follows a syntax error is guesswork; report only the syntax.
            for error in syntax_errors {
                let offset = error.span().map_or(0, |span| span.start);
                self.error(offset, error.message());
            }
            return Directory::default();
        }
        let mut groups = Section::default();
        let mut users = Section::default();
        let mut devices = Section::default();
        let mut locations = Section::default();
        for (key, value) in root.into_inner() {
            match &**key.get_ref() {
                "groups" => groups = self.section(&key, &value),
                "users" => users = self.section(&key, &value),
                "devices" => devices = self.section(&key, &value),
                "locations" => locations = self.section(&key, &value),
                other => self.error(
                    key.span().start,
                    format!(
                        "unknown key `{other}`, expected `groups`, `users`, `devices` or \
                         `locations`"
                    ),
                ),
            }
        }
        let counts = Counts {
            groups: groups.entries.len(),
            users: users.entries.len(),
            devices: devices.entries.len(),
            locations: locations.entries.len(),
        };
        let groups = self.groups(groups);
        let users = self.users(users, &groups);
        let (devices, tokens) = self.devices(devices, &users);
        let locations = self.locations(locations);
        Directory {
            devices,
            tokens,
            locations,
            counts,
        }
    }

    /// Deserializes each entry of an array of tables on its own, so that a mistake in one
    /// entry does not hide the mistakes in the others.
    fn section<T: for<'de> Deserialize<'de>>(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
    ) -> Section<Vec<T>> {
        let mut section = Section::default();
        let DeValue::Array(items) = value.get_ref() else {
            let key = key.get_ref();
            self.error(
                value.span().start,
                format!("`{key}` must be an array of tables: [[{key}]]"),
            );
            section.is_complete = false;
            return section;
        };
        for item in items.iter() {
            let start = item.span().start;
            match T::deserialize(ValueDeserializer::from(item.clone())) {
                Ok(entry) => section.entries.push(entry),
                Err(error) => {
                    let offset = error.span().map_or(start, |span| span.start);
                    self.error(offset, error.message());
                    section.is_complete = false;
                }
            }
        }
        section
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
                format!("`{shown}` is listed twice for {kind} `{owner}` (also on line {line})")
            } else {
                format!("`{shown}` is already claimed by {kind} `{other}` (line {line})")
            };
            self.error(offset, message);
            return None;
        }
        claims.insert(net, (owner.to_owned(), offset));
        Some(net)
    }

    fn groups(&mut self, section: Section<Vec<GroupEntry>>) -> Section<HashMap<String, Group>> {
        let mut by_id = HashMap::new();
        let mut first_seen: HashMap<String, usize> = HashMap::new();
        let mut is_complete = section.is_complete;
        for entry in section.entries {
            let Some(id) = self.non_empty(&entry.id, "group id") else {
                is_complete = false;
                continue;
            };
            let offset = entry.id.span().start;
            if let Some(first) = first_seen.get(id) {
                let line = self.line(*first);
                self.error(
                    offset,
                    format!("duplicate group id `{id}` (first defined on line {line})"),
                );
                continue;
            }
            first_seen.insert(id.to_owned(), offset);
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
        section: Section<Vec<UserEntry>>,
        groups: &Section<HashMap<String, Group>>,
    ) -> Section<HashMap<String, User>> {
        let mut by_email = HashMap::new();
        let mut first_seen: HashMap<String, usize> = HashMap::new();
        let mut is_complete = section.is_complete;
        for entry in section.entries {
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
                    format!("duplicate user `{email}` (first defined on line {line})"),
                );
                continue;
            }
            first_seen.insert(email.clone(), offset);
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
        section: Section<Vec<DeviceEntry>>,
        users: &Section<HashMap<String, User>>,
    ) -> (PrefixMap<Arc<Identity>>, TokenMap) {
        let mut by_ip = PrefixMap::default();
        let mut tokens = FastMap::default();
        // Who claimed what first, for the messages: (device id, offset).
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut claimed_nets = Claims::new();
        let mut claimed_tokens: HashMap<String, (String, usize)> = HashMap::new();
        for entry in section.entries {
            let Some(id) = self.non_empty(&entry.id, "device id") else {
                continue;
            };
            let id_offset = entry.id.span().start;
            if let Some(first) = ids.get(id) {
                let line = self.line(*first);
                self.error(
                    id_offset,
                    format!("duplicate device id `{id}` (first defined on line {line})"),
                );
                continue;
            }
            ids.insert(id.to_owned(), id_offset);
            let mut identity = Identity {
                device_id: id.to_owned(),
                ..Identity::default()
            };
            if let Some(user) = &entry.user {
                let email = user.get_ref().trim().to_ascii_lowercase();
                match users.entries.get(&email) {
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
            for ip in &entry.ips {
                if let Some(net) = self.claim(&mut claimed_nets, ip, "device", id) {
                    by_ip.insert(net, Arc::clone(&identity));
                }
            }
            if let Some(token) = &entry.doh_token {
                let offset = token.span().start;
                let secret = token.get_ref();
                if secret.is_empty() {
                    self.error(offset, "doh_token must not be empty");
                } else if let Some((other, first)) = claimed_tokens.get(secret.as_str()) {
                    // The token is a secret: name the other device, not the token.
                    let line = self.line(*first);
                    self.error(
                        offset,
                        format!("doh_token is already used by device `{other}` (line {line})"),
                    );
                } else {
                    claimed_tokens.insert(secret.clone(), (id.to_owned(), offset));
                    tokens.insert(secret.as_str().into(), Arc::clone(&identity));
                }
            }
        }
        (by_ip, tokens)
    }

    fn locations(&mut self, section: Section<Vec<LocationEntry>>) -> PrefixMap<Arc<str>> {
        let mut by_net = PrefixMap::default();
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut claimed = Claims::new();
        for entry in section.entries {
            let Some(name) = self.non_empty(&entry.name, "location name") else {
                continue;
            };
            let name_offset = entry.name.span().start;
            if let Some(first) = names.get(name) {
                let line = self.line(*first);
                self.error(
                    name_offset,
                    format!("duplicate location `{name}` (first defined on line {line})"),
                );
                continue;
            }
            names.insert(name.to_owned(), name_offset);
            let shared: Arc<str> = name.into();
            for network in &entry.networks {
                if let Some(net) = self.claim(&mut claimed, network, "location", name) {
                    by_net.insert(net, Arc::clone(&shared));
                }
            }
        }
        by_net
    }
}

/// A plausible e-mail address: something on each side of the last `@`.
fn is_email(email: &str) -> bool {
    email
        .rsplit_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netmap::canonical_net;

    fn parse(text: &str) -> Result<Directory, Vec<Diagnostic>> {
        Directory::parse(Path::new("identities.toml"), text)
    }

    /// Each diagnostic as `line:col: message`.
    fn errors(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(_) => panic!("expected errors"),
            Err(diags) => diags
                .iter()
                .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
                .collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const EXAMPLE: &str = r#"# The SPEC §5 example, and more.
[[groups]]
id = "grp-finance"
name = "finance"
email = "Finance@Example.com"

[[groups]]
id = "grp-eng"

[[users]]
email = "Alice@Example.com"
name = "alice"
groups = ["grp-finance", "grp-eng", "grp-finance"]
saml_attributes = { department = ["Marketing"], level = ["3", "4"] }

[[users]]
email = "con.tact+1@example.com"
name = "Contact"

[[devices]]
id = "alice-laptop"
user = "alice@example.com"
ips = ["192.168.1.10", "2001:db8:1::10"]
doh_token = "random-secret"

[[devices]]
id = "alice-phone"
user = "ALICE@example.com"
ips = ["::ffff:192.168.1.11"]

[[devices]]
id = "contact-vpn"
user = "con.tact+1@example.com"
ips = ["10.20.0.0/16"]
doh_token = "other-secret"

[[devices]]
id = "printer"
ips = ["192.168.1.0/28"]

[[devices]]
id = "kiosk"
ips = ["10.20.30.0/24"]

[[locations]]
name = "office"
networks = ["192.168.1.0/24", "2001:db8:1::/48"]

[[locations]]
name = "office-guest"
networks = ["192.168.1.128/25"]

[[locations]]
name = "vpn"
networks = ["10.0.0.0/8"]

[[locations]]
name = "internet"
networks = ["0.0.0.0/0"]
"#;

    #[test]
    fn example_directory_resolves_every_lookup() {
        let dir = parse(EXAMPLE).unwrap();
        assert_eq!(
            (
                dir.len_groups(),
                dir.len_users(),
                dir.len_devices(),
                dir.len_locations()
            ),
            (2, 2, 5, 4)
        );
        assert!(!dir.is_empty());

        let laptop = dir.identity_for_ip(ip("192.168.1.10")).unwrap();
        let finance = Group {
            id: "grp-finance".into(),
            name: "finance".into(),
            email: "finance@example.com".into(),
        };
        // A group without a name is named by its id.
        let eng = Group {
            id: "grp-eng".into(),
            name: "grp-eng".into(),
            email: String::new(),
        };
        let expected = Identity {
            device_id: "alice-laptop".into(),
            email: "alice@example.com".into(),
            email_canonical: "alice@example.com".into(),
            name: "alice".into(),
            groups: vec![finance, eng],
            saml_attributes: HashMap::from([
                ("department".into(), vec!["Marketing".into()]),
                ("level".into(), vec!["3".into(), "4".into()]),
            ]),
        };
        assert_eq!(**laptop, expected);
        // Every way to reach the laptop gives the same shared identity.
        for other in [
            dir.identity_for_ip(ip("::ffff:192.168.1.10")),
            dir.identity_for_ip(ip("2001:db8:1::10")),
            dir.identity_for_token("random-secret"),
        ] {
            assert!(Arc::ptr_eq(laptop, other.unwrap()));
        }

        let phone = dir.identity_for_ip(ip("192.168.1.11")).unwrap();
        assert_eq!(
            (phone.device_id.as_str(), phone.email.as_str()),
            ("alice-phone", "alice@example.com")
        );

        // An exact address beats the printer's /28, which holds the rest of it.
        let printer = dir.identity_for_ip(ip("192.168.1.12")).unwrap();
        assert_eq!(
            **printer,
            Identity {
                device_id: "printer".into(),
                ..Identity::default()
            }
        );
        assert!(dir.identity_for_ip(ip("192.168.1.16")).is_none());

        // Longest prefix: the kiosk's /24 inside the contact's /16.
        assert_eq!(
            dir.identity_for_ip(ip("10.20.30.40")).unwrap().device_id,
            "kiosk"
        );
        let contact = dir.identity_for_ip(ip("10.20.1.1")).unwrap();
        assert_eq!(contact.device_id, "contact-vpn");
        assert_eq!(contact.email, "con.tact+1@example.com");
        assert_eq!(contact.email_canonical, "contact@example.com");
        assert!(Arc::ptr_eq(
            contact,
            dir.identity_for_token("other-secret").unwrap()
        ));

        assert!(dir.identity_for_ip(ip("10.21.0.1")).is_none());
        assert!(dir.identity_for_ip(ip("2001:db8:1::11")).is_none());
        assert!(dir.identity_for_token("Random-Secret").is_none());
        assert!(dir.identity_for_token("").is_none());

        assert_eq!(dir.location_for_ip(ip("192.168.1.5")), Some("office"));
        assert_eq!(
            dir.location_for_ip(ip("192.168.1.200")),
            Some("office-guest")
        );
        assert_eq!(
            dir.location_for_ip(ip("::ffff:192.168.1.200")),
            Some("office-guest")
        );
        assert_eq!(dir.location_for_ip(ip("2001:db8:1:2::1")), Some("office"));
        assert_eq!(dir.location_for_ip(ip("10.1.2.3")), Some("vpn"));
        assert_eq!(dir.location_for_ip(ip("8.8.8.8")), Some("internet"));
        assert_eq!(dir.location_for_ip(ip("2001:db8:2::1")), None);
    }

    #[test]
    fn load_reads_the_file() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), EXAMPLE).unwrap();
        let dir = Directory::load(file.path()).unwrap();
        assert_eq!(dir.len_devices(), 5);
    }

    #[test]
    fn missing_file_is_one_diagnostic() {
        let path = Path::new("/nonexistent/identities.toml");
        let diags = Directory::load(path).unwrap_err();
        assert_eq!(diags.len(), 1);
        assert_eq!(
            (diags[0].path.as_path(), diags[0].line, diags[0].col),
            (path, 1, 1)
        );
        assert!(
            diags[0]
                .message
                .starts_with("cannot read identity directory"),
            "{diags:?}"
        );
    }

    #[test]
    fn empty_directory_knows_nobody() {
        for text in [
            "",
            "# nothing yet\n",
            "groups = []\nusers = []\ndevices = []\nlocations = []\n",
        ] {
            let dir = parse(text).unwrap();
            assert!(dir.is_empty(), "{text:?}");
            assert_eq!(dir.len_devices(), 0);
            assert!(dir.identity_for_ip(ip("192.0.2.1")).is_none());
            assert!(dir.identity_for_ip(ip("2001:db8::1")).is_none());
            assert!(dir.identity_for_token("x").is_none());
            assert!(dir.location_for_ip(ip("192.0.2.1")).is_none());
        }
        assert!(Directory::default().is_empty());
    }

    #[test]
    fn every_problem_is_reported_at_its_position() {
        let text = r#"[[groups]]
id = "g1"

[[groups]]
id = "g1"

[[users]]
email = "a@example.com"
groups = ["g1", "g2"]

[[users]]
email = "A@example.com"

[[devices]]
id = "d1"
user = "nobody@example.com"
ips = ["10.0.0.1", "10.0.0.300", "10.0.0.0/33", "10.1.2.3/8"]
doh_token = "t"

[[devices]]
id = "d1"

[[devices]]
id = "d2"
ips = ["10.0.0.1", "::ffff:10.0.0.1", "10.9.0.0/16", "10.9.0.0/16"]
doh_token = "t"

[[locations]]
name = "office"
networks = ["192.168.0.0/16", "nope"]

[[locations]]
name = "lab"
networks = ["192.168.0.0/16"]

[[locations]]
name = "office"
"#;
        assert_eq!(
            errors(text),
            [
                "5:6: duplicate group id `g1` (first defined on line 2)",
                "9:17: unknown group id `g2`",
                "12:9: duplicate user `a@example.com` (first defined on line 8)",
                "16:8: unknown user `nobody@example.com`",
                "17:20: `10.0.0.300` is not an IP address",
                "17:34: `10.0.0.0/33` is not an IP network",
                "17:49: `10.1.2.3/8` has host bits set (the network is `10.0.0.0/8`)",
                "21:6: duplicate device id `d1` (first defined on line 15)",
                "25:8: `10.0.0.1` is already claimed by device `d1` (line 17)",
                "25:20: `10.0.0.1` is already claimed by device `d1` (line 17)",
                "25:54: `10.9.0.0/16` is listed twice for device `d2` (also on line 25)",
                "26:13: doh_token is already used by device `d1` (line 18)",
                "30:31: `nope` is not an IP address",
                "34:13: `192.168.0.0/16` is already claimed by location `office` (line 30)",
                "37:8: duplicate location `office` (first defined on line 29)",
            ]
        );
    }

    #[test]
    fn toml_syntax_errors_are_positioned() {
        assert_eq!(
            errors("[[devices]]\nid = \"a\nips = []\n"),
            ["2:8: invalid basic string, expected `\"`"]
        );
        let got = errors("[[devices]]\nid = \"a\"\nips = [\n");
        assert!(got[0].starts_with("3:8: "), "{got:?}");
    }

    #[test]
    fn unknown_keys_are_reported_in_every_entry() {
        let text = "bogus = 1\n\n[[devices]]\nid = \"a\"\nip = \"10.0.0.1\"\n\n[[devices]]\nid = \"b\"\ntoken = \"x\"\n";
        assert_eq!(
            errors(text),
            [
                "1:1: unknown key `bogus`, expected `groups`, `users`, `devices` or `locations`",
                "5:1: unknown field `ip`, expected one of `id`, `user`, `ips`, `doh_token`",
                "9:1: unknown field `token`, expected one of `id`, `user`, `ips`, `doh_token`",
            ]
        );
    }

    #[test]
    fn wrong_types_and_missing_fields_are_positioned() {
        assert_eq!(
            errors("[[devices]]\nid = 5\n"),
            ["2:6: invalid type: integer `5`, expected a string"]
        );
        assert_eq!(
            errors("devices = 3\n"),
            ["1:11: `devices` must be an array of tables: [[devices]]"]
        );
        assert_eq!(
            errors(
                "[[users]]\nemail = \"a@example.com\"\nsaml_attributes = { department = \"x\" }\n"
            ),
            ["3:34: invalid type: string \"x\", expected a sequence"]
        );
        // A missing key is reported at the entry's `[[devices]]` header.
        assert_eq!(
            errors("\n[[devices]]\nuser = \"a@example.com\"\n"),
            ["2:1: missing field `id`"]
        );
    }

    #[test]
    fn empty_names_addresses_and_tokens_are_errors() {
        let text = "[[groups]]\nid = \" \"\n\n[[users]]\nemail = \"alice\"\n\n[[devices]]\nid = \"\"\n\n[[devices]]\nid = \"x\"\ndoh_token = \"\"\n\n[[locations]]\nname = \"\"\n";
        assert_eq!(
            errors(text),
            [
                "2:6: group id must not be empty",
                "5:9: `alice` is not an e-mail address",
                "8:6: device id must not be empty",
                "12:13: doh_token must not be empty",
                "15:8: location name must not be empty",
            ]
        );
    }

    #[test]
    fn a_broken_entry_does_not_cascade_into_unknown_references() {
        // The group entry fails to parse, so its id is unknown: the user's reference to it
        // must not add a second, misleading error. Same for users and devices.
        let text = "[[groups]]\nid = \"g\"\nmail = \"x\"\n\n[[users]]\nemail = \"a@example.com\"\ngroups = [\"g\"]\nnmae = \"a\"\n\n[[devices]]\nid = \"d\"\nuser = \"a@example.com\"\n";
        assert_eq!(
            errors(text),
            [
                "3:1: unknown field `mail`, expected one of `id`, `name`, `email`",
                "8:1: unknown field `nmae`, expected one of `email`, `name`, `groups`, `saml_attributes`",
            ]
        );
    }

    #[test]
    fn ipv4_mapped_entries_and_sources_are_ipv4() {
        let text = "[[devices]]\nid = \"a\"\nips = [\"::ffff:10.0.0.0/120\"]\n\n[[locations]]\nname = \"l\"\nnetworks = [\"::ffff:10.0.0.0/104\"]\n";
        let dir = parse(text).unwrap();
        assert_eq!(dir.identity_for_ip(ip("10.0.0.7")).unwrap().device_id, "a");
        assert_eq!(
            dir.identity_for_ip(ip("::ffff:10.0.0.7"))
                .unwrap()
                .device_id,
            "a"
        );
        assert!(dir.identity_for_ip(ip("10.0.1.7")).is_none());
        assert_eq!(dir.location_for_ip(ip("10.200.0.1")), Some("l"));
        assert_eq!(
            canonical_net("::ffff:10.0.0.0/104".parse().unwrap()),
            "10.0.0.0/8".parse::<IpNet>().unwrap()
        );
        // Below /96 a mapped prefix is an IPv6 network, not an IPv4 one.
        let wide: IpNet = "::ffff:0:0/95".parse().unwrap();
        assert_eq!(canonical_net(wide), wide);
    }

    #[test]
    fn canonical_email_folds_extended_addresses() {
        // SPEC §5: `con.tact+1@example.com` is a variant of `contact@example.com`.
        assert_eq!(
            canonical_email("con.tact+1@example.com"),
            "contact@example.com"
        );
        assert_eq!(
            canonical_email("contact@example.com"),
            "contact@example.com"
        );
        assert_eq!(
            canonical_email("Con.Tact+Tag+More@Example.COM"),
            "contact@example.com"
        );
        // Only the local part loses its dots.
        assert_eq!(
            canonical_email("a.b@mail.example.com"),
            "ab@mail.example.com"
        );
        assert_eq!(canonical_email("NoAt"), "noat");
    }
}
