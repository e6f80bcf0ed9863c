//! A signed loopback hierarchy for DNSSEC validation tests: the servers, wrapper and
//! switches of [`crate::hierarchy`], with zones signed in-process by hickory's
//! authoritative server (`InMemoryZoneHandler` + `secure_zone_mut`: NSEC or NSEC3 chains,
//! an RRSIG on every RRset) and some of them broken on purpose after signing.
//!
//! [`start_signed`]`(net)` signs every zone (fresh ECDSA and Ed25519 keys each time; the
//! root's RSA key is fixed, so its trust anchor is too) and serves them under
//! 127.`net`.0.0/16. [`Hierarchy::trust_anchor`] is the root's DS, for Unbound's
//! `trust-anchor-file` or dnsgate's `[upstream] trust_anchor`. [`signed_corpus`] lists
//! questions with the answer a validating resolver gives (rcode, AD, EDE).
//! [`recursive_gate`] runs dnsgate in recursive mode over it with those files.
//!
//! # Zones
//!
//! | zone | server (127.N.x.y) | signed | what |
//! | --- | --- | --- | --- |
//! | `.` | a.root-servers.sec. 0.1 | alg 8 (RSASHA256), NSEC | the trust anchor |
//! | `sec.` | ns1.sec. 1.1 | alg 13 (ECDSA P-256), NSEC | TLD, every delegation below |
//! | `child.sec.` | ns1.child.sec. 2.1 | alg 15 (Ed25519), NSEC | data, CNAME chain, wildcard |
//! | `nsec3.sec.` | ns1.nsec3.sec. 3.1 | alg 13, NSEC3 (SHA-1, 0 iterations, no salt) | negatives, wildcard |
//! | `optout.sec.` | ns1.optout.sec. 3.2 | alg 13, NSEC3 opt-out | delegates `unsigned.optout.sec.` without DS |
//! | `unsigned.optout.sec.` | ns1.unsigned.optout.sec. 3.3 | no | insecure (opt-out span) |
//! | `iter200.sec.` | ns1.iter200.sec. 3.4 | alg 13, NSEC3 200 iterations, salt `abcd` | over RFC 9276 limits |
//! | `insecure.sec.` | ns1.insecure.sec. 4.1 | no (no DS, NSEC in `sec.` proves it) | insecure |
//! | `bogusds.sec.` | 5.1 | alg 13, but the DS digest in `sec.` is zeros | bogus |
//! | `expired.sec.` | 5.2 | alg 13, `www` A's RRSIG expired 5 days ago | bogus |
//! | `notyet.sec.` | 5.3 | alg 13, `www` A's RRSIG valid in 5 days | bogus |
//! | `nosig.sec.` | 5.4 | alg 13, `www` A's RRSIGs removed | bogus |
//! | `nonsec.sec.` | 5.5 | alg 13, every NSEC removed | bogus negatives |
//! | `tampered.sec.` | 5.6 | alg 13, `www` A's address changed after signing | bogus |
//! | `baddigest.sec.` | 5.7 | alg 13, its only DS has digest type 200 | insecure |
//! | `badalg.sec.` | 5.8 | no: one DNSKEY of algorithm 253 (fake), DS alg 253 | insecure |
//!
//! Every zone is one server `ns1.<zone>` (the root's is `a.root-servers.sec.`) with
//! in-bailiwick glue in its parent. Signatures are made at start: inception now,
//! expiration in 30 days (the hand-made expired/not-yet-valid ones excepted).
//!
//! # What the wrapper adds for signed zones
//!
//! hickory's server signs the delegation NS RRsets and glue, and its referrals carry
//! neither the DS nor (NSEC flavour) the proof of no DS. The wrapper's referrals (see
//! hierarchy.rs) carry the unsigned NS set and glue, plus, when the query has DO, the DS
//! RRset and its RRSIG, or the NSEC/NSEC3 records hickory gives for a `DS` query at the
//! cut (RFC 4035 §3.1.4). It also drops the RRSIG(NS) hickory appends with the child's NS
//! set to a CNAME answer, and copies the DO bit into its own responses.
//!
//! # hickory quirks met here (left alone: the corpus avoids them)
//!
//! - A wildcard *NODATA* (`x.wild.child.sec. TXT`: the wildcard has only an A) comes back
//!   NXDOMAIN, with an NSEC proof that the wildcard exists. Unbound turns that into a
//!   secure NODATA; in the NSEC3 flavour (`x.wild.nsec3.sec. TXT`) it is bogus ("nameerror
//!   proof failed").
//! - NSEC flavour, NXDOMAIN: the NSEC denying the wildcard is looked for at the parent of
//!   the name only, so `a.nx.child.sec.` gets no wildcard denial (the NSEC covering the
//!   name does not cover `*.child.sec.`). A resolver with QNAME minimisation learns
//!   `nx.child.sec.` NXDOMAIN first and never notices; a direct answer is incomplete. The
//!   corpus asks NXDOMAIN only one label below an existing name.
//! - hickory signs delegation NS sets and glue, and gives referrals AA (the wrapper's own
//!   referrals hide both).
//! - NSEC3 zones add an NSEC3 record to positive answers (harmless).
//! - Signatures made by `secure_zone_mut` have inception = now, expiration = now +
//!   [`SIG_DURATION`]; other windows need RRSIGs made by hand (as here).
//!
//! # Nets
//!
//! 236–250 are for the signed hierarchy (see hierarchy.rs); this file takes 236–239.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::dnssec::crypto::{EcdsaSigningKey, Ed25519SigningKey, RsaSigningKey};
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS, RRSIG, SigInput};
use hickory_proto::dnssec::{
    Algorithm, DigestType, DnssecSigner, Nsec3HashAlgorithm, PublicKey, PublicKeyBuf, SigningKey,
    TBS,
};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{
    DNSClass, Name, RData, Record, RecordSet, RecordType, RrKey, SerialNumber,
};
use hickory_server::dnssec::NxProofKind;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, ZoneType};
use rustls::pki_types::PrivatePkcs8KeyDer;

use crate::client::{self, Opts, ede};
use crate::hierarchy::{Hierarchy, Host, ParsedZone, ZoneData, host};
use crate::unbound::{self, Unbound, answer_summary};
use crate::{Gate, gate_with, upstream};

