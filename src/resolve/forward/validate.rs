//! Validating in forward mode (SPEC §9, RFC 6840 §5.9): the servers are asked with DO=1
//! and CD=1, so that a validating upstream hands over even data it judges bogus, and the
//! answer is judged here as in recursive mode — the chain of trust fetched through the
//! same servers ([`Chain`] for [`Forwarder`]).
//!
//! A forwarder does not say which zone an answer came from. Signed data names its zone
//! (the RRSIG's signer); for unsigned data and unsigned denials the zone is found by
//! asking for the SOA of the name (the answer's owner, or the SOA of the negative answer
//! that comes back), and then that zone's trust decides: insecure (no AD) when it is an
//! unsigned delegation, bogus when it should have been signed. Found zones are kept for
//! [`ZONE_TTL`].

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};

use super::Forwarder;
use crate::resolve::recurse::dname_target;
use crate::resolve::validate::{self, Boxed, Chain, Fetched, Validator};
use crate::resolve::{Error, Question, Response};

/// Fetches (DS, DNSKEY and SOA questions) one client question may cause for validation.
const MAX_FETCHES: usize = 32;
/// How long the zone found for a name is remembered.
pub(super) const ZONE_TTL: Duration = Duration::from_secs(300);

/// One client question's validation budget.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    fetches: usize,
}

/// The chain of a response from `qname`: its last name, the owners of CNAMEs that stand
/// for a DNAME (validated through the DNAME), and whether data of `qtype` ends it.
struct Walk {
    last: Name,
    synthesized: Vec<Name>,
    data: bool,
}

fn walk(msg: &Message, qname: &Name, qtype: RecordType) -> Walk {
    let mut cur = qname.clone();
    let mut synthesized = Vec::new();
    for _ in 0..crate::resolve::recurse::MAX_CHAIN {
        if msg
            .answers
            .iter()
            .any(|r| r.name == cur && (r.record_type() == qtype || qtype == RecordType::ANY))
        {
            return Walk {
                last: cur,
                synthesized,
                data: true,
            };
        }
        let dname = msg.answers.iter().find(|r| {
            r.record_type() == RecordType::DNAME && r.name != cur && r.name.zone_of(&cur)
        });
        if let Some(d) = dname.filter(|_| qtype != RecordType::DNAME) {
            let Some(target) = dname_target(d) else {
                break;
            };
            let keep = (cur.num_labels() - d.name.num_labels()) as usize;
            let Some(new) = Name::from_labels(cur.iter().take(keep))
                .ok()
                .and_then(|p| p.append_domain(&target).ok())
            else {
                break;
            };
            synthesized.push(cur.clone());
            cur = new;
            continue;
        }
        let next = msg.answers.iter().find_map(|r| match &r.data {
            hickory_proto::rr::RData::CNAME(c) if r.name == cur && qtype != RecordType::CNAME => {
                Some(c.0.clone())
            }
            _ => None,
        });
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    Walk {
        last: cur,
        synthesized,
        data: false,
    }
}

/// RRSIG, NSEC and NSEC3 records, which a client that did not set DO does not get.
fn strip(msg: &mut Message, qtype: RecordType) {
    let keep = |r: &Record| {
        !matches!(
            r.record_type(),
            RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3
        ) || r.record_type() == qtype
    };
    msg.answers.retain(keep);
    msg.authorities.retain(keep);
}

/// Answers `q` through `f`'s servers, validated.
pub(super) async fn query(f: &Forwarder, v: &Validator, q: &Question) -> Result<Response, Error> {
    // CD=1: the client validates. Its data as the servers give it, never with AD.
    if q.checking_disabled {
        let mut r = f.ask(q).await?;
        r.msg.metadata.authentic_data = false;
        return Ok(r);
    }
    let asked = Question {
        dnssec_ok: true,
        checking_disabled: true,
        ..q.clone()
    };
    let mut r = f.ask(&asked).await?;
    r.msg.metadata.authentic_data = false;
    let rcode = r.msg.metadata.response_code;
    if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
        return Ok(r);
    }
    let chain = walk(&r.msg, &q.name, q.qtype);
    let fetched = Fetched {
        msg: std::mem::replace(&mut r.msg, Message::query()),
        zone: Name::root(),
    };
    let mut ctx = Ctx::default();
    let verdict = validate::judge(
        f,
        &mut ctx,
        &fetched,
        &fetched.msg.answers,
        &chain.synthesized,
        &chain.last,
        q.qtype,
        !chain.data,
    )
    .await;
    r.msg = fetched.msg;
    v.settle(&mut r, verdict)?;
    if !q.dnssec_ok {
        strip(&mut r.msg, q.qtype);
    }
    Ok(r)
}

impl Chain for Forwarder {
    type Ctx = Ctx;

    fn validator(&self) -> &Validator {
        self.validator
            .as_ref()
            .unwrap_or_else(|| unreachable!("validation runs only with a validator"))
    }

    fn fetch<'a>(
        &'a self,
        ctx: &'a mut Ctx,
        name: &'a Name,
        qtype: RecordType,
    ) -> Boxed<'a, Result<Fetched, String>> {
        Box::pin(async move {
            ctx.fetches += 1;
            if ctx.fetches > MAX_FETCHES {
                return Err(format!(
                    "more than {MAX_FETCHES} questions to validate one answer"
                ));
            }
            let q = Question {
                name: name.clone(),
                qtype,
                qclass: DNSClass::IN,
                dnssec_ok: true,
                checking_disabled: true,
            };
            let r = self
                .ask(&q)
                .await
                .map_err(|e| format!("cannot fetch {name} {qtype}: {e}"))?;
            match r.msg.metadata.response_code {
                ResponseCode::NoError | ResponseCode::NXDomain => Ok(Fetched {
                    msg: r.msg,
                    zone: Name::root(),
                }),
                other => Err(format!("cannot fetch {name} {qtype}: {other}")),
            }
        })
    }

    /// The zone of `owner`: where its SOA question lands. A name that is an alias is in
    /// the zone of its parent name (an apex cannot be one).
    fn zone_of<'a>(
        &'a self,
        ctx: &'a mut Ctx,
        owner: &'a Name,
        _: &'a Fetched,
    ) -> Boxed<'a, Result<Name, String>> {
        Box::pin(async move {
            let now = self.clock.now();
            if let Some((zone, until)) = self.zones.get(owner)
                && now < until
            {
                return Ok(zone);
            }
            let mut name = owner.clone();
            let zone = loop {
                let fetched = self.fetch(ctx, &name, RecordType::SOA).await?;
                let msg = &fetched.msg;
                if msg
                    .answers
                    .iter()
                    .any(|r| r.name == name && r.record_type() == RecordType::SOA)
                {
                    break name;
                }
                let alias = msg.answers.iter().any(|r| {
                    r.name == name
                        && matches!(r.record_type(), RecordType::CNAME | RecordType::DNAME)
                }) || msg
                    .answers
                    .iter()
                    .any(|r| r.record_type() == RecordType::DNAME && r.name.zone_of(&name));
                if alias && !name.is_root() {
                    name = name.base_name();
                    continue;
                }
                match msg
                    .authorities
                    .iter()
                    .find(|r| r.record_type() == RecordType::SOA && r.name.zone_of(&name))
                {
                    Some(soa) => break soa.name.clone(),
                    None => return Err(format!("no zone found for {owner}")),
                }
            };
            self.zones
                .insert(owner.to_lowercase(), (zone.clone(), now + ZONE_TTL));
            Ok(zone)
        })
    }
}
