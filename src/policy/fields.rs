//! The fields of the policy language (SPEC §3) and the facts a query supplies for them.
//!
//! Field values are borrowed from [`QueryFacts`]; nothing here allocates per query.
//! Names are normalised once when the facts are built (lowercase, no trailing dot), so the
//! evaluator compares bytes.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering::Relaxed};

use crate::geoip::GeoInfo;
use crate::identity::Identity;
use crate::lists::DomainList;

/// `dns.fqdn`
pub const DNS_FQDN: &str = "dns.fqdn";
/// `dns.domains`
pub const DNS_DOMAINS: &str = "dns.domains";
/// `dns.query_rtype`
pub const DNS_QUERY_RTYPE: &str = "dns.query_rtype";
/// `dns.content_category`
pub const DNS_CONTENT_CATEGORY: &str = "dns.content_category";
/// `dns.security_category`
pub const DNS_SECURITY_CATEGORY: &str = "dns.security_category";
/// `dns.src_ip`
pub const DNS_SRC_IP: &str = "dns.src_ip";
/// `dns.location`
pub const DNS_LOCATION: &str = "dns.location";
/// `identity.email`
pub const IDENTITY_EMAIL: &str = "identity.email";
/// `identity.name`
pub const IDENTITY_NAME: &str = "identity.name";
/// `identity.groups.name`
pub const IDENTITY_GROUPS_NAME: &str = "identity.groups.name";
/// `identity.groups.id`
pub const IDENTITY_GROUPS_ID: &str = "identity.groups.id";
/// `identity.groups.email`
pub const IDENTITY_GROUPS_EMAIL: &str = "identity.groups.email";
/// `identity.saml_attributes`
pub const IDENTITY_SAML_ATTRIBUTES: &str = "identity.saml_attributes";
/// `identity.device_id`
pub const IDENTITY_DEVICE_ID: &str = "identity.device_id";
/// `dns.resolved_ips`
pub const DNS_RESOLVED_IPS: &str = "dns.resolved_ips";
/// `dns.authoritative_ns_ips`
pub const DNS_AUTHORITATIVE_NS_IPS: &str = "dns.authoritative_ns_ips";
/// `dns.dst.geo.country`
pub const DNS_DST_GEO_COUNTRY: &str = "dns.dst.geo.country";
/// `dns.dst.geo.continent`
pub const DNS_DST_GEO_CONTINENT: &str = "dns.dst.geo.continent";
/// `dns.response.cname`
pub const DNS_RESPONSE_CNAME: &str = "dns.response.cname";
/// `dns.response.mx`
pub const DNS_RESPONSE_MX: &str = "dns.response.mx";
/// `dns.response.txt`
pub const DNS_RESPONSE_TXT: &str = "dns.response.txt";
/// `dns.response.ptr`
pub const DNS_RESPONSE_PTR: &str = "dns.response.ptr";
/// `dns.src.geo.country`
pub const DNS_SRC_GEO_COUNTRY: &str = "dns.src.geo.country";
/// `dns.src.geo.continent`
pub const DNS_SRC_GEO_CONTINENT: &str = "dns.src.geo.continent";

/// Every field of SPEC §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Field {
    Fqdn,
    Domains,
    QueryRtype,
    ContentCategory,
    SecurityCategory,
    SrcIp,
    Location,
    IdentityEmail,
    IdentityName,
    GroupsName,
    GroupsId,
    GroupsEmail,
    SamlAttributes,
    DeviceId,
    ResolvedIps,
    AuthoritativeNsIps,
    DstGeoCountry,
    DstGeoContinent,
    ResponseCname,
    ResponseMx,
    ResponseTxt,
    ResponsePtr,
    SrcGeoCountry,
    SrcGeoContinent,
}

/// The value type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A string.
    String,
    /// An integer (category ids).
    Int,
    /// An IP address.
    Ip,
    /// An array of the inner type.
    Array(Scalar),
    /// `identity.saml_attributes`: string key to array of strings.
    Map,
}

