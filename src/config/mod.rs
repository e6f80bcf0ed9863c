//! The configuration file model (SPEC §2): serde structs with `deny_unknown_fields`, named
//! defaults and spans where later checks need a position (expressions, lists, policies).
//!
//! Parsing only checks shape; meaning (lists exist, expressions compile, addresses parse) is
//! checked when the runtime is built, which reports every problem at once with its position.

pub mod load;

use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use load::{LoadedConfig, SourceFile, load};

/// The main configuration file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Globs of more files holding `[[policies]]`, `[[lists]]`, `[[categories]]`.
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    /// Listeners and access control.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where answers come from.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// The message cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// The Prometheus endpoint; absent: no metrics listener.
    pub metrics: Option<MetricsConfig>,
    /// The GeoIP database; absent: geo fields are load errors.
    pub geoip: Option<GeoipConfig>,
    /// How blocked queries are answered.
    #[serde(default)]
    pub block: BlockConfig,
    /// The query log; absent: no query log.
    pub querylog: Option<QuerylogConfig>,
    /// The admin API (SPEC §12); absent: none.
    pub api: Option<ApiConfig>,
    /// The identity directory.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Lists.
    #[serde(default)]
    pub lists: Vec<Spanned<ListConfig>>,
    /// Categories built from lists.
    #[serde(default)]
    pub categories: Vec<Spanned<CategoryConfig>>,
    /// Policies.
    #[serde(default)]
    pub policies: Vec<Spanned<PolicyConfig>>,
}

/// A file named by `include`: only lists, categories and policies.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IncludeFile {
    /// Lists.
    #[serde(default)]
    pub lists: Vec<Spanned<ListConfig>>,
    /// Categories.
    #[serde(default)]
    pub categories: Vec<Spanned<CategoryConfig>>,
    /// Policies.
    #[serde(default)]
    pub policies: Vec<Spanned<PolicyConfig>>,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// UDP and TCP listen addresses.
    #[serde(default = "default_listen")]
    pub listen: Vec<Spanned<String>>,
    /// Networks allowed to query; anyone else gets REFUSED + EDE 18.
    #[serde(default = "default_allow_networks")]
    pub allow_networks: Vec<Spanned<String>>,
    /// The name clients use for DoT (and DoH): device labels are one label below it.
    pub hostname: Option<Spanned<String>>,
    /// DNS over TLS listener (RFC 7858).
    pub dot: Option<Spanned<DotConfig>>,
    /// A device label naming no device: "refuse" (REFUSED + EDE 18) or "anonymous".
    pub unknown_client: Option<Spanned<String>>,
    /// DNS over HTTPS listener (RFC 8484).
    pub doh: Option<Spanned<DohConfig>>,
    /// How long an idle TCP connection is kept, in milliseconds.
    #[serde(default = "default_tcp_idle_ms")]
    pub tcp_idle_timeout_ms: u64,
    /// TCP connections at once, in all (the idlest is closed to make room); also bounded
    /// by the process's file-descriptor limit.
    #[serde(default = "default_tcp_max_connections")]
    pub tcp_max_connections: usize,
    /// TCP connections at once from one client address.
    #[serde(default = "default_tcp_max_per_client")]
    pub tcp_max_per_client: usize,
    /// Where dnsgate keeps state (URL list copies, under `lists/`). Default: systemd's
    /// `$STATE_DIRECTORY`, else `/var/lib/dnsgate`.
    pub state_dir: Option<Spanned<String>>,
    /// Answers per second per client network over UDP (off by default).
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
}

/// `[server] rate_limit`: BIND-style response rate limiting per /24 and /56.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Answers a second to one client network; 0 turns the limit off.
    #[serde(default)]
    pub per_client_qps: u32,
    /// Past the limit, every `slip`-th query gets an empty truncated answer (so a real
    /// client retries over TCP) and the others nothing; 0: nothing for any.
    #[serde(default = "default_slip")]
    pub slip: u32,
}

fn default_slip() -> u32 {
    2
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_client_qps: 0,
            slip: default_slip(),
        }
    }
}

/// Default values carry an empty span: they are in no file.
fn defaults(values: &[&str]) -> Vec<Spanned<String>> {
    values
        .iter()
        .map(|s| Spanned::new(0..0, (*s).to_owned()))
        .collect()
}

