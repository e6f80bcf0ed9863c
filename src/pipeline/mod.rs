//! The one road (SPEC §4): a [`Request`] in, an [`Outcome`] out. Every listener, `explain`
//! and `dnsgate test` call [`run`], so they cannot disagree; the caller then sends the
//! reply (or prints it) and hands the outcome to [`crate::record`], the one exit.
//!
//! 1. ACL — outsiders get REFUSED + EDE 18 and nothing else runs (§4.1); then what a
//!    forwarder does not pass on (unreadable messages, other opcodes and classes, zone
//!    transfers) is answered here.
//! 2. Facts — the client ([`Client`]: device, user, location; the packet-cache class comes
//!    from the same value), the name, type, categories, client GeoIP.
//! 3. Pre-resolution policies, then `resolve` policies picking upstreams (§4.3, §4.4). An
//!    `external` policy that matches asks its endpoint through [`Externals`] (§11); a
//!    `continue` verdict resumes evaluation after it.
//! 4. Resolution through the [`Resolver`] (the shared cache when serving).
//! 5. CNAME uncloaking: each CNAME target of the answer faces the pre-resolution block and
//!    override policies, as if the client had asked for it (§4.3, `[block]
//!    cname_inspection`).
//! 6. Post-resolution policies, only if nothing decided and the name resolved (§4.3).
//! 7. The answer: synthesized for a decision, else the upstream's (§4.5).
//!
//! The order is fixed here and nowhere else; policy evaluation itself has no I/O (an
//! external verdict is asked here, between two runs of it).

pub mod client;
mod ddr;
pub mod explain;
mod facts;
mod outcome;
mod request;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RecordType};

use crate::answer::{self, Reply};
use crate::external::{self, Answer, Source};
use crate::label::{Phase, QueryAction, ede};
use crate::policy::fields::{ListMemo, QueryFacts};
use crate::policy::{Decision, Flow, Tracer, Verdict};
use crate::resolve::{Cache, Question, Resolved};
use crate::runtime::{Runtime, UnknownClient};

pub use client::{Client, ClientClass};
pub use facts::post_facts;
pub use outcome::Outcome;
pub use request::{DeviceHint, Message, Request};

/// Where the pipeline gets real answers.
#[derive(Debug, Clone, Copy)]
pub enum Resolver<'a> {
    /// The message cache in front of the runtime's upstreams (serving; `explain` with a
    /// cache of its own).
    Cache(&'a Cache),
    /// These addresses are the answer, as A/AAAA records, instead of asking anyone
    /// (`explain --resolved`, a policy test case's `resolved`).
    Given(&'a [IpAddr]),
    /// Nothing is resolved: post-resolution policies do not run and an allowed query gets
    /// an empty answer (policy tests offline).
    Offline,
}

impl Resolver<'_> {
    /// Resolves `q` through upstream group `group` (`Ok(None)`: offline).
    async fn resolve(
        &self,
        rt: &Runtime,
        group: usize,
        q: &Question,
    ) -> Result<Option<Resolved>, crate::resolve::Error> {
        // RFC 8482: ANY gets one small synthesized answer, not everything upstream has (no
        // amplification, no upstream asked).
        if q.qtype == RecordType::ANY {
            return Ok(Some(Resolved::rfc8482(q)));
        }
        match self {
            Self::Cache(cache) => {
                let upstream = &rt.upstreams[group.min(rt.upstreams.len() - 1)];
                cache.resolve(upstream, q).await.map(Some)
            }
            Self::Given(ips) => Ok(Some(Resolved::given(q, ips))),
            Self::Offline => Ok(None),
        }
    }
}

/// Where `external` policies get their verdicts (SPEC §11).
#[derive(Debug, Clone, Copy)]
pub enum Externals<'a> {
    /// From their endpoints (serving; `explain --external`).
    Ask,
    /// Stubbed by policy name (`explain`, policy tests); a policy with no stub is not
    /// asked, and its `on_error` decides, as when its endpoint cannot be reached.
    Stubbed(&'a HashMap<String, external::Verdict>),
}

