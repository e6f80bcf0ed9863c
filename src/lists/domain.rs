//! [`DomainList`]: a set of DNS names with adblock-style exceptions, built for
//! million-entry lists.
//!
//! # Layout
//! A `HashSet<Box<str>>` spends a 16-byte fat pointer plus a separate heap block (with
//! allocator overhead) on every name. Here all names live back to back in one byte arena,
//! each record `[flags, len, name bytes...]`, and the hash table holds only the record's
//! 4-byte offset. Hashes are not stored: hashbrown keeps a 7-bit tag per slot, so a probe
//! touches the arena only for a likely match, and a resize (which is avoided by reserving
//! from the line count) recomputes hashes from the arena.
//!
//! # Matching
//! Blocks and exceptions share one table: a name that is both carries both flag bits. A
//! suffix match therefore costs one hash and one probe per label of the query name
//! (`a.b.com`, `b.com`, `com`), whatever the list's size. An exception on the name or any
//! parent wins over a block (SPEC §3: `@@` takes names back out).

use std::fmt;
use std::hash::{BuildHasher, Hasher};

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use super::name::{NameError, normalize, suffixes};

/// Flag bit: the name is blocked (with its subdomains, for suffix matching).
pub(crate) const BLOCK: u8 = 1;
/// Flag bit: the name is an `@@` exception (with its subdomains).
pub(crate) const EXCEPT: u8 = 2;

/// A domain list with adblock-style exceptions. Names are stored normalised (ASCII
/// lowercase, no trailing dot); lookups expect the same spelling.
#[derive(Default, Clone)]
pub struct DomainList {
    /// Records `[flags, len, name...]`, back to back.
    arena: Vec<u8>,
    /// Offsets of records in `arena`, hashed by name bytes.
    table: HashTable<u32>,
    state: RandomState,
    blocks: usize,
    exceptions: usize,
}

impl fmt::Debug for DomainList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainList")
            .field("blocks", &self.blocks)
            .field("exceptions", &self.exceptions)
            .field("heap_bytes", &self.heap_bytes())
            .finish_non_exhaustive()
    }
}

