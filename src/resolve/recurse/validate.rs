//! DNSSEC validation in recursive mode: the chain of trust walked with the iterator's own
//! lookups, and each piece of an answer judged with [`crate::resolve::dnssec`].
//!
//! - The trust of a zone ([`Recursor::trust`]) comes from a trust anchor (its DS set), or
//!   from its parent: the zone's DS RRset, asked of the parent's servers and verified with
//!   the parent's keys (the parent being the signer of that DS RRset, or of the proof that
//!   there is none). Then the zone's DNSKEY RRset, asked of its own servers, must match a
//!   DS. A proven absence of DS makes the zone and everything below it insecure. Verdicts
//!   are cached per zone for the validated TTL (bogus ones for [`BOGUS_TTL`]).
//! - Each hop of an answer ([`Recursor::judge`]) is judged by the zone that signed it (or,
//!   unsigned, the zone whose server gave it): every RRset of the answer verified, a
//!   wildcard expansion proven, a negative answer's SOA and NSEC/NSEC3 records verified and
//!   their proof checked for the last name of the chain.
//! - The answer is secure only when every piece is; any bogus piece makes it bogus
//!   (SERVFAIL with the piece's EDE), an unfinished chain indeterminate (EDE 5), and an
//!   insecure piece insecure (no AD, with EDE 1, 2 or 27 when it has one).

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::dnssec::rdata::DNSKEY;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};

use super::{Boxed, Ctx, Recursor, Reply};
use crate::clock::Instant;
use crate::label::ede;
use crate::resolve::Question;
use crate::resolve::dnssec::{
    Denial, Failure, Security, TrustAnchors, rrsig, validate_dnskeys, verify_rrset,
};

/// How long a bogus verdict on a zone is kept (Unbound's `val-bogus-ttl`).
pub(super) const BOGUS_TTL: Duration = Duration::from_secs(60);
/// Longest a verdict on a zone is kept.
const MAX_TRUST_TTL: u32 = 86_400;

/// What validation is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// Where trust starts.
    pub anchors: TrustAnchors,
    /// Zones never validated (answers from them and below are insecure).
    pub insecure_domains: Vec<Name>,
}

/// The verdict on a zone: its trusted keys, or why it has none.
#[derive(Debug, Clone)]
pub(super) enum Trust {
    Secure(Vec<DNSKEY>),
    /// Not validated (an unsigned delegation, only unsupported algorithms or digests, an
    /// insecure domain): its EDE code if any, and why.
    Insecure(Option<u16>, String),
    Bogus(Failure),
    /// The chain could not be fetched.
    Indeterminate(String),
}

impl Trust {
    fn security(&self) -> Security {
        match self {
            Self::Secure(_) => Security::Secure,
            Self::Insecure(ede, reason) => Security::Insecure {
                ede: *ede,
                reason: reason.clone(),
            },
            Self::Bogus(f) => Security::Bogus(f.clone()),
            Self::Indeterminate(reason) => Security::Indeterminate {
                reason: reason.clone(),
            },
        }
    }
}

/// A cached verdict.
#[derive(Debug)]
pub(super) struct Cached {
    trust: Trust,
    expires: Instant,
}

/// Combines two verdicts: bogus over indeterminate over insecure over secure.
pub(super) fn worst(a: Security, b: Security) -> Security {
    fn rank(s: &Security) -> u8 {
        match s {
            Security::Secure => 0,
            Security::Insecure { .. } => 1,
            Security::Indeterminate { .. } => 2,
            Security::Bogus(_) => 3,
        }
    }
    if rank(&b) > rank(&a) { b } else { a }
}

/// The zone that signed `owner`'s `rtype` RRset in `records`, if an RRSIG says so and it
/// is plausible: at or above the owner, at or below the zone whose server sent it.
fn signer_of(records: &[Record], owner: &Name, rtype: RecordType, served: &Name) -> Option<Name> {
    records
        .iter()
        .filter(|r| r.name == *owner)
        .filter_map(rrsig)
        .filter(|s| s.input().type_covered == rtype)
        .map(|s| s.input().signer_name.clone())
        .find(|signer| signer.zone_of(owner) && served.zone_of(signer))
}

/// The RRsets (owner, type) of `records`, RRSIGs aside, in order of first appearance.
fn rrsets(records: &[Record]) -> Vec<(Name, RecordType)> {
    let mut sets: Vec<(Name, RecordType)> = Vec::new();
    for r in records {
        let key = (r.name.clone(), r.record_type());
        if key.1 != RecordType::RRSIG && !sets.contains(&key) {
            sets.push(key);
        }
    }
    sets
}

