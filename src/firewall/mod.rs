//! l7mark's firewall state: rendered as a value ([`render`]) and applied atomically to l7mark's
//! own nft table, never touching anything else in the ruleset.
//!
//! Application goes through `nft -f -` (libnftables), one transaction per call: the table is
//! created if absent, deleted and defined anew inside the same batch, so packets see either the
//! old table or the new one. Why not the `nftnl` crate: it has no `queue`, `synproxy`, `notrack`,
//! `jhash` or payload-write expressions, which are most of this table; rendering to nft's own
//! language keeps the daemon's rules and the shipped `nft-rules/` files one artifact (netavark
//! applies its rules through `nft` the same way). See docs/design-decisions.md.

pub mod render;

use std::io::Write as _;
use std::process::{Command, Stdio};

pub use render::{Inputs, Ruleset, ruleset};

/// Errors applying or removing l7mark's table.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The `nft` program could not be started.
    #[error("cannot run nft (is the nftables package installed?)")]
    Spawn(#[source] std::io::Error),
    /// nft rejected the transaction; nothing was changed.
    #[error("nft rejected the ruleset (nothing was changed): {0}")]
    Rejected(String),
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, FirewallError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(FirewallError::Spawn)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(FirewallError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(FirewallError::Spawn)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(FirewallError::Rejected(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Replace l7mark's table with `rules` in one transaction.
pub fn apply(rules: &Ruleset) -> Result<(), FirewallError> {
    nft(&["-f", "-"], Some(&rules.render_replace())).map(|_| ())
}

/// Remove l7mark's table (no error if it is absent).
pub fn remove(table: &str) -> Result<(), FirewallError> {
    nft(
        &["-f", "-"],
        Some(&format!("table inet {table}\ndelete table inet {table}\n")),
    )
    .map(|_| ())
}

/// Whether l7mark's table is loaded.
pub fn table_present(table: &str) -> Result<bool, FirewallError> {
    match nft(&["list", "table", "inet", table], None) {
        Ok(_) => Ok(true),
        Err(FirewallError::Rejected(_)) => Ok(false),
        Err(e) => Err(e),
    }
}
