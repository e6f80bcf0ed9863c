//! `dnsgate import cloudflare` (SPEC §13): Cloudflare Gateway DNS rules and lists, as the
//! Cloudflare API returns them, into an included policies file and list files that
//! `check` accepts.
//!
//! What cannot be carried over is named on standard error, one line each: rules of other
//! filters (HTTP, network, egress), rules whose expressions use what dnsgate has no field
//! for, settings without an equivalent, lists of types DNS rules cannot use. A rule with a
//! device-posture expression is carried over *disabled*: without its posture check it
//! would reach more devices than it did, and that must be a person's choice.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::lists::{List, ListFormat, ListKind};
use crate::policy::expr::{CompileEnv, Limits, compile};

/// What an import made: the policies file, the list files (name, text) and what could
/// not be carried over.
#[derive(Debug, Default)]
pub struct Imported {
    /// `policies.toml`, to be included by a configuration.
    pub policies: String,
    /// `lists/<name>.txt` files.
    pub lists: Vec<(String, String)>,
    /// One line per rule or setting left behind.
    pub notes: Vec<String>,
    /// How many rules were carried over.
    pub rules: usize,
}

/// The items of an API answer: `{"result": [...]}` or a bare array.
fn items(v: &Value) -> anyhow::Result<&Vec<Value>> {
    v.get("result")
        .unwrap_or(v)
        .as_array()
        .context("expected a JSON array, or the API's answer with a `result` array")
}

/// A list name dnsgate takes (letters, digits, `_`, `-`) from a Cloudflare one.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-').to_owned();
    if out.is_empty() { "list".into() } else { out }
}

struct ImportedList {
    name: String,
    kind: ListKind,
    text: String,
}

