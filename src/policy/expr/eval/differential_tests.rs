//! The specialised nodes must agree with the general per-element path: property tests
//! that build the same condition in a form the compiler specialises and in one it cannot.

use proptest::prelude::*;

use super::super::fixtures::{ok, query};
use super::Pattern;
use crate::policy::fields::domains;

fn label() -> impl Strategy<Value = String> {
    proptest::sample::select(vec!["a", "b", "ab", "com", "x-y"]).prop_map(str::to_owned)
}

fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(label(), 0..5).prop_map(|l| l.join("."))
}

fn set(items: &[String]) -> String {
    let quoted: Vec<_> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("{{{}}}", quoted.join(" "))
}

proptest! {
    #[test]
    fn prefiltered_patterns_agree_with_the_regex(
        re in "\\^(ad|x|ab|[a-c]{1,2})[0-9]*(\\.|-)?",
        hay in "[a-dx0-9.-]{0,8}",
        ci: bool,
    ) {
        let built = regex::bytes::RegexBuilder::new(&re)
            .unicode(false)
            .case_insensitive(ci)
            .build()
            .unwrap();
        let p = Pattern::new(built.clone(), ci);
        prop_assert_eq!(p.is_match(&hay), built.is_match(hay.as_bytes()));
        let upper = hay.to_ascii_uppercase();
        prop_assert_eq!(p.is_match(&upper), built.is_match(upper.as_bytes()));
    }

    #[test]
    fn domain_shapes_agree_with_the_element_loop(
        fqdn in name(),
        items in proptest::collection::vec(name(), 0..12),
    ) {
        let s = set(&items);
        let fast = ok(&format!("any(dns.domains[*] in {s})"));
        // `!= "-"` is always true but keeps the condition off the fast path.
        let slow = ok(&format!(r#"any(dns.domains[*] in {s} and dns.domains[*] != "-")"#));
        let general = matches!(slow.root, super::Node::Quant { .. });
        prop_assert!(general, "the slow form was specialised");
        let mut facts = query(None, None);
        facts.fqdn = &fqdn;
        let want = domains(&fqdn).any(|d| items.iter().any(|i| i == d));
        prop_assert_eq!(fast.eval(&facts), want);
        prop_assert_eq!(slow.eval(&facts), want);
        for item in &items {
            let eq = ok(&format!("any(dns.domains[*] == {item:?})"));
            prop_assert_eq!(eq.eval(&facts), domains(&fqdn).any(|d| d == item));
        }
    }

    #[test]
    fn category_shapes_agree_with_the_element_loop(
        ids in proptest::collection::vec(0u32..20, 0..6),
        wanted in proptest::collection::vec(0u32..20, 0..4),
        all in any::<bool>(),
    ) {
        let q = if all { "all" } else { "any" };
        let items: Vec<_> = wanted.iter().map(u32::to_string).collect();
        let s = items.join(" ");
        let fast = ok(&format!("{q}(dns.content_category[*] in {{{s}}})"));
        // Neutral extra conditions that keep the quantifier from being distributed.
        let extra = if all { "or dns.content_category[*] < 0" } else { "and dns.content_category[*] >= 0" };
        let slow = ok(&format!("{q}(dns.content_category[*] in {{{s}}} {extra})"));
        let general = matches!(slow.root, super::Node::Quant { .. });
        prop_assert!(general, "the slow form was specialised");
        let mut facts = query(None, None);
        facts.content_categories = &ids;
        let hit = |id: &u32| wanted.contains(id);
        let want = if all { ids.iter().all(hit) } else { ids.iter().any(hit) };
        prop_assert_eq!(fast.eval(&facts), want);
        prop_assert_eq!(slow.eval(&facts), want);
    }
}
