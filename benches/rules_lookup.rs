//! Lookup cost of the indexed rule table against a linear scan of the same rules, measured in the
//! same run, for 10, 1k and 100k rules. Plain `harness = false` bench: `cargo bench --bench
//! rules_lookup` prints a table of figures.
//!
//! Rule mix (deterministic): ~55 % exact hosts (some with a path prefix, some with a method, some
//! URL-hashed), ~25 % `*.suffix` hosts, ~10 % path-prefix-only rules, ~5 % exact paths, ~5 % SNI
//! rules, plus a few unindexed path globs spread through the document (one per
//! 200 rules, 1 to 5). Subject mix: ~45 % exact-host
//! hits, ~15 % suffix hits, ~10 % prefix hits, ~5 % TLS, ~25 % misses (which evaluate the
//! unindexed globs and fall through to the default mark).

use std::hint::black_box;
use std::time::{Duration, Instant};

use l7mark::rules::url::canonical_http_url;
use l7mark::rules::{RuleDoc, RulesDoc, Subject, Table, UrlHashDoc, ValidateOptions};

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
}

fn build_doc(n: usize) -> RulesDoc {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ n as u64);
    let globs = [
        "*.iso",
        "/downloads/*.zip",
        "*/video/*.mp4",
        "/static/*/old/*",
        "*.tar.gz",
    ];
    // A few unindexed globs: one per 200 rules, at least one, at most five.
    let glob_count = (n / 200).clamp(1, globs.len());
    let glob_at: Vec<usize> = (0..glob_count)
        .map(|g| (g * n) / glob_count + n / 10)
        .collect();
    let mut rules = Vec::with_capacity(n + globs.len());
    for i in 0..n {
        if let Some(g) = glob_at.iter().position(|&at| at == i) {
            rules.push(RuleDoc {
                id: format!("glob{g}"),
                path_glob: Some(globs[g].into()),
                mark: Some(200 + u32::try_from(g).unwrap_or(0)),
                ..RuleDoc::default()
            });
        }
        let mut r = RuleDoc {
            id: format!("r{i}"),
            mark: Some(1000 + u32::try_from(i % 50).unwrap_or(0)),
            ..RuleDoc::default()
        };
        match rng.below(100) {
            0..=54 => {
                r.host = Some(format!("h{i}.site{}.example.com", i % 977));
                match rng.below(10) {
                    0 | 1 => r.path_prefix = Some(format!("/p{}/", i % 13)),
                    2 => r.method = Some("POST".into()),
                    3 => {
                        r.mark = None;
                        r.url_hash = Some(UrlHashDoc {
                            marks: vec![120, 121, 122],
                            members: None,
                            weights: None,
                        });
                    }
                    _ => {}
                }
            }
            55..=79 => r.host = Some(format!("*.d{i}.example.net")),
            80..=89 => r.path_prefix = Some(format!("/app{i}/")),
            90..=94 => r.path_exact = Some(format!("/exact/{i}.html")),
            _ => r.sni = Some(format!("tls{i}.example.org")),
        }
        rules.push(r);
    }
    RulesDoc {
        default_mark: 100,
        rules,
    }
}

/// Owned subject data (the table borrows from it).
struct Subj {
    tls: bool,
    host: String,
    method: &'static str,
    path: String,
    url: String,
}

