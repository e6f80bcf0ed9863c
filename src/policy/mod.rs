//! Policies (SPEC §3, §4): compiled once at load into a [`PolicySet`], evaluated per query
//! without I/O by [`PolicySet::run`].
//!
//! The order of SPEC §4 lives here and nowhere else: pre-resolution policies by precedence
//! (ties: file order), then the first matching `resolve` policy picks upstreams, then —
//! only if nothing decided — post-resolution policies. The first decisive match wins.

pub mod build;
pub mod builder;
pub mod expr;
pub mod fields;
pub mod safesearch;
pub mod schedule;
pub mod scope;

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::Name;
use jiff::Timestamp;

use crate::diag::Diagnostic;
use crate::label::{QueryAction, ede};
use crate::lists::List;
use expr::Expr;
use fields::{ListMemo, Phase, QueryFacts};
use schedule::Schedule;

pub use build::{BuildEnv, build};

/// What a policy does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Answer with the real answer; stop evaluating.
    Allow,
    /// Answer with a block.
    Block,
    /// Answer with configured addresses or a CNAME.
    Override,
    /// Rewrite search engines to their safe-search hosts.
    SafeSearch,
    /// Rewrite YouTube to its restricted host.
    YtRestricted,
    /// Pick the upstreams for this query; not decisive.
    Resolve,
    /// Ask the policy's endpoint for the verdict (SPEC §11).
    External,
}

impl Action {
    /// Parses the `action` key.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "allow" => Self::Allow,
            "block" => Self::Block,
            "override" => Self::Override,
            "safesearch" => Self::SafeSearch,
            "ytrestricted" => Self::YtRestricted,
            "resolve" => Self::Resolve,
            "external" => Self::External,
            _ => return None,
        })
    }

    /// The action as written in configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Block => "block",
            Self::Override => "override",
            Self::SafeSearch => "safesearch",
            Self::YtRestricted => "ytrestricted",
            Self::Resolve => "resolve",
            Self::External => "external",
        }
    }
}

/// How a block is answered (SPEC §2 `[block] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockMode {
    /// A 0.0.0.0, AAAA ::, other types NODATA.
    Null,
    /// NXDOMAIN.
    NxDomain,
    /// REFUSED.
    Refused,
    /// The `[block] ips` block-page addresses; NODATA for a family not given.
    Ips,
}

impl BlockMode {
    /// Parses a block mode.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "null" => Self::Null,
            "nxdomain" => Self::NxDomain,
            "refused" => Self::Refused,
            "ips" => Self::Ips,
            _ => return None,
        })
    }
}

/// The outcome of a decisive policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The real answer.
    Allow,
    /// A block answer.
    Block {
        /// How to answer.
        mode: BlockMode,
        /// EDE extra text.
        reason: Option<Arc<str>>,
    },
    /// Answer from `override_ips`, or CNAME to `override_host`.
    Override {
        /// Addresses for A/AAAA.
        ips: Arc<[IpAddr]>,
        /// CNAME target.
        host: Option<Name>,
    },
    /// CNAME to a safe-search host (the target is known at decision time).
    SafeSearch {
        /// The safe-search host.
        target: &'static str,
    },
    /// CNAME to YouTube's restricted host.
    YtRestricted {
        /// The restricted host.
        target: &'static str,
    },
}

impl Decision {
    /// What was done with the query, as metrics and the query log say it.
    pub fn action(&self) -> QueryAction {
        match self {
            Self::Allow => QueryAction::Allow,
            Self::Block { .. } => QueryAction::Block,
            Self::Override { .. } => QueryAction::Override,
            Self::SafeSearch { .. } => QueryAction::SafeSearch,
            Self::YtRestricted { .. } => QueryAction::YtRestricted,
        }
    }

