//! Authenticated denial of existence: NSEC (RFC 4035 §5.4, RFC 6840 §4) and NSEC3
//! (RFC 5155 §8).
//!
//! Only records verified with the zone's keys may take part: [`Denial::verified`] checks
//! them, [`Denial::new`] takes records checked already.
//!
//! NSEC: a record *matches* a name that is its owner and *covers* the names strictly
//! between its owner and its next name in canonical order (RFC 4034 §6.1; the last record
//! wraps to the apex). A covering record whose owner is an ancestor of the name and a
//! delegation (NS without SOA) or a DNAME proves nothing below it (RFC 6840 §4.1), and one
//! whose next name is below the name shows the name is an empty non-terminal, which exists.
//! The closest encloser of a non-existent name is the deeper of its common ancestors with
//! the covering record's owner and next name; the wildcard at it must be covered too.
//!
//! NSEC3: names are hashed (SHA-1, the record's salt and iterations) and compared in the
//! record's zone. The closest encloser proof (RFC 5155 §8.3) is a record matching an
//! ancestor of the name (the closest encloser) and one covering the *next closer* name (one
//! label longer, towards the name). An opt-out record covering the next closer name may
//! hide unsigned delegations, so what it proves is insecure, not secure (RFC 5155 §9.2).
//! More than [`MAX_NSEC3_ITERATIONS`] iterations: insecure, EDE 27 (RFC 9276), before any
//! hashing.

use std::cell::RefCell;
use std::cmp::Ordering;

use data_encoding::BASE32_DNSSEC;
use hickory_proto::dnssec::Nsec3HashAlgorithm;
use hickory_proto::dnssec::rdata::{DNSKEY, NSEC, NSEC3};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType, RecordTypeSet};

use super::{Failure, MAX_NSEC3_HASHES, MAX_NSEC3_ITERATIONS, Security, nsec, nsec3, verify_rrset};
use crate::label::ede;

/// The NSEC or NSEC3 records of one zone in a response, and the proofs they can give.
///
/// Each proof is a [`Security`]: `Secure` when proven, `Insecure` when NSEC3 opt-out or
/// too many iterations leave it open (the answer stands, without AD), `Bogus` (EDE 12 when
/// the proof is missing, 6 when the records contradict the claim), `Indeterminate` when
/// hashing would exceed [`MAX_NSEC3_HASHES`]. When the zone's records include NSEC3 ones,
/// NSEC3 proofs are used, else NSEC ones.
///
/// Build it with [`Denial::verified`] from a response section and the zone's trusted keys,
/// or with [`Denial::new`] from records already verified.
#[derive(Debug)]
pub struct Denial<'a> {
    zone: &'a Name,
    nsec: Vec<(&'a Name, &'a NSEC)>,
    nsec3: Vec<Hashed<'a>>,
    /// The distinct (salt, iterations) of the NSEC3 records.
    params: Vec<(&'a [u8], u16)>,
    /// Hashes computed: (name, params index, hash).
    hashes: RefCell<Vec<(Name, usize, Vec<u8>)>>,
    /// Why an NSEC/NSEC3 RRset was left out by [`Denial::verified`]: reported instead of a
    /// missing proof.
    unverified: Option<Failure>,
}

/// An NSEC3 record with its owner hash decoded.
#[derive(Debug)]
struct Hashed<'a> {
    owner: Vec<u8>,
    params: usize,
    rr: &'a NSEC3,
}

/// A proof step: `Err` carries the verdict when it is not secure.
type Step<T> = Result<T, Security>;

fn missing(reason: String) -> Security {
    Failure::new(ede::NSEC_MISSING, reason).into()
}

fn contradicted(reason: String) -> Security {
    Failure::new(ede::DNSSEC_BOGUS, reason).into()
}

/// The number of labels, a leading `*` included (`Name::num_labels` leaves it out).
fn labels(name: &Name) -> usize {
    name.iter().count()
}

/// `*.name`.
fn wildcard_of(name: &Name) -> Step<Name> {
    name.prepend_label("*")
        .map_err(|e| contradicted(format!("no wildcard name under {name}: {e}")))
}

