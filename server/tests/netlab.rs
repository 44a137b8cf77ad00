//! Proves the netboot lab (tests/support/) on a hand-made tree laid out like
//! carrier's (spec 3.4-3.6): real atftpd and nginx serve it, QEMU PXE-boots it.
//!
//! The tree: `netboot/tftp -> tftp.<random>` and `netboot/http -> http.<random>`, whose boot
//! files are symlinks out of the root into a fake store, one initramfs per generation
//! with its marker baked in.

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use support::{atftpd::*, fetch::*, initramfs::*, netns::*, nginx::*, qemu::*, tools::*};

const FQDN: &str = "m1.netlab.test";
/// Has a `pxelinux.cfg/01-…` file: boots generation 2 with no menu.
const AUTO_MAC: &str = "52:54:00:12:34:56";
/// Has none: gets `pxelinux.cfg/default`.
const MENU_MAC: &str = "52:54:00:65:43:21";

fn params(generation: u64, entry: &str) -> String {
    format!(
        "httproot=http://carrier.test/{FQDN}/{generation}/initrd console=ttyS0 quiet netlab.entry={entry}"
    )
}

fn entry(label: &str, menu_label: &str, generation: u64, entry: &str) -> String {
    format!(
        "LABEL {label}\n  MENU LABEL {menu_label}\n  LINUX boot/{FQDN}/{generation}/bzImage\n  \
         INITRD boot/{FQDN}/{generation}/initrd\n  APPEND {}\n",
        params(generation, entry)
    )
}

struct HandTree {
    base: tempfile::TempDir,
    /// `<base>/netboot/tftp`, a symlink to `tftp.<random>`.
    tftp_root: PathBuf,
    /// `<base>/netboot/http`, a symlink to `http.<random>`.
    http_root: PathBuf,
}

impl HandTree {
    fn new() -> HandTree {
        let base = tempfile::Builder::new().prefix("netlab-tree.").tempdir().unwrap();
        let b = base.path();
        let random = format!(
            "{:06x}",
            (std::process::id() as u64 * 7919 + b.as_os_str().len() as u64) & 0xff_ffff
        );
        // The fake store: one dist per generation, with its own marker.
        let mut dist = Vec::new();
        for generation in [1u64, 2] {
            let d = b.join(format!("store/{generation}a1b2c3-netlab-{FQDN}-gen{generation}"));
            fs::create_dir_all(&d).unwrap();
            symlink(&tools().kernel, d.join("bzImage")).unwrap();
            build_initramfs(&d.join("initrd"), FQDN, generation).unwrap();
            dist.push(d);
        }
        let netboot = b.join("netboot");

        // TFTP tree (spec 3.4).
        let t = netboot.join(format!("tftp.{random}"));
        install_syslinux(&t).unwrap();
        fs::create_dir_all(t.join("pxelinux.cfg")).unwrap();
        let machine_dir = t.join(format!("pxeserver/machines/{FQDN}"));
        fs::create_dir_all(&machine_dir).unwrap();
        let default = format!(
            "DEFAULT menu.c32\nPROMPT 0\nTIMEOUT 0\nMENU TITLE netlab carrier\n{}{}",
            entry(FQDN, "m1 current (gen 2)", 2, "menu-current"),
            entry(&format!("{FQDN}-1"), "m1 Gen 1 - old", 1, "menu-gen1"),
        );
        fs::write(t.join("pxelinux.cfg/default"), default).unwrap();
        let auto =
            format!("DEFAULT {FQDN}\nPROMPT 0\nTIMEOUT 50\n{}", entry(FQDN, "m1", 2, "auto"));
        fs::write(machine_dir.join("auto.cfg"), auto).unwrap();
        symlink(
            format!("../pxeserver/machines/{FQDN}/auto.cfg"),
            t.join(format!("pxelinux.cfg/01-{}", AUTO_MAC.replace(':', "-"))),
        )
        .unwrap();
        for (i, d) in dist.iter().enumerate() {
            let g = t.join(format!("boot/{FQDN}/{}", i + 1));
            fs::create_dir_all(&g).unwrap();
            symlink(d.join("bzImage"), g.join("bzImage")).unwrap();
            symlink(d.join("initrd"), g.join("initrd")).unwrap();
        }
        symlink("2", t.join(format!("boot/{FQDN}/current"))).unwrap();

        // HTTP tree (spec 3.6).
        let h = netboot.join(format!("http.{random}"));
        for (i, d) in dist.iter().enumerate() {
            let g = h.join(format!("{FQDN}/{}", i + 1));
            fs::create_dir_all(&g).unwrap();
            symlink(d.join("bzImage"), g.join("bzImage")).unwrap();
            symlink(d.join("initrd"), g.join("initrd")).unwrap();
            fs::write(g.join("kernel-params"), params(i as u64 + 1, "http")).unwrap();
        }
        symlink("2", h.join(format!("{FQDN}/current"))).unwrap();
        fs::write(
            h.join("machines.json"),
            format!("{{\"machines\": [{{\"fqdn\": \"{FQDN}\"}}]}}\n"),
        )
        .unwrap();

        // Both roots are relative symlinks, swapped atomically by carrier.
        symlink(format!("tftp.{random}"), netboot.join("tftp")).unwrap();
        symlink(format!("http.{random}"), netboot.join("http")).unwrap();
        HandTree { tftp_root: netboot.join("tftp"), http_root: netboot.join("http"), base }
    }

