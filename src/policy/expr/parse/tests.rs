//! Tests of the parser: the tree for each construct, exact offsets of syntax errors, the
//! depth limit, and property tests that `parse(display(ast)) == ast` and that no input
//! panics. In their own file because they outweigh the parser.

use super::*;
use proptest::prelude::*;

fn p(src: &str) -> Ast {
    match parse(src, Limits::default()) {
        Ok(Some(ast)) => ast,
        other => panic!("{src}: {other:?}"),
    }
}

fn err(src: &str) -> ExprError {
    match parse(src, Limits::default()) {
        Err(e) => e,
        other => panic!("{src}: expected an error, got {other:?}"),
    }
}

fn node(kind: AstKind) -> Ast {
    Ast {
        kind,
        span: Span::default(),
    }
}

fn opnd(field: &str) -> Operand {
    let span = Span::default();
    Operand {
        field: field.to_owned(),
        key: None,
        star: false,
        index: None,
        lower: false,
        span,
        field_span: span,
    }
}

fn lit(value: Value) -> Lit {
    Lit {
        value,
        span: Span::default(),
    }
}

fn s(v: &str) -> Lit {
    lit(Value::Str(v.to_owned()))
}

fn pred(lhs: Operand, op: PredOp) -> Ast {
    node(AstKind::Pred(Predicate { lhs, op }))
}

/// `field == "value"`.
fn eq(field: &str, v: &str) -> Ast {
    pred(opnd(field), PredOp::Cmp(CmpOp::Eq, s(v)))
}

fn and(v: Vec<Ast>) -> Ast {
    node(AstKind::And(v))
}
fn or(v: Vec<Ast>) -> Ast {
    node(AstKind::Or(v))
}
fn xor(v: Vec<Ast>) -> Ast {
    node(AstKind::Xor(v))
}
fn not(a: Ast) -> Ast {
    node(AstKind::Not(Box::new(a)))
}

#[test]
fn empty_source_is_no_tree() {
    assert_eq!(parse("", Limits::default()), Ok(None));
    assert_eq!(parse(" \n\t ", Limits::default()), Ok(None));
}

#[test]
fn comparison_operators_in_symbol_and_word_forms() {
    for (sym, word, op) in [
        ("==", "eq", CmpOp::Eq),
        ("!=", "ne", CmpOp::Ne),
        ("<", "lt", CmpOp::Lt),
        ("<=", "le", CmpOp::Le),
        (">", "gt", CmpOp::Gt),
        (">=", "ge", CmpOp::Ge),
    ] {
        let want = pred(opnd("dns.fqdn"), PredOp::Cmp(op, s("a")));
        assert_eq!(p(&format!("dns.fqdn {sym} \"a\"")), want);
        assert_eq!(p(&format!("dns.fqdn {word} \"a\"")), want);
        assert_eq!(p(&format!("dns.fqdn{sym}\"a\"")), want);
    }
}