/// Whether an interval (`owner`, `next`) of a chain covers `x`; the last interval wraps.
fn between<T: Ord + ?Sized>(owner: &T, next: &T, x: &T) -> bool {
    match owner.cmp(next) {
        Ordering::Less => owner < x && x < next,
        _ => x > owner || x < next,
    }
}

/// The deepest common ancestor of two names.
fn common_ancestor(a: &Name, b: &Name) -> Name {
    let n = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x.eq_ignore_ascii_case(y))
        .count();
    a.trim_to(n)
}

/// Whether a type bitmap denies `qtype`: neither it nor CNAME (RFC 4035 §5.4: a CNAME
/// would have been followed).
fn denies(types: &RecordTypeSet, qtype: RecordType) -> bool {
    !types.contains(qtype) && !types.contains(RecordType::CNAME)
}

/// NSEC or NSEC3 at the parent side of a zone cut (NS without SOA), or a DNAME: it speaks
/// for the DS at its owner only, and for nothing below (RFC 6840 §4.1).
fn ancestor_delegation(types: &RecordTypeSet) -> bool {
    types.contains(RecordType::DNAME)
        || (types.contains(RecordType::NS) && !types.contains(RecordType::SOA))
}

impl<'a> Denial<'a> {
    /// The NSEC and NSEC3 records of `zone` among `records`, which must all have been
    /// verified with the zone's keys ([`super::verify_rrset`]): NSEC owners inside the zone,
    /// NSEC3 owners one hash label below its apex. Others are ignored.
    pub fn new(zone: &'a Name, records: &'a [Record]) -> Self {
        Self::build(zone, records.iter(), None)
    }

    /// The NSEC and NSEC3 records of `zone` among `records` (a whole authority section)
    /// whose RRsets verify with the zone's trusted `keys` at `now`. The others are left out:
    /// they cannot make a proof, and when a proof then is missing the reason one was left
    /// out is reported instead (an expired NSEC signature: EDE 7).
    pub fn verified(zone: &'a Name, records: &'a [Record], keys: &[DNSKEY], now: u32) -> Self {
        let mut good: Vec<(&Name, RecordType)> = Vec::new();
        let mut unverified = None;
        for r in records {
            let rtype = r.record_type();
            let wanted = matches!(rtype, RecordType::NSEC | RecordType::NSEC3)
                && zone.zone_of(&r.name)
                && !good.contains(&(&r.name, rtype));
            if !wanted {
                continue;
            }
            match verify_rrset(&r.name, rtype, records, records, keys, zone, now) {
                Ok(_) => good.push((&r.name, rtype)),
                Err(f) => {
                    unverified.get_or_insert(f);
                }
            }
        }
        let records = records
            .iter()
            .filter(|r| good.contains(&(&r.name, r.record_type())));
        Self::build(zone, records, unverified)
    }

    fn build(
        zone: &'a Name,
        records: impl Iterator<Item = &'a Record>,
        unverified: Option<Failure>,
    ) -> Self {
        let mut d = Self {
            zone,
            nsec: Vec::new(),
            nsec3: Vec::new(),
            params: Vec::new(),
            hashes: RefCell::new(Vec::new()),
            unverified,
        };
        for r in records.filter(|r| r.dns_class == DNSClass::IN) {
            if let Some(n) = nsec(r) {
                if zone.zone_of(&r.name) {
                    d.nsec.push((&r.name, n));
                }
            } else if let Some(n) = nsec3(r) {
                let in_zone = labels(&r.name) == labels(zone) + 1 && zone.zone_of(&r.name);
                let owner = r
                    .name
                    .iter()
                    .next()
                    .and_then(|l| BASE32_DNSSEC.decode(l).ok());
                let Some(owner) = owner.filter(|o| in_zone && o.len() == 20) else {
                    continue;
                };
                if n.hash_algorithm() != Nsec3HashAlgorithm::SHA1
                    || n.next_hashed_owner_name().len() != 20
                {
                    continue;
                }
                let p = (n.salt(), n.iterations());
                let params = match d.params.iter().position(|x| *x == p) {
                    Some(i) => i,
                    None => {
                        d.params.push(p);
                        d.params.len() - 1
                    }
                };
                d.nsec3.push(Hashed {
                    owner,
                    params,
                    rr: n,
                });
            }
        }
        d
    }

