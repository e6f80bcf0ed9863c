//! Differential run of dnsgate's policy expressions against Cloudflare's wirefilter
//! engine (0.7.0), issue 14.
//!
//! `cargo run --release -- [EXPRESSIONS] [SEED]` generates EXPRESSIONS expressions
//! (default 5000) over every field type and operator, compiles each with both engines and
//! evaluates it on every fact set (`facts.rs`), then prints:
//! - per expression: accepted by both, rejected by one (which), rejected by both;
//! - per (expression, fact set) pair accepted by both: agree / disagree;
//! - disagreements and one-sided rejections split into documented differences (the tags
//!   the generator attached) and unexplained ones, with the shortest examples of each.
//!
//! It exits 1 when anything is unexplained.

mod facts;
mod generate;

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use dnsgate::policy::expr::{self, CompileEnv, Limits};
use generate::{Gen, Tag};

/// The shortest few examples of one kind of outcome.
#[derive(Default)]
struct Examples {
    count: usize,
    shortest: Vec<String>,
}

impl Examples {
    const KEEP: usize = 3;
    fn keep() -> usize {
        std::env::var("WFDIFF_EXAMPLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(Self::KEEP)
    }

    fn add(&mut self, example: impl FnOnce() -> String, len: usize) {
        self.count += 1;
        if self.shortest.len() < Self::keep() || self.shortest.iter().any(|s| s.len() > len) {
            let e = example();
            // One example per expression (the first fact set it differs on).
            let head = e.split('\n').next().unwrap_or_default();
            if !self
                .shortest
                .iter()
                .any(|s| s.split('\n').next() == Some(head))
            {
                self.shortest.push(e);
                self.shortest.sort_by_key(String::len);
                self.shortest.truncate(Self::keep());
            }
        }
    }
}

/// What an outcome is filed under: the documented differences among `tags` that can
/// cause it (`able`), or UNEXPLAINED when none of them can.
fn bucket(tags: &BTreeSet<Tag>, able: &[Tag]) -> String {
    let why: Vec<_> = tags
        .iter()
        .filter(|t| able.contains(t))
        .map(|t| format!("{t:?}"))
        .collect();
    if why.is_empty() {
        "UNEXPLAINED".to_owned()
    } else {
        why.join("+")
    }
}

/// The differences that can make wirefilter refuse what dnsgate accepts...
const WIREFILTER_REFUSES: &[Tag] = &[
    Tag::Lower,
    Tag::AnyCompound,
    Tag::Comma,
    Tag::HostBits,
    Tag::Space,
    Tag::Empty,
];
/// ...dnsgate refuse what wirefilter accepts...
const DNSGATE_REFUSES: &[Tag] = &[Tag::Utf8, Tag::Idna, Tag::ByteString, Tag::MapEach];
/// ...and the two give different answers.
const ANSWERS_DIFFER: &[Tag] = &[Tag::Case, Tag::Idna, Tag::Mapped];

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(14);

    let scheme = facts::scheme();
    let sets = facts::fact_sets();
    let contexts: Vec<_> = sets.iter().map(|s| s.wirefilter(&scheme)).collect();
    let dg_facts: Vec<_> = sets.iter().map(facts::FactSet::dnsgate).collect();
    let lists = Default::default();
    let env = CompileEnv {
        lists: &lists,
        email_variants: false,
        has_geoip: true,
        limits: Limits::default(),
    };