/// The root's key: hickory-proto 0.26.3's test key `tests/test-data/rsa-2048-private-key-1.pk8`
/// (MIT OR Apache-2.0), as ring cannot make RSA keys. DNSKEY key tag 3257.
const ROOT_KEY: &[u8] = include_bytes!("data/root-rsa-2048.pk8");

/// The root server, as in the root hints.
pub(crate) const SIGNED_ROOT_SERVERS: [&str; 1] = ["a.root-servers.sec."];

/// How long hickory's signatures last (from start).
const SIG_DURATION: Duration = Duration::from_secs(30 * 86400);

const SIGNED_SERVERS: &[Host] = &[
    host("a.root-servers.sec.", [0, 1], &["."]),
    host("ns1.sec.", [1, 1], &["sec."]),
    host("ns1.child.sec.", [2, 1], &["child.sec."]),
    host("ns1.nsec3.sec.", [3, 1], &["nsec3.sec."]),
    host("ns1.optout.sec.", [3, 2], &["optout.sec."]),
    host(
        "ns1.unsigned.optout.sec.",
        [3, 3],
        &["unsigned.optout.sec."],
    ),
    host("ns1.iter200.sec.", [3, 4], &["iter200.sec."]),
    host("ns1.insecure.sec.", [4, 1], &["insecure.sec."]),
    host("ns1.bogusds.sec.", [5, 1], &["bogusds.sec."]),
    host("ns1.expired.sec.", [5, 2], &["expired.sec."]),
    host("ns1.notyet.sec.", [5, 3], &["notyet.sec."]),
    host("ns1.nosig.sec.", [5, 4], &["nosig.sec."]),
    host("ns1.nonsec.sec.", [5, 5], &["nonsec.sec."]),
    host("ns1.tampered.sec.", [5, 6], &["tampered.sec."]),
    host("ns1.baddigest.sec.", [5, 7], &["baddigest.sec."]),
    host("ns1.badalg.sec.", [5, 8], &["badalg.sec."]),
];

/// The key a zone is signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    /// RSASHA256 (8), the fixed [`ROOT_KEY`].
    Rsa,
    /// ECDSAP256SHA256 (13), made at start.
    P256,
    /// ED25519 (15), made at start.
    Ed25519,
}

/// How a zone proves non-existence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proof {
    Nsec,
    Nsec3 {
        iterations: u16,
        salt: &'static [u8],
        opt_out: bool,
    },
}

/// What is wrong with a zone, on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Nothing: secure.
    None,
    /// Not signed, no DS in the parent.
    Unsigned,
    /// The parent's DS has the right key tag and algorithm but a digest of zeros.
    BogusDs,
    /// `www` A's RRSIG expired (inception 30 days ago, expiration 5 days ago).
    Expired,
    /// `www` A's RRSIG valid from 5 days on (for 25 days).
    NotYetValid,
    /// `www` A's RRSIGs removed.
    NoRrsigs,
    /// Every NSEC removed (negative answers carry the SOA and its RRSIG only).
    NoNsec,
    /// `www` A's address changed after signing (RRSIG kept).
    Tampered,
    /// The parent's only DS has digest type 200 (unknown).
    UnknownDigest,
    /// Not signed; its only DNSKEY (fake bytes) and the parent's DS have algorithm 253.
    UnknownAlgorithm,
}

/// One zone of the signed hierarchy.
struct Spec {
    origin: &'static str,
    alg: Alg,
    proof: Proof,
    fault: Fault,
    /// Zone data besides SOA, apex NS and the server's address; `{N}` is the net.
    body: &'static str,
}

const NSEC3: Proof = Proof::Nsec3 {
    iterations: 0,
    salt: &[],
    opt_out: false,
};

const fn spec(origin: &'static str, fault: Fault, body: &'static str) -> Spec {
    Spec {
        origin,
        alg: Alg::P256,
        proof: Proof::Nsec,
        fault,
        body,
    }
}

const SPECS: &[Spec] = &[
    Spec {
        alg: Alg::Rsa,
        ..spec(".", Fault::None, "")
    },
    spec(
        "sec.",
        Fault::None,
        r#"
a.root-servers.sec.   IN A     127.{N}.0.1
www.sec.              IN A     192.0.2.1
www.sec.              IN AAAA  2001:db8::1
txt.sec.              IN TXT   "hello from sec"
alias.sec.            IN CNAME www.nsec3.sec.
"#,
    ),
    Spec {
        alg: Alg::Ed25519,
        ..spec(
            "child.sec.",
            Fault::None,
            r#"
www.child.sec.        IN A     192.0.2.10
www.child.sec.        IN AAAA  2001:db8::10
mail.child.sec.       IN MX    10 mx.child.sec.
mx.child.sec.         IN A     192.0.2.12
txt.child.sec.        IN TXT   "hello from child.sec"
nodata.child.sec.     IN TXT   "only a TXT here"
*.wild.child.sec.     IN A     192.0.2.11
chain.child.sec.      IN CNAME alias.sec.
"#,
        )
    },
    Spec {
        proof: NSEC3,
        ..spec(
            "nsec3.sec.",
            Fault::None,
            r#"
www.nsec3.sec.        IN A     192.0.2.20
txt.nsec3.sec.        IN TXT   "hello from nsec3.sec"
nodata.nsec3.sec.     IN TXT   "only a TXT here"
*.wild.nsec3.sec.     IN A     192.0.2.21
"#,
        )
    },
    Spec {
        proof: Proof::Nsec3 {
            iterations: 0,
            salt: &[],
            opt_out: true,
        },
        ..spec(
            "optout.sec.",
            Fault::None,
            "www.optout.sec. IN A 192.0.2.30\n",
        )
    },
    spec(
        "unsigned.optout.sec.",
        Fault::Unsigned,
        "www.unsigned.optout.sec. IN A 192.0.2.31\n",
    ),
    Spec {
        proof: Proof::Nsec3 {
            iterations: 200,
            salt: &[0xab, 0xcd],
            opt_out: false,
        },
        ..spec(
            "iter200.sec.",
            Fault::None,
            "www.iter200.sec. IN A 192.0.2.40\n",
        )
    },
    spec(
        "insecure.sec.",
        Fault::Unsigned,
        "www.insecure.sec. IN A 192.0.2.41\n",
    ),
    spec("bogusds.sec.", Fault::BogusDs, BROKEN_BODY),
    spec("expired.sec.", Fault::Expired, BROKEN_BODY),
    spec("notyet.sec.", Fault::NotYetValid, BROKEN_BODY),
    spec("nosig.sec.", Fault::NoRrsigs, BROKEN_BODY),
    spec("nonsec.sec.", Fault::NoNsec, BROKEN_BODY),
    spec("tampered.sec.", Fault::Tampered, BROKEN_BODY),
    spec("baddigest.sec.", Fault::UnknownDigest, BROKEN_BODY),
    spec("badalg.sec.", Fault::UnknownAlgorithm, BROKEN_BODY),
];

