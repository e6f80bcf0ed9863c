//! Scoped API tokens (SPEC §12): who may do what to which object.
//!
//! A token is a name, the SHA-256 of its secret, an optional expiry and policy
//! statements. A request is allowed when some allow statement matches it (permission and
//! resource) and no deny statement does. Secrets are `dgt_<id>_<secret>`, drawn from a
//! CSPRNG and never stored: only their digest is, and a presented secret is found by its
//! digest, then compared in constant time.
//!
//! - [`perm`]: permissions, resource patterns, statements, coverage
//! - `load`: the tokens file, with diagnostics at `path:line:col`
//! - [`mod@mint`]: a token making a token within its own rights
//! - [`limit`]: failed authentications per source, rate-limited

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use jiff::Timestamp;
use rand::Rng;
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;

use crate::diag::Diagnostic;

pub mod limit;
mod load;
pub mod mint;
pub mod perm;

pub use limit::FailureLimiter;
pub use load::{is_valid_name, parse_expiry};
pub use mint::{MintError, TokenSpec, mint};
pub use perm::{
    Effect, Kind, ObjectKind, ParseError, Part, Permission, Resource, Statement, Target, Verb,
};

/// The prefix of every secret: recognisable in logs and by secret scanners.
pub const SECRET_PREFIX: &str = "dgt_";

/// Characters of the random part of a secret: base62, 43 of them ≈ 256 bits.
const SECRET_CHARS: usize = 43;

/// Longer presented secrets are refused before hashing (a real one is 56 bytes).
const MAX_SECRET_LEN: usize = 256;

/// One API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Token {
    /// Its name, unique among the tokens.
    pub name: String,
    /// SHA-256 of the whole secret string, lowercase hex.
    pub hash: String,
    /// When it stops authenticating; `None`: never.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_expires"
    )]
    pub expires: Option<Timestamp>,
    /// Its statements, in file order (order does not matter: deny wins).
    pub policies: Vec<Statement>,
}

fn serialize_expires<S: serde::Serializer>(
    expires: &Option<Timestamp>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match expires {
        Some(ts) => s.collect_str(ts),
        None => s.serialize_none(),
    }
}

impl Token {
    /// Whether this token may do `permission` to `target`: some allow statement matches
    /// and no deny statement does. A pattern (`dnsgate.lists.*`) is allowed only if every
    /// permission it stands for is. Expiry is not looked at here: an expired token does
    /// not authenticate ([`Tokens::authenticate`]).
    pub fn allows(&self, permission: &Permission, target: &Target<'_>) -> bool {
        match (permission.kind, permission.verb) {
            (Part::Is(kind), Part::Is(verb)) => self.allows_concrete(kind, verb, target),
            _ => Permission::all_concrete()
                .filter(|&(k, v)| permission.matches(k, v))
                .all(|(k, v)| self.allows_concrete(k, v, target)),
        }
    }

    fn allows_concrete(&self, kind: Kind, verb: Verb, target: &Target<'_>) -> bool {
        let mut allowed = false;
        for s in &self.policies {
            if s.matches(kind, verb, target) {
                match s.effect {
                    Effect::Deny => return false,
                    Effect::Allow => allowed = true,
                }
            }
        }
        allowed
    }

    /// [`allows`](Self::allows) for `dnsgate.<kind>.<verb>` given as text (`"lists"`,
    /// `"update"`). An unknown kind or verb is allowed to nobody.
    pub fn may(&self, kind: &str, verb: &str, target: &Target<'_>) -> bool {
        match (kind.parse(), verb.parse()) {
            (Ok(kind), Ok(verb)) => self.allows_concrete(kind, verb, target),
            _ => false,
        }
    }

    /// Whether this token has expired at `now` (it is valid up to, not at, `expires`).
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }

    /// This token as a `[[tokens]]` entry of a tokens file, statements as inline tables
    /// (the shape SPEC §12 shows); [`Tokens::parse`] reads it back.
    pub fn to_toml(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let list = |items: Vec<String>| {
            let quoted: Vec<String> = items.iter().map(|i| q(i)).collect();
            format!("[{}]", quoted.join(", "))
        };
        let mut out = format!(
            "[[tokens]]\nname = {}\nhash = {}\n",
            q(&self.name),
            q(&self.hash)
        );
        if let Some(e) = self.expires {
            let _ = writeln!(out, "expires = {}", q(&e.to_string()));
        }
        if self.policies.is_empty() {
            out.push_str("policies = []\n");
            return out;
        }
        out.push_str("policies = [\n");
        for s in &self.policies {
            let _ = writeln!(
                out,
                "  {{ effect = {}, permissions = {}, resources = {} }},",
                q(&s.effect.to_string()),
                list(s.permissions.iter().map(ToString::to_string).collect()),
                list(s.resources.iter().map(ToString::to_string).collect()),
            );
        }
        out.push_str("]\n");
        out
    }
}

