//! Reading the configuration: the main file, its `include` globs, and positions.
//!
//! Every item keeps the index of the file it came from, so a problem found much later
//! (an expression that does not compile, a list that does not exist) is still reported as
//! `path:line:col`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Spanned;

use super::{CategoryConfig, ConfigFile, IncludeFile, ListConfig, PolicyConfig};
use crate::diag::{Diagnostic, Lines};

/// A file that was read, kept for positions.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Its path, as named.
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
    /// Where its lines start: built once, so each of the many positions asked for while
    /// loading costs a binary search, not a scan from the file's start.
    lines: Lines,
}

impl SourceFile {
    /// A file with the given contents.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            path: path.into(),
            lines: Lines::new(&text),
            text,
        }
    }

    /// The directory relative paths in this file are resolved against.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or_else(|| Path::new("."))
    }

    /// A path named in this file, resolved relative to it.
    pub fn resolve(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir().join(p)
        }
    }

    /// A diagnostic at a byte span of this file.
    pub fn diag(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        self.diag_at(span.start, message)
    }

    /// A diagnostic at a byte offset of this file.
    pub fn diag_at(&self, offset: usize, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.line_col(offset);
        Diagnostic {
            path: self.path.clone(),
            line,
            col,
            message: message.into(),
        }
    }

    /// 1-based line and column of a byte offset of this file.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        self.lines.line_col(&self.text, offset)
    }

    /// The file offset of byte `inner` of the string value whose TOML literal spans `span`.
    ///
    /// Literal strings ('…', '''…''') map one to one; basic strings ("…", """…""") are
    /// walked escape by escape, so an error after `\"` still points at the right column.
    pub fn string_offset(&self, span: &Range<usize>, inner: usize) -> usize {
        let lit = self.text.get(span.clone()).unwrap_or("");
        let (open, basic, multi) = if lit.starts_with("\"\"\"") {
            (3, true, true)
        } else if lit.starts_with("'''") {
            (3, false, true)
        } else if lit.starts_with('"') {
            (1, true, false)
        } else if lit.starts_with('\'') {
            (1, false, false)
        } else {
            (0, false, false)
        };
        let mut raw = open;
        if multi {
            // A newline right after the opening delimiter is not part of the value.
            if lit[raw..].starts_with("\r\n") {
                raw += 2;
            } else if lit[raw..].starts_with('\n') {
                raw += 1;
            }
        }
        if !basic {
            return (span.start + raw + inner).min(self.text.len());
        }
        let bytes = lit.as_bytes();
        let mut decoded = 0;
        while decoded < inner && raw < bytes.len() {
            if bytes[raw] != b'\\' {
                let ch = lit[raw..].chars().next().map_or(1, char::len_utf8);
                raw += ch;
                decoded += ch;
                continue;
            }
            let Some(&esc) = bytes.get(raw + 1) else {
                break;
            };
            match esc {
                b'u' | b'U' => {
                    let digits = if esc == b'u' { 4 } else { 8 };
                    let hex = lit.get(raw + 2..raw + 2 + digits).unwrap_or("");
                    let len = u32::from_str_radix(hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .map_or(1, char::len_utf8);
                    raw += 2 + digits;
                    decoded += len;
                }
                b' ' | b'\t' | b'\r' | b'\n' if multi => {
                    // Line-ending backslash: the newline and following whitespace vanish.
                    raw += 1;
                    while raw < bytes.len() && bytes[raw].is_ascii_whitespace() {
                        raw += 1;
                    }
                }
                _ => {
                    raw += 2;
                    decoded += 1;
                }
            }
        }
        (span.start + raw).min(self.text.len())
    }
}

/// An item of the configuration with the index of its file.
#[derive(Debug)]
pub struct Located<T> {
    /// Index into [`LoadedConfig::files`].
    pub file: usize,
    /// The item with its span in that file.
    pub item: Spanned<T>,
}

