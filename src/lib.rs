//! dnsgate — a filtering recursive DNS resolver with Cloudflare Gateway-style DNS policies.
//!
//! # Layout
//! ```text
//! cli            run / check / explain             diag      Diagnostic{path,line,col,msg}
//! config/        mod (serde model), load (includes, spans)
//! lists/         mod (List), parse (formats), domain (DomainList), ip (IpSet)
//! lists/url/     URL lists: fetch (conditional GET), disk (saved copies), refresh (swap)
//! identity       users, groups, devices, locations  geoip     GeoIP lookups
//! netmap         CIDR parsing, longest-prefix maps
//! policy/expr/   lex, parse, ast, compile, eval    (the wirefilter subset, SPEC §3)
//! policy/        fields (QueryFacts), builder, schedule, mod (PolicySet, eval::run)
//! resolve/       mod (Upstream), forward, cache
//! server/        mod (listeners), handler (the SPEC §4 pipeline)
//! answer         block / override / safesearch answers + EDE
//! metrics        names + handles    runtime   the loaded, swappable state   querylog
//! ```
#![warn(missing_docs)]

pub mod answer;
pub mod cli;
pub mod clock;
pub mod config;
pub mod diag;
pub mod geoip;
pub mod identity;
pub mod label;
pub mod lists;
pub mod metrics;
mod netmap;
pub mod pipeline;
pub mod policy;
pub mod querylog;
pub mod record;
pub mod resolve;
pub mod runtime;
pub mod server;