/// The data of each broken zone (relative names).
const BROKEN_BODY: &str = r#"
www                   IN A     192.0.2.50
txt                   IN TXT   "hello"
"#;

/// The address `tampered.sec.` serves for `www` instead of the signed 192.0.2.50.
pub(crate) const TAMPERED_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// The server of `zone` (its first host in [`SIGNED_SERVERS`]).
fn server_of(zone: &str) -> &'static Host {
    SIGNED_SERVERS
        .iter()
        .find(|h| h.zones.contains(&zone))
        .unwrap_or_else(|| panic!("no server for {zone}"))
}

/// The zone texts (before signing), by origin, `{N}` replaced: SOA, apex NS and server
/// address, the body, then NS and glue for each child zone.
fn signed_zone_texts(net: u8) -> BTreeMap<&'static str, String> {
    let addr = |h: &Host| format!("127.{net}.{}.{}", h.at[0], h.at[1]);
    let mut texts = BTreeMap::new();
    for s in SPECS {
        let h = server_of(s.origin);
        let mut t = format!(
            "$ORIGIN {o}\n$TTL 300\n{o} 3600 IN SOA {ns} hostmaster.sec. 1 3600 600 86400 60\n\
             {o} IN NS {ns}\n{ns} IN A {a}\n",
            o = s.origin,
            ns = h.name,
            a = addr(h),
        );
        t.push_str(s.body);
        for c in SPECS
            .iter()
            .filter(|c| parent_of(c.origin) == Some(s.origin))
        {
            let ch = server_of(c.origin);
            t.push_str(&format!(
                "{} IN NS {}\n{} IN A {}\n",
                c.origin,
                ch.name,
                ch.name,
                addr(ch)
            ));
        }
        texts.insert(s.origin, t.replace("{N}", &net.to_string()));
    }
    texts
}

/// The closest enclosing zone of `origin` among [`SPECS`].
fn parent_of(origin: &str) -> Option<&'static str> {
    if origin == "." {
        return None;
    }
    let n = name(origin);
    (1..n.num_labels())
        .rev()
        .map(|k| n.trim_to(k as usize).to_ascii())
        .chain(std::iter::once(".".to_string()))
        .find_map(|p| SPECS.iter().find(|s| s.origin == p).map(|s| s.origin))
}

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// A signing key for `alg`, twice (the zone signer takes one; the other makes RRSIGs by
/// hand).
fn keys(alg: Alg) -> [Box<dyn SigningKey>; 2] {
    match alg {
        Alg::Rsa => {
            let der = PrivatePkcs8KeyDer::from(ROOT_KEY);
            let k = || -> Box<dyn SigningKey> {
                Box::new(RsaSigningKey::from_pkcs8(&der, Algorithm::RSASHA256).unwrap())
            };
            [k(), k()]
        }
        Alg::P256 => {
            let der = EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256).unwrap();
            let k = || -> Box<dyn SigningKey> {
                Box::new(EcdsaSigningKey::from_pkcs8(&der, Algorithm::ECDSAP256SHA256).unwrap())
            };
            [k(), k()]
        }
        Alg::Ed25519 => {
            let der = Ed25519SigningKey::generate_pkcs8().unwrap();
            let k = || -> Box<dyn SigningKey> {
                Box::new(Ed25519SigningKey::from_pkcs8(&der).unwrap())
            };
            [k(), k()]
        }
    }
}

/// An RRSIG over `rrset` with any validity window (owner and labels of the RRset).
fn rrsig(
    key: &dyn SigningKey,
    key_tag: u16,
    signer: &Name,
    rrset: &RecordSet,
    inception: u32,
    expiration: u32,
) -> Record {
    let input = SigInput {
        type_covered: rrset.record_type(),
        algorithm: key.algorithm(),
        num_labels: rrset.name().num_labels(),
        original_ttl: rrset.ttl(),
        sig_expiration: SerialNumber::new(expiration),
        sig_inception: SerialNumber::new(inception),
        key_tag,
        signer_name: signer.clone(),
    };
    let tbs = TBS::from_input(
        rrset.name(),
        DNSClass::IN,
        &input,
        rrset.records_without_rrsigs(),
    )
    .unwrap();
    let sig = key.sign(&tbs).unwrap();
    Record::from_rdata(
        rrset.name().clone(),
        rrset.ttl(),
        RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig))),
    )
}

fn ds_record(owner: &Name, ds: DS) -> Record {
    Record::from_rdata(owner.clone(), 300, RData::DNSSEC(DNSSECRData::DS(ds)))
}