/// Receives what `explain` shows; `()` ignores it all (serving).
pub trait Observer: Tracer {
    /// External policy `policy` was (or, offline, would have been) sent `request`, and
    /// `answer` decided.
    fn external(&mut self, _policy: usize, _request: &external::Request<'_>, _answer: &Answer) {}

    /// A phase ran over `facts` (the steps it traced came just before).
    fn phase_done(&mut self, _phase: Phase, _facts: &QueryFacts<'_>) {}

    /// The block and override policies ran over CNAME target `facts.fqdn` (the steps
    /// traced came just before).
    fn cname_done(&mut self, _facts: &QueryFacts<'_>) {}
}

impl Observer for () {}

/// The text of the EDE 18 an outsider gets.
pub const NOT_ALLOWED: &str = "client not allowed";

/// Whether a client from `src` may query at all (SPEC §4.1). The UDP fast path asks this
/// too, to refuse outsiders from the header alone; it is the one place that decides.
#[inline]
pub fn admits(rt: &Runtime, src: IpAddr) -> bool {
    rt.is_allowed(src)
}

/// Whether step 1 (the ACL) lets a client at `src` whose device is hinted by `device` in:
/// what a replay from the packet cache must know first.
pub fn lets_in(rt: &Runtime, src: IpAddr, device: &DeviceHint) -> bool {
    match named(rt, device) {
        Named::Unknown if rt.unknown_client == UnknownClient::Refuse => false,
        Named::BySecret => true,
        _ => admits(rt, src),
    }
}

/// The EDE text for a token or label that names no device.
pub const UNKNOWN_DEVICE: &str = "unknown device";

/// What a request's device hint names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    /// No hint: the address alone.
    Nothing,
    /// A device, by an identifier anyone can send (a label matching an id).
    Device,
    /// A device, by a secret (a token, a `dot_name`).
    BySecret,
    /// Nobody.
    Unknown,
}

fn named(rt: &Runtime, device: &DeviceHint) -> Named {
    match device {
        DeviceHint::None => Named::Nothing,
        DeviceHint::Token(t) => match rt.directory.named_by_token(t) {
            (None, None) => Named::Unknown,
            _ => Named::BySecret,
        },
        DeviceHint::Label(l) => match rt.directory.identity_for_label(l) {
            Some((_, true)) => Named::BySecret,
            _ if rt.directory.location_for_label(l).is_some() => Named::BySecret,
            Some((_, false)) => Named::Device,
            None => Named::Unknown,
        },
    }
}

/// Runs SPEC §4 for one request.
#[tracing::instrument(level = "debug", skip_all, fields(client = %req.src))]
pub async fn run(
    rt: &Runtime,
    resolver: Resolver<'_>,
    externals: Externals<'_>,
    req: &Request,
    obs: &mut impl Observer,
) -> Outcome {
    let out = Outcome::new(rt.generation);
    // 1. ACL (§4.1) before anything else, readable or not: never an open resolver. A
    // device named by a secret (a DoH token, a DoT `dot_name`) comes in from anywhere
    // (SPEC §10); a token or label naming nobody is refused unless `unknown_client`
    // lets it in as anonymous.
    let named = named(rt, &req.device);
    if named == Named::Unknown && rt.unknown_client == UnknownClient::Refuse {
        let reply = Reply::rcode(ResponseCode::Refused).with_ede(ede::PROHIBITED, UNKNOWN_DEVICE);
        return out.with(QueryAction::Refused, reply);
    }
    if named != Named::BySecret && !admits(rt, req.src) {
        let reply = Reply::rcode(ResponseCode::Refused).with_ede(ede::PROHIBITED, NOT_ALLOWED);
        return out.with(QueryAction::Refused, reply);
    }
    let q = match &req.message {
        Message::Query(q) => q,
        Message::NotQuery => {
            return out.with(QueryAction::Error, Reply::rcode(ResponseCode::NotImp));
        }
        Message::BadVersion => {
            return out.with(QueryAction::Error, Reply::rcode(ResponseCode::BADVERS));
        }
        Message::Malformed => {
            return out.with(QueryAction::Error, Reply::rcode(ResponseCode::FormErr));
        }
    };
    // A filtering forwarder speaks for the IN class only, and is no zone-transfer proxy:
    // CHAOS (`version.bind`), AXFR and IXFR never go upstream.
    if q.qclass != DNSClass::IN || matches!(q.qtype, RecordType::AXFR | RecordType::IXFR) {
        return out.with(QueryAction::Refused, Reply::rcode(ResponseCode::Refused));
    }
    // RFC 9462: `resolver.arpa` is ours (never forwarded); `_dns` names our encrypted
    // endpoints. Not replayed: the hints depend on the address the query came to.
    if ddr::is_resolver_arpa(&q.name) {
        let reply = ddr::answer(rt, &q.name, q.qtype, req.listener.map(|l| l.ip()));
        return out.with(QueryAction::Allow, reply);
    }
    let mut out = answer_query(rt, (resolver, externals), req, q, out, obs).await;
    // An answer an external verdict took part in lives no longer than the verdict.
    if let Some(cap) = out.ttl_cap {
        out.reply.cap_ttl(cap);
    }
    out
}

/// Steps 2 to 6, for a query the ACL let in.
async fn answer_query(
    rt: &Runtime,
    (resolver, externals): (Resolver<'_>, Externals<'_>),
    req: &Request,
    q: &Question,
    mut out: Outcome,
    obs: &mut impl Observer,
) -> Outcome {
    // 2. Facts.
    let client = Client::identify(rt, req.src, &req.device);
    out.identity = client.identity.cloned();
    out.replay = Some(client.class(&rt.policies));
    let memo = ListMemo::default();
    let fqdn = crate::policy::fields::fqdn_of(&q.name);
    let rtype = facts::rtype_name(q.qtype);
    let (content, security) = rt.policies.categorize(&fqdn, &memo);
    let mut facts = QueryFacts {
        fqdn: &fqdn,
        rtype: &rtype,
        src_ip: client.ip,
        location: client.location,
        identity: client.identity.map(|a| &**a),
        content_categories: content.as_slice(),
        security_categories: security.as_slice(),
        src_geo: facts::src_geo(rt, client.ip),
        post: None,
        memo: &memo,
    };

    // 3. Pre-resolution policies, then resolve policies. An external policy that matches
    // asks its endpoint; `continue` goes on after it, as if it had not matched.
    let mut flow = rt.policies.run(Phase::Pre, &facts, req.time, obs);
    while let Flow::External { policy, resume } = flow {
        let answer = ask_external(rt, externals, policy, &client, &facts, req, obs).await;
        out.verdict_lives(answer.life);
        flow = match decision_of(rt, policy, answer.verdict) {
            None => rt
                .policies
                .run_from(Phase::Pre, &facts, req.time, obs, resume),
            Some(decision) => {
                let upstreams = match decision {
                    Decision::Block { .. } => 0,
                    _ => rt.policies.upstreams_for(&facts, req.time, obs),
                };
                Flow::Decide(Verdict {
                    policy,
                    decision,
                    upstreams,
                })
            }
        };
    }
    obs.phase_done(Phase::Pre, &facts);
    let group = match flow {
        Flow::Decide(v) => {
            decide(rt, resolver, q, v, Phase::Pre, &mut out).await;
            return out;
        }
        Flow::Continue { upstreams, policy } => {
            if let Some(p) = policy {
                out.action = QueryAction::Resolve;
                out.policy = Some(p);
                out.phase = Some(Phase::Pre);
            }
            upstreams
        }
        Flow::External { .. } => unreachable!("asked above"),
    };

    // 4. Resolution.
    let resolved = match resolver.resolve(rt, group, q).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            out.reply = Reply::default();
            out.replay = None;
            return out;
        }
        Err(e) => {
            out.failed(&e);
            return out;
        }
    };
    out.resolved(&resolved);
    if resolved.stale {
        ::metrics::counter!(crate::metrics::STALE_ANSWERS_TOTAL).increment(1);
    }