/// The element type of an array field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Scalar {
    String,
    Int,
    Ip,
}

pub use crate::label::Phase;

/// The normalised form of a DNS name: lowercase, no trailing dot (the root is "").
pub fn fqdn_of(name: &hickory_proto::rr::Name) -> String {
    let mut s = name.to_ascii();
    if s.ends_with('.') {
        s.pop();
    }
    s.make_ascii_lowercase();
    s
}

/// How string values of a field are normalised before comparison (SPEC §3: names are
/// case-insensitive and ignore a trailing dot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    /// DNS names: lowercase, no trailing dot.
    Name,
    /// Codes such as record types and countries: uppercase.
    Upper,
    /// E-mail addresses: lowercase.
    Lower,
    /// Compared as written.
    Exact,
}

impl Field {
    /// Every field, in SPEC order.
    pub const ALL: [Self; 24] = [
        Self::Fqdn,
        Self::Domains,
        Self::QueryRtype,
        Self::ContentCategory,
        Self::SecurityCategory,
        Self::SrcIp,
        Self::Location,
        Self::IdentityEmail,
        Self::IdentityName,
        Self::GroupsName,
        Self::GroupsId,
        Self::GroupsEmail,
        Self::SamlAttributes,
        Self::DeviceId,
        Self::ResolvedIps,
        Self::AuthoritativeNsIps,
        Self::DstGeoCountry,
        Self::DstGeoContinent,
        Self::ResponseCname,
        Self::ResponseMx,
        Self::ResponseTxt,
        Self::ResponsePtr,
        Self::SrcGeoCountry,
        Self::SrcGeoContinent,
    ];

    /// The field's name in expressions.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fqdn => DNS_FQDN,
            Self::Domains => DNS_DOMAINS,
            Self::QueryRtype => DNS_QUERY_RTYPE,
            Self::ContentCategory => DNS_CONTENT_CATEGORY,
            Self::SecurityCategory => DNS_SECURITY_CATEGORY,
            Self::SrcIp => DNS_SRC_IP,
            Self::Location => DNS_LOCATION,
            Self::IdentityEmail => IDENTITY_EMAIL,
            Self::IdentityName => IDENTITY_NAME,
            Self::GroupsName => IDENTITY_GROUPS_NAME,
            Self::GroupsId => IDENTITY_GROUPS_ID,
            Self::GroupsEmail => IDENTITY_GROUPS_EMAIL,
            Self::SamlAttributes => IDENTITY_SAML_ATTRIBUTES,
            Self::DeviceId => IDENTITY_DEVICE_ID,
            Self::ResolvedIps => DNS_RESOLVED_IPS,
            Self::AuthoritativeNsIps => DNS_AUTHORITATIVE_NS_IPS,
            Self::DstGeoCountry => DNS_DST_GEO_COUNTRY,
            Self::DstGeoContinent => DNS_DST_GEO_CONTINENT,
            Self::ResponseCname => DNS_RESPONSE_CNAME,
            Self::ResponseMx => DNS_RESPONSE_MX,
            Self::ResponseTxt => DNS_RESPONSE_TXT,
            Self::ResponsePtr => DNS_RESPONSE_PTR,
            Self::SrcGeoCountry => DNS_SRC_GEO_COUNTRY,
            Self::SrcGeoContinent => DNS_SRC_GEO_CONTINENT,
        }
    }

    /// Looks a field up by its expression name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The field's type.
    pub fn ty(self) -> FieldType {
        use FieldType as T;
        match self {
            Self::Fqdn
            | Self::QueryRtype
            | Self::Location
            | Self::IdentityEmail
            | Self::IdentityName
            | Self::DeviceId
            | Self::SrcGeoCountry
            | Self::SrcGeoContinent => T::String,
            Self::SrcIp => T::Ip,
            Self::ContentCategory | Self::SecurityCategory => T::Array(Scalar::Int),
            Self::ResolvedIps | Self::AuthoritativeNsIps => T::Array(Scalar::Ip),
            Self::Domains
            | Self::GroupsName
            | Self::GroupsId
            | Self::GroupsEmail
            | Self::DstGeoCountry
            | Self::DstGeoContinent
            | Self::ResponseCname
            | Self::ResponseMx
            | Self::ResponseTxt
            | Self::ResponsePtr => T::Array(Scalar::String),
            Self::SamlAttributes => T::Map,
        }
    }

    /// The phase in which the field is known (SPEC §3 table).
    pub fn phase(self) -> Phase {
        match self {
            Self::ResolvedIps
            | Self::AuthoritativeNsIps
            | Self::DstGeoCountry
            | Self::DstGeoContinent
            | Self::ResponseCname
            | Self::ResponseMx
            | Self::ResponseTxt
            | Self::ResponsePtr => Phase::Post,
            _ => Phase::Pre,
        }
    }

    /// How the field's string values (and literals compared to them) are normalised.
    pub fn normalize(self) -> Normalize {
        match self {
            Self::Fqdn
            | Self::Domains
            | Self::ResponseCname
            | Self::ResponseMx
            | Self::ResponsePtr => Normalize::Name,
            Self::QueryRtype
            | Self::SrcGeoCountry
            | Self::SrcGeoContinent
            | Self::DstGeoCountry
            | Self::DstGeoContinent => Normalize::Upper,
            Self::IdentityEmail | Self::GroupsEmail => Normalize::Lower,
            _ => Normalize::Exact,
        }
    }

    /// Whether the field needs a GeoIP database.
    pub fn needs_geoip(self) -> bool {
        matches!(
            self,
            Self::DstGeoCountry
                | Self::DstGeoContinent
                | Self::SrcGeoCountry
                | Self::SrcGeoContinent
        )
    }
}