    fn scratch(&self) -> PathBuf {
        let s = self.base.path().join("scratch");
        fs::create_dir_all(&s).unwrap();
        s
    }
}

fn assert_cmdline(m: &Marker, generation: u64, entry: &str) {
    for want in [
        format!("BOOT_IMAGE=boot/{FQDN}/{generation}/bzImage"),
        format!("initrd=boot/{FQDN}/{generation}/initrd"),
        params(generation, entry),
    ] {
        assert!(m.cmdline.contains(&want), "kernel command line {:?} lacks {want:?}", m.cmdline);
    }
}

/// (a) Real atftpd in a namespace; pxelinux finds `pxelinux.cfg/01-<mac>` (a symlink into
/// pxeserver/) and boots generation 2 with no menu.
#[test]
fn pxelinux_per_mac_auto_boot_from_atftpd_in_netns() {
    let tree = HandTree::new();
    let mut lab = Lab::new().unwrap();
    lab.link_host().unwrap();
    let atftpd = lab.start_atftpd(&tree.tftp_root).unwrap();
    let spec = BootSpec::new(BootSource::Url(atftpd.url("pxelinux.0")), AUTO_MAC);
    let (m, _) = boot_expect(&spec, &[], FQDN, 2).unwrap();
    assert_cmdline(&m, 2, "auto");
    let served = served_by_atftpd(&atftpd.log());
    for f in [
        "pxelinux.0".to_string(),
        "ldlinux.c32".into(),
        "pxelinux.cfg/01-52-54-00-12-34-56".into(),
        format!("boot/{FQDN}/2/bzImage"),
        format!("boot/{FQDN}/2/initrd"),
    ] {
        assert!(served.contains(&f), "atftpd did not serve {f}; log:\n{}", atftpd.log());
    }
    assert!(
        !served.contains("pxelinux.cfg/default"),
        "the per-MAC file should win:\n{}",
        atftpd.log()
    );
}

/// (b) A MAC without a `01-` file gets the `default` menu on the serial console; Down +
/// Enter picks the second entry, generation 1.
#[test]
fn pxelinux_default_menu_walked_over_serial() {
    let tree = HandTree::new();
    let spec = BootSpec::new(
        BootSource::BuiltinTftp { root: tree.tftp_root.clone(), bootfile: "pxelinux.0".into() },
        MENU_MAC,
    );
    let steps = [
        MenuStep::new("netlab carrier", &[]),
        MenuStep::new("m1 Gen 1 - old", &[Key::Down, Key::Enter]),
    ];
    let (m, log) = boot_expect(&spec, &steps, FQDN, 1).unwrap();
    assert_cmdline(&m, 1, "menu-gen1");
    assert!(log.serial.contains("m1 current (gen 2)"), "the menu was not shown:\n{}", log.serial);
}

