//! The loaded state: everything a query needs, built from the configuration in one go and
//! swapped whole by a reload (SPEC §7). A query takes one snapshot (`Arc<Runtime>`) and uses
//! it to the end, so a reload never mixes two configurations in one answer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::clock::Clock;
use crate::config::{self, LoadedConfig};
use crate::diag::Diagnostic;
use crate::geoip::GeoIp;
use crate::identity::Directory;
use crate::lists::List;
use crate::lists::url::{Mode, UrlLists, UrlSpec};
use crate::netmap::{PrefixMap, canonical_net};
use crate::policy::{self, BlockMode, BuildEnv, PolicySet};
use crate::resolve::dnssec::TrustAnchors;
use crate::resolve::validate::Validation;
use crate::resolve::{
    Dnssec, Forwarder, Recursor, RecursorConfig, RootHints, Upstream, UpstreamSpec, parse_specs,
};

mod lists;
mod live;
pub mod overlays;
pub mod querylog;
pub mod tls;

use lists::load_lists;
pub use live::Live;

/// Settings that only take effect at start (listeners, cache size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// DNS listen addresses (UDP and TCP).
    pub listen: Vec<SocketAddr>,
    /// Metrics address.
    pub metrics: Option<SocketAddr>,
    /// Query log file.
    pub querylog: Option<PathBuf>,
    /// The query store (`[querylog] store`).
    pub querylog_store: Option<crate::querylog::StoreSpec>,
    /// Cache size in messages.
    pub cache_size: usize,
    /// Serve stale answers.
    pub serve_stale: bool,
    /// Refresh popular answers before they expire.
    pub prefetch: bool,
    /// The DoT listener (addresses are read at start; the certificate on every reload).
    pub dot: Option<Dot>,
    /// The DoH listener (likewise).
    pub doh: Option<Doh>,
    /// The admin API.
    pub api: Option<Api>,
    /// TCP idle timeout.
    pub tcp_idle: Duration,
    /// TCP connections at once, in all.
    pub tcp_max_connections: usize,
    /// TCP connections at once from one client.
    pub tcp_max_per_client: usize,
}

/// Where an object comes from: a configuration file, or the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A configuration (or identities) file: read-only through the API, but for overlays.
    File,
    /// Made through the admin API, kept under `state_dir`.
    Api,
    /// Provisioned by an identity provider through SCIM, kept under `state_dir`.
    Scim,
}

impl Origin {
    /// As the API shows it in `source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Api => "api",
            Self::Scim => "scim",
        }
    }
}

/// The admin API's settings (SPEC §12).
#[derive(Debug, Clone)]
pub struct Api {
    /// Its address.
    pub listen: SocketAddr,
    /// HTTPS (certificate and key, ALPN `h2` and `http/1.1`); required off loopback.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Where every write attempt is written, chained.
    pub audit_log: PathBuf,
    /// Where the API's changes to file objects are kept ([`overlays::Overlays`]).
    pub overlays: PathBuf,
    /// Where tokens made through the API are kept (a tokens file).
    pub api_tokens: PathBuf,
    /// Where lists, categories and policies made through the API are kept (shaped as an
    /// included file, loaded after the configuration files).
    pub objects: PathBuf,
    /// Where users, groups, devices and locations made through the API are kept (shaped
    /// as the identities file, loaded with it).
    pub identities: PathBuf,
    /// SCIM's own view of its users and groups (ids, external ids, members).
    pub scim: PathBuf,
    /// The users and groups SCIM provisioned, shaped as the identities file (made from
    /// [`Api::scim`] at each SCIM write, loaded with the identities file).
    pub scim_identities: PathBuf,
    /// When each device was last seen, kept across restarts.
    pub last_seen: PathBuf,
    /// `[identity] revoke_inactive_after`: devices not seen for this long are revoked.
    pub revoke_inactive_after: Option<Duration>,
    /// `[identity] dry_run`: only log them.
    pub dry_run: bool,
}

/// The directory of the admin API's state (`<state_dir>/api`), when `[api]` is on.
fn api_dir(cfg: &LoadedConfig) -> Option<PathBuf> {
    cfg.main.api.as_ref()?;
    let mf = cfg.main_file();
    let state = cfg
        .main
        .server
        .state_dir
        .as_ref()
        .map(|d| mf.resolve(d.get_ref()));
    Some(crate::lists::url::state_dir(state.as_deref()).join("api"))
}

