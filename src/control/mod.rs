//! The control plane, apart from the verdict threads.
//!
//! - [`store`]: the one owner of the rule table (validate, persist atomically, swap).
//! - [`Controller`] (this file): every change of the rules — a REST mutation, SIGHUP — arrives
//!   here as a typed [`Command`] (or [`Controller::reload`]) and takes the same path: the store
//!   commits it, then l7mark's nft table is brought in line with the new default mark (which the
//!   nft rules set on packets l7mark does not answer: bypass, fail-open, not-yet-classified).
//!
//! Changes are serialised by the controller's lock, so nft applies happen in version order and
//! the table in the kernel always belongs to the newest committed document (or the last one nft
//! accepted, with the failure reported by `/healthz` and retried on the next change).

pub mod store;

use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::config::Config;
use crate::firewall::{self, FirewallError, Ruleset};
use crate::metrics::Metrics;
use crate::rules::{Problem, RuleDoc, RulesDoc, Table, ValidationErrors};
use store::{RuleStore, Snapshot, StoreError};

/// Where l7mark's nft table is applied. The daemon uses [`Nft`]; tests use a recording fake.
pub trait Firewall: Send + Sync {
    /// Replace l7mark's table with `rules` in one transaction.
    fn apply(&self, rules: &Ruleset) -> Result<(), FirewallError>;
    /// Whether the table named `table` is loaded.
    fn present(&self, table: &str) -> Result<bool, FirewallError>;
}

/// The real firewall: `nft -f -` (see [`crate::firewall`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Nft;

impl Firewall for Nft {
    fn apply(&self, rules: &Ruleset) -> Result<(), FirewallError> {
        firewall::apply(rules)
    }

    fn present(&self, table: &str) -> Result<bool, FirewallError> {
        firewall::table_present(table)
    }
}

/// One change of the rules. Bodies are raw JSON (syntax already checked by the caller) so the
/// validator sees exactly what the client sent — duplicate keys included — and can name the rule
/// and field of every problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Replace the whole document (`PUT /v1/rules`).
    Replace(Vec<u8>),
    /// Append one rule (`POST /v1/rules`); a rule with the same id must not exist.
    Add(Vec<u8>),
    /// Replace rule `id` in place, keeping its position (`PUT /v1/rules/{id}`). The body's `id`
    /// must be `id` or absent.
    Put {
        /// The rule id (from the path).
        id: String,
        /// The rule (JSON object).
        rule: Vec<u8>,
    },
    /// Remove rule `id` (`DELETE /v1/rules/{id}`).
    Delete {
        /// The rule id.
        id: String,
    },
}

/// What happened to l7mark's nft table after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirewallSync {
    /// Nothing to do: `[nft] manage = false`, or the default mark is what the table has.
    Unchanged,
    /// The table was re-rendered and applied for the new default mark.
    Reapplied,
    /// The rules were committed but nft refused the new table: the old default mark stays in the
    /// kernel until a later change or SIGHUP succeeds. `/healthz` reports it.
    Failed(String),
}

/// A committed change: the new snapshot and what happened to the nft table.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The published snapshot.
    pub snapshot: Arc<Snapshot>,
    /// The nft side.
    pub firewall: FirewallSync,
}

/// The state of l7mark's nft table as the controller last left it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallState {
    /// The default mark of the table nft last accepted (None: never applied by the controller).
    pub applied_default_mark: Option<u32>,
    /// The last apply error, cleared by the next successful apply.
    pub last_error: Option<String>,
}

/// The control plane's single entry point for rule changes.
pub struct Controller {
    store: Arc<RuleStore>,
    metrics: Arc<Metrics>,
    cfg: Arc<Config>,
    firewall: Arc<dyn Firewall>,
    /// Serialises changes end to end (commit + nft apply), so nft sees them in version order.
    fw: Mutex<FirewallState>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("rules_file", &self.cfg.rules_file)
            .finish_non_exhaustive()
    }
}

// === impl Controller ===

