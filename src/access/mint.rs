//! Minting: a token making a token, never beyond its own rights (SPEC §12).
//!
//! The new token's allows must be covered by the creator's allows, the creator's denies
//! are copied into it, and it expires no later than the creator. So whatever the new token
//! may do, its creator may do, and a chain of tokens can only narrow.

use jiff::Timestamp;

use super::load::is_valid_name;
use super::perm::{Effect, Permission, Resource, Statement, Target};
use super::{Token, new_secret};

/// What a token is asked to be made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// Its name.
    pub name: String,
    /// When it should expire; `None`: as late as allowed (the creator's expiry, or never).
    pub expires: Option<Timestamp>,
    /// Its statements (allows and denies).
    pub policies: Vec<Statement>,
}

/// Why a token was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The creator itself has expired.
    #[error("the creating token has expired")]
    CreatorExpired,
    /// The creator may not `dnsgate.tokens.create` a token of that name.
    #[error("the creating token may not create tokens (`dnsgate.tokens.create` on `token:{0}`)")]
    NotPermitted(String),
    /// The name is not a valid token name.
    #[error("`{0}` is not a token name: 1 to 64 of letters, digits, `.`, `_`, `-`")]
    BadName(String),
    /// A statement without permissions or resources.
    #[error("a statement needs at least one permission and one resource")]
    EmptyStatement,
    /// An allow the creator does not have itself.
    #[error("the creating token may not grant `{permission}` on `{resource}`")]
    NotCovered {
        /// The requested permission pattern.
        permission: Permission,
        /// The requested resource pattern.
        resource: Resource,
    },
    /// A requested expiry later than the creator's.
    #[error("the token would expire at {requested}, after its creator ({limit})")]
    ExpiresAfterCreator {
        /// The requested expiry.
        requested: Timestamp,
        /// The creator's expiry.
        limit: Timestamp,
    },
    /// An expiry that has already passed.
    #[error("the token would already have expired ({0})")]
    AlreadyExpired(Timestamp),
}

/// Makes a token for `requested` on behalf of `creator` at `now`: its secret (shown once)
/// and the token (to store).
///
/// Rules, in order: the creator must not have expired and must be allowed
/// `dnsgate.tokens.create` on `token:<name>`; every allow statement requested must be
/// covered by the creator's allows ([`is_covered`]); the creator's deny statements are
/// appended to the new token's; the expiry is the one requested if not later than the
/// creator's (later is refused), the creator's if none is requested.
pub fn mint(
    creator: &Token,
    requested: TokenSpec,
    now: Timestamp,
) -> Result<(String, Token), MintError> {
    if creator.is_expired(now) {
        return Err(MintError::CreatorExpired);
    }
    if !is_valid_name(&requested.name) {
        return Err(MintError::BadName(requested.name));
    }
    let target = Target {
        kind: "token",
        name: &requested.name,
        group: None,
    };
    if !creator.may("tokens", "create", &target) {
        return Err(MintError::NotPermitted(requested.name));
    }
    for s in &requested.policies {
        if s.permissions.is_empty() || s.resources.is_empty() {
            return Err(MintError::EmptyStatement);
        }
        if s.effect == Effect::Allow {
            is_covered(s, creator)?;
        }
    }
    let expires = match (requested.expires, creator.expires) {
        (Some(requested), Some(limit)) if requested > limit => {
            return Err(MintError::ExpiresAfterCreator { requested, limit });
        }
        (Some(requested), _) => Some(requested),
        (None, limit) => limit,
    };
    if let Some(e) = expires.filter(|&e| e <= now) {
        return Err(MintError::AlreadyExpired(e));
    }
    let mut policies = requested.policies;
    for deny in creator.policies.iter().filter(|s| s.effect == Effect::Deny) {
        if !policies.contains(deny) {
            policies.push(deny.clone());
        }
    }
    let (secret, hash) = new_secret();
    let token = Token {
        name: requested.name,
        hash,
        expires,
        policies,
    };
    Ok((secret, token))
}

/// Whether the creator's allows cover the allow statement `s`: for every concrete
/// permission one of its patterns stands for, and every one of its resource patterns,
/// some allow statement of the creator has a permission pattern matching that permission
/// and a resource pattern covering that resource pattern ([`Resource::covers`]).
///
/// Several of the creator's statements may share the work (`dnsgate.lists.*` on `*` is
/// covered by `dnsgate.lists.read` on `*` plus the other verbs). A resource pattern is
/// covered by one pattern at a time, which is exact: a union of resource patterns covers a
/// pattern only if one of them does, since `kind:*`, `kind:name` and `group:g` each leave
/// out targets of other kinds, other names or other groups that the others cannot fill.
pub fn is_covered(s: &Statement, creator: &Token) -> Result<(), MintError> {
    for permission in &s.permissions {
        for (kind, verb) in Permission::all_concrete().filter(|&(k, v)| permission.matches(k, v)) {
            for resource in &s.resources {
                let covered = creator.policies.iter().any(|c| {
                    c.effect == Effect::Allow
                        && c.permissions.iter().any(|p| p.matches(kind, verb))
                        && c.resources.iter().any(|r| r.covers(resource))
                });
                if !covered {
                    return Err(MintError::NotCovered {
                        permission: *permission,
                        resource: resource.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}