/// Builds, signs and breaks one zone. `child_ds`: the DS records its children want in it.
/// Returns the zone and the DS records for its parent (none for an insecure delegation).
fn build_zone(s: &Spec, text: &str, child_ds: Vec<Record>) -> (ZoneData, Vec<Record>) {
    let parsed = ParsedZone::parse(text);
    let origin = parsed.origin.clone();
    let signed = !matches!(s.fault, Fault::Unsigned | Fault::UnknownAlgorithm);
    let kind = signed.then(|| match s.proof {
        Proof::Nsec => NxProofKind::Nsec,
        Proof::Nsec3 {
            iterations,
            salt,
            opt_out,
        } => NxProofKind::Nsec3 {
            algorithm: Nsec3HashAlgorithm::SHA1,
            salt: Arc::from(salt),
            iterations,
            opt_out,
        },
    });
    let mut h = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
        origin.clone(),
        parsed.sets.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
        kind,
    )
    .expect("signed test zone loads");
    for ds in child_ds {
        assert!(h.upsert_mut(ds, 1), "DS in {origin}");
    }
    let www = RrKey::new(origin.prepend_label("www").unwrap().into(), RecordType::A);

    if s.fault == Fault::Unsigned {
        return (ZoneData::new(&parsed, Arc::new(h)), Vec::new());
    }
    if s.fault == Fault::UnknownAlgorithm {
        let fake = DNSKEY::with_flags(
            257,
            PublicKeyBuf::new((0..64).collect(), Algorithm::Unknown(253)),
        );
        let digest = fake.to_digest(&origin, DigestType::SHA256).unwrap();
        let ds = DS::new(
            fake.calculate_key_tag().unwrap(),
            Algorithm::Unknown(253),
            DigestType::SHA256,
            digest.as_ref().to_vec(),
        );
        let rec = Record::from_rdata(
            origin.clone(),
            300,
            RData::DNSSEC(DNSSECRData::DNSKEY(fake)),
        );
        assert!(h.upsert_mut(rec, 1));
        return (
            ZoneData::new(&parsed, Arc::new(h)),
            vec![ds_record(&origin, ds)],
        );
    }

    let [key, by_hand] = keys(s.alg);
    let public = key.to_public_key().unwrap();
    let dnskey = DNSKEY::from_key(&public);
    let tag = dnskey.calculate_key_tag().unwrap();
    let good_ds = DS::from_key(&public, &origin, DigestType::SHA256).unwrap();
    h.add_zone_signing_key_mut(DnssecSigner::new(dnskey, key, origin.clone(), SIG_DURATION))
        .unwrap();
    h.secure_zone_mut().unwrap();

    let t = now();
    let map = h.records_get_mut();
    let mut resign = |inception: u32, expiration: u32| {
        let rs = Arc::make_mut(map.get_mut(&www).expect("www A"));
        let sig = rrsig(&*by_hand, tag, &origin, rs, inception, expiration);
        rs.clear_rrsigs();
        rs.insert_rrsig(sig);
    };
    let day = 86400;
    match s.fault {
        // Five days out: validators allow some clock skew (Unbound: 10% of the validity
        // period, between 1 hour and 1 day).
        Fault::Expired => resign(t - 30 * day, t - 5 * day),
        Fault::NotYetValid => resign(t + 5 * day, t + 30 * day),
        Fault::NoRrsigs => Arc::make_mut(map.get_mut(&www).unwrap()).clear_rrsigs(),
        Fault::NoNsec => map.retain(|k, _| k.record_type != RecordType::NSEC),
        Fault::Tampered => {
            let rs = Arc::make_mut(map.get_mut(&www).unwrap());
            let forged =
                Record::from_rdata(rs.name().clone(), rs.ttl(), RData::A(A(TAMPERED_ADDRESS)));
            rs.set_records(vec![forged]);
        }
        _ => {}
    }
    let ds = match s.fault {
        Fault::BogusDs => DS::new(tag, public.algorithm(), DigestType::SHA256, vec![0; 32]),
        Fault::UnknownDigest => DS::new(
            tag,
            public.algorithm(),
            DigestType::Unknown(200),
            good_ds.digest().to_vec(),
        ),
        _ => good_ds,
    };
    (
        ZoneData::new(&parsed, Arc::new(h)),
        vec![ds_record(&origin, ds)],
    )
}

/// Signs every zone of the table above (children first, their DS into the parent) and
/// serves them under 127.`net`.0.0/16. Panics if an address is in use.
pub(crate) async fn start_signed(net: u8) -> Hierarchy {
    let texts = signed_zone_texts(net);
    let mut order: Vec<&Spec> = SPECS.iter().collect();
    order.sort_by_key(|s| std::cmp::Reverse(name(s.origin).num_labels()));
    let mut ds_for: BTreeMap<&str, Vec<Record>> = BTreeMap::new();
    let mut zones = BTreeMap::new();
    let mut anchor = None;
    for s in order {
        let child_ds = ds_for.remove(s.origin).unwrap_or_default();
        let (zone, ds) = build_zone(s, &texts[s.origin], child_ds);
        match parent_of(s.origin) {
            Some(p) => ds_for.entry(p).or_default().extend(ds),
            None => anchor = ds.into_iter().next(),
        }
        zones.insert(s.origin, zone);
    }
    let anchor = match anchor.map(|r| r.data) {
        Some(RData::DNSSEC(DNSSECRData::DS(ds))) => {
            format!("; the test root's KSK (RSASHA256, hickory's test key)\n. 86400 IN DS {ds}\n")
        }
        other => panic!("root DS: {other:?}"),
    };
    Hierarchy::serve(
        net,
        SIGNED_SERVERS,
        &SIGNED_ROOT_SERVERS,
        texts,
        zones,
        Some(anchor),
    )
    .await
}

/// A question of the signed corpus, with what a validating resolver answers when asked
/// with DO=1 (SPEC §9).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SignedQuestion {
    /// The name, fully qualified.
    pub(crate) name: &'static str,
    /// The type.
    pub(crate) qtype: RecordType,
    /// The response code.
    pub(crate) rcode: ResponseCode,
    /// The AD bit (secure).
    pub(crate) ad: bool,
    /// The EDE code dnsgate gives, if any.
    pub(crate) ede: Option<u16>,
    /// What it exercises.
    pub(crate) what: &'static str,
}

impl SignedQuestion {
    /// Bogus: validation fails.
    pub(crate) fn bogus(&self) -> bool {
        self.rcode == ResponseCode::ServFail
    }
}

