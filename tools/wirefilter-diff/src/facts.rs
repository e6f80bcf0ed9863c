//! The fact sets both engines judge, and how each engine is handed them.
//!
//! dnsgate gets its `QueryFacts` as a query would build them (names lowercase, record
//! types and codes uppercase, IPv4-mapped clients as they arrive); wirefilter gets the
//! same values as Cloudflare would see them: the same normalised strings, the client
//! address folded to IPv4, a missing value as `""` or an empty array (dnsgate's rule).

use std::collections::HashMap;
use std::net::IpAddr;

use dnsgate::geoip::{Code, GeoInfo};
use dnsgate::identity::{Group, Identity, canonical_email};
use dnsgate::policy::fields::{PostFacts, domains};
use wirefilter::{Array, ExecutionContext, Map, Scheme, Type};

/// One query's facts, owned.
pub struct FactSet {
    pub label: &'static str,
    pub fqdn: String,
    pub rtype: &'static str,
    pub src_ip: IpAddr,
    pub location: Option<&'static str>,
    pub identity: Option<Identity>,
    pub content: Vec<u32>,
    pub security: Vec<u32>,
    pub src_geo: (&'static str, &'static str),
    pub post: Option<PostFacts>,
}

/// The fields of SPEC §3 and their wirefilter types.
pub const FIELDS: &[(&str, Type)] = &[
    ("dns.fqdn", Type::Bytes),
    ("dns.query_rtype", Type::Bytes),
    ("dns.src_ip", Type::Ip),
    ("dns.location", Type::Bytes),
    ("identity.email", Type::Bytes),
    ("identity.name", Type::Bytes),
    ("identity.device_id", Type::Bytes),
    ("dns.src.geo.country", Type::Bytes),
    ("dns.src.geo.continent", Type::Bytes),
];

/// Array fields (element types).
pub const ARRAYS: &[(&str, Type)] = &[
    ("dns.domains", Type::Bytes),
    ("dns.content_category", Type::Int),
    ("dns.security_category", Type::Int),
    ("identity.groups.name", Type::Bytes),
    ("identity.groups.id", Type::Bytes),
    ("identity.groups.email", Type::Bytes),
    ("dns.resolved_ips", Type::Ip),
    ("dns.authoritative_ns_ips", Type::Ip),
    ("dns.dst.geo.country", Type::Bytes),
    ("dns.dst.geo.continent", Type::Bytes),
    ("dns.response.cname", Type::Bytes),
    ("dns.response.mx", Type::Bytes),
    ("dns.response.txt", Type::Bytes),
    ("dns.response.ptr", Type::Bytes),
];

pub fn scheme() -> Scheme {
    let mut b = wirefilter::SchemeBuilder::new();
    for (name, ty) in FIELDS {
        b.add_field(name, *ty).expect("field");
    }
    for (name, ty) in ARRAYS {
        b.add_field(name, Type::Array((*ty).into())).expect("field");
    }
    let saml = Type::Map(Type::Array(Type::Bytes.into()).into());
    b.add_field("identity.saml_attributes", saml)
        .expect("field");
    b.build()
}

fn geo(country: &str, continent: &str) -> GeoInfo {
    GeoInfo {
        country: Code::new(country),
        continent: Code::new(continent),
    }
}

fn identity(
    name: &str,
    email: &str,
    groups: &[(&str, &str, &str)],
    saml: &[(&str, &[&str])],
) -> Identity {
    Identity {
        device_id: format!("{}-laptop", name.to_ascii_lowercase()),
        email: email.to_owned(),
        email_canonical: canonical_email(email),
        name: name.to_owned(),
        groups: groups
            .iter()
            .map(|(id, name, email)| Group {
                id: (*id).to_owned(),
                name: (*name).to_owned(),
                email: (*email).to_owned(),
            })
            .collect(),
        saml_attributes: saml
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
            .collect::<HashMap<_, _>>(),
        last_seen: Default::default(),
    }
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().expect("ip")).collect()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

