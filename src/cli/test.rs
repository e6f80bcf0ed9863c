//! `dnsgate test FILE...`: policy test files kept beside the policies, each case one query
//! through the very pipeline that serves (the third caller, with the server and
//! `explain`), judged against what it expects.
//!
//! Cases run offline: a case with `resolved` addresses takes them as the answer, one with
//! `resolve = true` asks the configured upstreams (no cache), any other skips resolution
//! and with it the post-resolution policies.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hickory_proto::rr::{RData, RecordType};
use jiff::Timestamp;
use serde::Deserialize;
use toml::Spanned;

use super::{emit, load_or_report};
use crate::config::SourceFile;
use crate::diag::Diagnostic;
use crate::label::{QueryAction, Rcode};
use crate::pipeline::{self, DeviceHint, Externals, Outcome, Request, Resolver};
use crate::resolve::Cache;
use crate::runtime::Runtime;

/// A policy test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// The configuration under test, relative to the test file.
    config: Spanned<String>,
    /// The cases.
    #[serde(default, rename = "case")]
    cases: Vec<Spanned<Case>>,
}

/// One query and what it should get.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    query: String,
    #[serde(default, rename = "type")]
    qtype: Option<String>,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    resolved: Vec<String>,
    #[serde(default)]
    resolve: bool,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    external: HashMap<String, String>,
    expect: Expect,
}

/// What a case expects; only the keys given are checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    action: Option<String>,
    policy: Option<String>,
    ede: Option<u16>,
    rcode: Option<String>,
    answer: Option<Vec<String>>,
}

/// Tallies of a run.
#[derive(Debug, Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

/// Runs every file; prints one line per failing case, then `N passed, M failed`.
pub(super) async fn run(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut tally = Tally::default();
    let mut configs: HashMap<PathBuf, Runtime> = HashMap::new();
    for file in files {
        run_file(file, &mut configs, &mut tally).await?;
    }
    outln!("{} passed, {} failed", tally.passed, tally.failed);
    if tally.failed > 0 {
        anyhow::bail!("{} policy test case(s) failed", tally.failed);
    }
    Ok(())
}

