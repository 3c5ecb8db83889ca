//! `docker-compose.yml` (the container lab) matches the VM/netns topology of integration/README.md,
//! and everything it mounts or runs is in the repository. No Docker engine is needed: the file is
//! parsed and checked, and the lab's l7mark config is validated with `l7mark check`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["services"]
        .get(name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_sequence()
        .map(|s| s.iter().map(|x| x.as_str().unwrap()).collect())
        .unwrap_or_default()
}

/// network name -> the service's IPv4 address on it.
fn attachments(svc: &Value) -> BTreeMap<String, Ipv4Addr> {
    svc["networks"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let addr = v["ipv4_address"]
                .as_str()
                .unwrap_or_else(|| panic!("{k:?}: no ipv4_address"));
            (k.as_str().unwrap().to_string(), addr.parse().unwrap())
        })
        .collect()
}

/// network name -> its (single) IPv4 subnet.
fn subnets(c: &Value) -> BTreeMap<String, (Ipv4Addr, u8)> {
    c["networks"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let cfg = v["ipam"]["config"].as_sequence().unwrap();
            assert_eq!(cfg.len(), 1, "{k:?}: one subnet");
            let (net, len) = cfg[0]["subnet"].as_str().unwrap().split_once('/').unwrap();
            (
                k.as_str().unwrap().to_string(),
                (net.parse().unwrap(), len.parse().unwrap()),
            )
        })
        .collect()
}

fn in_subnet(a: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(a) & mask == u32::from(net)
}

fn env<'a>(svc: &'a Value, key: &str) -> &'a str {
    svc["environment"][key]
        .as_str()
        .unwrap_or_else(|| panic!("environment {key} missing"))
}

/// Host paths of the bind mounts, with their container paths.
fn binds(svc: &Value) -> Vec<(PathBuf, String)> {
    strings(&svc["volumes"])
        .into_iter()
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let mut parts = v.split(':');
            let src = parts.next().unwrap();
            let dst = parts.next().unwrap();
            (repo().join(src), dst.to_string())
        })
        .collect()
}

const SERVICES: [&str; 5] = ["client", "director", "rs1", "rs2", "rs3"];

#[test]
fn the_five_services_exist() {
    let c = compose();
    let got: BTreeSet<&str> = c["services"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(got, SERVICES.into_iter().collect());
}

#[test]
fn director_is_privileged_with_net_admin_and_net_raw() {
    let c = compose();
    let d = service(&c, "director");
    assert_eq!(d["privileged"].as_bool(), Some(true));
    let caps = strings(&d["cap_add"]);
    for cap in ["NET_ADMIN", "NET_RAW"] {
        assert!(
            caps.contains(&cap),
            "director cap_add lacks {cap}: {caps:?}"
        );
    }
    // The real servers replace their default route, the client adds one to the VIP.
    for name in ["client", "rs1", "rs2", "rs3"] {
        assert!(
            strings(&service(&c, name)["cap_add"]).contains(&"NET_ADMIN"),
            "{name} needs NET_ADMIN"
        );
    }
}

#[test]
fn networks_match_the_vm_topology() {
    let c = compose();
    let nets = subnets(&c);
    let net_of = |svc: &str| -> (String, Ipv4Addr) {
        let a = attachments(service(&c, svc));
        assert_eq!(a.len(), 1, "{svc} must be on exactly one network: {a:?}");
        a.into_iter().next().unwrap()
    };
    // client and real servers: the addresses of integration/README.md, each on its own /24.
    let want = [
        ("client", "10.0.1.0", "10.0.1.2"),
        ("rs1", "10.0.2.0", "10.0.2.2"),
        ("rs2", "10.0.3.0", "10.0.3.2"),
        ("rs3", "10.0.4.0", "10.0.4.2"),
    ];
    let director = attachments(service(&c, "director"));
    let mut used = BTreeSet::new();
    for (svc, net, addr) in want {
        let (name, got) = net_of(svc);
        assert_eq!(got, addr.parse::<Ipv4Addr>().unwrap(), "{svc}");
        let subnet = nets[&name];
        assert_eq!(subnet, (net.parse().unwrap(), 24), "{svc}'s network {name}");
        assert!(used.insert(name.clone()), "{name} shared by two nodes");
        // The director is on it too, at an address Docker's IPAM leaves free (.1 is the gateway),
        // and that is the next hop the node's entrypoint routes through.
        let d = director
            .get(&name)
            .unwrap_or_else(|| panic!("director not on {name}"));
        assert!(in_subnet(*d, subnet), "director {d} outside {name}");
        assert_ne!(
            d.octets()[3],
            1,
            "director on {name} takes the gateway address"
        );
        assert_ne!(*d, got);
        assert_eq!(env(service(&c, svc), "DIRECTOR_IP"), d.to_string(), "{svc}");
    }
    // The director is on all four networks and nothing else; no network is unused.
    assert_eq!(
        director.keys().cloned().collect::<BTreeSet<_>>(),
        nets.keys().cloned().collect()
    );
    assert_eq!(used, nets.keys().cloned().collect());
}

#[test]
fn mounted_files_and_entrypoints_exist() {
    let c = compose();
    for name in SERVICES {
        let svc = service(&c, name);
        let mounts = binds(svc);
        for (src, _) in &mounts {
            assert!(
                src.exists(),
                "{name}: mounts {} which does not exist",
                src.display()
            );
        }
        // The entrypoint is a mounted script from the repository, executable.
        let entry = strings(&svc["entrypoint"]);
        assert_eq!(entry.len(), 1, "{name}: entrypoint {entry:?}");
        let (src, _) = mounts
            .iter()
            .find(|(_, dst)| dst == entry[0])
            .unwrap_or_else(|| panic!("{name}: entrypoint {} is not mounted", entry[0]));
        let mode = std::fs::metadata(src).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{} is not executable", src.display());
        let head = std::fs::read_to_string(src).unwrap();
        assert!(
            head.starts_with("#!/bin/sh\n"),
            "{}: #!/bin/sh",
            src.display()
        );
    }
    let d = service(&c, "director");
    let dockerfile = d["build"]["dockerfile"].as_str().unwrap();
    assert!(repo().join(dockerfile).is_file(), "{dockerfile}");
    // The script runs l7mark-ipvs, which must be mounted executable.
    let ipvs = binds(d)
        .into_iter()
        .find(|(_, dst)| dst.ends_with("/l7mark-ipvs"))
        .expect("l7mark-ipvs mounted");
    assert!(std::fs::metadata(&ipvs.0).unwrap().permissions().mode() & 0o111 != 0);
}

#[test]
fn header_states_the_host_kernel_requirements() {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let header: String = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        "modprobe",
        "ip_vs",
        "nft_queue",
        "nfnetlink_queue",
        "Docker Desktop",
    ] {
        assert!(header.contains(needle), "header comment lacks {needle}");
    }
}

