//! Expression generation: every field type, every operator, literals chosen to hit the
//! corners (escapes, case, trailing dots, IPv4-mapped addresses, radixes, host bits).
//!
//! Each generated piece carries the documented differences it may touch (`Tag`s); a
//! disagreement whose expression carries none is unexplained and must be fixed.

use std::collections::BTreeSet;

/// A documented difference an expression may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tag {
    /// Names, e-mails and codes compare case-insensitively; names ignore a trailing dot.
    Case,
    /// Unicode names are compared in their punycode form (or refused when they have none).
    Idna,
    /// IPv4-mapped addresses fold into IPv4, in addresses and sets.
    Mapped,
    /// A network with host bits set: read as its network, with a warning.
    HostBits,
    /// `lower()`.
    Lower,
    /// `any()`/`all()` over a compound condition.
    AnyCompound,
    /// Comma-separated set items.
    Comma,
    /// A quoted string whose escapes do not form UTF-8 (dnsgate refuses it).
    Utf8,
    /// Tabs (and runs of spaces inside `strict wildcard`) are whitespace.
    Space,
    /// An empty expression is true.
    Empty,
    /// Not supported: wirefilter's unquoted byte strings (`61:62:63`).
    ByteString,
    /// Not supported: `[*]` over a whole map (`identity.saml_attributes[*][*]`).
    MapEach,
}

/// Hand-written probes of corners the generator does not reach, with their tags.
pub const PROBES: &[(&str, &[Tag])] = &[
    ("", &[Tag::Empty]),
    ("   ", &[Tag::Empty]),
    ("dns.fqdn\t== \"com\"", &[Tag::Space]),
    ("dns.fqdn strict  wildcard \"*\"", &[Tag::Space]),
    ("dns.fqdn == \"co\\x+d\"", &[]),
    ("dns.fqdn == \"\\x63om\"", &[]),
    ("dns.fqdn == 63:6f:6d", &[Tag::ByteString]),
    (
        "any(identity.saml_attributes[*][*] == \"Sales\")",
        &[Tag::MapEach],
    ),
    ("dns.content_category[*] == 1", &[]),
    ("dns.domains[*] == \"com\"", &[]),
    ("any(dns.domains[*] == \"com\")", &[]),
    ("not not dns.fqdn == \"com\"", &[]),
    (
        "dns.fqdn == \"com\" and dns.query_rtype == \"NS\" or dns.src_ip == ::1 xor dns.src_ip == ::1",
        &[],
    ),
    ("dns.fqdn matches \"[\"]\"", &[]),
    ("dns.fqdn matches \"[\\\"]x\"", &[]),
    ("dns.fqdn matches \"\\\\\"", &[]),
    ("dns.fqdn contains r##\"c\"#om\"##", &[]),
    (
        "dns.src_ip in {10.0.0.0/8 ::ffff:10.0.0.0/104}",
        &[Tag::Mapped],
    ),
    ("dns.src_ip in {0.0.0.0/0}", &[]),
    ("any(dns.content_category[*] in {0x0..0xff})", &[]),
    ("any(dns.content_category[*] == 9223372036854775807)", &[]),
    ("any(dns.content_category[*] == 9223372036854775808)", &[]),
    ("any(dns.content_category[*] == -9223372036854775808)", &[]),
    ("dns.domains[4294967295] != \"x\"", &[]),
    ("dns.domains[4294967296] != \"x\"", &[]),
    ("dns.fqdn wildcard \"C*\"", &[]),
    ("dns.fqdn strict wildcard \"c\\\\*\"", &[]),
];

impl Tag {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Case => {
                "extension: names, e-mails and codes compare case-insensitively, names without a trailing dot"
            }
            Self::Idna => "extension: Unicode names compare in punycode (refused without one)",
            Self::Mapped => {
                "documented: IPv4-mapped addresses fold into IPv4 (sets covering ::ffff:0:0/96 cover them)"
            }
            Self::HostBits => {
                "documented: a network with host bits set is read as its network, with a warning"
            }
            Self::Lower => "extension: lower()",
            Self::AnyCompound => "extension: any()/all() over a compound condition",
            Self::Comma => "extension: comma-separated sets",
            Self::Utf8 => "documented: a string must be UTF-8 once its escapes are decoded",
            Self::Space => {
                "extension: tabs, and runs of spaces in `strict wildcard`, are whitespace"
            }
            Self::Empty => "extension: an empty expression is true",
            Self::ByteString => {
                "not supported: unquoted byte strings (61:62:63); quote them (\"\\x61\\x62\\x63\")"
            }
            Self::MapEach => {
                "not supported: [*] over a whole map; name the key (identity.saml_attributes[\"k\"][*])"
            }
        }
    }
}