    /// The Extended DNS Error (RFC 8914) code this decision carries, with its text.
    pub fn ede(&self) -> Option<(u16, Option<&str>)> {
        match self {
            Self::Allow => None,
            Self::Block { reason, .. } => Some((ede::BLOCKED, reason.as_deref())),
            Self::Override { .. } => Some((ede::FORGED, None)),
            Self::SafeSearch { .. } | Self::YtRestricted { .. } => Some((ede::FILTERED, None)),
        }
    }
}

/// A decisive match: which policy, and what it decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Index into [`PolicySet::policies`].
    pub policy: usize,
    /// What to answer.
    pub decision: Decision,
    /// For pre-resolution decisions that resolve (allow, override by host, safe search):
    /// the upstream group the `resolve` policies picked for the query.
    pub upstreams: usize,
}

/// What evaluation says to do next (hickory's Continue / Break).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Nothing decided: resolve, with this upstream group (0 = the default upstreams).
    Continue {
        /// Upstream group picked by a `resolve` policy.
        upstreams: usize,
        /// The `resolve` policy that picked them.
        policy: Option<usize>,
    },
    /// A policy decided.
    Decide(Verdict),
    /// An `external` policy matched: its endpoint decides. Evaluation goes on from
    /// `resume` (with [`PolicySet::run_from`]) if the verdict is to continue.
    External {
        /// Index into [`PolicySet::policies`].
        policy: usize,
        /// Where evaluation resumes.
        resume: usize,
    },
}

/// An `external` policy's endpoint as configured, its secret not read yet (the runtime
/// reads it once per load, and keeps the endpoint across URL-list swaps).
#[derive(Debug, Clone)]
pub struct ExternalPolicy {
    /// The policy's name.
    pub policy: String,
    /// Checked: `https://`, or `http://` to loopback.
    pub url: String,
    /// The secret's file.
    pub secret_file: std::path::PathBuf,
    /// Where `secret_file` is written, for a diagnostic if it cannot be read.
    pub secret_at: crate::diag::Diagnostic,
    /// From the query's arrival.
    pub timeout: std::time::Duration,
    /// Without a verdict.
    pub on_error: crate::external::OnError,
    /// The longest a verdict is kept.
    pub max_cache: std::time::Duration,
    /// How a `block` verdict is answered (the policy's `block_mode`, else `[block] mode`).
    pub block_mode: BlockMode,
}

/// The rule-builder part of a policy.
#[derive(Debug, Default)]
pub struct Builder {
    /// Any must match (if non-empty).
    pub include: Vec<Expr>,
    /// All must match.
    pub require: Vec<Expr>,
    /// None may match.
    pub exclude: Vec<Expr>,
}

impl Builder {
    fn matches(&self, f: &QueryFacts<'_>) -> bool {
        (self.include.is_empty() || self.include.iter().any(|e| e.eval(f)))
            && self.require.iter().all(|e| e.eval(f))
            && !self.exclude.iter().any(|e| e.eval(f))
    }
}

/// One compiled policy.
#[derive(Debug)]
pub struct CompiledPolicy {
    /// Name (metrics label, logs).
    pub name: String,
    /// Optional stable id.
    pub id: Option<String>,
    /// Precedence as configured.
    pub precedence: Option<i64>,
    /// The action.
    pub action: Action,
    /// Pre or post resolution.
    pub phase: Phase,
    /// Disabled policies are skipped.
    pub enabled: bool,
    /// Active only inside these times.
    pub schedule: Option<Schedule>,
    /// The traffic expression.
    pub traffic: Expr,
    /// The identity expression.
    pub identity: Expr,
    /// The rule builder.
    pub builder: Builder,
    /// The decision made when this policy matches (for decisive actions other than the
    /// safe-search ones, whose target depends on the name).
    pub decision: Option<Decision>,
    /// `resolve`: the upstream group.
    pub upstreams: usize,
    /// `external`: its index in [`PolicySet::externals`] (and the runtime's endpoints).
    pub external: Option<usize>,
    /// Where the policy was defined (`path:line:col`), for explanations.
    pub location: String,
    /// `dnsgate_policy_matches_total{policy=name}`, registered at load so a match costs
    /// no label allocation.
    pub matches: ::metrics::Counter,
}

