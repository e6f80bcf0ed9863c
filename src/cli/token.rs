//! `dnsgate token new`: makes a token's secret and its `[[tokens]]` entry (SPEC §12).
//!
//! The secret is printed alone on the first line (so `| head -1` takes it) and is shown
//! nowhere else; the entry, holding only its hash, follows, ready to append to the tokens
//! file. Bad arguments are refused by clap's value parsers, so they exit with status 2
//! and a message naming the argument, as any other usage error does.

use clap::Subcommand;
use jiff::Timestamp;

use super::emit;
use crate::access::{Effect, Permission, Resource, Statement, Token, is_valid_name, new_secret};

/// `dnsgate token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a new API token: print its secret on the first line, then its `[[tokens]]`
    /// entry for the tokens file.
    New {
        /// Its name (letters, digits, `.`, `_`, `-`).
        #[arg(value_parser = parse_name)]
        name: String,
        /// A permission it is allowed, on a resource (`*` if none is given), e.g.
        /// `dnsgate.lists.update@list:ads`. Each `--allow` is one allow statement;
        /// without any, the token may do nothing.
        #[arg(long, value_name = "PERM[@RESOURCE]", value_parser = parse_allow)]
        allow: Vec<Allow>,
        /// When it stops working: `2027-01-01` (midnight UTC) or RFC 3339
        /// (`2027-01-01T12:00:00Z`).
        #[arg(long, value_name = "DATE", value_parser = parse_future)]
        expires: Option<Timestamp>,
    },
}

/// One `--allow`: a permission pattern on a resource pattern.
#[derive(Debug, Clone)]
pub struct Allow {
    /// The permission pattern.
    pub permission: Permission,
    /// The resource pattern.
    pub resource: Resource,
}

/// Why an argument was refused (clap prints it after the argument's name).
#[derive(Debug, thiserror::Error)]
enum ArgError {
    #[error("{0}")]
    Pattern(#[from] crate::access::ParseError),
    #[error("{0}")]
    Expiry(String),
    #[error("`{0}` has passed")]
    Past(Timestamp),
    #[error("a token name is 1 to 64 of letters, digits, `.`, `_`, `-`")]
    Name,
}

fn parse_name(s: &str) -> Result<String, ArgError> {
    if is_valid_name(s) {
        Ok(s.to_owned())
    } else {
        Err(ArgError::Name)
    }
}

fn parse_allow(s: &str) -> Result<Allow, ArgError> {
    let (permission, resource) = s.split_once('@').unwrap_or((s, "*"));
    Ok(Allow {
        permission: permission.parse()?,
        resource: resource.parse()?,
    })
}

fn parse_future(s: &str) -> Result<Timestamp, ArgError> {
    let ts = crate::access::parse_expiry(s).map_err(ArgError::Expiry)?;
    if ts <= Timestamp::now() {
        return Err(ArgError::Past(ts));
    }
    Ok(ts)
}

/// Runs a `token` subcommand.
pub(super) fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::New {
            name,
            allow,
            expires,
        } => {
            let (secret, token) = new(name, &allow, expires);
            outln!("{secret}");
            emit(token.to_toml().trim_end());
            eprintln!(
                "dnsgate: the first line is the secret: it is not stored, keep it now; \
                 append the rest to the tokens file"
            );
            Ok(())
        }
    }
}

/// A new token named `name`: one allow statement per `--allow`, in order.
fn new(name: String, allow: &[Allow], expires: Option<Timestamp>) -> (String, Token) {
    let (secret, hash) = new_secret();
    let policies = allow
        .iter()
        .map(|a| Statement {
            effect: Effect::Allow,
            permissions: vec![a.permission],
            resources: vec![a.resource.clone()],
        })
        .collect();
    let token = Token {
        name,
        hash,
        expires,
        policies,
    };
    (secret, token)
}
