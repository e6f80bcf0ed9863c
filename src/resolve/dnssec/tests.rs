//! Validation against data signed here, in-process: ECDSA P-256 and Ed25519 keys made for
//! each run, RSA from a bundled test key (testdata/README.md). Signatures are made with
//! hickory-proto's own `TBS`, on clean input, so they also check our canonical form. And
//! against whole zones signed by ldns and BIND (testdata/make-fixtures.sh).

use std::str::FromStr;

use data_encoding::{BASE32_DNSSEC, BASE64, HEXLOWER, HEXLOWER_PERMISSIVE};
use hickory_proto::dnssec::crypto::{EcdsaSigningKey, Ed25519SigningKey, RsaSigningKey};
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS, NSEC, NSEC3, RRSIG, SigInput};
use hickory_proto::dnssec::{
    Algorithm, DigestType, Nsec3HashAlgorithm, PublicKey, PublicKeyBuf, SigningKey, TBS, Verifier,
};
use hickory_proto::rr::rdata::{A, NS};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable};
use rustls::pki_types::PrivatePkcs8KeyDer;

use super::*;

const NOW: u32 = 1_750_000_000;
const HOUR: u32 = 3600;
const DAY: u32 = 86_400;
const RSA_PK8: &[u8] = include_bytes!("testdata/rsa-2048-private-key-1.pk8");

fn n(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

fn a(owner: &str, last: u8) -> Record {
    Record::from_rdata(n(owner), 300, RData::A(A::new(192, 0, 2, last)))
}

fn ns(owner: &str, target: &str) -> Record {
    Record::from_rdata(n(owner), 300, RData::NS(NS(n(target))))
}

fn renamed(records: &[Record], name: &Name) -> Vec<Record> {
    records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.name = name.clone();
            r
        })
        .collect()
}

fn ede_of(r: Result<Verified, Failure>) -> u16 {
    r.unwrap_err().ede
}

fn bogus_ede(s: &Security) -> Option<u16> {
    match s {
        Security::Bogus(f) => Some(f.ede),
        _ => None,
    }
}

/// A zone's signing key.
struct Key {
    signer: Box<dyn SigningKey>,
    dnskey: DNSKEY,
    zone: Name,
}

impl Key {
    fn new(signer: Box<dyn SigningKey>, flags: u16, zone: &str) -> Self {
        let dnskey = DNSKEY::with_flags(flags, signer.to_public_key().unwrap());
        Self {
            signer,
            dnskey,
            zone: n(zone),
        }
    }

    fn p256(zone: &str, flags: u16) -> Self {
        let alg = Algorithm::ECDSAP256SHA256;
        let der = EcdsaSigningKey::generate_pkcs8(alg).unwrap();
        Self::new(
            Box::new(EcdsaSigningKey::from_pkcs8(&der, alg).unwrap()),
            flags,
            zone,
        )
    }

    fn ed25519(zone: &str, flags: u16) -> Self {
        let der = Ed25519SigningKey::generate_pkcs8().unwrap();
        Self::new(
            Box::new(Ed25519SigningKey::from_pkcs8(&der).unwrap()),
            flags,
            zone,
        )
    }

    fn rsa(zone: &str, flags: u16) -> Self {
        let der = PrivatePkcs8KeyDer::from(RSA_PK8);
        Self::new(
            Box::new(RsaSigningKey::from_pkcs8(&der, Algorithm::RSASHA256).unwrap()),
            flags,
            zone,
        )
    }

    fn keys(&self) -> Vec<DNSKEY> {
        vec![self.dnskey.clone()]
    }

    fn tag(&self) -> u16 {
        self.dnskey.calculate_key_tag().unwrap()
    }

    fn ds(&self, digest_type: DigestType) -> DS {
        let digest = self.dnskey.to_digest(&self.zone, digest_type).unwrap();
        DS::new(
            self.tag(),
            self.dnskey.algorithm(),
            digest_type,
            digest.as_ref().to_vec(),
        )
    }

    fn record(&self) -> Record {
        Record::from_rdata(
            self.zone.clone(),
            3600,
            RData::DNSSEC(DNSSECRData::DNSKEY(self.dnskey.clone())),
        )
    }

    /// An RRSIG over `rrset` (clean: one owner, one TTL, lowercase) valid in the window.
    fn sign_at(&self, rrset: &[Record], inception: u32, expiration: u32) -> Record {
        let owner = &rrset[0].name;
        let input = SigInput {
            type_covered: rrset[0].record_type(),
            algorithm: self.signer.algorithm(),
            num_labels: owner.num_labels(),
            original_ttl: rrset[0].ttl,
            sig_expiration: SerialNumber::new(expiration),
            sig_inception: SerialNumber::new(inception),
            key_tag: self.tag(),
            signer_name: self.zone.clone(),
        };
        let tbs = TBS::from_input(owner, DNSClass::IN, &input, rrset.iter()).unwrap();
        let sig = self.signer.sign(&tbs).unwrap();
        Record::from_rdata(
            owner.clone(),
            rrset[0].ttl,
            RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig))),
        )
    }

    fn sign(&self, rrset: &[Record]) -> Record {
        self.sign_at(rrset, NOW - HOUR, NOW + DAY)
    }
}

fn verify(
    rrset: &[Record],
    sigs: &[Record],
    keys: &[DNSKEY],
    zone: &str,
) -> Result<Verified, Failure> {
    let r = &rrset[0];
    verify_rrset(&r.name, r.record_type(), rrset, sigs, keys, &n(zone), NOW)
}

// ---- verify_rrset ----

#[test]
fn valid_rrsets_verify_with_algorithms_8_13_15() {
    for (key, alg) in [
        (Key::rsa("example.", 257), 8u8),
        (Key::p256("example.", 257), 13),
        (Key::ed25519("example.", 257), 15),
    ] {
        assert_eq!(u8::from(key.dnskey.algorithm()), alg);
        let rrset = [a("www.example.", 1), a("www.example.", 2)];
        let sig = key.sign(&rrset);
        let v = verify(&rrset, &[sig], &key.keys(), "example.").unwrap();
        assert_eq!(
            v,
            Verified {
                ttl: 300,
                wildcard: None
            },
            "algorithm {alg}"
        );
    }
}

