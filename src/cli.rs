//! Command-line interface: `check`, `explain`, `nft`, `run`.
//!
//! `main.rs` only parses and dispatches; each command returns an exit code. Usage problems exit
//! with 64 (`EX_USAGE`), invalid input with 65 (`EX_DATAERR`), I/O with 66/74.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::classify::{self, PayloadProto};
use crate::config::Config;
use crate::firewall;
use crate::rules::{Table, ValidateOptions};

/// Exit codes (sysexits.h).
pub mod exit {
    /// Bad command line or configuration.
    pub const USAGE: u8 = 64;
    /// Input data invalid (rules, payload).
    pub const DATAERR: u8 = 65;
    /// Input file missing or unreadable.
    pub const NOINPUT: u8 = 66;
    /// Runtime failure (kernel refused, I/O).
    pub const SOFTWARE: u8 = 70;
}

/// l7mark: content-aware (HTTP Host/URL, TLS SNI, ICP URL) fwmarks for IPVS.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a rules document (and a daemon config): exit 0, or list every problem.
    #[command(
        after_help = "Examples:\n  l7mark check --rules /var/lib/l7mark/rules.json\n  l7mark check --config /etc/l7mark/l7mark.toml"
    )]
    Check {
        /// The rules document (JSON). Default: the config's rules_file.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// The daemon configuration (TOML): validated too, and its mark range applied to the rules.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Classify one payload against a rules document and print {"rule", "mark", "key"} as JSON.
    #[command(
        after_help = "Examples:\n  printf 'GET /img/a.png HTTP/1.1\\r\\nHost: static.example.com\\r\\n\\r\\n' | l7mark explain --rules rules.json --proto http --payload -\n  l7mark explain --rules rules.json --proto tls --payload clienthello.bin\n  l7mark explain --rules rules.json --proto icp --payload query.icp"
    )]
    Explain {
        /// The rules document (JSON).
        #[arg(long)]
        rules: PathBuf,
        /// The payload's protocol: http, tls or icp.
        #[arg(long)]
        proto: PayloadProto,
        /// The raw L7 bytes (the TCP stream's first bytes, or the UDP datagram payload); `-` reads stdin.
        #[arg(long)]
        payload: PathBuf,
    },
    /// Print the nft ruleset (l7mark's own table) for a configuration.
    #[command(
        after_help = "Examples:\n  l7mark nft --config /etc/l7mark/l7mark.toml > /etc/nftables.d/l7mark.nft\n  l7mark nft --config l7mark.toml | nft -c -f -"
    )]
    Nft {
        /// The daemon configuration (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Print it as a replacing transaction (create, delete, define) for `nft -f`.
        #[arg(long)]
        replace: bool,
        /// Take the default mark from this rules document instead of the config's rules_file.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Run the daemon.
    #[command(
        after_help = "Examples:\n  l7mark run --config /etc/l7mark/l7mark.toml\n\nSignals: SIGTERM/SIGINT stop cleanly (held packets are verdicted, the nft table removed\nunless [nft] manage = false); SIGHUP reloads the rules file (an invalid file keeps the\ncurrent table and logs why)."
    )]
    Run {
        /// The daemon configuration (TOML).
        #[arg(long)]
        config: PathBuf,
    },
}

fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("stdin: {e}"))?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Load a config file, or print every problem and return the exit code.
pub fn load_config(path: &Path) -> Result<Config, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("l7mark: {}: {e}", path.display());
        ExitCode::from(exit::NOINPUT)
    })?;
    Config::from_toml(&text).map_err(|e| {
        eprintln!("l7mark: {} is invalid:\n{e}", path.display());
        ExitCode::from(exit::USAGE)
    })
}

fn load_table(path: &Path, opts: &ValidateOptions) -> Result<Table, ExitCode> {
    let bytes = std::fs::read(path).map_err(|e| {
        eprintln!("l7mark: {}: {e}", path.display());
        ExitCode::from(exit::NOINPUT)
    })?;
    // Shape and value problems together, in one list: the same function the REST API's 422
    // answers come from, so `check` and the API report a document identically.
    Table::from_json(&bytes, opts).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(exit::DATAERR)
    })
}

/// Run a parsed command line.
pub fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { rules, config } => check(rules.as_deref(), config.as_deref()),
        Command::Explain {
            rules,
            proto,
            payload,
        } => explain(&rules, proto, &payload),
        Command::Nft {
            config,
            replace,
            rules,
        } => nft(&config, replace, rules.as_deref()),
        Command::Run { config } => crate::daemon::run_cli(&config),
    }
}

fn check(rules: Option<&Path>, config: Option<&Path>) -> ExitCode {
    let cfg = match config.map(load_config).transpose() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let opts = ValidateOptions {
        mark_range: cfg.as_ref().map(|c| c.mark_range.clone()),
    };
    let path = match (rules, cfg.as_ref()) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(c)) => c.rules_file.clone(),
        (None, None) => {
            eprintln!("l7mark check: give --rules FILE and/or --config FILE");
            return ExitCode::from(exit::USAGE);
        }
    };
    match load_table(&path, &opts) {
        Ok(t) => {
            println!(
                "{}: ok ({} rules, default mark {})",
                path.display(),
                t.len(),
                t.default_mark()
            );
            if let Some(c) = &cfg {
                println!(
                    "config ok: {} service(s), marks {}..={}",
                    c.services.len(),
                    c.mark_range.start(),
                    c.mark_range.end()
                );
                // The IPVS services, when this host has them: a persistent service on a mark
                // the TCP binder sets misroutes reused client ports (see /healthz, same check).
                if let Ok(text) = std::fs::read_to_string(crate::api::procfs::IP_VS) {
                    let services = crate::api::procfs::parse_ip_vs(&text);
                    let problems =
                        crate::api::health::l7_persistence_problems(c, t.doc(), &services);
                    for p in &problems {
                        eprintln!("l7mark check: {}: {p}", crate::api::procfs::IP_VS);
                    }
                    if !problems.is_empty() {
                        return ExitCode::from(exit::DATAERR);
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn explain(rules: &Path, proto: PayloadProto, payload: &Path) -> ExitCode {
    let table = match load_table(rules, &ValidateOptions::default()) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let bytes = match read_input(payload) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("l7mark explain: {e}");
            return ExitCode::from(exit::NOINPUT);
        }
    };
    match classify::explain(proto, &bytes, &table) {
        Ok(e) => match serde_json::to_string(&e) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("l7mark explain: {err}");
                ExitCode::from(exit::SOFTWARE)
            }
        },
        Err(e) => {
            eprintln!("l7mark explain: {e}");
            ExitCode::from(exit::DATAERR)
        }
    }
}

fn nft(config: &Path, replace: bool, rules: Option<&Path>) -> ExitCode {
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let table = match load_table(
        rules.unwrap_or(&cfg.rules_file),
        &ValidateOptions {
            mark_range: Some(cfg.mark_range.clone()),
        },
    ) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let rs = firewall::ruleset(
        &cfg,
        firewall::Inputs {
            default_mark: table.default_mark(),
        },
    );
    print!(
        "{}",
        if replace {
            rs.render_replace()
        } else {
            rs.render()
        }
    );
    ExitCode::SUCCESS
}