    /// NXDOMAIN: `qname` does not exist, and no wildcard could have answered for it
    /// (RFC 4035 §5.4, RFC 5155 §8.4).
    pub fn nxdomain(&self, qname: &Name) -> Security {
        self.verdict(self.in_zone(qname).and_then(|()| {
            if self.nsec3.is_empty() {
                self.nsec_nxdomain(qname)
            } else {
                self.nsec3_nxdomain(qname)
            }
        }))
    }

    /// NODATA: `qname` has no `qtype` records: a record at the name without the type (nor
    /// CNAME), the name an empty non-terminal, or the wildcard that would answer it without
    /// the type (RFC 4035 §5.4, RFC 5155 §8.5-8.7). For DS under NSEC3, an opt-out span
    /// covering the name is insecure.
    pub fn nodata(&self, qname: &Name, qtype: RecordType) -> Security {
        self.verdict(self.in_zone(qname).and_then(|()| {
            if qtype == RecordType::DS && qname == self.zone {
                return Err(contradicted(format!(
                    "the DS of {qname} is in its parent, zone {0} cannot deny it",
                    self.zone
                )));
            }
            if self.nsec3.is_empty() {
                self.nsec_nodata(qname, qtype)
            } else {
                self.nsec3_nodata(qname, qtype)
            }
        }))
    }

    /// A wildcard answer: `qname` was synthesised from `*.closest_encloser` (from
    /// [`super::Verified::wildcard`]), so `qname` itself, or rather the next closer name,
    /// must not exist (RFC 4035 §5.3.4, RFC 5155 §8.8).
    pub fn wildcard(&self, qname: &Name, closest_encloser: &Name) -> Security {
        self.verdict(self.in_zone(qname).and_then(|()| {
            if !(self.zone.zone_of(closest_encloser)
                && closest_encloser.zone_of(qname)
                && labels(qname) > labels(closest_encloser))
            {
                return Err(contradicted(format!(
                    "{qname} cannot be a wildcard expansion at {closest_encloser}"
                )));
            }
            if self.nsec3.is_empty() {
                self.nsec_wildcard(qname, closest_encloser)
            } else {
                self.nsec3_wildcard(qname, closest_encloser)
            }
        }))
    }

    /// No DS at the delegation `child` (a referral or a DS query answered by the parent
    /// zone): the child zone is unsigned. Secure: a record matching the child with NS and
    /// without DS and SOA (RFC 6840 §4.4); insecure: an NSEC3 opt-out span covering it
    /// (RFC 5155 §8.9). Either way (anything but bogus) the child and all below it are
    /// insecure.
    pub fn no_ds(&self, child: &Name) -> Security {
        self.verdict(self.in_zone(child).and_then(|()| {
            if child == self.zone {
                return Err(contradicted(format!(
                    "the DS of {child} is in its parent, zone {child} cannot deny it"
                )));
            }
            let check = |types: &RecordTypeSet, kind: &str| {
                if !types.contains(RecordType::NS) {
                    Err(contradicted(format!(
                        "{kind} of zone {} shows {child} is not a delegation",
                        self.zone
                    )))
                } else if types.contains(RecordType::DS) {
                    Err(contradicted(format!(
                        "{kind} of zone {} shows {child} has a DS",
                        self.zone
                    )))
                } else if types.contains(RecordType::SOA) {
                    Err(contradicted(format!(
                        "{kind} at {child} is from the child zone, not from {}",
                        self.zone
                    )))
                } else {
                    Ok(Security::Secure)
                }
            };
            if self.nsec3.is_empty() {
                match self.nsec_match(child) {
                    Some(n) => check(n.type_set(), "NSEC"),
                    None => Err(missing(format!(
                        "no NSEC of zone {} proves there is no DS for {child}",
                        self.zone
                    ))),
                }
            } else {
                self.check_iterations()?;
                if let Some(n) = self.nsec3_match(child)? {
                    return check(n.type_set(), "NSEC3");
                }
                self.opt_out_span(child)
            }
        }))
    }

