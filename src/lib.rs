//! dnsgate — a filtering recursive DNS resolver with Cloudflare Gateway-style DNS policies.
//!
//! # Layout
//! Layers, top to bottom; a module names only modules below it (`tests/it/layers.rs`
//! checks this, so the picture cannot go stale):
//! ```text
//! cli        run, check, explain, test: argument parsing, printing; anyhow lives here
//! api        the admin API (axum): bearer tokens, scoped permissions, audit, OpenAPI
//! server     listeners: UDP (fast path: wire, packet cache, batch I/O) and TCP (hickory);
//!            each builds a pipeline::Request, sends the reply, hands the outcome to record
//! record     the one exit: an answered query into metrics and the query log
//! pipeline   the one road (SPEC order): Request -> Outcome; ACL, facts, pre-resolution
//!            policies, resolution, post-resolution policies, answer; the packet-cache
//!            client class from the same facts (pipeline::client)
//! runtime    the loaded configuration (Runtime) and the one place it is replaced (Live:
//!            SIGHUP reloads, URL-list swaps), with its lock
//! answer     block / override / safe-search answers
//! policy     the wirefilter language (policy::expr: lex, parse, compile, eval), fields
//!            and facts, the rule builder, schedules, evaluation order (PolicySet::run)
//! lists      domain / IP / value lists, their formats, URL lists (fetch, disk, refresh)
//! resolve    the message cache in front of the Upstream seam (forwarder, recursor);
//!            DNSSEC validation (resolve::dnssec: signatures, chain of trust, denial)
//! config     the TOML model, includes, positions
//! querylog   the JSON-lines writer and the query store (the Backend seam: SQLite)
//! external   custom actions: a policy's signed HTTP request, verdict cache, single flight
//! access     API tokens: scoped permissions, secrets, minting, failed-login limits
//! identity   users, groups, devices, locations        geoip     GeoIP lookups
//! metrics    metric names and per-query handles
//! clock      the one clock                            label     enums with their labels
//! diag       path:line:col diagnostics                netmap    CIDR maps
//! sys        low-priority background threads, memory release
//! ```
#![warn(missing_docs)]

pub mod access;
pub mod answer;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod diag;
pub mod external;
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
pub mod sys;