impl CompiledPolicy {
    /// Whether all its conditions hold for the query.
    pub fn matches(&self, f: &QueryFacts<'_>) -> bool {
        self.traffic.eval(f) && self.identity.eval(f) && self.builder.matches(f)
    }
}

/// A category built from domain lists.
#[derive(Debug)]
pub struct Category {
    /// Its id.
    pub id: u32,
    /// Display name.
    pub name: String,
    /// A security category.
    pub security: bool,
    /// Its lists.
    pub lists: Vec<Arc<List>>,
}

/// Why a policy was not evaluated, or what it gave, for `dnsgate explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `enabled = false`.
    Disabled,
    /// Outside its schedule.
    OutsideSchedule,
    /// Evaluated: whether it matched.
    Evaluated(bool),
    /// A safe-search policy matched but the name is not a search engine name: not decisive.
    NotApplicable,
}

/// Receives each policy considered; `()` ignores them (the serving path).
pub trait Tracer {
    /// Policy `idx` was considered with this outcome.
    fn step(&mut self, idx: usize, step: Step);
}

impl Tracer for () {
    #[inline]
    fn step(&mut self, _: usize, _: Step) {}
}

impl Tracer for Vec<(usize, Step)> {
    fn step(&mut self, idx: usize, step: Step) {
        self.push((idx, step));
    }
}

/// Category ids found for a name, without allocating.
#[derive(Debug, Clone, Copy)]
pub struct IdBuf {
    ids: [u32; 64],
    len: usize,
}

impl Default for IdBuf {
    fn default() -> Self {
        Self {
            ids: [0; 64],
            len: 0,
        }
    }
}

impl IdBuf {
    fn push(&mut self, id: u32) {
        if self.len < self.ids.len() && !self.as_slice().contains(&id) {
            self.ids[self.len] = id;
            self.len += 1;
        }
    }

    /// The ids.
    pub fn as_slice(&self) -> &[u32] {
        &self.ids[..self.len]
    }
}

/// All policies and categories of one configuration, in evaluation order.
#[derive(Debug, Default)]
pub struct PolicySet {
    /// Every policy, sorted by (precedence, file order).
    pub policies: Vec<CompiledPolicy>,
    /// Categories.
    pub categories: Vec<Category>,
    pre: Vec<usize>,
    resolve: Vec<usize>,
    post: Vec<usize>,
    /// Whether any policy looks at categories (else they are not computed).
    pub needs_categories: bool,
    /// Whether any policy looks at the client's GeoIP.
    pub needs_src_geo: bool,
    /// Whether any policy reads `dns.src_ip`.
    pub needs_src_ip: bool,
    /// Whether any policy has a schedule (its verdicts may change from one minute to
    /// the next).
    pub has_schedules: bool,
    /// Whether any policy looks at the resolved addresses' GeoIP.
    pub needs_dst_geo: bool,
    /// The `external` policies' endpoints, in file order.
    pub externals: Vec<ExternalPolicy>,
    /// What compiled but deserves a word (a network with host bits set), with its
    /// position; `dnsgate check` prints them.
    pub warnings: Vec<Diagnostic>,
    /// The names policies require (see [`expr::Expr::required_names`]): name → (policy,
    /// exact). A query probes its name and parents here and skips the gated policies
    /// none of whose names it has — `dns.fqdn == "x"` policies cost nothing for other names.
    gates: hashbrown::HashMap<Box<str>, Vec<(u32, bool)>, foldhash::fast::FixedState>,
    /// `gated[i]`: policy i can only match a name found through `gates`.
    gated: Vec<bool>,
}

/// The policies a name may match, as far as the name-gates tell (a bit per policy).
struct Possible([u64; Self::WORDS]);

