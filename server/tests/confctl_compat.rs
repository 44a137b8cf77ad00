//! confctl configurations deployed unchanged with `carrier deploy` to lab hosts (real
//! sshd, real Nix): the carrier example of confctl's documentation (`examples/confctl-doc`,
//! its files verbatim), then the carrier's netboot trees serving node1's dist to a QEMU
//! PXE boot through real atftpd; the same boot checking in with a real `carrier serve`
//! (`carrier status` then shows what node1 booted); a flake configuration (spec Appendix
//! A); a lab host as a remote builder; and `carrier kexec-netboot` against the carrier's
//! tree over HTTP.

#[path = "../../core/tests/common/mod.rs"]
mod common;
mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::cli::{Carrier, lab_ssh, ok, text};
use support::fetch::http_post_json_in;
use support::netns::{Lab, Peer};
use support::nginx::{Nginx, NginxOptions};
use support::processes::{Proc, command_in, wait_ready};
use support::qemu::{BootSource, BootSpec, boot_expect};
use support::tools::tools;

const NODE1_MAC: &str = "52:54:00:12:34:56";

/// `examples/lab` and a copy of a configuration (`conf`) side by side, prepared by
/// `prepare(conf, lab_lib)`, and a lab of its hosts, taken down on drop. One example at
/// a time: each deploys and builds a whole cluster, and parallel runs only contend for
/// the two cores and the local store's database.
struct Example {
    tmp: tempfile::TempDir,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Example {
    fn up(source: &str, prepare: impl FnOnce(&Path, &Path)) -> Example {
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = tempfile::tempdir().unwrap();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        for (from, to) in [("examples/lab", "lab"), (source, "conf")] {
            let out = Command::new("cp")
                .arg("-r")
                .arg(root.join(from))
                .arg(tmp.path().join(to))
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out));
        }
        let _ = std::fs::remove_dir_all(tmp.path().join("conf/.confctl"));
        prepare(&tmp.path().join("conf"), &tmp.path().join("lab/lib"));
        let example = Example { tmp, _one_at_a_time: guard };
        ok(&example.carrier(&["lab", "up", "--dir", example.lab().to_str().unwrap()]));
        example
    }

    fn conf(&self) -> PathBuf {
        self.tmp.path().join("conf")
    }

    fn lab(&self) -> PathBuf {
        self.tmp.path().join("lab-hosts")
    }

    fn carrier(&self, args: &[&str]) -> Output {
        Carrier::new()
            .conf(self.conf())
            .cache(self.tmp.path().join("cache"))
            .ssh_config(self.lab().join("ssh_config"))
            .output(args)
    }

    fn generation_json(&self, machine: &str) -> serde_json::Value {
        let dir = self.conf().join(".confctl/generations").join(machine);
        serde_json::from_slice(&std::fs::read(dir.join("current/generation.json")).unwrap())
            .unwrap()
    }

    fn ssh(&self, alias: &str, argv: &[&str]) -> String {
        lab_ssh(&self.lab().join("ssh_config"), alias, argv)
    }

    /// The machine's current build generation's toplevel.
    fn toplevel(&self, machine: &str) -> String {
        self.generation_json(machine)["toplevel"].as_str().unwrap().to_string()
    }

    fn host_root(&self, alias: &str) -> PathBuf {
        self.lab().join("hosts").join(alias)
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.carrier(&["lab", "down", "--dir", self.lab().to_str().unwrap(), "--purge"]);
        if let Ok(conf) = carrier_core::conf_dir::ConfDir::resolve(&self.conf()) {
            let _ = std::fs::remove_dir_all(carrier_core::build::default_gc_roots_dir(&conf));
        }
    }
}

/// node1 of examples/confctl-doc boots the Debian kernel (`boot/vmlinuz`, see
/// modules/lab-kernel.nix).
fn add_kernel(conf: &Path) {
    std::fs::create_dir(conf.join("boot")).unwrap();
    std::fs::copy(&tools().kernel, conf.join("boot/vmlinuz")).unwrap();
}

