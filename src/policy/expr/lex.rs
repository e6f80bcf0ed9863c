//! Tokens with byte spans.
//!
//! Values are not typed here: a *word* is any run of `[A-Za-z0-9_.:/]` (or a `-` that
//! starts a number or follows `.`), so `dns.fqdn`, `10.0.0.0/8`, `2001:db8::/32`,
//! `fe80::1`, `1..5` and `-5..-1` are each one token, and the parser
//! decides from context whether it is a field, keyword or value. That keeps IPv6 literals
//! (which may start with a letter or `:`) out of the way of identifiers without a
//! schema-driven lexer.
//!
//! Strings are decoded here, by wirefilter's rules; the one place context matters is a
//! string right after `matches` or `~`, which is read as wirefilter reads a regex.
//!
//! The lexer stops at its first error and leaves an [`Tok::Error`] token there, so the
//! parser reports whichever problem comes first in the source.

use super::ExprError;

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok<'s> {
    /// Identifier, keyword, number, address, network or range.
    Word(&'s str),
    /// A string literal, escapes decoded (a regex after `matches`/`~`: see [`regex_string`]).
    Str(String),
    /// `$name`.
    List(&'s str),
    /// `==`
    EqEq,
    /// `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `~`
    Tilde,
    /// `&&`
    AndAnd,
    /// `||`
    OrOr,
    /// `^^`
    XorXor,
    /// `!`
    Bang,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `*`
    Star,
    /// `,`
    Comma,
    /// `&` (wirefilter's `bitwise_and`)
    Amp,
    /// End of input.
    Eof,
    /// A lexical error; always the last token.
    Error(ExprError),
}

impl Tok<'_> {
    /// How the token reads in an error message.
    pub(super) fn describe(&self) -> String {
        let sym = match self {
            Self::Word(w) => return format!("`{w}`"),
            Self::Str(_) => return "a string".to_owned(),
            Self::List(name) => return format!("`${name}`"),
            Self::Eof | Self::Error(_) => return "the end of the expression".to_owned(),
            Self::EqEq => "==",
            Self::NotEq => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Tilde => "~",
            Self::AndAnd => "&&",
            Self::OrOr => "||",
            Self::XorXor => "^^",
            Self::Bang => "!",
            Self::LParen => "(",
            Self::RParen => ")",
            Self::LBrace => "{",
            Self::RBrace => "}",
            Self::LBracket => "[",
            Self::RBracket => "]",
            Self::Star => "*",
            Self::Comma => ",",
            Self::Amp => "&",
        };
        format!("`{sym}`")
    }
}

/// A token and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token<'s> {
    pub(super) tok: Tok<'s>,
    pub(super) start: usize,
    pub(super) end: usize,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/')
}