impl Controller {
    /// A controller over `store`, applying nft through `firewall` when `[nft] manage = true`.
    pub fn new(
        store: Arc<RuleStore>,
        metrics: Arc<Metrics>,
        cfg: Arc<Config>,
        firewall: Arc<dyn Firewall>,
    ) -> Controller {
        Controller {
            store,
            metrics,
            cfg,
            firewall,
            fw: Mutex::new(FirewallState::default()),
        }
    }

    /// The rule store (read side: snapshots).
    pub fn store(&self) -> &Arc<RuleStore> {
        &self.store
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.store.snapshot()
    }

    /// The daemon's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The validated configuration.
    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    /// The firewall the controller applies to (health checks ask it whether the table exists).
    pub fn firewall(&self) -> &Arc<dyn Firewall> {
        &self.firewall
    }

    /// The nft table's state as last applied.
    pub fn firewall_state(&self) -> FirewallState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FirewallState> {
        // A panic while holding the lock leaves a consistent state (plain fields), so carry on.
        self.fw.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply l7mark's nft table for the current default mark (start-up). A no-op with
    /// `[nft] manage = false`.
    pub fn install_firewall(&self) -> Result<(), FirewallError> {
        let mut fw = self.lock();
        if !self.cfg.nft.manage {
            return Ok(());
        }
        let dm = self.store.snapshot().table.default_mark();
        let rs = firewall::ruleset(&self.cfg, firewall::Inputs { default_mark: dm });
        match self.firewall.apply(&rs) {
            Ok(()) => {
                fw.applied_default_mark = Some(dm);
                fw.last_error = None;
                Ok(())
            }
            Err(e) => {
                fw.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Validate, persist and publish one change; then sync the nft table. `if_match` is the
    /// request's `If-Match` header (see [`Snapshot::matches`]). Blocking (file I/O, fsync, nft):
    /// call it off the async executor.
    pub fn execute(&self, if_match: Option<&str>, cmd: Command) -> Result<Committed, StoreError> {
        let mut fw = self.lock();
        let snapshot =
            self.store
                .update_table(if_match, Some(&self.metrics), |cur, opts| match cmd {
                    Command::Replace(body) => Ok(Table::from_json(&body, opts)?),
                    Command::Add(body) => {
                        if let Some(id) = body_id(&body) {
                            if cur.rules.iter().any(|r| r.id == id) {
                                return Err(StoreError::DuplicateRule(id));
                            }
                        }
                        let mut rules = rule_texts(cur)?;
                        rules.push(body);
                        Ok(Table::from_json(&doc_text(cur.default_mark, &rules), opts)?)
                    }
                    Command::Put { id, rule } => {
                        let pos = cur
                            .rules
                            .iter()
                            .position(|r| r.id == id)
                            .ok_or_else(|| StoreError::NoSuchRule(id.clone()))?;
                        let rule = match body_id_field(&rule) {
                            IdField::Absent => with_id(&rule, &id),
                            IdField::Same(ref given) if *given == id => rule,
                            IdField::Same(given) => {
                                return Err(invalid(
                                    &id,
                                    "id",
                                    format!(
                                        "{given:?} does not match the rule addressed by the path \
                                         ({id:?}); leave id out or make them equal (rename = \
                                         DELETE + POST)"
                                    ),
                                ));
                            }
                            // Not an object, or an id of the wrong type: the validator says so.
                            IdField::Other => rule,
                        };
                        let mut rules = rule_texts(cur)?;
                        if let Some(slot) = rules.get_mut(pos) {
                            *slot = rule;
                        }
                        Ok(Table::from_json(&doc_text(cur.default_mark, &rules), opts)?)
                    }
                    Command::Delete { id } => {
                        let mut doc = cur.clone();
                        let before = doc.rules.len();
                        doc.rules.retain(|r| r.id != id);
                        if doc.rules.len() == before {
                            return Err(StoreError::NoSuchRule(id));
                        }
                        Ok(Table::compile(&doc, opts)?)
                    }
                })?;
        let firewall = self.sync_firewall(&mut fw, &snapshot);
        Ok(Committed { snapshot, firewall })
    }

    /// Re-read the rules file (SIGHUP) with the same validation; an invalid file keeps the
    /// current table. Then sync the nft table like any other change.
    pub fn reload(&self) -> Result<Committed, StoreError> {
        let mut fw = self.lock();
        let snapshot = self.store.reload(Some(&self.metrics))?;
        let firewall = self.sync_firewall(&mut fw, &snapshot);
        Ok(Committed { snapshot, firewall })
    }

    /// Bring the nft table in line with `snap`'s default mark. Also retries after an earlier
    /// failure: the comparison is with the last mark nft *accepted*.
    fn sync_firewall(&self, fw: &mut FirewallState, snap: &Snapshot) -> FirewallSync {
        if !self.cfg.nft.manage {
            return FirewallSync::Unchanged;
        }
        let dm = snap.table.default_mark();
        if fw.applied_default_mark == Some(dm) && fw.last_error.is_none() {
            return FirewallSync::Unchanged;
        }
        let rs = firewall::ruleset(&self.cfg, firewall::Inputs { default_mark: dm });
        match self.firewall.apply(&rs) {
            Ok(()) => {
                tracing::info!(
                    default_mark = dm,
                    "nft table re-applied for the new default mark"
                );
                fw.applied_default_mark = Some(dm);
                fw.last_error = None;
                FirewallSync::Reapplied
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(
                    default_mark = dm,
                    error = %msg,
                    "rules committed, but nft refused the table for the new default mark"
                );
                fw.last_error = Some(msg.clone());
                FirewallSync::Failed(msg)
            }
        }
    }
}

fn invalid(rule: &str, field: &str, why: String) -> StoreError {
    StoreError::Invalid(ValidationErrors::from_problems(vec![Problem {
        rule: Some(rule.to_string()),
        field: field.to_string(),
        why,
    }]))
}

/// The `id` of a rule body, if it is an object with a string id.
fn body_id(body: &[u8]) -> Option<String> {
    match body_id_field(body) {
        IdField::Same(id) => Some(id),
        _ => None,
    }
}

enum IdField {
    /// An object without `id`.
    Absent,
    /// An object with a string `id`.
    Same(String),
    /// Anything else (not an object, id not a string).
    Other,
}

fn body_id_field(body: &[u8]) -> IdField {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => match m.get("id") {
            None => IdField::Absent,
            Some(Value::String(s)) => IdField::Same(s.clone()),
            Some(_) => IdField::Other,
        },
        _ => IdField::Other,
    }
}

/// `body` (a JSON object without `id`) with `"id": id` added in front. Done on the text, not a
/// parsed value, so duplicate keys in the body still reach the validator.
fn with_id(body: &[u8], id: &str) -> Vec<u8> {
    let id_json = serde_json::Value::String(id.to_string()).to_string();
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    let Some(open) = start.filter(|&i| body.get(i) == Some(&b'{')) else {
        return body.to_vec();
    };
    let rest = body.get(open + 1..).unwrap_or_default();
    let empty = rest
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'}');
    let mut out = Vec::with_capacity(body.len() + id_json.len() + 8);
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id_json.as_bytes());
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    out
}

/// Each rule of `doc` as compact JSON.
fn rule_texts(doc: &RulesDoc) -> Result<Vec<Vec<u8>>, StoreError> {
    doc.rules
        .iter()
        .map(|r: &RuleDoc| {
            serde_json::to_vec(r).map_err(|e| {
                // Plain structs of strings and numbers always serialize; report rather than panic.
                invalid(&r.id, "document", format!("cannot serialize the rule: {e}"))
            })
        })
        .collect()
}

/// A document's JSON text from its default mark and rule texts.
fn doc_text(default_mark: u32, rules: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("{{\"default_mark\":{default_mark},\"rules\":[").into_bytes();
    for (i, r) in rules.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r);
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::rules::ValidateOptions;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Records applies; fails when told to.
    #[derive(Default)]
    struct FakeFw {
        applied: Mutex<Vec<String>>,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Firewall for FakeFw {
        fn apply(&self, rules: &Ruleset) -> Result<(), FirewallError> {
            if self.fail.load(Ordering::Relaxed) {
                return Err(FirewallError::Rejected("nope".into()));
            }
            self.applied.lock().unwrap().push(rules.render());
            Ok(())
        }
        fn present(&self, _: &str) -> Result<bool, FirewallError> {
            Ok(true)
        }
    }

