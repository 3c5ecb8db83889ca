//! The shipped `nft-rules/*.nft` files are exactly what `l7mark nft` renders for the example
//! configs (so they never drift from the daemon), and the rendered table has the properties the
//! data path depends on.

use std::process::Command;

fn render(config: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_l7mark"))
        .args([
            "nft",
            "--config",
            config,
            "--rules",
            "examples/rules.json",
            "--replace",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run l7mark nft");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn shipped_rulesets_match_the_renderer() {
    for (cfg, file) in [
        ("examples/l7mark.toml", "nft-rules/l7mark-full.nft"),
        ("examples/icp-dr.toml", "nft-rules/icp-dr.nft"),
        ("examples/http-tls.toml", "nft-rules/http-tls-nat.nft"),
    ] {
        let shipped = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR")))
            .expect("shipped file");
        let body: String = shipped.lines().skip(6).map(|l| format!("{l}\n")).collect();
        assert_eq!(
            body,
            render(cfg),
            "{file} drifted: run nft-rules/generate.sh"
        );
    }
}

#[test]
fn rendered_table_has_the_properties_the_data_path_needs() {
    let t = render("examples/l7mark.toml");
    // Only l7mark's own table is touched.
    for line in t
        .lines()
        .filter(|l| l.starts_with("table") || l.starts_with("delete"))
    {
        assert!(
            line.contains("inet l7mark"),
            "touches something else: {line}"
        );
    }
    assert!(!t.contains("flush ruleset"));
    // Every queue rule but the pre-seqadj one has bypass; the default mark precedes queueing
    // where bypass or fail-open would otherwise leave the packet unmarked for IPVS.
    for line in t.lines().filter(|l| l.contains(" queue ")) {
        if line.contains("ct status & 0x40 == 0 ") {
            assert!(
                !line.contains("bypass"),
                "pre-seqadj queue must drop without l7mark: {line}"
            );
        } else {
            assert!(line.contains("bypass"), "queue without bypass: {line}");
        }
    }
    for line in t.lines().filter(|l| {
        l.contains("udp dport 3130")
            || l.contains("tcp flags & (fin|syn|rst|ack) == syn counter meta")
    }) {
        assert!(
            line.contains("meta mark set 100 queue"),
            "default mark before queue: {line}"
        );
    }
    // TCP events of one connection hash to the same worker: client→VIP by saddr.sport,
    // server→client by daddr.dport.
    // One explicit seed everywhere: without it every jhash expression gets its own random seed.
    assert!(t.contains("jhash ip saddr . tcp sport mod 2 seed 0x6c376d6b"));
    assert!(t.contains("jhash ip daddr . tcp dport mod 2 seed 0x6c376d6b"));
    for line in t.lines().filter(|l| l.contains("jhash")) {
        assert!(
            line.contains("seed 0x6c376d6b"),
            "jhash without the shared seed: {line}"
        );
    }
    // SYNPROXY sits in a later base chain than the queue (NF_ACCEPT resumes at the next chain).
    assert!(t.contains("chain syn_proxy {\n\t\ttype filter hook input priority 0;"));
    assert!(t.contains("chain client_to_binder {\n\t\ttype filter hook input priority -150;"));
}