fn is_list_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// Splits `src` into tokens, ending with `Eof` or, at the first problem, `Error`.
pub(super) fn tokenize(src: &str) -> Vec<Token<'_>> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        let Some(&b) = bytes.get(i) else {
            out.push(Token {
                tok: Tok::Eof,
                start,
                end: start,
            });
            return out;
        };
        let next = bytes.get(i + 1).copied();
        let (tok, len) = match (b, next) {
            (b'=', Some(b'=')) => (Tok::EqEq, 2),
            (b'!', Some(b'=')) => (Tok::NotEq, 2),
            (b'<', Some(b'=')) => (Tok::Le, 2),
            (b'>', Some(b'=')) => (Tok::Ge, 2),
            (b'&', Some(b'&')) => (Tok::AndAnd, 2),
            (b'|', Some(b'|')) => (Tok::OrOr, 2),
            (b'^', Some(b'^')) => (Tok::XorXor, 2),
            (b'<', _) => (Tok::Lt, 1),
            (b'>', _) => (Tok::Gt, 1),
            (b'!', _) => (Tok::Bang, 1),
            (b'~', _) => (Tok::Tilde, 1),
            (b'(', _) => (Tok::LParen, 1),
            (b')', _) => (Tok::RParen, 1),
            (b'{', _) => (Tok::LBrace, 1),
            (b'}', _) => (Tok::RBrace, 1),
            (b'[', _) => (Tok::LBracket, 1),
            (b']', _) => (Tok::RBracket, 1),
            (b'*', _) => (Tok::Star, 1),
            (b',', _) => (Tok::Comma, 1),
            (b'&', _) => (Tok::Amp, 1),
            (b'r', Some(b'"' | b'#')) => match raw_string(src, start) {
                Some(Ok((s, end))) => (Tok::Str(s.to_owned()), end - start),
                Some(Err(e)) => (Tok::Error(e), 0),
                None => (Tok::Word("r"), 1),
            },
            (b'"', _) => {
                // After `matches` the string is a regex, read as wirefilter reads one.
                let is_regex = matches!(
                    out.last(),
                    Some(Token {
                        tok: Tok::Word("matches") | Tok::Tilde,
                        ..
                    })
                );
                let read = if is_regex {
                    regex_string(src, start)
                } else {
                    string(src, start)
                };
                match read {
                    Ok((s, end)) => (Tok::Str(s), end - start),
                    Err(e) => (Tok::Error(e), 0),
                }
            }
            (b'$', _) => {
                let n = bytes[i + 1..]
                    .iter()
                    .take_while(|&&b| is_list_byte(b))
                    .count();
                if n == 0 {
                    let e = err(start, "expected a list name after `$`");
                    (Tok::Error(e), 0)
                } else {
                    (Tok::List(&src[i + 1..i + 1 + n]), n + 1)
                }
            }
            // A negative number (`-5`, `-9..-1`) is a word too.
            _ if is_word_byte(b) || (b == b'-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let mut n = 1;
                while let Some(&c) = bytes.get(i + n) {
                    let dash = c == b'-' && bytes[i + n - 1] == b'.';
                    if !(is_word_byte(c) || dash) {
                        break;
                    }
                    n += 1;
                }
                (Tok::Word(&src[i..i + n]), n)
            }
            _ => (Tok::Error(unexpected(src, start)), 0),
        };
        let is_error = matches!(tok, Tok::Error(_));
        i += len;
        out.push(Token { tok, start, end: i });
        if is_error {
            return out;
        }
    }
}

fn err(offset: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        offset,
        message: message.into(),
    }
}

/// The error for a character no token starts with, with a hint for the near misses.
fn unexpected(src: &str, at: usize) -> ExprError {
    let c = src[at..].chars().next().unwrap_or('\u{fffd}');
    let hint = match c {
        '=' => " (did you mean `==`?)",
        '&' => " (did you mean `&&`?)",
        '|' => " (did you mean `||`?)",
        '^' => " (did you mean `^^`?)",
        '\'' => " (strings use double quotes)",
        _ => "",
    };
    err(at, format!("unexpected character `{c}`{hint}"))
}

/// Decodes the string literal starting at `start` (a `"`); returns it and the end offset.
///
/// The escapes are wirefilter's, no more: `\"`, `\\`, `\xHH` (two hex digits) and `\OOO`
/// (three octal digits) each stand for one byte; any other backslash is an error at its
/// position (wirefilter refuses it too), so nothing is silently kept or dropped. The bytes
/// must form UTF-8 (`"\xc3\xa9"` is `é`): a lone `\xff` is refused, where wirefilter would
/// compare raw bytes.
fn string(src: &str, start: usize) -> Result<(String, usize), ExprError> {
    let body = &src[start + 1..];
    let mut out = Vec::new();
    let mut p = 0;
    while let Some(c) = body[p..].chars().next() {
        let at = p;
        p += c.len_utf8();
        match c {
            '"' => {
                return String::from_utf8(out)
                    .map(|s| (s, start + 1 + p))
                    .map_err(|_| err(start, "the escapes of this string do not form UTF-8 text"));
            }
            '\\' => {
                let Some(e) = body[p..].chars().next() else {
                    break;
                };
                let (from, digits, radix) = match e {
                    '"' | '\\' => {
                        out.push(e as u8);
                        p += 1;
                        continue;
                    }
                    'x' => (p + 1, 2, 16),
                    '0'..='7' => (p, 3, 8),
                    _ => (p, 0, 0),
                };
                // wirefilter reads the next `digits` characters with `u8::from_str_radix`.
                let len: usize = body[from..].chars().take(digits).map(char::len_utf8).sum();
                let text = &body[from..from + len];
                let byte = (radix != 0 && text.chars().count() == digits)
                    .then(|| u8::from_str_radix(text, radix).ok())
                    .flatten();
                let Some(byte) = byte else {
                    let end = if radix == 0 {
                        p + e.len_utf8()
                    } else {
                        from + len
                    };
                    let what = &body[at..end];
                    return Err(err(
                        start + 1 + at,
                        format!(
                            "invalid escape `{what}`: strings take \\\", \\\\, \\xHH (hex) and \\OOO (octal)"
                        ),
                    ));
                };
                out.push(byte);
                p = from + len;
            }
            _ => out.extend_from_slice(&body.as_bytes()[at..p]),
        }
    }
    Err(err(start, "unterminated string"))
}