/// (c) iPXE fetches a script, the kernel and the initrd from real nginx over HTTP (through
/// the `current` symlink of the HTTP tree).
#[test]
fn ipxe_boot_over_http_from_nginx() {
    let tree = HandTree::new();
    let script = tree.scratch().join("netlab.ipxe");
    let opts = NginxOptions {
        extra_files: vec![("/netlab.ipxe".into(), script.clone())],
        ..Default::default()
    };
    let nginx = Nginx::start(&tree.http_root, &opts).unwrap();
    let base = nginx.guest_url();
    fs::write(
        &script,
        ipxe_script(
            &format!("{base}/{FQDN}/current/bzImage"),
            &format!("{base}/{FQDN}/current/initrd"),
            &params(2, "ipxe"),
        ),
    )
    .unwrap();
    let spec = BootSpec::new(BootSource::Url(format!("{base}/netlab.ipxe")), AUTO_MAC);
    let (m, _) = boot_expect(&spec, &[], FQDN, 2).unwrap();
    assert!(m.cmdline.contains(&params(2, "ipxe")), "{m:?}");
    let access = nginx.access_log();
    for path in
        ["/netlab.ipxe", &format!("/{FQDN}/current/bzImage"), &format!("/{FQDN}/current/initrd")]
    {
        assert!(
            access.contains(&format!("\"GET {path} HTTP/1.1\" 200 ")),
            "nginx did not serve {path}:\n{access}"
        );
    }
}

/// (d) Every file of the TFTP tree through real atftpd (two clients), every file and
/// directory of the HTTP tree through real nginx (autoindex); misses are errors.
#[test]
fn every_file_served_by_atftpd_and_nginx() {
    let tree = HandTree::new();
    let atftpd = Atftpd::start(&tree.tftp_root).unwrap();
    let checked = verify_tree_tftp(&tree.tftp_root, atftpd.addr, TftpClient::Curl).unwrap();
    for f in [
        "pxelinux.0",
        "ldlinux.c32",
        "menu.c32",
        "libutil.c32",
        "libcom32.c32",
        "reboot.c32",
        "memdisk",
        "pxelinux.cfg/default",
        "pxelinux.cfg/01-52-54-00-12-34-56",
        &format!("pxeserver/machines/{FQDN}/auto.cfg"),
        &format!("boot/{FQDN}/1/bzImage"),
        &format!("boot/{FQDN}/1/initrd"),
        &format!("boot/{FQDN}/2/initrd"),
        &format!("boot/{FQDN}/current/initrd"),
    ] {
        assert!(checked.iter().any(|c| c == f), "{f} not checked: {checked:?}");
    }
    // tftp-hpa (512-byte blocks, like PXE ROMs) on everything but the kernels.
    let (files, _) = tree_files(&tree.tftp_root).unwrap();
    for f in files.iter().filter(|f| f.size < 4 << 20) {
        let got = tftp_get_in(None, TftpClient::TftpHpa, atftpd.addr, &f.rel).unwrap();
        assert_eq!(got, fs::read(&f.target).unwrap(), "{}", f.rel);
    }
    for client in [TftpClient::Curl, TftpClient::TftpHpa] {
        let err = tftp_get_in(None, client, atftpd.addr, "pxelinux.cfg/01-00-00-00-00-00-00")
            .unwrap_err();
        assert!(err.to_string().contains("tftp get"), "{err:#}");
    }

    let nginx = Nginx::start(&tree.http_root, &NginxOptions::default()).unwrap();
    let checked = verify_tree_http(&tree.http_root, &nginx.url()).unwrap();
    for f in [
        "machines.json",
        &format!("{FQDN}/2/kernel-params"),
        &format!("{FQDN}/current/bzImage"),
        "/",
        &format!("{FQDN}/current/"),
    ] {
        assert!(checked.iter().any(|c| c == f), "{f} not checked: {checked:?}");
    }
    assert_eq!(http_get(&format!("{}/nope.json", nginx.url())).unwrap().status, 404);
}

