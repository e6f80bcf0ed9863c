//! Scope by identity group (SPEC §12): a list with a `group` may be used only by policies
//! of that group, so that whoever may change the list (a `group:kids` API token) changes
//! the DNS of that group's clients and nobody else's. A policy with a `group` applies only
//! to that group's clients (see [`super::build`]), so its precedence cannot reach others.
//!
//! Categories hold lists for every policy that names the category, so a scoped list may
//! not be in one.

use std::collections::HashMap;

use crate::config::LoadedConfig;
use crate::diag::Diagnostic;

/// Every use of a scoped list outside its group, at the use.
pub fn check(cfg: &LoadedConfig) -> Vec<Diagnostic> {
    let scoped: HashMap<&str, &str> = cfg
        .lists
        .iter()
        .filter_map(|l| {
            let l = l.item.get_ref();
            Some((
                l.name.get_ref().as_str(),
                l.group.as_ref()?.get_ref().as_str(),
            ))
        })
        .collect();
    let mut diags = Vec::new();
    if scoped.is_empty() {
        return diags;
    }
    for c in &cfg.categories {
        let file = &cfg.files[c.file];
        for l in &c.item.get_ref().lists {
            if let Some(group) = scoped.get(l.get_ref().as_str()) {
                diags.push(file.diag(
                    &l.span(),
                    format!(
                        "list `{}` belongs to group `{group}`: a category, which any policy may use, cannot hold it",
                        l.get_ref()
                    ),
                ));
            }
        }
    }
    for p in &cfg.policies {
        let file = &cfg.files[p.file];
        let policy = p.item.get_ref();
        let own = policy.group.as_ref().map(|g| g.get_ref().as_str());
        let mut outside = |name: &str, at: &dyn Fn() -> Diagnostic| {
            if let Some(&group) = scoped.get(name)
                && own != Some(group)
            {
                let mut d = at();
                d.message = format!(
                    "policy `{}` uses list `{name}` of group `{group}`: only a policy with group = \"{group}\" may",
                    policy.name.get_ref()
                );
                diags.push(d);
            }
        };
        for expr in [&policy.traffic, &policy.identity] {
            for (name, offset) in super::expr::list_names(expr.get_ref()) {
                let at = || file.diag_at(file.string_offset(&expr.span(), offset), "");
                outside(name, &at);
            }
        }
        for sel in policy
            .include
            .iter()
            .chain(&policy.require)
            .chain(&policy.exclude)
        {
            for name in sel.get_ref().list.iter().flat_map(|v| v.as_slice()) {
                let at = || file.diag(&sel.span(), "");
                outside(name, &at);
            }
        }
    }
    diags
}

#[cfg(test)]
mod tests {
    use crate::config::SourceFile;
    use crate::config::load::from_text;

    fn check(text: &str) -> Vec<String> {
        let cfg = from_text(SourceFile::new("dnsgate.toml", text)).unwrap();
        super::check(&cfg)
            .into_iter()
            .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
            .collect()
    }

    const BASE: &str = r#"
[upstream]
servers = ["127.0.0.1:53"]
[[lists]]
name = "kids-games"
entries = ["games.example"]
group = "kids"
"#;

    #[test]
    fn a_scoped_list_is_for_its_groups_policies_only() {
        let ok = format!(
            "{BASE}[[policies]]\nname = \"k\"\naction = \"block\"\ngroup = \"kids\"\ntraffic = 'any(dns.domains[*] in $kids-games)'\n"
        );
        assert!(check(&ok).is_empty(), "{:?}", check(&ok));
        let bad = format!(
            "{BASE}[[policies]]\nname = \"all\"\naction = \"allow\"\ntraffic = 'any(dns.domains[*] in $kids-games)'\n"
        );
        let found = check(&bad);
        assert_eq!(found.len(), 1, "{found:?}");
        // At the `$` of the reference: line 11, column 34.
        assert!(
            found[0].starts_with("11:34: policy `all` uses list `kids-games` of group `kids`"),
            "{found:?}"
        );
        let other = format!(
            "{BASE}[[policies]]\nname = \"t\"\naction = \"block\"\ngroup = \"teens\"\n[[policies.include]]\nlist = \"kids-games\"\n"
        );
        assert_eq!(check(&other).len(), 1, "{:?}", check(&other));
        let category =
            format!("{BASE}[[categories]]\nid = 900\nname = \"g\"\nlists = [\"kids-games\"]\n");
        assert_eq!(check(&category).len(), 1);
    }
}
