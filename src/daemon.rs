//! `l7mark run`: start-up in a fixed order (config, rules, kernel preflight, API socket and token,
//! queues, nft, API server), a signal loop (SIGHUP reloads through the [`Controller`]), and a
//! clean stop: API first, then the workers verdict what they hold, then the nft table goes.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use nix::sys::signal::{SigSet, Signal};

use crate::api::{self, ApiServer, ApiState, BoundListener};
use crate::cli::{exit, load_config};
use crate::config::Config;
use crate::control::store::RuleStore;
use crate::control::{Controller, FirewallSync, Nft};
use crate::engine::{self, Shared};
use crate::firewall;
use crate::metrics::Metrics;
use crate::rules::ValidateOptions;

/// Kernel settings the TCP binder depends on, with the reason each is needed.
const TCP_SYSCTLS: &[(&str, &str, &str)] = &[
    (
        "/proc/sys/net/ipv4/vs/conntrack",
        "1",
        "IPVS must keep conntrack entries for NAT connections (else ip_vs_nat_send_or_cont \
         detaches SYNPROXY's conntrack: no sequence translation, the real server's SYN-ACK \
         leaks to the client)",
    ),
    (
        "/proc/sys/net/netfilter/nf_conntrack_tcp_loose",
        "0",
        "the SYN-cookie ACK must be INVALID to conntrack so SYNPROXY (and l7mark) see it",
    ),
];

/// Check the kernel settings a config needs; every failure is listed.
pub fn preflight(cfg: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if cfg.tcp_services().next().is_some() {
        for (path, want, why) in TCP_SYSCTLS {
            if !cfg.binder.require_ipvs && path.contains("/vs/") {
                continue;
            }
            match std::fs::read_to_string(path) {
                Ok(v) if v.trim() == *want => {}
                Ok(v) => problems.push(format!(
                    "{} is {}, must be {want}: {why}",
                    sysctl_name(path),
                    v.trim()
                )),
                Err(_) => problems.push(format!(
                    "{} is missing (is the ip_vs module loaded?): {why}",
                    sysctl_name(path)
                )),
            }
        }
    }
    problems
}

fn sysctl_name(path: &str) -> String {
    path.trim_start_matches("/proc/sys/").replace('/', ".")
}

/// Entry point of `l7mark run`.
pub fn run_cli(config: &Path) -> ExitCode {
    init_logging();
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            tracing::error!("{msg}");
            eprintln!("l7mark: {msg}");
            ExitCode::from(code)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("L7MARK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cfg: Config) -> Result<(), (u8, String)> {
    // Block the signals before any thread exists: every thread inherits the mask, and the main
    // thread takes them synchronously with sigwait (no async-signal-safety concerns).
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(|e| (exit::SOFTWARE, format!("cannot block signals: {e}")))?;

    let opts = ValidateOptions {
        mark_range: Some(cfg.mark_range.clone()),
    };
    let store = RuleStore::open(&cfg.rules_file, opts)
        .map_err(|e| (exit::DATAERR, format!("cannot load the rules: {e}")))?;
    let store = Arc::new(store);

    let problems = preflight(&cfg);
    if !problems.is_empty() {
        return Err((
            exit::USAGE,
            format!(
                "the kernel is not set up for this config:\n{}",
                problems.join("\n")
            ),
        ));
    }

    // The API socket and token first: a taken port or an unreadable token file stops start-up
    // before any queue is bound or nft rule steers traffic.
    // (A unix socket left behind by a later start-up failure is harmless: the next start
    // replaces it.)
    let auth = api::auth::Auth::from_config(&cfg.file.api, &cfg.api_listen)
        .map_err(|e| (exit::USAGE, source_chain_of(&e)))?;
    let listener =
        BoundListener::bind(&cfg.api_listen).map_err(|e| (exit::SOFTWARE, source_chain_of(&e)))?;

    let metrics = Arc::new(Metrics::default());
    let shared = Arc::new(Shared {
        store: Arc::clone(&store),
        metrics: Arc::clone(&metrics),
        shutdown: Arc::new(AtomicBool::new(false)),
        binder: engine::binder_gauges(&cfg),
    });
    // Queues first: packets only reach them once the nft table exists, and a queue that cannot be
    // bound must stop start-up before any rule steers traffic to it.
    let workers = engine::start(&cfg, &shared)
        .map_err(|e| (exit::SOFTWARE, format!("{e}: {}", source_chain(&e))))?;
    let stop_workers = |workers: Vec<std::thread::JoinHandle<()>>| {
        shared.shutdown.store(true, Relaxed);
        for w in workers {
            let _ = w.join();
        }
    };
    let cfg = Arc::new(cfg);
    // Every rule change — REST or SIGHUP — goes through the controller, which re-applies the nft
    // table when the default mark (baked into the bypass/fail-open rules) changes.
    let controller = Arc::new(Controller::new(
        Arc::clone(&store),
        Arc::clone(&metrics),
        Arc::clone(&cfg),
        Arc::new(Nft),
    ));
    if cfg.nft.manage {
        if let Err(e) = controller.install_firewall() {
            stop_workers(workers);
            return Err((exit::SOFTWARE, e.to_string()));
        }
        tracing::info!(table = %cfg.nft.table, "nft table applied");
    }
    let api = match ApiServer::start(
        listener,
        ApiState::new(
            Arc::clone(&controller),
            shared.binder.clone(),
            auth,
            Arc::new(api::health::SystemProbe),
        ),
    ) {
        Ok(a) => a,
        Err(e) => {
            stop_workers(workers);
            remove_table(&cfg);
            return Err((exit::SOFTWARE, source_chain_of(&e)));
        }
    };
    tracing::info!(
        workers = cfg.queues.workers,
        services = cfg.services.len(),
        rules = store.snapshot().table.len(),
        "l7mark running"
    );

    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => match controller.reload() {
                Ok(done) => {
                    tracing::info!(
                        version = done.snapshot.version,
                        rules = done.snapshot.table.len(),
                        "rules reloaded"
                    );
                    if let FirewallSync::Failed(e) = done.firewall {
                        tracing::error!(error = %e, "nft update for the new default mark failed");
                    }
                }
                Err(e) => tracing::error!("reload refused, keeping the current table: {e}"),
            },
            Ok(sig) => {
                tracing::info!(signal = ?sig, "stopping");
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, "sigwait failed; stopping");
                break;
            }
        }
    }

    // The API first (no change can start after this), then the workers verdict what they hold,
    // then the table goes.
    api.stop();
    stop_workers(workers);
    remove_table(&cfg);
    tracing::info!("stopped");
    Ok(())
}

fn remove_table(cfg: &Config) {
    if cfg.nft.manage {
        if let Err(e) = firewall::remove(&cfg.nft.table) {
            tracing::error!(error = %e, "could not remove the nft table");
        }
    }
}

/// `error: cause: cause` for start-up messages.
fn source_chain_of(e: &dyn std::error::Error) -> String {
    api::error::display_chain(e)
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}