fn default_listen() -> Vec<Spanned<String>> {
    defaults(&["127.0.0.1:53", "[::1]:53"])
}
fn default_allow_networks() -> Vec<Spanned<String>> {
    defaults(&["127.0.0.0/8", "::1/128"])
}
fn default_tcp_idle_ms() -> u64 {
    10_000
}
fn default_tcp_max_connections() -> usize {
    1000
}
fn default_tcp_max_per_client() -> usize {
    64
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            allow_networks: default_allow_networks(),
            hostname: None,
            dot: None,
            unknown_client: None,
            doh: None,
            tcp_idle_timeout_ms: default_tcp_idle_ms(),
            tcp_max_connections: default_tcp_max_connections(),
            tcp_max_per_client: default_tcp_max_per_client(),
            state_dir: None,
            rate_limit: RateLimitConfig::default(),
        }
    }
}

/// `[server] dot`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DotConfig {
    /// Addresses to listen on (port 853 by default).
    pub listen: Vec<Spanned<String>>,
    /// Certificate chain, PEM.
    pub cert: Spanned<String>,
    /// Private key, PEM.
    pub key: Spanned<String>,
}

/// `[server] doh`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DohConfig {
    /// Addresses to listen on (port 443 by default).
    pub listen: Vec<Spanned<String>>,
    /// Certificate chain, PEM.
    pub cert: Spanned<String>,
    /// Private key, PEM.
    pub key: Spanned<String>,
    /// The URL path (default `/dns-query`); `<path>/<token>` names a device.
    pub path: Option<Spanned<String>>,
}

/// `[upstream]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// "forward" or "recursive".
    #[serde(default = "default_mode")]
    pub mode: Spanned<String>,
    /// Upstream servers: `udp://IP:PORT`, `tcp://IP:PORT` (a bare `IP[:PORT]` means udp).
    #[serde(default = "default_servers")]
    pub servers: Vec<Spanned<String>>,
    /// Root hints file for recursive mode (`named.root` format); default: the IANA roots.
    pub root_hints: Option<Spanned<String>>,
    /// DNSSEC: "validate" or "off" (default: validate when recursive, off when forwarding).
    pub dnssec: Option<Spanned<String>>,
    /// Trust anchor file (DS or DNSKEY records); default: the root KSKs 20326 and 38696.
    pub trust_anchor: Option<Spanned<String>>,
    /// Zones never validated (local and split-horizon zones).
    #[serde(default)]
    pub insecure_domains: Vec<Spanned<String>>,
    /// Extra root certificates (PEM) for tls:// upstreams, besides the system's.
    pub ca_file: Option<Spanned<String>>,
    /// Outgoing queries one client question may cause (recursive mode).
    #[serde(default = "default_max_queries")]
    pub max_queries_per_request: usize,
    /// Time allowed for an upstream answer before SERVFAIL (or a stale answer).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_max_queries() -> usize {
    50
}

fn default_mode() -> Spanned<String> {
    Spanned::new(0..0, "forward".to_owned())
}
fn default_servers() -> Vec<Spanned<String>> {
    defaults(&["udp://9.9.9.9:53", "udp://1.1.1.1:53"])
}
fn default_timeout_ms() -> u64 {
    2000
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            mode: default_mode(),
            servers: default_servers(),
            root_hints: None,
            dnssec: None,
            trust_anchor: None,
            insecure_domains: Vec::new(),
            ca_file: None,
            max_queries_per_request: default_max_queries(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

/// `[cache]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Maximum number of cached messages; 0 disables the cache.
    #[serde(default = "default_cache_size")]
    pub size: usize,
    /// RFC 8767: answer from expired entries (EDE 3) when upstreams fail.
    #[serde(default = "default_true")]
    pub serve_stale: bool,
    /// Refresh an answer asked for in the last 10% of its TTL, in the background.
    #[serde(default = "default_true")]
    pub prefetch: bool,
}

fn default_cache_size() -> usize {
    100_000
}
fn default_true() -> bool {
    true
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            size: default_cache_size(),
            serve_stale: true,
            prefetch: true,
        }
    }
}

/// `[metrics]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint (`GET /metrics`).
    #[serde(default = "default_metrics_listen")]
    pub listen: Spanned<String>,
}

fn default_metrics_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:9153".to_owned())
}

/// `[geoip]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoipConfig {
    /// A MaxMind-format Country or City database.
    pub database: Spanned<String>,
}

/// `[block]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockConfig {
    /// null | nxdomain | refused | ips
    #[serde(default = "default_block_mode")]
    pub mode: Spanned<String>,
    /// Block-page addresses for mode "ips".
    #[serde(default)]
    pub ips: Vec<Spanned<String>>,
    /// TTL of synthesized block answers.
    #[serde(default = "default_block_ttl")]
    pub ttl: u32,
    /// Block (or override) a name whose answer CNAMEs into a name a pre-resolution block or
    /// override policy matches: trackers hidden behind first-party CNAMEs.
    #[serde(default = "default_true")]
    pub cname_inspection: bool,
}

