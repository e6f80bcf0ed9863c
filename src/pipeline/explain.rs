//! What `dnsgate explain` and `POST /api/v1/explain` show (SPEC §1, §12): one request
//! through the very pipeline that serves — each policy considered, in evaluation order,
//! with its phase, whether it matched clause by clause, an external policy's request and
//! verdict, and the decision. Only the resolver differs: the given addresses, a cacheless
//! one when post-resolution policies (or CNAME uncloaking) need an answer, or none.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::Name;
use serde_json::{Value, json};

use super::{Externals, Observer, Outcome, Request, Resolver};
use crate::external::{Answer, Source};
use crate::label::{Phase, QueryAction, ede};
use crate::policy::fields::QueryFacts;
use crate::policy::{Decision, Step, Tracer};
use crate::resolve::Cache;
use crate::runtime::Runtime;

fn step_text(step: Step) -> &'static str {
    match step {
        Step::Disabled => "disabled",
        Step::OutsideSchedule => "outside schedule",
        Step::Evaluated(true) => "matched",
        Step::Evaluated(false) => "not matched",
        Step::NotApplicable => "matched, but the name is not a search engine name: not decisive",
    }
}

/// Collects what the pipeline did: each policy step, with its clauses judged against the
/// facts of its phase, and the query's facts.
struct Trace<'r> {
    rt: &'r Runtime,
    pending: Vec<(usize, Step)>,
    rows: Vec<Value>,
    facts: Option<Value>,
    resolved_ips: Option<Vec<IpAddr>>,
    /// What each external policy asked (or would have) and the verdict, by policy.
    externals: HashMap<usize, Value>,
}

impl Tracer for Trace<'_> {
    fn step(&mut self, idx: usize, step: Step) {
        self.pending.push((idx, step));
    }
}

impl Observer for Trace<'_> {
    fn external(&mut self, policy: usize, request: &crate::external::Request<'_>, answer: &Answer) {
        let url = self.rt.policies.policies[policy]
            .external
            .and_then(|i| self.rt.policies.externals.get(i))
            .map(|e| e.url.clone());
        let body: Value =
            serde_json::from_slice(&request.body(self.rt.clock.wall())).unwrap_or_default();
        let source = match answer.source {
            Source::Asked | Source::Shared => "asked".to_owned(),
            Source::Cached => "cached".to_owned(),
            Source::Stubbed => "stubbed".to_owned(),
            Source::Failed(f) => format!("failed ({}): on_error", f.label()),
            Source::NotAsked => "not asked (--external asks, --stub stubs): on_error".to_owned(),
        };
        let mut verdict = json!({
            "action": answer.verdict.as_str(), "source": source,
            "holds_s": answer.life.as_secs(),
        });
        match &answer.verdict {
            crate::external::Verdict::Block { reason: Some(r) } => verdict["reason"] = json!(&**r),
            crate::external::Verdict::Override { ips } => {
                verdict["ips"] = json!(ips.iter().map(ToString::to_string).collect::<Vec<_>>());
            }
            _ => {}
        }
        self.externals.insert(
            policy,
            json!({"url": url, "request": body, "verdict": verdict}),
        );
    }

    fn phase_done(&mut self, phase: Phase, facts: &QueryFacts<'_>) {
        for (i, step) in std::mem::take(&mut self.pending) {
            let mut row = policy_row(self.rt, i, step, phase, facts);
            if let Some(e) = self.externals.remove(&i) {
                row["external"] = e;
            }
            self.rows.push(row);
        }
        match phase {
            Phase::Pre => {
                self.facts = Some(json!({
                    "device": facts.identity.map(|i| i.device_id.clone()),
                    "user": facts.identity.and_then(|i| (!i.email.is_empty()).then(|| i.email.clone())),
                    "location": facts.location,
                    "content_categories": facts.content_categories,
                    "security_categories": facts.security_categories,
                }));
            }
            Phase::Post => self.resolved_ips = facts.post.map(|p| p.resolved_ips.clone()),
        }
    }

    fn cname_done(&mut self, facts: &QueryFacts<'_>) {
        for (i, step) in std::mem::take(&mut self.pending) {
            let mut row = policy_row(self.rt, i, step, Phase::Pre, facts);
            row["cname"] = json!(facts.fqdn);
            self.rows.push(row);
        }
    }
}

fn policy_row(rt: &Runtime, i: usize, step: Step, phase: Phase, facts: &QueryFacts<'_>) -> Value {
    let p = &rt.policies.policies[i];
    let clauses: Vec<_> = if matches!(step, Step::Evaluated(_) | Step::NotApplicable) {
        let builder = [
            ("include", &p.builder.include),
            ("require", &p.builder.require),
            ("exclude", &p.builder.exclude),
        ]
        .into_iter()
        .flat_map(|(what, exprs)| exprs.iter().map(move |e| (what, e)));
        [("traffic", &p.traffic), ("identity", &p.identity)]
            .into_iter()
            .chain(builder)
            .flat_map(|(what, e)| {
                e.trace(facts)
                    .into_iter()
                    .map(move |c| json!({"in": what, "text": c.text, "matched": c.matched}))
            })
            .collect()
    } else {
        Vec::new()
    };
    json!({
        "name": p.name, "precedence": p.precedence, "action": p.action.as_str(),
        "phase": phase.as_str(), "defined_at": p.location, "result": step_text(step),
        "clauses": clauses,
    })
}