    // 5. CNAME uncloaking: nothing decided before resolution, so a block or override for
    // a name the answer leads through decides (an allow for the name itself never gets
    // here).
    if rt.cname_inspection && rt.policies.has_cname_policies() {
        if let Some((target, v)) = inspect_cnames(rt, &client, &rtype, &resolved, req, obs) {
            out.cname = Some(target);
            decide(rt, resolver, q, v, Phase::Pre, &mut out).await;
            return out;
        }
    }

    // 6. Post-resolution policies: only when the name resolved.
    if rt.policies.has_post() && resolved.msg.rcode == ResponseCode::NoError {
        let post = post_facts(rt, &resolved);
        facts.post = Some(&post);
        let flow = rt.policies.run(Phase::Post, &facts, req.time, obs);
        obs.phase_done(Phase::Post, &facts);
        if let Flow::Decide(v) = flow {
            if v.decision != Decision::Allow {
                decide(rt, resolver, q, v, Phase::Post, &mut out).await;
                return out;
            }
            note_match(&v, Phase::Post, &mut out);
            out.action = QueryAction::Allow;
        }
    }

    // 7. The real answer.
    out.reply = Reply::from_resolved(&resolved);
    out
}

/// The verdict of external policy `policy` for this query: from its endpoint, or a stub.
async fn ask_external(
    rt: &Runtime,
    externals: Externals<'_>,
    policy: usize,
    client: &Client<'_>,
    facts: &QueryFacts<'_>,
    req: &Request,
    obs: &mut impl Observer,
) -> Answer {
    let p = &rt.policies.policies[policy];
    let identity = client.identity.map(|i| &**i);
    // The country is sent whenever a GeoIP database is configured, read by a policy or not.
    let country = facts
        .src_geo
        .country
        .or_else(|| rt.geoip.as_ref().and_then(|g| g.lookup(client.ip).country));
    let request = external::Request {
        policy: &p.name,
        query: external::Question {
            name: facts.fqdn,
            qtype: facts.rtype,
        },
        client: external::ClientFacts {
            ip: client.ip,
            device: identity
                .map(|i| i.device_id.as_str())
                .filter(|d| !d.is_empty()),
            user: identity.map(|i| i.email.as_str()).filter(|e| !e.is_empty()),
            groups: identity.map_or_else(Vec::new, |i| {
                i.groups.iter().map(|g| g.name.as_str()).collect()
            }),
            location: client.location,
            country: country.as_ref().map(|c| c.as_str()),
        },
    };
    let spec = p.external.and_then(|i| rt.policies.externals.get(i));
    let answer = match (externals, p.external.and_then(|i| rt.endpoints.get(i))) {
        (Externals::Ask, Some(endpoint)) => endpoint.ask(&request, req.arrival, &rt.clock).await,
        (Externals::Stubbed(stubs), _) if stubs.contains_key(&p.name) => Answer {
            verdict: stubs[&p.name].clone(),
            life: Duration::ZERO,
            source: Source::Stubbed,
        },
        _ => Answer {
            verdict: spec.map_or(external::Verdict::Continue, |s| s.on_error.verdict()),
            life: Duration::ZERO,
            source: Source::NotAsked,
        },
    };
    obs.external(policy, &request, &answer);
    answer
}