/// Decodes a quoted regex (the string after `matches` or `~`) at `start`, as wirefilter
/// does: `\"` outside a `[...]` class stands for `"`, and every other backslash is kept
/// for the regex engine, so `"\\."` is the regex `\\.` (a backslash, then any character)
/// and `"\d+\.com"` the regex `\d+\.com`. Inside a class a `"` does not end the string.
fn regex_string(src: &str, start: usize) -> Result<(String, usize), ExprError> {
    let mut out = String::new();
    let mut in_class = false;
    let mut chars = src[start + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, e)) = chars.next() {
                    if in_class || e != '"' {
                        out.push('\\');
                    }
                    out.push(e);
                }
            }
            '"' if !in_class => return Ok((out, start + 1 + i + 1)),
            '[' if !in_class => {
                in_class = true;
                out.push('[');
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    Err(err(start, "unterminated string"))
}

/// Decodes wirefilter's raw string `r"..."` / `r#"..."#` at `start` (the `r`): no
/// escapes, ended by `"` and as many `#` as opened it. `None` when `r#` is not followed by
/// `"` (then `r` is an ordinary word).
fn raw_string(src: &str, start: usize) -> Option<Result<(&str, usize), ExprError>> {
    let rest = &src[start + 1..];
    let hashes = rest.bytes().take_while(|&b| b == b'#').count();
    let body = rest[hashes..].strip_prefix('"')?;
    if hashes > 255 {
        return Some(Err(err(start, "a raw string takes at most 255 `#`")));
    }
    let open = start + 1 + hashes + 1;
    let close = format!("\"{}", "#".repeat(hashes));
    Some(match body.find(&close) {
        Some(i) => Ok((&body[..i], open + i + close.len())),
        None => Err(err(start, "unterminated string")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok<'_>> {
        tokenize(src).into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn words_cover_fields_and_unquoted_values() {
        assert_eq!(
            toks("dns.fqdn 10.0.0.0/8 2001:db8::/32 fe80::1 ::1 1..5"),
            [
                Tok::Word("dns.fqdn"),
                Tok::Word("10.0.0.0/8"),
                Tok::Word("2001:db8::/32"),
                Tok::Word("fe80::1"),
                Tok::Word("::1"),
                Tok::Word("1..5"),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn operators_are_greedy() {
        assert_eq!(
            toks("== != < <= > >= ~ && || ^^ ! ( ) { } [ ] * , &"),
            [
                Tok::EqEq,
                Tok::NotEq,
                Tok::Lt,
                Tok::Le,
                Tok::Gt,
                Tok::Ge,
                Tok::Tilde,
                Tok::AndAnd,
                Tok::OrOr,
                Tok::XorXor,
                Tok::Bang,
                Tok::LParen,
                Tok::RParen,
                Tok::LBrace,
                Tok::RBrace,
                Tok::LBracket,
                Tok::RBracket,
                Tok::Star,
                Tok::Comma,
                Tok::Amp,
                Tok::Eof
            ]
        );
        assert_eq!(
            toks("!dns.fqdn"),
            [Tok::Bang, Tok::Word("dns.fqdn"), Tok::Eof]
        );
    }

    /// Issue 14: `"example\x2ecom"` and `"example\056com"` are `example.com`, as in
    /// wirefilter; an escape wirefilter does not know is an error at its position.
    #[test]
    fn strings_decode_wirefilter_escapes_and_refuse_others() {
        assert_eq!(
            toks(r#""a\"b\\c\x2e\056\x41""#),
            [Tok::Str(r#"a"b\c..A"#.to_owned()), Tok::Eof]
        );
        assert_eq!(toks(r#""""#), [Tok::Str(String::new()), Tok::Eof]);
        assert_eq!(toks("\"héllo\""), [Tok::Str("héllo".to_owned()), Tok::Eof]);
        assert_eq!(toks(r#""\xc3\xa9""#), [Tok::Str("é".to_owned()), Tok::Eof]);
        for (src, at) in [
            (r#""\d""#, 1),
            (r#"x == "ab\.""#, 8),
            (r#""\x4""#, 1),
            (r#""\8""#, 1),
        ] {
            let t = tokenize(src);
            let last = t.last().map(|t| t.tok.clone());
            assert!(
                matches!(&last, Some(Tok::Error(e)) if e.offset == at && e.message.starts_with("invalid escape")),
                "{src}: {last:?}"
            );
        }
    }

    /// Issue 14: a quoted regex keeps its backslashes for the regex engine and only `\"`
    /// loses one, so `"\\."` is the regex `\\.` (wirefilter's reading).
    #[test]
    fn regex_strings_keep_backslashes_for_the_engine() {
        let re = |src: &str| match &tokenize(src)[2].tok {
            Tok::Str(s) => s.clone(),
            other => panic!("{src}: {other:?}"),
        };
        assert_eq!(re(r#"f matches "\\.""#), r"\\.");
        assert_eq!(re(r#"f ~ "\d+\.com""#), r"\d+\.com");
        assert_eq!(re(r#"f matches "a\"b""#), r#"a"b"#);
        // Inside a class `\"` keeps its backslash and `"` does not end the string.
        assert_eq!(re(r#"f matches "[\"]""#), r#"[\"]"#);
        assert_eq!(re(r#"f matches "["]x""#), r#"["]x"#);
        // Raw strings are the same everywhere.
        assert_eq!(re(r##"f matches r#"\\"x"#"##), r#"\\"x"#);
    }

    #[test]
    fn raw_strings_take_backslashes_and_quotes_as_written() {
        assert_eq!(
            toks(r#"r"\d+\.com""#),
            [Tok::Str(r"\d+\.com".to_owned()), Tok::Eof]
        );
        assert_eq!(
            toks(r##"r#"a"b"# x"##),
            [Tok::Str("a\"b".to_owned()), Tok::Word("x"), Tok::Eof]
        );
        assert_eq!(
            toks("r == 1"),
            [Tok::Word("r"), Tok::EqEq, Tok::Word("1"), Tok::Eof]
        );
        assert_eq!(toks("rr"), [Tok::Word("rr"), Tok::Eof]);
        let t = tokenize(r##"a ~ r#"abc"##);
        assert!(
            matches!(&t[2].tok, Tok::Error(e) if e.offset == 4 && e.message == "unterminated string")
        );
        let t = tokenize("r#x");
        assert_eq!(t[0].tok, Tok::Word("r"));
    }

    #[test]
    fn lists_take_dashes() {
        assert_eq!(toks("$oisd-big"), [Tok::List("oisd-big"), Tok::Eof]);
    }

    #[test]
    fn errors_stop_the_stream_at_their_offset() {
        let t = tokenize(r#"dns.fqdn == "abc"#);
        let last = t.last().map(|t| t.tok.clone());
        assert_eq!(last, Some(Tok::Error(err(12, "unterminated string"))));
        let t = tokenize(r#"a == "x\"#);
        assert!(matches!(&t[2].tok, Tok::Error(e) if e.offset == 5));
        assert_eq!(
            toks("-5 -1..-3 a-b"),
            [
                Tok::Word("-5"),
                Tok::Word("-1..-3"),
                Tok::Word("a"),
                Tok::Error(err(11, "unexpected character `-`"))
            ]
        );
        let t = tokenize("a = 1");
        assert!(matches!(&t[1].tok, Tok::Error(e) if e.offset == 2 && e.message.contains("`==`")));
        let t = tokenize("a == $ b");
        assert!(matches!(&t[2].tok, Tok::Error(e) if e.offset == 5));
        let t = tokenize("a == é");
        assert!(matches!(&t[2].tok, Tok::Error(e) if e.message == "unexpected character `é`"));
    }

    #[test]
    fn spans_are_byte_offsets() {
        let t = tokenize("  any( x )");
        let spans: Vec<_> = t.iter().map(|t| (t.start, t.end)).collect();
        assert_eq!(spans, [(2, 5), (5, 6), (7, 8), (9, 10), (10, 10)]);
    }
}
