//! Signatures: one RRset against a zone's keys (RFC 4035 §5.3), and a zone's DNSKEY RRset
//! against its DS records (RFC 4035 §5.2).

use std::cmp::Reverse;

use hickory_proto::dnssec::rdata::{DNSKEY, DS, RRSIG, SigInput};
use hickory_proto::dnssec::{DigestType, Verifier};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType, SerialNumber};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use super::{Failure, MAX_SIGNATURE_CHECKS, Security, dnskey, rrsig};
use crate::label::ede;

/// A verified RRset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// How long it may be kept (RFC 4035 §5.3.3): the least of the records' TTLs, the
    /// RRSIG's original TTL and the time left until the signature expires.
    pub ttl: u32,
    /// For an answer synthesised from a wildcard (the RRSIG's label count is below the
    /// owner's): the closest encloser, whose `*` child was expanded. The caller must then
    /// prove with [`super::Denial::wildcard`] that the owner itself does not exist.
    pub wildcard: Option<Name>,
}

/// A zone's trusted DNSKEYs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKeys {
    /// The zone keys of the validated DNSKEY RRset (not revoked).
    pub keys: Vec<DNSKEY>,
    /// How long the RRset may be trusted ([`Verified::ttl`]).
    pub ttl: u32,
}

/// How far one RRSIG got before it failed: the failure of the RRSIG that got furthest is
/// reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// Not usable at all (another signer, an unsupported algorithm, a bad label count).
    Unusable,
    /// No trusted key with its tag and algorithm.
    NoKey,
    /// Outside its validity window.
    Window,
    /// The signature did not verify.
    Crypto,
}

/// Verifies the RRset `owner`/`rtype` (class IN) with the trusted `keys` of `zone`.
///
/// `records` and `rrsigs` are filtered by owner (case-insensitively), type and class, so a
/// whole message section may be passed as either. Records may come in any order, with
/// decremented TTLs and with names in any case: the canonical form is built here. `now` is
/// the time in unix seconds.
///
/// Errors: no records or an owner outside `zone`: EDE 6; no RRSIG for the RRset: 10; no
/// trusted key for any RRSIG: 9; outside the validity window: 7 or 8; a signature that does
/// not verify, another signer or a label count above the owner's: 6. With several RRSIGs,
/// one valid signature suffices, and the failure of the one that got furthest is reported.
pub fn verify_rrset(
    owner: &Name,
    rtype: RecordType,
    records: &[Record],
    rrsigs: &[Record],
    keys: &[DNSKEY],
    zone: &Name,
    now: u32,
) -> Result<Verified, Failure> {
    let rrset: Vec<&Record> = records
        .iter()
        .filter(|r| r.record_type() == rtype && r.dns_class == DNSClass::IN && r.name == *owner)
        .collect();
    if rrset.is_empty() {
        return Err(Failure::new(
            ede::DNSSEC_BOGUS,
            format!("no {rtype} records at {owner} to verify (zone {zone})"),
        ));
    }
    if !zone.zone_of(owner) {
        return Err(Failure::new(
            ede::DNSSEC_BOGUS,
            format!("{owner} {rtype} is outside zone {zone}, which cannot sign it"),
        ));
    }
    let mut sigs: Vec<&RRSIG> = rrsigs
        .iter()
        .filter(|r| r.dns_class == DNSClass::IN && r.name == *owner)
        .filter_map(rrsig)
        .filter(|s| s.input().type_covered == rtype)
        .collect();
    if sigs.is_empty() {
        return Err(Failure::new(
            ede::RRSIGS_MISSING,
            format!("no RRSIG for {owner} {rtype} in signed zone {zone}"),
        ));
    }
    // Signatures over the name itself before wildcard ones.
    sigs.sort_by_key(|s| Reverse(s.input().num_labels));
    let keys: Vec<(u16, &DNSKEY)> = keys
        .iter()
        .filter(|k| k.zone_key() && !k.revoke())
        .filter_map(|k| Some((k.calculate_key_tag().ok()?, k)))
        .collect();
    let min_ttl = rrset.iter().map(|r| r.ttl).min().unwrap_or(0);

    let mut checks = 0;
    let mut worst: Option<(Stage, Failure)> = None;
    for sig in sigs {
        match check(owner, rtype, &rrset, sig, &keys, zone, now, &mut checks) {
            Ok(()) => {
                let input = sig.input();
                let left = input.sig_expiration.get().wrapping_sub(now);
                let wildcard = (input.num_labels < owner.num_labels())
                    .then(|| owner.trim_to(usize::from(input.num_labels)));
                return Ok(Verified {
                    ttl: min_ttl.min(input.original_ttl).min(left),
                    wildcard,
                });
            }
            Err((stage, f)) => {
                if worst.as_ref().is_none_or(|(s, _)| stage > *s) {
                    worst = Some((stage, f));
                }
            }
        }
        if checks >= MAX_SIGNATURE_CHECKS {
            break;
        }
    }
    Err(worst.map(|(_, f)| f).unwrap_or_else(|| {
        Failure::new(
            ede::DNSSEC_BOGUS,
            format!("no RRSIG for {owner} {rtype} could be checked (zone {zone})"),
        )
    }))
}