impl Possible {
    const WORDS: usize = 32;
    /// Policies beyond this are never gated.
    const MAX: usize = Self::WORDS * 64;

    fn has(&self, idx: usize) -> bool {
        self.0[idx / 64] & (1 << (idx % 64)) != 0
    }
}

impl PolicySet {
    /// Whether any post-resolution policy exists.
    pub fn has_post(&self) -> bool {
        !self.post.is_empty()
    }

    /// The content and security categories of a name (it or a parent is in a category list).
    pub fn categorize(&self, fqdn: &str, memo: &ListMemo) -> (IdBuf, IdBuf) {
        let (mut content, mut security) = (IdBuf::default(), IdBuf::default());
        if !self.needs_categories {
            return (content, security);
        }
        for cat in &self.categories {
            let hit = cat.lists.iter().any(|l| match &**l {
                List::Domain(d) => memo.matches(d, fqdn),
                _ => false,
            });
            if hit {
                if cat.security {
                    security.push(cat.id)
                } else {
                    content.push(cat.id)
                }
            }
        }
        (content, security)
    }

    /// Runs one phase (SPEC §4). `Phase::Pre` also runs the `resolve` policies when nothing
    /// decided; `Phase::Post` expects `facts.post` to be set.
    pub fn run(
        &self,
        phase: Phase,
        facts: &QueryFacts<'_>,
        now: Timestamp,
        tracer: &mut impl Tracer,
    ) -> Flow {
        self.run_from(phase, facts, now, tracer, 0)
    }

    /// [`Self::run`] from position `from` of the phase's order: where a [`Flow::External`]
    /// said to resume when its endpoint's verdict is to continue.
    pub fn run_from(
        &self,
        phase: Phase,
        facts: &QueryFacts<'_>,
        now: Timestamp,
        tracer: &mut impl Tracer,
        from: usize,
    ) -> Flow {
        let order = match phase {
            Phase::Pre => &self.pre,
            Phase::Post => &self.post,
        };
        let possible = self.possible(facts.fqdn);
        for (at, &idx) in order.iter().enumerate().skip(from) {
            let p = &self.policies[idx];
            if !self.is_active(idx, p, now, tracer) {
                continue;
            }
            let matched = self.may_match(idx, &possible) && p.matches(facts);
            if !matched {
                tracer.step(idx, Step::Evaluated(false));
                continue;
            }
            let decision = match (&p.decision, p.action) {
                (Some(d), _) => d.clone(),
                (None, Action::SafeSearch) => match safesearch::target(facts.fqdn, false) {
                    Some(target) => Decision::SafeSearch { target },
                    None => {
                        tracer.step(idx, Step::NotApplicable);
                        continue;
                    }
                },
                (None, Action::YtRestricted) => match safesearch::target(facts.fqdn, true) {
                    Some(target) => Decision::YtRestricted { target },
                    None => {
                        tracer.step(idx, Step::NotApplicable);
                        continue;
                    }
                },
                (None, Action::External) => {
                    tracer.step(idx, Step::Evaluated(true));
                    return Flow::External {
                        policy: idx,
                        resume: at + 1,
                    };
                }
                (None, _) => {
                    tracer.step(idx, Step::Evaluated(true));
                    continue;
                }
            };
            tracer.step(idx, Step::Evaluated(true));
            // Decisions that still resolve something (the name itself, or an override or
            // safe-search target) use the upstreams the resolve policies pick for the query:
            // `intranet-old.corp.example` → `intranet.corp.example` must ask the corporate DNS.
            let upstreams = match (phase, &decision) {
                (Phase::Pre, Decision::Block { .. }) | (Phase::Post, _) => 0,
                (Phase::Pre, _) => self.pick_upstreams(facts, &possible, now, tracer).0,
            };
            return Flow::Decide(Verdict {
                policy: idx,
                decision,
                upstreams,
            });
        }
        if phase == Phase::Pre {
            let (upstreams, policy) = self.pick_upstreams(facts, &possible, now, tracer);
            return Flow::Continue { upstreams, policy };
        }
        Flow::Continue {
            upstreams: 0,
            policy: None,
        }
    }

