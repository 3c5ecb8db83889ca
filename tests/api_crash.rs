//! A crash (SIGKILL) during a `PUT /v1/rules` leaves either the old or the new document in the
//! rules file, never a broken one, and never loses an acknowledged change; a restart serves
//! what the file holds.
//!
//! The real daemon runs (one ICP service, nft unmanaged, queues in a free high range: NFQUEUE
//! binding needs root, which this suite has). A writer thread PUTs large documents back to back
//! while the main thread SIGKILLs the daemon at random moments.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use l7mark::rules::RulesDoc;

/// Rules per document: large enough (≈ 250 kB pretty-printed) that a write takes a while and
/// a kill often lands inside one.
const RULES_PER_DOC: usize = 1500;
/// Kill/restart rounds.
const ROUNDS: usize = 8;

/// Generation `g`'s document: every rule id and host carries `g`, so any two differ.
fn doc(g: u64) -> String {
    let rules: Vec<String> = (0..RULES_PER_DOC)
        .map(|i| {
            format!(
                r#"{{"id":"g{g}-r{i}","icp":true,"host":"h{i}.g{g}.example","path_prefix":"/p{i}/","mark":{}}}"#,
                100 + (i % 50)
            )
        })
        .collect();
    format!(
        r#"{{"default_mark":{},"rules":[{}]}}"#,
        100 + g % 50,
        rules.join(",")
    )
}

struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_during_put_leaves_old_or_new_never_partial() {
    let seed = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
    ) | 1;
    eprintln!("seed {seed}");
    let mut rng = Xorshift(seed);

    // Generation 0 is the original file.
    let setup = common::Setup::new("crash", &doc(0));
    let mut known: HashMap<u64, RulesDoc> = HashMap::new();
    known.insert(0, RulesDoc::from_json(doc(0).as_bytes()).unwrap());
    let mut next_gen = 1u64;
    let mut on_disk_gen = 0u64;
    let mut kills_mid_request = 0;

    for round in 0..ROUNDS {
        let daemon = setup.start();
        // What the daemon serves after the restart is what the file held.
        let r = common::http(setup.addr, "GET", "/v1/rules", None).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            RulesDoc::from_json(&r.body).unwrap(),
            known[&on_disk_gen],
            "round {round}: the restarted daemon does not serve the file's document"
        );

        let stop = Arc::new(AtomicBool::new(false));
        // (generation, acknowledged) of every PUT sent this round.
        let sent: Arc<Mutex<Vec<(u64, bool)>>> = Arc::default();
        let first = next_gen;
        let writer = {
            let (stop, sent, addr) = (Arc::clone(&stop), Arc::clone(&sent), setup.addr);
            std::thread::spawn(move || {
                let mut g = first;
                while !stop.load(Ordering::Relaxed) {
                    let body = doc(g);
                    sent.lock().unwrap().push((g, false));
                    match common::http(addr, "PUT", "/v1/rules", Some((body.as_bytes(), &[]))) {
                        Ok(r) => {
                            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                            sent.lock().unwrap().last_mut().unwrap().1 = true;
                        }
                        // The daemon died: connection refused, reset, or a cut-short response.
                        Err(_) => break,
                    }
                    g += 1;
                }
                g
            })
        };
        // Let some PUTs complete, then kill at a random moment.
        std::thread::sleep(Duration::from_millis(100 + rng.next() % 900));
        daemon.kill9();
        stop.store(true, Ordering::Relaxed);
        next_gen = writer.join().unwrap() + 1;

        let sent = sent.lock().unwrap().clone();
        for (g, _) in &sent {
            known.insert(*g, RulesDoc::from_json(doc(*g).as_bytes()).unwrap());
        }
        let last_acked = sent
            .iter()
            .filter(|(_, ok)| *ok)
            .map(|(g, _)| *g)
            .max()
            .unwrap_or(on_disk_gen);
        let last_sent = sent.last().map_or(on_disk_gen, |(g, _)| *g);
        if sent.last().is_some_and(|(_, ok)| !ok) {
            kills_mid_request += 1;
        }

        // The file parses, and is one of the documents: the last acknowledged one or the one in
        // flight when the kill came — never older than an acknowledged change, never partial.
        let bytes = std::fs::read(&setup.rules).unwrap();
        let parsed = RulesDoc::from_json(&bytes).unwrap_or_else(|e| {
            panic!(
                "round {round}: the rules file is broken after SIGKILL ({} bytes): {e}",
                bytes.len()
            )
        });
        let g = known
            .iter()
            .find(|(_, d)| **d == parsed)
            .map(|(g, _)| *g)
            .unwrap_or_else(|| panic!("round {round}: the rules file is no document ever sent"));
        assert!(
            (last_acked..=last_sent).contains(&g),
            "round {round}: file has generation {g}, acknowledged up to {last_acked}, sent up to {last_sent}"
        );
        eprintln!(
            "round {round}: {} PUTs sent, acked up to {last_acked}, file at {g}",
            sent.len()
        );
        on_disk_gen = g;
    }

    // Final restart: served == file.
    let daemon = setup.start();
    let r = common::http(setup.addr, "GET", "/v1/rules", None).unwrap();
    assert_eq!(RulesDoc::from_json(&r.body).unwrap(), known[&on_disk_gen]);
    assert!(daemon.term().success());
    eprintln!("{kills_mid_request} of {ROUNDS} kills landed during a PUT");
}
