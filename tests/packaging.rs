//! The systemd packaging in `contrib/systemd/`: the unit carries the keys operations depend on
//! (checked with a small parser), `systemd-analyze verify` accepts it, and the sysctl / modules-load / sysusers files say what the
//! daemon's preflight and the unit expect.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const UNIT: &str = "contrib/systemd/l7mark.service";

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `(section, key, value)` for every assignment of a systemd unit file, in order.
/// Comments (`#`, `;`) and blank lines are skipped; the unit uses no continuation lines.
fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(!line.ends_with('\\'), "line {}: continuation lines", n + 1);
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {line}", n + 1));
        assert!(!section.is_empty(), "line {}: key outside a section", n + 1);
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    out
}

struct Unit(Vec<(String, String, String)>);

impl Unit {
    fn load() -> Unit {
        Unit(parse_unit(&read(UNIT)))
    }
    /// Every value of `section.key`.
    fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }
    /// The one value of `section.key` (the key must be set exactly once).
    fn one(&self, section: &str, key: &str) -> &str {
        let v = self.all(section, key);
        assert_eq!(
            v.len(),
            1,
            "[{section}] {key} must be set exactly once: {v:?}"
        );
        v[0]
    }
    /// The space-separated words of every `section.key` assignment.
    fn words(&self, section: &str, key: &str) -> BTreeSet<&str> {
        self.all(section, key)
            .into_iter()
            .flat_map(str::split_whitespace)
            .collect()
    }
}

fn set<'a>(items: &[&'a str]) -> BTreeSet<&'a str> {
    items.iter().copied().collect()
}

#[test]
fn unit_orders_after_the_network_and_nftables_and_before_keepalived_without_depending_on_it() {
    let u = Unit::load();
    let after = u.words("Unit", "After");
    assert!(after.contains("network-online.target"), "{after:?}");
    assert!(after.contains("nftables.service"), "{after:?}");
    assert!(u.words("Unit", "Wants").contains("network-online.target"));
    assert!(u.words("Unit", "Before").contains("keepalived.service"));
    // l7mark fails open: neither side may stop or refuse to start because of the other.
    for key in [
        "Requires",
        "Requisite",
        "BindsTo",
        "PartOf",
        "Wants",
        "Upholds",
    ] {
        assert!(
            !u.words("Unit", key).contains("keepalived.service"),
            "{key}= must not name keepalived.service"
        );
    }
    assert_eq!(u.one("Install", "WantedBy"), "multi-user.target");
}

#[test]
fn unit_validates_then_runs_and_reloads_with_sighup() {
    let u = Unit::load();
    assert_eq!(
        u.one("Service", "ExecStartPre"),
        "/usr/sbin/l7mark check --config /etc/l7mark/l7mark.toml"
    );
    assert_eq!(
        u.one("Service", "ExecStart"),
        "/usr/sbin/l7mark run --config /etc/l7mark/l7mark.toml"
    );
    assert_eq!(u.one("Service", "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(u.one("Service", "Restart"), "on-failure");
    assert_eq!(u.one("Service", "RestartSec"), "1");
    assert_eq!(u.one("Service", "KillSignal"), "SIGTERM");
    let stop: u32 = u.one("Service", "TimeoutStopSec").parse().unwrap();
    // The API alone may take 3 s to drain at SIGTERM.
    assert!((5..=60).contains(&stop), "TimeoutStopSec={stop}");
    // Restarting cannot fix a bad config, bad rules or a missing file: the daemon's own codes.
    use l7mark::cli::exit;
    let no_restart: BTreeSet<u8> = u
        .words("Service", "RestartPreventExitStatus")
        .into_iter()
        .map(|w| w.parse().unwrap())
        .collect();
    assert_eq!(
        no_restart,
        [exit::USAGE, exit::DATAERR, exit::NOINPUT]
            .into_iter()
            .collect()
    );
    assert!(
        !no_restart.contains(&exit::SOFTWARE),
        "runtime failures must restart"
    );
}

#[test]
fn unit_grants_exactly_net_admin_and_net_raw_to_an_unprivileged_user() {
    let u = Unit::load();
    let caps = set(&["CAP_NET_ADMIN", "CAP_NET_RAW"]);
    assert_eq!(u.words("Service", "CapabilityBoundingSet"), caps);
    assert_eq!(u.words("Service", "AmbientCapabilities"), caps);
    let user = u.one("Service", "User");
    assert_ne!(user, "root");
    assert_eq!(user, "l7mark");
    assert_eq!(u.one("Service", "NoNewPrivileges"), "yes");
    // The system user the unit names is the one sysusers.d creates.
    let sysusers = read("contrib/systemd/l7mark.sysusers");
    assert!(
        sysusers
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["u", user])),
        "l7mark.sysusers must create user {user}"
    );
}

