//! Permissions (`dnsgate.<kind>.<verb>`), resource patterns (`list:ads`, `group:kids`,
//! `*`), the statements that pair them, and coverage between patterns (SPEC §12).
//!
//! Both kinds of pattern are small closed languages: a permission pattern is a kind or
//! `*` and a verb or `*`, a resource pattern one of four shapes. Matching is a `match`,
//! and "P is covered by Q" (every concrete value P matches, Q matches) is decided exactly:
//! by enumeration for permissions (there are few), by shape for resources.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a permission, resource pattern or effect did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not three dot-separated segments starting with `dnsgate`.
    #[error(
        "`{0}` is not a permission: expected `dnsgate.<kind>.<verb>` (`*` for a whole kind or verb)"
    )]
    PermissionShape(String),
    /// A kind that does not exist.
    #[error("unknown kind `{0}` (expected one of: {kinds})", kinds = Kind::names())]
    UnknownKind(String),
    /// A verb that does not exist.
    #[error("unknown verb `{0}` (expected one of: {verbs})", verbs = Verb::names())]
    UnknownVerb(String),
    /// A verb that applies to one kind only (`flush`: cache, `revoke`: devices).
    #[error("`{verb}` applies only to `{only}`, not to `{kind}`")]
    VerbNotForKind {
        /// The verb.
        verb: Verb,
        /// The kind it was given with.
        kind: Kind,
        /// The kind it applies to.
        only: Kind,
    },
    /// A resource pattern of the wrong shape or an unknown object kind.
    #[error(
        "`{0}` is not a resource: expected `*`, `<kind>:<name>`, `<kind>:*` or `group:<group>` \
         (kinds: {kinds})",
        kinds = ObjectKind::names()
    )]
    Resource(String),
    /// An effect other than `allow` or `deny`.
    #[error("unknown effect `{0}` (expected `allow` or `deny`)")]
    Effect(String),
}

/// Defines a closed set of names: the enum, its label, parsing and the list of all.
macro_rules! names {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $v,)* }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &[Self] = &[$(Self::$v,)*];

            /// The name as written in token files.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s,)* }
            }

            /// The names, comma-separated (for messages).
            fn names() -> String {
                [$($s,)*].join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names! {
    /// What a permission is about: the middle segment of `dnsgate.<kind>.<verb>`.
    Kind {
        /// DNS policies.
        Policies = "policies",
        /// Domain / IP / value lists.
        Lists = "lists",
        /// Categories.
        Categories = "categories",
        /// Users.
        Users = "users",
        /// Identity groups.
        Groups = "groups",
        /// Devices.
        Devices = "devices",
        /// Locations.
        Locations = "locations",
        /// The query log.
        Querylog = "querylog",
        /// The message cache.
        Cache = "cache",
        /// Explaining a query's decision.
        Explain = "explain",
        /// API tokens.
        Tokens = "tokens",
        /// The configuration (reload).
        Config = "config",
        /// SCIM provisioning.
        Scim = "scim",
    }
}

names! {
    /// What is done: the last segment of `dnsgate.<kind>.<verb>`.
    Verb {
        /// Read one object.
        Read = "read",
        /// List objects.
        List = "list",
        /// Create an object.
        Create = "create",
        /// Change an object.
        Update = "update",
        /// Delete an object.
        Delete = "delete",
        /// Empty the cache (cache only).
        Flush = "flush",
        /// Revoke a device (devices only).
        Revoke = "revoke",
    }
}

names! {
    /// The kind of a named object in a resource pattern (`list:ads`): the singular of a
    /// [`Kind`] whose objects have names.
    ObjectKind {
        /// A policy.
        Policy = "policy",
        /// A list.
        List = "list",
        /// A category.
        Category = "category",
        /// A user.
        User = "user",
        /// An identity group.
        Group = "group",
        /// A device.
        Device = "device",
        /// A location.
        Location = "location",
        /// An API token.
        Token = "token",
    }
}

impl FromStr for Kind {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseError::UnknownKind(s.to_owned()))
    }
}

impl FromStr for Verb {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| ParseError::UnknownVerb(s.to_owned()))
    }
}

