//! The request handler: the SPEC §4 pipeline, top to bottom.
//!
//! 1. ACL — outsiders get REFUSED + EDE 18 and nothing else runs (§4.1); then what a
//!    forwarder does not pass on (other classes than IN, zone transfers) is refused.
//! 2. Facts — name, type, client, identity, location, categories, client GeoIP.
//! 3. Pre-resolution policies, then `resolve` policies picking upstreams (§4.3, §4.4).
//! 4. Resolution through the shared cache (serve-stale on failure).
//! 5. Post-resolution policies, only if nothing decided and the name resolved (§4.3).
//! 6. The answer: synthesized for a decision, else the upstream's (§4.5).
//!
//! The order is fixed here and nowhere else; evaluation itself has no I/O.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use jiff::Timestamp;
use tracing::debug;

use super::Shared;
use super::packet::Meta;
use crate::answer::{self, EDE_PROHIBITED, EDE_STALE, Reply};
use crate::geoip::GeoInfo;
use crate::identity::Identity;
use crate::metrics;
use crate::policy::fields::{ListMemo, Phase, PostFacts, QueryFacts};
use crate::policy::{Decision, Flow, Verdict};
use crate::querylog::Entry;
use crate::resolve::forward::EDNS_PAYLOAD;
use crate::resolve::{Question, Resolved};
use crate::runtime::{Runtime, canonical_ip};

/// Our `hickory_server::RequestHandler`.
#[derive(Clone)]
pub struct Handler {
    shared: Arc<Shared>,
}

impl Handler {
    /// A handler over the shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// What the pipeline decided, for metrics and the query log.
#[derive(Debug)]
pub struct Outcome {
    /// The reply.
    pub reply: Reply,
    /// `allow`, `block`, `override`, `safesearch`, `ytrestricted`, `refused` or `error`.
    pub action: &'static str,
    /// The deciding policy (index into the runtime's policies).
    pub policy: Option<usize>,
    /// The phase it decided in.
    pub phase: Option<Phase>,
    /// The answer came from the cache.
    pub cached: bool,
    /// The client's device and user, if known (shared, not copied: only the query log
    /// reads them).
    pub identity: Option<Arc<Identity>>,
    /// The shortest cache life left of the answers resolved on the way (`None`: nothing
    /// was resolved): an answer built on them may not be repeated longer.
    pub fresh_for: Option<u32>,
    /// Something resolved on the way was served stale.
    pub stale: bool,
}

impl Outcome {
    /// Notes an answer resolved on the way.
    fn resolved(&mut self, r: &Resolved) {
        self.cached = r.cached;
        self.stale |= r.stale;
        let fresh = r.fresh_for();
        self.fresh_for = Some(self.fresh_for.map_or(fresh, |f| f.min(fresh)));
    }
}

/// The normalised form of a query name: lowercase, no trailing dot (root is "").
pub fn fqdn_of(name: &Name) -> String {
    let mut s = name.to_ascii();
    if s.ends_with('.') {
        s.pop();
    }
    s.make_ascii_lowercase();
    s
}

/// Collects the post-resolution facts from an answer (SPEC §3 post fields).
pub fn post_facts(rt: &Runtime, r: &Resolved) -> PostFacts {
    let mut post = PostFacts::default();
    for rec in &r.msg.answers {
        match &rec.data {
            RData::A(a) => post.resolved_ips.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => post.resolved_ips.push(IpAddr::V6(a.0)),
            RData::CNAME(c) => post.cnames.push(fqdn_of(&c.0)),
            RData::MX(mx) => post.mx.push(fqdn_of(&mx.exchange)),
            RData::PTR(p) => post.ptr.push(fqdn_of(&p.0)),
            RData::TXT(t) => post.txt.push(
                t.txt_data
                    .iter()
                    .map(|d| String::from_utf8_lossy(d))
                    .collect::<Vec<_>>()
                    .concat(),
            ),
            _ => {}
        }
    }
    if rt.policies.needs_dst_geo {
        if let Some(g) = &rt.geoip {
            post.dst_geo = post.resolved_ips.iter().map(|ip| g.lookup(*ip)).collect();
        }
    }
    post
}

impl Shared {
    /// Resolves a question through upstream group `group` and the cache.
    pub async fn resolve(
        &self,
        rt: &Runtime,
        group: usize,
        q: &Question,
    ) -> Result<Resolved, crate::resolve::Error> {
        let g = &rt.upstreams[group.min(rt.upstreams.len() - 1)];
        self.cache.resolve(&**g, q).await
    }

