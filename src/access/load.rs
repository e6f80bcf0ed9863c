//! Reading a tokens file (`[api] tokens = "tokens.toml"`, SPEC §12): every problem is a
//! diagnostic at `path:line:col`, all of them reported at once, as `check` does.
//!
//! The file is first read into raw, spanned values, then each value is parsed by the
//! same `FromStr` the command line uses, so a file and `--allow` accept the same text.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use jiff::Timestamp;
use serde::Deserialize;
use toml::Spanned;

use super::perm::{Effect, Permission, Resource, Statement};
use super::{Token, Tokens};
use crate::diag::{Diagnostic, Lines};

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    tokens: Vec<Spanned<RawToken>>,
}

/// One `[[tokens]]` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: Spanned<String>,
    hash: Spanned<String>,
    /// A string, or a TOML date / date-time written bare.
    #[serde(default)]
    expires: Option<Spanned<toml::Value>>,
    #[serde(default)]
    policies: Vec<Spanned<RawStatement>>,
}

/// One policy statement as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    effect: Spanned<String>,
    permissions: Spanned<Vec<Spanned<String>>>,
    resources: Spanned<Vec<Spanned<String>>>,
}

/// Positions in one file, for diagnostics.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    lines: Lines,
}

impl Source<'_> {
    fn diag(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.lines.line_col(self.text, span.start);
        Diagnostic {
            path: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }

    /// Parses a spanned string, or records a diagnostic at it.
    fn parse<T>(&self, raw: &Spanned<String>, diags: &mut Vec<Diagnostic>) -> Option<T>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        raw.get_ref()
            .parse::<T>()
            .map_err(|e| diags.push(self.diag(&raw.span(), e.to_string())))
            .ok()
    }
}

/// Whether `name` is a usable token name: 1 to 64 of ASCII letters, digits, `.`, `_`, `-`
/// (it appears in logs and, later, in API paths).
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `hash` is a SHA-256 digest written as 64 lowercase hex digits.
fn is_valid_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parses an expiry: an RFC 3339 time with an offset (`2027-01-01T00:00:00Z`), or a date
/// (`2027-01-01`), which means midnight UTC at its start.
pub fn parse_expiry(text: &str) -> Result<Timestamp, String> {
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts);
    }
    let is_date = text.len() == 10 && text.bytes().filter(|&b| b == b'-').count() == 2;
    if is_date {
        if let Ok(date) = text.parse::<jiff::civil::Date>() {
            return date
                .to_zoned(jiff::tz::TimeZone::UTC)
                .map(|z| z.timestamp())
                .map_err(|e| format!("`{text}`: {e}"));
        }
    }
    Err(format!(
        "`{text}` is not a time: expected RFC 3339 with an offset (`2027-01-01T00:00:00Z`) or a date (`2027-01-01`)"
    ))
}

/// Parses the text of a tokens file; `path` names it in diagnostics.
pub(super) fn parse(path: &Path, text: &str) -> Result<Tokens, Vec<Diagnostic>> {
    let src = Source {
        path,
        text,
        lines: Lines::new(text),
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        vec![src.diag(&span, e.message().trim().to_owned())]
    })?;
    let mut diags = Vec::new();
    let mut names = HashSet::new();
    let mut hashes = HashSet::new();
    let mut tokens = Tokens::default();
    for raw in &raw.tokens {
        let raw = raw.get_ref();
        let name = raw.name.get_ref();
        if !is_valid_name(name) {
            diags.push(src.diag(
                &raw.name.span(),
                format!("`{name}` is not a token name: 1 to 64 of letters, digits, `.`, `_`, `-`"),
            ));
        } else if !names.insert(name.as_str()) {
            diags.push(src.diag(&raw.name.span(), format!("a second token named `{name}`")));
        }
        let hash = raw.hash.get_ref();
        if !is_valid_hash(hash) {
            diags.push(src.diag(
                &raw.hash.span(),
                "`hash` must be a SHA-256 digest: 64 lowercase hex digits",
            ));
        } else if !hashes.insert(hash.as_str()) {
            diags.push(src.diag(
                &raw.hash.span(),
                format!("token `{name}` has the same hash as an earlier token"),
            ));
        }
        let expires = raw.expires.as_ref().and_then(|e| {
            let text = match e.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Datetime(d) => d.to_string(),
                _ => {
                    diags.push(src.diag(&e.span(), "`expires` must be a date or an RFC 3339 time"));
                    return None;
                }
            };
            parse_expiry(&text)
                .map_err(|m| diags.push(src.diag(&e.span(), m)))
                .ok()
        });
        let policies = raw
            .policies
            .iter()
            .filter_map(|s| statement(&src, s, &mut diags))
            .collect();
        let token = Token {
            name: name.clone(),
            hash: hash.clone(),
            expires,
            policies,
        };
        // Once anything is wrong the result is the diagnostics; until then, build.
        if diags.is_empty() {
            if let Err(e) = tokens.insert(token) {
                diags.push(src.diag(&raw.name.span(), e.to_string()));
            }
        }
    }
    if diags.is_empty() {
        Ok(tokens)
    } else {
        // In file order (a token's expiry is read before its statements).
        diags.sort_by_key(|d| (d.line, d.col));
        Err(diags)
    }
}

/// One statement, or `None` with its problems recorded.
fn statement(
    src: &Source<'_>,
    raw: &Spanned<RawStatement>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Statement> {
    let before = diags.len();
    let r = raw.get_ref();
    let effect = src.parse::<Effect>(&r.effect, diags);
    let permissions: Vec<Permission> = r
        .permissions
        .get_ref()
        .iter()
        .filter_map(|p| src.parse(p, diags))
        .collect();
    let resources: Vec<Resource> = r
        .resources
        .get_ref()
        .iter()
        .filter_map(|p| src.parse(p, diags))
        .collect();
    // An empty list makes a statement that matches nothing: a deny that silently denies
    // nothing is a mistake worth reporting.
    if r.permissions.get_ref().is_empty() {
        diags.push(src.diag(
            &r.permissions.span(),
            "a statement needs at least one permission",
        ));
    }
    if r.resources.get_ref().is_empty() {
        diags.push(src.diag(
            &r.resources.span(),
            "a statement needs at least one resource (`*` for all)",
        ));
    }
    (diags.len() == before).then_some(Statement {
        effect: effect?,
        permissions,
        resources,
    })
}