/// Converts rules (and lists) as the API returns them.
pub fn cloudflare(rules: &Value, lists: Option<&Value>) -> anyhow::Result<Imported> {
    let mut out = Imported::default();
    let mut by_id: HashMap<String, ImportedList> = HashMap::new();
    let mut taken = HashSet::new();
    let mut order = Vec::new();
    for l in lists.map(items).transpose()?.into_iter().flatten() {
        let id = l["id"].as_str().unwrap_or_default().to_owned();
        let cf_name = l["name"].as_str().unwrap_or(&id).to_owned();
        let kind = match l["type"].as_str().unwrap_or_default() {
            "DOMAIN" => ListKind::Domain,
            "IP" => ListKind::Ip,
            "EMAIL" => ListKind::Email,
            other => {
                out.notes.push(format!(
                    "list `{cf_name}` ({id}): type {other} is not used by DNS rules; not imported"
                ));
                continue;
            }
        };
        let mut name = slug(&cf_name);
        let base = name.clone();
        let mut n = 2;
        while !taken.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        let values: Vec<&str> = l["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["value"].as_str())
            .collect();
        if l.get("items").is_none() {
            out.notes.push(format!(
                "list `{cf_name}` ({id}): no `items` in the export (add each list's items from GET .../gateway/lists/{{id}}/items); imported empty"
            ));
        }
        let mut text = format!("# Imported from Cloudflare Gateway list `{cf_name}` ({id})\n");
        for v in values {
            text.push_str(v.trim());
            text.push('\n');
        }
        order.push(id.clone());
        by_id.insert(id, ImportedList { name, kind, text });
    }

    // The lists as dnsgate would load them, to compile the expressions against.
    let parsed: HashMap<String, Arc<List>> = by_id
        .values()
        .map(|l| {
            let (list, _) = List::parse(l.kind, ListFormat::Plain, &l.text);
            (l.name.clone(), Arc::new(list))
        })
        .collect();
    let env = CompileEnv {
        lists: &parsed,
        email_variants: true,
        has_geoip: true,
        limits: Limits::default(),
    };

    let mut doc = String::from(
        "# Imported from Cloudflare Gateway by `dnsgate import cloudflare`.\n# Include it from dnsgate.toml: include = [\"<this directory>/policies.toml\"]\n",
    );
    for id in &order {
        let l = &by_id[id];
        let kind = match l.kind {
            ListKind::Domain => "domain",
            ListKind::Ip => "ip",
            ListKind::Email => "email",
            ListKind::String => "string",
        };
        doc.push_str(&format!(
            "\n[[lists]]\nname = {}\ntype = \"{kind}\"\npath = {}\nformat = \"plain\"\ndescription = {}\n",
            toml_str(&l.name),
            toml_str(&format!("lists/{}.txt", l.name)),
            toml_str(&format!("Cloudflare list {id}")),
        ));
        out.lists.push((format!("{}.txt", l.name), l.text.clone()));
    }
    let mut geo = false;
    for r in items(rules)? {
        let name = r["name"].as_str().unwrap_or("(unnamed)").to_owned();
        match rule(r, &name, &by_id, &env, &mut out.notes) {
            Some(text) => {
                geo |= text.contains(".geo.");
                if text.contains("_category") {
                    out.notes.push(format!(
                        "rule `{name}`: it tests Cloudflare's category ids; they match only once [[categories]] with those ids hold lists of their domains"
                    ));
                }
                doc.push_str(&text);
                out.rules += 1;
            }
            None => continue,
        }
    }
    if geo {
        out.notes.push(
            "some imported rules use GeoIP fields: dnsgate.toml needs a [geoip] database for them"
                .into(),
        );
    }
    out.policies = doc;
    Ok(out)
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// An expression with `$<list id>` turned into `$<list name>`; `Err` names an unknown id.
fn rename_lists(expr: &str, lists: &HashMap<String, ImportedList>) -> Result<String, String> {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(after.len());
        let id = &after[..len];
        match lists.get(id) {
            Some(l) => {
                out.push('$');
                out.push_str(&l.name);
            }
            None => {
                return Err(format!(
                    "it names list {id}, which the lists export does not hold (or was not imported)"
                ));
            }
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One rule as a `[[policies]]` table, or `None` (with a note) if it cannot be carried.
fn rule(
    r: &Value,
    name: &str,
    lists: &HashMap<String, ImportedList>,
    env: &CompileEnv<'_>,
    notes: &mut Vec<String>,
) -> Option<String> {
    let filters: Vec<&str> = r["filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let action = r["action"].as_str().unwrap_or_default();
    let dns = filters.iter().any(|f| *f == "dns" || *f == "dns_resolver");
    if !dns {
        notes.push(format!(
            "rule `{name}`: filters {filters:?} are not DNS; not imported"
        ));
        return None;
    }
    let action = match action {
        "allow" | "block" | "override" | "safesearch" | "ytrestricted" | "resolve" => action,
        other => {
            notes.push(format!(
                "rule `{name}`: action `{other}` has no DNS equivalent; not imported"
            ));
            return None;
        }
    };
    let mut exprs = Vec::new();
    for key in ["traffic", "identity"] {
        let src = r[key].as_str().unwrap_or("").trim();
        let renamed = match rename_lists(src, lists) {
            Ok(s) => s,
            Err(why) => {
                notes.push(format!("rule `{name}`: {key}: {why}; not imported"));
                return None;
            }
        };
        if let Err(errors) = compile(&renamed, env) {
            let why = errors
                .first()
                .map(|e| e.message.clone())
                .unwrap_or_default();
            notes.push(format!(
                "rule `{name}`: {key} `{src}` does not compile here ({why}); not imported"
            ));
            return None;
        }
        exprs.push((key, renamed));
    }
    let mut t = String::from("\n[[policies]]\n");
    t.push_str(&format!("name = {}\n", toml_str(name)));
    if let Some(p) = r["precedence"].as_i64() {
        t.push_str(&format!("precedence = {p}\n"));
    }
    t.push_str(&format!("action = \"{action}\"\n"));
    for (key, e) in &exprs {
        if !e.is_empty() {
            t.push_str(&format!("{key} = {}\n", toml_str(e)));
        }
    }
    let mut enabled = r["enabled"].as_bool().unwrap_or(true);
    let posture = r["device_posture"].as_str().unwrap_or("").trim();
    if !posture.is_empty() {
        notes.push(format!(
            "rule `{name}`: device posture `{posture}` has no equivalent; imported disabled (without it the rule would reach more devices)"
        ));
        enabled = false;
    }
    if !enabled {
        t.push_str("enabled = false\n");
    }
    if let Some(id) = r["id"].as_str() {
        t.push_str(&format!("id = {}\n", toml_str(id)));
    }
    if let Some(d) = r["description"].as_str().filter(|d| !d.is_empty()) {
        t.push_str(&format!("description = {}\n", toml_str(d)));
    }
    settings(&mut t, &r["rule_settings"], name, action, notes);
    schedule(&mut t, &r["schedule"], name, notes);
    Some(t)
}

/// The rule settings dnsgate has, and a note for each it has not.
fn settings(t: &mut String, s: &Value, name: &str, action: &str, notes: &mut Vec<String>) {
    let Some(s) = s.as_object() else { return };
    for (key, v) in s {
        let empty = v.is_null()
            || v == &Value::Bool(false)
            || v.as_str() == Some("")
            || v.as_array().is_some_and(|a| a.is_empty())
            || v.as_object().is_some_and(|o| o.is_empty());
        if empty {
            continue;
        }
        match key.as_str() {
            "block_reason" if action == "block" => {
                t.push_str(&format!("block_reason = {}\n", toml_str(v.as_str().unwrap_or(""))));
            }
            "override_ips" if action == "override" => {
                let ips: Vec<String> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(toml_str)
                    .collect();
                t.push_str(&format!("override_ips = [{}]\n", ips.join(", ")));
            }
            "override_host" if action == "override" => {
                t.push_str(&format!("override_host = {}\n", toml_str(v.as_str().unwrap_or(""))));
            }
            "dns_resolvers" if action == "resolve" => {
                let mut ups = Vec::new();
                for family in ["ipv4", "ipv6"] {
                    for ep in v[family].as_array().into_iter().flatten() {
                        let Some(ip) = ep["ip"].as_str() else { continue };
                        let port = ep["port"].as_u64().unwrap_or(53);
                        let addr = if family == "ipv6" {
                            format!("udp://[{ip}]:{port}")
                        } else {
                            format!("udp://{ip}:{port}")
                        };
                        ups.push(toml_str(&addr));
                        if ep["route_through_private_network"].as_bool() == Some(true)
                            || ep.get("vnet_id").is_some_and(|v| !v.is_null())
                        {
                            notes.push(format!(
                                "rule `{name}`: resolver {ip} is reached through Cloudflare's private network (route_through_private_network / vnet_id); dnsgate asks it directly"
                            ));
                        }
                    }
                }
                t.push_str(&format!("upstreams = [{}]\n", ups.join(", ")));
            }
            "block_page_enabled" => notes.push(format!(
                "rule `{name}`: block_page_enabled: dnsgate has no block page; [block] mode decides the answer"
            )),
            other => notes.push(format!(
                "rule `{name}`: rule setting `{other}` has no equivalent; left out"
            )),
        }
    }
}

/// A schedule as dnsgate writes it: the same day keys and time zone.
fn schedule(t: &mut String, s: &Value, name: &str, notes: &mut Vec<String>) {
    let Some(s) = s.as_object().filter(|o| !o.is_empty()) else {
        return;
    };
    let mut table = String::from("schedule = { ");
    let mut parts = Vec::new();
    for (key, v) in s {
        match (key.as_str(), v.as_str()) {
            ("mon" | "tue" | "wed" | "thu" | "fri" | "sat" | "sun", Some(ranges)) => {
                parts.push(format!("{key} = {}", toml_str(ranges)));
            }
            ("time_zone", Some(tz)) => parts.push(format!("time_zone = {}", toml_str(tz))),
            (other, _) => notes.push(format!(
                "rule `{name}`: schedule key `{other}` is not carried over"
            )),
        }
    }
    table.push_str(&parts.join(", "));
    table.push_str(" }\n");
    t.push_str(&table);
}

/// `dnsgate import cloudflare --rules FILE [--lists FILE] --out DIR`.
pub fn run(rules: &Path, lists: Option<&Path>, out: &Path) -> anyhow::Result<()> {
    let read = |p: &Path| -> anyhow::Result<Value> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
    };
    let rules_json = read(rules)?;
    let lists_json = lists.map(read).transpose()?;
    let imported = cloudflare(&rules_json, lists_json.as_ref())?;
    let list_dir: PathBuf = out.join("lists");
    std::fs::create_dir_all(&list_dir)
        .with_context(|| format!("cannot make {}", list_dir.display()))?;
    for (file, text) in &imported.lists {
        let p = list_dir.join(file);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    let policies = out.join("policies.toml");
    if imported.rules == 0 && imported.lists.is_empty() {
        for n in &imported.notes {
            eprintln!("{n}");
        }
        bail!("nothing could be imported");
    }
    std::fs::write(&policies, &imported.policies)
        .with_context(|| format!("cannot write {}", policies.display()))?;
    for n in &imported.notes {
        eprintln!("{n}");
    }
    eprintln!(
        "imported {} rules and {} lists into {}; {} things not carried over (above)",
        imported.rules,
        imported.lists.len(),
        out.display(),
        imported.notes.len()
    );
    Ok(())
}