/// Same listener when the same address (the certificate and the tokens apply at reload).
impl PartialEq for Api {
    fn eq(&self, other: &Self) -> bool {
        self.listen == other.listen
    }
}

impl Eq for Api {}

/// The DoT listener's settings.
#[derive(Debug, Clone)]
pub struct Dot {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// The TLS configuration (certificate, key, ALPN `dot`).
    pub tls: Arc<rustls::ServerConfig>,
}

/// Two DoT settings are the same listener when they listen on the same addresses: a new
/// certificate is taken up by the next handshake, with no restart.
impl PartialEq for Dot {
    fn eq(&self, other: &Self) -> bool {
        self.listen == other.listen
    }
}

impl Eq for Dot {}

/// The DoH listener's settings.
#[derive(Debug, Clone)]
pub struct Doh {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// The TLS configuration (certificate, key, ALPN `h2` and `http/1.1`).
    pub tls: Arc<rustls::ServerConfig>,
    /// The URL path, without a trailing `/`.
    pub path: String,
}

/// Same listener when the same addresses (the certificate and path apply at reload).
impl PartialEq for Doh {
    fn eq(&self, other: &Self) -> bool {
        self.listen == other.listen
    }
}

impl Eq for Doh {}

/// What a client whose device label (or token) names no device gets (SPEC §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownClient {
    /// REFUSED + EDE 18.
    Refuse,
    /// Served as a client with no identity (still subject to `allow_networks`).
    Anonymous,
}

/// Facts about a loaded list, for `check` and metrics.
#[derive(Debug, Clone)]
pub struct ListInfo {
    /// Name.
    pub name: String,
    /// Entries.
    pub entries: usize,
    /// Skipped lines.
    pub skipped: usize,
}

/// Everything loaded from one configuration.
///
/// The policies and the lists they were compiled against are this value's own; the rest
/// ([`Base`]) is shared with the runtimes a URL-list swap derives from it, and reached
/// through `Deref` (`rt.directory`).
#[derive(Debug)]
pub struct Runtime {
    /// Policies and categories.
    pub policies: PolicySet,
    /// Lists by name.
    pub lists: HashMap<String, Arc<List>>,
    /// List facts, in configuration order.
    pub list_info: Vec<ListInfo>,
    /// Unique per built runtime: what the packet cache stored under another generation
    /// was decided by another configuration.
    pub generation: u64,
    base: Arc<Base>,
}

/// The part of a [`Runtime`] that does not depend on list contents.
#[derive(Debug)]
pub struct Base {
    /// Users, devices, locations.
    pub directory: Directory,
    /// GeoIP database.
    pub geoip: Option<GeoIp>,
    /// Networks allowed to query (longest-prefix map: a probe per prefix length in use).
    allow: PrefixMap<()>,
    /// Block-page addresses.
    pub block_ips: Vec<IpAddr>,
    /// TTL of synthesized answers.
    pub block_ttl: u32,
    /// `[block] cname_inspection`: CNAME targets in an answer face the pre-resolution
    /// block and override policies too.
    pub cname_inspection: bool,
    /// `[server] rate_limit`.
    pub rate_limit: config::RateLimitConfig,
    /// Upstream groups; 0 is `[upstream] servers`, the rest belong to resolve policies.
    pub upstreams: Vec<Arc<Upstream>>,
    /// The identities file and the API's, as written (the API shows their users, groups,
    /// devices and locations).
    pub identity_files: Vec<(Origin, toml::Table)>,
    /// The API's changes to file objects, applied to the policies and the directory.
    pub overlays: overlays::Overlays,
    /// The names of the tokens made through the API (the others are the file's).
    pub api_tokens: Vec<String>,
    /// The admin API's tokens (`[api] tokens`).
    pub tokens: Arc<crate::access::Tokens>,
    /// The `external` policies' endpoints (index: [`crate::policy::CompiledPolicy::external`]).
    pub endpoints: Vec<Arc<crate::external::Endpoint>>,
    /// DNSSEC validation of what the upstreams say.
    pub dnssec: Dnssec,
    /// The name DoT clients use; device labels are one label below it.
    pub hostname: Option<String>,
    /// What a device label naming no device gets.
    pub unknown_client: UnknownClient,
    /// Zones never validated.
    pub insecure_domains: Vec<hickory_proto::rr::Name>,
    /// Start-time settings.
    pub settings: Settings,
    /// The URL lists of this configuration, in configuration order.
    pub url_specs: Vec<UrlSpec>,
    /// The process's URL list copies (shared by every runtime it builds), so a reload
    /// takes the copies it has instead of fetching them again.
    pub url_lists: Arc<UrlLists>,
    /// The configuration this was built from, to recompile policies when a URL list is
    /// swapped (see [`Runtime::with_list`]).
    /// The configuration files as loaded (the API shows their objects).
    pub config: Arc<LoadedConfig>,
    /// The policy build settings derived from it.
    flags: PolicyFlags,
    /// The one clock: the server started on this runtime tells time by it, and so does
    /// every runtime a reload builds after it.
    pub clock: Clock,
}