/// What an external verdict decides (`None`: continue).
fn decision_of(rt: &Runtime, policy: usize, verdict: external::Verdict) -> Option<Decision> {
    let mode = rt.policies.policies[policy]
        .external
        .and_then(|i| rt.policies.externals.get(i))
        .map_or(crate::policy::BlockMode::Null, |e| e.block_mode);
    Some(match verdict {
        external::Verdict::Allow => Decision::Allow,
        external::Verdict::Block { reason } => Decision::Block { mode, reason },
        external::Verdict::Override { ips } => Decision::Override { ips, host: None },
        external::Verdict::Continue => return None,
    })
}

/// The first CNAME target of the answer (in answer order, which is chain order) that a
/// pre-resolution block or override policy matches, with its verdict.
fn inspect_cnames(
    rt: &Runtime,
    client: &Client<'_>,
    rtype: &str,
    resolved: &Resolved,
    req: &Request,
    obs: &mut impl Observer,
) -> Option<(String, Verdict)> {
    let targets = resolved.msg.answers.iter().filter_map(|r| match &r.data {
        hickory_proto::rr::RData::CNAME(c) => Some(crate::policy::fields::fqdn_of(&c.0)),
        _ => None,
    });
    for target in targets {
        let memo = ListMemo::default();
        let (content, security) = rt.policies.categorize(&target, &memo);
        let facts = QueryFacts {
            fqdn: &target,
            rtype,
            src_ip: client.ip,
            location: client.location,
            identity: client.identity.map(|a| &**a),
            content_categories: content.as_slice(),
            security_categories: security.as_slice(),
            src_geo: facts::src_geo(rt, client.ip),
            post: None,
            memo: &memo,
        };
        let verdict = rt.policies.run_cname(&facts, req.time, obs);
        obs.cname_done(&facts);
        if let Some(v) = verdict {
            return Some((target, v));
        }
    }
    None
}