/// (e) nginx's allow-list with two clients in two namespaces: one inside the allowed range
/// gets the files, the other gets 403. atftpd bound to the same service address (carrier's
/// `tftp.bindAddress`) serves both.
#[test]
fn nginx_allow_list_admits_inside_client_and_denies_outside() {
    let tree = HandTree::new();
    let mut lab = Lab::new().unwrap();
    let inside = lab.add_client("inside").unwrap();
    let outside = lab.add_client("outside").unwrap();
    assert_ne!(inside.net, outside.net);
    let nginx = lab.start_nginx(&tree.http_root, &NginxOptions::allow(&[&inside.net])).unwrap();
    let base = format!("http://{}", lab.service_addr());
    let initrd = format!("{base}/{FQDN}/2/initrd");
    let want = fs::read(tree.http_root.join(format!("{FQDN}/2/initrd"))).unwrap();

    let ok = inside.http_get(&initrd).unwrap();
    assert_eq!((ok.status, ok.body.len()), (200, want.len()));
    assert!(ok.body == want);
    let index = inside.http_get(&format!("{base}/")).unwrap();
    assert!(
        index.status == 200 && index.text().contains(&format!("href=\"{FQDN}/\"")),
        "{}",
        index.text()
    );

    for url in [initrd.as_str(), &format!("{base}/"), &format!("{base}/machines.json")] {
        assert_eq!(outside.http_get(url).unwrap().status, 403, "{url} from outside");
    }
    let access = nginx.access_log();
    assert!(
        access.contains(&format!("{} - - ", inside.addr))
            && access.contains(&format!("{} - - ", outside.addr)),
        "{access}"
    );
    assert!(
        nginx.error_log().contains(&format!("access forbidden by rule, client: {}", outside.addr)),
        "{}",
        nginx.error_log()
    );

    let atftpd = lab.start_atftpd(&tree.tftp_root).unwrap();
    let pxelinux = fs::read(tree.tftp_root.join("pxelinux.0")).unwrap();
    assert_eq!(inside.tftp_get(TftpClient::Curl, atftpd.addr, "pxelinux.0").unwrap(), pxelinux);
    assert_eq!(outside.tftp_get(TftpClient::TftpHpa, atftpd.addr, "pxelinux.0").unwrap(), pxelinux);
    let log = atftpd.log();
    assert!(
        log.contains(&format!("to {}:", inside.addr))
            && log.contains(&format!("to {}:", outside.addr)),
        "{log}"
    );
}

/// A broken tree fails the boot as soon as pxelinux reports it, with the serial log in the
/// error, instead of running into the timeout.
#[test]
fn boot_of_a_missing_kernel_fails_fast() {
    let tree = HandTree::new();
    fs::remove_file(tree.tftp_root.join(format!("boot/{FQDN}/2/bzImage"))).unwrap();
    let spec = BootSpec::new(
        BootSource::BuiltinTftp { root: tree.tftp_root.clone(), bootfile: "pxelinux.0".into() },
        AUTO_MAC,
    );
    let started = std::time::Instant::now();
    let err = format!("{:#}", boot_expect(&spec, &[], FQDN, 2).unwrap_err());
    assert!(
        err.contains(&format!("Loading boot/{FQDN}/2/bzImage failed: No such file or directory")),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(40), "{:?}", started.elapsed());
}

/// The harness's own parsing: ANSI escapes (menu.c32 draws with them) and the marker.
#[test]
fn serial_output_is_stripped_and_parsed() {
    let raw = b"\x1b[?25l\x1b[0;37;40m\x1b)0\x0elqqk\x0f menu\r\n\x1b[1;1H\nNETBOOT-OK machine=a.b-c gen=12\r\nNETBOOT-CMDLINE: BOOT_IMAGE=x init=/y\r\n[ 1.9] reboot: Power down\r\n";
    let s = strip_ansi(raw);
    assert!(s.contains("lqqk menu\n"), "{s:?}");
    assert_eq!(
        find_marker(&s),
        Some(Marker {
            machine: "a.b-c".into(),
            generation: 12,
            cmdline: "BOOT_IMAGE=x init=/y".into()
        })
    );
    assert_eq!(
        find_marker("NETBOOT-OK machine=x gen=1\n"),
        None,
        "a marker without its cmdline line"
    );
}
