//! Type checking and lowering: [`Ast`] → [`Node`].
//!
//! Everything that can be decided once is decided here, so evaluation only compares:
//! field names become direct accessors, literals are normalised for their field (or
//! replaced by canonical e-mails), sets become sorted ranges or hash sets, regexes are
//! built, lists are resolved to `Arc`s and checked against the field, and the `any()`
//! shapes that have a cheaper equivalent are rewritten (see [`quantify`]).
//!
//! Errors are collected rather than returned at the first one, so `dnsgate check` shows
//! every type error of an expression at once; a node with an error compiles to a
//! placeholder and the caller discards the tree. This file resolves structure and fields;
//! `pred` checks and lowers each predicate.

use super::ast::{Ast, AstKind, Operand, Predicate, Span};
use super::eval::{ArrSrc, IpSrc, Node, StrSrc, StrTest};
use super::names::{array_hint, unknown_field};
use super::pred::{Kind, Resolved};
use super::{CompileEnv, ExprError};
use crate::policy::fields::{Field, FieldType, Scalar};

/// Walks an [`Ast`], collecting errors and the fields it uses.
pub(super) struct Compiler<'e, 'l> {
    pub(super) env: &'e CompileEnv<'l>,
    /// Every problem found so far.
    pub(super) errors: Vec<ExprError>,
    /// What compiles but deserves a word (`dnsgate check` shows it).
    pub(super) warnings: Vec<ExprError>,
    /// Bit `f as u32` is set when field `f` is referenced.
    pub(super) used: u32,
}

/// Inside `any()`/`all()`: the array its `[*]` references name (the first one seen).
#[derive(Default)]
pub(super) struct Scope {
    arr: Option<(Field, Option<String>, String)>,
}

fn scalar_src(field: Field) -> Option<StrSrc> {
    Some(match field {
        Field::Fqdn => StrSrc::Fqdn,
        Field::QueryRtype => StrSrc::Rtype,
        Field::Location => StrSrc::Location,
        Field::IdentityEmail => StrSrc::Email,
        Field::IdentityName => StrSrc::Name,
        Field::DeviceId => StrSrc::DeviceId,
        Field::SrcGeoCountry => StrSrc::SrcCountry,
        Field::SrcGeoContinent => StrSrc::SrcContinent,
        _ => return None,
    })
}

fn array_src(field: Field, key: Option<String>) -> Option<ArrSrc> {
    Some(match field {
        Field::Domains => ArrSrc::Domains,
        Field::ContentCategory => ArrSrc::ContentCategory,
        Field::SecurityCategory => ArrSrc::SecurityCategory,
        Field::GroupsName => ArrSrc::GroupsName,
        Field::GroupsId => ArrSrc::GroupsId,
        Field::GroupsEmail => ArrSrc::GroupsEmail,
        Field::SamlAttributes => ArrSrc::Saml(Box::new(key?)),
        Field::ResolvedIps => ArrSrc::ResolvedIps,
        Field::AuthoritativeNsIps => ArrSrc::AuthoritativeNsIps,
        Field::DstGeoCountry => ArrSrc::DstCountry,
        Field::DstGeoContinent => ArrSrc::DstContinent,
        Field::ResponseCname => ArrSrc::Cname,
        Field::ResponseMx => ArrSrc::Mx,
        Field::ResponseTxt => ArrSrc::Txt,
        Field::ResponsePtr => ArrSrc::Ptr,
        _ => return None,
    })
}

/// Builds `any`/`all` of `body` over `arr`, rewritten where a cheaper form means the same:
/// `any(a or b)` is `any(a) or any(b)` and `all(a and b)` is `all(a) and all(b)` (exactly,
/// empty arrays included), which exposes the one-call shapes `any(dns.domains[*] == "x")`
/// and `any(dns.domains[*] in $list)` inside larger conditions.
fn quantify(all: bool, arr: &ArrSrc, body: Node) -> Node {
    let spread = |kids: Box<[Node]>| {
        kids.into_vec()
            .into_iter()
            .map(|k| quantify(all, arr, k))
            .collect()
    };
    match (all, body) {
        (false, Node::Or(kids)) => Node::Or(spread(kids)),
        (true, Node::And(kids)) => Node::And(spread(kids)),
        (
            false,
            Node::Str {
                src: StrSrc::Elem,
                fold: false,
                test: StrTest::Eq(x),
            },
        ) if *arr == ArrSrc::Domains => Node::DomainsEq(x),
        (
            false,
            Node::Str {
                src: StrSrc::Elem,
                fold: false,
                test: StrTest::DomainList(l),
            },
        ) if *arr == ArrSrc::Domains => Node::DomainsInList(l),
        (
            false,
            Node::Str {
                src: StrSrc::Elem,
                fold: false,
                test: StrTest::In(set),
            },
        ) if *arr == ArrSrc::Domains => Node::DomainsIn(set),
        (all, Node::Int(test))
            if matches!(arr, ArrSrc::ContentCategory | ArrSrc::SecurityCategory) =>
        {
            Node::Categories {
                security: *arr == ArrSrc::SecurityCategory,
                all,
                test,
            }
        }
        (
            all,
            Node::Str {
                src: StrSrc::Elem,
                fold: false,
                test,
            },
        ) => Node::QuantStr {
            all,
            arr: arr.clone(),
            test: Box::new(test),
        },
        (all, body) => Node::Quant {
            all,
            arr: arr.clone(),
            body: Box::new(body),
        },
    }
}

