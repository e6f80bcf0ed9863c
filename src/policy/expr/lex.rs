//! Tokens with byte spans.
//!
//! Values are not typed here: a *word* is any run of `[A-Za-z0-9_.:/]`, so `dns.fqdn`,
//! `10.0.0.0/8`, `2001:db8::/32`, `fe80::1` and `1..5` are each one token, and the parser
//! decides from context whether it is a field, keyword or value. That keeps IPv6 literals
//! (which may start with a letter or `:`) out of the way of identifiers without a
//! schema-driven lexer.
//!
//! The lexer stops at its first error and leaves an [`Tok::Error`] token there, so the
//! parser reports whichever problem comes first in the source.

use super::ExprError;

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok<'s> {
    /// Identifier, keyword, number, address, network or range.
    Word(&'s str),
    /// A string literal, escapes decoded.
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
            (b'r', Some(b'"' | b'#')) => match raw_string(src, start) {
                Some(Ok((s, end))) => (Tok::Str(s.to_owned()), end - start),
                Some(Err(e)) => (Tok::Error(e), 0),
                None => (Tok::Word("r"), 1),
            },
            (b'"', _) => match string(src, start) {
                Ok((s, end)) => (Tok::Str(s), end - start),
                Err(e) => (Tok::Error(e), 0),
            },
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
            _ if is_word_byte(b) => {
                let n = bytes[i..].iter().take_while(|&&b| is_word_byte(b)).count();
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
/// `\"` and `\\` are escapes; any other backslash is kept as written, so regexes such as
/// `"\d+\.example\.com"` copied from elsewhere mean what they say.
fn string(src: &str, start: usize) -> Result<(String, usize), ExprError> {
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, start + 1 + i + 1)),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => out.push(e),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            },
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
            toks("== != < <= > >= ~ && || ^^ ! ( ) { } [ ] * ,"),
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
                Tok::Eof
            ]
        );
        assert_eq!(
            toks("!dns.fqdn"),
            [Tok::Bang, Tok::Word("dns.fqdn"), Tok::Eof]
        );
    }

    #[test]
    fn strings_decode_quote_and_backslash_and_keep_other_escapes() {
        assert_eq!(
            toks(r#""a\"b\\c\d""#),
            [Tok::Str(r#"a"b\c\d"#.to_owned()), Tok::Eof]
        );
        assert_eq!(toks(r#""""#), [Tok::Str(String::new()), Tok::Eof]);
        assert_eq!(toks("\"héllo\""), [Tok::Str("héllo".to_owned()), Tok::Eof]);
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