#[test]
fn mixed_case_rdata_decremented_ttls_and_any_order_still_verify() {
    let key = Key::p256("example.", 257);
    let clean = [
        ns("example.", "a.ns.example."),
        ns("example.", "b.ns.example."),
    ];
    let sig = key.sign(&clean);
    // As a server may send them: other order, mixed case in owner and RDATA, TTLs counted
    // down unevenly, a duplicate.
    let mut seen = vec![
        ns("EXample.", "B.Ns.EXAMPLE."),
        ns("example.", "a.NS.example."),
        ns("example.", "a.ns.example."),
    ];
    seen[0].ttl = 17;
    seen[1].ttl = 250;
    seen[2].ttl = 250;
    let owner = n("eXaMpLe.");
    let v = verify_rrset(
        &owner,
        RecordType::NS,
        &seen,
        &[sig],
        &key.keys(),
        &n("example."),
        NOW,
    )
    .unwrap();
    assert_eq!(v.ttl, 17, "the least TTL");
}

#[test]
fn the_validated_ttl_is_capped_by_the_original_ttl_and_the_expiration() {
    let key = Key::ed25519("example.", 257);
    let rrset = [a("www.example.", 1)];
    let sig = key.sign_at(&rrset, NOW - HOUR, NOW + 100);
    let v = verify(&rrset, std::slice::from_ref(&sig), &key.keys(), "example.").unwrap();
    assert_eq!(v.ttl, 100);
    // A record claiming more than the RRSIG's original TTL gets the original TTL.
    let mut longer = rrset.clone();
    longer[0].ttl = 99_999;
    let sig = key.sign(&rrset);
    let v = verify(&longer, &[sig], &key.keys(), "example.").unwrap();
    assert_eq!(v.ttl, 300);
}

#[test]
fn the_validity_window_gives_ede_7_and_8_with_serial_arithmetic() {
    let key = Key::p256("example.", 257);
    let keys = [key.dnskey.clone()];
    let rrset = [a("www.example.", 1)];
    let expired = key.sign_at(&rrset, NOW - 20 * DAY, NOW - DAY);
    assert_eq!(
        ede_of(verify(&rrset, &[expired], &keys, "example.")),
        ede::SIGNATURE_EXPIRED
    );
    let future = key.sign_at(&rrset, NOW + DAY, NOW + 20 * DAY);
    assert_eq!(
        ede_of(verify(&rrset, &[future], &keys, "example.")),
        ede::SIGNATURE_NOT_YET_VALID
    );
    // Exactly at the edges: valid.
    let edge = key.sign_at(&rrset, NOW, NOW);
    assert!(verify(&rrset, &[edge], &keys, "example.").is_ok());
    // RFC 1982: a window across the 32-bit wrap (2106) is still a window.
    let wrap = key.sign_at(&rrset, u32::MAX - 10, 100);
    for now in [u32::MAX - 10, u32::MAX, 0, 5, 100] {
        let v = verify_rrset(
            &rrset[0].name,
            RecordType::A,
            &rrset,
            std::slice::from_ref(&wrap),
            &keys,
            &n("example."),
            now,
        );
        assert!(v.is_ok(), "now {now}");
    }
    let v = verify_rrset(
        &rrset[0].name,
        RecordType::A,
        &rrset,
        &[wrap],
        &keys,
        &n("example."),
        101,
    );
    assert_eq!(ede_of(v), ede::SIGNATURE_EXPIRED);
}

#[test]
fn missing_rrsigs_unknown_keys_and_tampering_are_bogus() {
    let key = Key::rsa("example.", 257);
    let other = Key::p256("example.", 257);
    let keys = [key.dnskey.clone()];
    let rrset = [a("www.example.", 1)];
    assert_eq!(
        ede_of(verify(&rrset, &[], &keys, "example.")),
        ede::RRSIGS_MISSING
    );
    // An RRSIG over another type does not count.
    let ns_sig = key.sign(&[ns("www.example.", "ns.example.")]);
    assert_eq!(
        ede_of(verify(&rrset, &[ns_sig], &keys, "example.")),
        ede::RRSIGS_MISSING
    );
    // Signed by a key that is not among the zone's.
    let sig = other.sign(&rrset);
    assert_eq!(
        ede_of(verify(&rrset, &[sig], &keys, "example.")),
        ede::DNSKEY_MISSING
    );
    // Tampered data.
    let sig = key.sign(&rrset);
    let tampered = [a("www.example.", 99)];
    assert_eq!(
        ede_of(verify(
            &tampered,
            std::slice::from_ref(&sig),
            &keys,
            "example."
        )),
        ede::DNSSEC_BOGUS
    );
    // One extra record in the set.
    let more = [a("www.example.", 1), a("www.example.", 2)];
    assert_eq!(
        ede_of(verify(&more, std::slice::from_ref(&sig), &keys, "example.")),
        ede::DNSSEC_BOGUS
    );
    // Another zone's signature (the signer must be the zone).
    let child = Key::p256("sub.example.", 257);
    let sub = [a("www.sub.example.", 1)];
    let f = verify(&sub, &[child.sign(&sub)], &child.keys(), "example.").unwrap_err();
    assert_eq!(f.ede, ede::DNSSEC_BOGUS);
    assert!(f.reason.contains("sub.example."), "{}", f.reason);
    // An owner outside the zone.
    assert!(verify(&rrset, std::slice::from_ref(&sig), &keys, "other.").is_err());
    // One good signature among bad ones suffices.
    let bad = key.sign_at(&rrset, NOW - 20 * DAY, NOW - DAY);
    assert!(verify(&rrset, &[bad, other.sign(&rrset), sig], &keys, "example.").is_ok());
}

#[test]
fn only_zone_keys_that_are_not_revoked_sign() {
    let rrset = [a("www.example.", 1)];
    for flags in [0, 257 | 0x80] {
        let key = Key::p256("example.", flags);
        let sig = key.sign(&rrset);
        assert_eq!(
            ede_of(verify(&rrset, &[sig], &key.keys(), "example.")),
            ede::DNSKEY_MISSING,
            "flags {flags}"
        );
    }
}

#[test]
fn keys_sharing_a_tag_are_all_tried() {
    let key = Key::p256("example.", 257);
    let rrset = [a("www.example.", 1)];
    let sig = key.sign(&rrset);
    // A decoy with the same tag (a 16-bit sum of the RDATA words: one byte up, another of
    // the same parity down), listed first: it fails, the real key is tried next.
    let mut bytes = key.dnskey.public_key().public_bytes().to_vec();
    let i = (0..bytes.len()).find(|&i| bytes[i] < 255).unwrap();
    let j = (0..bytes.len())
        .find(|&j| j != i && j % 2 == i % 2 && bytes[j] > 0)
        .unwrap();
    bytes[i] += 1;
    bytes[j] -= 1;
    let decoy = DNSKEY::with_flags(257, PublicKeyBuf::new(bytes, Algorithm::ECDSAP256SHA256));
    assert_eq!(decoy.calculate_key_tag().unwrap(), key.tag());
    assert_ne!(decoy, key.dnskey);
    assert!(
        verify(
            &rrset,
            std::slice::from_ref(&sig),
            &[decoy.clone(), key.dnskey.clone()],
            "example."
        )
        .is_ok()
    );
    assert_eq!(
        ede_of(verify(&rrset, &[sig], &[decoy], "example.")),
        ede::DNSSEC_BOGUS
    );
}

