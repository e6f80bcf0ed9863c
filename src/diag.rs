//! Diagnostics: every load problem is reported as `path:line:col: message` (SPEC §1, §7).

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found while loading configuration, lists, identities or GeoIP data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at a byte offset of `text` (the contents of `path`).
    pub fn at_offset(path: &Path, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, col) = line_col(text, offset);
        Self {
            path: path.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }

    /// A diagnostic about a whole file (reported at 1:1).
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            line: 1,
            col: 1,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// 1-based line and column of a byte offset (clamped to the text), by a scan from the
/// start: for one position. A file asked for many positions keeps a [`Lines`] instead.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    Lines::new(text).line_col(text, offset)
}

/// Where each line of a text starts, found in one pass. Loading asks for a position per
/// policy, list and diagnostic; scanning from the file's start each time made loading
/// O(items x file size) (11 s for 10,000 policies). With the index a position costs a
/// binary search plus the characters before it on its own line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lines {
    /// Byte offset of the start of each line; the first is 0.
    starts: Vec<usize>,
}

impl Lines {
    /// Indexes `text`.
    pub fn new(text: &str) -> Self {
        note_scanned(text.len());
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    /// 1-based line and column (in characters) of a byte offset of `text`, the text this
    /// index was built from (clamped to it).
    pub fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        // The last line starting at or before `offset`.
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        note_scanned(offset - start);
        let col = text[start..offset].chars().count() + 1;
        (line, col)
    }
}

/// Several diagnostics, as one error.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
thread_local! {
    /// Bytes of text read to turn offsets into positions, on this thread: lets tests check
    /// that positions cost work in proportion to the file, not to the file times its items.
    static SCANNED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts `n` bytes read for positions (tests only).
#[inline]
fn note_scanned(n: usize) {
    #[cfg(test)]
    SCANNED.with(|c| c.set(c.get() + n));
    #[cfg(not(test))]
    let _ = n;
}

/// Bytes read for positions on this thread so far.
#[cfg(test)]
pub(crate) fn scanned() -> usize {
    SCANNED.with(std::cell::Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_agree_with_counting_from_the_start() {
        for text in [
            "",
            "\n",
            "ab\ncdé\nf",
            "x\r\ny\n\n",
            "é\nü\n日本\nz",
            "\n\nend",
        ] {
            let lines = Lines::new(text);
            for offset in 0..text.len() + 3 {
                let mut o = offset.min(text.len());
                while !text.is_char_boundary(o) {
                    o -= 1;
                }
                let before = &text[..o];
                let line = before.matches('\n').count() + 1;
                let start = before.rfind('\n').map_or(0, |i| i + 1);
                let col = text[start..o].chars().count() + 1;
                assert_eq!(
                    lines.line_col(text, offset),
                    (line, col),
                    "{text:?} at {offset}"
                );
            }
        }
    }

    #[test]
    fn line_col_counts_from_one() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 7), (2, 4));
        assert_eq!(line_col(t, 8), (3, 1));
        assert_eq!(line_col(t, 100), (3, 2));
    }
}