impl Recursor {
    /// The time for signature windows: unix seconds on the server's clock.
    fn unix_now(&self) -> u32 {
        self.clock
            .system_time()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32)
    }

    fn is_insecure_domain(&self, v: &Validation, name: &Name) -> Option<Name> {
        v.insecure_domains.iter().find(|d| d.zone_of(name)).cloned()
    }

    /// Asks the servers of the zone at or above `name` for (`name`, `qtype`) with DO, as
    /// a lookup of its own (DS goes to the parent's servers).
    async fn fetch(&self, ctx: &mut Ctx, name: &Name, qtype: RecordType) -> Result<Reply, String> {
        let q = Question {
            name: name.clone(),
            qtype,
            qclass: hickory_proto::rr::DNSClass::IN,
            dnssec_ok: true,
            checking_disabled: false,
        };
        self.lookup(ctx, name, &q)
            .await
            .map_err(|e| format!("cannot fetch {name} {qtype}: {e}"))
    }

    /// The trust of `zone` (see the module doc), cached.
    pub(super) fn trust<'a>(&'a self, ctx: &'a mut Ctx, zone: &'a Name) -> Boxed<'a, Trust> {
        Box::pin(async move {
            let Some(v) = &self.validation else {
                return Trust::Insecure(None, "validation is off".into());
            };
            if let Some(d) = self.is_insecure_domain(v, zone) {
                return Trust::Insecure(None, format!("{zone} is under insecure domain {d}"));
            }
            let now = self.clock.now();
            if let Some(c) = self.trusted.get(zone)
                && now < c.expires
            {
                return c.trust.clone();
            }
            let (trust, ttl) = self.establish(ctx, v, zone).await;
            let keep = match &trust {
                Trust::Indeterminate(_) => None,
                Trust::Bogus(_) => Some(BOGUS_TTL),
                _ => Some(Duration::from_secs(u64::from(ttl.min(MAX_TRUST_TTL)))),
            };
            if let Some(keep) = keep.filter(|k| !k.is_zero()) {
                self.trusted.insert(
                    zone.to_lowercase(),
                    Arc::new(Cached {
                        trust: trust.clone(),
                        expires: now + keep,
                    }),
                );
            }
            trust
        })
    }

    /// Works out the trust of `zone` and how long it holds.
    async fn establish(&self, ctx: &mut Ctx, v: &Validation, zone: &Name) -> (Trust, u32) {
        let now = self.unix_now();
        // The DS set: from an anchor, or from the parent.
        let ds_set = if let Some(ds) = v.anchors.ds(zone) {
            ds.to_vec()
        } else if v.anchors.closest(zone).is_none() {
            return (
                Trust::Insecure(None, format!("no trust anchor above {zone}")),
                MAX_TRUST_TTL,
            );
        } else {
            let reply = match self.fetch(ctx, zone, RecordType::DS).await {
                Ok(r) => r,
                Err(e) => return (Trust::Indeterminate(e), 0),
            };
            let msg = &reply.msg;
            let ds: Vec<Record> = msg
                .answers
                .iter()
                .filter(|r| r.name == *zone && r.record_type() == RecordType::DS)
                .cloned()
                .collect();
            if ds.is_empty() {
                return self.no_ds(ctx, zone, &reply).await;
            }
            let parent = signer_of(&msg.answers, zone, RecordType::DS, &reply.zone)
                .filter(|p| p != zone)
                .unwrap_or_else(|| reply.zone.clone());
            let keys = match self.trust(ctx, &parent).await {
                Trust::Secure(k) => k,
                other => return (other, MAX_TRUST_TTL),
            };
            match verify_rrset(zone, RecordType::DS, &ds, &msg.answers, &keys, &parent, now) {
                Ok(_) => ds
                    .iter()
                    .filter_map(crate::resolve::dnssec::ds)
                    .cloned()
                    .collect(),
                Err(f) => return (Trust::Bogus(f), 0),
            }
        };
        // The zone's own keys, matched against the DS set.
        let reply = match self.fetch(ctx, zone, RecordType::DNSKEY).await {
            Ok(r) => r,
            Err(e) => return (Trust::Indeterminate(e), 0),
        };
        match validate_dnskeys(zone, &reply.msg.answers, &reply.msg.answers, &ds_set, now) {
            Ok(trusted) => (Trust::Secure(trusted.keys), trusted.ttl),
            Err(Security::Bogus(f)) => (Trust::Bogus(f), 0),
            Err(Security::Insecure { ede, reason }) => {
                (Trust::Insecure(ede, reason), MAX_TRUST_TTL)
            }
            Err(Security::Indeterminate { reason }) => (Trust::Indeterminate(reason), 0),
            Err(Security::Secure) => (
                Trust::Bogus(Failure {
                    ede: ede::DNSSEC_BOGUS,
                    reason: format!("the DNSKEYs of {zone} did not validate"),
                }),
                0,
            ),
        }
    }

    /// A DS question for `zone` answered without DS: the parent must prove there is none
    /// (then `zone` is insecure) or be unsigned itself.
    async fn no_ds(&self, ctx: &mut Ctx, zone: &Name, reply: &Reply) -> (Trust, u32) {
        let msg = &reply.msg;
        // The parent: the signer of the proof, else the zone that answered.
        let parent = msg
            .authorities
            .iter()
            .filter_map(rrsig)
            .map(|s| s.input().signer_name.clone())
            .find(|s| s != zone && s.zone_of(zone) && reply.zone.zone_of(s))
            .or_else(|| {
                msg.authorities
                    .iter()
                    .find(|r| r.record_type() == RecordType::SOA && r.name != *zone)
                    .map(|r| r.name.clone())
            })
            .unwrap_or_else(|| reply.zone.clone());
        if parent == *zone || !parent.zone_of(zone) {
            return (
                Trust::Bogus(Failure {
                    ede: ede::DNSSEC_BOGUS,
                    reason: format!("no parent zone answered for the DS of {zone}"),
                }),
                0,
            );
        }
        let keys = match self.trust(ctx, &parent).await {
            Trust::Secure(k) => k,
            other => return (other, MAX_TRUST_TTL),
        };
        let now = self.unix_now();
        let mut ttl = MAX_TRUST_TTL;
        for (owner, rtype) in rrsets(&msg.authorities) {
            if !matches!(
                rtype,
                RecordType::NSEC | RecordType::NSEC3 | RecordType::SOA
            ) {
                continue;
            }
            match verify_rrset(
                &owner,
                rtype,
                &msg.authorities,
                &msg.authorities,
                &keys,
                &parent,
                now,
            ) {
                Ok(vd) => ttl = ttl.min(vd.ttl),
                Err(f) => return (Trust::Bogus(f), 0),
            }
        }
        let denial = Denial::new(&parent, &msg.authorities);
        let proof = if msg.metadata.response_code == ResponseCode::NXDomain {
            denial.nxdomain(zone)
        } else {
            denial.no_ds(zone)
        };
        match proof {
            Security::Secure | Security::Insecure { .. } => (
                Trust::Insecure(
                    None,
                    format!("{zone} is an unsigned delegation of {parent}"),
                ),
                ttl,
            ),
            Security::Bogus(f) => (Trust::Bogus(f), 0),
            Security::Indeterminate { reason } => (Trust::Indeterminate(reason), 0),
        }
    }

    /// The verdict on one hop of an answer: `reply` answered `name` (`qtype`); `records`
    /// are what was taken from it (`synthesized`: CNAME owners made here from a DNAME);
    /// `last` is the last name of the chain within it, and `negative` whether the chain
    /// ends there without data.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn judge(
        &self,
        ctx: &mut Ctx,
        reply: &Reply,
        records: &[Record],
        synthesized: &[Name],
        last: &Name,
        qtype: RecordType,
        negative: bool,
    ) -> Security {
        let msg: &Message = &reply.msg;
        let now = self.unix_now();
        let mut verdict = Security::Secure;
        for (owner, rtype) in rrsets(records) {
            if rtype == RecordType::CNAME && synthesized.contains(&owner) {
                continue;
            }
            let zone = signer_of(&msg.answers, &owner, rtype, &reply.zone)
                .unwrap_or_else(|| reply.zone.clone());
            let keys = match self.trust(ctx, &zone).await {
                Trust::Secure(k) => k,
                other => {
                    verdict = worst(verdict, other.security());
                    continue;
                }
            };
            match verify_rrset(&owner, rtype, &msg.answers, &msg.answers, &keys, &zone, now) {
                Ok(v) => {
                    if let Some(ce) = v.wildcard {
                        let proof = Denial::new(&zone, &msg.authorities).wildcard(&owner, &ce);
                        // The proof's records must be genuine too.
                        let proof = worst(proof, self.verify_proofs(msg, &zone, &keys, now));
                        verdict = worst(verdict, proof);
                    }
                }
                Err(f) => verdict = worst(verdict, Security::Bogus(f)),
            }
        }
        if negative {
            // The zone that denies: the signer of the proof, else the one that answered.
            let zone = msg
                .authorities
                .iter()
                .filter_map(rrsig)
                .map(|s| s.input().signer_name.clone())
                .find(|s| s.zone_of(last) && reply.zone.zone_of(s))
                .unwrap_or_else(|| reply.zone.clone());
            match self.trust(ctx, &zone).await {
                Trust::Secure(keys) => {
                    let genuine = self.verify_proofs(msg, &zone, &keys, now);
                    let denial = Denial::new(&zone, &msg.authorities);
                    let proof = if msg.metadata.response_code == ResponseCode::NXDomain {
                        denial.nxdomain(last)
                    } else {
                        denial.nodata(last, qtype)
                    };
                    verdict = worst(verdict, worst(genuine, proof));
                }
                other => verdict = worst(verdict, other.security()),
            }
        }
        verdict
    }

    /// Verifies the SOA and NSEC/NSEC3 RRsets of a negative answer's authority section
    /// with `zone`'s keys.
    fn verify_proofs(&self, msg: &Message, zone: &Name, keys: &[DNSKEY], now: u32) -> Security {
        let mut verdict = Security::Secure;
        for (owner, rtype) in rrsets(&msg.authorities) {
            if !matches!(
                rtype,
                RecordType::NSEC | RecordType::NSEC3 | RecordType::SOA
            ) || !zone.zone_of(&owner)
            {
                continue;
            }
            if let Err(f) = verify_rrset(
                &owner,
                rtype,
                &msg.authorities,
                &msg.authorities,
                keys,
                zone,
                now,
            ) {
                verdict = worst(verdict, Security::Bogus(f));
            }
        }
        verdict
    }
}