#[test]
fn wildcard_expansions_are_reported_with_their_closest_encloser() {
    for key in [Key::rsa("example.", 257), Key::ed25519("example.", 257)] {
        let source = [a("*.w.example.", 7)];
        let sig = key.sign(&source);
        let answer = renamed(&source, &n("a.b.w.example."));
        let sig = renamed(&[sig], &n("a.b.w.example."));
        let v = verify(&answer, &sig, &key.keys(), "example.").unwrap();
        assert_eq!(v.wildcard, Some(n("w.example.")));
        // The literal wildcard name is no expansion.
        let v = verify(&source, &[key.sign(&source)], &key.keys(), "example.").unwrap();
        assert_eq!(v.wildcard, None);
    }
}

#[test]
fn rrsig_label_counts_outside_the_zone_and_owner_are_bogus() {
    let key = Key::p256("example.", 257);
    let rrset = [a("www.example.", 1)];
    let good = key.sign(&rrset);
    let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &good.data else {
        unreachable!()
    };
    for labels in [0u8, 3] {
        let mut input = sig.input().clone();
        input.num_labels = labels;
        let forged = Record::from_rdata(
            good.name.clone(),
            300,
            RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(
                input,
                sig.sig().to_vec(),
            ))),
        );
        assert_eq!(
            ede_of(verify(&rrset, &[forged], &key.keys(), "example.")),
            ede::DNSSEC_BOGUS,
            "labels {labels}"
        );
    }
}

#[test]
fn unsupported_algorithms_are_never_handed_to_the_crypto() {
    // Algorithm 253 (private) and 16 (Ed448): hickory panics in debug builds if asked to
    // verify with them.
    for alg in [253u8, 16] {
        let alg = Algorithm::from_u8(alg);
        assert!(!alg.is_supported());
        let dnskey = DNSKEY::with_flags(257, PublicKeyBuf::new(vec![7; 57], alg));
        let rrset = [a("www.example.", 1)];
        let input = SigInput {
            type_covered: RecordType::A,
            algorithm: alg,
            num_labels: 2,
            original_ttl: 300,
            sig_expiration: SerialNumber::new(NOW + DAY),
            sig_inception: SerialNumber::new(NOW - DAY),
            key_tag: dnskey.calculate_key_tag().unwrap(),
            signer_name: n("example."),
        };
        let sig = Record::from_rdata(
            n("www.example."),
            300,
            RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, vec![1; 114]))),
        );
        assert_eq!(
            ede_of(verify(&rrset, &[sig], &[dnskey], "example.")),
            ede::RRSIGS_MISSING
        );
    }
}

// ---- validate_dnskeys ----

/// A KSK (in the DS) and a ZSK; the DNSKEY RRset signed by the KSK.
fn signed_zone(zone: &str) -> (Key, Key, Vec<Record>) {
    let ksk = Key::rsa(zone, 257);
    let zsk = Key::p256(zone, 256);
    let mut reply = vec![ksk.record(), zsk.record()];
    let sig = ksk.sign(&reply);
    reply.push(sig);
    (ksk, zsk, reply)
}

#[test]
fn the_dnskey_rrset_is_trusted_through_a_ds_and_its_keys_then_sign_the_zone() {
    let (ksk, zsk, reply) = signed_zone("example.");
    for dt in [DigestType::SHA256, DigestType::SHA384, DigestType::SHA1] {
        let trusted = validate_dnskeys(&n("example."), &reply, &reply, &[ksk.ds(dt)], NOW).unwrap();
        assert_eq!(trusted.keys.len(), 2, "{dt:?}");
        assert_eq!(trusted.ttl, 3600);
        let rrset = [a("www.example.", 1)];
        let sig = zsk.sign(&rrset);
        assert!(verify(&rrset, &[sig], &trusted.keys, "example.").is_ok());
    }
}

#[test]
fn broken_dnskey_chains_are_bogus() {
    let zone = n("example.");
    let (ksk, zsk, reply) = signed_zone("example.");
    let bogus = |r: Result<TrustedKeys, Security>| match r {
        Err(Security::Bogus(f)) => f.ede,
        other => panic!("{other:?}"),
    };
    // A DS digest that matches nothing.
    let mut wrong = ksk.ds(DigestType::SHA256);
    wrong = DS::new(
        wrong.key_tag(),
        wrong.algorithm(),
        DigestType::SHA256,
        vec![0; 32],
    );
    assert_eq!(
        bogus(validate_dnskeys(&zone, &reply, &reply, &[wrong], NOW)),
        ede::DNSKEY_MISSING
    );
    // A DS naming the ZSK, which does not sign the DNSKEY RRset.
    let f = validate_dnskeys(&zone, &reply, &reply, &[zsk.ds(DigestType::SHA256)], NOW);
    assert_eq!(bogus(f), ede::DNSKEY_MISSING);
    // No DNSKEY records.
    let f = validate_dnskeys(&zone, &[], &[], &[ksk.ds(DigestType::SHA256)], NOW);
    assert_eq!(bogus(f), ede::DNSKEY_MISSING);
    // The KSK's signature has expired.
    let keys = [ksk.record(), zsk.record()];
    let old = ksk.sign_at(&keys, NOW - 20 * DAY, NOW - DAY);
    let f = validate_dnskeys(&zone, &keys, &[old], &[ksk.ds(DigestType::SHA256)], NOW);
    assert_eq!(bogus(f), ede::SIGNATURE_EXPIRED);
    // No RRSIG at all.
    let f = validate_dnskeys(&zone, &keys, &[], &[ksk.ds(DigestType::SHA256)], NOW);
    assert_eq!(bogus(f), ede::RRSIGS_MISSING);
    // RFC 4509 §3: with a SHA-256 DS present, a matching SHA-1 one is not enough.
    let sha1 = ksk.ds(DigestType::SHA1);
    let wrong = DS::new(
        ksk.tag(),
        ksk.dnskey.algorithm(),
        DigestType::SHA256,
        vec![0; 32],
    );
    let f = validate_dnskeys(&zone, &reply, &reply, &[sha1, wrong], NOW);
    assert_eq!(bogus(f), ede::DNSKEY_MISSING);
}