    fn tempdir() -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "l7mark-control-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Removes the test's directory (kept when the test fails, for a look).
    struct Cleanup(PathBuf);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn setup(manage: bool) -> (Controller, Arc<FakeFw>, PathBuf, Cleanup) {
        let dir = tempdir();
        let rules = dir.join("rules.json");
        std::fs::write(
            &rules,
            r#"{"default_mark": 100, "rules": [{"id": "a", "icp": true, "mark": 110},
                {"id": "b", "icp": true, "host": "b.example", "mark": 111}]}"#,
        )
        .unwrap();
        let cfg = Config::from_toml(&format!(
            "rules_file = {:?}\n[[service]]\nname = \"icp\"\nvip = \"10.0.0.1\"\nport = 3130\n\
             proto = \"icp\"\nforwarding = \"dr\"\n[nft]\nmanage = {manage}\n",
            rules.display().to_string()
        ))
        .unwrap();
        let store = RuleStore::open(
            &rules,
            ValidateOptions {
                mark_range: Some(cfg.mark_range.clone()),
            },
        )
        .unwrap();
        let fw = Arc::new(FakeFw::default());
        let c = Controller::new(
            Arc::new(store),
            Arc::new(Metrics::default()),
            Arc::new(cfg),
            fw.clone(),
        );
        (c, fw, rules, Cleanup(dir))
    }

    fn ids(c: &Controller) -> Vec<String> {
        c.snapshot().table.rule_ids().to_vec()
    }

    #[test]
    fn add_put_delete_keep_order_and_persist() {
        let (c, _, path, _dir) = setup(false);
        c.execute(
            None,
            Command::Add(br#"{"id":"c","icp":true,"mark":112}"#.to_vec()),
        )
        .unwrap();
        assert_eq!(ids(&c), ["a", "b", "c"]);
        c.execute(
            None,
            Command::Put {
                id: "a".into(),
                rule: br#" { "icp": true, "host": "x.example", "mark": 113 } "#.to_vec(),
            },
        )
        .unwrap();
        assert_eq!(ids(&c), ["a", "b", "c"]);
        assert_eq!(c.snapshot().table.doc().rules[0].mark, Some(113));
        c.execute(None, Command::Delete { id: "b".into() }).unwrap();
        assert_eq!(ids(&c), ["a", "c"]);
        let on_disk = RulesDoc::from_json(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(&on_disk, c.snapshot().table.doc());
    }

    #[test]
    fn refusals_change_nothing() {
        let (c, _, path, _dir) = setup(false);
        let before = std::fs::read(&path).unwrap();
        let v = c.snapshot().version;
        let dup = c.execute(
            None,
            Command::Add(br#"{"id":"a","icp":true,"mark":1}"#.to_vec()),
        );
        assert!(matches!(dup, Err(StoreError::DuplicateRule(id)) if id == "a"));
        let missing = c.execute(None, Command::Delete { id: "zz".into() });
        assert!(matches!(missing, Err(StoreError::NoSuchRule(_))));
        let rename = c.execute(
            None,
            Command::Put {
                id: "a".into(),
                rule: br#"{"id":"other","icp":true,"mark":110}"#.to_vec(),
            },
        );
        let Err(StoreError::Invalid(e)) = rename else {
            panic!("{rename:?}")
        };
        assert!(e.to_string().starts_with("rule a: id: "), "{e}");
        let dup_key = c.execute(
            None,
            Command::Put {
                id: "a".into(),
                rule: br#"{"icp":true,"mark":110,"mark":111}"#.to_vec(),
            },
        );
        assert!(
            matches!(dup_key, Err(StoreError::Invalid(_))),
            "{dup_key:?}"
        );
        let stale = c.execute(Some("\"0-0\""), Command::Delete { id: "a".into() });
        assert!(matches!(stale, Err(StoreError::Stale { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(c.snapshot().version, v);
    }

    #[test]
    fn with_id_handles_empty_and_spaced_objects() {
        assert_eq!(with_id(b"{}", "x"), br#"{"id":"x"}"#);
        assert_eq!(with_id(b"  { } ", "x"), br#"{"id":"x" } "#);
        assert_eq!(with_id(br#"{"a":1}"#, "x"), br#"{"id":"x","a":1}"#);
        assert_eq!(with_id(b"[1]", "x"), b"[1]");
    }

    #[test]
    fn default_mark_change_reapplies_nft_and_failures_are_retried() {
        let (c, fw, _, _dir) = setup(true);
        c.install_firewall().unwrap();
        assert_eq!(fw.applied.lock().unwrap().len(), 1);
        // Same default mark: no nft work.
        let r = c.execute(None, Command::Delete { id: "b".into() }).unwrap();
        assert_eq!(r.firewall, FirewallSync::Unchanged);
        assert_eq!(fw.applied.lock().unwrap().len(), 1);
        // New default mark: re-applied, and the rendered table carries it.
        let r = c
            .execute(
                None,
                Command::Replace(br#"{"default_mark": 120, "rules": []}"#.to_vec()),
            )
            .unwrap();
        assert_eq!(r.firewall, FirewallSync::Reapplied);
        assert!(fw.applied.lock().unwrap()[1].contains("120"));
        // nft refuses: committed anyway, reported, and retried by the next change.
        fw.fail.store(true, Ordering::Relaxed);
        let r = c
            .execute(
                None,
                Command::Replace(br#"{"default_mark": 130, "rules": []}"#.to_vec()),
            )
            .unwrap();
        assert!(matches!(r.firewall, FirewallSync::Failed(_)));
        assert_eq!(c.snapshot().table.default_mark(), 130);
        assert!(c.firewall_state().last_error.is_some());
        fw.fail.store(false, Ordering::Relaxed);
        let r = c.reload().unwrap();
        assert_eq!(r.firewall, FirewallSync::Reapplied);
        assert_eq!(c.firewall_state().applied_default_mark, Some(130));
        assert_eq!(c.firewall_state().last_error, None);
    }

    #[test]
    fn unmanaged_nft_is_never_touched() {
        let (c, fw, _, _dir) = setup(false);
        c.install_firewall().unwrap();
        c.execute(
            None,
            Command::Replace(br#"{"default_mark": 120, "rules": []}"#.to_vec()),
        )
        .unwrap();
        assert!(fw.applied.lock().unwrap().is_empty());
    }

    #[test]
    fn reload_of_a_bad_file_keeps_the_table() {
        let (c, _, path, _dir) = setup(false);
        let v = c.snapshot().version;
        std::fs::write(&path, b"{\"default_mark\": 0}").unwrap();
        assert!(matches!(c.reload(), Err(StoreError::Invalid(_))));
        assert_eq!(c.snapshot().version, v);
        assert_eq!(ids(&c), ["a", "b"]);
    }

    #[test]
    fn concurrent_conditional_changes_exactly_one_wins() {
        let (c, _, _, _dir) = setup(false);
        let c = Arc::new(c);
        let tag = c.snapshot().etag();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let c = Arc::clone(&c);
                let tag = tag.clone();
                std::thread::spawn(move || {
                    c.execute(
                        Some(&tag),
                        Command::Replace(
                            format!(r#"{{"default_mark": {}, "rules": []}}"#, 100 + i).into_bytes(),
                        ),
                    )
                    .is_ok()
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&ok| ok)
            .count();
        assert_eq!(wins, 1);
    }
}
