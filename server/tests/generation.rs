//! `carrier generation ls|rm|rotate` and `carrier collect-garbage` against a real lab:
//! sshd hosts with their own /nix (`carrier lab up`), generations made by real deploys
//! of examples/lab, read and removed with the real nix-env on the hosts and through
//! `carrier profile` on the carrier, whose netboot tree is rebuilt by its hook.

mod support;

use std::process::Output;

use serde_json::Value;
use support::cli::{ok, text};

support::lab::lab_type!();

impl Lab {
    fn set_marker(&self, marker: &str) {
        self.0.set_marker(&["pxe", "node1", "node2", "os1"], marker);
    }

    /// `generation ls --json` with `args`: (machine, number, current) per record.
    fn ls(&self, args: &[&str]) -> Vec<(String, u64, bool)> {
        let mut all = vec!["generation", "ls", "--json"];
        all.extend(args);
        let out = self.carrier(&all);
        ok(&out);
        let records: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        records
            .iter()
            .map(|r| {
                let host = &r["host"];
                let current = r["build"]["current"] == true || host["current"] == true;
                (
                    r["machine"].as_str().unwrap().to_string(),
                    host["number"].as_u64().unwrap_or(0),
                    current,
                )
            })
            .collect()
    }

    /// `nix-env --list-generations` of a profile on a host: (number, current).
    fn nix_env_generations(&self, alias: &str, profile: &str) -> Vec<(u64, bool)> {
        self.ssh(alias, &["nix-env", "-p", profile, "--list-generations"])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let n = l.split_whitespace().next().unwrap().parse().unwrap();
                (n, l.contains("(current)"))
            })
            .collect()
    }

    /// The generation numbers the carrier's HTTP netboot tree offers for `fqdn`.
    fn netboot_generations(&self, fqdn: &str) -> Vec<u64> {
        let dir = self.dir().join("hosts/pxe.lab/srv/http").join(fqdn);
        let mut out: Vec<u64> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        out.sort();
        out
    }

    fn hook_runs(&self) -> usize {
        let log = self.dir().join("hosts/pxe.lab/run/carrier-events.log");
        std::fs::read_to_string(log).unwrap_or_default().matches("on-change").count()
    }

    fn local_generations(&self, machine: &str) -> Vec<String> {
        let dir = self.conf().join(".confctl/generations").join(machine);
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n != "current")
            .collect();
        out.sort();
        out
    }
}

fn failed(o: &Output, message: &str) {
    assert!(!o.status.success(), "{}", text(o));
    assert!(String::from_utf8_lossy(&o.stderr).contains(message), "want '{message}': {}", text(o));
}

const SYSTEM: &str = "/nix/var/nix/profiles/system";
const CARRIED: &str = "/nix/var/nix/profiles/confctl-node1";