#[test]
fn only_unsupported_algorithms_or_digests_make_the_zone_insecure() {
    let zone = n("example.");
    let (ksk, _, reply) = signed_zone("example.");
    let good = ksk.ds(DigestType::SHA256);
    let ed448 = DS::new(
        1234,
        Algorithm::from_u8(16),
        DigestType::SHA256,
        vec![1; 32],
    );
    let private = DS::new(
        1235,
        Algorithm::from_u8(253),
        DigestType::SHA256,
        vec![1; 32],
    );
    let gost = DS::new(
        ksk.tag(),
        Algorithm::RSASHA256,
        DigestType::from(3),
        vec![1; 32],
    );
    let insecure = |r: Result<TrustedKeys, Security>| match r {
        Err(Security::Insecure { ede, .. }) => ede,
        other => panic!("{other:?}"),
    };
    let r = validate_dnskeys(
        &zone,
        &reply,
        &reply,
        &[ed448.clone(), private.clone()],
        NOW,
    );
    assert_eq!(insecure(r), Some(ede::UNSUPPORTED_DNSKEY_ALGORITHM));
    let r = validate_dnskeys(&zone, &reply, &reply, std::slice::from_ref(&gost), NOW);
    assert_eq!(insecure(r), Some(ede::UNSUPPORTED_DS_DIGEST));
    // Beside a supported DS they are just left out.
    let r = validate_dnskeys(&zone, &reply, &reply, &[ed448, gost, good], NOW);
    assert!(r.is_ok());
}

#[test]
fn a_chain_of_trust_from_an_anchor_file_down_to_an_answer() {
    // The root, anchored by its KSK in DNSKEY form; example. delegated with a DS.
    let (root_ksk, root_zsk, root_keys) = signed_zone(".");
    let anchor = format!(
        ". 3600 IN DNSKEY 257 3 8 {} ; the test root",
        BASE64.encode(root_ksk.dnskey.public_key().public_bytes())
    );
    let anchors = TrustAnchors::parse(&anchor).unwrap();
    let (zone, ds) = anchors.closest(&n("www.example.")).unwrap();
    assert!(zone.is_root());
    let root = validate_dnskeys(zone, &root_keys, &root_keys, ds, NOW).unwrap();

    let (ksk, zsk, example_keys) = signed_zone("example.");
    let ds_rrset = [Record::from_rdata(
        n("example."),
        86_400,
        RData::DNSSEC(DNSSECRData::DS(ksk.ds(DigestType::SHA256))),
    )];
    let ds_sig = root_zsk.sign(&ds_rrset);
    let v = verify_rrset(
        &n("example."),
        RecordType::DS,
        &ds_rrset,
        &[ds_sig],
        &root.keys,
        &Name::root(),
        NOW,
    )
    .unwrap();
    assert_eq!(v.ttl, 86_400);
    let ds: Vec<DS> = ds_rrset
        .iter()
        .filter_map(|r| super::ds(r).cloned())
        .collect();
    let example = validate_dnskeys(&n("example."), &example_keys, &example_keys, &ds, NOW).unwrap();
    let answer = [a("www.example.", 1)];
    let sig = zsk.sign(&answer);
    assert!(
        verify(
            &answer,
            std::slice::from_ref(&sig),
            &example.keys,
            "example."
        )
        .is_ok()
    );
    // The root's keys cannot sign example.'s data.
    assert!(verify(&answer, &[sig], &root.keys, ".").is_err());
}

// ---- trust anchors ----

const ROOT_KEY: &str = "\
. IN DNSKEY 257 3 8 AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3+/4RgWOq7HrxRixHlFlExOLAJr5emLvN7SWXgnLh4+B5xQlNVz8Og8kvArMtNROxVQuCaSnIDdD5LKyWbRd2n9WGe2R8PzgCmr3EgVLrjyBxWezF0jLHwVN8efS3rCj/EWgvIWgb9tarpVUDK/b58Da+sqqls3eNbuv7pr+eoZG+SrDK6nWeL3c6H5Apxz7LjVc1uTIdsIXxuOLYA4/ilBmSVIzuDWfdRUfhHdY6+cn8HFRm+2hM8AnXGXws9555KrUB5qihylGa8subX2Nn6UwNR1AkUTV74bU= ; keytag 20326
. IN DNSKEY 257 3 8 ( AwEAAa96jeuknZlaeSrvyAJj6ZHv28hhOKkx3rLGXVaC6rXTsDc449/cidltpkyGwCJNnOAlFNKF2jBosZBU5eeHspaQWOmOElZsjICMQMC3aeHbGiShvZsx4wMYSjH8e7Vrhbu6irwCzVBApESjbUdpWWmEnhathWu1jo+siFUiRAAxm9qyJNg/wOZqqzL/dL/q8PkcRU5oUKEpUge71M3ej2/7
    CPqpdVwuMoTvoB+ZOT4YeGyxMvHmbrxlFzGOHOijtzN+u1TQNatX2XBuzZNQ1K+s2CXkPIZo7s6JgZyvaBevYtxPvYLw4z9mR7K2vaF18UYH9Z9GNUUeayffKC73PYc= ) ; keytag 38696
";

const ROOT_DS: &str = "\
; the root anchors, from /usr/share/dns/root.ds
. IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D

.\t172800\tIN\tDS\t38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16
";

#[test]
fn the_built_in_root_anchors_are_the_iana_ksks() {
    let root = TrustAnchors::default();
    let ds = root.ds(&Name::root()).unwrap();
    let tags: Vec<u16> = ds.iter().map(DS::key_tag).collect();
    assert_eq!(tags, [20326, 38696]);
    assert!(ds.iter().all(|d| d.algorithm() == Algorithm::RSASHA256 && d.digest_type() == DigestType::SHA256));
    // The same as IANA's DS file, and as the DS of the root's DNSKEYs (root.key).
    assert_eq!(TrustAnchors::parse(ROOT_DS).unwrap(), root);
    assert_eq!(TrustAnchors::parse(ROOT_KEY).unwrap(), root);
    assert_eq!(
        root.closest(&n("www.example.com.")).unwrap().0,
        &Name::root()
    );
}