/// Questions over the signed hierarchy with the answer a validating resolver gives.
pub(crate) fn signed_corpus() -> Vec<SignedQuestion> {
    use RecordType::*;
    use ResponseCode::{NXDomain, NoError, ServFail};
    let q = |name, qtype, rcode, ad, ede, what| SignedQuestion {
        name,
        qtype,
        rcode,
        ad,
        ede,
        what,
    };
    vec![
        q(".", NS, NoError, true, None, "root NS (alg 8)"),
        q("www.sec.", A, NoError, true, None, "TLD data (alg 13)"),
        q("sec.", DNSKEY, NoError, true, None, "TLD DNSKEY"),
        q("child.sec.", DS, NoError, true, None, "DS from the parent"),
        q("www.child.sec.", A, NoError, true, None, "alg 15 zone: A"),
        q("www.child.sec.", AAAA, NoError, true, None, "AAAA"),
        q("mail.child.sec.", MX, NoError, true, None, "MX"),
        q("txt.child.sec.", TXT, NoError, true, None, "TXT"),
        q("nx.child.sec.", A, NXDomain, true, None, "NXDOMAIN (NSEC)"),
        q("nodata.child.sec.", A, NoError, true, None, "NODATA (NSEC)"),
        q(
            "www.child.sec.",
            MX,
            NoError,
            true,
            None,
            "NODATA, other types exist (NSEC)",
        ),
        q(
            "foo.wild.child.sec.",
            A,
            NoError,
            true,
            None,
            "wildcard answer (NSEC)",
        ),
        q(
            "chain.child.sec.",
            A,
            NoError,
            true,
            None,
            "CNAME chain across 3 secure zones (15 → 13 NSEC → 13 NSEC3)",
        ),
        q("www.nsec3.sec.", A, NoError, true, None, "NSEC3 zone: A"),
        q("nx.nsec3.sec.", A, NXDomain, true, None, "NXDOMAIN (NSEC3)"),
        q(
            "nodata.nsec3.sec.",
            A,
            NoError,
            true,
            None,
            "NODATA (NSEC3)",
        ),
        q(
            "foo.wild.nsec3.sec.",
            A,
            NoError,
            true,
            None,
            "wildcard answer (NSEC3)",
        ),
        q(
            "www.optout.sec.",
            A,
            NoError,
            true,
            None,
            "opt-out zone: data",
        ),
        q(
            "www.unsigned.optout.sec.",
            A,
            NoError,
            false,
            None,
            "unsigned delegation in an opt-out span: insecure",
        ),
        q(
            "unsigned.optout.sec.",
            DS,
            NoError,
            false,
            None,
            "no DS proven by an opt-out NSEC3: insecure",
        ),
        q(
            "nx.optout.sec.",
            A,
            NXDomain,
            false,
            None,
            "NXDOMAIN whose next closer name is covered by opt-out: insecure (RFC 5155 §8.4, RFC 7129 §5.1)",
        ),
        q(
            "www.iter200.sec.",
            A,
            NoError,
            true,
            None,
            "NSEC3 200 iterations: positive answers are secure",
        ),
        q(
            "nx.iter200.sec.",
            A,
            NXDomain,
            false,
            Some(27),
            "NSEC3 200 iterations: negative answers insecure (RFC 9276 §3.2, EDE 27)",
        ),
        q(
            "www.insecure.sec.",
            A,
            NoError,
            false,
            None,
            "insecure delegation (NSEC no-DS proof)",
        ),
        q(
            "nx.insecure.sec.",
            A,
            NXDomain,
            false,
            None,
            "NXDOMAIN in an insecure zone",
        ),
        q(
            "insecure.sec.",
            DS,
            NoError,
            true,
            None,
            "the no-DS proof itself is secure",
        ),
        q(
            "www.bogusds.sec.",
            A,
            ServFail,
            false,
            Some(9),
            "DS digest matches no DNSKEY",
        ),
        q(
            "www.expired.sec.",
            A,
            ServFail,
            false,
            Some(7),
            "signature expired",
        ),
        q(
            "txt.expired.sec.",
            TXT,
            NoError,
            true,
            None,
            "the rest of that zone is fine",
        ),
        q(
            "www.notyet.sec.",
            A,
            ServFail,
            false,
            Some(8),
            "signature not yet valid",
        ),
        q(
            "www.nosig.sec.",
            A,
            ServFail,
            false,
            Some(10),
            "RRSIGs stripped",
        ),
        q(
            "nx.nonsec.sec.",
            A,
            ServFail,
            false,
            Some(12),
            "NXDOMAIN without NSEC",
        ),
        q(
            "www.tampered.sec.",
            A,
            ServFail,
            false,
            Some(6),
            "RDATA changed after signing",
        ),
        q(
            "www.baddigest.sec.",
            A,
            NoError,
            false,
            Some(2),
            "only DS has an unknown digest type (200)",
        ),
        q(
            "www.badalg.sec.",
            A,
            NoError,
            false,
            Some(1),
            "only DS/DNSKEY of an unknown algorithm (253)",
        ),
    ]
}

/// Asks `server` with DO=1 (and CD as given), EDNS 1232, UDP.
async fn ask(
    server: std::net::SocketAddr,
    name: &str,
    qtype: RecordType,
    cd: bool,
) -> Option<Message> {
    let opts = Opts {
        dnssec_ok: true,
        checking_disabled: cd,
        ..Opts::default()
    };
    tokio::time::timeout(
        Duration::from_secs(5),
        client::query_with(server, name, qtype, opts),
    )
    .await
    .ok()
}

/// Each record as `owner TYPE`, an RRSIG as `owner RRSIG/COVERED`.
fn types(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                format!("{} RRSIG/{}", r.name.to_ascii(), sig.input().type_covered)
            }
            _ => format!("{} {}", r.name.to_ascii(), r.record_type()),
        })
        .collect()
}

/// An Unbound validating over `h` with its trust anchor, EDE on.
async fn validator(h: &Hierarchy) -> Unbound {
    Unbound::start(
        h,
        unbound::Config {
            trust_anchors: Some(h.trust_anchor().unwrap().to_string()),
            extra: vec!["ede: yes".into(), "val-log-level: 2".into()],
            ..Default::default()
        },
    )
    .await
}