/// The decision as JSON: what was done, by which policy, and the details of the answer.
pub fn decision_json(rt: &Runtime, o: &Outcome) -> Value {
    let mut v = match (&o.decision, o.action) {
        (Some(Decision::Block { mode, reason }), _) => json!({
            "action": "block", "mode": format!("{mode:?}").to_lowercase(), "reason": reason.as_deref(),
            "block_ips": rt.block_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }),
        (Some(Decision::Override { ips, host }), _) => json!({
            "action": "override",
            "ips": ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "host": host.as_ref().map(ToString::to_string),
        }),
        (Some(Decision::SafeSearch { target } | Decision::YtRestricted { target }), a) => {
            json!({"action": a.as_str(), "target": target})
        }
        (_, QueryAction::Refused) => {
            let outsider = o
                .reply
                .ede
                .as_ref()
                .is_some_and(|(c, _)| *c == ede::PROHIBITED);
            json!({"action": "refused", "reason": if outsider {
                "client not in allow_networks"
            } else {
                "zone transfers and other classes are not forwarded"
            }})
        }
        (_, QueryAction::Error) => {
            json!({"action": "error", "reason": o.reply.ede.as_ref().map(|(_, t)| t.clone())})
        }
        (_, QueryAction::Resolve) => {
            json!({"action": "resolve", "reason": "no policy decided: the real answer, from the upstreams a resolve policy picked"})
        }
        (Some(Decision::Allow), _) => json!({"action": "allow"}),
        (None, _) => json!({"action": "allow", "reason": "no policy decided: the real answer"}),
    };
    v["policy"] = json!(o.policy.map(|i| rt.policies.policies[i].name.clone()));
    v["phase"] = json!(o.phase.map(Phase::as_str));
    if let Some(c) = &o.cname {
        v["cname"] = json!(c);
    }
    v["rcode"] = json!(crate::label::Rcode::from(o.reply.rcode).as_str());
    if let Some((code, _)) = &o.reply.ede {
        v["ede"] = json!(code);
    }
    v
}

/// Explains `req` (with `resolved` as the answer's addresses, if any) as JSON: `query`,
/// `policies`, `resolved_ips`, `note` and `decision`.
pub async fn explain(
    rt: &Runtime,
    req: &Request,
    resolved: &[IpAddr],
    externals: Externals<'_>,
) -> Value {
    let clock = rt.clock.clone();
    let cache = Cache::new(0, false, false, clock);
    // The answer matters when post-resolution policies judge it, or when its CNAMEs face
    // the block and override policies (CNAME uncloaking).
    let has_post = rt.policies.has_post();
    let needs_answer = has_post || (rt.cname_inspection && rt.policies.has_cname_policies());
    let resolver = match (resolved.is_empty(), needs_answer) {
        (false, _) => Resolver::Given(resolved),
        (true, true) => Resolver::Cache(&cache),
        (true, false) => Resolver::Offline,
    };
    let mut trace = Trace {
        rt,
        pending: Vec::new(),
        rows: Vec::new(),
        facts: None,
        resolved_ips: None,
        externals: HashMap::new(),
    };
    let mut outcome = super::run(rt, resolver, externals, req, &mut trace).await;
    let mut unresolved = None;
    if !has_post && outcome.action == QueryAction::Error {
        // Only CNAME uncloaking wanted the answer, and there is none: say what the
        // policies decide for the name itself (offline, as without CNAME policies), and
        // that its CNAMEs could not be looked at.
        unresolved = outcome.reply.ede.as_ref().map(|(_, t)| t.clone());
        trace.rows.clear();
        trace.pending.clear();
        outcome = super::run(rt, Resolver::Offline, externals, req, &mut trace).await;
    }

    let decided_pre = outcome.phase == Some(Phase::Pre) && outcome.decision.is_some();
    let note = if let Some(why) = unresolved {
        Some(format!(
            "the name could not be resolved ({why}): its CNAMEs were not inspected"
        ))
    } else if !has_post {
        (!resolved.is_empty())
            .then(|| "no post-resolution policies: --resolved was not used".to_owned())
    } else if trace.resolved_ips.is_some() || decided_pre {
        None
    } else if outcome.action == QueryAction::Error {
        Some(format!(
            "resolution failed ({}): post-resolution policies not evaluated",
            outcome.reply.ede.as_ref().map_or("", |(_, t)| t.as_str())
        ))
    } else if outcome.reply.rcode != ResponseCode::NoError && outcome.action != QueryAction::Refused
    {
        Some(format!(
            "upstream answered {}: post-resolution policies do not run",
            outcome.reply.rcode
        ))
    } else {
        None
    };
    let mut query = json!({
        "name": crate::policy::fields::fqdn_of(&req.question().map_or_else(Name::root, |q| q.name.clone())),
        "type": req.question().map_or_else(String::new, |q| q.qtype.to_string()), "client": req.src.to_string(),
        "src_country": rt.geoip.as_ref().and_then(|g| g.lookup(req.src).country).map(|c| c.as_str().to_owned()),
    });
    if let (Some(q), Some(f)) = (
        query.as_object_mut(),
        trace.facts.as_ref().and_then(Value::as_object),
    ) {
        q.extend(f.clone());
    }
    let decision = decision_json(rt, &outcome);
    json!({
        "query": query, "policies": trace.rows,
        "resolved_ips": trace.resolved_ips.map(|v| v.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "note": note, "decision": decision,
    })
}