#[test]
fn trust_anchor_files_name_their_zones_and_their_errors() {
    let key = Key::p256("example.com.", 257);
    let text = format!(
        "{}\nexample.COM. IN DNSKEY 257 3 13 {}\n",
        ROOT_DS,
        BASE64.encode(key.dnskey.public_key().public_bytes())
    );
    let anchors = TrustAnchors::parse(&text).unwrap();
    assert_eq!(anchors.zones().count(), 2);
    let (zone, ds) = anchors.closest(&n("www.example.com.")).unwrap();
    assert_eq!(zone, &n("example.com."));
    assert_eq!(ds, [key.ds(DigestType::SHA256)]);
    assert_eq!(
        anchors.closest(&n("example.org.")).unwrap().0,
        &Name::root()
    );

    let only_com = TrustAnchors::parse(&text[ROOT_DS.len()..]).unwrap();
    assert!(only_com.closest(&n("example.org.")).is_none());

    let err = |t: &str| TrustAnchors::parse(t).unwrap_err();
    assert_eq!(err("").line, 0);
    assert_eq!(err("; nothing\n\n").line, 2);
    let e = err("\n. IN A 192.0.2.1\n");
    assert_eq!(e.line, 2);
    assert!(e.to_string().starts_with("line 2: "), "{e}");
    assert_eq!(err("example IN DS 1 8 2 00").line, 1, "relative owner");
    assert!(err(". IN DS 1 8 2 XYZ").message.contains("hex"));
    assert!(err(". IN DS 1 8 2 0011").message.contains("octets"));
    assert!(err(". IN DS 70000 8 2 00").message.contains("key tag"));
    assert!(
        err(". IN DNSKEY 257 2 8 AwEAAQ==")
            .message
            .contains("protocol")
    );
    assert!(
        err(". IN DNSKEY 1 3 8 AwEAAQ==")
            .message
            .contains("zone-key")
    );
    assert!(
        err(". IN DNSKEY 385 3 8 AwEAAQ==")
            .message
            .contains("revoked")
    );
    assert!(err(". IN DNSKEY 257 3 8 !!!").message.contains("base64"));
    assert_eq!(err(". IN DNSKEY 257 3 8 (\nAwEAAQ==\n").line, 1, "unclosed");
    assert_eq!(err("\n\n) . IN DS").line, 3);
    assert!(err("$ORIGIN example.").message.contains("directive"));
}

// ---- denial of existence ----

/// The test zone: example. with an empty non-terminal (c), a signed (sec) and an unsigned
/// (sub) delegation, and a wildcard under an empty non-terminal (w).
fn zone_names(with_ents: bool) -> Vec<(Name, Vec<RecordType>)> {
    use RecordType::*;
    let mut v = vec![
        (n("example."), vec![SOA, NS, DNSKEY]),
        (n("a.example."), vec![A]),
        (n("b.c.example."), vec![A]),
        (n("sec.example."), vec![NS, DS]),
        (n("sub.example."), vec![NS]),
        (n("*.w.example."), vec![A, TXT]),
        (n("z.example."), vec![A]),
    ];
    if with_ents {
        v.push((n("c.example."), vec![]));
        v.push((n("w.example."), vec![]));
    }
    v
}

fn nsec_chain() -> Vec<Record> {
    let mut names = zone_names(false);
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let order: Vec<String> = names.iter().map(|(o, _)| o.to_string()).collect();
    assert_eq!(
        order,
        [
            "example.",
            "a.example.",
            "b.c.example.",
            "sec.example.",
            "sub.example.",
            "*.w.example.",
            "z.example."
        ]
    );
    (0..names.len())
        .map(|i| {
            let (owner, types) = &names[i];
            let next = names[(i + 1) % names.len()].0.clone();
            let nsec = NSEC::new_cover_self(next, types.iter().copied());
            Record::from_rdata(owner.clone(), 300, RData::DNSSEC(DNSSECRData::NSEC(nsec)))
        })
        .collect()
}

fn without_owner(chain: &[Record], owner: &str) -> Vec<Record> {
    let before = chain.len();
    let v: Vec<Record> = chain
        .iter()
        .filter(|r| r.name != n(owner))
        .cloned()
        .collect();
    assert_eq!(v.len(), before - 1, "{owner}");
    v
}

#[test]
fn nsec_nxdomain() {
    let zone = n("example.");
    let chain = nsec_chain();
    let d = Denial::new(&zone, &chain);
    assert_eq!(d.nxdomain(&n("nx.example.")), Security::Secure);
    assert_eq!(
        d.nxdomain(&n("x.c.example.")),
        Security::Secure,
        "below an empty non-terminal"
    );
    assert_eq!(
        d.nxdomain(&n("0.example.")),
        Security::Secure,
        "before the first name"
    );
    assert_eq!(
        d.nxdomain(&n("zz.example.")),
        Security::Secure,
        "after the last name"
    );
    // Names that exist.
    assert_eq!(
        bogus_ede(&d.nxdomain(&n("a.example."))),
        Some(ede::DNSSEC_BOGUS)
    );
    assert_eq!(
        bogus_ede(&d.nxdomain(&n("c.example."))),
        Some(ede::DNSSEC_BOGUS),
        "an ENT"
    );
    // A wildcard would have answered.
    assert_eq!(
        bogus_ede(&d.nxdomain(&n("x.w.example."))),
        Some(ede::DNSSEC_BOGUS)
    );
    // Below a delegation the parent's NSEC proves nothing.
    assert_eq!(
        bogus_ede(&d.nxdomain(&n("a.sub.example."))),
        Some(ede::NSEC_MISSING)
    );
    // Outside the zone.
    assert_eq!(
        bogus_ede(&d.nxdomain(&n("nx.other."))),
        Some(ede::NSEC_MISSING)
    );

    // nx.example. is covered by b.c.example. -> sec.example., *.example. by the apex NSEC.
    let no_cover = without_owner(&chain, "b.c.example.");
    let d = Denial::new(&zone, &no_cover);
    assert_eq!(
        bogus_ede(&d.nxdomain(&n("nx.example."))),
        Some(ede::NSEC_MISSING)
    );
    let no_wildcard = without_owner(&chain, "example.");
    let d = Denial::new(&zone, &no_wildcard);
    let s = d.nxdomain(&n("nx.example."));
    assert_eq!(bogus_ede(&s), Some(ede::NSEC_MISSING));
    let Security::Bogus(f) = s else {
        unreachable!()
    };
    assert!(f.reason.contains("*.example."), "{}", f.reason);
    assert_eq!(
        bogus_ede(&Denial::new(&zone, &[]).nxdomain(&n("nx.example."))),
        Some(ede::NSEC_MISSING)
    );
}

