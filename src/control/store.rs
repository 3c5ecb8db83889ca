//! The one owner of the rule table.
//!
//! Verdict threads read the current [`Snapshot`] lock-free (`ArcSwap::load`), one load per packet.
//! Every change — a REST mutation, SIGHUP, start-up — goes through [`RuleStore::update`], which
//! holds the writer lock, validates the whole new document, writes it to the rules file atomically
//! (temp file, fsync, rename, fsync of the directory) and only then publishes the new snapshot with
//! a single pointer swap. A packet therefore sees either the old table or the new one, never a
//! mix, and a crash at any point leaves either the old or the new file on disk.

use std::collections::HashMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::metrics::Metrics;
use crate::rules::{RulesDoc, Table, ValidateOptions, ValidationErrors};

/// A published rule table with its version and per-rule hit counters.
#[derive(Debug)]
pub struct Snapshot {
    /// The compiled table.
    pub table: Table,
    /// Monotonic version within this process (starts at 1).
    pub version: u64,
    /// Hash of the document (stable across restarts for the same document).
    pub digest: u64,
    /// Hits per rule, index = rule index. Counters of a rule id survive table swaps.
    pub hits: Vec<Arc<AtomicU64>>,
    /// When this version was published (the last swap time in metrics and health).
    pub published_at: SystemTime,
}

impl Snapshot {
    /// The entity tag of this version: `"<version>-<digest>"`. The digest part makes a tag from
    /// before a restart fail `If-Match` unless the document is the same.
    pub fn etag(&self) -> String {
        format!("\"{}-{:016x}\"", self.version, self.digest)
    }

    /// Whether an `If-Match` header value names this version: `*`, or a comma-separated list of
    /// entity tags one of which is [`Snapshot::etag`] (strong comparison, RFC 9110 §13.1.1: a
    /// weak tag `W/"…"` never matches).
    pub fn matches(&self, if_match: &str) -> bool {
        let current = self.etag();
        if_match
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag == current)
    }
}

/// Why a change was refused. Nothing was changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The new document has problems (all listed).
    #[error("the rules document is invalid:\n{0}")]
    Invalid(#[from] ValidationErrors),
    /// `If-Match` named another version.
    #[error("the rules changed meanwhile: current version is {current}")]
    Stale {
        /// The current entity tag.
        current: String,
    },
    /// A rule id that does not exist.
    #[error("no rule with id {0:?}")]
    NoSuchRule(String),
    /// A rule id that already exists.
    #[error("a rule with id {0:?} exists already")]
    DuplicateRule(String),
    /// The rules file could not be read or written.
    #[error("rules file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

struct Writer {
    /// Hit counters by rule id, reused across swaps so counters stay monotonic.
    hits: HashMap<String, Arc<AtomicU64>>,
    next_version: u64,
}

/// The rule store: current snapshot, rules file, validation options.
pub struct RuleStore {
    current: ArcSwap<Snapshot>,
    path: PathBuf,
    opts: ValidateOptions,
    writer: Mutex<Writer>,
}

fn digest(doc: &RulesDoc) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.to_json_pretty().hash(&mut h);
    h.finish()
}

impl RuleStore {
    /// Load and validate the rules file; nothing is published if it is invalid.
    pub fn open(path: &Path, opts: ValidateOptions) -> Result<RuleStore, StoreError> {
        remove_stale_temp_files(path);
        let doc = read_doc(path)?;
        let table = Table::compile(&doc, &opts)?;
        let mut w = Writer {
            hits: HashMap::new(),
            next_version: 1,
        };
        let snap = publishable(&mut w, table, &doc);
        Ok(RuleStore {
            current: ArcSwap::from_pointee(snap),
            path: path.to_path_buf(),
            opts,
            writer: Mutex::new(w),
        })
    }

    /// The current snapshot (a cheap `Arc` clone).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The snapshot guard for the packet path (no refcount traffic).
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The validation options (mark range).
    pub fn options(&self) -> &ValidateOptions {
        &self.opts
    }

    /// Apply `change` to the current document and commit the result: validate in full, persist
    /// atomically, publish. `if_match` is an `If-Match` value the current version must match
    /// (see [`Snapshot::matches`]).
    pub fn update(
        &self,
        if_match: Option<&str>,
        metrics: Option<&Metrics>,
        change: impl FnOnce(&RulesDoc) -> Result<RulesDoc, StoreError>,
    ) -> Result<Arc<Snapshot>, StoreError> {
        self.update_table(if_match, metrics, |cur, opts| {
            let doc = change(cur)?;
            Ok(Table::compile(&doc, opts)?)
        })
    }