#[test]
fn values_are_classified_by_shape() {
    let cmp = |v| pred(opnd("f"), PredOp::Cmp(CmpOp::Eq, lit(v)));
    assert_eq!(p("f == 42"), cmp(Value::Int(42)));
    assert_eq!(
        p("f == 192.0.2.1"),
        cmp(Value::Ip("192.0.2.1".parse().unwrap()))
    );
    assert_eq!(
        p("f == 2001:db8::1"),
        cmp(Value::Ip("2001:db8::1".parse().unwrap()))
    );
    assert_eq!(
        p("f == fe80::1"),
        cmp(Value::Ip("fe80::1".parse().unwrap()))
    );
    assert_eq!(
        p("f == 10.0.0.0/8"),
        cmp(Value::Cidr("10.0.0.0/8".parse().unwrap()))
    );
    assert_eq!(
        p("f == 2001:db8::/32"),
        cmp(Value::Cidr("2001:db8::/32".parse().unwrap()))
    );
    assert_eq!(p(r#"f == "a\"b""#), cmp(Value::Str("a\"b".to_owned())));
}

/// Integers as wirefilter reads them: hex, octal after a leading 0, negative decimals.
#[test]
fn integers_take_wirefilter_radixes_and_signs() {
    let cmp = |v| pred(opnd("f"), PredOp::Cmp(CmpOp::Eq, lit(v)));
    for (src, want) in [
        ("f == 0x1F", 31),
        ("f == 0x1f", 31),
        ("f == 010", 8),
        ("f == 0", 0),
        ("f == -12", -12),
        ("f == -010", -10),
    ] {
        assert_eq!(p(src), cmp(Value::Int(want)), "{src}");
    }
    let set = |items: Vec<Value>| {
        pred(
            opnd("f"),
            PredOp::InSet(items.into_iter().map(lit).collect()),
        )
    };
    assert_eq!(
        p("f in {-5..-1 0x10..0x20}"),
        set(vec![Value::Range(-5, -1), Value::Range(16, 32)])
    );
    assert_eq!(
        p("f & 6"),
        pred(opnd("f"), PredOp::BitAnd(lit(Value::Int(6))))
    );
    assert_eq!(
        p("f bitwise_and 0x6"),
        pred(opnd("f"), PredOp::BitAnd(lit(Value::Int(6))))
    );
}

/// What wirefilter accepts and dnsgate used to refuse: IP ranges in sets, `[N]` indexes,
/// `wildcard` and `strict wildcard`.
#[test]
fn ip_ranges_indexes_and_wildcards_parse() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(
        p("f in {10.0.0.0..10.255.255.255 ::1..::ff}"),
        pred(
            opnd("f"),
            PredOp::InSet(vec![
                lit(Value::IpRange(ip("10.0.0.0"), ip("10.255.255.255"))),
                lit(Value::IpRange(ip("::1"), ip("::ff"))),
            ])
        )
    );
    let indexed = Operand {
        index: Some(1),
        ..opnd("dns.domains")
    };
    assert_eq!(
        p(r#"dns.domains[1] == "example.com""#),
        pred(
            indexed,
            PredOp::Cmp(CmpOp::Eq, lit(Value::Str("example.com".into())))
        )
    );
    let keyed = Operand {
        key: Some("d".into()),
        index: Some(0),
        ..opnd("m")
    };
    assert_eq!(
        p(r#"m["d"][0] == "x""#),
        pred(keyed, PredOp::Cmp(CmpOp::Eq, lit(Value::Str("x".into()))))
    );
    let wild = |strict| PredOp::Wildcard {
        pattern: "*.example.com".into(),
        span: Span::default(),
        strict,
    };
    assert_eq!(
        p(r#"f wildcard "*.example.com""#),
        pred(opnd("f"), wild(false))
    );
    assert_eq!(
        p(r#"f strict wildcard "*.example.com""#),
        pred(opnd("f"), wild(true))
    );
    assert_eq!(
        p(r#"f strict wildcard r"*.example.com""#),
        pred(opnd("f"), wild(true))
    );
}

#[test]
fn sets_lists_matches_contains() {
    let set = |items: Vec<Value>| PredOp::InSet(items.into_iter().map(lit).collect());
    let want = pred(
        opnd("c"),
        set(vec![Value::Int(1), Value::Range(3, 5), Value::Int(9)]),
    );
    assert_eq!(p("c in {1 3..5 9}"), want);
    assert_eq!(p("c in {1, 3..5, 9}"), want);
    assert_eq!(p("c in {1,3..5,9,}"), want);
    assert_eq!(p("c in {}"), pred(opnd("c"), set(vec![])));
    let ips = set(vec![
        Value::Cidr("10.0.0.0/8".parse().unwrap()),
        Value::Ip("::1".parse().unwrap()),
    ]);
    assert_eq!(p("ip in {10.0.0.0/8 ::1}"), pred(opnd("ip"), ips));
    let list = PredOp::InList("ads".to_owned(), Span::default());
    assert_eq!(p("dns.fqdn in $ads"), pred(opnd("dns.fqdn"), list));
    let re = PredOp::Matches(r"^a\d+$".to_owned(), Span::default());
    assert_eq!(
        p(r#"dns.fqdn matches "^a\d+$""#),
        pred(opnd("dns.fqdn"), re.clone())
    );
    assert_eq!(p(r#"dns.fqdn ~ "^a\d+$""#), pred(opnd("dns.fqdn"), re));
    let c = PredOp::Contains("ads".to_owned(), Span::default());
    assert_eq!(p(r#"dns.fqdn contains "ads""#), pred(opnd("dns.fqdn"), c));
}

#[test]
fn operands_with_index_star_and_lower() {
    let mut o = opnd("identity.saml_attributes");
    o.key = Some("department".to_owned());
    o.star = true;
    let body = pred(o, PredOp::Cmp(CmpOp::Eq, s("Marketing")));
    let want = node(AstKind::Any(Box::new(body)));
    assert_eq!(
        p(r#"any(identity.saml_attributes["department"][*] == "Marketing")"#),
        want
    );
    let mut o = opnd("dns.domains");
    o.star = true;
    o.lower = true;
    let body = pred(o, PredOp::Cmp(CmpOp::Eq, s("x")));
    assert_eq!(
        p(r#"all(lower(dns.domains[*]) == "x")"#),
        node(AstKind::All(Box::new(body)))
    );
    let mut o = opnd("identity.name");
    o.lower = true;
    assert_eq!(
        p(r#"lower( identity.name ) == "x""#),
        pred(o, PredOp::Cmp(CmpOp::Eq, s("x")))
    );
}

#[test]
fn precedence_is_not_and_xor_or() {
    let (a, b, c, d) = (eq("a", "1"), eq("b", "1"), eq("c", "1"), eq("d", "1"));
    assert_eq!(
        p(r#"a == "1" or b == "1" and c == "1""#),
        or(vec![a.clone(), and(vec![b.clone(), c.clone()])])
    );
    assert_eq!(
        p(r#"a == "1" xor b == "1" and c == "1""#),
        xor(vec![a.clone(), and(vec![b.clone(), c.clone()])])
    );
    assert_eq!(
        p(r#"a == "1" or b == "1" xor c == "1""#),
        or(vec![a.clone(), xor(vec![b.clone(), c.clone()])])
    );
    assert_eq!(
        p(r#"not a == "1" and b == "1""#),
        and(vec![not(a.clone()), b.clone()])
    );
    assert_eq!(
        p(r#"a == "1" and b == "1" or c == "1" and d == "1""#),
        or(vec![
            and(vec![a.clone(), b.clone()]),
            and(vec![c.clone(), d.clone()])
        ])
    );
    assert_eq!(
        p(r#"(a == "1" or b == "1") and c == "1""#),
        and(vec![or(vec![a.clone(), b.clone()]), c.clone()])
    );
    assert_eq!(
        p(r#"!(a == "1" || b == "1") && c == "1" ^^ d == "1""#),
        xor(vec![
            and(vec![not(or(vec![a.clone(), b.clone()])), c.clone()]),
            d.clone()
        ])
    );
    // Chains are one node; parenthesised chains stay distinct.
    assert_eq!(
        p(r#"a == "1" and b == "1" and c == "1""#),
        and(vec![a.clone(), b.clone(), c.clone()])
    );
    assert_eq!(
        p(r#"(a == "1" and b == "1") and c == "1""#),
        and(vec![and(vec![a.clone(), b.clone()]), c.clone()])
    );
    assert_eq!(p(r#"not not a == "1""#), not(not(a.clone())));
    assert_eq!(p(r#"((a == "1"))"#), a);
}

#[test]
fn spans_cover_the_source_of_each_node() {
    let src = r#"dns.fqdn == "a" and (b == 1 or c == 2)"#;
    let ast = p(src);
    let AstKind::And(items) = &ast.kind else {
        panic!("{ast:?}")
    };
    assert_eq!(
        &src[items[0].span.start..items[0].span.end],
        r#"dns.fqdn == "a""#
    );
    assert_eq!(
        &src[items[1].span.start..items[1].span.end],
        "(b == 1 or c == 2)"
    );
    assert_eq!((ast.span.start, ast.span.end), (0, src.len()));
}

#[test]
fn syntax_errors_have_exact_offsets() {
    for (src, offset, message) in [
        ("dns.fqdn ==", 11, "expected a value after `==`"),
        (
            "dns.fqdn == )",
            12,
            "expected a value after `==`, found `)`",
        ),
        ("dns.fqdn eq", 11, "expected a value after `eq`"),
        (r#"dns.fqdn == "abc"#, 12, "unterminated string"),
        (
            r#"dns.fqdn == "a" and"#,
            19,
            "expected an expression after `and`",
        ),
        (
            r#"dns.fqdn == "a" or )"#,
            19,
            "expected an expression after `or`, found `)`",
        ),
        (
            r#"(dns.fqdn == "a""#,
            0,
            "unbalanced parentheses: this `(` is never closed",
        ),
        (
            r#"dns.fqdn == "a")"#,
            15,
            "unexpected `)` (unbalanced parentheses)",
        ),
        (
            r#"any(dns.domains[*] == "a""#,
            0,
            "unbalanced parentheses: this `(` is never closed",
        ),
        ("dns.fqdn", 8, "expected an operator after `dns.fqdn`"),
        (
            r#"dns.fqdn "a""#,
            9,
            "expected an operator after `dns.fqdn`, found a string",
        ),
        (
            "dns.fqdn == example.com",
            12,
            "expected a value after `==`, found `example.com` (strings are quoted: \"example.com\")",
        ),
        (
            "dns.fqdn = 1",
            9,
            "unexpected character `=` (did you mean `==`?)",
        ),
        (
            "a in 1",
            5,
            "expected `{` or a `$list` after `in`, found `1`",
        ),
        ("a in {1 2", 5, "unclosed `{`: expected `}`"),
        ("a in {1 ,, 2}", 9, "expected a value or `}`, found `,`"),
        (
            "a matches 1",
            10,
            "expected a regex string after `matches`, found `1`",
        ),
        ("a contains", 10, "expected a string after `contains`"),
        ("a == 1..5", 5, "a range is only allowed in a set: `{1..5}`"),
        (
            "a in {5..1}",
            6,
            "empty range `5..1`: the start is above the end",
        ),
        (
            "a == 99999999999999999999",
            5,
            "integer `99999999999999999999` is out of range (64 bits)",
        ),
        (
            "a == 08",
            5,
            "invalid integer `08`: a leading 0 means octal (digits 0-7), as in wirefilter",
        ),
        (
            "a in {10.0.0.1..::1}",
            6,
            "range `10.0.0.1..::1` mixes IPv4 and IPv6",
        ),
        (
            "a in {10.0.0.2..10.0.0.1}",
            6,
            "empty range `10.0.0.2..10.0.0.1`: the start is above the end",
        ),
        ("a[-1] == 1", 2, "invalid index `-1`: expected 0 or more"),
        (
            r#"a == "\q""#,
            6,
            r#"invalid escape `\q`: strings take \", \\, \xHH (hex) and \OOO (octal)"#,
        ),
        (
            r#"a == "x\x4""#,
            7,
            r#"invalid escape `\x4"`: strings take \", \\, \xHH (hex) and \OOO (octal)"#,
        ),
        (
            r#"a == "\400""#,
            6,
            r#"invalid escape `\400`: strings take \", \\, \xHH (hex) and \OOO (octal)"#,
        ),
        (
            r#"a == "\xff""#,
            5,
            "the escapes of this string do not form UTF-8 text",
        ),
        (
            "a wildcard 1",
            11,
            "expected a string after `wildcard`, found `1`",
        ),
        ("a == 10.0.0.0/33", 5, "invalid network `10.0.0.0/33`"),
        ("a == 1.2.3", 5, "invalid value `1.2.3`"),
        (
            "a[(] == 1",
            2,
            "expected `*`, an index or a quoted key after `[`, found `(`",
        ),
        ("a[* == 1", 4, "expected `]`, found `==`"),
        (
            "lower(a == 1",
            8,
            "expected `)` to close `lower(`, found `==`",
        ),
        (
            "== 1",
            0,
            "expected a field, `not`, `any(` or `(`, found `==`",
        ),
        ("and == 1", 0, "expected a field, found `and`"),
        (
            r#"a == "1" b == "2""#,
            9,
            "expected `and`, `or`, `xor` or the end of the expression, found `b`",
        ),
        (
            r#"a == "1" AND b == "2""#,
            9,
            "expected `and`, `or`, `xor` or the end of the expression, found `AND`",
        ),
        ("not", 3, "expected an expression after `not`"),
        ("a == $", 5, "expected a list name after `$`"),
    ] {
        let e = err(src);
        assert_eq!((e.offset, e.message.as_str()), (offset, message), "{src}");
    }
}

#[test]
fn depth_is_limited_without_overflowing_the_stack() {
    let limits = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    assert!(parse(r#"(((a == "1")))"#, limits).is_ok());
    let e = parse(r#"((((a == "1"))))"#, limits).unwrap_err();
    assert_eq!(
        (e.offset, e.message.as_str()),
        (4, "expression nests more than 3 levels deep")
    );
    assert!(parse(r#"not not not not a == "1""#, limits).is_err());
    assert!(parse(r#"any(any(any(any(a[*] == "1"))))"#, limits).is_err());
    let deep = format!("{}a == 1{}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(parse(&deep, Limits::default()).is_err());
    let nots = format!("{}a == 1", "!".repeat(100_000));
    assert!(parse(&nots, Limits::default()).is_err());
    // Long chains are flat, so they need no depth.
    let chain = vec![r#"a == "1""#; 10_000].join(" or ");
    assert!(parse(&chain, limits).is_ok());
}

// ---- parse(display(ast)) == ast for generated trees ----

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::Str),
        any::<i64>().prop_map(Value::Int),
        (any::<std::net::Ipv4Addr>(), any::<std::net::Ipv4Addr>())
            .prop_map(|(a, b)| { Value::IpRange(a.min(b).into(), a.max(b).into()) }),
        (any::<std::net::Ipv6Addr>(), any::<std::net::Ipv6Addr>())
            .prop_map(|(a, b)| { Value::IpRange(a.min(b).into(), a.max(b).into()) }),
        any::<std::net::IpAddr>().prop_map(Value::Ip),
        (any::<std::net::Ipv4Addr>(), 0u8..=32).prop_filter_map("net", |(a, l)| {
            ipnet::Ipv4Net::new(a, l)
                .ok()
                .map(|n| Value::Cidr(n.into()))
        }),
        (any::<std::net::Ipv6Addr>(), 0u8..=128).prop_filter_map("net", |(a, l)| {
            ipnet::Ipv6Net::new(a, l)
                .ok()
                .map(|n| Value::Cidr(n.into()))
        }),
    ]
}

fn arb_lit() -> impl Strategy<Value = Lit> {
    arb_value().prop_map(lit)
}

fn arb_operand() -> impl Strategy<Value = Operand> {
    let names = prop_oneof![
        proptest::sample::select(crate::policy::fields::Field::ALL.map(|f| f.name()).to_vec())
            .prop_map(str::to_owned),
        "[a-z_][a-z0-9_]{0,6}(\\.[a-z0-9_]{1,6}){0,2}"
            .prop_filter("keyword", |s| !KEYWORDS.contains(&s.as_str())),
    ];
    (
        names,
        proptest::option::of(any::<String>()),
        any::<bool>(),
        proptest::option::of(any::<u32>()),
        any::<bool>(),
    )
        .prop_map(|(field, key, star, index, lower)| Operand {
            key,
            star,
            index: index.filter(|_| !star),
            lower,
            ..opnd(&field)
        })
}

fn arb_pred_op() -> impl Strategy<Value = PredOp> {
    let cmp = proptest::sample::select(vec![
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ]);
    let range =
        (any::<i64>(), any::<i64>()).prop_map(|(a, b)| lit(Value::Range(a.min(b), a.max(b))));
    prop_oneof![
        (cmp, arb_lit()).prop_map(|(op, l)| PredOp::Cmp(op, l)),
        proptest::collection::vec(prop_oneof![arb_lit(), range], 0..4).prop_map(PredOp::InSet),
        "[a-zA-Z0-9_.-]{1,8}".prop_map(|n| PredOp::InList(n, Span::default())),
        any::<String>().prop_map(|s| PredOp::Matches(s, Span::default())),
        any::<String>().prop_map(|s| PredOp::Contains(s, Span::default())),
        (any::<String>(), any::<bool>()).prop_map(|(pattern, strict)| PredOp::Wildcard {
            pattern,
            span: Span::default(),
            strict
        }),
        any::<i64>().prop_map(|n| PredOp::BitAnd(lit(Value::Int(n)))),
    ]
}

fn arb_ast() -> impl Strategy<Value = Ast> {
    let leaf = (arb_operand(), arb_pred_op()).prop_map(|(lhs, op)| pred(lhs, op));
    leaf.prop_recursive(5, 40, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(and),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(or),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(xor),
            inner.clone().prop_map(not),
            inner.clone().prop_map(|a| node(AstKind::Any(Box::new(a)))),
            inner.prop_map(|a| node(AstKind::All(Box::new(a)))),
        ]
    })
}

proptest! {
    #[test]
    fn display_parses_back_to_the_same_tree(ast in arb_ast()) {
        let src = ast.to_string();
        let limits = Limits { max_depth: 1000, ..Limits::default() };
        prop_assert_eq!(parse(&src, limits), Ok(Some(ast)), "{}", src);
    }

    #[test]
    fn parsing_never_panics(src in "\\PC{0,80}") {
        let _ = parse(&src, Limits::default());
    }

    #[test]
    fn parsing_token_soup_never_panics(parts in proptest::collection::vec(proptest::sample::select(vec![
        "dns.fqdn", "any", "all", "lower", "(", ")", "[", "]", "*", "{", "}", ",", "\"x\"", "\"",
        "==", "!=", "<", "in", "$l", "$", "matches", "~", "contains", "and", "or", "xor", "not",
        "!", "&&", "||", "^^", "1", "1..2", "10.0.0.0/8", "::1", "=", "\\",
    ]), 0..20)) {
        let _ = parse(&parts.join(" "), Limits::default());
        let _ = parse(&parts.concat(), Limits::default());
    }
}