#[tokio::test]
async fn signed_referrals_carry_ds_or_its_denial() {
    let h = start_signed(236).await;
    let root = h.server("a.root-servers.sec.").addr;
    let tld = h.server("ns1.sec.").addr;

    let r = ask(root, "www.child.sec.", RecordType::A, false)
        .await
        .unwrap();
    assert!(!r.metadata.authoritative && r.answers.is_empty());
    // The NS set unsigned (the parent is not authoritative for it), the DS signed.
    assert_eq!(
        types(&r.authorities),
        ["sec. NS", "sec. DS", "sec. RRSIG/DS"]
    );
    assert_eq!(types(&r.additionals), ["ns1.sec. A"]);
    assert_eq!(r.edns.as_ref().map(|e| e.flags().dnssec_ok), Some(true));

    // Without DO: the bare referral.
    let r = client::query(root, "www.child.sec.", RecordType::A).await;
    assert_eq!(types(&r.authorities), ["sec. NS"]);

    // An insecure delegation: the NSEC at the cut (NS, no DS) and its RRSIG.
    let r = ask(tld, "www.insecure.sec.", RecordType::A, false)
        .await
        .unwrap();
    let nsec: Vec<_> = r
        .authorities
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::NSEC(n)) => Some((r.name.to_ascii(), n.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(nsec.len(), 1, "{:?}", r.authorities);
    assert_eq!(nsec[0].0, "insecure.sec.");
    assert!(nsec[0].1.type_set().contains(RecordType::NS));
    assert!(!nsec[0].1.type_set().contains(RecordType::DS));
    assert_eq!(
        types(&r.authorities),
        [
            "insecure.sec. NS",
            "insecure.sec. NSEC",
            "insecure.sec. RRSIG/NSEC"
        ]
    );

    // A CNAME whose target is below a cut: hickory appends the child's NS set and its
    // RRSIG; the wrapper drops both.
    let r = ask(tld, "alias.sec.", RecordType::A, false).await.unwrap();
    assert_eq!(
        types(&r.answers),
        ["alias.sec. CNAME", "alias.sec. RRSIG/CNAME"]
    );

    // Opt-out: the closest encloser's NSEC3 and an opt-out NSEC3 covering the cut.
    let optout = h.server("ns1.optout.sec.").addr;
    let r = ask(optout, "www.unsigned.optout.sec.", RecordType::A, false)
        .await
        .unwrap();
    assert!(!r.metadata.authoritative);
    let nsec3: Vec<bool> = r
        .authorities
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::NSEC3(n)) => Some(n.opt_out()),
            _ => None,
        })
        .collect();
    assert_eq!(nsec3, [true, true], "{:?}", r.authorities);

    // Signed data, and the faults as served.
    let child = h.server("ns1.child.sec.").addr;
    let r = ask(child, "foo.wild.child.sec.", RecordType::A, false)
        .await
        .unwrap();
    assert_eq!(client::ips(&r), ["192.0.2.11"]);
    let sig = r.answers.iter().find_map(|r| match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(s)) => Some(s.input().clone()),
        _ => None,
    });
    let sig = sig.expect("wildcard answer signed");
    assert_eq!(sig.num_labels, 3, "labels of *.wild.child.sec.");
    assert_eq!(sig.algorithm, Algorithm::ED25519);
    let r = ask(
        h.server("ns1.nosig.sec.").addr,
        "www.nosig.sec.",
        RecordType::A,
        false,
    )
    .await
    .unwrap();
    assert_eq!(types(&r.answers), ["www.nosig.sec. A"]);
    let r = ask(
        h.server("ns1.tampered.sec.").addr,
        "www.tampered.sec.",
        RecordType::A,
        false,
    )
    .await
    .unwrap();
    assert_eq!(client::ips(&r), [TAMPERED_ADDRESS.to_string()]);
    assert!(
        h.trust_anchor()
            .unwrap()
            .contains(". 86400 IN DS 3257 8 2 ")
    );
}