    /// The verdict of a proof; a missing proof after an RRset was left out unverified is
    /// that RRset's failure.
    fn verdict(&self, step: Step<Security>) -> Security {
        match step.unwrap_or_else(|s| s) {
            Security::Bogus(f) if f.ede == ede::NSEC_MISSING => match &self.unverified {
                Some(u) => Security::Bogus(Failure::new(
                    u.ede,
                    format!("{} (and so: {})", u.reason, f.reason),
                )),
                None => Security::Bogus(f),
            },
            other => other,
        }
    }

    #[cfg(test)]
    pub(super) fn hashes_computed(&self) -> usize {
        self.hashes.borrow().len()
    }

    fn in_zone(&self, name: &Name) -> Step<()> {
        if self.zone.zone_of(name) {
            Ok(())
        } else {
            Err(missing(format!(
                "{name} is outside zone {}, whose NSEC records cannot deny it",
                self.zone
            )))
        }
    }

    // ---- NSEC ----

    fn nsec_match(&self, name: &Name) -> Option<&'a NSEC> {
        self.nsec.iter().find(|(o, _)| *o == name).map(|(_, n)| *n)
    }

    /// The NSEC covering `name` that can speak for it (not from above a zone cut or a
    /// DNAME), with its owner.
    fn nsec_cover(&self, name: &Name) -> Option<(&'a Name, &'a NSEC)> {
        self.nsec
            .iter()
            .find(|(owner, n)| {
                between(*owner, n.next_domain_name(), name)
                    && !(owner.zone_of(name) && ancestor_delegation(n.type_set()))
            })
            .copied()
    }

    /// The closest encloser of the non-existent `name` by the NSEC covering it, or an error
    /// when there is none or the name is an empty non-terminal.
    fn nsec_closest_encloser(&self, name: &Name) -> Step<Name> {
        let Some((owner, n)) = self.nsec_cover(name) else {
            return Err(missing(format!(
                "no NSEC of zone {} proves {name} does not exist",
                self.zone
            )));
        };
        let next = n.next_domain_name();
        if name.zone_of(next) {
            return Err(contradicted(format!(
                "NSEC {owner} -> {next} of zone {} shows {name} exists (an empty non-terminal)",
                self.zone
            )));
        }
        let (a, b) = (common_ancestor(name, owner), common_ancestor(name, next));
        let ce = if labels(&a) >= labels(&b) { a } else { b };
        if !self.zone.zone_of(&ce) {
            return Err(contradicted(format!(
                "NSEC {owner} -> {next} does not belong to zone {}",
                self.zone
            )));
        }
        Ok(ce)
    }

    fn nsec_nxdomain(&self, qname: &Name) -> Step<Security> {
        if self.nsec_match(qname).is_some() {
            return Err(contradicted(format!(
                "an NSEC of zone {} shows {qname} exists",
                self.zone
            )));
        }
        let ce = self.nsec_closest_encloser(qname)?;
        let wildcard = wildcard_of(&ce)?;
        if self.nsec_match(&wildcard).is_some() {
            return Err(contradicted(format!(
                "an NSEC of zone {} shows {wildcard} exists, so {qname} should have been answered from it",
                self.zone
            )));
        }
        if self.nsec_cover(&wildcard).is_none() {
            return Err(missing(format!(
                "no NSEC of zone {} proves there is no wildcard {wildcard}",
                self.zone
            )));
        }
        Ok(Security::Secure)
    }

    fn nsec_nodata(&self, qname: &Name, qtype: RecordType) -> Step<Security> {
        if let Some(n) = self.nsec_match(qname) {
            return self.bitmap(n.type_set(), qname, qtype, "NSEC");
        }
        let Some((_, n)) = self.nsec_cover(qname) else {
            return Err(missing(format!(
                "no NSEC of zone {} proves {qname} has no {qtype}",
                self.zone
            )));
        };
        if qname.zone_of(n.next_domain_name()) {
            // An empty non-terminal: it exists, with no records of any type.
            return Ok(Security::Secure);
        }
        let ce = self.nsec_closest_encloser(qname)?;
        let wildcard = wildcard_of(&ce)?;
        match self.nsec_match(&wildcard) {
            Some(w) => self.bitmap(w.type_set(), &wildcard, qtype, "NSEC"),
            None => Err(missing(format!(
                "no NSEC of zone {} shows {qname} or the wildcard {wildcard} without {qtype}",
                self.zone
            ))),
        }
    }

    fn nsec_wildcard(&self, qname: &Name, ce: &Name) -> Step<Security> {
        let found = self.nsec_closest_encloser(qname)?;
        if found != *ce {
            return Err(contradicted(format!(
                "the NSEC of zone {} puts the closest encloser of {qname} at {found}, not at the wildcard's {ce}",
                self.zone
            )));
        }
        Ok(Security::Secure)
    }

    /// A matching record's bitmap must deny `qtype`; a parent-side record at a delegation
    /// denies only DS, and a child apex record cannot deny DS.
    fn bitmap(
        &self,
        types: &RecordTypeSet,
        name: &Name,
        qtype: RecordType,
        kind: &str,
    ) -> Step<Security> {
        let zone = self.zone;
        if qtype != RecordType::DS && ancestor_delegation(types) && types.contains(RecordType::NS) {
            return Err(contradicted(format!(
                "{kind} of zone {zone} at the delegation {name} cannot deny {qtype}, which the child zone holds"
            )));
        }
        if qtype == RecordType::DS && types.contains(RecordType::SOA) {
            return Err(contradicted(format!(
                "{kind} at {name} is the child zone's apex, it cannot deny DS"
            )));
        }
        if denies(types, qtype) {
            Ok(Security::Secure)
        } else {
            Err(contradicted(format!(
                "{kind} of zone {zone} shows {name} has {qtype} or CNAME records"
            )))
        }
    }

    // ---- NSEC3 ----

    /// RFC 9276 §3.2: over the limit, the answer is insecure (checked before hashing).
    fn check_iterations(&self) -> Step<()> {
        match self.params.iter().map(|(_, i)| *i).max() {
            Some(i) if i > MAX_NSEC3_ITERATIONS => Err(Security::insecure(
                Some(ede::UNSUPPORTED_NSEC3_ITERATIONS),
                format!(
                    "zone {} uses NSEC3 with {i} iterations (more than {MAX_NSEC3_ITERATIONS})",
                    self.zone
                ),
            )),
            _ => Ok(()),
        }
    }

    /// H(name) with the parameters `p`.
    fn hash(&self, name: &Name, p: usize) -> Step<Vec<u8>> {
        let mut memo = self.hashes.borrow_mut();
        if let Some((_, _, h)) = memo.iter().find(|(n, i, _)| *i == p && n == name) {
            return Ok(h.clone());
        }
        if memo.len() >= MAX_NSEC3_HASHES {
            return Err(Security::Indeterminate {
                reason: format!(
                    "more than {MAX_NSEC3_HASHES} NSEC3 hashes needed for zone {}",
                    self.zone
                ),
            });
        }
        let (salt, iterations) = self.params[p];
        let h = Nsec3HashAlgorithm::SHA1
            .hash(salt, name, iterations)
            .map_err(|e| contradicted(format!("cannot hash {name}: {e}")))?;
        let h = h.as_ref().to_vec();
        memo.push((name.clone(), p, h.clone()));
        Ok(h)
    }

    fn nsec3_match(&self, name: &Name) -> Step<Option<&'a NSEC3>> {
        for p in 0..self.params.len() {
            let h = self.hash(name, p)?;
            if let Some(x) = self.nsec3.iter().find(|x| x.params == p && x.owner == h) {
                return Ok(Some(x.rr));
            }
        }
        Ok(None)
    }

    fn nsec3_cover(&self, name: &Name) -> Step<Option<&'a NSEC3>> {
        for x in &self.nsec3 {
            let h = self.hash(name, x.params)?;
            if between(&x.owner[..], x.rr.next_hashed_owner_name(), &h[..]) {
                return Ok(Some(x.rr));
            }
        }
        Ok(None)
    }

    /// The closest encloser proof for `name` (RFC 5155 §8.3): the closest encloser, the
    /// next closer name and the NSEC3 covering it. `name` itself is assumed not to match.
    fn closest_encloser(&self, name: &Name) -> Step<(Name, Name, &'a NSEC3)> {
        let zone = self.zone;
        let mut next_closer = name.clone();
        while labels(&next_closer) > labels(zone) {
            let ce = next_closer.base_name();
            if let Some(m) = self.nsec3_match(&ce)? {
                if ce != *zone && ancestor_delegation(m.type_set()) {
                    return Err(contradicted(format!(
                        "the closest encloser of {name} in zone {zone} is the delegation or DNAME {ce}"
                    )));
                }
                return match self.nsec3_cover(&next_closer)? {
                    Some(c) => Ok((ce, next_closer, c)),
                    None => Err(missing(format!(
                        "no NSEC3 of zone {zone} covers {next_closer}, the next closer name of {name}"
                    ))),
                };
            }
            next_closer = ce;
        }
        Err(missing(format!(
            "no NSEC3 of zone {zone} proves a closest encloser of {name}"
        )))
    }

    fn nsec3_nxdomain(&self, qname: &Name) -> Step<Security> {
        self.check_iterations()?;
        if self.nsec3_match(qname)?.is_some() {
            return Err(contradicted(format!(
                "an NSEC3 of zone {} shows {qname} exists",
                self.zone
            )));
        }
        let (ce, _, cover) = self.closest_encloser(qname)?;
        let wildcard = wildcard_of(&ce)?;
        if self.nsec3_match(&wildcard)?.is_some() {
            return Err(contradicted(format!(
                "an NSEC3 of zone {} shows {wildcard} exists, so {qname} should have been answered from it",
                self.zone
            )));
        }
        if self.nsec3_cover(&wildcard)?.is_none() {
            return Err(missing(format!(
                "no NSEC3 of zone {} proves there is no wildcard {wildcard}",
                self.zone
            )));
        }
        Ok(self.opt_out(cover, qname))
    }

    fn nsec3_nodata(&self, qname: &Name, qtype: RecordType) -> Step<Security> {
        self.check_iterations()?;
        if let Some(n) = self.nsec3_match(qname)? {
            return self.bitmap(n.type_set(), qname, qtype, "NSEC3");
        }
        if qtype == RecordType::DS {
            // RFC 5155 §8.6: no DS at a name with no NSEC3 of its own: only an opt-out
            // span (an unsigned delegation) explains that.
            return self.opt_out_span(qname);
        }
        // Wildcard NODATA (RFC 5155 §8.7).
        let (ce, _, cover) = self.closest_encloser(qname)?;
        let wildcard = wildcard_of(&ce)?;
        let Some(w) = self.nsec3_match(&wildcard)? else {
            return Err(missing(format!(
                "no NSEC3 of zone {} shows {qname} or the wildcard {wildcard} without {qtype}",
                self.zone
            )));
        };
        self.bitmap(w.type_set(), &wildcard, qtype, "NSEC3")?;
        Ok(self.opt_out(cover, qname))
    }

    fn nsec3_wildcard(&self, qname: &Name, ce: &Name) -> Step<Security> {
        self.check_iterations()?;
        let next_closer = qname.trim_to(labels(ce) + 1);
        match self.nsec3_cover(&next_closer)? {
            Some(cover) => Ok(self.opt_out(cover, qname)),
            None => Err(missing(format!(
                "no NSEC3 of zone {} proves {next_closer} does not exist, as the wildcard answer for {qname} needs",
                self.zone
            ))),
        }
    }

    /// `name` has no NSEC3 of its own: a closest encloser proof whose next closer name is
    /// covered by an opt-out record (an unsigned delegation may be there).
    fn opt_out_span(&self, name: &Name) -> Step<Security> {
        let (_, next_closer, cover) = self.closest_encloser(name)?;
        if cover.opt_out() {
            Ok(Security::insecure(
                None,
                format!(
                    "{name} lies in an NSEC3 opt-out span of zone {} (covering {next_closer})",
                    self.zone
                ),
            ))
        } else {
            Err(missing(format!(
                "no NSEC3 of zone {} proves there is no DS for {name}",
                self.zone
            )))
        }
    }

    /// A proof resting on a covering record: insecure when the record is opt-out.
    fn opt_out(&self, cover: &NSEC3, qname: &Name) -> Security {
        if cover.opt_out() {
            Security::insecure(
                None,
                format!(
                    "the NSEC3 proof for {qname} rests on an opt-out span of zone {}",
                    self.zone
                ),
            )
        } else {
            Security::Secure
        }
    }
}
