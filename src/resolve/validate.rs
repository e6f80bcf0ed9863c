//! DNSSEC validation of what an upstream says: the chain of trust walked with the
//! upstream's own lookups, and each piece of an answer judged with [`super::dnssec`].
//! Written once for both upstreams through [`Chain`]: the recursor fetches DS and DNSKEY
//! RRsets by iterating, the forwarder asks its servers (DO=1, CD=1: RFC 6840 §5.9).
//!
//! - The trust of a zone ([`trust`]) comes from a trust anchor (its DS set), or from its
//!   parent: the zone's DS RRset, asked of the parent's servers and verified with the
//!   parent's keys (the parent being the signer of that DS RRset, or of the proof that
//!   there is none). Then the zone's DNSKEY RRset, asked of its own servers, must match a
//!   DS. A proven absence of DS makes the zone and everything below it insecure. Verdicts
//!   are cached per zone for the validated TTL (bogus ones for [`BOGUS_TTL`]).
//! - Each response ([`judge`]) is judged by the zones that signed its pieces (or, for an
//!   unsigned piece, the zone it belongs to): every RRset of the answer verified, a
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

use super::dnssec::{
    Denial, Failure, Security, TrustAnchors, rrsig, validate_dnskeys, verify_rrset,
};
use super::{Error, Response};
use crate::clock::{Clock, Instant};
use crate::label::ede;
use crate::metrics;

/// A boxed future (the chain of trust recurses).
pub(crate) type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A response fetched for validation, and the zone whose server gave it (the root when
/// the upstream does not say: a forwarder).
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) msg: Message,
    pub(crate) zone: Name,
}

/// What validation needs of an upstream.
pub(crate) trait Chain: Sync {
    /// Per-question state (budget, deadline).
    type Ctx: Send;
    /// The validator.
    fn validator(&self) -> &Validator;
    /// Asks for (`name`, `qtype`) with DO; DS goes to the parent side of a cut.
    fn fetch<'a>(
        &'a self,
        ctx: &'a mut Self::Ctx,
        name: &'a Name,
        qtype: RecordType,
    ) -> Boxed<'a, Result<Fetched, String>>;
    /// The zone an unsigned RRset at `owner` in `reply` belongs to.
    fn zone_of<'a>(
        &'a self,
        ctx: &'a mut Self::Ctx,
        owner: &'a Name,
        reply: &'a Fetched,
    ) -> Boxed<'a, Result<Name, String>>;
}

/// How long a bogus verdict on a zone is kept (Unbound's `val-bogus-ttl`).
pub(crate) const BOGUS_TTL: Duration = Duration::from_secs(60);
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
pub(crate) enum Trust {
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
struct Cached {
    trust: Trust,
    expires: Instant,
}

/// `dnsgate_dnssec_results_total{result}`.
#[derive(Debug, Clone, Copy)]
enum Result4 {
    Secure = 0,
    Insecure = 1,
    Bogus = 2,
    Indeterminate = 3,
}

/// The validation state of one upstream: configuration, the verdicts on zones, counters.
pub(crate) struct Validator {
    config: Validation,
    trusted: quick_cache::sync::Cache<Name, Arc<Cached>>,
    clock: Clock,
    results: [::metrics::Counter; 4],
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Validator {
    pub(crate) fn new(config: Validation, clock: Clock) -> Self {
        let results = ["secure", "insecure", "bogus", "indeterminate"].map(|result| {
            let c = ::metrics::counter!(metrics::DNSSEC_RESULTS_TOTAL, "result" => result);
            c.increment(0);
            c
        });
        Self {
            config,
            trusted: quick_cache::sync::Cache::new(10_000),
            clock,
            results,
        }
    }

    /// The time for signature windows: unix seconds on the server's clock.
    fn unix_now(&self) -> u32 {
        self.clock
            .system_time()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32)
    }

    fn count(&self, r: Result4) {
        self.results[r as usize].increment(1);
    }

