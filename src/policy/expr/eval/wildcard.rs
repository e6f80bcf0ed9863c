//! The compiled `wildcard` / `strict wildcard` pattern (Cloudflare documents both; they
//! are what people paste from Gateway rules).
//!
//! Read as wirefilter reads it (the `wildcard` crate with `?` disabled): `*` matches any
//! run of bytes, the pattern must match the whole value, `\*` and `\\` are a literal star
//! and backslash and any other backslash is an error, `**` is refused. `wildcard` compares
//! ASCII letters case-insensitively, `strict wildcard` exactly.
//!
//! Matching needs no regex and no allocation: the pattern is split at its stars into
//! literal pieces; the first must start the value, the last end it, and the others are
//! found left to right in between (taking each at its first place is never wrong when the
//! only metacharacter is `*`).

/// A compiled wildcard pattern.
#[derive(Debug)]
pub(in crate::policy::expr) struct Wildcard {
    /// The literal pieces between stars (one piece: no star at all).
    pieces: Box<[Box<[u8]>]>,
    /// Compare ASCII letters ignoring case (`wildcard`, not `strict wildcard`).
    fold: bool,
}

impl Wildcard {
    /// Compiles `pattern` (escapes of the string already decoded); the error says why the
    /// pattern is refused.
    pub(in crate::policy::expr) fn new(pattern: &str, fold: bool) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut piece = Vec::new();
        let mut bytes = pattern.bytes();
        let mut last_star = false;
        while let Some(b) = bytes.next() {
            let star = b == b'*';
            match b {
                b'\\' => match bytes.next() {
                    Some(e @ (b'*' | b'\\')) => piece.push(e),
                    Some(_) => {
                        return Err("invalid wildcard: only `\\*` and `\\\\` are escapes \
                                    (write \"\\\\*\" for a literal star)"
                            .to_owned());
                    }
                    None => return Err("invalid wildcard: it ends with a lone `\\`".to_owned()),
                },
                b'*' if last_star => {
                    return Err(
                        "invalid wildcard: `**` (one `*` already matches any run)".to_owned()
                    );
                }
                b'*' => pieces.push(std::mem::take(&mut piece).into_boxed_slice()),
                _ => piece.push(b),
            }
            last_star = star;
        }
        pieces.push(piece.into_boxed_slice());
        Ok(Self {
            pieces: pieces.into_boxed_slice(),
            fold,
        })
    }

    fn eq(&self, a: &[u8], b: &[u8]) -> bool {
        if self.fold {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    }

    /// Where `needle` first occurs in `hay`.
    fn find(&self, hay: &[u8], needle: &[u8]) -> Option<usize> {
        if needle.is_empty() {
            return Some(0);
        }
        hay.windows(needle.len()).position(|w| self.eq(w, needle))
    }

    #[inline]
    pub(in crate::policy::expr) fn is_match(&self, s: &str) -> bool {
        let s = s.as_bytes();
        let (first, rest) = match &*self.pieces {
            [only] => return self.eq(s, only),
            [first, rest @ ..] => (first, rest),
            [] => return s.is_empty(),
        };
        let Some((last, middle)) = rest.split_last() else {
            return false;
        };
        if s.len() < first.len() + last.len()
            || !self.eq(&s[..first.len()], first)
            || !self.eq(&s[s.len() - last.len()..], last)
        {
            return false;
        }
        let mut hay = &s[first.len()..s.len() - last.len()];
        for piece in middle {
            match self.find(hay, piece) {
                Some(at) => hay = &hay[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(p: &str, fold: bool) -> Wildcard {
        Wildcard::new(p, fold).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn stars_match_any_run_and_the_pattern_covers_the_whole_value() {
        for (pattern, value, want) in [
            ("*.example.com", "www.example.com", true),
            ("*.example.com", "example.com", false),
            ("*example.com", "example.com", true),
            ("example.com", "example.com", true),
            ("example.com", "www.example.com", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("*a*", "bab", true),
            ("?", "?", true),
            ("?", "a", false),
            (r"\*.com", "*.com", true),
            (r"\*.com", "x.com", false),
            (r"a\\b", r"a\b", true),
        ] {
            assert_eq!(w(pattern, false).is_match(value), want, "{pattern} {value}");
        }
    }

    #[test]
    fn only_the_strict_form_sees_case() {
        assert!(w("*.EXAMPLE.com", true).is_match("www.example.COM"));
        assert!(!w("*.EXAMPLE.com", false).is_match("www.example.com"));
        assert!(w("*.example.com", false).is_match("www.example.com"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in ["a**b", r"a\b", "a\\"] {
            assert!(Wildcard::new(p, true).is_err(), "{p}");
        }
        assert!(Wildcard::new(r"*\**", true).is_ok());
    }
}
