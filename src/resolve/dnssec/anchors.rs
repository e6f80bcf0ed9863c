//! Trust anchors: the DS records where validation starts (RFC 4033 §3.1, RFC 7958).

use data_encoding::{BASE64, HEXLOWER_PERMISSIVE};
use hickory_proto::dnssec::rdata::{DNSKEY, DS};
use hickory_proto::dnssec::{Algorithm, DigestType, PublicKeyBuf};
use hickory_proto::rr::Name;

/// The root zone's KSKs, as IANA publishes them (`root-anchors.xml`, and Debian's
/// `/usr/share/dns/root.ds`): KSK-2017 (20326) and KSK-2024 (38696).
const ROOT_DS: [(u16, &str); 2] = [
    (
        20326,
        "E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
    ),
    (
        38696,
        "683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16",
    ),
];

/// The DNSKEY flag bits (RFC 4034 §2.1.1, RFC 5011 §3).
const ZONE_KEY: u16 = 0x0100;
const REVOKE: u16 = 0x0080;

/// Trusted DS records, by zone. A DNSKEY anchor is kept as the SHA-256 DS of the key,
/// which [`super::validate_dnskeys`] matches the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchors {
    /// Lowercased zones, each once.
    zones: Vec<(Name, Vec<DS>)>,
}

/// A trust-anchor file that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct AnchorError {
    /// The line (1-based) of the record at fault; for a file with no record, its last line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl Default for TrustAnchors {
    fn default() -> Self {
        Self::root()
    }
}

impl TrustAnchors {
    /// The built-in anchors: DS records of the root KSKs 20326 and 38696 (RSASHA256,
    /// SHA-256 digests).
    pub fn root() -> Self {
        let ds = ROOT_DS
            .iter()
            .map(|(tag, hex)| {
                #[allow(clippy::expect_used)]
                let digest = HEXLOWER_PERMISSIVE
                    .decode(hex.as_bytes())
                    .expect("the built-in root digests are hex");
                DS::new(*tag, Algorithm::RSASHA256, DigestType::SHA256, digest)
            })
            .collect();
        Self {
            zones: vec![(Name::root(), ds)],
        }
    }

    /// Parses a trust-anchor file: DS or DNSKEY records in zone-file form, one per line
    /// (parentheses may continue one over several lines), `;` starting a comment:
    ///
    /// ```text
    /// .   IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D
    /// .   172800 IN DNSKEY 257 3 8 AwEAAaz/tAm8yTn4Mfeh5ey...   ; as in root.key
    /// ```
    ///
    /// Owner names are absolute; the TTL and the class (IN) may be left out. A DNSKEY must be
    /// a zone key (flag 256), not revoked, of protocol 3. The file's anchors replace the
    /// built-in ones.
    pub fn parse(text: &str) -> Result<Self, AnchorError> {
        let mut anchors = Self { zones: Vec::new() };
        for entry in entries(text) {
            let (line, tokens) = entry?;
            let (zone, ds) = record(&tokens).map_err(|message| AnchorError { line, message })?;
            anchors.add(zone, ds);
        }
        if anchors.zones.is_empty() {
            return Err(AnchorError {
                line: text.lines().count(),
                message: "no DS or DNSKEY record".into(),
            });
        }
        Ok(anchors)
    }

    fn add(&mut self, zone: Name, ds: DS) {
        let zone = zone.to_lowercase();
        match self.zones.iter_mut().find(|(z, _)| *z == zone) {
            Some((_, v)) => {
                if !v.contains(&ds) {
                    v.push(ds);
                }
            }
            None => self.zones.push((zone, vec![ds])),
        }
    }

    /// The anchors of exactly this zone.
    pub fn ds(&self, zone: &Name) -> Option<&[DS]> {
        self.zones
            .iter()
            .find(|(z, _)| z == zone)
            .map(|(_, v)| v.as_slice())
    }

    /// The deepest anchored zone at or above `name`, where its chain of trust starts, and
    /// its DS records; `None`: nothing anchors the name (it is insecure).
    pub fn closest(&self, name: &Name) -> Option<(&Name, &[DS])> {
        self.zones
            .iter()
            .filter(|(z, _)| z.zone_of(name))
            .max_by_key(|(z, _)| z.num_labels())
            .map(|(z, v)| (z, v.as_slice()))
    }

    /// The anchored zones.
    pub fn zones(&self) -> impl Iterator<Item = &Name> {
        self.zones.iter().map(|(z, _)| z)
    }
}

