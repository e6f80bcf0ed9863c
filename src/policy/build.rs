//! Compiling the configuration's `[[policies]]` and `[[categories]]` into a [`PolicySet`].
//!
//! Every problem is collected with its position; a policy that fails to compile never
//! loads, and neither does the configuration holding it (SPEC §3).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;

use super::expr::{self, CompileEnv, Expr, Limits};
use super::fields::{Field, Phase};
use super::schedule::Schedule;
use super::{
    Action, BlockMode, Builder, Category, CompiledPolicy, Decision, ExternalPolicy, PolicySet,
    builder,
};
use crate::config::load::{Located, SourceFile};
use crate::config::{ExternalConfig, LoadedConfig, PolicyConfig, SelectorConfig};
use crate::diag::Diagnostic;
use crate::external::OnError;
use crate::lists::List;
use crate::resolve::{UpstreamSpec, parse_specs};

/// What policy compilation needs from the rest of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct BuildEnv<'a> {
    /// Loaded lists by name.
    pub lists: &'a HashMap<String, Arc<List>>,
    /// Whether a GeoIP database is configured.
    pub has_geoip: bool,
    /// `[identity] match_extended_emails`.
    pub match_extended_emails: bool,
    /// `[block] mode`.
    pub default_block_mode: BlockMode,
    /// Whether `[block] ips` names any address.
    pub has_block_ips: bool,
}