    let mut g = Gen::new(seed);
    let (mut both_ok, mut both_rejected, mut pairs, mut agree) = (0, 0, 0, 0);
    let mut only_dnsgate_rejects: BTreeMap<String, Examples> = BTreeMap::new();
    let mut only_wirefilter_rejects: BTreeMap<String, Examples> = BTreeMap::new();
    let mut disagree: BTreeMap<String, Examples> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut made = 0;
    let mut probes = generate::PROBES.iter();
    while made < n {
        let piece = match probes.next() {
            Some((text, tags)) => generate::Piece {
                text: (*text).to_owned(),
                tags: tags.iter().copied().collect(),
            },
            None => g.expr(3),
        };
        if !seen.insert(piece.text.clone()) {
            continue;
        }
        made += 1;
        let src = &piece.text;
        let wf = scheme.parse(src).map(|ast| ast.compile());
        let dg = expr::compile(src, &env);
        match (&wf, &dg) {
            (Err(_), Err(_)) => both_rejected += 1,
            (Ok(_), Err(e)) => {
                let why = e.first().map_or(String::new(), |e| e.message.clone());
                only_dnsgate_rejects
                    .entry(bucket(&piece.tags, DNSGATE_REFUSES))
                    .or_default()
                    .add(|| format!("{src}\n        dnsgate: {why}"), src.len());
            }
            (Err(e), Ok(_)) => {
                let why = e
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                only_wirefilter_rejects
                    .entry(bucket(&piece.tags, WIREFILTER_REFUSES))
                    .or_default()
                    .add(|| format!("{src}\n        wirefilter: {why}"), src.len());
            }
            (Ok(filter), Ok(compiled)) => {
                both_ok += 1;
                for (i, set) in sets.iter().enumerate() {
                    pairs += 1;
                    let w = filter.execute(&contexts[i]).unwrap_or(false);
                    let d = compiled.eval(&dg_facts[i]);
                    if w == d {
                        agree += 1;
                    } else {
                        let key = bucket(&piece.tags, ANSWERS_DIFFER);
                        disagree.entry(key).or_default().add(
                            || {
                                format!(
                                    "{src}\n        on \"{}\": wirefilter {w}, dnsgate {d}",
                                    set.label
                                )
                            },
                            src.len(),
                        );
                    }
                }
            }
        }
    }

    let count = |m: &BTreeMap<String, Examples>| m.values().map(|e| e.count).sum::<usize>();
    let unexplained = |m: &BTreeMap<String, Examples>| m.get("UNEXPLAINED").map_or(0, |e| e.count);
    println!(
        "wirefilter-diff: {n} expressions (seed {seed}) x {} fact sets",
        sets.len()
    );
    println!();
    println!("expressions accepted by both:         {both_ok}");
    println!("expressions rejected by both:         {both_rejected}");
    println!(
        "expressions rejected by dnsgate only: {} ({} unexplained)",
        count(&only_dnsgate_rejects),
        unexplained(&only_dnsgate_rejects)
    );
    println!(
        "expressions rejected by wirefilter only: {} ({} unexplained)",
        count(&only_wirefilter_rejects),
        unexplained(&only_wirefilter_rejects)
    );
    println!("evaluations (accepted by both x fact sets): {pairs}");
    println!("  agree:    {agree}");
    println!(
        "  disagree: {} ({} unexplained)",
        count(&disagree),
        unexplained(&disagree)
    );
    for (title, m) in [
        ("Disagreements", &disagree),
        ("Rejected by dnsgate only", &only_dnsgate_rejects),
        ("Rejected by wirefilter only", &only_wirefilter_rejects),
    ] {
        if m.is_empty() {
            continue;
        }
        println!();
        println!("{title}, by documented difference (shortest examples):");
        for (key, ex) in m {
            println!("  [{key}] {}", ex.count);
            for e in &ex.shortest {
                println!("      {e}");
            }
        }
    }
    println!();
    println!("Tags:");
    for t in [
        Tag::Case,
        Tag::Idna,
        Tag::Mapped,
        Tag::HostBits,
        Tag::Lower,
        Tag::AnyCompound,
        Tag::Comma,
        Tag::Utf8,
        Tag::Space,
        Tag::Empty,
        Tag::ByteString,
        Tag::MapEach,
    ] {
        println!("  {t:?}: {}", t.describe());
    }
    let bad = unexplained(&disagree)
        + unexplained(&only_dnsgate_rejects)
        + unexplained(&only_wirefilter_rejects);
    if bad > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