pub fn fact_sets() -> Vec<FactSet> {
    let alice = identity(
        "Alice",
        "alice.smith+dev@example.com",
        &[
            ("grp-finance", "finance", "finance@example.com"),
            ("grp-all", "Everyone", "all@example.com"),
        ],
        &[("department", &["Marketing", "Sales"])],
    );
    let bob = identity(
        "Bob O'Neil",
        "bob@corp.test",
        &[("g1", "Kids", "kids@corp.test")],
        &[("department", &["R&D"]), ("level", &["3"])],
    );
    let post = |resolved: &[&str], geo_: Vec<GeoInfo>, cname: &[&str]| PostFacts {
        resolved_ips: ips(resolved),
        authoritative_ns_ips: ips(&["198.51.100.53"]),
        dst_geo: geo_,
        cnames: strings(cname),
        mx: strings(&["mx1.example.com"]),
        txt: strings(&["v=spf1 -all", "Hello \"World\""]),
        ptr: strings(&["host.example.org"]),
    };
    vec![
        FactSet {
            label: "v4 client, identity, answers",
            fqdn: "www.ads.example.com".into(),
            rtype: "AAAA",
            src_ip: "192.168.1.10".parse().expect("ip"),
            location: Some("office"),
            identity: Some(alice),
            content: vec![1, 7],
            security: vec![80],
            src_geo: ("PT", "EU"),
            post: Some(post(
                &["192.0.2.1", "2001:db8::1"],
                vec![geo("JP", "AS"), geo("DE", "EU")],
                &["cdn.example.net"],
            )),
        },
        FactSet {
            label: "v6 client, anonymous, pre phase",
            fqdn: "example.com".into(),
            rtype: "A",
            src_ip: "2001:db8::5".parse().expect("ip"),
            location: None,
            identity: None,
            content: vec![],
            security: vec![],
            src_geo: ("", ""),
            post: None,
        },
        FactSet {
            label: "v4-mapped client, other identity",
            fqdn: "a.b.c.tracker.test".into(),
            rtype: "TXT",
            src_ip: "::ffff:10.1.2.3".parse().expect("ip"),
            location: Some("home"),
            identity: Some(bob),
            content: vec![0, 255, 4_000_000_000],
            security: vec![],
            src_geo: ("US", "NA"),
            post: Some(post(
                &["10.0.0.1", "::ffff:192.0.2.7"],
                vec![geo("US", "NA")],
                &[],
            )),
        },
        FactSet {
            label: "punycode name, loopback",
            fqdn: "xn--bcher-kva.example".into(),
            rtype: "MX",
            src_ip: "127.0.0.1".parse().expect("ip"),
            location: None,
            identity: None,
            content: vec![7],
            security: vec![7, 8],
            src_geo: ("", ""),
            post: Some(post(&[], vec![], &["a.example.com", "b.example.com"])),
        },
        FactSet {
            label: "root-ish name, ::1",
            fqdn: "com".into(),
            rtype: "NS",
            src_ip: "::1".parse().expect("ip"),
            location: Some("office"),
            identity: None,
            content: vec![],
            security: vec![1],
            src_geo: ("JP", "AS"),
            post: None,
        },
        FactSet {
            label: "v4 edge 0.0.0.0",
            fqdn: "x-1.cdn.example.net".into(),
            rtype: "HTTPS",
            src_ip: "0.0.0.0".parse().expect("ip"),
            location: None,
            identity: None,
            content: vec![10, 11],
            security: vec![],
            src_geo: ("DE", "EU"),
            post: Some(post(&["255.255.255.255", "::"], vec![geo("DE", "EU")], &[])),
        },
    ]
}