/// Normalises a string the way [`Field::normalize`] says. A name that cannot be converted
/// to ASCII is kept as written (lowercased), so it matches nothing; where an error can be
/// reported, use [`normalize_name`].
pub fn normalize(kind: Normalize, s: &str) -> String {
    match kind {
        Normalize::Name => normalize_name(s).unwrap_or_else(|_| s.to_lowercase()),
        Normalize::Upper => s.to_ascii_uppercase(),
        Normalize::Lower => s.to_ascii_lowercase(),
        Normalize::Exact => s.to_owned(),
    }
}

/// A name as name fields hold it: ASCII (a name in Unicode in its punycode form, by UTS 46),
/// lowercase, without the trailing dot. Query names arrive in that form, so a literal or
/// a table written `bücher.example` must be compared as `xn--bcher-kva.example`.
pub fn normalize_name(s: &str) -> Result<String, crate::lists::NameError> {
    let ascii = crate::lists::name_to_ascii(s)?;
    let mut name = ascii.strip_suffix('.').unwrap_or(&ascii).to_owned();
    name.make_ascii_lowercase();
    Ok(name)
}

/// The answer-derived facts of the post-resolution phase.
#[derive(Debug, Clone, Default)]
pub struct PostFacts {
    /// A and AAAA addresses in the answer section.
    pub resolved_ips: Vec<IpAddr>,
    /// The name servers that gave the final answer (recursive mode; empty when forwarding).
    pub authoritative_ns_ips: Vec<IpAddr>,
    /// GeoIP of each resolved address (same order; `GeoInfo::default()` when unknown).
    pub dst_geo: Vec<GeoInfo>,
    /// CNAME targets, normalised names.
    pub cnames: Vec<String>,
    /// MX exchanges, normalised names.
    pub mx: Vec<String>,
    /// TXT strings (each record's strings joined).
    pub txt: Vec<String>,
    /// PTR targets, normalised names.
    pub ptr: Vec<String>,
}