/// One RRSIG over an RRset.
#[allow(clippy::too_many_arguments)]
fn check(
    owner: &Name,
    rtype: RecordType,
    rrset: &[&Record],
    sig: &RRSIG,
    keys: &[(u16, &DNSKEY)],
    zone: &Name,
    now: u32,
    checks: &mut usize,
) -> Result<(), (Stage, Failure)> {
    let input = sig.input();
    let what = format!(
        "RRSIG for {owner} {rtype} (zone {zone}, key {})",
        input.key_tag
    );
    let fail = |stage, ede, why: String| Err((stage, Failure::new(ede, format!("{what}: {why}"))));
    if input.signer_name != *zone {
        return fail(
            Stage::Unusable,
            ede::DNSSEC_BOGUS,
            format!("signed by {}, not by the zone", input.signer_name),
        );
    }
    // A wildcard expansion goes no higher than `*.zone`.
    if input.num_labels > owner.num_labels() || input.num_labels < zone.num_labels() {
        return fail(
            Stage::Unusable,
            ede::DNSSEC_BOGUS,
            format!(
                "label count {} is not between the zone's and the owner's",
                input.num_labels
            ),
        );
    }
    let alg = input.algorithm;
    if !alg.is_supported() {
        return fail(
            Stage::Unusable,
            ede::RRSIGS_MISSING,
            format!(
                "algorithm {} is not supported, and no RRSIG of a supported one verified",
                u8::from(alg)
            ),
        );
    }
    let candidates: Vec<&DNSKEY> = keys
        .iter()
        .filter(|(tag, k)| *tag == input.key_tag && k.algorithm() == alg)
        .map(|(_, k)| *k)
        .collect();
    if candidates.is_empty() {
        return fail(
            Stage::NoKey,
            ede::DNSKEY_MISSING,
            format!(
                "no trusted DNSKEY with that tag and algorithm {}",
                u8::from(alg)
            ),
        );
    }
    let now_sn = SerialNumber::new(now);
    if !matches!(
        now_sn.partial_cmp(&input.sig_inception),
        Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
    ) {
        return fail(
            Stage::Window,
            ede::SIGNATURE_NOT_YET_VALID,
            format!("not valid before {} (now {now})", input.sig_inception.get()),
        );
    }
    if !matches!(
        now_sn.partial_cmp(&input.sig_expiration),
        Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
    ) {
        return fail(
            Stage::Window,
            ede::SIGNATURE_EXPIRED,
            format!("expired at {} (now {now})", input.sig_expiration.get()),
        );
    }
    let tbs = canonical_tbs(owner, input, rrset).map_err(|e| {
        (
            Stage::Crypto,
            Failure::new(
                ede::DNSSEC_BOGUS,
                format!("{what}: cannot encode the RRset: {e}"),
            ),
        )
    })?;
    for key in candidates {
        if *checks >= MAX_SIGNATURE_CHECKS {
            break;
        }
        *checks += 1;
        if key.verify(&tbs, sig.sig()).is_ok() {
            return Ok(());
        }
    }
    fail(
        Stage::Crypto,
        ede::DNSSEC_BOGUS,
        "the signature does not verify".into(),
    )
}

/// The signed data of an RRSIG over an RRset (RFC 4034 §3.1.8.1, canonical form §6.2,
/// order §6.3, wildcard owner RFC 4035 §5.3.2).
///
/// hickory-proto's `TBS` sorts records by TTL and by RDATA in its original case, so a
/// legitimate signature over mixed-case RDATA or records with different TTLs fails there.
pub(super) fn canonical_tbs(
    owner: &Name,
    input: &SigInput,
    rrset: &[&Record],
) -> Result<Vec<u8>, hickory_proto::ProtoError> {
    let mut buf = Vec::new();
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_canonical_form(true);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    // The RRSIG RDATA without the signature, the signer name lowercased.
    input.emit(&mut enc)?;
    let name = if input.num_labels < owner.num_labels() {
        Name::from_ascii("*")?.append_name(&owner.trim_to(usize::from(input.num_labels)))?
    } else {
        owner.clone()
    };
    let mut rdatas = Vec::with_capacity(rrset.len());
    for r in rrset {
        let mut b = Vec::new();
        let mut e = BinEncoder::new(&mut b);
        // Names in the RDATA of the RFC 4034 §6.2 types lowercased, uncompressed.
        e.set_canonical_form(true);
        e.set_name_encoding(NameEncoding::Uncompressed);
        r.data.emit(&mut e)?;
        rdatas.push(b);
    }
    rdatas.sort();
    rdatas.dedup();
    for rd in rdatas {
        {
            let mut e = enc.with_name_encoding(NameEncoding::UncompressedLowercase);
            name.emit(&mut e)?;
        }
        input.type_covered.emit(&mut enc)?;
        DNSClass::IN.emit(&mut enc)?;
        enc.emit_u32(input.original_ttl)?;
        let len = u16::try_from(rd.len())
            .map_err(|_| hickory_proto::ProtoError::from("RDATA longer than 65535 octets"))?;
        enc.emit_u16(len)?;
        enc.emit_vec(&rd)?;
    }
    Ok(buf)
}

