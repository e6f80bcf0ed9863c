//! `dnsgate explain` (SPEC §1): one query through the policies without serving — each
//! policy considered, in evaluation order, with its phase, whether it matched clause by
//! clause, and the decision the server would make.

use std::net::IpAddr;
use std::path::Path;

use anyhow::Context;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RecordType};
use jiff::Timestamp;
use serde_json::json;

use super::{emit, load_or_report};
use crate::geoip::GeoInfo;
use crate::policy::fields::{ListMemo, Phase, PostFacts, QueryFacts};
use crate::policy::{Decision, Flow, Step};
use crate::resolve::{Cache, Question};
use crate::runtime::{Runtime, canonical_ip};
use crate::server::handler::{fqdn_of, post_facts};

fn step_text(step: Step) -> &'static str {
    match step {
        Step::Disabled => "disabled",
        Step::OutsideSchedule => "outside schedule",
        Step::Evaluated(true) => "matched",
        Step::Evaluated(false) => "not matched",
        Step::NotApplicable => "matched, but the name is not a search engine name: not decisive",
    }
}

fn decision_json(rt: &Runtime, d: &Decision) -> serde_json::Value {
    match d {
        Decision::Allow => json!({"action": "allow"}),
        Decision::Block { mode, reason } => json!({
            "action": "block", "mode": format!("{mode:?}").to_lowercase(), "ede": 15, "reason": reason.as_deref(),
            "block_ips": rt.block_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }),
        Decision::Override { ips, host } => json!({
            "action": "override", "ede": 4,
            "ips": ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "host": host.as_ref().map(ToString::to_string),
        }),
        Decision::SafeSearch { target } => {
            json!({"action": "safesearch", "ede": 17, "target": target})
        }
        Decision::YtRestricted { target } => {
            json!({"action": "ytrestricted", "ede": 17, "target": target})
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn explain(
    config: &Path,
    name: &str,
    qtype: &str,
    client: IpAddr,
    token: Option<&str>,
    resolved: &[IpAddr],
    as_json: bool,
) -> anyhow::Result<()> {
    let rt = load_or_report(config)?;
    let mut qname = Name::from_utf8(name).with_context(|| format!("`{name}` is not a DNS name"))?;
    qname.set_fqdn(true);
    let qtype: RecordType = qtype
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| anyhow::anyhow!("unknown record type `{qtype}`"))?;
    let client = canonical_ip(client);
    let fqdn = fqdn_of(&qname);
    let rtype_str = qtype.to_string();
    let identity = match token {
        Some(t) => rt.directory.identity_for_token(t),
        None => rt.directory.identity_for_ip(client),
    };
    let memo = ListMemo::default();
    let (content, security) = rt.policies.categorize(&fqdn, &memo);
    let src_geo = rt
        .geoip
        .as_ref()
        .map_or(GeoInfo::default(), |g| g.lookup(client));
    let mut facts = QueryFacts {
        fqdn: &fqdn,
        rtype: &rtype_str,
        src_ip: client,
        location: rt.directory.location_for_ip(client),
        identity: identity.map(|a| &**a),
        content_categories: content.as_slice(),
        security_categories: security.as_slice(),
        src_geo,
        post: None,
            memo: &memo,
    };
    let now = Timestamp::now();
    let mut steps: Vec<(usize, Step, Phase)> = Vec::new();
    let mut resolved_ips: Option<Vec<IpAddr>> = None;
    let mut note: Option<String> = None;
    let client_allowed = rt.is_allowed(client);
    // As the server: zone transfers are refused before any policy runs.
    let transfer = matches!(qtype, RecordType::AXFR | RecordType::IXFR);
    let allowed = client_allowed && !transfer;
    let mut decision: Option<(Option<usize>, Phase, Decision)> = None;
    let post_storage: PostFacts;
    let mut failed: Option<crate::resolve::Error> = None;
    if allowed {
        let mut trace = Vec::new();
        let flow = rt.policies.run(Phase::Pre, &facts, now, &mut trace);
        steps.extend(trace.into_iter().map(|(i, s)| (i, s, Phase::Pre)));
        match flow {
            Flow::Decide(v) => decision = Some((Some(v.policy), Phase::Pre, v.decision)),
            Flow::Continue { upstreams, .. } if rt.policies.has_post() => {
                let post = if !resolved.is_empty() {
                    Some(PostFacts {
                        resolved_ips: resolved.to_vec(),
                        dst_geo: resolved
                            .iter()
                            .map(|ip| {
                                rt.geoip
                                    .as_ref()
                                    .map_or(GeoInfo::default(), |g| g.lookup(*ip))
                            })
                            .collect(),
                        ..Default::default()
                    })
                } else {
                    let q = Question {
                        name: qname.clone(),
                        qtype,
                        qclass: DNSClass::IN,
                        dnssec_ok: false,
                        checking_disabled: false,
                    };
                    let cache = Cache::new(0, false);
                    let g = &rt.upstreams[upstreams];
                    match cache.resolve(&**g, &q).await {
                        Ok(r) if r.msg.rcode == ResponseCode::NoError => Some(post_facts(&rt, &r)),
                        Ok(r) => {
                            note = Some(format!(
                                "upstream answered {}: post-resolution policies do not run",
                                r.msg.rcode
                            ));
                            None
                        }
                        Err(e) => {
                            note = Some(format!(
                                "resolution failed ({e}): post-resolution policies not evaluated"
                            ));
                            failed = Some(e);
                            None
                        }
                    }
                };
                if let Some(p) = post {
                    post_storage = p;
                    resolved_ips = Some(post_storage.resolved_ips.clone());
                    facts.post = Some(&post_storage);
                    let mut trace = Vec::new();
                    if let Flow::Decide(v) = rt.policies.run(Phase::Post, &facts, now, &mut trace) {
                        decision = Some((Some(v.policy), Phase::Post, v.decision));
                    }
                    steps.extend(trace.into_iter().map(|(i, s)| (i, s, Phase::Post)));
                }
            }
            Flow::Continue { .. } => {
                if !resolved.is_empty() {
                    note = Some("no post-resolution policies: --resolved was not used".to_owned());
                }
            }
        }
    }

    let policy_rows: Vec<serde_json::Value> = steps
        .iter()
        .map(|&(i, step, phase)| {
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
                        e.trace(&facts)
                            .into_iter()
                            .map(move |c| json!({"in": what, "text": c.text, "matched": c.matched}))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            json!({
                "name": p.name, "precedence": p.precedence, "action": p.action.as_str(),
                "phase": if phase == Phase::Pre { "pre" } else { "post" },
                "defined_at": p.location, "result": step_text(step), "clauses": clauses,
            })
        })
        .collect();
    let decision_value = match (&decision, allowed) {
        (_, false) if !client_allowed => {
            json!({"action": "refused", "ede": 18, "reason": "client not in allow_networks"})
        }
        (_, false) => json!({"action": "refused", "reason": "zone transfers are not forwarded"}),
        (Some((idx, phase, d)), _) => {
            let mut v = decision_json(&rt, d);
            v["policy"] = json!(idx.map(|i| rt.policies.policies[i].name.clone()));
            v["phase"] = json!(if *phase == Phase::Pre { "pre" } else { "post" });
            v
        }
        (None, true) => match &failed {
            // What the server would answer: SERVFAIL with EDE 22/23.
            Some(e) => {
                json!({"action": "error", "policy": null, "rcode": "SERVFAIL", "ede": e.ede_code(), "reason": e.to_string()})
            }
            None => {
                json!({"action": "allow", "policy": null, "reason": "no policy decided: the real answer"})
            }
        },
    };
    let query = json!({
        "name": fqdn, "type": rtype_str, "client": client.to_string(),
        "device": identity.map(|i| i.device_id.clone()),
        "user": identity.and_then(|i| (!i.email.is_empty()).then(|| i.email.clone())),
        "location": facts.location,
        "content_categories": content.as_slice(), "security_categories": security.as_slice(),
        "src_country": src_geo.country.map(|c| c.as_str().to_owned()),
    });
    if as_json {
        let out = json!({
            "query": query, "policies": policy_rows,
            "resolved_ips": resolved_ips.map(|v| v.iter().map(ToString::to_string).collect::<Vec<_>>()),
            "note": note, "decision": decision_value,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_human(
        &query,
        &policy_rows,
        resolved_ips.as_deref(),
        note.as_deref(),
        &decision_value,
    );
    Ok(())
}

fn print_human(
    query: &serde_json::Value,
    rows: &[serde_json::Value],
    resolved: Option<&[IpAddr]>,
    note: Option<&str>,
    decision: &serde_json::Value,
) {
    let s = |v: &serde_json::Value| v.as_str().map_or("-".to_owned(), str::to_owned);
    outln!(
        "query: {} {} from {} (device: {}, user: {}, location: {})",
        s(&query["name"]),
        s(&query["type"]),
        s(&query["client"]),
        s(&query["device"]),
        s(&query["user"]),
        s(&query["location"])
    );
    outln!(
        "categories: content {}, security {}",
        query["content_categories"],
        query["security_categories"]
    );
    if rows.is_empty() {
        outln!("no policies considered");
    }
    for (n, r) in rows.iter().enumerate() {
        let prec = r["precedence"]
            .as_i64()
            .map_or("-".to_owned(), |p| p.to_string());
        outln!(
            "{:>3}. [{:<4}] {:<32} precedence {:<6} {:<12} {}",
            n + 1,
            s(&r["phase"]),
            format!("\"{}\"", s(&r["name"])),
            prec,
            s(&r["action"]),
            s(&r["result"]).to_uppercase()
        );
        outln!("        defined at {}", s(&r["defined_at"]));
        for c in r["clauses"].as_array().into_iter().flatten() {
            outln!(
                "        {}: {}  => {}",
                s(&c["in"]),
                s(&c["text"]),
                c["matched"]
            );
        }
    }
    if let Some(ips) = resolved {
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        outln!(
            "resolved: {}",
            if ips.is_empty() {
                "(no addresses)".to_owned()
            } else {
                ips.join(" ")
            }
        );
    }
    if let Some(n) = note {
        outln!("note: {n}");
    }
    let mut line = format!("decision: {}", s(&decision["action"]));
    if let Some(p) = decision["policy"].as_str() {
        line += &format!(" by \"{p}\" ({}-resolution)", s(&decision["phase"]));
    }
    for key in ["mode", "reason", "target", "host"] {
        if let Some(v) = decision[key].as_str() {
            line += &format!(", {key} {v}");
        }
    }
    if let Some(ips) = decision["ips"].as_array().filter(|a| !a.is_empty()) {
        line += &format!(
            ", ips {}",
            ips.iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if let Some(e) = decision["ede"].as_u64() {
        line += &format!(", EDE {e}");
    }
    outln!("{line}");
}