/// Everything a policy expression may look at for one query.
///
/// Strings are already normalised: `fqdn` is lowercase without a trailing dot, `rtype` is
/// the mnemonic in uppercase ("A", "AAAA", "TYPE65534").
#[derive(Debug, Clone, Copy)]
pub struct QueryFacts<'a> {
    /// `dns.fqdn` (and the source of `dns.domains`).
    pub fqdn: &'a str,
    /// `dns.query_rtype`.
    pub rtype: &'a str,
    /// `dns.src_ip`.
    pub src_ip: IpAddr,
    /// `dns.location`: the name of the location the client is in.
    pub location: Option<&'a str>,
    /// The user and device behind the client, if known.
    pub identity: Option<&'a Identity>,
    /// `dns.content_category`: ids of the categories holding the name or a parent.
    pub content_categories: &'a [u32],
    /// `dns.security_category`.
    pub security_categories: &'a [u32],
    /// `dns.src.geo.*`: GeoIP of the client.
    pub src_geo: GeoInfo,
    /// Post-resolution facts; `None` during the pre-resolution phase.
    pub post: Option<&'a PostFacts>,
    /// Domain-list answers for `fqdn`, shared by every policy and category of this query.
    pub memo: &'a ListMemo,
}

/// The answers of domain-list lookups for one name, so that ten policies naming `$ads`
/// (and the `ads` category) look the name up once. Lists are told apart by address;
/// beyond [`ListMemo::SLOTS`] distinct lists a lookup is simply not remembered.
///
/// A memo belongs to one name: build a fresh one for each query. (Atomics only so that a
/// query's facts may cross an `.await`; a memo is never shared between threads.)
#[derive(Debug, Default)]
pub struct ListMemo {
    /// The name remembered for (address and length): another name starts afresh.
    name: [AtomicUsize; 2],
    lists: [AtomicUsize; Self::SLOTS],
    hits: AtomicU16,
}

impl ListMemo {
    /// Distinct lists remembered.
    pub const SLOTS: usize = 16;

    /// `list.matches_suffix(fqdn)`, looked up at most once per list.
    pub fn matches(&self, list: &DomainList, fqdn: &str) -> bool {
        let key = std::ptr::from_ref(list) as usize;
        let name = [fqdn.as_ptr() as usize, fqdn.len()];
        if self.name[0].load(Relaxed) != name[0] || self.name[1].load(Relaxed) != name[1] {
            self.name[0].store(name[0], Relaxed);
            self.name[1].store(name[1], Relaxed);
            for slot in &self.lists {
                slot.store(0, Relaxed);
            }
            self.hits.store(0, Relaxed);
        }
        for (i, slot) in self.lists.iter().enumerate() {
            match slot.load(Relaxed) {
                k if k == key => return self.hits.load(Relaxed) & (1 << i) != 0,
                0 => {
                    let hit = list.matches_suffix(fqdn);
                    slot.store(key, Relaxed);
                    if hit {
                        self.hits.store(self.hits.load(Relaxed) | 1 << i, Relaxed);
                    }
                    return hit;
                }
                _ => {}
            }
        }
        list.matches_suffix(fqdn)
    }
}

/// Iterates over a name and its parents: `a.b.com`, `b.com`, `com` (`dns.domains`).
pub fn domains(fqdn: &str) -> impl Iterator<Item = &str> + Clone {
    let mut rest = Some(fqdn).filter(|s| !s.is_empty());
    std::iter::from_fn(move || {
        let cur = rest?;
        rest = cur
            .find('.')
            .map(|i| &cur[i + 1..])
            .filter(|s| !s.is_empty());
        Some(cur)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_lists_name_and_parents() {
        let d: Vec<_> = domains("a.b.example.com").collect();
        assert_eq!(
            d,
            ["a.b.example.com", "b.example.com", "example.com", "com"]
        );
        assert_eq!(domains("").count(), 0);
        assert_eq!(domains("com").collect::<Vec<_>>(), ["com"]);
    }

    #[test]
    fn every_field_round_trips_by_name() {
        for f in Field::ALL {
            assert_eq!(Field::from_name(f.name()), Some(f));
        }
        assert_eq!(Field::from_name("dns.nope"), None);
    }
}