#[test]
fn unit_sandbox_and_directories() {
    let u = Unit::load();
    assert_eq!(u.one("Service", "ProtectSystem"), "strict");
    assert_eq!(u.one("Service", "ProtectHome"), "yes");
    assert_eq!(u.one("Service", "PrivateTmp"), "yes");
    assert_eq!(
        u.words("Service", "RestrictAddressFamilies"),
        set(&["AF_NETLINK", "AF_INET", "AF_INET6", "AF_UNIX"])
    );
    // l7mark must see the host's network namespace.
    assert!(
        u.all("Service", "PrivateNetwork")
            .iter()
            .all(|v| *v == "no")
    );
    let nofile: u64 = u.one("Service", "LimitNOFILE").parse().unwrap();
    assert!(nofile >= 4096, "LimitNOFILE={nofile}");
    assert_eq!(u.one("Service", "ConfigurationDirectory"), "l7mark");
    let state = u.one("Service", "StateDirectory");
    assert_eq!(state, "l7mark");
    // ProtectSystem=strict leaves only the StateDirectory writable: the rules file the REST API
    // rewrites (temp file + rename in the same directory) must live there.
    let example = read("examples/l7mark.toml");
    let cfg: toml::Value = toml::from_str(&example).unwrap();
    let rules_file = cfg["rules_file"].as_str().unwrap();
    assert_eq!(rules_file, format!("/var/lib/{state}/rules.json"));
    // The config path of ExecStart lies in the ConfigurationDirectory.
    assert!(u.one("Service", "ExecStart").contains("/etc/l7mark/"));
}

#[test]
fn sysctl_file_sets_what_the_daemon_checks() {
    let text = read("contrib/systemd/l7mark-sysctl.conf");
    let got: BTreeSet<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("net.ipv4.vs.conntrack", "1"),
        ("net.netfilter.nf_conntrack_tcp_loose", "0"),
        ("net.ipv4.ip_forward", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(got, want);
    // net.ipv4.vs.* only exists once ip_vs is loaded, which modules-load.d does before
    // systemd-sysctl runs.
    let modules: BTreeSet<&str> = include_str!("../contrib/systemd/l7mark-modules.conf")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for m in ["ip_vs", "nfnetlink_queue", "nft_queue", "nft_synproxy"] {
        assert!(modules.contains(m), "l7mark-modules.conf lacks {m}");
    }
}

/// `systemd-analyze verify` on the unit, with the binary path pointed at the l7mark built for
/// this test (verify insists that ExecStart's program exists). A missing systemd-analyze fails
/// the test (integration/test-all.sh installs the `systemd` package): no silent skip.
#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let probe = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "systemd-analyze not found: install the systemd package (integration/test-all.sh does)"
    );
    let dir = std::env::temp_dir().join(format!("l7mark-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = dir.join("l7mark.service");
    let text = read(UNIT).replace("/usr/sbin/l7mark", env!("CARGO_BIN_EXE_l7mark"));
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    for bad in [
        "Unknown key",
        "Unknown lvalue",
        "Failed to parse",
        "not executable",
    ] {
        assert!(!stderr.contains(bad), "systemd-analyze verify: {stderr}");
    }
}