/// Validates the DNSKEY RRset of `zone` against its DS records (from the parent, already
/// verified, or a trust anchor) (RFC 4035 §5.2): a DS whose key tag, algorithm and digest
/// match a zone key of the RRset (not revoked), which signs the RRset. The trusted keys are
/// then every zone key of the RRset.
///
/// `records` and `rrsigs` are filtered as in [`verify_rrset`], so the DNSKEY reply's answer
/// section may be passed as both.
///
/// DS records of unsupported algorithms or digest types are left out; SHA-1 DS records
/// too when SHA-256 or SHA-384 ones are present (RFC 4509 §3). When nothing is left the zone
/// is insecure: EDE 1 when no DS has a supported algorithm, else EDE 2. No DNSKEY matching
/// a DS (or none at all): bogus, EDE 9; the matching key's signature failing: the
/// [`verify_rrset`] failure.
pub fn validate_dnskeys(
    zone: &Name,
    records: &[Record],
    rrsigs: &[Record],
    ds: &[DS],
    now: u32,
) -> Result<TrustedKeys, Security> {
    if ds.is_empty() {
        return Err(Failure::new(
            ede::DNSSEC_BOGUS,
            format!("no DS records to validate the DNSKEYs of {zone} with"),
        )
        .into());
    }
    let supported: Vec<&DS> = ds
        .iter()
        .filter(|d| d.algorithm().is_supported() && d.digest_type().is_supported())
        .collect();
    let strong = supported
        .iter()
        .any(|d| d.digest_type() != DigestType::SHA1);
    let usable: Vec<&DS> = supported
        .into_iter()
        .filter(|d| !strong || d.digest_type() != DigestType::SHA1)
        .collect();
    if usable.is_empty() {
        let list = |f: fn(&DS) -> u8| {
            let mut v: Vec<u8> = ds.iter().map(f).collect();
            v.sort_unstable();
            v.dedup();
            v.iter().map(u8::to_string).collect::<Vec<_>>().join(", ")
        };
        return Err(if ds.iter().any(|d| d.algorithm().is_supported()) {
            Security::insecure(
                Some(ede::UNSUPPORTED_DS_DIGEST),
                format!(
                    "zone {zone}: DS digest types not supported ({})",
                    list(|d| u8::from(d.digest_type()))
                ),
            )
        } else {
            Security::insecure(
                Some(ede::UNSUPPORTED_DNSKEY_ALGORITHM),
                format!(
                    "zone {zone}: DNSKEY algorithms not supported ({})",
                    list(|d| u8::from(d.algorithm()))
                ),
            )
        });
    }

    let keys: Vec<&DNSKEY> = records
        .iter()
        .filter(|r| r.dns_class == DNSClass::IN && r.name == *zone)
        .filter_map(dnskey)
        .collect();
    if keys.is_empty() {
        return Err(Failure::new(
            ede::DNSKEY_MISSING,
            format!("zone {zone} has DS records but no DNSKEY records came"),
        )
        .into());
    }

    // The keys a DS names, each once; one verify_rrset over all of them keeps the number of
    // signature checks bounded however many DS records and key-tag collisions there are.
    let mut secure_entry: Vec<DNSKEY> = Vec::new();
    for key in &keys {
        let named = !key.revoke()
            && usable.iter().any(|d| {
                key.algorithm() == d.algorithm()
                    && key.calculate_key_tag().ok() == Some(d.key_tag())
                    && d.covers(zone, key).unwrap_or(false)
            });
        if named && !secure_entry.contains(key) {
            secure_entry.push((*key).clone());
        }
    }
    let tags = || {
        let mut t: Vec<u16> = usable.iter().map(|d| d.key_tag()).collect();
        t.sort_unstable();
        t.dedup();
        t.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
    };
    if secure_entry.is_empty() {
        return Err(Failure::new(
            ede::DNSKEY_MISSING,
            format!(
                "no DNSKEY of {zone} matches its DS records (key tags {})",
                tags()
            ),
        )
        .into());
    }
    match verify_rrset(
        zone,
        RecordType::DNSKEY,
        records,
        rrsigs,
        &secure_entry,
        zone,
        now,
    ) {
        Ok(v) => Ok(TrustedKeys {
            keys: keys
                .iter()
                .filter(|k| k.zone_key() && !k.revoke())
                .map(|k| (*k).clone())
                .collect(),
            ttl: v.ttl,
        }),
        Err(mut f) => {
            if f.ede == ede::DNSKEY_MISSING {
                f.reason = format!(
                    "the DNSKEY RRset of {zone} is not signed by a key its DS names (key tags {})",
                    tags()
                );
            }
            Err(f.into())
        }
    }
}