fn note_match(v: &Verdict, phase: Phase, out: &mut Outcome) {
    out.policy = Some(v.policy);
    out.phase = Some(phase);
    out.decision = Some(v.decision.clone());
}

/// Builds the answer for a decision (§4.5).
async fn decide(
    rt: &Runtime,
    resolver: Resolver<'_>,
    q: &Question,
    v: Verdict,
    phase: Phase,
    out: &mut Outcome,
) {
    note_match(&v, phase, out);
    out.action = v.decision.action();
    let mut reply = match &v.decision {
        Decision::Allow => match resolver.resolve(rt, v.upstreams, q).await {
            Ok(Some(r)) => {
                out.resolved(&r);
                Reply::from_resolved(&r)
            }
            Ok(None) => {
                out.replay = None;
                Reply::default()
            }
            Err(e) => {
                out.replay = None;
                outcome::failure_reply(&e)
            }
        },
        Decision::Block { mode, .. } => {
            answer::block(&q.name, q.qtype, *mode, &rt.block_ips, rt.block_ttl)
        }
        Decision::Override { ips, host: None } => {
            answer::override_ips(&q.name, q.qtype, ips, rt.block_ttl)
        }
        Decision::Override {
            host: Some(host), ..
        } => cname_to(rt, resolver, q, host, v.upstreams, out).await,
        Decision::SafeSearch { target } | Decision::YtRestricted { target } => {
            match Name::from_ascii(target) {
                Ok(mut host) => {
                    host.set_fqdn(true);
                    cname_to(rt, resolver, q, &host, v.upstreams, out).await
                }
                Err(_) => Reply::rcode(ResponseCode::ServFail),
            }
        }
    };
    // One mapping from decision to EDE (blocky's ToExtendedErrorCode). A resolution failure
    // on the way (an override target that cannot be resolved) keeps its own EDE 22/23.
    if let (Some((code, text)), None) = (v.decision.ede(), &reply.ede) {
        reply = reply.with_ede(code, text.unwrap_or(""));
    }
    out.reply = reply;
}

/// A CNAME to `host` plus the target's records.
async fn cname_to(
    rt: &Runtime,
    resolver: Resolver<'_>,
    q: &Question,
    host: &Name,
    group: usize,
    out: &mut Outcome,
) -> Reply {
    if q.qtype == RecordType::CNAME {
        return answer::cname(&q.name, host, rt.block_ttl, None);
    }
    let tq = Question {
        name: host.clone(),
        ..q.clone()
    };
    match resolver.resolve(rt, group, &tq).await {
        Ok(r) => {
            if let Some(r) = &r {
                out.resolved(r);
            }
            answer::cname(&q.name, host, rt.block_ttl, r.as_ref())
        }
        // The target cannot be had: say so, as for any name that cannot be resolved,
        // rather than hand out a CNAME that leads nowhere.
        Err(e) => {
            out.replay = None;
            outcome::failure_reply(&e)
        }
    }
}