    /// Runs the SPEC §4 pipeline for one question. One span per query (fields are only
    /// formatted when debug logging is on).
    #[tracing::instrument(level = "debug", skip_all, fields(client = %src, qname = %q.name, qtype = %q.qtype))]
    pub async fn process(&self, rt: &Runtime, src: IpAddr, q: &Question) -> Outcome {
        let src = canonical_ip(src);
        let mut out = Outcome {
            reply: Reply::default(),
            action: "allow",
            policy: None,
            phase: None,
            cached: false,
            identity: None,
            fresh_for: None,
            stale: false,
        };
        // (The ACL ran in `handle_request`, before this.)
        // A filtering forwarder speaks for the IN class only, and is no zone-transfer
        // proxy: CHAOS (`version.bind`), AXFR and IXFR never go upstream.
        if q.qclass != DNSClass::IN || matches!(q.qtype, RecordType::AXFR | RecordType::IXFR) {
            out.reply = Reply::rcode(ResponseCode::Refused);
            out.action = "refused";
            return out;
        }
        // 2. Facts.
        let fqdn = fqdn_of(&q.name);
        let identity = rt.directory.identity_for_ip(src);
        out.identity = identity.cloned();
        let memo = ListMemo::default();
        let (content, security) = rt.policies.categorize(&fqdn, &memo);
        let src_geo = match (&rt.geoip, rt.policies.needs_src_geo) {
            (Some(g), true) => g.lookup(src),
            _ => GeoInfo::default(),
        };
        let rtype: &'static str = q.qtype.into();
        let rtype_owned;
        let rtype = if let RecordType::Unknown(code) = q.qtype {
            rtype_owned = format!("TYPE{code}");
            rtype_owned.as_str()
        } else {
            rtype
        };
        let mut facts = QueryFacts {
            fqdn: &fqdn,
            rtype,
            src_ip: src,
            location: rt.directory.location_for_ip(src),
            identity: identity.map(|a| &**a),
            content_categories: content.as_slice(),
            security_categories: security.as_slice(),
            src_geo,
            post: None,
            memo: &memo,
        };
        let now = Timestamp::now();

        // 3. Pre-resolution policies, then resolve policies.
        let group = match rt.policies.run(Phase::Pre, &facts, now, &mut ()) {
            Flow::Decide(v) => {
                self.decide(rt, q, v, Phase::Pre, &mut out).await;
                return out;
            }
            Flow::Continue { upstreams, .. } => upstreams,
        };

        // 4. Resolution.
        let resolved = match self.resolve(rt, group, q).await {
            Ok(r) => r,
            Err(e) => {
                out.reply =
                    Reply::rcode(ResponseCode::ServFail).with_ede(e.ede_code(), e.to_string());
                out.action = "error";
                return out;
            }
        };
        out.resolved(&resolved);
        if resolved.stale {
            ::metrics::counter!(metrics::STALE_ANSWERS_TOTAL).increment(1);
        }

        // 5. Post-resolution policies: only when the name resolved.
        if rt.policies.has_post() && resolved.msg.rcode == ResponseCode::NoError {
            let post = post_facts(rt, &resolved);
            facts.post = Some(&post);
            if let Flow::Decide(v) = rt.policies.run(Phase::Post, &facts, now, &mut ()) {
                if v.decision != Decision::Allow {
                    self.decide(rt, q, v, Phase::Post, &mut out).await;
                    return out;
                }
                self.note_match(rt, &v, Phase::Post, &mut out);
            }
        }

        // 6. The real answer.
        out.reply = Reply::from_resolved(&resolved);
        out
    }

    fn note_match(&self, rt: &Runtime, v: &Verdict, phase: Phase, out: &mut Outcome) {
        let p = &rt.policies.policies[v.policy];
        p.matches.increment(1);
        out.action = p.action.as_str();
        out.policy = Some(v.policy);
        out.phase = Some(phase);
    }