async fn run_file(
    file: &Path,
    configs: &mut HashMap<PathBuf, Runtime>,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let parsed: TestFile = toml::from_str(&text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        anyhow::anyhow!("{}", Diagnostic::at_offset(file, &text, at, e.message()))
    })?;
    let config = file
        .parent()
        .unwrap_or(Path::new("."))
        .join(parsed.config.get_ref());
    // Test files beside each other share their configuration: load it once.
    let config = std::fs::canonicalize(&config).unwrap_or(config);
    if !configs.contains_key(&config) {
        let rt = load_or_report(&config)?;
        configs.insert(config.clone(), rt);
    }
    let rt = &configs[&config];
    // One index for every failing case's position, not a scan from the start for each.
    let source = SourceFile::new(file, text);
    for case in &parsed.cases {
        let at = |msg: String| source.diag_at(case.span().start, msg);
        let case = case.get_ref();
        let outcome = match run_case(rt, case).await {
            Ok(o) => o,
            Err(e) => anyhow::bail!("{}", at(format!("case \"{}\": {e}", case.name))),
        };
        let problems = judge(rt, &case.expect, &outcome);
        if problems.is_empty() {
            tally.passed += 1;
        } else {
            tally.failed += 1;
            let line = at(format!(
                "FAIL \"{}\": expected {}, decided {}",
                case.name,
                problems
                    .iter()
                    .map(|p| p.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                problems
                    .iter()
                    .map(|p| p.1.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
            outln!("{line}");
        }
    }
    Ok(())
}

/// Builds the case's request and runs it through the pipeline.
async fn run_case(rt: &Runtime, case: &Case) -> anyhow::Result<Outcome> {
    let name = super::query_name(&case.query)?;
    let qtype = case.qtype.as_deref().unwrap_or("A");
    let qtype: RecordType = qtype
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| anyhow::anyhow!("unknown record type `{qtype}`"))?;
    let client: IpAddr = match &case.client {
        Some(c) => c
            .parse()
            .map_err(|_| anyhow::anyhow!("client `{c}` is not an IP address"))?,
        None => IpAddr::from([127, 0, 0, 1]),
    };
    let mut req = Request::query(&rt.clock, client, name, qtype);
    req.device = match (&case.device, &case.token) {
        (Some(_), Some(_)) => anyhow::bail!("give device or token, not both"),
        (Some(d), None) => {
            if rt.directory.identity_for_device(d).is_none() {
                anyhow::bail!("no device `{d}` in the identities");
            }
            DeviceHint::Label(d.as_str().into())
        }
        (None, Some(t)) => DeviceHint::Token(t.as_str().into()),
        (None, None) => DeviceHint::None,
    };
    if let Some(t) = &case.time {
        req.time = t.parse::<Timestamp>().map_err(|e| {
            anyhow::anyhow!("time `{t}` is not an RFC 3339 time with an offset: {e}")
        })?;
    }
    let mut stubs = HashMap::new();
    for (policy, verdict) in &case.external {
        let external = rt
            .policies
            .policies
            .iter()
            .any(|p| p.name == *policy && p.action == crate::policy::Action::External);
        if !external {
            anyhow::bail!("`{policy}` is not an external policy");
        }
        let Some(v) = crate::external::Verdict::stub(verdict) else {
            anyhow::bail!(
                "external verdict `{verdict}` for `{policy}`: expected allow, block or continue"
            );
        };
        stubs.insert(policy.clone(), v);
    }
    let resolved = case
        .resolved
        .iter()
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| anyhow::anyhow!("resolved `{s}` is not an IP address"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cache = Cache::new(0, false, false, rt.clock.clone());
    let resolver = match (resolved.is_empty(), case.resolve) {
        (false, _) => Resolver::Given(&resolved),
        (true, true) => Resolver::Cache(&cache),
        (true, false) => Resolver::Offline,
    };
    let externals = Externals::Stubbed(&stubs);
    Ok(pipeline::run(rt, resolver, externals, &req, &mut ()).await)
}

/// What differs from the expectation: (expected, decided) pairs, one per key.
fn judge(rt: &Runtime, expect: &Expect, o: &Outcome) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let policy = o.policy.map(|i| rt.policies.policies[i].name.as_str());
    if let Some(want) = &expect.action {
        // A resolve policy picks upstreams without deciding: "allow" with no policy
        // expected is what it does.
        let same = QueryAction::parse(want) == Some(o.action)
            || (want == "allow" && o.action == QueryAction::Resolve && expect.policy.is_none());
        if !same {
            problems.push((
                format!("action={want}"),
                format!("action={}", o.action.as_str()),
            ));
        }
    }
    if let Some(want) = &expect.policy {
        if policy != Some(want.as_str()) {
            problems.push((
                format!("policy=\"{want}\""),
                format!("policy={}", quoted(policy)),
            ));
        }
    }
    if let Some(want) = expect.ede {
        let got = o.reply.ede.as_ref().map(|(c, _)| *c);
        if got != Some(want) {
            problems.push((
                format!("ede={want}"),
                format!("ede={}", got.map_or("none".into(), |c| c.to_string())),
            ));
        }
    }
    if let Some(want) = &expect.rcode {
        let got = Rcode::from(o.reply.rcode).as_str();
        if !want.eq_ignore_ascii_case(got) {
            problems.push((format!("rcode={want}"), format!("rcode={got}")));
        }
    }
    if let Some(want) = &expect.answer {
        let got = answer_values(o);
        let mut want_sorted: Vec<String> = want
            .iter()
            .map(|w| w.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        want_sorted.sort();
        if want_sorted != got {
            problems.push((format!("answer={want:?}"), format!("answer={got:?}")));
        }
    }
    problems
}

/// The answer section's values (addresses, names without the trailing dot), sorted.
fn answer_values(o: &Outcome) -> Vec<String> {
    let mut v: Vec<String> = o
        .reply
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(a) => a.0.to_string(),
            RData::CNAME(c) => crate::policy::fields::fqdn_of(&c.0),
            other => other.to_string(),
        })
        .collect();
    v.sort();
    v
}

fn quoted(s: Option<&str>) -> String {
    s.map_or("none".to_owned(), |s| format!("\"{s}\""))
}