/// A piece of expression and the differences it may touch.
pub struct Piece {
    pub text: String,
    pub tags: BTreeSet<Tag>,
}

/// xorshift64*: deterministic, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// How a string field's values are normalised in dnsgate.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Norm {
    Name,
    Upper,
    Lower,
    Exact,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str(Norm),
    Int,
    Ip,
}

struct FieldSpec {
    name: &'static str,
    kind: Kind,
    array: bool,
}

const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "dns.fqdn",
        kind: Kind::Str(Norm::Name),
        array: false,
    },
    FieldSpec {
        name: "dns.query_rtype",
        kind: Kind::Str(Norm::Upper),
        array: false,
    },
    FieldSpec {
        name: "dns.src_ip",
        kind: Kind::Ip,
        array: false,
    },
    FieldSpec {
        name: "dns.location",
        kind: Kind::Str(Norm::Exact),
        array: false,
    },
    FieldSpec {
        name: "identity.email",
        kind: Kind::Str(Norm::Lower),
        array: false,
    },
    FieldSpec {
        name: "identity.name",
        kind: Kind::Str(Norm::Exact),
        array: false,
    },
    FieldSpec {
        name: "identity.device_id",
        kind: Kind::Str(Norm::Exact),
        array: false,
    },
    FieldSpec {
        name: "dns.src.geo.country",
        kind: Kind::Str(Norm::Upper),
        array: false,
    },
    FieldSpec {
        name: "dns.src.geo.continent",
        kind: Kind::Str(Norm::Upper),
        array: false,
    },
    FieldSpec {
        name: "dns.domains",
        kind: Kind::Str(Norm::Name),
        array: true,
    },
    FieldSpec {
        name: "dns.content_category",
        kind: Kind::Int,
        array: true,
    },
    FieldSpec {
        name: "dns.security_category",
        kind: Kind::Int,
        array: true,
    },
    FieldSpec {
        name: "identity.groups.name",
        kind: Kind::Str(Norm::Exact),
        array: true,
    },
    FieldSpec {
        name: "identity.groups.id",
        kind: Kind::Str(Norm::Exact),
        array: true,
    },
    FieldSpec {
        name: "identity.groups.email",
        kind: Kind::Str(Norm::Lower),
        array: true,
    },
    FieldSpec {
        name: "dns.resolved_ips",
        kind: Kind::Ip,
        array: true,
    },
    FieldSpec {
        name: "dns.authoritative_ns_ips",
        kind: Kind::Ip,
        array: true,
    },
    FieldSpec {
        name: "dns.dst.geo.country",
        kind: Kind::Str(Norm::Upper),
        array: true,
    },
    FieldSpec {
        name: "dns.dst.geo.continent",
        kind: Kind::Str(Norm::Upper),
        array: true,
    },
    FieldSpec {
        name: "dns.response.cname",
        kind: Kind::Str(Norm::Name),
        array: true,
    },
    FieldSpec {
        name: "dns.response.mx",
        kind: Kind::Str(Norm::Name),
        array: true,
    },
    FieldSpec {
        name: "dns.response.txt",
        kind: Kind::Str(Norm::Exact),
        array: true,
    },
    FieldSpec {
        name: "dns.response.ptr",
        kind: Kind::Str(Norm::Name),
        array: true,
    },
    FieldSpec {
        name: "identity.saml_attributes[\"department\"]",
        kind: Kind::Str(Norm::Exact),
        array: true,
    },
    FieldSpec {
        name: "identity.saml_attributes[\"level\"]",
        kind: Kind::Str(Norm::Exact),
        array: true,
    },
];