#[test]
fn nsec_nodata() {
    use RecordType::*;
    let zone = n("example.");
    let chain = nsec_chain();
    let d = Denial::new(&zone, &chain);
    assert_eq!(d.nodata(&n("a.example."), TXT), Security::Secure);
    assert_eq!(d.nodata(&n("A.EXAMPLE."), AAAA), Security::Secure);
    assert_eq!(
        bogus_ede(&d.nodata(&n("a.example."), A)),
        Some(ede::DNSSEC_BOGUS)
    );
    // Empty non-terminal.
    assert_eq!(d.nodata(&n("c.example."), A), Security::Secure);
    // Through the wildcard *.w.example. (which has A and TXT).
    assert_eq!(d.nodata(&n("x.w.example."), MX), Security::Secure);
    assert_eq!(d.nodata(&n("x.y.w.example."), MX), Security::Secure);
    assert_eq!(
        bogus_ede(&d.nodata(&n("x.w.example."), A)),
        Some(ede::DNSSEC_BOGUS)
    );
    // No wildcard where the name would be: that is NXDOMAIN, not NODATA.
    assert_eq!(
        bogus_ede(&d.nodata(&n("nx.example."), A)),
        Some(ede::NSEC_MISSING)
    );
    // DS at the unsigned delegation, not other types there (the child has them).
    assert_eq!(d.nodata(&n("sub.example."), DS), Security::Secure);
    assert_eq!(
        bogus_ede(&d.nodata(&n("sub.example."), A)),
        Some(ede::DNSSEC_BOGUS)
    );
    assert_eq!(
        bogus_ede(&d.nodata(&n("sec.example."), DS)),
        Some(ede::DNSSEC_BOGUS)
    );
    // The apex cannot deny its own DS.
    assert!(bogus_ede(&d.nodata(&n("example."), DS)).is_some());
    // The matching NSEC gone.
    let d = Denial::new(&zone, &[]);
    assert_eq!(
        bogus_ede(&d.nodata(&n("a.example."), TXT)),
        Some(ede::NSEC_MISSING)
    );
    let missing = without_owner(&chain, "*.w.example.");
    let d = Denial::new(&zone, &missing);
    assert_eq!(
        bogus_ede(&d.nodata(&n("x.w.example."), MX)),
        Some(ede::NSEC_MISSING)
    );
}

#[test]
fn nsec_wildcard_answers_and_insecure_delegations() {
    let zone = n("example.");
    let chain = nsec_chain();
    let d = Denial::new(&zone, &chain);
    assert_eq!(
        d.wildcard(&n("x.w.example."), &n("w.example.")),
        Security::Secure
    );
    assert_eq!(
        d.wildcard(&n("a.b.w.example."), &n("w.example.")),
        Security::Secure
    );
    // A wrong closest encloser (the expansion claims *.example. answered below c.example.,
    // which exists as an empty non-terminal).
    assert_eq!(
        bogus_ede(&d.wildcard(&n("x.c.example."), &n("example."))),
        Some(ede::DNSSEC_BOGUS)
    );
    // A name that exists cannot be a wildcard expansion.
    assert!(bogus_ede(&d.wildcard(&n("z.example."), &n("example."))).is_some());
    let broken = without_owner(&chain, "*.w.example.");
    let d = Denial::new(&zone, &broken);
    assert_eq!(
        bogus_ede(&d.wildcard(&n("x.w.example."), &n("w.example."))),
        Some(ede::NSEC_MISSING)
    );

    let d = Denial::new(&zone, &chain);
    assert_eq!(d.no_ds(&n("sub.example.")), Security::Secure);
    assert_eq!(
        bogus_ede(&d.no_ds(&n("sec.example."))),
        Some(ede::DNSSEC_BOGUS),
        "has a DS"
    );
    assert_eq!(
        bogus_ede(&d.no_ds(&n("a.example."))),
        Some(ede::DNSSEC_BOGUS),
        "no delegation"
    );
    assert_eq!(
        bogus_ede(&d.no_ds(&n("example."))),
        Some(ede::DNSSEC_BOGUS),
        "the apex"
    );
    assert_eq!(
        bogus_ede(&d.no_ds(&n("nx.example."))),
        Some(ede::NSEC_MISSING)
    );
}

#[test]
fn denial_verified_uses_only_records_that_verify_and_says_why_one_did_not() {
    let zone = n("example.");
    let key = Key::p256("example.", 257);
    let chain = nsec_chain();
    let mut signed = Vec::new();
    for r in &chain {
        signed.push(r.clone());
        // The NSEC covering nx.example. (b.c.example. -> sec.example.) has expired.
        if r.name == n("b.c.example.") {
            signed.push(key.sign_at(std::slice::from_ref(r), NOW - 20 * DAY, NOW - DAY));
        } else {
            signed.push(key.sign(std::slice::from_ref(r)));
        }
    }
    let d = Denial::verified(&zone, &signed, &key.keys(), NOW);
    assert_eq!(
        d.nodata(&n("a.example."), RecordType::TXT),
        Security::Secure
    );
    let s = d.nxdomain(&n("nx.example."));
    assert_eq!(bogus_ede(&s), Some(ede::SIGNATURE_EXPIRED), "{s:?}");
    // With another zone's key nothing verifies.
    let other = Key::p256("example.", 257);
    let d = Denial::verified(&zone, &signed, &other.keys(), NOW);
    assert_eq!(
        bogus_ede(&d.nodata(&n("a.example."), RecordType::TXT)),
        Some(ede::DNSKEY_MISSING)
    );
    // Unsigned NSEC records prove nothing.
    let d = Denial::verified(&zone, &chain, &key.keys(), NOW);
    assert_eq!(
        bogus_ede(&d.nodata(&n("a.example."), RecordType::TXT)),
        Some(ede::RRSIGS_MISSING)
    );
    // Records already verified.
    assert_eq!(
        Denial::new(&zone, &chain).nodata(&n("a.example."), RecordType::TXT),
        Security::Secure
    );
}

const SALT: [u8; 2] = [0xaa, 0xbb];

fn hash(name: &Name, iterations: u16) -> Vec<u8> {
    Nsec3HashAlgorithm::SHA1
        .hash(&SALT, name, iterations)
        .unwrap()
        .as_ref()
        .to_vec()
}

/// The NSEC3 chain of the test zone; with opt-out, the unsigned delegation sub.example.
/// has no NSEC3 of its own.
fn nsec3_chain(iterations: u16, opt_out: bool) -> Vec<Record> {
    let mut hashed: Vec<(Vec<u8>, Vec<RecordType>)> = zone_names(true)
        .into_iter()
        .filter(|(o, _)| !(opt_out && *o == n("sub.example.")))
        .map(|(o, mut t)| {
            if !t.is_empty() {
                t.push(RecordType::RRSIG);
            }
            (hash(&o, iterations), t)
        })
        .collect();
    hashed.sort();
    (0..hashed.len())
        .map(|i| {
            let (h, types) = &hashed[i];
            let next = hashed[(i + 1) % hashed.len()].0.clone();
            let rr = NSEC3::new(
                Nsec3HashAlgorithm::SHA1,
                opt_out,
                iterations,
                SALT.to_vec(),
                next,
                types.iter().copied(),
            );
            let owner = n(&format!(
                "{}.example.",
                BASE32_DNSSEC.encode(h).to_uppercase()
            ));
            Record::from_rdata(owner, 300, RData::DNSSEC(DNSSECRData::NSEC3(rr)))
        })
        .collect()
}

