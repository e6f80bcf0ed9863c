//! The Grafana dashboard `contrib/grafana/dnsgate.json`: every PromQL expression in it (panel
//! targets, rows' nested panels, templating queries) names only metrics that a real
//! `GET /metrics` of dnsgate shows, and only labels (and `=` label values) those metrics have.
//!
//! The scrape comes from the binary (`dnsgate run`), not an in-process server: the histogram
//! buckets, the zero series and the URL-list refresher are set up by `run`, and a test-local
//! recorder has none of them (it renders the latency histogram as a summary).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::cli::{Server, free_port, metrics, write_config};
use crate::client::query;
use crate::metrics::value;
use crate::upstream;
use crate::urllists::ListSource;

const DASHBOARD: &str = include_str!("../../contrib/grafana/dnsgate.json");

/// Labels Prometheus adds to every series of a target: never in the scrape itself.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// PromQL aggregation operators (they may carry `by`/`without`).
const AGGREGATIONS: [&str; 12] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// Words that are never metric names where they stand without a `(` after them.
const KEYWORDS: [&str; 14] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
];

// ---------------------------------------------------------------------------------------
// The dashboard's expressions.

/// Every PromQL expression in the dashboard, with where it is.
fn expressions(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(panels) = dash["panels"].as_array() {
        panel_expressions(panels, &mut out);
    }
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        if var["type"] != "query" {
            continue;
        }
        let q = &var["query"];
        let text = q.as_str().or_else(|| q["query"].as_str());
        if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
            out.push((format!("variable {}", var["name"]), text.to_owned()));
        }
    }
    out
}

fn panel_expressions(panels: &[Value], out: &mut Vec<(String, String)>) {
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                let (title, id) = (
                    p["title"].as_str().unwrap_or("?"),
                    t["refId"].as_str().unwrap_or("?"),
                );
                out.push((format!("panel {title:?} {id}"), e.to_owned()));
            }
        }
        if let Some(nested) = p["panels"].as_array() {
            panel_expressions(nested, out);
        }
    }
}

// ---------------------------------------------------------------------------------------
// A PromQL tokenizer, enough to find metric and label names.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A string literal's contents (escapes kept as written).
    Str(String),
    Num,
    /// `$var`, `${var}`, `[[var]]`: a Grafana variable.
    Var,
    /// `[5m]`, `[$__rate_interval]`, `[1h:5m]`: skipped whole.
    Range,
    Open(char),
    Close(char),
    Comma,
    Op(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let ident_start = |ch: char| ch.is_ascii_alphabetic() || ch == '_' || ch == ':';
    let ident_char = |ch: char| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':';
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '#' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '"' || ch == '\'' || ch == '`' {
            let mut j = i + 1;
            let mut text = String::new();
            loop {
                match c.get(j) {
                    None => return Err(format!("unterminated string at {i}")),
                    Some('\\') if ch != '`' => {
                        text.push('\\');
                        text.extend(c.get(j + 1));
                        j += 2;
                    }
                    Some(&q) if q == ch => break,
                    Some(&x) => {
                        text.push(x);
                        j += 1;
                    }
                }
            }
            toks.push(Tok::Str(text));
            i = j + 1;
        } else if ch == '[' && c.get(i + 1) == Some(&'[') {
            let end = (i..c.len().saturating_sub(1))
                .find(|&j| c[j] == ']' && c[j + 1] == ']')
                .ok_or_else(|| format!("unterminated [[ at {i}"))?;
            toks.push(Tok::Var);
            i = end + 2;
        } else if ch == '[' {
            let end = (i..c.len())
                .find(|&j| c[j] == ']')
                .ok_or_else(|| format!("unterminated [ at {i}"))?;
            toks.push(Tok::Range);
            i = end + 1;
        } else if ch == '$' {
            if c.get(i + 1) == Some(&'{') {
                let end = (i..c.len())
                    .find(|&j| c[j] == '}')
                    .ok_or_else(|| format!("unterminated ${{ at {i}"))?;
                i = end + 1;
            } else {
                i += 1;
                while i < c.len() && ident_char(c[i]) {
                    i += 1;
                }
            }
            toks.push(Tok::Var);
        } else if ch.is_ascii_digit()
            || (ch == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                i += 1;
            }
            toks.push(Tok::Num);
        } else if ident_start(ch) {
            let start = i;
            while i < c.len() && ident_char(c[i]) {
                i += 1;
            }
            toks.push(Tok::Ident(c[start..i].iter().collect()));
        } else if ch == '(' || ch == '{' {
            toks.push(Tok::Open(ch));
            i += 1;
        } else if ch == ')' || ch == '}' {
            toks.push(Tok::Close(ch));
            i += 1;
        } else if ch == ',' {
            toks.push(Tok::Comma);
            i += 1;
        } else {
            let two: String = c[i..(i + 2).min(c.len())].iter().collect();
            let op = if ["=~", "!~", "!=", "==", "<=", ">="].contains(&two.as_str()) {
                two
            } else if "=<>+-*/%^@".contains(ch) {
                ch.to_string()
            } else {
                return Err(format!("unexpected {ch:?} at {i}"));
            };
            i += op.chars().count();
            toks.push(Tok::Op(op));
        }
    }
    Ok(toks)
}