const NAMES: &[&str] = &[
    r#""www.ads.example.com""#,
    r#""example.com""#,
    r#""com""#,
    r#""ads.example.com""#,
    r#""cdn.example.net""#,
    r#""mx1.example.com""#,
    r#""host.example.org""#,
    r#""a.b.c.tracker.test""#,
    r#""xn--bcher-kva.example""#,
    r#""x-1.cdn.example.net""#,
    r#""WWW.Ads.Example.COM""#,
    r#""example.com.""#,
    r#""www\x2eads.example.com""#,
    r#""example\056com""#,
    r#""""#,
    r#""bücher.example""#,
    r#""ex\\ample.com""#,
    r#""\d.com""#,
    r#""a\"b""#,
    r#"r"example.com""#,
    r#""tracker.test""#,
    r#""\x41.com""#,
    r#""\xff.com""#,
    r#""\101""#,
];
const EXACT: &[&str] = &[
    r#""office""#,
    r#""home""#,
    r#""Alice""#,
    r#""alice""#,
    r#""Bob O'Neil""#,
    r#""alice-laptop""#,
    r#""finance""#,
    r#""Everyone""#,
    r#""grp-all""#,
    r#""Marketing""#,
    r#""R&D""#,
    r#""3""#,
    r#""v=spf1 -all""#,
    r#""Hello \"World\"""#,
    r#""""#,
    r#""\x41lice""#,
    r#""Sales""#,
    r#""Kids""#,
    r#""g1""#,
    r#""bob o'neil-laptop""#,
    r#""\157ffice""#,
];
const LOWER: &[&str] = &[
    r#""alice.smith+dev@example.com""#,
    r#""Alice.Smith+dev@example.com""#,
    r#""bob@corp.test""#,
    r#""finance@example.com""#,
    r#""""#,
    r#""kids@corp.test""#,
    r#""all@example.com""#,
    r#""bob\x40corp.test""#,
];
const UPPER: &[&str] = &[
    r#""AAAA""#,
    r#""aaaa""#,
    r#""A""#,
    r#""TXT""#,
    r#""MX""#,
    r#""PT""#,
    r#""pt""#,
    r#""EU""#,
    r#""JP""#,
    r#""US""#,
    r#""""#,
    r#""PRT""#,
    r#""\x41""#,
    r#""NS""#,
    r#""DE""#,
    r#""NA""#,
    r#""AS""#,
    r#""HTTPS""#,
];
const NEEDLES: &[&str] = &[
    r#""example""#,
    r#""ads.""#,
    r#"".COM""#,
    r#""\x2e""#,
    r#""""#,
    r#""tracker""#,
    r#""Ali""#,
    r#""@""#,
    r#""spf""#,
    r#""A""#,
    r#""\"""#,
    r#""-""#,
    r#""e\056c""#,
    r#""\q""#,
];
const REGEXES: &[&str] = &[
    r#""^www\.""#,
    r#""\\.""#,
    r#""\.""#,
    r#""ads""#,
    r#""(?-i)^WWW""#,
    r#""^[a-z]+\.""#,
    r#""[\"]""#,
    r#""example\.com$""#,
    r#""^\w+$""#,
    r#"".*""#,
    r#""^$""#,
    r#""A+""#,
    r#""(?i)aaaa""#,
    r#""(""#,
    r#""\d""#,
    r#""^x-\d\.""#,
    r#""[^.]+\.test$""#,
    r#"r"\d+""#,
    r##"r#"a"b"#"##,
    r#""^[A-Z]{2}$""#,
    r#""\"""#,
    r#""o'n""#,
    r#""^.{5}$""#,
    r#""\x41""#,
    r#""[[:alpha:]]+""#,
    r#""[a-z]""#,
    r#""(?-i)[a-z]""#,
    r#""\bcom\b""#,
];
const WILDCARDS: &[&str] = &[
    r#""*.example.com""#,
    r#""*""#,
    r#""*ADS*""#,
    r#""www.*""#,
    r#""\\*""#,
    r#""a**b""#,
    r#""*.com""#,
    r#""""#,
    r#""*example*""#,
    r#""*.EXAMPLE.COM""#,
    r#""A*""#,
    r#""a*""#,
    r#""*e*""#,
    r#""\\\\*""#,
    r#""*@example.com""#,
    r#""?*""#,
    r#"r"*.test""#,
    r#""\*""#,
];
const INTS: &[&str] = &[
    "0",
    "1",
    "7",
    "80",
    "255",
    "0x7",
    "0xff",
    "07",
    "010",
    "-1",
    "4000000000",
    "4294967296",
    "08",
    "0x",
    "10",
    "8",
];
const INT_RANGES: &[&str] = &[
    "1..7",
    "-5..0",
    "0x0..0xa",
    "8..80",
    "5..1",
    "0..4294967295",
];
const IPS: &[&str] = &[
    "192.168.1.10",
    "10.1.2.3",
    "10.0.0.1",
    "127.0.0.1",
    "0.0.0.0",
    "255.255.255.255",
    "::1",
    "::",
    "2001:db8::5",
    "2001:db8::1",
    "::ffff:10.1.2.3",
    "192.0.2.1",
    "198.51.100.53",
];
const NETS: &[&str] = &[
    "10.0.0.0/8",
    "192.168.0.0/16",
    "0.0.0.0/0",
    "127.0.0.0/8",
    "::/0",
    "::ffff:0:0/96",
    "2001:db8::/32",
    "::1/128",
    "10.1.2.3/8",
    "::ffff:10.0.0.0/104",
    "10.0.0.0..10.255.255.255",
    "192.0.2.0..192.0.2.255",
    "::..::ffff",
    "2001:db8::..2001:db8::ffff",
    "::ffff:0.0.0.0..::ffff:255.255.255.255",
    "10.0.0.5..10.0.0.1",
    "10.0.0.1..::1",
    "192.168.1.10",
    "::1",
    "2001:db8::1/64",
];

