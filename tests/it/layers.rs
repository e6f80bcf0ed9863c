//! The module layers of `src/lib.rs`, checked: a top-level module names only modules in
//! layers below its own (test code aside), so there are no cycles and nothing below the
//! listeners knows about them.

use std::collections::BTreeSet;
use std::path::Path;

/// Top to bottom, as `src/lib.rs` draws them.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["api"],
    &["server"],
    &["record"],
    &["pipeline"],
    &["runtime"],
    &["answer"],
    &["policy"],
    &[
        "lists", "resolve", "config", "querylog", "external", "access",
    ],
    &["identity", "geoip", "metrics"],
    &["clock", "label", "diag", "netmap", "sys"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The `crate::x` modules a file names outside comments and its test section.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
}

#[test]
fn modules_name_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy();
        let top = top.trim_end_matches(".rs");
        if top == "lib" || top == "main" {
            continue;
        }
        let file_name = rel.file_name().unwrap().to_string_lossy();
        if file_name == "tests.rs" || file_name.ends_with("_tests.rs") {
            continue;
        }
        let own = layer_of(top)
            .unwrap_or_else(|| panic!("{top} is in no layer: add it to lib.rs and LAYERS"));
        for m in named(&std::fs::read_to_string(f).unwrap()) {
            if m == top {
                continue;
            }
            let Some(other) = layer_of(&m) else {
                wrong.push(format!(
                    "{}: names crate::{m}, which is in no layer",
                    rel.display()
                ));
                continue;
            };
            if other <= own {
                wrong.push(format!(
                    "{} ({top}) names crate::{m}: not a layer below",
                    rel.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn lib_rs_documents_every_module() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let doc: String = lib
        .lines()
        .filter(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    for layer in LAYERS {
        for m in *layer {
            assert!(lib.contains(&format!("mod {m};")), "{m} is not a module");
            assert!(
                doc.split(|c: char| !c.is_ascii_lowercase() && c != '_')
                    .any(|w| w == *m),
                "lib.rs does not document {m}"
            );
        }
    }
}