/// A label matcher: label, operator, value.
type Matcher = (String, String, String);

/// One metric named in an expression, with the labels the expression needs it to have.
#[derive(Debug, Default, Clone, PartialEq)]
struct Use {
    metric: String,
    /// From its matchers.
    matchers: Vec<Matcher>,
    /// From `by (...)` of aggregations around it and `label_values(metric, label)`.
    grouping: BTreeSet<String>,
}

/// The index of the token closing the bracket opened at `open`.
fn matching(toks: &[Tok], open: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Open(_) => depth += 1,
            Tok::Close(_) => {
                depth -= 1;
                if depth == 0 {
                    return Ok(j);
                }
            }
            _ => {}
        }
    }
    Err("unbalanced brackets".to_owned())
}

/// The label names in the list opened at `open` (`(a, b)`), and the index of its `)`.
fn label_list(toks: &[Tok], open: usize) -> Result<(Vec<String>, usize), String> {
    if toks.get(open) != Some(&Tok::Open('(')) {
        return Err("a label list must follow by/without/on/ignoring".to_owned());
    }
    let close = matching(toks, open)?;
    let mut labels = Vec::new();
    for t in &toks[open + 1..close] {
        match t {
            Tok::Ident(l) => labels.push(l.clone()),
            Tok::Comma => {}
            other => return Err(format!("{other:?} in a label list")),
        }
    }
    Ok((labels, close))
}

/// The metrics an expression names and the labels it needs on each.
fn uses(expr: &str) -> Result<Vec<Use>, String> {
    let toks = tokenize(expr)?;
    let is = |j: usize, t: &Tok| toks.get(j) == Some(t);
    // Token indices that are label names, not metrics.
    let mut labels_at = BTreeSet::new();
    // (labels, token range) of every grouping.
    let mut groups: Vec<(Vec<String>, std::ops::Range<usize>)> = Vec::new();
    let mut found: Vec<(usize, Use)> = Vec::new();

    for (i, t) in toks.iter().enumerate() {
        let Tok::Ident(word) = t else { continue };
        if labels_at.contains(&i) {
            continue;
        }
        let w = word.as_str();
        if AGGREGATIONS.contains(&w) {
            // sum [by (..)] (args) [by (..)]
            let mut labels = Vec::new();
            let mut j = i + 1;
            if let Some(Tok::Ident(kw)) = toks.get(j)
                && (kw == "by" || kw == "without")
            {
                let (l, close) = label_list(&toks, j + 1)?;
                labels_at.extend(j + 2..close);
                if kw == "by" {
                    labels = l;
                }
                j = close + 1;
            }
            if !is(j, &Tok::Open('(')) {
                return Err(format!("{w} without arguments"));
            }
            let close = matching(&toks, j)?;
            if let Some(Tok::Ident(kw)) = toks.get(close + 1)
                && (kw == "by" || kw == "without")
            {
                let (l, end) = label_list(&toks, close + 2)?;
                labels_at.extend(close + 3..end);
                if kw == "by" {
                    labels = l;
                }
            }
            groups.push((labels, j..close));
        } else if [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ]
        .contains(&w)
            && is(i + 1, &Tok::Open('('))
        {
            let (_, close) = label_list(&toks, i + 1)?;
            labels_at.extend(i + 2..close);
        } else if w == "label_values" && is(i + 1, &Tok::Open('(')) {
            // Grafana's label_values([selector,] label): the label must be on the metric.
            let close = matching(&toks, i + 1)?;
            match toks.get(close - 1) {
                Some(Tok::Ident(l)) => {
                    labels_at.insert(close - 1);
                    groups.push((vec![l.clone()], i + 1..close));
                }
                _ => return Err("label_values without a label".to_owned()),
            }
        } else if is(i + 1, &Tok::Open('(')) || KEYWORDS.contains(&w) {
            // A function call or a keyword.
        } else {
            let mut u = Use {
                metric: word.clone(),
                ..Use::default()
            };
            if is(i + 1, &Tok::Open('{')) {
                u.matchers = matchers(&toks, i + 1, &mut labels_at)?;
            }
            found.push((i, u));
        }
    }
    // Matchers without a metric name (`{__name__="x"}`) are not read.
    for (i, t) in toks.iter().enumerate() {
        if *t == Tok::Open('{')
            && !matches!(i.checked_sub(1).map(|p| &toks[p]), Some(Tok::Ident(_)))
        {
            return Err("a selector without a metric name".to_owned());
        }
    }
    Ok(found
        .into_iter()
        .map(|(i, mut u)| {
            for (labels, range) in &groups {
                if range.contains(&i) {
                    u.grouping.extend(labels.iter().cloned());
                }
            }
            u
        })
        .collect())
}

