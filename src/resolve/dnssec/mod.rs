//! DNSSEC validation (RFC 4033-4035, NSEC3 RFC 5155, clarifications RFC 6840, NSEC3
//! parameters RFC 9276): a pure library, no network and no clock of its own, that the
//! recursor calls with the records it fetched and the time (`now`, unix seconds).
//!
//! # The pieces
//! - [`TrustAnchors`]: where trust starts. Built in: the root KSKs 20326 and 38696 as DS
//!   records; a trust-anchor file of DS or DNSKEY lines replaces them.
//! - [`validate_dnskeys`]: a zone's DNSKEY RRset, trusted when a DS (from the parent or an
//!   anchor) names a key in it that signs it (RFC 4035 §5.2). The DNSKEY RRset is then
//!   trusted whole: every zone key in it may sign the zone's data.
//! - [`verify_rrset`]: one RRset against the trusted keys of its zone (RFC 4035 §5.3):
//!   the RRSIG names the zone as signer, its key tag and algorithm name a trusted zone key
//!   (several keys may share a tag: each is tried), the time lies in the signature's
//!   inception..expiration window (RFC 1982 serial arithmetic, so the window survives the
//!   2106 wrap), and the signature verifies over the canonical RRset (RFC 4034 §6: lowercase
//!   owner and, for the RFC 4034 §6.2 types as corrected by RFC 6840 §5.1, lowercase names
//!   in RDATA, the RRSIG's original TTL, RDATA sorted and deduplicated). An RRSIG whose
//!   label count is below the owner's proves a wildcard expansion (RFC 4035 §5.3.4): the
//!   result says so, and the caller must then prove that the name itself does not exist.
//! - [`Denial`]: proofs of non-existence from NSEC (RFC 4035 §5.4, RFC 6840 §4) or NSEC3
//!   (RFC 5155 §8) records, each RRset verified with the zone's keys: NXDOMAIN, NODATA
//!   (also at empty non-terminals and through a wildcard), the wildcard-expansion proof,
//!   and "no DS at this delegation" (an insecure delegation; with NSEC3, an opt-out span
//!   may cover it).
//!
//! # Verdicts
//! A [`Failure`] is bogus data: SERVFAIL with its EDE code and a reason naming the zone.
//! A [`Security`] is the verdict on a piece of a response; the caller combines them: the
//! answer is secure (AD) only when every piece is, any bogus piece makes it bogus, and an
//! insecure piece (an unsigned delegation, only unsupported algorithms or digests, an
//! opt-out span, too many NSEC3 iterations) makes it insecure (no AD), with its EDE code
//! when it has one.
//!
//! # Policy choices
//! - Algorithms: those hickory-proto verifies with ring (5, 7, 8, 10, 13, 14, 15). A DS set
//!   naming only others (16 Ed448, private ones) makes the zone insecure, EDE 1 (RFC 4035
//!   §5.2, RFC 6840 §5.2). The support check comes before any crypto call (hickory panics in
//!   debug builds on an unknown algorithm).
//! - DS digests: SHA-256 and SHA-384; SHA-1 only when the DS set has no SHA-256/384 record
//!   (RFC 4509 §3). Only unknown digests: insecure, EDE 2.
//! - NSEC3: more than [`MAX_NSEC3_ITERATIONS`] iterations makes the answer insecure with
//!   EDE 27 (RFC 9276 §3.2), decided before any hashing; at most [`MAX_NSEC3_HASHES`] names
//!   are hashed for one response (more is EDE 5, Indeterminate).
//! - At most [`MAX_SIGNATURE_CHECKS`] signature verifications per RRset, whatever the number
//!   of RRSIGs and colliding key tags (the KeyTrap attack, CVE-2023-50387).
//! - No clock skew allowance: `now` must lie within inception..expiration.
//!
//! # Walking the chain of trust (what the caller does)
//! 1. Take [`TrustAnchors::closest`] of the name: the anchored zone (the root) and its DS
//!    set. No anchor above the name: it is insecure.
//! 2. Ask the zone's servers for its DNSKEY RRset (DO=1, CD=1) and pass the answer to
//!    [`validate_dnskeys`] with that DS set: trusted keys, or bogus, or insecure (stop).
//! 3. At each zone cut on the way down (each referral from parent P to child C), the DS of
//!    C comes from P: the referral's authority section normally carries `C DS` and its
//!    RRSIG (verify with P's keys: [`verify_rrset`]`(C, DS, .., P)`), or NSEC/NSEC3
//!    records proving there is none: [`Denial::verified`]`(P, authority, P's keys)` and
//!    [`Denial::no_ds`]`(C)`. When the referral has neither, ask P's servers `C DS` and
//!    treat the reply the same way (a NODATA reply: [`Denial::nodata`]`(C, DS)`). A proven
//!    absence (any verdict but bogus) makes C and everything below it insecure: stop
//!    validating. A DS set: go to step 2 for C.
//! 4. The final reply, from zone Z (the signer of its RRSIGs): verify every RRset of the
//!    answer (each CNAME/DNAME link may be in another zone, validated by that zone's
//!    chain), and for a wildcard expansion prove it with [`Denial::wildcard`]. Negative
//!    replies: verify the authority's SOA with Z's keys, then
//!    [`Denial::verified`]`(Z, authority, Z's keys)` and [`Denial::nxdomain`] or
//!    [`Denial::nodata`] for the last name of the chain.
//! 5. Keep trusted keys and DS sets for their validated TTL ([`TrustedKeys::ttl`],
//!    [`Verified::ttl`]); names under `insecure_domains` are never validated; a chain that
//!    cannot be fetched (timeouts) is [`Security::Indeterminate`] (EDE 5).