/// The configuration with its included files merged, in file order.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The main file's settings.
    pub main: ConfigFile,
    /// Every file read; index 0 is the main file.
    pub files: Vec<SourceFile>,
    /// All lists, main file first, then includes in glob order.
    pub lists: Vec<Located<ListConfig>>,
    /// All categories.
    pub categories: Vec<Located<CategoryConfig>>,
    /// All policies, in file order (ties in precedence keep this order).
    pub policies: Vec<Located<PolicyConfig>>,
    /// The index of the file of objects made through the admin API, if there is one: it
    /// comes after every configuration file, so its policies sort after theirs at equal
    /// precedence.
    pub api_file: Option<usize>,
}

impl LoadedConfig {
    /// The main file.
    pub fn main_file(&self) -> &SourceFile {
        &self.files[0]
    }
}

fn parse<T: DeserializeOwned>(file: &SourceFile) -> Result<T, Diagnostic> {
    toml::from_str(&file.text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        file.diag(&span, e.message().trim().to_owned())
    })
}

fn read(path: &Path) -> Result<SourceFile, Diagnostic> {
    std::fs::read_to_string(path)
        .map(|text| SourceFile::new(path, text))
        .map_err(|e| Diagnostic::file(path, format!("cannot read file: {e}")))
}

/// Whether `text` is a policy test file (top-level `config` and `[[case]]`).
fn is_policy_test_file(text: &str) -> bool {
    toml::from_str::<toml::Table>(text)
        .is_ok_and(|t| t.contains_key("case") && t.contains_key("config"))
}

/// Parses the text of a main file alone: its `include` globs are kept in
/// [`ConfigFile::include`] but not followed, so nothing is read from disk (`file.path`
/// names it in diagnostics and anchors relative paths). [`load`] is this plus the includes.
pub fn from_text(file: SourceFile) -> Result<LoadedConfig, Vec<Diagnostic>> {
    let mut main: ConfigFile = parse(&file).map_err(|d| vec![d])?;
    let lists: Vec<_> = main
        .lists
        .drain(..)
        .map(|item| Located { file: 0, item })
        .collect();
    let categories: Vec<_> = main
        .categories
        .drain(..)
        .map(|item| Located { file: 0, item })
        .collect();
    let policies: Vec<_> = main
        .policies
        .drain(..)
        .map(|item| Located { file: 0, item })
        .collect();
    Ok(LoadedConfig {
        main,
        files: vec![file],
        lists,
        categories,
        policies,
        api_file: None,
    })
}

/// Adds the objects the admin API made (lists, categories and policies, kept at `path` in
/// the shape of an included file) after the configuration files; nothing if there is no
/// such file.
pub fn add_api_file(cfg: &mut LoadedConfig, path: &Path) -> Result<(), Vec<Diagnostic>> {
    if !path.exists() {
        return Ok(());
    }
    let file = read(path).map_err(|d| vec![d])?;
    let inc: IncludeFile = parse(&file).map_err(|d| vec![d])?;
    let idx = cfg.files.len();
    fn at<T>(file: usize) -> impl Fn(Spanned<T>) -> Located<T> {
        move |item| Located { file, item }
    }
    cfg.lists.extend(inc.lists.into_iter().map(at(idx)));
    cfg.categories
        .extend(inc.categories.into_iter().map(at(idx)));
    cfg.policies.extend(inc.policies.into_iter().map(at(idx)));
    cfg.files.push(file);
    cfg.api_file = Some(idx);
    Ok(())
}