    /// Like [`RuleStore::update`], for a change that compiles the new table itself (e.g. with
    /// [`Table::from_json`], which lists problems of shape and values together). The table's
    /// [`Table::doc`] is what gets persisted.
    pub fn update_table(
        &self,
        if_match: Option<&str>,
        metrics: Option<&Metrics>,
        change: impl FnOnce(&RulesDoc, &ValidateOptions) -> Result<Table, StoreError>,
    ) -> Result<Arc<Snapshot>, StoreError> {
        let started = Instant::now();
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.current.load_full();
        if let Some(tag) = if_match {
            if !cur.matches(tag) {
                return Err(StoreError::Stale {
                    current: cur.etag(),
                });
            }
        }
        let table = change(cur.table.doc(), &self.opts)?;
        let doc = table.doc().clone();
        write_atomically(&self.path, doc.to_json_pretty().as_bytes()).map_err(|source| {
            StoreError::Io {
                path: self.path.clone(),
                source,
            }
        })?;
        let snap = Arc::new(publishable(&mut w, table, &doc));
        self.current.store(Arc::clone(&snap));
        if let Some(m) = metrics {
            m.table_swaps.fetch_add(1, Relaxed);
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            m.last_swap_us.store(us, Relaxed);
        }
        Ok(snap)
    }

    /// Re-read the rules file (SIGHUP). An invalid file keeps the current table.
    pub fn reload(&self, metrics: Option<&Metrics>) -> Result<Arc<Snapshot>, StoreError> {
        let started = Instant::now();
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let doc = read_doc(&self.path)?;
        let table = Table::compile(&doc, &self.opts)?;
        let snap = Arc::new(publishable(&mut w, table, &doc));
        self.current.store(Arc::clone(&snap));
        if let Some(m) = metrics {
            m.table_swaps.fetch_add(1, Relaxed);
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            m.last_swap_us.store(us, Relaxed);
        }
        Ok(snap)
    }
}

fn publishable(w: &mut Writer, table: Table, doc: &RulesDoc) -> Snapshot {
    let hits: Vec<Arc<AtomicU64>> = table
        .rule_ids()
        .iter()
        .map(|id| Arc::clone(w.hits.entry(id.clone()).or_default()))
        .collect();
    // Forget counters of rules that no longer exist.
    let live: std::collections::HashSet<&String> = table.rule_ids().iter().collect();
    w.hits.retain(|id, _| live.contains(id));
    let version = w.next_version;
    w.next_version += 1;
    Snapshot {
        digest: digest(doc),
        table,
        version,
        hits,
        published_at: SystemTime::now(),
    }
}

fn read_doc(path: &Path) -> Result<RulesDoc, StoreError> {
    let bytes = fs::read(path).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(RulesDoc::from_json(&bytes)?)
}

/// The directory and temp-file prefix [`write_atomically`] uses for `path`.
fn temp_parts(path: &Path) -> (PathBuf, String) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rules.json".into());
    (dir, format!(".{name}.tmp."))
}

/// Remove temp files a killed process left half-written next to `path` (a crash between
/// create and rename leaves one; it is never read, but they would pile up). Best effort.
fn remove_stale_temp_files(path: &Path) {
    let (dir, prefix) = temp_parts(path);
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            tracing::info!(file = %e.path().display(), "removing a temp file left by a crash");
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Write `bytes` to `path` so that a crash leaves either the old or the new file: a temp file in
/// the same directory, fsync, rename over the target (atomic on POSIX), fsync of the directory so
/// the rename itself is durable.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (dir, prefix) = temp_parts(path);
    let tmp = dir.join(format!("{prefix}{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn open_removes_temp_files_left_by_a_crash() {
        let dir = std::env::temp_dir().join(format!("l7mark-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rules.json");
        fs::write(&path, br#"{"default_mark": 1}"#).unwrap();
        fs::write(dir.join(".rules.json.tmp.12345"), b"{\"default_m").unwrap();
        fs::write(dir.join("other.json"), b"keep").unwrap();
        let store = RuleStore::open(&path, ValidateOptions::default()).unwrap();
        assert_eq!(store.snapshot().table.default_mark(), 1);
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["other.json", "rules.json"]);
        // Etags: a list, `*`, and weak tags (never match).
        let tag = store.snapshot().etag();
        let snap = store.snapshot();
        assert!(snap.matches(&tag));
        assert!(snap.matches("*"));
        assert!(snap.matches(&format!("\"0-0\", {tag}")));
        assert!(!snap.matches(&format!("W/{tag}")));
        assert!(!snap.matches("\"0-0\""));
        fs::remove_dir_all(&dir).unwrap();
    }
}