    /// Applies a verdict to a finished answer: AD when secure, the EDE of an insecure one,
    /// an error for bogus (SERVFAIL, no stale answer) or indeterminate (EDE 5).
    pub(crate) fn settle(&self, r: &mut Response, verdict: Security) -> Result<(), Error> {
        match verdict {
            Security::Secure => {
                self.count(Result4::Secure);
                r.msg.metadata.authentic_data = true;
            }
            Security::Insecure { ede, reason } => {
                self.count(Result4::Insecure);
                r.msg.metadata.authentic_data = false;
                r.ede = ede.map(|code| (code, reason));
            }
            Security::Bogus(f) => {
                self.count(Result4::Bogus);
                return Err(f.into());
            }
            Security::Indeterminate { reason } => {
                self.count(Result4::Indeterminate);
                return Err(Error::Failed {
                    ede: ede::DNSSEC_INDETERMINATE,
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// Combines two verdicts: bogus over indeterminate over insecure over secure.
pub(crate) fn worst(a: Security, b: Security) -> Security {
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

/// Whether `name` is under an insecure domain.
fn insecure_domain(v: &Validation, name: &Name) -> Option<Name> {
    v.insecure_domains.iter().find(|d| d.zone_of(name)).cloned()
}

/// The trust of `zone` (see the module doc), cached.
pub(crate) fn trust<'a, C: Chain>(
    c: &'a C,
    ctx: &'a mut C::Ctx,
    zone: &'a Name,
) -> Boxed<'a, Trust> {
    Box::pin(async move {
        let v = c.validator();
        if let Some(d) = insecure_domain(&v.config, zone) {
            return Trust::Insecure(None, format!("{zone} is under insecure domain {d}"));
        }
        let now = v.clock.now();
        if let Some(cached) = v.trusted.get(zone)
            && now < cached.expires
        {
            return cached.trust.clone();
        }
        let (verdict, ttl) = establish(c, ctx, zone).await;
        let keep = match &verdict {
            Trust::Indeterminate(_) => None,
            Trust::Bogus(_) => Some(BOGUS_TTL),
            _ => Some(Duration::from_secs(u64::from(ttl.min(MAX_TRUST_TTL)))),
        };
        if let Some(keep) = keep.filter(|k| !k.is_zero()) {
            v.trusted.insert(
                zone.to_lowercase(),
                Arc::new(Cached {
                    trust: verdict.clone(),
                    expires: now + keep,
                }),
            );
        }
        verdict
    })
}

/// Works out the trust of `zone` and how long it holds.
async fn establish<C: Chain>(c: &C, ctx: &mut C::Ctx, zone: &Name) -> (Trust, u32) {
    let v = c.validator();
    let now = v.unix_now();
    // The DS set: from an anchor, or from the parent.
    let ds_set = if let Some(ds) = v.config.anchors.ds(zone) {
        ds.to_vec()
    } else if v.config.anchors.closest(zone).is_none() {
        return (
            Trust::Insecure(None, format!("no trust anchor above {zone}")),
            MAX_TRUST_TTL,
        );
    } else {
        let reply = match c.fetch(ctx, zone, RecordType::DS).await {
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
            return no_ds(c, ctx, zone, &reply).await;
        }
        // The parent: the DS RRset's signer; unsigned, the zone the DS owner's parent
        // name belongs to (its keys then say whether it should have been signed).
        let signer =
            signer_of(&msg.answers, zone, RecordType::DS, &reply.zone).filter(|p| p != zone);
        let parent = match signer {
            Some(p) => p,
            None => match c.zone_of(ctx, &zone.base_name(), &reply).await {
                Ok(p) if p != *zone && p.zone_of(zone) => p,
                Ok(_) => {
                    return (
                        Trust::Bogus(Failure {
                            ede: ede::RRSIGS_MISSING,
                            reason: format!("the DS records of {zone} are not signed"),
                        }),
                        0,
                    );
                }
                Err(e) => return (Trust::Indeterminate(e), 0),
            },
        };
        let keys = match trust(c, ctx, &parent).await {
            Trust::Secure(k) => k,
            other => return (other, MAX_TRUST_TTL),
        };
        match verify_rrset(zone, RecordType::DS, &ds, &msg.answers, &keys, &parent, now) {
            Ok(_) => ds.iter().filter_map(super::dnssec::ds).cloned().collect(),
            Err(f) => return (Trust::Bogus(f), 0),
        }
    };
    // The zone's own keys, matched against the DS set.
    let reply = match c.fetch(ctx, zone, RecordType::DNSKEY).await {
        Ok(r) => r,
        Err(e) => return (Trust::Indeterminate(e), 0),
    };
    match validate_dnskeys(zone, &reply.msg.answers, &reply.msg.answers, &ds_set, now) {
        Ok(trusted) => (Trust::Secure(trusted.keys), trusted.ttl),
        Err(Security::Bogus(f)) => (Trust::Bogus(f), 0),
        Err(Security::Insecure { ede, reason }) => (Trust::Insecure(ede, reason), MAX_TRUST_TTL),
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
async fn no_ds<C: Chain>(c: &C, ctx: &mut C::Ctx, zone: &Name, reply: &Fetched) -> (Trust, u32) {
    let msg = &reply.msg;
    // The parent: the signer of the proof, else the zone of the SOA that came with it.
    let parent = msg
        .authorities
        .iter()
        .filter_map(rrsig)
        .map(|s| s.input().signer_name.clone())
        .find(|s| s != zone && s.zone_of(zone) && reply.zone.zone_of(s))
        .or_else(|| {
            msg.authorities
                .iter()
                .find(|r| {
                    r.record_type() == RecordType::SOA
                        && r.name != *zone
                        && r.name.zone_of(zone)
                        && reply.zone.zone_of(&r.name)
                })
                .map(|r| r.name.clone())
        });
    let parent = match parent {
        Some(p) => p,
        None => match c.zone_of(ctx, &zone.base_name(), reply).await {
            Ok(p) if p != *zone && p.zone_of(zone) => p,
            Ok(_) => {
                return (
                    Trust::Bogus(Failure {
                        ede: ede::NSEC_MISSING,
                        reason: format!("no parent zone proved the DS of {zone} absent"),
                    }),
                    0,
                );
            }
            Err(e) => return (Trust::Indeterminate(e), 0),
        },
    };
    let keys = match trust(c, ctx, &parent).await {
        Trust::Secure(k) => k,
        other => return (other, MAX_TRUST_TTL),
    };
    let v = c.validator();
    let now = v.unix_now();
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
    if msg.metadata.response_code == ResponseCode::NXDomain {
        // A "zone" that does not exist signs nothing: data claiming it is bogus.
        return match denial.nxdomain(zone) {
            Security::Insecure { .. } => (
                Trust::Insecure(None, format!("{zone} lies in an opt-out span of {parent}")),
                ttl,
            ),
            Security::Indeterminate { reason } => (Trust::Indeterminate(reason), 0),
            Security::Bogus(f) => (Trust::Bogus(f), 0),
            Security::Secure => (
                Trust::Bogus(Failure {
                    ede: ede::DNSSEC_BOGUS,
                    reason: format!("{zone} does not exist in {parent}"),
                }),
                0,
            ),
        };
    }
    match denial.no_ds(zone) {
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

/// The verdict on one response: `reply` answered `name` (`qtype`); `records` are what was
/// taken from it (`synthesized`: CNAME owners made here from a DNAME, validated through
/// their DNAME); `last` is the last name of the chain within it, and `negative` whether
/// the chain ends there without data.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn judge<C: Chain>(
    c: &C,
    ctx: &mut C::Ctx,
    reply: &Fetched,
    records: &[Record],
    synthesized: &[Name],
    last: &Name,
    qtype: RecordType,
    negative: bool,
) -> Security {
    let msg: &Message = &reply.msg;
    let now = c.validator().unix_now();
    let mut verdict = Security::Secure;
    let v = c.validator();
    let insecure = |name: &Name| {
        insecure_domain(&v.config, name).map(|d| Security::Insecure {
            ede: None,
            reason: format!("{name} is under insecure domain {d}"),
        })
    };
    for (owner, rtype) in rrsets(records) {
        if rtype == RecordType::CNAME && synthesized.contains(&owner) {
            continue;
        }
        if let Some(s) = insecure(&owner) {
            verdict = worst(verdict, s);
            continue;
        }
        let zone = match signer_of(&msg.answers, &owner, rtype, &reply.zone) {
            Some(z) => z,
            None => match c.zone_of(ctx, &owner, reply).await {
                Ok(z) => z,
                Err(reason) => {
                    verdict = worst(verdict, Security::Indeterminate { reason });
                    continue;
                }
            },
        };
        let keys = match trust(c, ctx, &zone).await {
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
                    let proof = worst(proof, verify_proofs(msg, &zone, &keys, now));
                    verdict = worst(verdict, proof);
                }
            }
            Err(f) => verdict = worst(verdict, Security::Bogus(f)),
        }
    }
    if let (true, Some(s)) = (negative, insecure(last)) {
        verdict = worst(verdict, s);
    } else if negative {
        // The zone that denies: the signer of the proof, else the zone of its SOA.
        let signed = msg
            .authorities
            .iter()
            .filter_map(rrsig)
            .map(|s| s.input().signer_name.clone())
            .find(|s| s.zone_of(last) && reply.zone.zone_of(s));
        let zone = match signed {
            Some(z) => Ok(z),
            None => c.zone_of(ctx, last, reply).await,
        };
        match zone {
            Err(reason) => verdict = worst(verdict, Security::Indeterminate { reason }),
            Ok(zone) => match trust(c, ctx, &zone).await {
                Trust::Secure(keys) => {
                    let genuine = verify_proofs(msg, &zone, &keys, now);
                    let denial = Denial::new(&zone, &msg.authorities);
                    let proof = if msg.metadata.response_code == ResponseCode::NXDomain {
                        denial.nxdomain(last)
                    } else {
                        denial.nodata(last, qtype)
                    };
                    verdict = worst(verdict, worst(genuine, proof));
                }
                other => verdict = worst(verdict, other.security()),
            },
        }
    }
    verdict
}

/// Verifies the SOA and NSEC/NSEC3 RRsets of an authority section with `zone`'s keys.
fn verify_proofs(msg: &Message, zone: &Name, keys: &[DNSKEY], now: u32) -> Security {
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