impl std::ops::Deref for Runtime {
    type Target = Base;

    fn deref(&self) -> &Base {
        &self.base
    }
}

/// What policy compilation needs besides the lists (see [`BuildEnv`]).
#[derive(Debug, Clone, Copy)]
struct PolicyFlags {
    has_geoip: bool,
    match_extended_emails: bool,
    default_block_mode: BlockMode,
    has_block_ips: bool,
}

impl PolicyFlags {
    fn env<'a>(&self, lists: &'a HashMap<String, Arc<List>>) -> BuildEnv<'a> {
        BuildEnv {
            lists,
            has_geoip: self.has_geoip,
            match_extended_emails: self.match_extended_emails,
            default_block_mode: self.default_block_mode,
            has_block_ips: self.has_block_ips,
        }
    }
}

/// Hands out [`Runtime::generation`]s.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn parse_addr(
    file: &config::SourceFile,
    s: &toml::Spanned<String>,
    diags: &mut Vec<Diagnostic>,
) -> Option<SocketAddr> {
    s.get_ref()
        .parse()
        .map_err(|_| {
            diags.push(file.diag(
                &s.span(),
                format!("`{}` is not an address:port", s.get_ref()),
            ))
        })
        .ok()
}

impl Runtime {
    /// Loads a configuration file and everything it names. Reports every problem.
    ///
    /// URL lists come from their copies on disk, or are fetched if they have none; nothing
    /// is written (this is what `check` and `explain` do). `run` uses [`Runtime::load_with`].
    pub fn load(path: &Path) -> Result<Self, Vec<Diagnostic>> {
        Self::load_with(
            path,
            &Arc::new(UrlLists::new(Mode::ReadOnly)),
            &Clock::new(),
        )
    }

    /// Loads a configuration, taking URL lists from `url_lists` (memory, then disk, then
    /// the network; see [`UrlLists::ensure`]). May block while fetching.
    pub fn load_with(
        path: &Path,
        url_lists: &Arc<UrlLists>,
        clock: &Clock,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut cfg = config::load(path)?;
        if let Some(dir) = api_dir(&cfg) {
            config::load::add_api_file(&mut cfg, &dir.join("config.toml"))?;
        }
        Self::build(Arc::new(cfg), url_lists, clock)
    }