impl Verb {
    /// The one kind this verb applies to, if it is that narrow.
    fn only_kind(self) -> Option<Kind> {
        match self {
            Self::Flush => Some(Kind::Cache),
            Self::Revoke => Some(Kind::Devices),
            _ => None,
        }
    }
}

impl ObjectKind {
    /// The permission kind of objects of this kind (`list` → `lists`).
    pub fn kind(self) -> Kind {
        match self {
            Self::Policy => Kind::Policies,
            Self::List => Kind::Lists,
            Self::Category => Kind::Categories,
            Self::User => Kind::Users,
            Self::Group => Kind::Groups,
            Self::Device => Kind::Devices,
            Self::Location => Kind::Locations,
            Self::Token => Kind::Tokens,
        }
    }

    /// The object kind named `s`, singular (`list`, canonical) or plural (`lists`).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s || k.kind().as_str() == s)
    }
}

/// One segment of a pattern: a value, or `*` for any value of that segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part<T> {
    /// `*`: any value.
    Any,
    /// Exactly this value.
    Is(T),
}

impl<T: PartialEq + Copy> Part<T> {
    fn matches(self, value: T) -> bool {
        match self {
            Self::Any => true,
            Self::Is(v) => v == value,
        }
    }
}

impl<T: fmt::Display> fmt::Display for Part<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Is(v) => v.fmt(f),
        }
    }
}

/// A permission or permission pattern: `dnsgate.<kind>.<verb>`, where `*` stands for one
/// whole segment (`dnsgate.*.read`, `dnsgate.lists.*`), never part of one or several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permission {
    /// The kind segment.
    pub kind: Part<Kind>,
    /// The verb segment.
    pub verb: Part<Verb>,
}

impl Permission {
    /// The concrete permission `dnsgate.<kind>.<verb>`.
    pub fn new(kind: Kind, verb: Verb) -> Self {
        Self {
            kind: Part::Is(kind),
            verb: Part::Is(verb),
        }
    }

    /// Every concrete permission that exists (`flush` and `revoke` only with their kind).
    pub fn all_concrete() -> impl Iterator<Item = (Kind, Verb)> {
        Kind::ALL.iter().flat_map(|&k| {
            Verb::ALL
                .iter()
                .filter(move |v| v.only_kind().is_none_or(|only| only == k))
                .map(move |&v| (k, v))
        })
    }

    /// Whether this pattern matches the concrete permission `kind.verb`.
    pub fn matches(&self, kind: Kind, verb: Verb) -> bool {
        self.kind.matches(kind) && self.verb.matches(verb)
    }

    /// Whether this pattern matches every concrete permission `other` matches. A pattern
    /// is the set of concrete permissions it matches, and there are few of them: the
    /// answer is found by enumeration, so it is exact (`dnsgate.cache.*` covers
    /// `dnsgate.*.flush`, since only the cache is flushed).
    pub fn covers(&self, other: &Self) -> bool {
        Self::all_concrete()
            .filter(|&(k, v)| other.matches(k, v))
            .all(|(k, v)| self.matches(k, v))
    }
}

impl FromStr for Permission {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let shape = || ParseError::PermissionShape(s.to_owned());
        let mut parts = s.split('.');
        let (Some("dnsgate"), Some(kind), Some(verb), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(shape());
        };
        let kind = match kind {
            "*" => Part::Any,
            k if k.contains('*') || k.is_empty() => return Err(shape()),
            k => Part::Is(k.parse()?),
        };
        let verb = match verb {
            "*" => Part::Any,
            v if v.contains('*') || v.is_empty() => return Err(shape()),
            v => Part::Is(v.parse::<Verb>()?),
        };
        if let (Part::Is(kind), Part::Is(verb)) = (kind, verb) {
            if let Some(only) = verb.only_kind().filter(|&only| only != kind) {
                return Err(ParseError::VerbNotForKind { verb, kind, only });
            }
        }
        Ok(Self { kind, verb })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dnsgate.{}.{}", self.kind, self.verb)
    }
}

