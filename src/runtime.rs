//! The loaded state: everything a query needs, built from the configuration in one go and
//! swapped whole by a reload (SPEC §7). A query takes one snapshot (`Arc<Runtime>`) and uses
//! it to the end, so a reload never mixes two configurations in one answer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tracing::info;

use crate::server::packet::ClientClass;
use crate::config::{self, LoadedConfig};
use crate::diag::Diagnostic;
use crate::geoip::GeoIp;
use crate::identity::Directory;
use crate::lists::{List, ListFormat, ListKind};
use crate::netmap::{PrefixMap, canonical_net};
use crate::policy::{self, BlockMode, BuildEnv, PolicySet};
use crate::resolve::{Forwarder, UpstreamSpec, parse_specs};

/// Settings that only take effect at start (listeners, cache size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// DNS listen addresses (UDP and TCP).
    pub listen: Vec<SocketAddr>,
    /// Metrics address.
    pub metrics: Option<SocketAddr>,
    /// Query log file.
    pub querylog: Option<PathBuf>,
    /// Cache size in messages.
    pub cache_size: usize,
    /// Serve stale answers.
    pub serve_stale: bool,
    /// TCP idle timeout.
    pub tcp_idle: Duration,
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
#[derive(Debug)]
pub struct Runtime {
    /// Policies and categories.
    pub policies: PolicySet,
    /// Lists by name.
    pub lists: HashMap<String, Arc<List>>,
    /// List facts, in configuration order.
    pub list_info: Vec<ListInfo>,
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
    /// Upstream groups; 0 is `[upstream] servers`, the rest belong to resolve policies.
    pub upstreams: Vec<Arc<Forwarder>>,
    /// Start-time settings.
    pub settings: Settings,
    /// Unique per built runtime: what the packet cache stored under another generation
    /// was decided by another configuration.
    pub generation: u64,
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
    pub fn load(path: &Path) -> Result<Self, Vec<Diagnostic>> {
        let cfg = config::load(path)?;
        Self::build(&cfg)
    }

    /// Builds the runtime from a read configuration.
    pub fn build(cfg: &LoadedConfig) -> Result<Self, Vec<Diagnostic>> {
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
        for (key, v) in [("dot", &main.server.dot), ("doh", &main.server.doh)] {
            if let Some(v) = v {
                diags.push(mf.diag(
                    &v.span(),
                    format!("[server] {key}: DNS-over-TLS/HTTPS listeners are not supported yet"),
                ));
            }
        }
        if main.upstream.mode.get_ref() != "forward" {
            let msg = match main.upstream.mode.get_ref().as_str() {
                "recursive" => {
                    "recursive mode is not supported yet: use mode = \"forward\"".to_owned()
                }
                other => format!("unknown upstream mode `{other}` (expected forward or recursive)"),
            };
            diags.push(mf.diag(&main.upstream.mode.span(), msg));
        }
        let timeout = Duration::from_millis(main.upstream.timeout_ms.max(1));
        let default_specs: Vec<UpstreamSpec> = parse_specs(&main.upstream.servers, |s, e| {
            diags.push(mf.diag(&s.span(), e.to_string()))
        });
        if main.upstream.servers.is_empty() {
            diags.push(mf.diag(&main.upstream.mode.span(), "[upstream] servers is empty"));
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
        let querylog = main.querylog.as_ref().map(|q| mf.resolve(q.path.get_ref()));

        let geoip = main.geoip.as_ref().and_then(|g| {
            GeoIp::open(&mf.resolve(g.database.get_ref()))
                .map_err(|e| diags.push(mf.diag(&g.database.span(), e.to_string())))
                .ok()
        });
        let directory = match &main.identity.directory {
            None => Directory::default(),
            Some(d) => Directory::load(&mf.resolve(d.get_ref())).unwrap_or_else(|mut e| {
                diags.append(&mut e);
                Directory::default()
            }),
        };

        let (lists, list_info) = load_lists(cfg, &mut diags);
        let env = BuildEnv {
            lists: &lists,
            has_geoip: main.geoip.is_some(),
            match_extended_emails: main.identity.match_extended_emails,
            default_block_mode,
            has_block_ips: !main.block.ips.is_empty(),
        };
        let built = policy::build(cfg, &env);
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
        let upstreams = std::iter::once(default_specs)
            .chain(groups)
            .map(|specs| Arc::new(Forwarder::new(specs, timeout)))
            .collect();
        Ok(Self {
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            policies,
            lists,
            list_info,
            directory,
            geoip,
            allow,
            block_ips,
            block_ttl: main.block.ttl,
            upstreams,
            settings: Settings {
                listen,
                metrics,
                querylog,
                cache_size: main.cache.size,
                serve_stale: main.cache.serve_stale,
                tcp_idle: Duration::from_millis(main.server.tcp_idle_timeout_ms.max(100)),
            },
        })
    }

    /// Takes over the upstream groups of `old` that are configured the same, so a reload
    /// keeps what they learned (which servers are down) and their in-flight limits.
    pub fn adopt_upstreams(&mut self, old: &Self) {
        for f in &mut self.upstreams {
            if let Some(same) = old.upstreams.iter().find(|o| o.same_config(f)) {
                *f = same.clone();
            }
        }
    }

    /// How far the policies tell `ip` (canonical) apart from other clients: the part of
    /// the packet cache's key that stands for the client.
    pub fn client_class(&self, ip: IpAddr) -> ClientClass {
        let p = &self.policies;
        if p.policies.is_empty() {
            ClientClass::Anyone
        } else if p.needs_src_ip || p.needs_src_geo {
            ClientClass::Ip(ip)
        } else {
            let identity = self
                .directory
                .identity_for_ip(ip)
                .map_or(0, |i| Arc::as_ptr(i) as usize);
            let location = self
                .directory
                .location_for_ip(ip)
                .map_or(0, |l| l.as_ptr() as usize);
            ClientClass::Identity(identity, location)
        }
    }

    /// Whether a client may query (SPEC §4.1).
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.allow.get(ip).is_some()
    }