#[tokio::test]
async fn unbound_validates_the_signed_corpus() {
    let h = start_signed(237).await;
    let u = validator(&h).await;
    let t = Instant::now();
    let mut wrong = Vec::new();
    let mut seen = Vec::new();
    for q in signed_corpus() {
        let Some(r) = ask(u.addr, q.name, q.qtype, false).await else {
            wrong.push(format!(
                "{} {} ({}): no answer in 5 s",
                q.name, q.qtype, q.what
            ));
            continue;
        };
        let got = (
            r.metadata.response_code,
            r.metadata.authentic_data,
            ede(&r).map(|e| e.0),
        );
        let want = (q.rcode, q.ad, unbound_ede(&q));
        seen.push(format!("{} {}: {:?} {:?}", q.name, q.qtype, got, ede(&r)));
        // AD=1 instead of DO=1 asks for the AD bit just as well (RFC 6840 §5.7).
        let opts = Opts {
            authentic_data: true,
            ..Opts::default()
        };
        let r2 = client::query_with(u.addr, q.name, q.qtype, opts).await;
        if r2.metadata.authentic_data != q.ad {
            wrong.push(format!("{} {} with AD=1: AD {}", q.name, q.qtype, !q.ad));
        }
        if got != want {
            wrong.push(format!(
                "{} {} ({}): got {got:?} {:?}, want {want:?}; {:?}",
                q.name,
                q.qtype,
                q.what,
                ede(&r),
                answer_summary(&r)
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\n{seen:#?}\n{}", u.log());
    // Neither DO nor AD asked: no AD, even on secure data.
    let r = u.query("www.child.sec.", RecordType::A).await;
    assert!(!r.metadata.authentic_data && client::ips(&r) == ["192.0.2.10"]);
    // Unbound took every DS, or its denial, from the referrals: the only DS queries the
    // servers saw are the corpus's own, and those for the names of bogus answers (after
    // missing RRSIGs or NSECs Unbound asks DS at the name, looking for a cut it missed).
    let expected: Vec<String> = signed_corpus()
        .iter()
        .filter(|q| q.qtype == RecordType::DS || q.bogus())
        .map(|q| q.name.to_string())
        .collect();
    let ds: Vec<String> = h
        .seen()
        .into_iter()
        .filter(|(_, s)| s.qtype == RecordType::DS)
        .map(|(_, s)| s.name.to_ascii_lowercase())
        .filter(|n| !expected.contains(n))
        .collect();
    assert!(ds.is_empty(), "DS queries beyond the corpus: {ds:?}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
}

/// The EDE code Unbound 1.17 gives for a corpus question, where it differs from dnsgate's.
fn unbound_ede(q: &SignedQuestion) -> Option<u16> {
    match q.ede {
        // Unbound sends EDE only with a failure: its insecure answers (unsupported
        // algorithm 1, digest 2) carry none, and 1.17 has no EDE 27 (NSEC3 iterations over
        // its limit make the answer insecure silently).
        Some(1 | 2 | 27) => None,
        // The others agree: DS mismatch 9 ("DS hash mismatches key"), expired 7, not yet
        // valid 8, no RRSIGs 10 ("no signatures"), no NSEC 12 ("no DNSSEC records"),
        // tampered 6 ("signature crypto failed").
        other => other,
    }
}

#[tokio::test]
async fn unbound_gives_bogus_data_with_cd() {
    let h = start_signed(238).await;
    let u = validator(&h).await;
    for q in signed_corpus().iter().filter(|q| q.bogus()) {
        let r = ask(u.addr, q.name, q.qtype, true).await.unwrap();
        let rcode = if q.name.starts_with("nx.") {
            ResponseCode::NXDomain
        } else {
            ResponseCode::NoError
        };
        assert_eq!(
            r.metadata.response_code, rcode,
            "{} {}: {r:?}",
            q.name, q.qtype
        );
        assert!(!r.metadata.authentic_data, "{}", q.name);
        if rcode == ResponseCode::NoError {
            assert!(!client::ips(&r).is_empty(), "{}: {r:?}", q.name);
        }
    }
    let r = ask(u.addr, "www.tampered.sec.", RecordType::A, true)
        .await
        .unwrap();
    assert_eq!(client::ips(&r), [TAMPERED_ADDRESS.to_string()]);
    // And without CD, still bogus (not cached as good).
    let r = ask(u.addr, "www.tampered.sec.", RecordType::A, false)
        .await
        .unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
}

/// A dnsgate in recursive mode over the signed hierarchy `h`: its root hints in
/// `root.hints`, its trust anchor in `root.key`, `dnssec = "<dnssec>"`, then `extra` (more
/// `[upstream]` keys, or other sections).
pub(crate) async fn recursive_gate(h: &Hierarchy, dnssec: &str, extra: &str) -> Gate {
    let up = upstream::start().await;
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstream]\nmode = \"recursive\"\n\
         root_hints = \"root.hints\"\ntrust_anchor = \"root.key\"\ndnssec = \"{dnssec}\"\n\
         timeout_ms = 3000\n{extra}"
    );
    let anchor = h.trust_anchor().expect("a signed hierarchy");
    gate_with(
        up,
        &config,
        &[("root.hints", &h.root_hints()), ("root.key", anchor)],
    )
    .await
}

#[tokio::test]
async fn dnsgate_recurses_over_the_signed_hierarchy_without_validating() {
    // dnssec = "off": the signed zones resolve like unsigned ones (DS, RRSIG and NSEC in
    // referrals and answers do not get in the way), bogus data included, never with AD.
    let h = start_signed(239).await;
    let g = recursive_gate(&h, "off", "").await;
    let mut wrong = Vec::new();
    for q in signed_corpus() {
        let Some(r) = ask(g.addr, q.name, q.qtype, false).await else {
            wrong.push(format!("{} {}: no answer in 5 s", q.name, q.qtype));
            continue;
        };
        let rcode = match q.rcode {
            ResponseCode::ServFail if q.name.starts_with("nx.") => ResponseCode::NXDomain,
            ResponseCode::ServFail => ResponseCode::NoError,
            other => other,
        };
        if r.metadata.response_code != rcode || r.metadata.authentic_data {
            wrong.push(format!(
                "{} {}: {} AD={} {:?}",
                q.name,
                q.qtype,
                r.metadata.response_code,
                r.metadata.authentic_data,
                answer_summary(&r)
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    let r = ask(g.addr, "www.tampered.sec.", RecordType::A, false)
        .await
        .unwrap();
    assert_eq!(client::ips(&r), [TAMPERED_ADDRESS.to_string()]);
}

/// dnsgate validating over the signed hierarchy: every corpus answer's rcode, AD bit and
/// EDE code as a validating resolver must give them (SPEC §9).
#[tokio::test]
async fn dnsgate_validates_the_signed_corpus() {
    let h = start_signed(240).await;
    let g = recursive_gate(&h, "validate", "").await;
    let mut wrong = Vec::new();
    for q in signed_corpus() {
        let Some(r) = ask(g.addr, q.name, q.qtype, false).await else {
            wrong.push(format!(
                "{} {} ({}): no answer in 5 s",
                q.name, q.qtype, q.what
            ));
            continue;
        };
        let ede = client::ede(&r);
        if r.metadata.response_code != q.rcode
            || r.metadata.authentic_data != q.ad
            || ede.as_ref().map(|e| e.0) != q.ede
        {
            wrong.push(format!(
                "{} {} ({}): got {} AD={} EDE={:?}, want {} AD={} EDE={:?}",
                q.name,
                q.qtype,
                q.what,
                r.metadata.response_code,
                r.metadata.authentic_data,
                ede,
                q.rcode,
                q.ad,
                q.ede
            ));
        }
        // A bogus answer's EDE text names the zone.
        if let (true, Some((_, text))) = (q.bogus(), &ede) {
            let zone = q.name.split_once('.').map_or("", |x| x.1);
            if !text.contains(zone.trim_end_matches('.')) {
                wrong.push(format!(
                    "{}: EDE text {text:?} does not name {zone}",
                    q.name
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test]
async fn dnsgate_hands_bogus_data_over_with_cd_and_never_sets_ad_unasked() {
    let h = start_signed(241).await;
    let g = recursive_gate(&h, "validate", "").await;
    // CD=1: the data, unvalidated, no AD.
    let r = ask(g.addr, "www.tampered.sec.", RecordType::A, true)
        .await
        .unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(client::ips(&r), [TAMPERED_ADDRESS.to_string()]);
    assert!(!r.metadata.authentic_data);
    // Without CD: still bogus (the CD answer is cached apart).
    let r = ask(g.addr, "www.tampered.sec.", RecordType::A, false)
        .await
        .unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    // Secure data: AD only when the query had DO or AD.
    let plain = client::query(g.addr, "www.child.sec.", RecordType::A).await;
    assert!(!plain.metadata.authentic_data);
    assert!(!client::ips(&plain).is_empty());
    let ad = client::query_with(
        g.addr,
        "www.child.sec.",
        RecordType::A,
        Opts {
            authentic_data: true,
            ..Opts::default()
        },
    )
    .await;
    assert!(ad.metadata.authentic_data);
    // Answers dnsgate makes itself never carry AD, even for secure names.
    let g2 = recursive_gate(
        &h,
        "validate",
        "\n[[policies]]\nname = \"b\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"www.child.sec\"'\n",
    )
    .await;
    let blocked = ask(g2.addr, "www.child.sec.", RecordType::A, false)
        .await
        .unwrap();
    assert_eq!(client::ips(&blocked), ["0.0.0.0"]);
    assert!(!blocked.metadata.authentic_data);
}

#[tokio::test]
async fn insecure_domains_are_never_validated() {
    let h = start_signed(242).await;
    let g = recursive_gate(
        &h,
        "validate",
        "insecure_domains = [\"tampered.sec\", \"child.sec\"]\n",
    )
    .await;
    let r = ask(g.addr, "www.tampered.sec.", RecordType::A, false)
        .await
        .unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(client::ips(&r), [TAMPERED_ADDRESS.to_string()]);
    assert!(!r.metadata.authentic_data);
    let r = ask(g.addr, "www.child.sec.", RecordType::A, false)
        .await
        .unwrap();
    assert!(
        !r.metadata.authentic_data,
        "secure zone, but listed insecure"
    );
    // Others still are.
    let r = ask(g.addr, "www.expired.sec.", RecordType::A, false)
        .await
        .unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
}

/// Validation that cannot finish (the zone's server refuses the DNSKEY question) is
/// SERVFAIL with EDE 5 (Indeterminate), not bogus, and the metrics count each verdict.
#[tokio::test]
async fn unfinished_validation_is_indeterminate_and_verdicts_are_counted() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let h = start_signed(243).await;
    let g = recursive_gate(&h, "validate", "").await;
    // With CD the data comes without validating: the cut child.sec. (and its DS, from the
    // referral) is learned, its keys not.
    let r = ask(g.addr, "www.child.sec.", RecordType::A, true)
        .await
        .unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    // Secure, through sec.'s keys (learned now).
    let r = ask(g.addr, "www.sec.", RecordType::A, false).await.unwrap();
    assert!(r.metadata.authentic_data);
    // child.sec.'s server refuses DNSKEY questions from now on: its keys cannot be had.
    h.server("ns1.child.sec.")
        .set_mode(crate::hierarchy::Mode::NoDnskey);
    let r = ask(g.addr, "txt.child.sec.", RecordType::TXT, false)
        .await
        .unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(client::ede(&r).map(|e| e.0), Some(5), "{r:?}");
    let text = metrics.render();
    let count = |result: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "dnsgate_dnssec_results_total{{result=\"{result}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(count("secure"), Some(1.0), "{text}");
    assert_eq!(count("indeterminate"), Some(1.0), "{text}");
    assert_eq!(count("bogus"), Some(0.0), "{text}");
}

/// Forward mode with `dnssec = "validate"`: dnsgate asks a validating Unbound (recursing
/// over the signed hierarchy) with DO=1 and CD=1, so even data Unbound judges bogus comes
/// over, and judges it itself: every corpus answer as in recursive mode.
#[tokio::test]
async fn forward_mode_validates_what_a_validating_upstream_hands_over() {
    let h = start_signed(244).await;
    let u = validator(&h).await;
    let up = upstream::start().await;
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstream]\nmode = \"forward\"\n\
         servers = [\"udp://{}\"]\ntrust_anchor = \"root.key\"\ndnssec = \"validate\"\n\
         timeout_ms = 3000\n",
        u.addr
    );
    let g = gate_with(up, &config, &[("root.key", h.trust_anchor().unwrap())]).await;
    let mut wrong = Vec::new();
    for q in signed_corpus() {
        let Some(r) = ask(g.addr, q.name, q.qtype, false).await else {
            wrong.push(format!(
                "{} {} ({}): no answer in 5 s",
                q.name, q.qtype, q.what
            ));
            continue;
        };
        let got = (
            r.metadata.response_code,
            r.metadata.authentic_data,
            ede(&r).map(|e| e.0),
        );
        if got != (q.rcode, q.ad, q.ede) {
            wrong.push(format!(
                "{} {} ({}): got {got:?} {:?}, want {:?}",
                q.name,
                q.qtype,
                q.what,
                ede(&r),
                (q.rcode, q.ad, q.ede)
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Without DO the signatures are left out, the verdict stays.
    let plain = client::query_with(
        g.addr,
        "www.child.sec.",
        RecordType::A,
        Opts {
            authentic_data: true,
            ..Opts::default()
        },
    )
    .await;
    assert!(plain.metadata.authentic_data);
    assert!(
        plain
            .answers
            .iter()
            .all(|r| r.record_type() != RecordType::RRSIG)
    );
}

/// `resolve` policies' servers are validated too; a split-horizon zone they serve goes in
/// `insecure_domains` (it has no chain of trust from the root).
#[tokio::test]
async fn conditional_forwarding_validates_unless_the_zone_is_insecure() {
    let h = start_signed(245).await;
    let policy = "\n[[policies]]\nname = \"corp\"\naction = \"resolve\"\nupstreams = [\"udp://{UPSTREAM}\"]\ntraffic = 'any(dns.domains[*] == \"internal.test\")'\n";
    let g = recursive_gate(&h, "validate", policy).await;
    let r = ask(g.addr, "internal.test.", RecordType::A, false)
        .await
        .unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "{r:?}");
    let extra = format!("insecure_domains = [\"internal.test\"]\n{policy}");
    let g = recursive_gate(&h, "validate", &extra).await;
    let r = ask(g.addr, "internal.test.", RecordType::A, false)
        .await
        .unwrap();
    assert_eq!(client::ips(&r), ["192.0.2.40"]);
    assert!(!r.metadata.authentic_data);
    // The signed names still validate next to it.
    let r = ask(g.addr, "www.child.sec.", RecordType::A, false)
        .await
        .unwrap();
    assert!(r.metadata.authentic_data);
}

/// The DS of a zone comes with the signed referral to it: validating costs no DS
/// question, only each zone's DNSKEY one.
#[tokio::test]
async fn validation_takes_the_ds_from_the_referral() {
    let h = start_signed(246).await;
    let g = recursive_gate(&h, "validate", "").await;
    let r = ask(g.addr, "www.child.sec.", RecordType::A, false)
        .await
        .unwrap();
    assert!(r.metadata.authentic_data);
    let seen = h.seen();
    let ds: Vec<_> = seen
        .iter()
        .filter(|(_, s)| s.qtype == RecordType::DS)
        .collect();
    assert!(ds.is_empty(), "{ds:?}");
    let dnskey = seen
        .iter()
        .filter(|(_, s)| s.qtype == RecordType::DNSKEY)
        .count();
    assert_eq!(dnskey, 3, "., sec. and child.sec.: {seen:?}");
}