fn subjects(doc: &RulesDoc, count: usize) -> Vec<Subj> {
    let mut rng = Rng(42);
    let n = doc.rules.len();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let r = &doc.rules[rng.below(n)];
        let roll = rng.below(100);
        let (tls, host, path) = if roll < 75 {
            match (&r.host, &r.path_prefix, &r.path_exact, &r.sni) {
                (Some(h), p, _, _) if !h.starts_with('*') => (
                    false,
                    h.clone(),
                    format!("{}index.html?q={roll}", p.as_deref().unwrap_or("/")),
                ),
                (Some(h), _, _, _) => (false, format!("www{roll}{}", &h[1..]), "/".into()),
                (None, Some(p), _, _) => (false, "unknown.example".into(), format!("{p}a/b")),
                (None, None, Some(p), _) => (false, "unknown.example".into(), p.clone()),
                (None, None, None, Some(s)) => (true, s.clone(), String::new()),
                _ => continue,
            }
        } else {
            (
                false,
                format!("miss{roll}.nowhere{}.example", rng.below(1000)),
                format!(
                    "/nothing/{}/here.php?id={}",
                    rng.below(100),
                    rng.below(1000)
                ),
            )
        };
        let url = canonical_http_url(&host, None, &path);
        out.push(Subj {
            tls,
            host,
            method: "GET",
            path,
            url,
        });
    }
    out
}

fn subject(s: &Subj) -> Subject<'_> {
    if s.tls {
        Subject::tls(Some(&s.host))
    } else {
        Subject::http(Some(&s.host), Some(s.method), Some(&s.path), Some(&s.url))
    }
}

/// ns per lookup over `runs` runs, each at least `min_time` (whole passes over the subjects).
fn measure(
    subjects: &[Subj],
    runs: usize,
    min_time: Duration,
    f: impl Fn(&Subject<'_>) -> u32,
) -> Vec<f64> {
    let prepared: Vec<Subject<'_>> = subjects.iter().map(subject).collect();
    // Warm-up pass (page in the tables, fill the regex caches).
    for s in &prepared {
        black_box(f(black_box(s)));
    }
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            let mut lookups = 0u64;
            while start.elapsed() < min_time {
                for s in &prepared {
                    black_box(f(black_box(s)));
                }
                lookups += prepared.len() as u64;
            }
            start.elapsed().as_nanos() as f64 / lookups as f64
        })
        .collect()
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let runs = 7;
    println!("l7mark rules lookup: {runs} runs per figure, median [min..max], ns per decide()");
    println!(
        "{:>7} | {:>11} | {:>28} | {:>34} | {:>8}",
        "rules", "compile ms", "indexed ns/lookup", "linear ns/lookup", "ratio"
    );
    for n in [10usize, 1_000, 100_000] {
        let doc = build_doc(n);
        let opts = ValidateOptions::default();
        let compile_runs = if n >= 100_000 { 3 } else { 7 };
        let mut compile_ms = Vec::new();
        let mut table = None;
        for _ in 0..compile_runs {
            let start = Instant::now();
            let t =
                Table::compile(&doc, &opts).unwrap_or_else(|e| panic!("bench doc invalid: {e}"));
            compile_ms.push(start.elapsed().as_secs_f64() * 1e3);
            table = Some(t);
        }
        let Some(table) = table else { return };
        let subjects = subjects(&doc, 1024);

        // Sanity: both lookups agree on every subject.
        for s in &subjects {
            assert_eq!(table.decide(&subject(s)), table.decide_linear(&subject(s)));
        }
        let hits = subjects
            .iter()
            .filter(|s| table.decide(&subject(s)).rule.is_some())
            .count();

        let indexed = stats(measure(&subjects, runs, Duration::from_millis(100), |s| {
            table.decide(s).mark
        }));
        let linear = stats(measure(
            &subjects,
            runs.min(5),
            Duration::from_millis(100),
            |s| table.decide_linear(s).mark,
        ));
        let (cm, cmin, cmax) = stats(compile_ms);
        println!(
            "{:>7} | {:>11} | {:>28} | {:>34} | {:>7.0}x",
            doc.rules.len(),
            format!("{cm:.2}"),
            format!("{:.0} [{:.0}..{:.0}]", indexed.0, indexed.1, indexed.2),
            format!("{:.0} [{:.0}..{:.0}]", linear.0, linear.1, linear.2),
            linear.0 / indexed.0,
        );
        eprintln!(
            "        ({n} rules: compile {cm:.2} ms [{cmin:.2}..{cmax:.2}], {hits}/{} subjects hit a rule)",
            subjects.len()
        );
    }
}