#[test]
fn documented_example_deploys_and_netboots_node1() {
    let ex = Example::up("examples/confctl-doc", |conf, _| add_kernel(conf));
    deploy_and_netboot_node1(&ex);
}

/// The same in flake mode (examples/confctl-doc/flake): impure evaluation with the
/// nixpkgs input on the search path for node1's `<nixpkgs/...>` import.
#[test]
fn documented_example_deploys_and_netboots_node1_in_flake_mode() {
    let ex = Example::up("examples/confctl-doc", |conf, lab_lib| {
        add_kernel(conf);
        common::make_flake(conf, lab_lib);
    });
    deploy_and_netboot_node1(&ex);
    assert_eq!(ex.generation_json("pxe-server#node1")["mode"], "flakes");
}

fn deploy_and_netboot_node1(ex: &Example) {
    // every machine: the carrier, node1 standalone and node1's dist on the carrier
    ok(&ex.carrier(&["deploy", "-y"]));
    let (pxe, node1, dist) =
        (ex.toplevel("pxe-server"), ex.toplevel("node1"), ex.toplevel("pxe-server#node1"));

    assert_eq!(ex.ssh("node1.lab", &["realpath", "/run/current-system"]), node1);
    assert_eq!(ex.ssh("pxe-server.lab", &["realpath", "/run/current-system"]), pxe);
    // the carrier's system: the netboot server from `netboot.enable = true` alone
    ex.ssh("pxe-server.lab", &["test", "-x", "/run/current-system/sw/bin/build-netboot-server"]);
    assert_eq!(
        ex.ssh("pxe-server.lab", &["realpath", "/nix/var/nix/profiles/confctl-node1"]),
        dist
    );
    let machine_json =
        ex.ssh("pxe-server.lab", &["cat", "/nix/var/nix/profiles/confctl-node1/machine.json"]);
    let mj: serde_json::Value = serde_json::from_str(&machine_json).unwrap();
    assert_eq!(mj["toplevel"], node1.as_str(), "the carried dist names node1's standalone system");

    // the carrier published generation 1 of node1.lab; its TFTP tree boots it
    let http = ex.host_root("pxe-server.lab").join("srv/http/node1.lab");
    assert_eq!(std::fs::read_link(http.join("current")).unwrap(), Path::new("1"));
    let tftp_root = ex.host_root("pxe-server.lab").join("srv/tftp");
    let mut net = Lab::new().unwrap();
    net.link_host().unwrap();
    let atftpd = net.start_atftpd(&tftp_root).unwrap();
    let spec = BootSpec::new(BootSource::Url(atftpd.url("pxelinux.0")), NODE1_MAC);
    let (marker, _) = boot_expect(&spec, &[], "node1", 1).unwrap();
    for want in [
        format!("init={node1}/init"),
        "httproot=http://pxe-server.lab/node1.lab/1/initrd".to_string(),
    ] {
        assert!(
            marker.cmdline.contains(&want),
            "kernel command line {:?} lacks {want:?}",
            marker.cmdline
        );
    }
}