/// Why a token could not be added to [`Tokens`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InsertError {
    /// A token of that name exists.
    #[error("a token named `{0}` exists")]
    DuplicateName(String),
    /// A token with that hash exists.
    #[error("a token with the same hash as `{0}` exists")]
    DuplicateHash(String),
    /// The hash is not 64 lowercase hex digits.
    #[error("the hash of `{0}` is not a SHA-256 digest in lowercase hex")]
    BadHash(String),
}

/// All tokens: those of the tokens file (and, later, those made through the API).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    tokens: Vec<Token>,
    /// Index into `tokens` by digest. A digest is not a secret (finding a secret from it
    /// is a preimage attack), so looking it up in a map leaks nothing; the comparison
    /// that decides is still made in constant time.
    by_digest: HashMap<[u8; 32], usize>,
}

impl Tokens {
    /// Reads and parses a tokens file.
    pub fn load(path: &Path) -> Result<Self, Vec<Diagnostic>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![Diagnostic::file(path, format!("cannot read file: {e}"))])?;
        Self::parse(path, &text)
    }

    /// Parses the text of a tokens file (`path` names it in diagnostics). Reports every
    /// problem found.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Vec<Diagnostic>> {
        load::parse(path, text)
    }

    /// Adds a token, unless its name or hash is taken.
    pub fn insert(&mut self, token: Token) -> Result<(), InsertError> {
        let digest =
            decode_digest(&token.hash).ok_or_else(|| InsertError::BadHash(token.name.clone()))?;
        if self.get(&token.name).is_some() {
            return Err(InsertError::DuplicateName(token.name));
        }
        if let Some(&i) = self.by_digest.get(&digest) {
            return Err(InsertError::DuplicateHash(self.tokens[i].name.clone()));
        }
        self.by_digest.insert(digest, self.tokens.len());
        self.tokens.push(token);
        Ok(())
    }

    /// The token a presented secret belongs to, if it has not expired at `now`.
    pub fn authenticate(&self, secret: &str, now: Timestamp) -> Option<&Token> {
        if secret.len() > MAX_SECRET_LEN {
            return None;
        }
        let presented = sha256(secret);
        let &i = self.by_digest.get(&presented)?;
        let token = &self.tokens[i];
        let stored = decode_digest(&token.hash)?;
        (constant_time_eq(&stored, &presented) && !token.is_expired(now)).then_some(token)
    }

    /// The token named `name`.
    pub fn get(&self, name: &str) -> Option<&Token> {
        self.tokens.iter().find(|t| t.name == name)
    }

    /// Every token, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Token> {
        self.tokens.iter()
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// A new secret `dgt_<id>_<secret>` and its digest (lowercase hex SHA-256). The id is 8
/// lowercase alphanumerics, the secret 43 base62 characters (about 256 bits), both from
/// the thread's CSPRNG (ChaCha, seeded from the operating system).
pub fn new_secret() -> (String, String) {
    const ID_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let id: String = (0..8)
        .map(|_| char::from(ID_CHARS[rng.random_range(0..ID_CHARS.len())]))
        .collect();
    let secret = format!(
        "{SECRET_PREFIX}{id}_{}",
        Alphanumeric.sample_string(&mut rng, SECRET_CHARS)
    );
    let hash = digest(&secret);
    (secret, hash)
}

/// The SHA-256 of a secret string, lowercase hex: what a tokens file stores.
pub fn digest(secret: &str) -> String {
    crate::identity::sha256_hex(secret.as_bytes())
}

fn sha256(secret: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn decode_digest(hash: &str) -> Option<[u8; 32]> {
    let bytes = data_encoding::HEXLOWER.decode(hash.as_bytes()).ok()?;
    bytes.try_into().ok()
}

/// Equality of two digests in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests;