/// The chain without the NSEC3 matching `name`.
fn without_match(chain: &[Record], name: &str) -> Vec<Record> {
    let label = BASE32_DNSSEC.encode(&hash(&n(name), 1));
    let owner = format!("{label}.example.");
    without_owner(chain, &owner)
}

/// The chain without the NSEC3 covering `name` (hashes compared independently here).
fn without_cover(chain: &[Record], name: &str) -> Vec<Record> {
    let h = hash(&n(name), 1);
    let before = chain.len();
    let v: Vec<Record> = chain
        .iter()
        .filter(|r| {
            let owner = BASE32_DNSSEC.decode(r.name.iter().next().unwrap()).unwrap();
            let RData::DNSSEC(DNSSECRData::NSEC3(x)) = &r.data else {
                unreachable!()
            };
            let next = x.next_hashed_owner_name().to_vec();
            let covers = if owner < next {
                owner < h && h < next
            } else {
                h > owner || h < next
            };
            !covers
        })
        .cloned()
        .collect();
    assert_eq!(v.len(), before - 1, "{name}");
    v
}

#[test]
fn rfc5155_appendix_a_hashes() {
    let salt = HEXLOWER.decode(b"aabbccdd").unwrap();
    for (name, want) in [
        ("example.", "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom"),
        ("a.example.", "35mthgpgcu1qg68fab165klnsnk3dpvl"),
        ("ai.example.", "gjeqe526plbf1g8mklp59enfd789njgi"),
        ("ns1.example.", "2t7b4g4vsa5smi47k61mv5bv1a22bojr"),
        ("*.w.example.", "r53bq7cc2uvmubfu5ocmm6pers9tk9en"),
        ("x.w.example.", "b4um86eghhds6nea196smvmlo4ors995"),
    ] {
        let h = Nsec3HashAlgorithm::SHA1.hash(&salt, &n(name), 12).unwrap();
        assert_eq!(BASE32_DNSSEC.encode(h.as_ref()), want, "{name}");
    }
}

#[test]
fn nsec3_nxdomain() {
    let zone = n("example.");
    let chain = nsec3_chain(1, false);
    let d = Denial::new(&zone, &chain);
    for name in [
        "nx.example.",
        "x.c.example.",
        "a.b.nx.example.",
        "NX.Example.",
    ] {
        assert_eq!(d.nxdomain(&n(name)), Security::Secure, "{name}");
    }
    assert_eq!(
        bogus_ede(&d.nxdomain(&n("a.example."))),
        Some(ede::DNSSEC_BOGUS)
    );
    assert_eq!(
        bogus_ede(&d.nxdomain(&n("c.example."))),
        Some(ede::DNSSEC_BOGUS),
        "ENT"
    );
    assert_eq!(
        bogus_ede(&d.nxdomain(&n("x.w.example."))),
        Some(ede::DNSSEC_BOGUS),
        "wildcard"
    );
    assert_eq!(
        bogus_ede(&d.nxdomain(&n("a.sub.example."))),
        Some(ede::DNSSEC_BOGUS),
        "delegation"
    );
    // Each of the three proofs missing: closest encloser, next closer, wildcard.
    for broken in [
        without_match(&chain, "example."),
        without_cover(&chain, "nx.example."),
        without_cover(&chain, "*.example."),
    ] {
        let d = Denial::new(&zone, &broken);
        assert_eq!(
            bogus_ede(&d.nxdomain(&n("nx.example."))),
            Some(ede::NSEC_MISSING)
        );
    }
    // Records of another zone do not count.
    let root = Name::root();
    let d = Denial::new(&root, &chain);
    assert_eq!(
        bogus_ede(&d.nxdomain(&n("nx.example."))),
        Some(ede::NSEC_MISSING)
    );
}

#[test]
fn nsec3_nodata_and_wildcards() {
    use RecordType::*;
    let zone = n("example.");
    let chain = nsec3_chain(1, false);
    let d = Denial::new(&zone, &chain);
    assert_eq!(d.nodata(&n("a.example."), TXT), Security::Secure);
    assert_eq!(
        bogus_ede(&d.nodata(&n("a.example."), A)),
        Some(ede::DNSSEC_BOGUS)
    );
    assert_eq!(d.nodata(&n("c.example."), A), Security::Secure, "ENT");
    assert_eq!(
        d.nodata(&n("x.w.example."), MX),
        Security::Secure,
        "wildcard NODATA"
    );
    assert_eq!(
        bogus_ede(&d.nodata(&n("x.w.example."), TXT)),
        Some(ede::DNSSEC_BOGUS)
    );
    assert_eq!(
        bogus_ede(&d.nodata(&n("nx.example."), A)),
        Some(ede::NSEC_MISSING)
    );
    assert_eq!(d.nodata(&n("sub.example."), DS), Security::Secure);
    assert_eq!(
        bogus_ede(&d.nodata(&n("sub.example."), A)),
        Some(ede::DNSSEC_BOGUS)
    );
    let broken = without_match(&chain, "*.w.example.");
    let d = Denial::new(&zone, &broken);
    assert_eq!(
        bogus_ede(&d.nodata(&n("x.w.example."), MX)),
        Some(ede::NSEC_MISSING)
    );

    let d = Denial::new(&zone, &chain);
    assert_eq!(
        d.wildcard(&n("x.w.example."), &n("w.example.")),
        Security::Secure
    );
    assert_eq!(
        d.wildcard(&n("q.y.w.example."), &n("w.example.")),
        Security::Secure
    );
    let broken = without_cover(&chain, "x.w.example.");
    let d = Denial::new(&zone, &broken);
    assert_eq!(
        bogus_ede(&d.wildcard(&n("x.w.example."), &n("w.example."))),
        Some(ede::NSEC_MISSING)
    );
}

#[test]
fn nsec3_delegations_and_opt_out() {
    use RecordType::*;
    let zone = n("example.");
    let chain = nsec3_chain(1, false);
    let d = Denial::new(&zone, &chain);
    assert_eq!(d.no_ds(&n("sub.example.")), Security::Secure);
    assert_eq!(
        bogus_ede(&d.no_ds(&n("sec.example."))),
        Some(ede::DNSSEC_BOGUS)
    );
    assert_eq!(
        bogus_ede(&d.no_ds(&n("new.example."))),
        Some(ede::NSEC_MISSING),
        "no opt-out"
    );

    // Opt-out: sub.example. has no NSEC3; the span covering it makes it insecure.
    let chain = nsec3_chain(1, true);
    let d = Denial::new(&zone, &chain);
    let insecure = |s: Security| matches!(s, Security::Insecure { ede: None, .. });
    assert!(insecure(d.no_ds(&n("sub.example."))));
    assert!(insecure(d.nodata(&n("sub.example."), DS)));
    assert!(
        insecure(d.nxdomain(&n("nx.example."))),
        "an unsigned delegation may be there"
    );
    assert_eq!(d.nodata(&n("a.example."), TXT), Security::Secure);
    // The signed delegation still has its NSEC3, with DS.
    assert!(bogus_ede(&d.no_ds(&n("sec.example."))).is_some());
}