impl<'e, 'l> Compiler<'e, 'l> {
    pub(super) fn new(env: &'e CompileEnv<'l>) -> Self {
        Self {
            env,
            errors: Vec::new(),
            warnings: Vec::new(),
            used: 0,
        }
    }

    pub(super) fn err(&mut self, offset: usize, message: impl Into<String>) {
        self.errors.push(ExprError {
            offset,
            message: message.into(),
        });
    }

    pub(super) fn warn(&mut self, offset: usize, message: impl Into<String>) {
        self.warnings.push(ExprError {
            offset,
            message: message.into(),
        });
    }

    /// Compiles a node; `scope` is `Some` inside `any()`/`all()`.
    pub(super) fn node(&mut self, ast: &Ast, scope: &mut Option<Scope>) -> Node {
        let mut many =
            |v: &[Ast]| -> Box<[Node]> { v.iter().map(|a| self.node(a, scope)).collect() };
        match &ast.kind {
            AstKind::And(v) => Node::And(many(v)),
            AstKind::Or(v) => Node::Or(many(v)),
            AstKind::Xor(v) => Node::Xor(many(v)),
            AstKind::Not(a) => Node::Not(Box::new(self.node(a, scope))),
            AstKind::Any(body) => self.quant(false, body, ast.span),
            AstKind::All(body) => self.quant(true, body, ast.span),
            AstKind::Pred(p) => self.pred(p, scope),
        }
    }

    fn quant(&mut self, all: bool, body: &Ast, span: Span) -> Node {
        let before = self.errors.len();
        let mut inner = Some(Scope::default());
        let body = self.node(body, &mut inner);
        let bound = inner
            .and_then(|s| s.arr)
            .and_then(|(f, key, _)| array_src(f, key));
        match bound {
            Some(arr) => quantify(all, &arr, body),
            None => {
                if self.errors.len() == before {
                    let name = if all { "all" } else { "any" };
                    let message = format!(
                        "{name}() needs an array element such as `dns.domains[*]` in its condition"
                    );
                    self.err(span.start, message);
                }
                Node::Const(false)
            }
        }
    }

    /// Resolves the field side of `p`, reporting why it cannot be used.
    pub(super) fn operand(&mut self, p: &Predicate, scope: &mut Option<Scope>) -> Option<Resolved> {
        let op = &p.lhs;
        let Some(field) = Field::from_name(&op.field) else {
            self.err(op.field_span.start, unknown_field(&op.field));
            return None;
        };
        self.used |= 1 << field as u32;
        let text = Operand {
            lower: false,
            ..op.clone()
        }
        .to_string();
        let name = field.name();
        if field.needs_geoip() && !self.env.has_geoip {
            self.err(
                op.field_span.start,
                format!("`{name}` needs a [geoip] database"),
            );
            return None;
        }
        let at = op.span.start;
        let is_map = field.ty() == FieldType::Map;
        if op.key.is_some() && !is_map {
            self.err(at, format!("`{name}` is not a map: it takes no [\"key\"]"));
            return None;
        }
        let elem = op.star || op.index.is_some();
        let kind = match (field.ty(), elem) {
            (FieldType::String | FieldType::Ip | FieldType::Int, true) => {
                let what = if op.star { "[*]" } else { "an index" };
                return self.fail(
                    at,
                    format!("`{name}` is not an array: use it without {what}"),
                );
            }
            (FieldType::String, false) => match scalar_src(field) {
                Some(src) => Kind::Str(src),
                None => return self.fail(at, format!("`{name}` is not supported in expressions")),
            },
            (FieldType::Ip, false) => Kind::Ip(IpSrc::SrcIp),
            (FieldType::Int, false) => {
                return self.fail(
                    at,
                    format!("`{name}` is a scalar integer, which expressions do not support"),
                );
            }
            (FieldType::Map, _) if op.key.is_none() => {
                let message =
                    format!("`{name}` is a map: use any({name}[\"attribute\"][*] == ...)");
                return self.fail(at, message);
            }
            (FieldType::Array(_) | FieldType::Map, false) => {
                return self.fail(at, format!("`{text}` is an array: use {}", array_hint(p)));
            }
            (FieldType::Array(Scalar::String) | FieldType::Map, true) => Kind::Str(StrSrc::Elem),
            (FieldType::Array(Scalar::Int), true) => Kind::Int,
            (FieldType::Array(Scalar::Ip), true) => Kind::Ip(IpSrc::Elem),
        };
        if op.star {
            self.bind(scope, field, op, &text)?;
        }
        if op.lower && !matches!(kind, Kind::Str(_)) {
            self.err(
                at,
                format!(
                    "lower() needs a string field; `{text}` is an {} field",
                    kind.name()
                ),
            );
            return None;
        }
        let index = match op.index {
            Some(i) => Some((array_src(field, op.key.clone())?, i)),
            None => None,
        };
        Some(Resolved {
            field,
            text,
            kind,
            lower: op.lower,
            span: op.span,
            index,
        })
    }