fn has_letter(text: &str, upper: bool) -> bool {
    // Letters outside escapes (`\d`, `\x41`, ...), which are not compared as written.
    let mut chars = text.chars();
    let mut found = false;
    while let Some(c) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if (upper && c.is_ascii_uppercase()) || (!upper && c.is_ascii_lowercase()) {
            found = true;
        }
    }
    found
}

/// The tags a string literal may touch when compared with a field normalised by `norm`.
fn str_tags(norm: Norm, lit: &str, tags: &mut BTreeSet<Tag>) {
    let body = lit.trim_start_matches('r').trim_matches('"');
    match norm {
        Norm::Name | Norm::Lower if has_letter(body, true) => {
            tags.insert(Tag::Case);
        }
        Norm::Upper if has_letter(body, false) => {
            tags.insert(Tag::Case);
        }
        // `(?i)`/`(?-i)` and escapes that decode to letters (\x41) can touch case too.
        Norm::Name | Norm::Lower | Norm::Upper
            if body.contains("(?") || body.contains("\\x4") || body.contains("\\10") =>
        {
            tags.insert(Tag::Case);
        }
        _ => {}
    }
    if norm == Norm::Name && body.ends_with('.') && !body.ends_with("\\.") {
        tags.insert(Tag::Case);
    }
    if norm == Norm::Name && !body.is_ascii() {
        tags.insert(Tag::Idna);
    }
    if body.contains("\\xff") {
        tags.insert(Tag::Utf8);
    }
}

fn ip_tags(lit: &str, tags: &mut BTreeSet<Tag>) {
    if lit.contains("::ffff:") || lit.starts_with("::/") || lit.starts_with("::..") {
        tags.insert(Tag::Mapped);
    }
    if matches!(lit, "10.1.2.3/8" | "2001:db8::1/64") {
        tags.insert(Tag::HostBits);
    }
}

pub struct Gen {
    rng: Rng,
}