    /// Builds the answer for a decision (§4.5).
    async fn decide(
        &self,
        rt: &Runtime,
        q: &Question,
        v: Verdict,
        phase: Phase,
        out: &mut Outcome,
    ) {
        self.note_match(rt, &v, phase, out);
        let mut reply = match &v.decision {
            Decision::Allow => match self.resolve(rt, v.upstreams, q).await {
                Ok(r) => {
                    out.resolved(&r);
                    Reply::from_resolved(&r)
                }
                Err(e) => {
                    Reply::rcode(ResponseCode::ServFail).with_ede(e.ede_code(), e.to_string())
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
            } => self.cname_to(rt, q, host, v.upstreams, out).await,
            Decision::SafeSearch { target } | Decision::YtRestricted { target } => {
                match Name::from_ascii(target) {
                    Ok(mut host) => {
                        host.set_fqdn(true);
                        self.cname_to(rt, q, &host, v.upstreams, out).await
                    }
                    Err(_) => Reply::rcode(ResponseCode::ServFail),
                }
            }
        };
        // One mapping from decision to EDE (blocky's ToExtendedErrorCode).
        // A resolution failure on the way (an override target that cannot be resolved)
        // keeps its own EDE 22/23.
        if let (Some((code, text)), None) = (v.decision.ede(), &reply.ede) {
            reply = reply.with_ede(code, text.unwrap_or(""));
        }
        out.reply = reply;
    }

    async fn cname_to(
        &self,
        rt: &Runtime,
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
        match self.resolve(rt, group, &tq).await {
            Ok(r) => {
                out.resolved(&r);
                answer::cname(&q.name, host, rt.block_ttl, Some(&r))
            }
            // The target cannot be had: say so, as for any name that cannot be resolved,
            // rather than hand out a CNAME that leads nowhere.
            Err(e) => Reply::rcode(ResponseCode::ServFail).with_ede(e.ede_code(), e.to_string()),
        }
    }
}

fn ede_option(code: u16, text: &str) -> EdnsOption {
    let mut data = code.to_be_bytes().to_vec();
    data.extend_from_slice(text.as_bytes());
    EdnsOption::Unknown(u16::from(EdnsCode::Unknown(15)), data)
}

/// What [`Handler::serve`] answered, for the packet cache.
#[derive(Debug)]
pub struct Served {
    /// The response's header.
    pub info: ResponseInfo,
    /// The configuration generation that decided.
    pub generation: u64,
    /// What decided, if the query went through the pipeline (`None`: refused by the ACL,
    /// or malformed).
    pub meta: Option<Meta>,
    /// The answer is stale or was truncated: not one to repeat.
    pub transient: bool,
    /// How long the answer may be repeated at most (the shortest cache life of what was
    /// resolved for it; `None`: nothing was, only its own TTLs count).
    pub fresh_for: Option<u32>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.serve(request, response_handle).await.info
    }
}

impl Handler {
    /// Answers one request through `response_handle`.
    pub async fn serve<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> Served {
        let start = Instant::now();
        let rt = self.shared.runtime.load_full();
        let protocol = match request.protocol() {
            hickory_server::net::xfer::Protocol::Udp => "udp",
            hickory_server::net::xfer::Protocol::Tcp => "tcp",
            _ => "other",
        };
        let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let mut outcome = None;
        let question = request.queries.queries().first().map(|q| q.original());
        // 1. ACL (§4.1) before anything else, malformed or not: never an open resolver.
        let (reply, action) = if !rt.is_allowed(canonical_ip(request.src().ip())) {
            let reply =
                Reply::rcode(ResponseCode::Refused).with_ede(EDE_PROHIBITED, "client not allowed");
            (reply, "refused")
        } else if request.metadata.op_code != OpCode::Query {
            (Reply::rcode(ResponseCode::NotImp), "error")
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            // RFC 6891 §6.1.3: we speak EDNS version 0 only.
            (Reply::rcode(ResponseCode::BADVERS), "error")
        } else {
            match request.request_info() {
                Err(_) => (Reply::rcode(ResponseCode::FormErr), "error"),
                Ok(info) => {
                    let orig = info.query.original();
                    let q = Question {
                        name: orig.name().clone(),
                        qtype: orig.query_type(),
                        qclass: orig.query_class(),
                        dnssec_ok,
                        checking_disabled: request.metadata.checking_disabled,
                    };
                    let mut o = self.shared.process(&rt, request.src().ip(), &q).await;
                    let policy_name = |i: usize| rt.policies.policies[i].name.as_str();
                    debug!(client = %request.src().ip(), qname = %q.name, qtype = %q.qtype, action = o.action,
                        policy = o.policy.map_or("-", policy_name), rcode = %o.reply.rcode, cached = o.cached, "decision");
                    let r = (std::mem::take(&mut o.reply), o.action);
                    outcome = Some(o);
                    r
                }
            }
        };
        // The response OPT mirrors the request's (no OPT, no EDE): our payload is the
        // client's, clamped to 512..=1232, and the encoder truncates UDP answers to it.
        let edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().clamp(512, EDNS_PAYLOAD));
            e.set_dnssec_ok(dnssec_ok);
            if let Some((code, text)) = &reply.ede {
                e.options_mut().insert(ede_option(*code, text));
            }
            e
        });
        // A UDP answer too big for the client is sent as header, question and OPT with TC
        // set (RFC 6891 §7 keeps the OPT, and with it the EDE; hickory's encoder would drop
        // it when it truncates). Measured exactly only when the cheap bound says it may not fit.
        let mut reply = reply;
        let mut truncated = false;
        if request.protocol() == hickory_server::net::xfer::Protocol::Udp {
            let limit = edns.as_ref().map_or(512, |e| usize::from(e.max_payload()));
            let question_len = question.map_or(0, |q| q.name().len() + 5);
            let opt_len = edns.as_ref().map_or(0, |_| {
                11 + reply.ede.as_ref().map_or(0, |(_, t)| t.len() + 6)
            });
            if !reply.surely_fits(12 + question_len + opt_len, limit)
                && encoded_len(request, &reply, edns.as_ref()) > limit
            {
                reply.answers.clear();
                reply.authorities.clear();
                reply.additionals.clear();
                truncated = true;
            }
        }
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let mut md = Metadata::response_from_request(&request.metadata);
        md.recursion_available = true;
        md.truncation = truncated;
        md.response_code = reply.rcode;
        // RFC 6840 §5.7: AD goes back to a client that set DO or AD.
        md.authentic_data = reply.authentic_data && (dnssec_ok || request.metadata.authentic_data);
        let response = builder.build(
            md,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        // Counted before the answer leaves: whoever has the answer sees it counted.
        ::metrics::counter!(metrics::QUERIES_TOTAL, "protocol" => protocol, "action" => action)
            .increment(1);
        ::metrics::counter!(metrics::RESPONSES_TOTAL, "rcode" => rcode_label(reply.rcode))
            .increment(1);
        ::metrics::histogram!(metrics::QUERY_DURATION_SECONDS)
            .record(start.elapsed().as_secs_f64());
        let info = match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                debug!(error = %e, "failed to send response");
                let mut md = Metadata::response_from_request(&request.metadata);
                md.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: md,
                    counts: HeaderCounts::default(),
                })
            }
        };
        let elapsed = start.elapsed();
        let meta = outcome.as_ref().map(|o| Meta {
            action,
            policy: o.policy,
            phase: o.phase,
            rcode: reply.rcode,
            resolved: matches!(action, "allow" | "resolve"),
        });
        let transient = truncated
            || reply.ede.as_ref().is_some_and(|(c, _)| *c == EDE_STALE)
            || outcome.as_ref().is_some_and(|o| o.stale);
        let fresh_for = outcome.as_ref().and_then(|o| o.fresh_for);
        if let Some(log) = &self.shared.querylog {
            // Every query is logged, the malformed and refused ones too.
            let (identity, policy, phase, cached) = match outcome {
                Some(o) => (o.identity, o.policy, o.phase, o.cached),
                None => (None, None, None, false),
            };
            let device = identity.as_ref().map(|i| i.device_id.clone());
            let user = identity
                .as_ref()
                .filter(|i| !i.email.is_empty())
                .map(|i| i.email.clone());
            let policy = policy.map(|i| rt.policies.policies[i].name.clone());
            log.log(Entry {
                time: Timestamp::now(),
                client: canonical_ip(request.src().ip()),
                device,
                user,
                name: question.map(|q| fqdn_of(q.name())).unwrap_or_default(),
                qtype: question.map(|q| q.query_type()),
                action,
                policy,
                phase,
                rcode: reply.rcode,
                latency: elapsed,
                cached,
            });
        }
        Served {
            info,
            generation: rt.generation,
            meta,
            transient,
            fresh_for,
        }
    }
}

/// The exact encoded size of a reply (with name compression), for the rare large answer.
fn encoded_len(request: &Request, reply: &Reply, edns: Option<&Edns>) -> usize {
    let mut m = hickory_proto::op::Message::new(
        request.metadata.id,
        hickory_proto::op::MessageType::Response,
        OpCode::Query,
    );
    m.queries = request
        .queries
        .queries()
        .iter()
        .map(|q| q.original().clone())
        .collect();
    m.answers = reply.answers.clone();
    m.authorities = reply.authorities.clone();
    m.additionals = reply.additionals.clone();
    if let Some(e) = edns {
        m.set_edns(e.clone());
    }
    m.to_vec().map_or(usize::MAX, |v| v.len())
}

/// A static label for an rcode.
pub fn rcode_label(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}