/// The matchers of the `{...}` opened at `open`; their label tokens go into `labels_at`.
fn matchers(
    toks: &[Tok],
    open: usize,
    labels_at: &mut BTreeSet<usize>,
) -> Result<Vec<Matcher>, String> {
    let close = matching(toks, open)?;
    let mut out = Vec::new();
    let mut j = open + 1;
    while j < close {
        match (&toks[j], toks.get(j + 1), toks.get(j + 2)) {
            (Tok::Ident(l), Some(Tok::Op(op)), Some(Tok::Str(v)))
                if ["=", "!=", "=~", "!~"].contains(&op.as_str()) =>
            {
                labels_at.insert(j);
                out.push((l.clone(), op.clone(), v.clone()));
                j += 3;
            }
            (Tok::Comma, _, _) => j += 1,
            (other, _, _) => return Err(format!("{other:?} in a label matcher")),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The scrape and the check.

/// A `/metrics` text: each series name with its label names and values, and the types.
#[derive(Debug, Default)]
struct Scrape {
    series: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    types: BTreeMap<String, String>,
}

fn parse_scrape(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut w = rest.split_whitespace();
            if let (Some(n), Some(t)) = (w.next(), w.next()) {
                s.types.insert(n.to_owned(), t.to_owned());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = s.series.entry(line[..end].to_owned()).or_default();
        if line[end..].starts_with('{') {
            // name="value",... with \" and \\ escapes in values.
            let c: Vec<char> = line[end + 1..].chars().collect();
            let mut j = 0;
            while j < c.len() && c[j] != '}' {
                let k = (j..c.len()).find(|&k| c[k] == '=').unwrap_or(c.len());
                let name: String = c[j..k].iter().collect();
                let mut value = String::new();
                let mut m = k + 2; // past `="`
                while m < c.len() && c[m] != '"' {
                    if c[m] == '\\' {
                        m += 1;
                    }
                    value.extend(c.get(m));
                    m += 1;
                }
                labels
                    .entry(name.trim_matches(',').to_owned())
                    .or_default()
                    .insert(value);
                j = m + 1;
                if c.get(j) == Some(&',') {
                    j += 1;
                }
            }
        }
    }
    s
}

/// What is wrong with `expr` against `scrape`: unknown metrics, labels and `=` values.
fn problems(expr: &str, scrape: &Scrape) -> Vec<String> {
    let uses = match uses(expr) {
        Ok(u) => u,
        Err(e) => return vec![format!("cannot read the expression: {e}")],
    };
    if uses.is_empty() {
        return vec!["names no metric".to_owned()];
    }
    let mut out = Vec::new();
    for u in uses {
        let m = &u.metric;
        let Some(labels) = scrape.series.get(m) else {
            out.push(format!("metric {m} is not exported"));
            continue;
        };
        // histogram_quantile needs a histogram's buckets, not a summary's quantiles.
        if let Some(base) = m.strip_suffix("_bucket")
            && scrape.types.get(base).map(String::as_str) != Some("histogram")
        {
            out.push(format!("{m}: {base} is not a histogram"));
        }
        let has = |l: &str| TARGET_LABELS.contains(&l) || labels.contains_key(l);
        for l in &u.grouping {
            if !has(l) {
                out.push(format!(
                    "{m} has no label {l} to group by (it has {:?})",
                    labels.keys().collect::<Vec<_>>()
                ));
            }
        }
        for (l, op, v) in &u.matchers {
            if !has(l) {
                out.push(format!(
                    "{m} has no label {l} to match (it has {:?})",
                    labels.keys().collect::<Vec<_>>()
                ));
            } else if op == "=" && !v.contains('$') && !TARGET_LABELS.contains(&l.as_str()) {
                let values = &labels[l];
                if !values.contains(v) {
                    out.push(format!(
                        "{m}{{{l}=\"{v}\"}}: no such value (has {values:?})"
                    ));
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Tests.

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("contrib/grafana/dnsgate.json is JSON")
}

#[tokio::test]
async fn grafana_dashboard_queries_use_exported_metrics_and_labels() {
    let up = upstream::start().await;
    let src = ListSource::start("ads.test\n");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\n\
             [upstream]\nservers = [\"udp://{}\"]\ntimeout_ms = 1000\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n\
             [querylog]\npath = \"queries.log\"\n\
             [[lists]]\nname = \"ads\"\nurl = \"{}\"\nrefresh = \"1h\"\n\
             [[policies]]\nname = \"ads\"\naction = \"block\"\ntraffic = 'any(dns.domains[*] in $ads)'\n",
            up.addr,
            src.url("/ads.txt")
        ),
    );
    let server = Server::start(&cfg);
    // Blocked, allowed, and allowed again from the cache.
    query(server.addr, "ads.test.", RecordType::A).await;
    query(server.addr, "www.test.", RecordType::A).await;
    query(server.addr, "www.test.", RecordType::A).await;

    // The list ages are published by the refresher, at most 10 s after start.
    let mut text = String::new();
    for _ in 0..150 {
        text = metrics(port).await;
        let ready = value(&text, "dnsgate_list_age_seconds{list=\"ads\"}").is_some()
            && value(&text, "dnsgate_cache_hits_total").is_some_and(|v| v >= 1.0)
            && value(
                &text,
                "dnsgate_queries_total{protocol=\"udp\",action=\"block\"}",
            )
            .is_some_and(|v| v >= 1.0);
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The body, without the HTTP head.
    let text = text
        .split_once("\r\n\r\n")
        .map_or(text.as_str(), |(_, b)| b);
    let scrape = parse_scrape(text);

    let dash = dashboard();
    let exprs = expressions(&dash);
    assert!(exprs.len() >= 20, "{exprs:?}");
    let mut bad = Vec::new();
    for (place, expr) in &exprs {
        for p in problems(expr, &scrape) {
            bad.push(format!("{place}: {p}\n    {expr}"));
        }
    }
    assert!(bad.is_empty(), "{}\n\nscrape:\n{text}", bad.join("\n"));
    assert!(
        scrape.series.contains_key("dnsgate_queries_total"),
        "{text}"
    );

    // Every panel that shows data has a query and the dashboard's data source.
    let mut all = Vec::new();
    fn walk<'a>(ps: &'a [Value], all: &mut Vec<&'a Value>) {
        for p in ps {
            all.push(p);
            walk(
                p["panels"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
                all,
            );
        }
    }
    walk(dash["panels"].as_array().unwrap(), &mut all);
    let mut ids = BTreeSet::new();
    for p in all {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate id: {p}");
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
            assert!(
                !p["targets"].as_array().unwrap().is_empty(),
                "{}",
                p["title"]
            );
        }
    }
}

const SAMPLE: &str = "\
# TYPE dnsgate_queries_total counter
dnsgate_queries_total{protocol=\"udp\",action=\"block\"} 1
dnsgate_queries_total{protocol=\"tcp\",action=\"allow\"} 2
# TYPE dnsgate_upstream_errors_total counter
dnsgate_upstream_errors_total{upstream=\"udp://127.0.0.1:53\"} 0
# TYPE dnsgate_query_duration_seconds histogram
dnsgate_query_duration_seconds_bucket{le=\"0.1\"} 1
dnsgate_query_duration_seconds_bucket{le=\"+Inf\"} 1
dnsgate_query_duration_seconds_sum 0.01
dnsgate_query_duration_seconds_count 1
# TYPE dnsgate_external_request_duration_seconds summary
dnsgate_external_request_duration_seconds{quantile=\"0.5\"} 0.1
";

#[test]
fn grafana_check_reports_made_up_metrics_and_labels() {
    let s = parse_scrape(SAMPLE);
    assert_eq!(
        s.series["dnsgate_upstream_errors_total"]["upstream"],
        BTreeSet::from(["udp://127.0.0.1:53".to_owned()])
    );
    let fails = |e: &str, needle: &str| {
        let p = problems(e, &s);
        assert!(p.iter().any(|p| p.contains(needle)), "{e}: {p:?}");
    };
    fails(
        "sum(rate(dnsgate_made_up_total[5m]))",
        "dnsgate_made_up_total is not exported",
    );
    fails(
        "rate(dnsgate_queries_total[5m]) / rate(dnsgate_made_up_total[5m])",
        "dnsgate_made_up_total",
    );
    fails(
        "sum by (client) (rate(dnsgate_queries_total[5m]))",
        "no label client",
    );
    fails(
        "sum(rate(dnsgate_queries_total[5m])) by (rcode)",
        "no label rcode",
    );
    fails(
        "rate(dnsgate_queries_total{actions=\"block\"}[5m])",
        "no label actions",
    );
    fails(
        "rate(dnsgate_queries_total{action=\"blocked\"}[5m])",
        "no such value",
    );
    fails(
        "histogram_quantile(0.5, sum by (le) (rate(dnsgate_external_request_duration_seconds_bucket[5m])))",
        "not exported",
    );
    fails(
        "label_values(dnsgate_queries_total, rcode)",
        "no label rcode",
    );
    fails("vector(1)", "names no metric");
    fails("sum(rate({__name__=\"x\"}[5m]))", "cannot read");

    let ok = |e: &str| assert_eq!(problems(e, &s), Vec::<String>::new(), "{e}");
    ok(
        "histogram_quantile(0.99, sum by (le, instance) (rate(dnsgate_query_duration_seconds_bucket{instance=~\"$instance\"}[$__rate_interval])))",
    );
    ok(
        "sum(rate(dnsgate_query_duration_seconds_sum[5m])) / sum(rate(dnsgate_query_duration_seconds_count[5m]))",
    );
    ok(
        "topk(10, sum by (action) (rate(dnsgate_queries_total{job=\"dns\", action=\"block\"}[1h:5m] offset 1d)))",
    );
    ok("sum without (protocol) (rate(dnsgate_queries_total{action=~\"b.*\"}[${__range}]))");
    ok("label_values(dnsgate_queries_total, instance)");
}

#[test]
fn grafana_tokenizer_finds_metrics_not_functions_labels_or_strings() {
    let u = uses(
        "sum by (le) (rate(a_bucket{l=\"}{((\\\" b\", m!~'x'}[5m])) \
         / on (instance) group_left () max(b:rec) * 2 > bool 0.5e3 or c # d",
    )
    .unwrap();
    let names: Vec<&str> = u.iter().map(|u| u.metric.as_str()).collect();
    assert_eq!(names, ["a_bucket", "b:rec", "c"]);
    assert_eq!(u[0].grouping, BTreeSet::from(["le".to_owned()]));
    assert_eq!(
        u[0].matchers,
        [
            ("l".to_owned(), "=".to_owned(), "}{((\\\" b".to_owned()),
            ("m".to_owned(), "!~".to_owned(), "x".to_owned())
        ]
    );
    assert!(u[1].grouping.is_empty() && u[2].matchers.is_empty());

    // Targets in collapsed rows' nested panels and both forms of templating queries.
    let dash: Value = serde_json::from_str(
        r#"{"panels": [{"type": "row", "panels": [{"title": "t", "targets": [{"refId": "A", "expr": "x"}]}]},
                       {"title": "u", "targets": [{"refId": "A", "expr": "y"}, {"refId": "B"}]}],
            "templating": {"list": [{"type": "query", "name": "a", "query": "label_values(z, instance)"},
                                    {"type": "query", "name": "b", "query": {"query": "label_values(w, job)"}},
                                    {"type": "datasource", "name": "DS_PROMETHEUS", "query": "prometheus"}]}}"#,
    )
    .unwrap();
    let e: Vec<String> = expressions(&dash).into_iter().map(|(_, e)| e).collect();
    assert_eq!(
        e,
        [
            "x",
            "y",
            "label_values(z, instance)",
            "label_values(w, job)"
        ]
    );
}