    /// A one-line summary for `dnsgate check` and the start-up log.
    pub fn summary(&self) -> String {
        let entries: usize = self.list_info.iter().map(|l| l.entries).sum();
        format!(
            "ok: {} policies, {} lists ({} entries), {} categories, {} upstream groups, geoip {}",
            self.policies.policies.len(),
            self.list_info.len(),
            entries,
            self.policies.categories.len(),
            self.upstreams.len(),
            if self.geoip.is_some() { "on" } else { "off" },
        )
    }
}

/// IPv4-mapped IPv6 addresses (dual-stack sockets) become IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn load_lists(
    cfg: &LoadedConfig,
    diags: &mut Vec<Diagnostic>,
) -> (HashMap<String, Arc<List>>, Vec<ListInfo>) {
    let mut lists = HashMap::new();
    let mut info = Vec::new();
    for loc in &cfg.lists {
        let file = &cfg.files[loc.file];
        let l = loc.item.get_ref();
        let name = l.name.get_ref().clone();
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_name {
            diags.push(file.diag(
                &l.name.span(),
                format!("list name `{name}` may hold only letters, digits, `_` and `-`"),
            ));
            continue;
        }
        let kind = match l.kind.get_ref().as_str() {
            "domain" => ListKind::Domain,
            "ip" => ListKind::Ip,
            "email" => ListKind::Email,
            "string" => ListKind::String,
            other => {
                diags.push(file.diag(
                    &l.kind.span(),
                    format!("unknown list type `{other}` (expected domain, ip, email or string)"),
                ));
                continue;
            }
        };
        let format = match l.format.as_ref().map(|f| f.get_ref().as_str()) {
            None if kind == ListKind::Domain => ListFormat::Domains,
            None => ListFormat::Plain,
            Some("domains") => ListFormat::Domains,
            Some("hosts") => ListFormat::Hosts,
            Some("adblock") => ListFormat::Adblock,
            Some("plain") => ListFormat::Plain,
            Some(other) => {
                let span = l.format.as_ref().map(|f| f.span()).unwrap_or_default();
                diags.push(file.diag(
                    &span,
                    format!(
                        "unknown list format `{other}` (expected domains, hosts, adblock or plain)"
                    ),
                ));
                continue;
            }
        };
        let path = match (&l.path, &l.url) {
            (Some(p), None) => file.resolve(p.get_ref()),
            (_, Some(u)) => {
                diags.push(file.diag(
                    &u.span(),
                    "url lists are not supported yet: download the list and use `path`",
                ));
                continue;
            }
            (None, None) => {
                diags.push(file.diag(&loc.item.span(), format!("list `{name}` needs a `path`")));
                continue;
            }
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                let span = l.path.as_ref().map(|p| p.span()).unwrap_or_default();
                diags.push(file.diag(
                    &span,
                    format!("list `{name}`: cannot read {}: {e}", path.display()),
                ));
                continue;
            }
        };
        let (list, stats) = List::parse(kind, format, &text);
        if stats.skipped > 0 {
            info!(list = %name, skipped = stats.skipped, first = ?stats.warnings.first(), "list lines skipped");
        }
        if lists.insert(name.clone(), Arc::new(list)).is_some() {
            diags.push(file.diag(&l.name.span(), format!("duplicate list name `{name}`")));
        }
        info.push(ListInfo {
            name,
            entries: stats.entries,
            skipped: stats.skipped,
        });
    }
    (lists, info)
}