#[test]
fn nsec3_iterations_beyond_the_limit_are_insecure_before_hashing() {
    let zone = n("example.");
    let chain = nsec3_chain(MAX_NSEC3_ITERATIONS, false);
    assert_eq!(
        Denial::new(&zone, &chain).nxdomain(&n("nx.example.")),
        Security::Secure
    );
    // Not even hashed: a chain with wrong hashes gives the same verdict.
    let over = nsec3_chain(MAX_NSEC3_ITERATIONS + 1, false);
    let d = Denial::new(&zone, &over);
    for s in [
        d.nxdomain(&n("nx.example.")),
        d.nodata(&n("a.example."), RecordType::TXT),
        d.wildcard(&n("x.w.example."), &n("w.example.")),
        d.no_ds(&n("sub.example.")),
    ] {
        assert_eq!(s.ede(), Some(ede::UNSUPPORTED_NSEC3_ITERATIONS));
        assert!(matches!(s, Security::Insecure { .. }));
    }
    assert_eq!(d.hashes_computed(), 0);
}

#[test]
fn nsec3_hashing_is_bounded() {
    let zone = n("example.");
    let chain = nsec3_chain(1, false);
    let deep = "x.".repeat(MAX_NSEC3_HASHES + 5);
    let s = Denial::new(&zone, &chain).nxdomain(&n(&format!("{deep}example.")));
    assert_eq!(s.ede(), Some(ede::DNSSEC_INDETERMINATE));
}

// ---- zones signed by other implementations ----

/// Reads `ldns-read-zone -u TYPE...` output: records in the RFC 3597 generic form
/// (`owner ttl IN TYPEn \# len hex`), which needs no parser for DNSSEC types.
fn load_generic(text: &str) -> Vec<Record> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f[4], "\\#", "{l}");
            let rtype: u16 = f[3].trim_start_matches("TYPE").parse().unwrap();
            let rdata = HEXLOWER_PERMISSIVE
                .decode(f[6..].concat().as_bytes())
                .unwrap();
            let mut wire = n(f[0]).to_bytes().unwrap();
            wire.extend(rtype.to_be_bytes());
            wire.extend(1u16.to_be_bytes());
            wire.extend(f[1].parse::<u32>().unwrap().to_be_bytes());
            wire.extend(u16::try_from(rdata.len()).unwrap().to_be_bytes());
            wire.extend(rdata);
            Record::read(&mut BinDecoder::new(&wire)).unwrap()
        })
        .collect()
}

#[test]
fn zones_signed_by_ldns_and_bind_validate() {
    use RecordType::*;
    let zone = n("example.test.");
    for (signer, text, ds, opt_out) in [
        (
            "ldns NSEC Ed25519",
            include_str!("testdata/ldns-nsec-15.zone"),
            include_str!("testdata/ldns-nsec-15.ds"),
            false,
        ),
        (
            "ldns NSEC3 opt-out P-256",
            include_str!("testdata/ldns-nsec3-optout-13.zone"),
            include_str!("testdata/ldns-nsec3-optout-13.ds"),
            true,
        ),
        (
            "BIND NSEC3 P-256",
            include_str!("testdata/bind-nsec3-13.zone"),
            include_str!("testdata/bind-nsec3-13.ds"),
            false,
        ),
    ] {
        let recs = load_generic(text);
        let anchors = TrustAnchors::parse(ds).unwrap();
        let keys = validate_dnskeys(&zone, &recs, &recs, anchors.ds(&zone).unwrap(), NOW)
            .unwrap_or_else(|e| panic!("{signer}: {e:?}"));

        // Every signature of the zone, mixed-case NS and MX targets included.
        let mut checked = 0;
        for r in &recs {
            let Some(sig) = rrsig(r) else { continue };
            let covered = sig.input().type_covered;
            let v = verify_rrset(&r.name, covered, &recs, &recs, &keys.keys, &zone, NOW);
            assert!(v.is_ok(), "{signer}: {} {covered}: {v:?}", r.name);
            checked += 1;
        }
        assert!(checked >= 20, "{signer}: {checked}");

        // A wildcard answer, as a server expands it.
        let wc = n("*.wild.example.test.");
        let source: Vec<Record> = recs
            .iter()
            .filter(|r| r.name == wc)
            .filter(|r| {
                r.record_type() == A || rrsig(r).is_some_and(|s| s.input().type_covered == A)
            })
            .cloned()
            .collect();
        let qname = n("x.y.wild.example.test.");
        let answer = renamed(&source, &qname);
        let v = verify_rrset(&qname, A, &answer, &answer, &keys.keys, &zone, NOW).unwrap();
        assert_eq!(v.wildcard, Some(n("wild.example.test.")), "{signer}");

        // The zone's chain proves what it should, and not what it should not.
        let d = Denial::verified(&zone, &recs, &keys.keys, NOW);
        let ok = |s: Security| {
            s == Security::Secure || (opt_out && matches!(s, Security::Insecure { ede: None, .. }))
        };
        assert!(ok(d.nxdomain(&n("nx.example.test."))), "{signer}");
        assert!(ok(d.nxdomain(&n("a.b.c.example.test."))), "{signer}");
        assert_eq!(
            d.nodata(&n("www.example.test."), MX),
            Security::Secure,
            "{signer}"
        );
        assert_eq!(
            d.nodata(&n("c.example.test."), A),
            Security::Secure,
            "{signer} ENT"
        );
        assert!(ok(d.nodata(&n("x.wild.example.test."), MX)), "{signer}");
        assert!(ok(d.wildcard(&qname, &n("wild.example.test."))), "{signer}");
        assert!(ok(d.no_ds(&n("sub.example.test."))), "{signer}");
        assert!(
            bogus_ede(&d.nxdomain(&n("www.example.test."))).is_some(),
            "{signer}"
        );
        assert!(
            bogus_ede(&d.nxdomain(&n("x.wild.example.test."))).is_some(),
            "{signer}"
        );
        assert!(
            bogus_ede(&d.nodata(&n("www.example.test."), TXT)).is_some(),
            "{signer}"
        );
        assert!(
            bogus_ede(&d.no_ds(&n("sec.example.test."))).is_some(),
            "{signer}"
        );
        assert!(
            bogus_ede(&d.nodata(&n("alias.example.test."), A)).is_some(),
            "{signer} CNAME"
        );
    }
}