fn default_block_mode() -> Spanned<String> {
    Spanned::new(0..0, "null".to_owned())
}
fn default_block_ttl() -> u32 {
    60
}

impl Default for BlockConfig {
    fn default() -> Self {
        Self {
            mode: default_block_mode(),
            ips: Vec::new(),
            ttl: default_block_ttl(),
            cname_inspection: true,
        }
    }
}

/// `[querylog]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerylogConfig {
    /// JSON-lines file, appended to; absent: no file.
    pub path: Option<Spanned<String>>,
    /// The searchable store: `"sqlite"` (`<state_dir>/querylog.sqlite`) or `"none"`;
    /// default `"sqlite"` when `[api]` is on, else `"none"`.
    pub store: Option<Spanned<String>>,
    /// How long the store keeps a row (`"7d"`, `"12h"`; default 7 days).
    pub retention: Option<Spanned<String>>,
}

/// `[identity]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The identities file (SPEC §5).
    pub directory: Option<Spanned<String>>,
    /// Match extended e-mail variants in every policy (SPEC §5).
    #[serde(default)]
    pub match_extended_emails: bool,
    /// Revoke devices not seen for this long (`"30d"`; checked at start and hourly; needs
    /// `[api]`, which keeps and audits revocations).
    pub revoke_inactive_after: Option<Spanned<String>>,
    /// With `revoke_inactive_after`: only log what would be revoked.
    #[serde(default)]
    pub dry_run: bool,
}

/// `[api]`: the admin API (SPEC §12).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on (default `127.0.0.1:8053`); not loopback: needs `cert` and `key`.
    #[serde(default = "default_api_listen")]
    pub listen: Spanned<String>,
    /// PEM certificate chain (HTTPS).
    pub cert: Option<Spanned<String>>,
    /// PEM private key.
    pub key: Option<Spanned<String>>,
    /// The tokens file (`[[tokens]]`); absent: no token, so nothing is allowed.
    pub tokens: Option<Spanned<String>>,
    /// The audit log (JSON lines); default `audit.jsonl` under the state directory.
    pub audit_log: Option<Spanned<String>>,
}

fn default_api_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:8053".to_owned())
}

/// `[[lists]]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    /// Name used in expressions as `$name`.
    pub name: Spanned<String>,
    /// domain | ip | email | string
    #[serde(rename = "type", default = "default_list_type")]
    pub kind: Spanned<String>,
    /// A local file.
    pub path: Option<Spanned<String>>,
    /// An `http://` or `https://` URL: fetched at start and every `refresh`, the last good
    /// copy kept on disk.
    pub url: Option<Spanned<String>>,
    /// domains | hosts | adblock | plain (default: domains for domain lists, else plain)
    pub format: Option<Spanned<String>>,
    /// Refresh interval of URL lists (`"30m"`, `"24h"`, `"1d"`; default 24h).
    pub refresh: Option<Spanned<String>>,
    /// Largest body a URL list may have (`"64MiB"`, or a number of bytes; default 64 MiB).
    pub max_size: Option<Spanned<ByteSize>>,
    /// The entries themselves, one per element in the list's format (what a list made
    /// through the admin API holds; a file may use it too), instead of `path` or `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<Spanned<Vec<String>>>,
    /// The identity group (by name) this list is scoped to: only policies of that group
    /// may use it, and `group:NAME` API tokens may manage it (SPEC §12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Spanned<String>>,
    /// Free text.
    pub description: Option<String>,
}

/// A size: a number of bytes, or text with a unit (`"64MiB"`).
#[derive(Debug, Deserialize, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ByteSize {
    /// Bytes.
    Bytes(u64),
    /// Text with a unit.
    Text(String),
}

fn default_list_type() -> Spanned<String> {
    Spanned::new(0..0, "domain".to_owned())
}

/// `[[categories]]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryConfig {
    /// The id used in `dns.content_category` / `dns.security_category`.
    pub id: u32,
    /// Display name.
    pub name: String,
    /// Names of domain lists whose entries (and their subdomains) are in this category.
    #[serde(default)]
    pub lists: Vec<Spanned<String>>,
    /// A security category (`dns.security_category`) rather than a content one.
    #[serde(default)]
    pub security: bool,
    /// Free text.
    pub description: Option<String>,
}