/// Reads the main file and everything it includes. Reports every problem found.
pub fn load(path: &Path) -> Result<LoadedConfig, Vec<Diagnostic>> {
    let main_file = read(path).map_err(|d| vec![d])?;
    let LoadedConfig {
        main,
        mut files,
        mut lists,
        mut categories,
        mut policies,
        api_file: _,
    } = from_text(main_file)?;
    let mut diags = Vec::new();

    for pattern in &main.include {
        let full = files[0].resolve(pattern.get_ref());
        let paths = match glob::glob(&full.to_string_lossy()) {
            Ok(paths) => paths,
            Err(e) => {
                diags.push(files[0].diag(&pattern.span(), format!("bad include pattern: {e}")));
                continue;
            }
        };
        let mut matched: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
        matched.sort();
        let is_glob = pattern.get_ref().contains(['*', '?', '[']);
        if matched.is_empty() && !is_glob {
            diags.push(files[0].diag(
                &pattern.span(),
                format!("included file {} does not exist", full.display()),
            ));
        }
        for p in matched {
            let file = match read(&p) {
                Ok(f) => f,
                Err(d) => {
                    diags.push(d);
                    continue;
                }
            };
            // Policy test files live beside the policies they test (`dnsgate test`); a
            // glob such as `policies/family/*.toml` finds them too, and they are not
            // configuration.
            if is_glob && is_policy_test_file(&file.text) {
                continue;
            }
            match parse::<IncludeFile>(&file) {
                Ok(inc) => {
                    let idx = files.len();
                    lists.extend(
                        inc.lists
                            .into_iter()
                            .map(|item| Located { file: idx, item }),
                    );
                    categories.extend(
                        inc.categories
                            .into_iter()
                            .map(|item| Located { file: idx, item }),
                    );
                    policies.extend(
                        inc.policies
                            .into_iter()
                            .map(|item| Located { file: idx, item }),
                    );
                    files.push(file);
                }
                Err(d) => diags.push(d),
            }
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(LoadedConfig {
        main,
        files,
        lists,
        categories,
        policies,
        api_file: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn unknown_key_is_reported_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "d.toml", "[server]\nlisten = []\nlissten = 1\n");
        let err = load(&p).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!((err[0].line, err[0].col), (3, 1), "{}", err[0]);
        assert!(err[0].message.contains("unknown field"), "{}", err[0]);
    }

    #[test]
    fn includes_merge_in_glob_order_and_keep_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "d.toml",
            "include = [\"p/*.toml\"]\n[[policies]]\nname = \"main\"\naction = \"allow\"\n",
        );
        write(
            dir.path(),
            "p/b.toml",
            "[[policies]]\nname = \"b\"\naction = \"block\"\n",
        );
        write(
            dir.path(),
            "p/a.toml",
            "[[policies]]\nname = \"a\"\naction = \"block\"\n",
        );
        let c = load(&p).unwrap();
        let names: Vec<_> = c
            .policies
            .iter()
            .map(|p| p.item.get_ref().name.get_ref().as_str())
            .collect();
        assert_eq!(names, ["main", "a", "b"]);
        assert!(c.files[c.policies[1].file].path.ends_with("p/a.toml"));
    }

    #[test]
    fn from_text_reads_no_file() {
        let f = SourceFile::new(
            "/nonexistent/d.toml",
            "include = [\"missing.toml\"]\n[[policies]]\nname = \"p\"\naction = \"allow\"\n",
        );
        let c = from_text(f).unwrap();
        assert_eq!(c.main.include.len(), 1);
        assert_eq!(c.files.len(), 1);
        assert_eq!(c.policies.len(), 1);
    }

    #[test]
    fn error_in_included_file_names_that_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "d.toml", "include = [\"x.toml\"]\n");
        write(
            dir.path(),
            "x.toml",
            "[[policies]]\nname = \"b\"\naction = \"block\"\nbogus = 1\n",
        );
        let err = load(&p).unwrap_err();
        assert!(err[0].path.ends_with("x.toml"));
        assert_eq!(err[0].line, 4);
    }

    #[test]
    fn string_offset_walks_escapes_in_basic_strings() {
        let text = "t = \"dns.fqdn == \\\"a\\\" and \\u00e9 == x\"";
        let f = SourceFile::new("x", text);
        let value = "dns.fqdn == \"a\" and é == x";
        let inner = value.find("== x").unwrap();
        let off = f.string_offset(&(4..text.len()), inner);
        assert_eq!(&text[off..off + 4], "== x");
    }

    #[test]
    fn string_offset_skips_the_quote() {
        let f = SourceFile::new("x", "t = 'abc'\nu = \"\"\"\nxyz\"\"\"");
        assert_eq!(f.string_offset(&(4..9), 1), 6);
        let start = f.text.find("\"\"\"").unwrap();
        assert_eq!(
            &f.text[f.string_offset(&(start..f.text.len()), 0)..][..3],
            "xyz"
        );
    }
}