    /// Records that `[*]` of `field` is used in the current `any()`/`all()`.
    fn bind(
        &mut self,
        scope: &mut Option<Scope>,
        field: Field,
        op: &Operand,
        text: &str,
    ) -> Option<()> {
        let Some(scope) = scope else {
            self.err(
                op.span.start,
                format!("`{text}` is only allowed inside any() or all()"),
            );
            return None;
        };
        match &scope.arr {
            None => scope.arr = Some((field, op.key.clone(), text.to_owned())),
            Some((f, key, _)) if *f == field && *key == op.key => {}
            Some((_, _, first)) => {
                let message = format!(
                    "`{text}` and `{first}` are different arrays: one any() or all() ranges over one array"
                );
                self.err(op.span.start, message);
                return None;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::compile;
    use super::super::fixtures::{alice, env, errors, errors_in, kind_lists, ok, query};
    use super::*;
    use crate::policy::fields::Phase;

    fn one(src: &str) -> (usize, String) {
        let mut e = errors(src);
        assert_eq!(e.len(), 1, "{src}: {e:?}");
        e.remove(0)
    }

    #[test]
    fn name_errors_point_at_the_name() {
        assert_eq!(
            one(r#"dns.fqdnn == "a""#),
            (
                0,
                "unknown field `dns.fqdnn` (did you mean `dns.fqdn`?)".to_owned()
            )
        );
        assert_eq!(
            one(r#"lower( dns.nme) == "a""#),
            (7, "unknown field `dns.nme`".to_owned())
        );
        assert_eq!(
            one("dns.fqdn in $adz"),
            (12, "unknown list `$adz` (did you mean `$ads`?)".to_owned())
        );
        // The right-hand side is still checked when the field is unknown.
        assert_eq!(
            errors("x in $nope"),
            [
                (0, "unknown field `x`".to_owned()),
                (5, "unknown list `$nope`".to_owned())
            ]
        );
    }

    #[test]
    fn arrays_need_any_or_all() {
        for (src, offset, message) in [
            (
                r#"dns.domains == "x""#,
                0,
                r#"`dns.domains` is an array: use any(dns.domains[*] == "x")"#,
            ),
            (
                r#"not lower(dns.response.cname) in {"a" "b"}"#,
                4,
                r#"`dns.response.cname` is an array: use any(lower(dns.response.cname[*]) in {"a" "b"})"#,
            ),
            (
                r#"identity.saml_attributes == "x""#,
                0,
                r#"`identity.saml_attributes` is a map: use any(identity.saml_attributes["attribute"][*] == ...)"#,
            ),
            (
                r#"identity.saml_attributes["d"] == "x""#,
                0,
                r#"`identity.saml_attributes["d"]` is an array: use any(identity.saml_attributes["d"][*] == "x")"#,
            ),
            (
                r#"dns.domains[*] == "x""#,
                0,
                "`dns.domains[*]` is only allowed inside any() or all()",
            ),
            (
                r#"any(dns.fqdn[*] == "x")"#,
                4,
                "`dns.fqdn` is not an array: use it without [*]",
            ),
            (
                r#"any(dns.domains["k"][*] == "x")"#,
                4,
                r#"`dns.domains` is not a map: it takes no ["key"]"#,
            ),
            (
                r#"any(dns.fqdn == "x")"#,
                0,
                "any() needs an array element such as `dns.domains[*]` in its condition",
            ),
            (
                r#"all(dns.domains[*] == "x" or dns.response.cname[*] == "x")"#,
                29,
                "`dns.response.cname[*]` and `dns.domains[*]` are different arrays: one any() or all() ranges over one array",
            ),
        ] {
            assert_eq!(one(src), (offset, message.to_owned()), "{src}");
        }
        let long = format!("dns.domains in {{{}}}", ["\"example.com\""; 10].join(" "));
        assert_eq!(
            one(&long).1,
            "`dns.domains` is an array: use any(dns.domains[*] in ...)"
        );
    }

    #[test]
    fn nested_quantifiers_each_bind_their_own_array() {
        let e = ok(r#"any(dns.domains[*] == "com" and any(dns.content_category[*] == 7))"#);
        let id = alice();
        assert!(e.eval(&query(Some(&id), None)));
        let e = ok(r#"any(dns.domains[*] == "com" and all(dns.content_category[*] == 7))"#);
        assert!(!e.eval(&query(Some(&id), None)));
    }

    #[test]
    fn every_type_error_is_reported_at_once() {
        let src =
            r#"dns.src_ip == "a" and dns.fqdn == 1 or dns.nope == "x" and dns.domains == "y""#;
        let offsets: Vec<_> = errors(src).into_iter().map(|(o, _)| o).collect();
        assert_eq!(offsets, [14, 34, 39, 59]);
    }

    #[test]
    fn geo_fields_need_a_database() {
        let lists = kind_lists();
        let mut no_geo = env(&lists, false);
        no_geo.has_geoip = false;
        let e = errors_in(
            r#"dns.src.geo.country == "PT" or any(dns.dst.geo.continent[*] == "EU")"#,
            &no_geo,
        );
        assert_eq!(
            e,
            [
                (
                    0,
                    "`dns.src.geo.country` needs a [geoip] database".to_owned()
                ),
                (
                    35,
                    "`dns.dst.geo.continent` needs a [geoip] database".to_owned()
                ),
            ]
        );
        assert!(compile(r#"dns.fqdn == "a""#, &no_geo).is_ok());
    }

    #[test]
    fn phase_and_uses_follow_the_fields() {
        let e = ok(r#"dns.fqdn == "a" and any(dns.resolved_ips[*] in {10.0.0.0/8})"#);
        assert_eq!(e.phase(), Phase::Post);
        assert!(e.uses(Field::Fqdn) && e.uses(Field::ResolvedIps) && !e.uses(Field::Domains));
        let e = ok(r#"any(dns.domains[*] == "a") or identity.email == "x""#);
        assert_eq!(e.phase(), Phase::Pre);
        assert!(e.uses(Field::Domains) && e.uses(Field::IdentityEmail));
        assert_eq!(ok("").phase(), Phase::Pre);
        assert!(Field::ALL.iter().all(|&f| !ok(" ").uses(f)));
    }

    #[test]
    fn domain_suffix_shapes_compile_to_one_call() {
        assert!(matches!(
            ok(r#"any(dns.domains[*] == "a.com")"#).root,
            Node::DomainsEq(_)
        ));
        assert!(matches!(
            ok("any(dns.domains[*] in $ads)").root,
            Node::DomainsInList(_)
        ));
        let e = ok(r#"any(dns.domains[*] in $ads or dns.domains[*] == "x.com")"#);
        assert!(
            matches!(&e.root, Node::Or(k) if matches!(&k[..], [Node::DomainsInList(_), Node::DomainsEq(_)]))
        );
        assert!(matches!(
            ok(r#"any(dns.domains[*] in {"a.com" "b.com"})"#).root,
            Node::DomainsIn(_)
        ));
        assert!(matches!(
            ok("any(dns.content_category[*] in {1 2})").root,
            Node::Categories { .. }
        ));
        assert!(matches!(
            ok("all(dns.security_category[*] > 2)").root,
            Node::Categories { all: true, .. }
        ));
        assert!(matches!(
            ok(r#"dns.src.geo.country in {"PT"}"#).root,
            Node::Code { .. }
        ));
        let e = ok(r#"any(dns.dst.geo.continent[*] != "EU")"#);
        assert!(matches!(&e.root, Node::Quant { body, .. } if matches!(&**body, Node::Not(_))));
        let e = ok(r#"any(identity.groups.name[*] in {"a" "b"})"#);
        assert!(matches!(e.root, Node::QuantStr { all: false, .. }));
        // all() tests each element exactly.
        assert!(matches!(
            ok("all(dns.domains[*] in $ads)").root,
            Node::QuantStr { all: true, .. }
        ));
        let e = ok(r#"any(lower(identity.groups.name[*]) == "x")"#);
        assert!(matches!(e.root, Node::Quant { all: false, .. }));
        let e = ok(r#"all(dns.domains[*] contains "a" and dns.domains[*] contains "b")"#);
        assert!(matches!(&e.root, Node::And(k) if k.len() == 2));
    }
}