impl FactSet {
    pub fn dnsgate(&self) -> dnsgate::policy::fields::QueryFacts<'_> {
        dnsgate::policy::fields::QueryFacts {
            fqdn: &self.fqdn,
            rtype: self.rtype,
            src_ip: self.src_ip,
            location: self.location,
            identity: self.identity.as_ref(),
            content_categories: &self.content,
            security_categories: &self.security,
            src_geo: geo(self.src_geo.0, self.src_geo.1),
            post: self.post.as_ref(),
            memo: Box::leak(Box::default()),
        }
    }

    /// The same facts for wirefilter.
    pub fn wirefilter<'s>(&'s self, scheme: &'s Scheme) -> ExecutionContext<'s> {
        let mut ctx = ExecutionContext::new(scheme);
        let mut set = |name: &str, v: wirefilter::LhsValue<'s>| {
            let field = scheme.get_field(name).expect("field");
            ctx.set_field_value(field, v).expect("type");
        };
        let id = self.identity.as_ref();
        let s = |x: &'s str| wirefilter::LhsValue::from(x);
        set("dns.fqdn", s(&self.fqdn));
        set("dns.query_rtype", s(self.rtype));
        // Cloudflare sees an IPv4 client as IPv4.
        set("dns.src_ip", self.src_ip.to_canonical().into());
        set("dns.location", s(self.location.unwrap_or("")));
        set("identity.email", s(id.map_or("", |i| &i.email)));
        set("identity.name", s(id.map_or("", |i| &i.name)));
        set("identity.device_id", s(id.map_or("", |i| &i.device_id)));
        set("dns.src.geo.country", s(self.src_geo.0));
        set("dns.src.geo.continent", s(self.src_geo.1));
        let strs = |v: Vec<&'s str>| Array::try_from_iter(Type::Bytes, v).expect("array").into();
        let ints = |v: &[u32]| {
            Array::try_from_iter(Type::Int, v.iter().map(|&n| i64::from(n)))
                .expect("array")
                .into()
        };
        let ipa = |v: &[IpAddr]| {
            Array::try_from_iter(Type::Ip, v.iter().map(|ip| ip.to_canonical()))
                .expect("array")
                .into()
        };
        set("dns.domains", strs(domains(&self.fqdn).collect()));
        set("dns.content_category", ints(&self.content));
        set("dns.security_category", ints(&self.security));
        let groups = id.map_or(&[][..], |i| &i.groups[..]);
        set(
            "identity.groups.name",
            strs(groups.iter().map(|g| g.name.as_str()).collect()),
        );
        set(
            "identity.groups.id",
            strs(groups.iter().map(|g| g.id.as_str()).collect()),
        );
        set(
            "identity.groups.email",
            strs(groups.iter().map(|g| g.email.as_str()).collect()),
        );
        let post = self.post.as_ref();
        let no_ips: &[IpAddr] = &[];
        set(
            "dns.resolved_ips",
            ipa(post.map_or(no_ips, |p| &p.resolved_ips)),
        );
        set(
            "dns.authoritative_ns_ips",
            ipa(post.map_or(no_ips, |p| &p.authoritative_ns_ips)),
        );
        let geo_ = post.map_or(&[][..], |p| &p.dst_geo[..]);
        let code = |c: &'s Option<Code>| c.as_ref().map_or("", Code::as_str);
        set(
            "dns.dst.geo.country",
            strs(geo_.iter().map(|g| code(&g.country)).collect()),
        );
        set(
            "dns.dst.geo.continent",
            strs(geo_.iter().map(|g| code(&g.continent)).collect()),
        );
        let list = |get: fn(&'s PostFacts) -> &'s Vec<String>| {
            strs(post.map_or(Vec::new(), |p| get(p).iter().map(String::as_str).collect()))
        };
        set("dns.response.cname", list(|p| &p.cnames));
        set("dns.response.mx", list(|p| &p.mx));
        set("dns.response.txt", list(|p| &p.txt));
        set("dns.response.ptr", list(|p| &p.ptr));
        let saml = id.map_or(Vec::new(), |i| i.saml_attributes.iter().collect());
        let map = Map::try_from_iter::<wirefilter::TypeMismatchError, _>(
            Type::Array(Type::Bytes.into()),
            saml.into_iter().map(|(k, v)| {
                let arr: wirefilter::LhsValue<'s> =
                    Array::try_from_iter(Type::Bytes, v.iter().map(String::as_str))?.into();
                Ok((k.as_bytes().into(), arr))
            }),
        )
        .expect("map");
        set("identity.saml_attributes", map.into());
        ctx
    }
}