/// An object being acted on, as the API describes it to [`Token::allows`](super::Token::allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// Its kind, singular as in resource patterns (`list`, `policy`, `device`); the plural
    /// (`lists`) is read the same. Kinds without named objects (`cache`, `querylog`,
    /// `config`) are matched only by `*` and `group:…`.
    pub kind: &'a str,
    /// Its name (`ads`, `bob@x.test`); empty for kinds without names.
    pub name: &'a str,
    /// The identity group it is scoped to, if any. A group itself is described with its
    /// own name here, so `group:kids` covers the group `kids` as well as its objects.
    pub group: Option<&'a str>,
}

/// A resource pattern: which objects a statement is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `*`: every object.
    Any,
    /// `<kind>:*`: every object of one kind.
    Kind(ObjectKind),
    /// `<kind>:<name>`: one object.
    Named(ObjectKind, String),
    /// `group:<group>`: every object scoped to that identity group.
    Group(String),
    /// `group:*`: every object scoped to some group.
    AnyGroup,
}

impl Resource {
    /// Whether this pattern matches `target`.
    pub fn matches(&self, target: &Target<'_>) -> bool {
        match self {
            Self::Any => true,
            Self::Kind(k) => ObjectKind::from_name(target.kind) == Some(*k),
            Self::Named(k, name) => {
                ObjectKind::from_name(target.kind) == Some(*k) && target.name == name
            }
            Self::Group(g) => target.group == Some(g.as_str()),
            Self::AnyGroup => target.group.is_some(),
        }
    }

    /// Whether this pattern matches every target `other` matches. Exact: a named or
    /// `kind:*` pattern matches targets in any group (or none), so only `*` and patterns
    /// of its own kind cover it; a group pattern matches targets of every kind, some
    /// without names, so only `*` and group patterns cover it.
    pub fn covers(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Any, _) => true,
            (Self::Kind(k), Self::Kind(o) | Self::Named(o, _)) => k == o,
            (Self::Named(k, n), Self::Named(o, m)) => k == o && n == m,
            (Self::AnyGroup, Self::Group(_) | Self::AnyGroup) => true,
            (Self::Group(g), Self::Group(h)) => g == h,
            _ => false,
        }
    }
}

impl FromStr for Resource {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s == "*" {
            return Ok(Self::Any);
        }
        let bad = || ParseError::Resource(s.to_owned());
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        let kind = ObjectKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == kind)
            .ok_or_else(bad)?;
        // A name is taken as written, but `*` is a wildcard only when it is the whole
        // name: `list:ad*` would look like a glob and match nothing, so it is refused.
        if name.is_empty()
            || name.chars().any(char::is_control)
            || (name != "*" && name.contains('*'))
        {
            return Err(bad());
        }
        Ok(match (kind, name) {
            (ObjectKind::Group, "*") => Self::AnyGroup,
            (ObjectKind::Group, g) => Self::Group(g.to_owned()),
            (k, "*") => Self::Kind(k),
            (k, n) => Self::Named(k, n.to_owned()),
        })
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Kind(k) => write!(f, "{k}:*"),
            Self::Named(k, n) => write!(f, "{k}:{n}"),
            Self::Group(g) => write!(f, "group:{g}"),
            Self::AnyGroup => f.write_str("group:*"),
        }
    }
}

/// Whether a statement grants or takes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Grants its permissions on its resources.
    Allow,
    /// Takes them away, whatever any allow says.
    Deny,
}

impl FromStr for Effect {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "allow" => Ok(Self::Allow),
            "deny" => Ok(Self::Deny),
            _ => Err(ParseError::Effect(s.to_owned())),
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        })
    }
}

/// One policy statement of a token: an effect on some permissions over some resources.
/// It matches a request when one of its permissions and one of its resources match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// Allow or deny.
    pub effect: Effect,
    /// Permission patterns.
    pub permissions: Vec<Permission>,
    /// Resource patterns.
    pub resources: Vec<Resource>,
}

impl Statement {
    /// Whether this statement is about `kind.verb` on `target`.
    pub fn matches(&self, kind: Kind, verb: Verb, target: &Target<'_>) -> bool {
        self.permissions.iter().any(|p| p.matches(kind, verb))
            && self.resources.iter().any(|r| r.matches(target))
    }
}

/// Permissions and resources are written as their text (`"dnsgate.lists.update"`).
macro_rules! serde_as_text {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

serde_as_text!(Permission, Resource);