/// The records of a zone-file text: their first line and their tokens, comments dropped
/// and parentheses joined.
fn entries(text: &str) -> impl Iterator<Item = Result<(usize, Vec<&str>), AnchorError>> {
    let mut lines = text.lines().enumerate();
    std::iter::from_fn(move || {
        let mut tokens = Vec::new();
        let mut start = 0;
        let mut depth = 0usize;
        loop {
            let Some((i, line)) = lines.next() else {
                if depth > 0 {
                    return Some(Err(AnchorError {
                        line: start,
                        message: "unclosed `(`".into(),
                    }));
                }
                return (!tokens.is_empty()).then_some(Ok((start, tokens)));
            };
            let code = line.split(';').next().unwrap_or_default();
            if tokens.is_empty() && depth == 0 {
                start = i + 1;
            }
            for word in code.split_whitespace() {
                // `(` and `)` may touch their neighbours: `( AwEAA...` or `AwEAA...)`.
                let mut rest = word;
                while !rest.is_empty() {
                    let cut = rest.find(['(', ')']).unwrap_or(rest.len());
                    if cut > 0 {
                        tokens.push(&rest[..cut]);
                    }
                    match rest[cut..].chars().next() {
                        Some('(') => depth += 1,
                        Some(')') => {
                            if depth == 0 {
                                return Some(Err(AnchorError {
                                    line: i + 1,
                                    message: "`)` without `(`".into(),
                                }));
                            }
                            depth -= 1;
                        }
                        _ => {}
                    }
                    rest = rest.get(cut + 1..).unwrap_or_default();
                }
            }
            if depth == 0 && !tokens.is_empty() {
                return Some(Ok((start, tokens)));
            }
        }
    })
}

/// One DS or DNSKEY record: its owner and the DS that anchors it.
fn record(tokens: &[&str]) -> Result<(Name, DS), String> {
    let (&owner, mut rest) = tokens.split_first().ok_or("empty record")?;
    if owner.starts_with('$') {
        return Err(format!("directive {owner} is not supported"));
    }
    let zone = Name::from_ascii(owner).map_err(|e| format!("owner `{owner}`: {e}"))?;
    if !zone.is_fqdn() {
        return Err(format!("owner `{owner}` must be absolute (end with `.`)"));
    }
    // [TTL] [class], in either order.
    for _ in 0..2 {
        match rest.first() {
            Some(t) if t.bytes().all(|b| b.is_ascii_digit()) => rest = &rest[1..],
            Some(t) if t.eq_ignore_ascii_case("IN") => rest = &rest[1..],
            _ => {}
        }
    }
    let (&rtype, fields) = rest.split_first().ok_or("no record type")?;
    let num = |i: usize, what: &str| -> Result<u64, String> {
        let t = fields.get(i).ok_or(format!("{rtype}: {what} missing"))?;
        t.parse::<u64>()
            .map_err(|_| format!("{rtype}: {what} `{t}` is not a number"))
    };
    let small = |i: usize, what: &str, max: u64| -> Result<u64, String> {
        let v = num(i, what)?;
        if v > max {
            return Err(format!("{rtype}: {what} {v} is above {max}"));
        }
        Ok(v)
    };
    let tail = || fields.get(3..).unwrap_or_default().concat();
    if rtype.eq_ignore_ascii_case("DS") {
        let tag = small(0, "key tag", 65535)? as u16;
        let alg = Algorithm::from_u8(small(1, "algorithm", 255)? as u8);
        let digest_type = DigestType::from(small(2, "digest type", 255)? as u8);
        let digest = HEXLOWER_PERMISSIVE
            .decode(tail().as_bytes())
            .map_err(|e| format!("DS digest: not hex ({e})"))?;
        let want = match digest_type {
            DigestType::SHA1 => Some(20),
            DigestType::SHA256 => Some(32),
            DigestType::SHA384 => Some(48),
            _ => None,
        };
        if digest.is_empty() || want.is_some_and(|n| n != digest.len()) {
            return Err(format!(
                "DS digest: {} octets, wrong for digest type {}",
                digest.len(),
                u8::from(digest_type)
            ));
        }
        Ok((zone, DS::new(tag, alg, digest_type, digest)))
    } else if rtype.eq_ignore_ascii_case("DNSKEY") {
        let flags = small(0, "flags", 65535)? as u16;
        if small(1, "protocol", 255)? != 3 {
            return Err("DNSKEY: protocol must be 3".into());
        }
        let alg = Algorithm::from_u8(small(2, "algorithm", 255)? as u8);
        if flags & ZONE_KEY == 0 {
            return Err(format!("DNSKEY: flags {flags} lack the zone-key bit (256)"));
        }
        if flags & REVOKE != 0 {
            return Err(format!("DNSKEY: flags {flags} mark the key revoked"));
        }
        let key = BASE64
            .decode(tail().as_bytes())
            .map_err(|e| format!("DNSKEY key: not base64 ({e})"))?;
        if key.is_empty() {
            return Err("DNSKEY: key missing".into());
        }
        let dnskey = DNSKEY::with_flags(flags, PublicKeyBuf::new(key, alg));
        let tag = dnskey
            .calculate_key_tag()
            .map_err(|e| format!("DNSKEY: {e}"))?;
        let digest = dnskey
            .to_digest(&zone, DigestType::SHA256)
            .map_err(|e| format!("DNSKEY: {e}"))?;
        Ok((
            zone,
            DS::new(tag, alg, DigestType::SHA256, digest.as_ref().to_vec()),
        ))
    } else {
        Err(format!(
            "`{rtype}`: a trust anchor is a DS or DNSKEY record (owner [TTL] [IN] DS|DNSKEY ...)"
        ))
    }
}