mod anchors;
mod denial;
mod verify;

#[cfg(test)]
mod tests;

pub use anchors::{AnchorError, TrustAnchors};
pub use denial::Denial;
pub use verify::{TrustedKeys, Verified, validate_dnskeys, verify_rrset};

use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS, NSEC, NSEC3, RRSIG};
use hickory_proto::rr::{RData, Record};

use crate::label::ede;

/// NSEC3 iterations beyond which an answer is treated as insecure (RFC 9276 §3.2; BIND,
/// Unbound and Knot use the same figure).
pub const MAX_NSEC3_ITERATIONS: u16 = 150;
/// Distinct NSEC3 hashes computed for one [`Denial`].
pub const MAX_NSEC3_HASHES: usize = 64;
/// Signature verifications tried for one RRset.
pub const MAX_SIGNATURE_CHECKS: usize = 8;

/// The verdict on (a piece of) a response (RFC 4035 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Validated from a trust anchor: AD.
    Secure,
    /// Provably not signed (an unsigned delegation, an opt-out span), or signed only with
    /// what we cannot check: passed on without AD, with an EDE code when there is one (1, 2
    /// or 27).
    Insecure {
        /// The Extended DNS Error code, if any.
        ede: Option<u16>,
        /// Why, naming the zone.
        reason: String,
    },
    /// Should be signed and is not, or wrongly: SERVFAIL.
    Bogus(Failure),
    /// Validation could not be finished (records that could not be fetched, a work limit):
    /// SERVFAIL with EDE 5.
    Indeterminate {
        /// Why.
        reason: String,
    },
}

impl Security {
    /// Whether the data is validated secure.
    pub fn is_secure(&self) -> bool {
        matches!(self, Self::Secure)
    }

    /// The Extended DNS Error code to send with it, if any.
    pub fn ede(&self) -> Option<u16> {
        match self {
            Self::Secure => None,
            Self::Insecure { ede, .. } => *ede,
            Self::Bogus(f) => Some(f.ede),
            Self::Indeterminate { .. } => Some(ede::DNSSEC_INDETERMINATE),
        }
    }

    pub(crate) fn insecure(ede: Option<u16>, reason: String) -> Self {
        Self::Insecure { ede, reason }
    }
}

impl From<Failure> for Security {
    fn from(f: Failure) -> Self {
        Self::Bogus(f)
    }
}

/// Bogus data: the EDE code that says how validation failed (6 DNSSEC Bogus, 7 Signature
/// Expired, 8 Signature Not Yet Valid, 9 DNSKEY Missing, 10 RRSIGs Missing, 12 NSEC
/// Missing) and why, naming the zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Failure {
    /// The Extended DNS Error code.
    pub ede: u16,
    /// What failed.
    pub reason: String,
}

impl Failure {
    pub(crate) fn new(ede: u16, reason: impl Into<String>) -> Self {
        Self {
            ede,
            reason: reason.into(),
        }
    }
}

impl From<Failure> for super::Error {
    fn from(f: Failure) -> Self {
        Self::Bogus {
            ede: f.ede,
            reason: f.reason,
        }
    }
}

fn dnssec_data(r: &Record) -> Option<&DNSSECRData> {
    match &r.data {
        RData::DNSSEC(d) => Some(d),
        _ => None,
    }
}

/// The RRSIG in a record, if it is one.
pub fn rrsig(r: &Record) -> Option<&RRSIG> {
    match dnssec_data(r)? {
        DNSSECRData::RRSIG(s) => Some(s),
        _ => None,
    }
}

/// The DNSKEY in a record, if it is one.
pub fn dnskey(r: &Record) -> Option<&DNSKEY> {
    match dnssec_data(r)? {
        DNSSECRData::DNSKEY(k) => Some(k),
        _ => None,
    }
}

/// The DS in a record, if it is one.
pub fn ds(r: &Record) -> Option<&DS> {
    match dnssec_data(r)? {
        DNSSECRData::DS(d) => Some(d),
        _ => None,
    }
}

fn nsec(r: &Record) -> Option<&NSEC> {
    match dnssec_data(r)? {
        DNSSECRData::NSEC(n) => Some(n),
        _ => None,
    }
}

fn nsec3(r: &Record) -> Option<&NSEC3> {
    match dnssec_data(r)? {
        DNSSECRData::NSEC3(n) => Some(n),
        _ => None,
    }
}