/// A flake configuration (core/tests/fixtures/confctl-args in flake mode: carrier's
/// `nix/` as its confctl input, the lab's stand-ins as nixpkgs, `path:` inputs, offline)
/// is read, built and deployed: the hosts run the flake's systems.
#[test]
fn flake_configuration_deploys() {
    let ex = Example::up("core/tests/fixtures/confctl-args", common::make_flake);
    let out = ex.carrier(&["ls"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("carrier#a"), "{}", text(&out));
    ok(&ex.carrier(&["deploy", "-y", "{a,os,carrier}"]));
    for (machine, alias) in [("a", "a.lab"), ("os", "os.lab"), ("carrier", "carrier.lab")] {
        let g = ex.generation_json(machine);
        assert_eq!(g["mode"], "flakes", "{machine}: {g}");
        assert!(g["inputs"]["nixpkgs"].as_str().unwrap().starts_with("/nix/store/"), "{g}");
        let toplevel = g["toplevel"].as_str().unwrap();
        assert_eq!(ex.ssh(alias, &["realpath", "/run/current-system"]), toplevel, "{machine}");
        assert_eq!(
            ex.ssh(alias, &["realpath", "/nix/var/nix/profiles/system"]),
            toplevel,
            "{machine}"
        );
    }
    let args: serde_json::Value =
        serde_json::from_str(&ex.ssh("a.lab", &["cat", "/run/current-system/etc/args.json"]))
            .unwrap();
    assert_eq!(args["inputsInfo"]["nixpkgs"]["input"], "nixpkgs", "{args}");
}

/// Distributed builds: with `--builders` Nix's remote builders do the work. A lab host
/// builds node2's system in its own store (`-j 0`: nothing is built locally), and the
/// result is copied back into the deploy host's store and recorded as a generation.
#[test]
fn a_lab_host_builds_as_a_remote_builder() {
    // a system nobody has built yet
    let nonce = format!("{:?}", std::time::SystemTime::now());
    let ex = Example::up("examples/lab", |conf, _| {
        let cfg = conf.join("cluster/node2/config.nix");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("confctl.marker = \"A\";", &format!("confctl.marker = {nonce:?};"));
        assert!(text.contains(&nonce));
        std::fs::write(&cfg, text).unwrap();
    });
    let out = ex.carrier(&["build", "-j", "0", "node2"]);
    assert!(!out.status.success(), "-j 0 without builders cannot build: {}", text(&out));

    let out =
        ex.carrier(&["build", "-j", "0", "--builders", "ssh://node1.lab x86_64-linux", "node2"]);
    ok(&out);
    let toplevel = PathBuf::from(ex.toplevel("node2"));
    assert_eq!(
        std::fs::read_to_string(toplevel.join("etc/confctl-marker")).unwrap(),
        nonce,
        "copied back"
    );
    let remote = ex.host_root("node1.lab").join("nix/store").join(toplevel.file_name().unwrap());
    assert!(
        remote.join("bin/switch-to-configuration").is_file(),
        "built in node1.lab's store: {}",
        text(&out)
    );
}

/// `carrier kexec-netboot` (spec 3.7) against a real carrier tree over HTTP (nginx):
/// node1's two generations published by `carrier netboot build` from the carrier's
/// profiles. Only `kexec` is replaced, by a recorder of its arguments and files; QEMU
/// then boots exactly the recorded kernel, initrd and command line, as a kexec would.
#[test]
fn kexec_netboot_loads_the_chosen_generation() {
    let ex = Example::up("examples/confctl-doc", |conf, _| add_kernel(conf));
    ok(&ex.carrier(&["deploy", "-y"]));
    let first = ex.toplevel("node1");
    // a second generation of node1 on the carrier (the example's files stay as they are)
    let module = ex.conf().join("modules/lab-kernel.nix");
    let text_a = std::fs::read_to_string(&module).unwrap();
    std::fs::write(
        &module,
        text_a.replacen("{\n", "{\n  environment.etc.generation.text = \"2\";\n", 1),
    )
    .unwrap();
    ok(&ex.carrier(&["deploy", "-y", "pxe-server#node1"]));

    // the carrier's profiles published with a URL this host reaches
    let work = ex.tmp.path().join("kexec");
    std::fs::create_dir_all(&work).unwrap();
    let nginx = Nginx::start(&work.join("http"), &NginxOptions::default()).unwrap();
    let config = serde_json::json!({
        "tftpRoot": work.join("tftp"),
        "httpRoot": work.join("http"),
        "hostName": "pxe-server",
        "httpUrl": nginx.url(),
        "syslinux": ["/usr/lib/PXELINUX", "/usr/lib/syslinux/modules/bios", "/usr/lib/syslinux"],
        "memtest": null,
        "isoImages": [],
        "profilesDir": ex.host_root("pxe-server.lab").join("nix/var/nix/profiles"),
        "lockFile": work.join("netboot.lock"),
    });
    std::fs::write(work.join("netboot.json"), config.to_string()).unwrap();
    ok(&ex.carrier(&["netboot", "build", "--config", work.join("netboot.json").to_str().unwrap()]));

    // node1 runs generation 2, netbooted from this carrier; the recorder stands in for kexec
    let url = nginx.url();
    std::fs::write(
        work.join("cmdline"),
        format!("console=ttyS0 httproot={url}/node1.lab/2/initrd init=/x/init\n"),
    )
    .unwrap();
    let rec = work.join("rec");
    std::fs::create_dir(&rec).unwrap();
    let recorder = work.join("kexec-recorder");
    std::fs::write(
        &recorder,
        format!(
            "#!/bin/sh\nset -e\nrec={}\nprintf '%s\\n' \"$@\" >> \"$rec/argv\"\n\
             for a; do case \"$a\" in --initrd=*) cp \"${{a#--initrd=}}\" \"$rec/initrd\" ;; --*) ;; *) cp \"$a\" \"$rec/kernel\" ;; esac; done\n",
            rec.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&recorder, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let cmdline = work.join("cmdline");
    let kexec_netboot = |args: &[&str]| {
        let mut all = vec![
            "kexec-netboot",
            "--cmdline",
            cmdline.to_str().unwrap(),
            "--kexec",
            recorder.to_str().unwrap(),
        ];
        all.extend(args);
        ex.carrier(&all)
    };

    // generation 1, which is not the one running, with parameters that a shell would run
    let out =
        kexec_netboot(&["-m", "node1.lab", "-g", "-1", "-a", "panic=-1 note='a b' $(reboot)"]);
    ok(&out);
    assert!(text(&out).contains("Generation: 1"), "{}", text(&out));
    let argv = std::fs::read_to_string(rec.join("argv")).unwrap();
    let argv: Vec<&str> = argv.lines().collect();
    assert_eq!(argv[0], "--load", "{argv:?}");
    let append = argv[3].strip_prefix("--append=").unwrap();
    for want in [format!("httproot={url}/node1.lab/1/initrd"), format!("init={first}/init")] {
        assert!(append.contains(&want), "{append:?} lacks {want:?}");
    }
    assert!(append.ends_with(" panic=-1 note='a b' $(reboot)"), "{append:?}");
    assert_eq!(std::fs::read(rec.join("kernel")).unwrap(), std::fs::read(&tools().kernel).unwrap());
    let dist_1 =
        ex.ssh("pxe-server.lab", &["realpath", "/nix/var/nix/profiles/confctl-node1-1-link"]);
    assert_eq!(
        std::fs::read(rec.join("initrd")).unwrap(),
        std::fs::read(Path::new(&dist_1).join("initrd")).unwrap()
    );

    // what a kexec of them would start: node1, generation 1, the recorded command line
    let spec = BootSpec::new(
        BootSource::Direct {
            kernel: rec.join("kernel"),
            initrd: rec.join("initrd"),
            append: format!("console=ttyS0 {append}"),
        },
        "52:54:00:12:34:56",
    );
    let (marker, _) = boot_expect(&spec, &[], "node1", 1).unwrap();
    assert!(marker.cmdline.contains(&format!("init={first}/init")), "{marker:?}");

    // --exec syncs unless --no-sync; --unload; an unknown machine names the known ones
    std::fs::remove_file(rec.join("argv")).unwrap();
    for args in [&["--exec"][..], &["--exec", "--no-sync"], &["--unload"]] {
        ok(&kexec_netboot(args));
    }
    assert_eq!(
        std::fs::read_to_string(rec.join("argv")).unwrap(),
        "--exec\n--exec\n--no-sync\n--unload\n"
    );
    let out = kexec_netboot(&["-m", "nope.lab"]);
    assert!(
        !out.status.success()
            && text(&out).contains("'nope.lab' is not in machines.json (it has: node1.lab)"),
        "{}",
        text(&out)
    );
}

/// node1's ramdisk gets the kernel's NIC driver (`boot/modules`, modules/lab-kernel.nix),
/// so it can check in.
fn add_nic_driver(conf: &Path) {
    let dest = conf.join("boot/modules");
    std::fs::create_dir_all(&dest).unwrap();
    for entry in std::fs::read_dir(tools().kernel_modules()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dest.join(entry.file_name())).unwrap();
    }
}

/// The number of check-ins in the configuration's database, whatever they say.
fn checkins_recorded(conf: &Path) -> i64 {
    let url = carrier_storage::default_url(conf);
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let db = sqlx::SqlitePool::connect(&url).await.unwrap();
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM checkins").fetch_one(&db).await.unwrap();
        db.close().await;
        n
    })
}