    /// CNAME uncloaking (SPEC §4.3): the first pre-resolution block or override policy
    /// matching `facts` (whose name is a CNAME target of the answer), if any. Other
    /// actions are not consulted: only a block or an override may follow a CNAME.
    pub fn run_cname(
        &self,
        facts: &QueryFacts<'_>,
        now: Timestamp,
        tracer: &mut impl Tracer,
    ) -> Option<Verdict> {
        let possible = self.possible(facts.fqdn);
        for &idx in &self.pre {
            let p = &self.policies[idx];
            if !matches!(p.action, Action::Block | Action::Override)
                || !self.is_active(idx, p, now, tracer)
            {
                continue;
            }
            let matched = self.may_match(idx, &possible) && p.matches(facts);
            tracer.step(idx, Step::Evaluated(matched));
            if let (true, Some(decision)) = (matched, &p.decision) {
                return Some(Verdict {
                    policy: idx,
                    decision: decision.clone(),
                    upstreams: 0,
                });
            }
        }
        None
    }

    /// Whether any pre-resolution block or override policy exists (else CNAME targets
    /// need no look).
    pub fn has_cname_policies(&self) -> bool {
        self.pre
            .iter()
            .any(|&i| matches!(self.policies[i].action, Action::Block | Action::Override))
    }

    /// The upstream group the `resolve` policies pick for a query an `external` verdict
    /// allowed or overrode (0: the default upstreams).
    pub fn upstreams_for(
        &self,
        facts: &QueryFacts<'_>,
        now: Timestamp,
        tracer: &mut impl Tracer,
    ) -> usize {
        let possible = self.possible(facts.fqdn);
        self.pick_upstreams(facts, &possible, now, tracer).0
    }

    /// The first matching `resolve` policy's upstream group (0 and `None` if none matches).
    fn pick_upstreams(
        &self,
        facts: &QueryFacts<'_>,
        possible: &Option<Possible>,
        now: Timestamp,
        tracer: &mut impl Tracer,
    ) -> (usize, Option<usize>) {
        for &idx in &self.resolve {
            let p = &self.policies[idx];
            if !self.is_active(idx, p, now, tracer) {
                continue;
            }
            let matched = self.may_match(idx, possible) && p.matches(facts);
            tracer.step(idx, Step::Evaluated(matched));
            if matched {
                return (p.upstreams, Some(idx));
            }
        }
        (0, None)
    }

    /// The gated policies `fqdn` may match (`None`: nothing is gated).
    fn possible(&self, fqdn: &str) -> Option<Possible> {
        if self.gates.is_empty() {
            return None;
        }
        let mut possible = Possible([0; Possible::WORDS]);
        for (depth, d) in fields::domains(fqdn).enumerate() {
            for &(idx, exact) in self.gates.get(d).map_or(&[][..], |v| v.as_slice()) {
                if !exact || depth == 0 {
                    possible.0[idx as usize / 64] |= 1 << (idx % 64);
                }
            }
        }
        Some(possible)
    }

    /// False if policy `idx` is gated and the name is not one it requires.
    #[inline]
    fn may_match(&self, idx: usize, possible: &Option<Possible>) -> bool {
        match possible {
            Some(p) if self.gated[idx] => p.has(idx),
            _ => true,
        }
    }

    fn is_active(
        &self,
        idx: usize,
        p: &CompiledPolicy,
        now: Timestamp,
        tracer: &mut impl Tracer,
    ) -> bool {
        if !p.enabled {
            tracer.step(idx, Step::Disabled);
            return false;
        }
        if let Some(s) = &p.schedule {
            if !s.is_active(now) {
                tracer.step(idx, Step::OutsideSchedule);
                return false;
            }
        }
        true
    }