/// `v` with no spare capacity; when it spans several 2 MiB pages, copied into memory the
/// kernel is asked (`MADV_HUGEPAGE`, honoured when transparent huge pages are `always` or
/// `madvise`) to back with huge pages before it is touched. A million names are ~30 MB:
/// in 4 KiB pages nearly every lookup of a name not seen lately misses the TLB on the way
/// to its record; in 2 MiB pages the whole arena fits the TLB.
fn huge_copy(v: Vec<u8>) -> Vec<u8> {
    const HUGE: usize = 2 << 20;
    if v.len() < 4 * HUGE {
        let mut v = v;
        v.shrink_to_fit();
        return v;
    }
    let mut out = Vec::with_capacity(v.len());
    #[cfg(target_os = "linux")]
    {
        let start = (out.as_ptr() as usize).next_multiple_of(HUGE);
        let end = (out.as_ptr() as usize + out.capacity()) / HUGE * HUGE;
        if end > start {
            // SAFETY: [start, end) lies inside `out`'s allocation; MADV_HUGEPAGE changes
            // only how the kernel backs those pages, never their contents or validity.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    out.extend_from_slice(&v);
    out
}

/// The name bytes of the record at `offset`.
fn name_at(arena: &[u8], offset: u32) -> &[u8] {
    let start = offset as usize;
    let len = arena.get(start + 1).map_or(0, |&l| usize::from(l));
    arena.get(start + 2..start + 2 + len).unwrap_or_default()
}

fn hash_bytes(state: &RandomState, bytes: &[u8]) -> u64 {
    let mut hasher = state.build_hasher();
    hasher.write(bytes);
    hasher.finish()
}

impl DomainList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list with room for `names` names totalling about `name_bytes` bytes, so
    /// loading does not rehash or copy.
    pub fn with_capacity(names: usize, name_bytes: usize) -> Self {
        Self {
            arena: Vec::with_capacity(name_bytes + 2 * names),
            table: HashTable::with_capacity(names),
            ..Self::default()
        }
    }

    /// Blocks `name` and its subdomains. The name is normalised (lowercase, no trailing
    /// dot, leading `*.` dropped) and validated; returns whether it was not blocked yet.
    ///
    /// # Errors
    /// [`NameError`] when `name` is not a usable DNS name.
    pub fn insert_block(&mut self, name: &str) -> Result<bool, NameError> {
        let mut buf = String::new();
        let name = normalize(name, &mut buf)?;
        self.insert_normalized(name, BLOCK)
    }

    /// Adds an exception for `name` and its subdomains, as an adblock `@@||name^` does;
    /// returns whether it was not excepted yet.
    ///
    /// # Errors
    /// [`NameError`] when `name` is not a usable DNS name.
    pub fn insert_exception(&mut self, name: &str) -> Result<bool, NameError> {
        let mut buf = String::new();
        let name = normalize(name, &mut buf)?;
        self.insert_normalized(name, EXCEPT)
    }

    /// Adds an already normalised name with `flag` ([`BLOCK`] or [`EXCEPT`]); returns
    /// whether the flag is new for the name.
    pub(crate) fn insert_normalized(&mut self, name: &str, flag: u8) -> Result<bool, NameError> {
        let bytes = name.as_bytes();
        let len = u8::try_from(bytes.len()).map_err(|_| NameError::TooLong)?;
        let hash = hash_bytes(&self.state, bytes);
        let (arena, state) = (&self.arena, &self.state);
        let entry = self.table.entry(
            hash,
            |&offset| name_at(arena, offset) == bytes,
            |&offset| hash_bytes(state, name_at(arena, offset)),
        );
        let added = match entry {
            Entry::Occupied(occupied) => {
                let Some(flags) = self.arena.get_mut(*occupied.get() as usize) else {
                    return Ok(false);
                };
                let added = *flags & flag == 0;
                *flags |= flag;
                added
            }
            Entry::Vacant(vacant) => {
                let offset = u32::try_from(self.arena.len()).map_err(|_| NameError::TooLarge)?;
                self.arena.extend_from_slice(&[flag, len]);
                self.arena.extend_from_slice(bytes);
                vacant.insert(offset);
                true
            }
        };
        if added {
            if flag == BLOCK {
                self.blocks += 1;
            } else {
                self.exceptions += 1;
            }
        }
        Ok(added)
    }

    /// The flags of `name` (0 when absent): one hash, one probe.
    fn flags(&self, name: &[u8]) -> u8 {
        let hash = hash_bytes(&self.state, name);
        self.table
            .find(hash, |&offset| name_at(&self.arena, offset) == name)
            .and_then(|&offset| self.arena.get(offset as usize).copied())
            .unwrap_or(0)
    }

    /// `name` (lowercase, no trailing dot) is listed itself and not excepted, nor is any
    /// parent excepted. This is `dns.fqdn in $list` (SPEC §3).
    pub fn matches_exact(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
        let flags = self.flags(name);
        if flags & BLOCK == 0 || flags & EXCEPT != 0 {
            return false;
        }
        self.exceptions == 0
            || suffixes(name)
                .skip(1)
                .all(|parent| self.flags(parent) & EXCEPT == 0)
    }

    /// `name` or one of its parents is listed, and neither it nor a parent is excepted.
    /// This is `any(dns.domains[*] in $list)` (SPEC §3): one probe per label.
    pub fn matches_suffix(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
        let mut blocked = false;
        for suffix in suffixes(name) {
            let flags = self.flags(suffix);
            if flags & EXCEPT != 0 {
                return false;
            }
            if flags & BLOCK != 0 {
                if self.exceptions == 0 {
                    return true;
                }
                blocked = true;
            }
        }
        blocked
    }

    /// Number of blocked names.
    pub fn len(&self) -> usize {
        self.blocks
    }

    /// Whether no name is blocked.
    pub fn is_empty(&self) -> bool {
        self.blocks == 0
    }

    /// Number of excepted names.
    pub fn exceptions_len(&self) -> usize {
        self.exceptions
    }

    /// Blocked names, in insertion order.
    pub fn blocked(&self) -> impl Iterator<Item = &str> {
        self.records()
            .filter(|&(flags, _)| flags & BLOCK != 0)
            .map(|(_, name)| name)
    }

    /// Excepted names, in insertion order.
    pub fn exceptions(&self) -> impl Iterator<Item = &str> {
        self.records()
            .filter(|&(flags, _)| flags & EXCEPT != 0)
            .map(|(_, name)| name)
    }

    fn records(&self) -> impl Iterator<Item = (u8, &str)> {
        let mut rest = self.arena.as_slice();
        std::iter::from_fn(move || {
            let (&[flags, len], tail) = rest.split_first_chunk::<2>()?;
            let (name, tail) = tail.split_at_checked(usize::from(len))?;
            rest = tail;
            // Names were validated as ASCII on insert.
            Some((flags, std::str::from_utf8(name).unwrap_or_default()))
        })
    }

    /// Releases spare capacity left by a generous reservation; a large arena moves to
    /// memory backed by huge pages where the system allows them.
    pub fn shrink_to_fit(&mut self) {
        self.arena = huge_copy(std::mem::take(&mut self.arena));
        let (arena, state) = (&self.arena, &self.state);
        self.table
            .shrink_to_fit(|&offset| hash_bytes(state, name_at(arena, offset)));
    }

    /// Heap memory held, in bytes (arena plus table).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.table.allocation_size()
    }
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy;

    use super::*;

    fn list(blocks: &[&str], exceptions: &[&str]) -> DomainList {
        let mut list = DomainList::new();
        for name in blocks {
            assert_eq!(list.insert_block(name), Ok(true), "{name}");
        }
        for name in exceptions {
            assert_eq!(list.insert_exception(name), Ok(true), "{name}");
        }
        list
    }

    #[test]
    fn suffix_match_covers_subdomains_but_not_siblings() {
        let list = list(&["example.com"], &[]);
        assert!(list.matches_suffix("example.com"));
        assert!(list.matches_suffix("a.b.example.com"));
        assert!(!list.matches_suffix("notexample.com"));
        assert!(!list.matches_suffix("com"));
        assert!(!list.matches_suffix(""));
    }

    #[test]
    fn exact_match_ignores_subdomains() {
        let list = list(&["example.com"], &[]);
        assert!(list.matches_exact("example.com"));
        assert!(list.matches_exact("example.com."));
        assert!(!list.matches_exact("www.example.com"));
    }

    #[test]
    fn exception_takes_subdomain_back() {
        let list = list(&["example.com"], &["safe.example.com"]);
        assert!(list.matches_suffix("example.com"));
        assert!(list.matches_suffix("ads.example.com"));
        assert!(!list.matches_suffix("safe.example.com"));
        assert!(!list.matches_suffix("cdn.safe.example.com"));
        assert!(!list.matches_exact("safe.example.com"));
    }

    #[test]
    fn exception_on_parent_beats_block_on_child() {
        let list = list(&["ads.example.com"], &["example.com"]);
        assert!(!list.matches_suffix("ads.example.com"));
        assert!(!list.matches_exact("ads.example.com"));
    }

    #[test]
    fn name_both_blocked_and_excepted_is_not_matched() {
        let list = list(&["example.com"], &["example.com"]);
        assert_eq!((list.len(), list.exceptions_len()), (1, 1));
        assert!(!list.matches_suffix("example.com"));
        assert!(!list.matches_exact("example.com"));
    }

    #[test]
    fn duplicates_are_stored_once() {
        let mut list = list(&["example.com"], &[]);
        assert_eq!(list.insert_block("EXAMPLE.com."), Ok(false));
        assert_eq!(list.insert_block("*.example.com"), Ok(false));
        assert_eq!(list.len(), 1);
        assert_eq!(list.blocked().collect::<Vec<_>>(), ["example.com"]);
    }

    #[test]
    fn invalid_names_are_refused() {
        let mut list = DomainList::new();
        assert_eq!(list.insert_block("1.2.3.4"), Err(NameError::IpAddress));
        assert!(list.is_empty());
    }

    /// Names over a tiny alphabet, so blocks, exceptions and queries nest and collide.
    fn small_name() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::collection::vec("[ab]", 1..4).prop_map(|labels| labels.join("."))
    }

    proptest::proptest! {
        #[test]
        fn matching_agrees_with_a_naive_model(
            blocks in proptest::collection::vec(small_name(), 0..8),
            exceptions in proptest::collection::vec(small_name(), 0..3),
            queries in proptest::collection::vec(small_name(), 1..16),
        ) {
            let mut list = DomainList::new();
            for name in &blocks {
                list.insert_block(name).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            }
            for name in &exceptions {
                list.insert_exception(name).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            }
            for query in &queries {
                let parents: Vec<&[u8]> = suffixes(query.as_bytes()).collect();
                let listed = |set: &[String], name: &[u8]| set.iter().any(|s| s.as_bytes() == name);
                let excepted = parents.iter().any(|p| listed(&exceptions, p));
                let exact = listed(&blocks, query.as_bytes()) && !excepted;
                let suffix = parents.iter().any(|p| listed(&blocks, p)) && !excepted;
                proptest::prop_assert_eq!(list.matches_exact(query), exact, "exact {}", query);
                proptest::prop_assert_eq!(list.matches_suffix(query), suffix, "suffix {}", query);
            }
        }
    }

    #[test]
    fn synthetic_200k_list_matches_every_name_and_nothing_else() {
        let mut list = DomainList::with_capacity(200_000, 200_000 * 24);
        for i in 0..200_000u32 {
            let name = format!("host{i}.zone{}.example{}.net", i % 977, i % 13);
            assert_eq!(list.insert_normalized(&name, BLOCK), Ok(true));
        }
        list.shrink_to_fit();
        assert_eq!(list.len(), 200_000);
        for i in (0..200_000u32).step_by(7) {
            let name = format!("host{i}.zone{}.example{}.net", i % 977, i % 13);
            assert!(list.matches_exact(&name), "{name}");
            assert!(list.matches_suffix(&format!("www.{name}")), "{name}");
            let other = format!("host{}.zone{}.example{}.net", i + 200_000, i % 977, i % 13);
            assert!(!list.matches_suffix(&other), "{other}");
        }
        assert!(!list.matches_suffix("example1.net"));
        assert_eq!(list.blocked().count(), 200_000);
    }
}
