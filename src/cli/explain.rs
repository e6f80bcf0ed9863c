//! `dnsgate explain` (SPEC §1): arguments in, [`crate::pipeline::explain`] run, its JSON
//! printed as it is or as text. The explanation: one query through the pipeline that serves — each
//! policy considered, in evaluation order, with its phase, whether it matched clause by
//! clause, and the decision. Only the resolver differs: the addresses of `--resolved`, a
//! cacheless one when post-resolution policies need an answer, or none.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use hickory_proto::rr::RecordType;

use super::{emit, load_or_report};
use crate::pipeline::{self, DeviceHint, Externals, Request};
use crate::policy::Action;

/// The query `explain` is asked about, and how external policies get their verdicts.
pub(super) struct Query<'a> {
    pub name: &'a str,
    pub qtype: &'a str,
    pub client: IpAddr,
    pub token: Option<&'a str>,
    pub resolved: &'a [IpAddr],
    /// Ask external policies' endpoints.
    pub external: bool,
    /// `POLICY=VERDICT` stubs.
    pub stubs: &'a [String],
}

pub(super) async fn explain(config: &Path, query: &Query<'_>, as_json: bool) -> anyhow::Result<()> {
    let Query {
        name,
        qtype,
        client,
        token,
        resolved,
        external,
        stubs,
    } = *query;
    let rt = load_or_report(config)?;
    let mut stubbed = HashMap::new();
    for s in stubs {
        let Some((policy, verdict)) = s.rsplit_once('=') else {
            anyhow::bail!("--stub `{s}`: expected POLICY=VERDICT");
        };
        if !rt
            .policies
            .policies
            .iter()
            .any(|p| p.name == policy && p.action == Action::External)
        {
            anyhow::bail!("--stub `{s}`: `{policy}` is not an external policy");
        }
        let Some(v) = crate::external::Verdict::stub(verdict) else {
            anyhow::bail!("--stub `{s}`: expected allow, block or continue after `=`");
        };
        stubbed.insert(policy.to_owned(), v);
    }
    let externals = if external {
        Externals::Ask
    } else {
        Externals::Stubbed(&stubbed)
    };
    let qname = super::query_name(name)?;
    let qtype: RecordType = qtype
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| anyhow::anyhow!("unknown record type `{qtype}`"))?;
    let clock = rt.clock.clone();
    let mut req = Request::query(&clock, client, qname, qtype);
    if let Some(t) = token {
        req.device = DeviceHint::Token(t.into());
    }
    let out = pipeline::explain::explain(&rt, &req, resolved, externals).await;
    if as_json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let ips: Option<Vec<IpAddr>> = out["resolved_ips"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect());
    print_human(
        &out["query"],
        out["policies"].as_array().map_or(&[][..], Vec::as_slice),
        ips.as_deref(),
        out["note"].as_str(),
        &out["decision"],
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
        if let Some(e) = r.get("external") {
            outln!("        asks {}: POST {}", s(&e["url"]), e["request"]);
            let v = &e["verdict"];
            let mut line = format!("        verdict: {} ({}", s(&v["action"]), s(&v["source"]));
            if let Some(h) = v["holds_s"].as_u64().filter(|h| *h > 0) {
                line += &format!(", holds {h} s");
            }
            line += ")";
            outln!("{line}");
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