    fn index(&mut self) {
        self.gates.clear();
        self.gated = vec![false; self.policies.len()];
        if self.policies.len() <= Possible::MAX {
            for (i, p) in self.policies.iter().enumerate() {
                let Some(names) = p.traffic.required_names() else {
                    continue;
                };
                self.gated[i] = true;
                for (name, exact) in names {
                    self.gates
                        .entry(name.into())
                        .or_default()
                        .push((i as u32, exact));
                }
            }
        }
        self.pre.clear();
        self.resolve.clear();
        self.post.clear();
        for (i, p) in self.policies.iter().enumerate() {
            match (p.action, p.phase) {
                (Action::Resolve, _) => self.resolve.push(i),
                (_, Phase::Pre) => self.pre.push(i),
                (_, Phase::Post) => self.post.push(i),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geoip::GeoInfo;
    use crate::runtime::Runtime;

    /// The policy deciding `name`/`rtype` in the pre phase, if any.
    fn decider(rt: &Runtime, name: &str, rtype: &str) -> Option<String> {
        let memo = ListMemo::default();
        let facts = QueryFacts {
            fqdn: name,
            rtype,
            src_ip: [127, 0, 0, 1].into(),
            location: None,
            identity: None,
            content_categories: &[],
            security_categories: &[],
            src_geo: GeoInfo::default(),
            post: None,
            memo: &memo,
        };
        match rt
            .policies
            .run(Phase::Pre, &facts, Timestamp::now(), &mut ())
        {
            Flow::Decide(v) => Some(rt.policies.policies[v.policy].name.clone()),
            Flow::External { policy, .. } => Some(rt.policies.policies[policy].name.clone()),
            Flow::Continue { .. } => None,
        }
    }

    #[test]
    fn name_gates_skip_only_policies_that_cannot_match() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("dnsgate.toml");
        let policies = [
            ("exact", r#"dns.fqdn == "a.example""#),
            (
                "suffix",
                r#"dns.query_rtype == "A" and any(dns.domains[*] == "b.example")"#,
            ),
            (
                "either",
                r#"dns.fqdn == "c.example" or any(dns.domains[*] in {"d.example" "e.example"})"#,
            ),
            (
                "open",
                r#"dns.fqdn == "g.example" or dns.query_rtype == "TXT""#,
            ),
            (
                "not",
                r#"not dns.fqdn == "h.example" and dns.query_rtype == "MX""#,
            ),
            ("root", r#"dns.fqdn == "." and dns.query_rtype == "NS""#),
        ];
        let mut text = String::new();
        for (name, traffic) in policies {
            text.push_str(&format!(
                "[[policies]]\nname = \"{name}\"\naction = \"block\"\ntraffic = '{traffic}'\n"
            ));
        }
        std::fs::write(&cfg, text).unwrap();
        let rt = Runtime::load(&cfg).unwrap();
        assert_eq!(rt.policies.gated, [true, true, true, false, false, false]);
        for (name, rtype, want) in [
            ("a.example", "A", Some("exact")),
            ("x.a.example", "A", None),
            ("b.example", "A", Some("suffix")),
            ("x.b.example", "A", Some("suffix")),
            ("x.b.example", "AAAA", None),
            ("c.example", "A", Some("either")),
            ("x.c.example", "A", None),
            ("y.d.example", "A", Some("either")),
            ("e.example", "A", Some("either")),
            ("g.example", "A", Some("open")),
            ("z.example", "TXT", Some("open")),
            ("z.example", "A", None),
            ("z.example", "MX", Some("not")),
            ("h.example", "MX", None),
            ("", "NS", Some("root")),
        ] {
            assert_eq!(decider(&rt, name, rtype).as_deref(), want, "{name} {rtype}");
        }
    }
}