/// `[[policies]]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Display name (also the metrics label).
    pub name: Spanned<String>,
    /// Lower runs first; absent: after every policy with one, in file order.
    pub precedence: Option<i64>,
    /// allow | block | override | safesearch | ytrestricted | resolve | external
    pub action: Spanned<String>,
    /// The traffic expression.
    #[serde(default = "empty_spanned")]
    pub traffic: Spanned<String>,
    /// The identity expression, ANDed with traffic.
    #[serde(default = "empty_spanned")]
    pub identity: Spanned<String>,
    /// EDE extra text for blocks.
    pub block_reason: Option<String>,
    /// This policy's own block mode (overrides `[block] mode`).
    pub block_mode: Option<Spanned<String>>,
    /// Disabled policies are skipped.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Stable identifier.
    pub id: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// override: answer A/AAAA with these.
    #[serde(default)]
    pub override_ips: Vec<Spanned<String>>,
    /// override: answer a CNAME to this host plus its records.
    pub override_host: Option<Spanned<String>>,
    /// resolve: forward matching queries to these upstreams.
    #[serde(default)]
    pub upstreams: Vec<Spanned<String>>,
    /// The identity group (by name) this policy is scoped to: it applies only to clients
    /// in that group, and `group:NAME` API tokens may manage it (SPEC §12).
    pub group: Option<Spanned<String>>,
    /// external: the endpoint that gives the verdict (SPEC §11).
    pub external: Option<Spanned<ExternalConfig>>,
    /// Active only inside these time ranges.
    pub schedule: Option<Spanned<ScheduleConfig>>,
    /// Rule builder: any of these tables must match (if any are given).
    #[serde(default)]
    pub include: Vec<Spanned<SelectorConfig>>,
    /// Rule builder: every one of these tables must match.
    #[serde(default)]
    pub require: Vec<Spanned<SelectorConfig>>,
    /// Rule builder: none of these tables may match.
    #[serde(default)]
    pub exclude: Vec<Spanned<SelectorConfig>>,
}

fn empty_spanned() -> Spanned<String> {
    Spanned::new(0..0, String::new())
}

/// An `external` policy's endpoint (SPEC §11).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalConfig {
    /// `https://`, or `http://` to a loopback address.
    pub url: Spanned<String>,
    /// Milliseconds from the query's arrival; default 50.
    pub timeout_ms: Option<Spanned<u64>>,
    /// `continue` (default), `block` or `allow`.
    pub on_error: Option<Spanned<String>>,
    /// The HMAC key's file (its bytes less one trailing newline).
    pub secret_file: Spanned<String>,
    /// The longest a verdict is kept (`"5m"`, default).
    pub max_cache: Option<Spanned<String>>,
}

/// A policy schedule: per-day comma-separated `HH:MM-HH:MM` ranges in a named time zone.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// IANA time zone name; default UTC.
    pub time_zone: Option<String>,
    /// Monday's ranges.
    pub mon: Option<String>,
    /// Tuesday's ranges.
    pub tue: Option<String>,
    /// Wednesday's ranges.
    pub wed: Option<String>,
    /// Thursday's ranges.
    pub thu: Option<String>,
    /// Friday's ranges.
    pub fri: Option<String>,
    /// Saturday's ranges.
    pub sat: Option<String>,
    /// Sunday's ranges.
    pub sun: Option<String>,
}

/// One or several values.
#[derive(Debug, Deserialize, Clone, Serialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// An array of values.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values as a slice.
    pub fn as_slice(&self) -> &[T] {
        match self {
            Self::One(v) => std::slice::from_ref(v),
            Self::Many(v) => v,
        }
    }
}

/// A rule-builder table (SPEC §4.6): matches when any of its values matches.
#[derive(Debug, Deserialize, Default, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SelectorConfig {
    /// User e-mail addresses.
    pub email: Option<OneOrMany<String>>,
    /// E-mail domains, `@team.com` (the `@` is optional).
    pub email_domain: Option<OneOrMany<String>>,
    /// Group names or ids.
    pub group: Option<OneOrMany<String>>,
    /// Names and their subdomains.
    pub domain: Option<OneOrMany<String>>,
    /// Exact names.
    pub host: Option<OneOrMany<String>>,
    /// Content or security category ids.
    pub category: Option<OneOrMany<u32>>,
    /// Location names.
    pub location: Option<OneOrMany<String>>,
    /// Client networks.
    pub src_ip: Option<OneOrMany<String>>,
    /// Client countries (GeoIP).
    pub country: Option<OneOrMany<String>>,
    /// Lists, by name.
    pub list: Option<OneOrMany<String>>,
    /// Device ids.
    pub device: Option<OneOrMany<String>>,
}