/// `carrier serve` of `conf` in the network namespace `netns`, listening on `addr`
/// (a non-loopback address: with a dashboard token); stopped (its PID) when dropped.
fn serve_in(ex: &Example, netns: &str, addr: SocketAddr) -> Proc {
    let state = ex.tmp.path().join("serve");
    std::fs::create_dir_all(&state).unwrap();
    let token = state.join("token");
    std::fs::write(&token, "dashboard-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = command_in(Some(netns), support::cli::binary());
    cmd.arg("-C")
        .arg(ex.conf())
        .arg("--cache-dir")
        .arg(ex.tmp.path().join("cache"))
        .args(["serve", "--addr", &addr.to_string(), "--token-file"])
        .arg(&token)
        .arg("--site-root")
        .arg(state.join("site"))
        .env_remove("CARRIER_DATABASE_URL")
        .env_remove("CARRIER_TOKEN")
        .env_remove("CARRIER_TOKEN_FILE")
        .env_remove("CARRIER_ADDR");
    let mut server = Proc::spawn("carrier serve", cmd, &state.join("log")).unwrap();
    let announced = format!(" on http://{addr}/");
    let log = state.join("log");
    wait_ready(&mut server, Duration::from_secs(120), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains(&announced))
    })
    .unwrap();
    server
}