    /// Builds the runtime from a read configuration.
    pub fn build(
        cfg: Arc<LoadedConfig>,
        url_lists: &Arc<UrlLists>,
        clock: &Clock,
    ) -> Result<Self, Vec<Diagnostic>> {
        let main = &cfg.main;
        let mf = cfg.main_file();
        let mut diags = Vec::new();

        let listen = main
            .server
            .listen
            .iter()
            .filter_map(|s| parse_addr(mf, s, &mut diags))
            .collect();
        let mut allow = PrefixMap::default();
        for s in &main.server.allow_networks {
            let net = s
                .get_ref()
                .parse::<IpNet>()
                .or_else(|_| s.get_ref().parse::<IpAddr>().map(IpNet::from));
            match net {
                // Host bits are ignored here ("192.168.1.1/24" is that LAN), as in Unbound's
                // access-control.
                Ok(net) => allow.insert(canonical_net(net.trunc()), ()),
                Err(_) => {
                    diags.push(mf.diag(&s.span(), format!("`{}` is not a network", s.get_ref())))
                }
            }
        }
        let doh = main.server.doh.as_ref().and_then(|d| {
            let d = d.get_ref();
            let listen: Vec<SocketAddr> = d
                .listen
                .iter()
                .filter_map(|s| parse_addr(mf, s, &mut diags))
                .collect();
            let path = match &d.path {
                None => "/dns-query".to_owned(),
                Some(p) if p.get_ref().starts_with('/') && p.get_ref().len() > 1 => {
                    p.get_ref().trim_end_matches('/').to_owned()
                }
                Some(p) => {
                    diags.push(mf.diag(
                        &p.span(),
                        format!(
                            "DoH path `{}` must start with / and name something",
                            p.get_ref()
                        ),
                    ));
                    return None;
                }
            };
            match tls::server_config(
                &mf.resolve(d.cert.get_ref()),
                &mf.resolve(d.key.get_ref()),
                &[b"h2", b"http/1.1"],
            ) {
                Ok(tls) => Some(Doh { listen, tls, path }),
                Err(e) => {
                    diags.push(mf.diag(&d.cert.span(), e));
                    None
                }
            }
        });
        let hostname = main.server.hostname.as_ref().and_then(|h| {
            let name = crate::lists::name_to_ascii(h.get_ref())
                .ok()
                .map(|a| a.trim_end_matches('.').to_ascii_lowercase())
                .filter(|a| !a.is_empty() && a.contains('.'));
            if name.is_none() {
                diags.push(mf.diag(&h.span(), format!("`{}` is not a host name", h.get_ref())));
            }
            name
        });
        let dot = main.server.dot.as_ref().and_then(|d| {
            let listen: Vec<SocketAddr> = d
                .get_ref()
                .listen
                .iter()
                .filter_map(|s| parse_addr(mf, s, &mut diags))
                .collect();
            let (cert, key) = (&d.get_ref().cert, &d.get_ref().key);
            match tls::server_config(
                &mf.resolve(cert.get_ref()),
                &mf.resolve(key.get_ref()),
                &[b"dot"],
            ) {
                Ok(tls) => Some(Dot { listen, tls }),
                Err(e) => {
                    diags.push(mf.diag(&cert.span(), e));
                    None
                }
            }
        });
        let revoke_inactive_after = main.identity.revoke_inactive_after.as_ref().and_then(|r| {
            if main.api.is_none() {
                diags.push(mf.diag(
                    &r.span(),
                    "revoke_inactive_after needs [api]: the admin API keeps and audits revocations",
                ));
                return None;
            }
            crate::lists::url::parse_duration(r.get_ref())
                .map_err(|e| diags.push(mf.diag(&r.span(), format!("revoke_inactive_after: {e}"))))
                .ok()
        });
        let api = main.api.as_ref().and_then(|a| {
            let listen = parse_addr(mf, &a.listen, &mut diags)?;
            let tls = match (&a.cert, &a.key) {
                (Some(cert), Some(key)) => match tls::server_config(
                    &mf.resolve(cert.get_ref()),
                    &mf.resolve(key.get_ref()),
                    &[b"h2", b"http/1.1"],
                ) {
                    Ok(tls) => Some(tls),
                    Err(e) => {
                        diags.push(mf.diag(&cert.span(), e));
                        return None;
                    }
                },
                (None, None) if listen.ip().is_loopback() => None,
                (None, None) => {
                    diags.push(mf.diag(
                        &a.listen.span(),
                        format!("[api] listen {listen} is not loopback: it needs cert and key (HTTPS), or tokens would cross the network in clear text"),
                    ));
                    return None;
                }
                (Some(c), None) | (None, Some(c)) => {
                    diags.push(mf.diag(&c.span(), "[api] needs both cert and key"));
                    return None;
                }
            };
            let dir = api_dir(&cfg)?;
            let audit_log = match &a.audit_log {
                Some(p) => mf.resolve(p.get_ref()),
                None => dir.parent().unwrap_or(&dir).join("audit.jsonl"),
            };
            Some(Api {
                listen,
                tls,
                audit_log,
                overlays: dir.join("overlays.json"),
                api_tokens: dir.join("tokens.toml"),
                objects: dir.join("config.toml"),
                identities: dir.join("identities.toml"),
                scim: dir.join("scim.json"),
                scim_identities: dir.join("scim.toml"),
                last_seen: dir.join("last_seen.json"),
                revoke_inactive_after,
                dry_run: main.identity.dry_run,
            })
        });
        // The API's overlays, over what the files say.
        let overlays = match &api {
            Some(a) => overlays::Overlays::load(&a.overlays).unwrap_or_else(|d| {
                diags.push(d);
                overlays::Overlays::default()
            }),
            None => overlays::Overlays::default(),
        };
        // The identities file, then what the API made: read once, for the directory and
        // for the API's listings.
        let identity_paths: Vec<(Origin, PathBuf)> = main
            .identity
            .directory
            .as_ref()
            .map(|d| (Origin::File, mf.resolve(d.get_ref())))
            .into_iter()
            .chain(api.iter().flat_map(|a| {
                [
                    (Origin::Api, a.identities.clone()),
                    (Origin::Scim, a.scim_identities.clone()),
                ]
            }))
            .filter(|(origin, p)| *origin == Origin::File || p.exists())
            .collect();
        let mut identity_texts = Vec::new();
        for (origin, path) in identity_paths {
            match std::fs::read_to_string(&path) {
                Ok(text) => identity_texts.push((origin, path, text)),
                Err(e) => diags.push(Diagnostic::file(
                    &path,
                    format!("cannot read identity directory: {e}"),
                )),
            }
        }
        let identity_files: Vec<(Origin, toml::Table)> = identity_texts
            .iter()
            .filter_map(|(o, _, text)| Some((*o, toml::from_str::<toml::Table>(text).ok()?)))
            .collect();
        let mut tokens = match main.api.as_ref().and_then(|a| a.tokens.as_ref()) {
            None => crate::access::Tokens::default(),
            Some(t) => {
                crate::access::Tokens::load(&mf.resolve(t.get_ref())).unwrap_or_else(|mut e| {
                    diags.append(&mut e);
                    crate::access::Tokens::default()
                })
            }
        };
        // Tokens made through the API, after those of the file.
        let mut api_tokens = Vec::new();
        if let Some(path) = api.as_ref().map(|a| &a.api_tokens).filter(|p| p.exists()) {
            match crate::access::Tokens::load(path) {
                Ok(made) => {
                    for t in made.iter() {
                        api_tokens.push(t.name.clone());
                        if let Err(e) = tokens.insert(t.clone()) {
                            diags.push(Diagnostic::file(path, e.to_string()));
                        }
                    }
                }
                Err(mut e) => diags.append(&mut e),
            }
        }
        let unknown_client = match main
            .server
            .unknown_client
            .as_ref()
            .map(|u| (u, u.get_ref().as_str()))
        {
            None | Some((_, "refuse")) => UnknownClient::Refuse,
            Some((_, "anonymous")) => UnknownClient::Anonymous,
            Some((u, other)) => {
                diags.push(mf.diag(
                    &u.span(),
                    format!("unknown_client `{other}` (expected refuse or anonymous)"),
                ));
                UnknownClient::Refuse
            }
        };
        let timeout = Duration::from_millis(main.upstream.timeout_ms.max(1));
        let default_specs: Vec<UpstreamSpec> = parse_specs(&main.upstream.servers, |s, e| {
            diags.push(mf.diag(&s.span(), e.to_string()))
        });
        let recursive = match main.upstream.mode.get_ref().as_str() {
            "forward" => false,
            "recursive" => true,
            other => {
                diags.push(mf.diag(
                    &main.upstream.mode.span(),
                    format!("unknown upstream mode `{other}` (expected forward or recursive)"),
                ));
                false
            }
        };
        if !recursive && main.upstream.servers.is_empty() {
            diags.push(mf.diag(&main.upstream.mode.span(), "[upstream] servers is empty"));
        }
        let hints = match &main.upstream.root_hints {
            None => RootHints::built_in(),
            Some(path) => {
                let file = mf.resolve(path.get_ref());
                std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read root hints {}: {e}", file.display()))
                    .and_then(|text| {
                        RootHints::parse(&text)
                            .map_err(|e| format!("root hints {}: {e}", file.display()))
                    })
                    .unwrap_or_else(|e| {
                        diags.push(mf.diag(&path.span(), e));
                        RootHints::built_in()
                    })
            }
        };
        let dnssec = match main
            .upstream
            .dnssec
            .as_ref()
            .map(|d| (d, d.get_ref().as_str()))
        {
            None => {
                if recursive {
                    Dnssec::Validate
                } else {
                    Dnssec::Off
                }
            }
            Some((_, "validate")) => Dnssec::Validate,
            Some((_, "off")) => Dnssec::Off,
            Some((d, other)) => {
                diags.push(mf.diag(
                    &d.span(),
                    format!("unknown dnssec setting `{other}` (expected validate or off)"),
                ));
                Dnssec::Off
            }
        };
        let mut insecure_domains = Vec::new();
        for d in &main.upstream.insecure_domains {
            match crate::lists::name_to_ascii(d.get_ref()).ok().and_then(|a| {
                hickory_proto::rr::Name::from_ascii(format!("{}.", a.trim_end_matches('.'))).ok()
            }) {
                Some(n) => insecure_domains.push(n),
                None => diags
                    .push(mf.diag(&d.span(), format!("`{}` is not a domain name", d.get_ref()))),
            }
        }
        let anchors = match &main.upstream.trust_anchor {
            None => TrustAnchors::root(),
            Some(path) => {
                let file = mf.resolve(path.get_ref());
                match std::fs::read_to_string(&file) {
                    Err(e) => {
                        diags.push(mf.diag(
                            &path.span(),
                            format!("cannot read trust anchor {}: {e}", file.display()),
                        ));
                        TrustAnchors::root()
                    }
                    Ok(text) => TrustAnchors::parse(&text).unwrap_or_else(|e| {
                        diags.push(mf.diag(
                            &path.span(),
                            format!("trust anchor {}:{}: {}", file.display(), e.line, e.message),
                        ));
                        TrustAnchors::root()
                    }),
                }
            }
        };
        if main.upstream.max_queries_per_request == 0 {
            diags.push(mf.diag(
                &main.upstream.mode.span(),
                "[upstream] max_queries_per_request must be at least 1",
            ));
        }
        let default_block_mode = BlockMode::parse(main.block.mode.get_ref()).unwrap_or_else(|| {
            diags.push(mf.diag(
                &main.block.mode.span(),
                format!(
                    "unknown block mode `{}` (expected null, nxdomain, refused or ips)",
                    main.block.mode.get_ref()
                ),
            ));
            BlockMode::Null
        });
        let block_ips: Vec<IpAddr> = main
            .block
            .ips
            .iter()
            .filter_map(|s| {
                s.get_ref()
                    .parse()
                    .map_err(|_| {
                        diags.push(
                            mf.diag(&s.span(), format!("`{}` is not an IP address", s.get_ref())),
                        )
                    })
                    .ok()
            })
            .collect();

        if default_block_mode == BlockMode::Ips && main.block.ips.is_empty() {
            diags.push(mf.diag(
                &main.block.mode.span(),
                "block mode \"ips\" needs [block] ips",
            ));
        }

        let metrics = main
            .metrics
            .as_ref()
            .and_then(|m| parse_addr(mf, &m.listen, &mut diags));
        let querylog = main
            .querylog
            .as_ref()
            .and_then(|q| q.path.as_ref())
            .map(|p| mf.resolve(p.get_ref()));
        let querylog_store = querylog::store_spec(main, mf, &mut diags);

        let geoip = main.geoip.as_ref().and_then(|g| {
            GeoIp::open(&mf.resolve(g.database.get_ref()))
                .map_err(|e| diags.push(mf.diag(&g.database.span(), e.to_string())))
                .ok()
        });
        let mut directory = if identity_texts.is_empty() {
            Directory::default()
        } else {
            let files: Vec<crate::identity::IdentityFile<'_>> = identity_texts
                .iter()
                .map(|(origin, p, t)| crate::identity::IdentityFile {
                    path: p,
                    text: t,
                    managed: *origin == Origin::Scim,
                })
                .collect();
            Directory::parse_all(&files).unwrap_or_else(|mut e| {
                diags.append(&mut e);
                Directory::default()
            })
        };
        for (id, o) in &overlays.devices {
            let known = if o.revoked {
                directory.revoke(id)
            } else if let Some(digest) = &o.doh_token_sha256 {
                directory.replace_token(id, digest)
            } else {
                true
            };
            if !known {
                tracing::warn!(device = %id, "the API's overlay names a device the identities file no longer has; ignored");
            }
        }

        let (lists, list_info, url_specs) =
            load_lists(&cfg, url_lists, clock.system_time(), &mut diags);
        let flags = PolicyFlags {
            has_geoip: main.geoip.is_some(),
            match_extended_emails: main.identity.match_extended_emails,
            default_block_mode,
            has_block_ips: !main.block.ips.is_empty(),
        };
        diags.extend(policy::scope::check(&cfg));
        let built = policy::build(&cfg, &flags.env(&lists));
        let (policies, groups) = match built {
            Ok(x) => x,
            Err(mut e) => {
                diags.append(&mut e);
                Default::default()
            }
        };
        if !diags.is_empty() {
            return Err(diags);
        }
        let validation = (dnssec == Dnssec::Validate).then(|| Validation {
            anchors: anchors.clone(),
            insecure_domains: insecure_domains.clone(),
        });
        // DoT upstreams: the system's roots plus `ca_file` (read once per load).
        let tls_config = {
            let ca = main.upstream.ca_file.as_ref();
            match crate::resolve::client_tls(ca.map(|c| mf.resolve(c.get_ref())).as_deref()) {
                Ok(c) => Some(c),
                Err(e) => {
                    if let Some(c) = ca {
                        diags.push(mf.diag(&c.span(), e));
                    }
                    None
                }
            }
        };
        // External policies' endpoints: their secrets read once per load (a URL-list swap
        // keeps them, with their verdict caches and connections).
        let mut endpoints = Vec::new();
        for e in &policies.externals {
            let key = match std::fs::read(&e.secret_file) {
                Ok(mut k) => {
                    if k.last() == Some(&b'\n') {
                        k.pop();
                    }
                    k
                }
                Err(err) => {
                    let mut d = e.secret_at.clone();
                    d.message = format!(
                        "policy `{}`: cannot read secret_file {}: {err}",
                        e.policy,
                        e.secret_file.display()
                    );
                    diags.push(d);
                    continue;
                }
            };
            if key.is_empty() {
                let mut d = e.secret_at.clone();
                d.message = format!("policy `{}`: secret_file is empty", e.policy);
                diags.push(d);
                continue;
            }
            let spec = crate::external::Spec {
                url: e.url.clone(),
                key,
                timeout: e.timeout,
                on_error: e.on_error,
                max_cache: e.max_cache,
            };
            match crate::external::Endpoint::new(&e.policy, spec, tls_config.clone()) {
                Ok(ep) => endpoints.push(Arc::new(ep)),
                Err(msg) => {
                    let mut d = e.secret_at.clone();
                    d.message = format!("policy `{}`: {msg}", e.policy);
                    diags.push(d);
                }
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        let plain_defaults = default_specs.clone();
        let with_tls = |f: Forwarder| match &tls_config {
            Some(c) => f.with_tls(c.clone()).with_bootstrap(plain_defaults.clone()),
            None => f.with_bootstrap(plain_defaults.clone()),
        };
        let default = if recursive {
            Upstream::Recurse(Recursor::new(
                RecursorConfig {
                    hints,
                    timeout,
                    max_queries: main.upstream.max_queries_per_request,
                    validation: validation.clone(),
                },
                clock.clone(),
            ))
        } else {
            let f = with_tls(Forwarder::new(default_specs, timeout, clock.clone()));
            Upstream::Forward(match validation.clone() {
                Some(v) => f.validating(v),
                None => f,
            })
        };
        let upstreams = std::iter::once(Arc::new(default))
            // `resolve` policies' servers are validated too (their local zones go in
            // `insecure_domains`, as with Unbound's forward zones).
            .chain(groups.into_iter().map(|specs| {
                let f = with_tls(Forwarder::new(specs, timeout, clock.clone()));
                Arc::new(Upstream::Forward(match validation.clone() {
                    Some(v) => f.validating(v),
                    None => f,
                }))
            }))
            .collect();
        let base = Base {
            directory,
            geoip,
            allow,
            block_ips,
            block_ttl: main.block.ttl,
            cname_inspection: main.block.cname_inspection,
            rate_limit: main.server.rate_limit,
            upstreams,
            endpoints,
            dnssec,
            hostname,
            unknown_client,
            insecure_domains,
            tokens: Arc::new(tokens),
            api_tokens,
            identity_files,
            overlays,
            settings: Settings {
                listen,
                metrics,
                querylog,
                querylog_store,
                cache_size: main.cache.size,
                serve_stale: main.cache.serve_stale,
                prefetch: main.cache.prefetch,
                dot,
                doh,
                api,
                tcp_idle: Duration::from_millis(main.server.tcp_idle_timeout_ms.max(100)),
                tcp_max_connections: main.server.tcp_max_connections.max(1),
                tcp_max_per_client: main.server.tcp_max_per_client.max(1),
            },
            url_specs,
            url_lists: url_lists.clone(),
            config: cfg.clone(),
            flags,
            clock: clock.clone(),
        };
        Ok(Self::assemble(policies, lists, list_info, Arc::new(base)))
    }

    /// A runtime of these policies and lists over `base`, with a generation of its own.
    fn assemble(
        mut policies: PolicySet,
        lists: HashMap<String, Arc<List>>,
        list_info: Vec<ListInfo>,
        base: Arc<Base>,
    ) -> Self {
        for p in &mut policies.policies {
            if let Some(enabled) = base.overlays.policies.get(&p.name).and_then(|o| o.enabled) {
                p.enabled = enabled;
            }
        }
        Self {
            policies,
            lists,
            list_info,
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            base,
        }
    }

    /// This runtime with list `name` replaced by `list` (a URL list refreshed): policies
    /// and categories are recompiled against it, everything else is shared as it is (no
    /// file is read). Compiling costs microseconds a policy.
    pub fn with_list(
        &self,
        name: &str,
        list: Arc<List>,
        entries: usize,
        skipped: usize,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut lists = self.lists.clone();
        lists.insert(name.to_owned(), list);
        let (policies, _same_groups) = policy::build(&self.config, &self.flags.env(&lists))?;
        let list_info = self
            .list_info
            .iter()
            .map(|l| {
                if l.name == name {
                    ListInfo {
                        name: l.name.clone(),
                        entries,
                        skipped,
                    }
                } else {
                    l.clone()
                }
            })
            .collect();
        // Directory, GeoIP, upstreams (with what they learned): the same, shared.
        Ok(Self::assemble(
            policies,
            lists,
            list_info,
            self.base.clone(),
        ))
    }

    /// Takes over the upstream groups of `old` that are configured the same, so a reload
    /// keeps what they learned (which servers are down) and their in-flight limits.
    pub fn adopt_upstreams(&mut self, old: &Self) {
        // Only a runtime fresh from `build` (whose base nobody shares yet) adopts.
        if let Some(base) = Arc::get_mut(&mut self.base) {
            for f in &mut base.upstreams {
                if let Some(same) = old.upstreams.iter().find(|o| o.same_config(f)) {
                    *f = same.clone();
                }
            }
        }
    }
}

impl Base {
    /// Whether a client may query (SPEC §4.1).
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        self.allow.get(ip.to_canonical()).is_some()
    }
}

impl Runtime {
    /// A one-line summary for `dnsgate check` and the start-up log.
    pub fn summary(&self) -> String {
        let entries: usize = self.list_info.iter().map(|l| l.entries).sum();
        format!(
            "ok: {} policies, {} lists ({} entries), {} categories, {} upstream groups ({}), geoip {}",
            self.policies.policies.len(),
            self.list_info.len(),
            entries,
            self.policies.categories.len(),
            self.upstreams.len(),
            match self.upstreams.first().map(|u| &**u) {
                Some(Upstream::Recurse(_)) => "recursive",
                _ => "forward",
            },
            if self.geoip.is_some() { "on" } else { "off" },
        )
    }
}
