//! The compiled `matches` pattern: a regex with, where it can be had, a cheap check of
//! the literals a match must start with.
//!
//! Apart from the node tree because it is the one piece of evaluation that looks inside
//! another engine (`regex_syntax`) to decide, once per pattern, what may be skipped.

use regex::bytes::Regex;

/// A compiled `matches` pattern and, for one anchored at the start with a known literal
/// beginning (`^ad[0-9]+\.`), the literals a match must start with: most names fail on
/// the first bytes without entering the regex engine.
#[derive(Debug)]
pub(in crate::policy::expr) struct Pattern {
    re: Regex,
    prefixes: Option<Box<[Box<[u8]>]>>,
    /// The regex is case-insensitive: the start literals compare ignoring ASCII case.
    fold: bool,
}

impl Pattern {
    /// At most this many start literals are tried before the regex.
    const MAX_PREFIXES: usize = 16;

    /// `re` as compiled, with or without `case_insensitive` (the flag it was built with).
    pub(in crate::policy::expr) fn new(re: Regex, case_insensitive: bool) -> Self {
        use regex_syntax::hir::Look;
        use regex_syntax::hir::literal::Extractor;
        // The literals of the case-sensitive reading; for a case-insensitive regex they
        // are then compared ignoring ASCII case, which is exact as long as they are ASCII
        // without `k` and `s` (Unicode folds K to the Kelvin sign and s to the long s).
        let hir = regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(re.as_str());
        let folds_beyond_ascii =
            |l: &[u8]| !l.is_ascii() || l.iter().any(|b| matches!(b, b'k' | b'K' | b's' | b'S'));
        let prefixes = hir.ok().and_then(|hir| {
            if !hir.properties().look_set_prefix().contains(Look::Start) {
                return None;
            }
            // Classes are not expanded: `\d` would turn `^(cdn|img)\d*` into 22 literals.
            let seq = Extractor::new().limit_class(1).extract(&hir);
            // One common start (`ad0`…`ad9` → `ad`) is one comparison.
            let lits: Box<[Box<[u8]>]> = match seq.longest_common_prefix() {
                Some(common) if !common.is_empty() => Box::new([common.into()]),
                _ => seq
                    .literals()?
                    .iter()
                    .map(|l| l.as_bytes().into())
                    .collect(),
            };
            let unusable = lits.is_empty()
                || lits.len() > Self::MAX_PREFIXES
                || lits.iter().any(|l| l.is_empty())
                || (case_insensitive && lits.iter().any(|l| folds_beyond_ascii(l)));
            (!unusable).then_some(lits)
        });
        Self {
            re,
            prefixes,
            fold: case_insensitive,
        }
    }

    #[inline]
    pub(in crate::policy::expr) fn is_match(&self, s: &str) -> bool {
        if let Some(p) = &self.prefixes {
            let s = s.as_bytes();
            let starts = |p: &[u8]| match s.get(..p.len()) {
                Some(head) if self.fold => head.eq_ignore_ascii_case(p),
                Some(head) => head == p,
                None => false,
            };
            if !p.iter().any(|p| starts(p)) {
                return false;
            }
        }
        self.re.is_match(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_patterns_check_their_start_literals_first() {
        let p = |re: &str, ci: bool| {
            Pattern::new(
                regex::bytes::RegexBuilder::new(re)
                    .unicode(false)
                    .case_insensitive(ci)
                    .build()
                    .unwrap(),
                ci,
            )
        };
        let ad = p(r"^ad[0-9]+\.tracker\.", false);
        assert_eq!(ad.prefixes.as_deref().map(<[_]>::len), Some(1));
        assert!(ad.is_match("ad12.tracker.example"));
        assert!(!ad.is_match("www.ad12.tracker.example"));
        assert!(!ad.is_match("a"));
        let alt = p(r"^(cdn|img)\d*\.", false);
        assert_eq!(alt.prefixes.as_deref().map(<[_]>::len), Some(2));
        assert!(alt.is_match("img3.x") && alt.is_match("cdn.x") && !alt.is_match("css.x"));
        let ci = p(r"^Ad[0-9]*\.", true);
        assert!(ci.prefixes.is_some());
        assert!(ci.is_match("AD.x") && ci.is_match("ad7.x") && !ci.is_match("bd.x"));
        // Case folding is ASCII only (wirefilter's regexes are not Unicode-aware).
        let kelvin = p(r"^k", true);
        assert!(!kelvin.is_match("\u{212A}x") && kelvin.is_match("Kx"));
        // Nothing to check first: unanchored, multi-line, or a class at the start.
        for re in [r"ad[0-9]+", r"(?m)^ad", r"^[a-z]+\.com$", r"^"] {
            assert!(p(re, false).prefixes.is_none(), "{re}");
        }
    }
}