impl Gen {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
        }
    }

    /// 1-3 items from `pool` (or `extra`).
    fn set(&mut self, pool: &[&str], extra: &[&str]) -> Vec<String> {
        let n = 1 + self.rng.below(3);
        (0..n)
            .map(|_| {
                let from = if !extra.is_empty() && self.rng.chance(40) {
                    extra
                } else {
                    pool
                };
                (*self.rng.pick(from)).to_owned()
            })
            .collect()
    }

    fn join(&mut self, items: &[String], tags: &mut BTreeSet<Tag>) -> String {
        if items.len() > 1 && self.rng.chance(10) {
            tags.insert(Tag::Comma);
            format!("{{{}}}", items.join(", "))
        } else {
            format!("{{{}}}", items.join(" "))
        }
    }

    /// `operand OP value` for an operand of `kind`.
    fn comparison(&mut self, operand: &str, kind: Kind, tags: &mut BTreeSet<Tag>) -> String {
        match kind {
            Kind::Str(norm) => {
                let pool = match norm {
                    Norm::Name => NAMES,
                    Norm::Upper => UPPER,
                    Norm::Lower => LOWER,
                    Norm::Exact => EXACT,
                };
                match self.rng.below(12) {
                    0..=5 => {
                        let op = *self
                            .rng
                            .pick(&["==", "!=", "<", "<=", ">", ">=", "eq", "ne"]);
                        let lit = *self.rng.pick(pool);
                        str_tags(norm, lit, tags);
                        format!("{operand} {op} {lit}")
                    }
                    6 => {
                        let items = self.set(pool, &[]);
                        for i in &items {
                            str_tags(norm, i, tags);
                        }
                        let set = self.join(&items, tags);
                        format!("{operand} in {set}")
                    }
                    7 => {
                        let lit = *self.rng.pick(NEEDLES);
                        str_tags(norm, lit, tags);
                        format!("{operand} contains {lit}")
                    }
                    8 | 9 => {
                        let lit = *self.rng.pick(REGEXES);
                        str_tags(norm, lit, tags);
                        let op = *self.rng.pick(&["matches", "~"]);
                        format!("{operand} {op} {lit}")
                    }
                    _ => {
                        let lit = *self.rng.pick(WILDCARDS);
                        let strict = self.rng.chance(50);
                        if strict {
                            str_tags(norm, lit, tags);
                        } else {
                            str_tags(Norm::Exact, lit, tags);
                        }
                        let op = if strict {
                            "strict wildcard"
                        } else {
                            "wildcard"
                        };
                        format!("{operand} {op} {lit}")
                    }
                }
            }
            Kind::Int => match self.rng.below(4) {
                0 | 1 => {
                    let op = *self
                        .rng
                        .pick(&["==", "!=", "<", "<=", ">", ">=", "lt", "ge"]);
                    format!("{operand} {op} {}", self.rng.pick(INTS))
                }
                2 => {
                    let items = self.set(INTS, INT_RANGES);
                    let set = self.join(&items, tags);
                    format!("{operand} in {set}")
                }
                _ => {
                    let op = *self.rng.pick(&["&", "bitwise_and"]);
                    format!("{operand} {op} {}", self.rng.pick(INTS))
                }
            },
            Kind::Ip => match self.rng.below(3) {
                0 | 1 => {
                    let op = *self.rng.pick(&["==", "!=", "<", "<=", ">", ">="]);
                    let lit = *self.rng.pick(IPS);
                    ip_tags(lit, tags);
                    format!("{operand} {op} {lit}")
                }
                _ => {
                    let items = self.set(NETS, IPS);
                    for i in &items {
                        ip_tags(i, tags);
                    }
                    let set = self.join(&items, tags);
                    format!("{operand} in {set}")
                }
            },
        }
    }

    /// One comparison on a random field, in the form its type calls for.
    pub fn atom(&mut self) -> Piece {
        let f = self.rng.pick(FIELDS);
        let mut tags = BTreeSet::new();
        let lower = matches!(f.kind, Kind::Str(_)) && self.rng.chance(5);
        if lower {
            tags.insert(Tag::Lower);
        }
        let wrap = |s: String| if lower { format!("lower({s})") } else { s };
        let text = if !f.array {
            self.comparison(&wrap(f.name.to_owned()), f.kind, &mut tags)
        } else {
            match self.rng.below(10) {
                0..=5 => {
                    let q = *self.rng.pick(&["any", "all"]);
                    let elem = wrap(format!("{}[*]", f.name));
                    let c = self.comparison(&elem, f.kind, &mut tags);
                    if self.rng.chance(10) {
                        tags.insert(Tag::AnyCompound);
                        let d = self.comparison(&elem, f.kind, &mut tags);
                        let op = *self.rng.pick(&["and", "or"]);
                        format!("{q}({c} {op} {d})")
                    } else {
                        format!("{q}({c})")
                    }
                }
                _ => {
                    let i = *self.rng.pick(&["0", "1", "2", "5"]);
                    let elem = wrap(format!("{}[{i}]", f.name));
                    self.comparison(&elem, f.kind, &mut tags)
                }
            }
        };
        Piece { text, tags }
    }

    /// An expression of up to `depth` levels of `not`, `and`, `or`, `xor`.
    pub fn expr(&mut self, depth: usize) -> Piece {
        if depth == 0 || self.rng.chance(30) {
            return self.atom();
        }
        match self.rng.below(6) {
            0 => {
                let inner = self.expr(depth - 1);
                let not = *self.rng.pick(&["not ", "!"]);
                // Without parentheses `not` binds tightest (precedence is tested too).
                let text = if self.rng.chance(30) {
                    format!("{not}{}", inner.text)
                } else {
                    format!("{not}({})", inner.text)
                };
                Piece {
                    text,
                    tags: inner.tags,
                }
            }
            _ => {
                let a = self.expr(depth - 1);
                let b = self.expr(depth - 1);
                let op = *self.rng.pick(&["and", "or", "xor", "&&", "||", "^^"]);
                let mut tags = a.tags;
                tags.extend(b.tags);
                let text = if self.rng.chance(40) {
                    format!("{} {op} {}", a.text, b.text)
                } else {
                    format!("({}) {op} ({})", a.text, b.text)
                };
                Piece { text, tags }
            }
        }
    }
}