/// Three deploys of node1 and pxe#node1 give both three generations; they are listed as
/// nix-env lists them, removed one by one and by rotation (the current one always
/// kept, the carrier's netboot tree following), with garbage collection after.
#[test]
fn host_and_carried_generations_are_listed_removed_and_rotated() {
    let lab = Lab::up();
    for marker in ["A", "B", "C"] {
        lab.set_marker(marker);
        ok(&lab.carrier(&["deploy", "-y", "{node1,pxe#node1}"]));
    }

    // listing: the system profile as nix-env sees it, and the carried profile
    let host = lab.nix_env_generations("node1.lab", SYSTEM);
    assert_eq!(host.len(), 3, "{host:?}");
    let listed = lab.ls(&["-r", "node1"]);
    let listed: Vec<(u64, bool)> = listed.into_iter().map(|(_, n, c)| (n, c)).collect();
    assert_eq!(listed, host);
    // the dates too: nix-env prints `YYYY-MM-DD HH:MM:SS`, names are `YYYY-MM-DD--HH-MM-SS`
    let out = lab.carrier(&["generation", "ls", "--json", "-r", "node1"]);
    let records: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<String> =
        records.iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    let dates: Vec<String> = lab
        .ssh("node1.lab", &["nix-env", "-p", SYSTEM, "--list-generations"])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(format!("{}--{}", f.get(1)?, f.get(2)?.replace(':', "-")))
        })
        .collect();
    assert_eq!(names, dates);
    let carried: Vec<(u64, bool)> =
        lab.ls(&["-r", "pxe#node1"]).into_iter().map(|(_, n, c)| (n, c)).collect();
    assert_eq!(carried, lab.nix_env_generations("pxe.lab", CARRIED));
    assert_eq!(carried, [(1, false), (2, false), (3, true)]);
    let table = lab.carrier(&["generation", "ls", "-l", "-r", "pxe#node1"]);
    ok(&table);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    // the local build generations hold the same dists: one record each, both sides
    assert_eq!(table.matches("build+host").count(), 4, "3 records, 1 current on both: {table}");
    assert_eq!(lab.netboot_generations("node1.lab"), [1, 2, 3]);

    // refusals change nothing
    failed(&lab.carrier(&["generation", "rm", "-r", "-y", "node1", "0"]), "is the current one");
    failed(&lab.carrier(&["generation", "rm", "-r", "-y", "node1", "+x"]), "'+x'");
    failed(&lab.carrier(&["generation", "rm", "-r", "-y", "node1", "3x"]), "'3x'");
    assert_eq!(lab.nix_env_generations("node1.lab", SYSTEM).len(), 3);

    // one host generation, then one carried generation (one hook run, tree follows)
    ok(&lab.carrier(&["generation", "rm", "-r", "-y", "--no-gc", "node1", "1"]));
    let left: Vec<u64> = lab.nix_env_generations("node1.lab", SYSTEM).iter().map(|g| g.0).collect();
    assert_eq!(left, [2, 3]);
    let hooks = lab.hook_runs();
    let out = lab.carrier(&["generation", "rm", "-r", "-y", "--no-gc", "pxe#node1", "1"]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Removing host generation pxe#node1@"),
        "{}",
        text(&out)
    );
    assert_eq!(lab.nix_env_generations("pxe.lab", CARRIED), [(2, false), (3, true)]);
    assert_eq!(lab.hook_runs(), hooks + 1);
    assert_eq!(lab.netboot_generations("node1.lab"), [2, 3]);

    // rotation by the configuration's limits: a dry run first, then for real with GC
    std::fs::create_dir_all(lab.conf().join("configs")).unwrap();
    std::fs::write(
        lab.conf().join("configs/confctl.nix"),
        "{ confctl.hostGenerations = { min = 1; max = 1; }; confctl.buildGenerations = { min = 1; max = 1; }; }",
    )
    .unwrap();
    let dry = lab.carrier(&["generation", "rotate", "-r", "--dry-run", "{node1,pxe#node1}"]);
    ok(&dry);
    let dry_text = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(dry_text.contains("Would remove") && dry_text.contains("pxe#node1"), "{dry_text}");
    assert_eq!(lab.nix_env_generations("pxe.lab", CARRIED).len(), 2, "a dry run changes nothing");

    let out = lab.carrier(&["generation", "rotate", "-r", "-y", "{node1,pxe#node1}"]);
    ok(&out);
    let out_text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(lab.nix_env_generations("node1.lab", SYSTEM), [(3, true)]);
    assert_eq!(lab.nix_env_generations("pxe.lab", CARRIED), [(3, true)]);
    assert_eq!(lab.netboot_generations("node1.lab"), [3]);
    for host in ["node1.lab", "pxe.lab"] {
        assert!(out_text.contains(&format!("{host}: ")), "GC on {host}: {out_text}");
    }
    assert!(out_text.contains("store paths deleted"), "{out_text}");
    // what was collected is gone from the host's store; the current system is kept
    lab.ssh("node1.lab", &["test", "-e", &format!("{SYSTEM}/bin/switch-to-configuration")]);

    // local rotation: the build generations down to the current one, roots included
    assert_eq!(lab.local_generations("node1").len(), 3);
    ok(&lab.carrier(&["generation", "rotate", "-y", "node1"]));
    let kept = lab.local_generations("node1");
    assert_eq!(kept.len(), 1, "{kept:?}");
    let roots = carrier_core::build::default_gc_roots_dir(
        &carrier_core::conf_dir::ConfDir::resolve(&lab.conf()).unwrap(),
    );
    let node1_roots: Vec<String> = std::fs::read_dir(&roots)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("node1-generation-"))
        .collect();
    assert!(
        !node1_roots.is_empty() && node1_roots.iter().all(|n| n.contains(&kept[0])),
        "{node1_roots:?}"
    );

    let out = lab.carrier(&["generation", "rm", "-y", "node1", &kept[0]]);
    failed(&out, "is the current one");
    assert_eq!(lab.local_generations("node1"), kept);

    // collect-garbage: runnable machines only, a carried one is named with its carrier
    let out = lab.carrier(&["collect-garbage", "-y", "{node1,pxe#node1}"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("node1.lab: "), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("select its carrier pxe"),
        "{}",
        text(&out)
    );
    failed(
        &lab.carrier(&["collect-garbage", "-y", "pxe#node1"]),
        "no machines to collect garbage on",
    );
}

#[test]
fn an_unreachable_host_is_reported_and_nothing_is_removed() {
    let lab = Lab::up();
    ok(&lab.carrier(&["lab", "down", "--dir", lab.dir().to_str().unwrap()]));
    let out = lab.carrier(&["generation", "rm", "-r", "-y", "node1", "old"]);
    failed(&out, "node1: cannot connect to node1.lab");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing removed"), "{}", text(&out));
}