/// The lab proof of check-ins: node1 PXE-boots (QEMU, real atftpd) the tree the carrier
/// built from its carried profile after a real deploy, its ramdisk POSTs the check-in its
/// kernel parameters carry to a real `carrier serve` in the test's network namespace, and
/// `carrier status` says staged and booted; then staged but not booted after a newer
/// generation is staged, booted older after a check-in of the old one; forged, borrowed
/// and missing tokens are refused and recorded nowhere.
#[test]
fn a_pxe_booted_machine_checks_in_and_status_shows_what_it_booted() {
    let ex = Example::up("examples/confctl-doc", |conf, _| {
        add_kernel(conf);
        add_nic_driver(conf);
    });
    let mut net = Lab::new().unwrap();
    let host = net.link_host().unwrap();
    let addr = SocketAddr::from((net.service_addr(), 3000));
    let url = format!("http://{addr}/api/checkin");

    // one secret, on both sides; the carrier's netboot.json gets its check-in section
    let secret = ex.conf().join(".confctl/checkin/pxe-server.secret");
    ok(&ex.carrier(&["netboot", "checkin-secret", secret.to_str().unwrap()]));
    let etc = ex.host_root("pxe-server.lab").join("etc/carrier");
    std::fs::copy(&secret, etc.join("checkin.secret")).unwrap();
    let netboot_json = etc.join("netboot.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&netboot_json).unwrap()).unwrap();
    config["checkin"] = serde_json::json!({
        "url": url, "carrier": "pxe-server", "secretFile": etc.join("checkin.secret"),
    });
    std::fs::write(&netboot_json, config.to_string()).unwrap();
    ok(&ex.carrier(&["deploy", "-y"]));
    let _server = serve_in(&ex, net.server_netns(), addr);

    // node1 boots generation 1 from the carrier's TFTP tree and checks in
    let atftpd = net.start_atftpd(&ex.host_root("pxe-server.lab").join("srv/tftp")).unwrap();
    let mut spec = BootSpec::new(BootSource::Url(atftpd.url("pxelinux.0")), NODE1_MAC);
    spec.nic = "virtio-net-pci".into();
    let (marker, log) = boot_expect(&spec, &[], "node1", 1).unwrap();
    assert!(log.serial.contains("NETBOOT-CHECKIN: 204"), "{}", log.serial);
    let token = marker
        .cmdline
        .split(' ')
        .find_map(|p| p.strip_prefix("carrier.token="))
        .unwrap_or_else(|| panic!("no token in {:?}", marker.cmdline))
        .to_string();

    let status = |expected: &str| {
        let out = ok(&ex.carrier(&["status", "--json", "pxe-server#node1"]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let m = v["machines"][0].clone();
        assert_eq!(m["state"], expected, "{v}");
        m
    };
    let m = status("staged");
    assert_eq!(m["detail"], "staged and booted", "{m}");
    let booted = &m["carried"]["booted"];
    assert_eq!((booted["generation"].as_u64(), booted["mac"].as_str()), (Some(1), Some(NODE1_MAC)));
    assert_eq!(booted["store_path"], m["carried"]["staged"]["store_path"], "{m}");
    // what the database holds: one check-in, from the host's end of the link
    let latest =
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(
            async {
                let store = carrier_storage::Store::open(&carrier_storage::default_url(&ex.conf()))
                    .await
                    .unwrap();
                let latest = store.latest_checkins().await.unwrap();
                store.close().await;
                latest
            },
        );
    assert_eq!(latest.len(), 1, "{latest:?}");
    let c = &latest[0];
    assert_eq!((c.carrier.as_str(), c.machine.as_str(), c.generation), ("pxe-server", "node1", 1));
    assert_eq!(c.source, host.addr.to_string());
    let redacted = format!("carrier.token={token}");
    assert!(marker.cmdline.contains(&redacted), "{marker:?}");
    assert_eq!(c.cmdline, marker.cmdline.replace(&redacted, "carrier.token=(redacted)"));

    // a newer generation staged, node1 not rebooted
    let module = ex.conf().join("modules/lab-kernel.nix");
    let text_a = std::fs::read_to_string(&module).unwrap();
    std::fs::write(
        &module,
        text_a.replacen("{\n", "{\n  environment.etc.generation.text = \"2\";\n", 1),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(1)); // staged after the check-in's second
    ok(&ex.carrier(&["deploy", "-y", "pxe-server#node1"]));
    let m = status("staged-not-booted");
    assert_eq!(m["detail"], "booted generation 1 before the staged generation 2 was set", "{m}");

    // node1 checks in again, having booted generation 1 (its own token, over HTTP)
    let body = |generation: u64| {
        serde_json::json!({"carrier": "pxe-server", "machine": "node1", "generation": generation,
                           "mac": NODE1_MAC, "cmdline": "carrier.generation=1"})
        .to_string()
    };
    let post_from = |peer: &Peer, auth: Option<&str>, body: &str| {
        let headers: Vec<String> =
            auth.map(|t| format!("Authorization: Bearer {t}")).into_iter().collect();
        http_post_json_in(peer.netns.as_deref(), &url, &headers, body).unwrap()
    };
    assert_eq!(post_from(&host, Some(&token), &body(1)).status, 204);
    let m = status("booted-older");
    assert_eq!(m["detail"], "booted generation 1, older than the staged generation 2", "{m}");

    // refused: recorded nowhere (from another peer: the host's address has had its
    // check-ins for node1 in this window, see the rate limit)
    let other = net.add_client("other").unwrap();
    let recorded = checkins_recorded(&ex.conf());
    assert_eq!(recorded, 2);
    let secret = carrier_core::checkin::Secret::read(&secret).unwrap();
    let other_carrier =
        carrier_core::checkin::Secret::from_bytes([7; carrier_core::checkin::SECRET_LEN]);
    for (what, auth, expected) in [
        ("forged", Some("00".repeat(32)), 403),
        ("another machine's", Some(secret.token("pxe-server", "node2")), 403),
        ("another carrier's", Some(other_carrier.token("pxe-server", "node1")), 403),
        ("missing", None, 401),
    ] {
        let r = post_from(&other, auth.as_deref(), &body(2));
        assert_eq!(r.status, expected, "{what} token: {}", r.text());
    }
    assert_eq!(checkins_recorded(&ex.conf()), recorded, "refused check-ins are not recorded");
    status("booted-older");
}