/// The compiled policies plus the upstream groups `resolve` policies asked for (group `i`
/// of the result is upstream group `i + 1`; group 0 is `[upstream] servers`).
pub fn build(
    cfg: &LoadedConfig,
    env: &BuildEnv<'_>,
) -> Result<(PolicySet, Vec<Vec<UpstreamSpec>>), Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut set = PolicySet::default();
    let mut groups: Vec<Vec<UpstreamSpec>> = Vec::new();

    for cat in &cfg.categories {
        let file = &cfg.files[cat.file];
        let c = cat.item.get_ref();
        let mut lists = Vec::new();
        for name in &c.lists {
            match env.lists.get(name.get_ref()) {
                Some(l) if matches!(**l, List::Domain(_)) => lists.push(l.clone()),
                Some(_) => diags.push(file.diag(
                    &name.span(),
                    format!("category list `{}` is not a domain list", name.get_ref()),
                )),
                None => diags
                    .push(file.diag(&name.span(), format!("unknown list `{}`", name.get_ref()))),
            }
        }
        if set.categories.iter().any(|x| x.id == c.id) {
            diags.push(file.diag(&cat.item.span(), format!("duplicate category id {}", c.id)));
        }
        set.categories.push(Category {
            id: c.id,
            name: c.name.clone(),
            security: c.security,
            lists,
        });
    }

    let mut compiled: Vec<(Option<i64>, usize, CompiledPolicy)> = Vec::new();
    let mut names: HashMap<String, ()> = HashMap::new();
    for (order, loc) in cfg.policies.iter().enumerate() {
        let file = &cfg.files[loc.file];
        let name = loc.item.get_ref().name.get_ref();
        if names.insert(name.clone(), ()).is_some() {
            diags.push(file.diag(
                &loc.item.get_ref().name.span(),
                format!("duplicate policy name `{name}`"),
            ));
        }
        let (groups, externals, warnings) = (&mut groups, &mut set.externals, &mut set.warnings);
        match compile_policy(loc, file, env, groups, externals, warnings) {
            Ok(p) => compiled.push((p.precedence, order, p)),
            Err(mut d) => diags.append(&mut d),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    // Lowest precedence first; ties (and policies without one, which go last) in file order.
    compiled.sort_by_key(|(prec, order, _)| (prec.is_none(), *prec, *order));
    set.policies = compiled.into_iter().map(|(_, _, p)| p).collect();
    set.needs_categories = set
        .policies
        .iter()
        .any(|p| uses(p, Field::ContentCategory) || uses(p, Field::SecurityCategory));
    set.needs_src_geo = set
        .policies
        .iter()
        .any(|p| uses(p, Field::SrcGeoCountry) || uses(p, Field::SrcGeoContinent));
    set.needs_src_ip = set.policies.iter().any(|p| uses(p, Field::SrcIp));
    set.has_schedules = set.policies.iter().any(|p| p.schedule.is_some());
    set.needs_dst_geo = set
        .policies
        .iter()
        .any(|p| uses(p, Field::DstGeoCountry) || uses(p, Field::DstGeoContinent));
    set.index();
    Ok((set, groups))
}

fn exprs(p: &CompiledPolicy) -> impl Iterator<Item = &Expr> {
    [&p.traffic, &p.identity]
        .into_iter()
        .chain(&p.builder.include)
        .chain(&p.builder.require)
        .chain(&p.builder.exclude)
}

fn uses(p: &CompiledPolicy, f: Field) -> bool {
    exprs(p).any(|e| e.uses(f))
}

fn compile_policy(
    loc: &Located<PolicyConfig>,
    file: &SourceFile,
    env: &BuildEnv<'_>,
    groups: &mut Vec<Vec<UpstreamSpec>>,
    externals: &mut Vec<ExternalPolicy>,
    warnings: &mut Vec<Diagnostic>,
) -> Result<CompiledPolicy, Vec<Diagnostic>> {
    let cfg = loc.item.get_ref();
    let mut diags = Vec::new();
    let name = cfg.name.get_ref().clone();
    let Some(action) = Action::parse(cfg.action.get_ref()) else {
        return Err(vec![file.diag(
            &cfg.action.span(),
            format!(
                "unknown action `{}` (expected allow, block, override, safesearch, ytrestricted, resolve or external)",
                cfg.action.get_ref()
            ),
        )]);
    };
    let email_variants = env.match_extended_emails
        || matches!(
            action,
            Action::Block
                | Action::Override
                | Action::SafeSearch
                | Action::YtRestricted
                | Action::External
        );
    let cenv = CompileEnv {
        lists: env.lists,
        email_variants,
        has_geoip: env.has_geoip,
        limits: Limits::default(),
    };

    let mut compile_text = |text: &toml::Spanned<String>| -> Option<Expr> {
        match expr::compile(text.get_ref(), &cenv) {
            Ok(e) => {
                for w in e.warnings() {
                    let off = file.string_offset(&text.span(), w.offset);
                    warnings.push(file.diag_at(off, format!("policy `{name}`: {}", w.message)));
                }
                Some(e)
            }
            Err(errs) => {
                for e in errs {
                    let off = file.string_offset(&text.span(), e.offset);
                    diags.push(file.diag_at(off, format!("policy `{name}`: {}", e.message)));
                }
                None
            }
        }
    };
    let traffic = compile_text(&cfg.traffic);
    let identity = compile_text(&cfg.identity);
    let mut builder = Builder::default();
    // `group`: the policy applies only to clients in that identity group, as if its
    // builder required `any(identity.groups.name[*] == "NAME")`.
    if let Some(g) = &cfg.group {
        let name_ok = !g.get_ref().is_empty()
            && !g.get_ref().contains(['"', '\\'])
            && !g.get_ref().chars().any(char::is_control);
        if !name_ok {
            diags.push(file.diag(
                &g.span(),
                format!("policy `{name}`: `{}` is not a group name", g.get_ref()),
            ));
        } else {
            let src = format!("any(identity.groups.name[*] == \"{}\")", g.get_ref());
            match expr::compile(&src, &cenv) {
                Ok(e) => builder.require.push(e),
                Err(errs) => {
                    for e in errs {
                        diags.push(
                            file.diag(&g.span(), format!("policy `{name}` group: {}", e.message)),
                        );
                    }
                }
            }
        }
    }
    let mut compile_tables = |tables: &[toml::Spanned<SelectorConfig>],
                              out: &mut Vec<Expr>,
                              what: &str| {
        for t in tables {
            let src = match builder::selector_source(t.get_ref(), env.lists) {
                Ok(s) => s,
                Err(msg) => {
                    diags.push(file.diag(&t.span(), format!("policy `{name}` {what}: {msg}")));
                    continue;
                }
            };
            match expr::compile(&src, &cenv) {
                Ok(e) => {
                    for w in e.warnings() {
                        let message = format!("policy `{name}` {what}: {}", w.message);
                        warnings.push(file.diag(&t.span(), message));
                    }
                    out.push(e);
                }
                Err(errs) => {
                    for e in errs {
                        diags.push(
                            file.diag(&t.span(), format!("policy `{name}` {what}: {}", e.message)),
                        );
                    }
                }
            }
        }
    };
    compile_tables(&cfg.include, &mut builder.include, "include");
    compile_tables(&cfg.require, &mut builder.require, "require");
    compile_tables(&cfg.exclude, &mut builder.exclude, "exclude");

    let schedule = cfg
        .schedule
        .as_ref()
        .and_then(|s| match Schedule::from_config(s.get_ref()) {
            Ok(s) => Some(s),
            Err(e) => {
                diags.push(file.diag(&s.span(), format!("policy `{name}`: {e}")));
                None
            }
        });

    let decision = decision(cfg, action, file, env, &name, &mut diags);
    let mut upstreams = 0;
    if action == Action::Resolve {
        let specs = parse_specs(&cfg.upstreams, |u, e| {
            diags.push(file.diag(&u.span(), format!("policy `{name}`: {e}")))
        });
        if cfg.upstreams.is_empty() {
            diags.push(file.diag(
                &loc.item.span(),
                format!("policy `{name}`: a resolve policy needs `upstreams`"),
            ));
        }
        groups.push(specs);
        upstreams = groups.len();
    } else if !cfg.upstreams.is_empty() {
        diags.push(file.diag(
            &cfg.upstreams[0].span(),
            format!("policy `{name}`: `upstreams` is only for resolve policies"),
        ));
    }

    let external = match (action, &cfg.external) {
        (Action::External, Some(ext)) => {
            let mode = match &cfg.block_mode {
                None => env.default_block_mode,
                Some(m) => BlockMode::parse(m.get_ref()).unwrap_or_else(|| {
                    diags.push(file.diag(&m.span(), format!("policy `{name}`: unknown block_mode `{}` (expected null, nxdomain, refused or ips)", m.get_ref())));
                    BlockMode::Null
                }),
            };
            compile_external(&name, ext, mode, file, &mut diags)
        }
        (Action::External, None) => {
            diags.push(file.diag(
                &loc.item.span(),
                format!(
                    "policy `{name}`: an external policy needs `external = {{ url, secret_file }}`"
                ),
            ));
            None
        }
        (_, Some(ext)) => {
            diags.push(file.diag(
                &ext.span(),
                format!("policy `{name}`: `external` is only for external policies"),
            ));
            None
        }
        (_, None) => None,
    };

    let (Some(traffic), Some(identity)) = (traffic, identity) else {
        return Err(diags);
    };
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut p = CompiledPolicy {
        name: name.clone(),
        id: cfg.id.clone(),
        precedence: cfg.precedence,
        action,
        phase: Phase::Pre,
        enabled: cfg.enabled,
        schedule,
        traffic,
        identity,
        builder,
        decision,
        upstreams,
        external: external.map(|e| {
            externals.push(e);
            externals.len() - 1
        }),
        matches: ::metrics::counter!(crate::metrics::POLICY_MATCHES_TOTAL, "policy" => name.clone()),
        location: {
            let (l, c) = file.line_col(loc.item.span().start);
            format!("{}:{l}:{c}", file.path.display())
        },
    };
    p.phase = if exprs(&p).any(|e| e.phase() == Phase::Post) {
        Phase::Post
    } else {
        Phase::Pre
    };
    if p.phase == Phase::Post && !matches!(action, Action::Allow | Action::Block) {
        // SPEC §4.4, as in Gateway: these act before resolution.
        let span = if cfg.traffic.get_ref().trim().is_empty() {
            loc.item.span()
        } else {
            cfg.traffic.span()
        };
        return Err(vec![file.diag(
            &span,
            format!(
                "policy `{name}`: {} policies may use pre-resolution fields only",
                action.as_str()
            ),
        )]);
    }
    Ok(p)
}

fn decision(
    cfg: &PolicyConfig,
    action: Action,
    file: &SourceFile,
    env: &BuildEnv<'_>,
    name: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Decision> {
    match action {
        Action::Allow => Some(Decision::Allow),
        Action::Block => {
            let mode = match &cfg.block_mode {
                None => env.default_block_mode,
                Some(m) => BlockMode::parse(m.get_ref()).unwrap_or_else(|| {
                    diags.push(file.diag(&m.span(), format!("policy `{name}`: unknown block_mode `{}` (expected null, nxdomain, refused or ips)", m.get_ref())));
                    BlockMode::Null
                }),
            };
            // The default mode is checked with `[block]` itself.
            if let Some(m) = cfg
                .block_mode
                .as_ref()
                .filter(|_| mode == BlockMode::Ips && !env.has_block_ips)
            {
                diags.push(file.diag(
                    &m.span(),
                    format!("policy `{name}`: block mode \"ips\" needs [block] ips"),
                ));
            }
            Some(Decision::Block {
                mode,
                reason: cfg.block_reason.as_deref().map(Arc::from),
            })
        }
        Action::Override => {
            let mut ips = Vec::new();
            for ip in &cfg.override_ips {
                match ip.get_ref().parse::<IpAddr>() {
                    Ok(a) => ips.push(a),
                    Err(_) => diags.push(file.diag(
                        &ip.span(),
                        format!("policy `{name}`: `{}` is not an IP address", ip.get_ref()),
                    )),
                }
            }
            let host = cfg
                .override_host
                .as_ref()
                .and_then(|h| match override_name(h.get_ref()) {
                    Ok(mut n) => {
                        n.set_fqdn(true);
                        Some(n)
                    }
                    Err(e) => {
                        diags.push(file.diag(
                            &h.span(),
                            format!("policy `{name}`: bad override_host: {e}"),
                        ));
                        None
                    }
                });
            if cfg.override_ips.is_empty() == cfg.override_host.is_none() {
                diags.push(file.diag(
                    &cfg.action.span(),
                    format!("policy `{name}`: an override policy needs exactly one of override_ips and override_host"),
                ));
            }
            Some(Decision::Override {
                ips: ips.into(),
                host,
            })
        }
        Action::SafeSearch | Action::YtRestricted | Action::Resolve | Action::External => None,
    }
}

/// An `external` table, checked (its secret is read by the runtime).
fn compile_external(
    name: &str,
    ext: &toml::Spanned<ExternalConfig>,
    block_mode: BlockMode,
    file: &SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> Option<ExternalPolicy> {
    let e = ext.get_ref();
    let before = diags.len();
    if let Err(msg) = crate::external::Spec::check_url(e.url.get_ref()) {
        diags.push(file.diag(&e.url.span(), format!("policy `{name}`: {msg}")));
    }
    let timeout_ms = e.timeout_ms.as_ref().map_or(50, |t| *t.get_ref());
    if let Some(t) = e
        .timeout_ms
        .as_ref()
        .filter(|t| !(1..=10_000).contains(t.get_ref()))
    {
        diags.push(file.diag(
            &t.span(),
            format!("policy `{name}`: timeout_ms must be from 1 to 10000"),
        ));
    }
    let on_error = match &e.on_error {
        None => OnError::Continue,
        Some(o) => OnError::parse(o.get_ref()).unwrap_or_else(|| {
            diags.push(file.diag(
                &o.span(),
                format!(
                    "policy `{name}`: unknown on_error `{}` (expected continue, block or allow)",
                    o.get_ref()
                ),
            ));
            OnError::Continue
        }),
    };
    let max_cache = match &e.max_cache {
        None => Duration::from_secs(300),
        Some(m) => crate::lists::url::parse_duration(m.get_ref()).unwrap_or_else(|err| {
            diags.push(file.diag(&m.span(), format!("policy `{name}`: max_cache: {err}")));
            Duration::ZERO
        }),
    };
    if e.secret_file.get_ref().is_empty() {
        diags.push(file.diag(
            &e.secret_file.span(),
            format!("policy `{name}`: secret_file is empty"),
        ));
    }
    (diags.len() == before).then(|| ExternalPolicy {
        policy: name.to_owned(),
        url: e.url.get_ref().clone(),
        secret_file: file.resolve(e.secret_file.get_ref()),
        secret_at: file.diag(&e.secret_file.span(), String::new()),
        timeout: Duration::from_millis(timeout_ms),
        on_error,
        max_cache,
        block_mode,
    })
}

/// An `override_host` as a query would carry it: a name in Unicode in its ASCII form, the
/// whole name at once (as lists and expressions read names), `_` allowed.
fn override_name(host: &str) -> Result<Name, String> {
    let ascii = crate::lists::name_to_ascii(host).map_err(|e| e.to_string())?;
    Name::from_ascii(&*ascii).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use crate::diag;
    use crate::runtime::Runtime;

    /// `count` block policies, one per line group, starting at `first`; returns the text and
    /// the 1-based line of each `[[policies]]` header.
    fn policies(first: usize, count: usize, header: &str) -> (String, Vec<usize>) {
        let mut text = header.to_owned();
        let mut lines = Vec::new();
        let mut line = header.matches('\n').count() + 1;
        for i in first..first + count {
            lines.push(line);
            line += 5;
            writeln!(
                text,
                "[[policies]]\nname = \"p{i}\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"h{i}.example\"'\n"
            )
            .unwrap();
        }
        (text, lines)
    }

    /// Loading used to compute each policy's `path:line:col` by scanning its file from the
    /// start: O(policies x file size), 11 s for 10,000 policies. Positions must cost one
    /// pass over each file (plus each item's own line), and still be right.
    #[test]
    fn ten_thousand_policies_load_with_right_positions_in_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (main, main_lines) = policies(
            0,
            5_000,
            "include = [\"more.toml\"]\n[upstream]\nservers = [\"udp://127.0.0.1:53\"]\n\n",
        );
        let (more, more_lines) = policies(5_000, 5_000, "");
        let main_path = dir.path().join("main.toml");
        let more_path = dir.path().join("more.toml");
        std::fs::write(&main_path, &main).unwrap();
        std::fs::write(&more_path, &more).unwrap();

        let before = diag::scanned();
        let rt = Runtime::load(&main_path).unwrap();
        let scanned = diag::scanned() - before;

        assert_eq!(rt.policies.policies.len(), 10_000);
        for (i, p) in rt.policies.policies.iter().enumerate() {
            assert_eq!(p.name, format!("p{i}"));
            let (path, line) = if i < 5_000 {
                (&main_path, main_lines[i])
            } else {
                (&more_path, more_lines[i - 5_000])
            };
            assert_eq!(p.location, format!("{}:{line}:1", path.display()));
        }
        let bytes = main.len() + more.len();
        assert!(
            scanned <= 2 * bytes,
            "positions read {scanned} bytes for {bytes} bytes of configuration"
        );
    }
}