/// The director's config, rules and IPVS services agree: `l7mark check` accepts them, the VIP is
/// the one the client routes to, and every mark the rules can yield has an IPVS service whose
/// real server is one of the lab's.
#[test]
fn lab_config_rules_and_services_agree() {
    let c = compose();
    let d = service(&c, "director");
    let mounted = |dst: &str| -> PathBuf {
        binds(d)
            .into_iter()
            .find(|(_, x)| x == dst)
            .unwrap_or_else(|| panic!("{dst} not mounted"))
            .0
    };
    let config = mounted("/etc/l7mark/l7mark.toml");
    let rules = mounted("/etc/l7mark/rules.seed.json");
    let services = mounted("/etc/l7mark/services.conf");

    let out = Command::new(env!("CARGO_BIN_EXE_l7mark"))
        .arg("check")
        .arg("--config")
        .arg(&config)
        .arg("--rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "l7mark check: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cfg: toml::Value = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let vip = env(d, "VIP");
    for s in cfg["service"].as_array().unwrap() {
        assert_eq!(s["vip"].as_str(), Some(vip));
    }
    assert_eq!(env(service(&c, "client"), "VIP"), vip);

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rules).unwrap()).unwrap();
    let mut marks: BTreeSet<u64> = [doc["default_mark"].as_u64().unwrap()].into();
    for r in doc["rules"].as_array().unwrap() {
        marks.insert(r["mark"].as_u64().unwrap());
    }
    let text = std::fs::read_to_string(&services).unwrap();
    let mut svc_marks = BTreeSet::new();
    let mut reals = BTreeSet::new();
    for line in text.lines().map(|l| l.split('#').next().unwrap().trim()) {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.first() {
            Some(&"service") => {
                svc_marks.insert(w[1].parse::<u64>().unwrap());
                assert_eq!(w[3], "nat", "HTTP needs IPVS NAT: {line}");
            }
            Some(&"real") => {
                reals.insert(w[1].split(':').next().unwrap().parse::<Ipv4Addr>().unwrap());
            }
            _ => {}
        }
    }
    assert_eq!(
        svc_marks, marks,
        "an IPVS service for every mark, and no other"
    );
    let lab: BTreeSet<Ipv4Addr> = ["rs1", "rs2", "rs3"]
        .into_iter()
        .flat_map(|n| attachments(service(&c, n)).into_values())
        .collect();
    assert_eq!(reals, lab);
}
