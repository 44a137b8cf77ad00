//! `carrier deploy` against a real lab: sshd hosts with their own /nix (`carrier lab up`),
//! real nix-build of examples/lab, real nix-copy-closure, real activation and carried
//! profiles set by `carrier profile set` on the carrier. The first test mirrors the
//! upstream acceptance scenario (spec 6.1) step by step; the others break things.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use carrier_core::conf_dir::ConfDir;
use support::cli::{ok, text};

support::lab::lab_type!();

impl Lab {
    fn deploy(&self, args: &[&str]) -> Output {
        let mut all = vec!["deploy", "-y"];
        all.extend(args);
        self.carrier(&all)
    }

    /// A deploy that must fail: its `--json` report, each machine's record by name.
    fn failing_deploy(&self, args: &[&str]) -> Report {
        let mut all = vec!["--json"];
        all.extend(args);
        let out = self.deploy(&all);
        assert!(!out.status.success(), "{}", text(&out));
        Report(
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out))),
        )
    }

    fn realpath(&self, alias: &str, path: &str) -> String {
        self.ssh(alias, &["realpath", path])
    }

    /// The machine's current build generation: (name, toplevel).
    fn generation(&self, machine: &str) -> (String, String) {
        let dir = self.conf().join(".confctl/generations").join(machine.replace('/', ":"));
        let name = std::fs::read_link(dir.join("current"))
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join(&name).join("generation.json")).unwrap(),
        )
        .unwrap();
        (name, json["toplevel"].as_str().unwrap().to_string())
    }

    fn events(&self) -> String {
        std::fs::read_to_string(self.host_root("pxe.lab").join("run/carrier-events.log"))
            .unwrap_or_default()
    }

    /// The current generation the carrier's HTTP netboot tree offers for `fqdn`:
    /// (number, store path).
    fn netboot_generation(&self, fqdn: &str) -> (u64, String) {
        let dir = self.host_root("pxe.lab").join("srv/http").join(fqdn);
        let current: u64 =
            std::fs::read_link(dir.join("current")).unwrap().to_string_lossy().parse().unwrap();
        let g: serde_json::Value =
            serde_json::from_str(&file(&dir.join(current.to_string()).join("generation.json")))
                .unwrap();
        (current, g["store_path"].as_str().unwrap().to_string())
    }

    fn set_marker(&self, marker: &str) {
        self.0.set_marker(&["pxe", "node1", "node2", "os1"], marker);
    }
}

/// A deploy's JSON report.
struct Report(serde_json::Value);

impl Report {
    fn machine(&self, name: &str) -> &serde_json::Value {
        let machines = self.0["machines"].as_array().unwrap();
        machines
            .iter()
            .find(|r| r["machine"] == name)
            .unwrap_or_else(|| panic!("no {name} in {}", self.0))
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Makes a directory writable again (chattr -i) when the test ends, even on a panic.
struct Unfreeze(PathBuf);

impl Drop for Unfreeze {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

fn file(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const STANDALONE: [(&str, &str); 3] =
    [("pxe", "pxe.lab"), ("node1", "node1.lab"), ("os1", "os1.lab")];
const CARRIED: [(&str, &str); 2] = [("pxe#node1", "node1"), ("pxe#os1", "os1")];

/// Spec 6.1, assertion by assertion.
#[test]
fn upstream_carrier_acceptance_scenario() {
    let lab = Lab::up();

    // 1. standalone build and deploy
    for (m, alias) in STANDALONE {
        ok(&lab.deploy(&[m]));
        let (_, toplevel) = lab.generation(m);
        assert!(Path::new(&toplevel).join("bin/switch-to-configuration").is_file(), "{m}");
        assert_eq!(lab.realpath(alias, "/nix/var/nix/profiles/system"), toplevel, "{m} profile");
        assert_eq!(lab.realpath(alias, "/run/current-system"), toplevel, "{m} current system");
    }
    let standalone_a: Vec<String> = STANDALONE.iter().map(|(m, _)| lab.generation(m).1).collect();

    // 2. carried builds come from the same source configs
    ok(&lab.deploy(&["--build-only", "pxe#*"]));
    for (m, source) in CARRIED {
        let (_, dist) = lab.generation(m);
        let standalone = lab.generation(source).1;
        assert_ne!(dist, standalone, "{m}");
        assert_eq!(file(&Path::new(&dist).join("build-mode")), "carried\n");
        let mj: serde_json::Value =
            serde_json::from_str(&file(&Path::new(&dist).join("machine.json"))).unwrap();
        assert_eq!(mj["machine"], source);
        assert_eq!(mj["marker"], "A");
        assert_eq!(
            mj["toplevel"].as_str(),
            Some(standalone.as_str()),
            "{m}: machine.json names the standalone toplevel"
        );
    }

    // 3. carried deploy (both in one run) writes carrier-managed profiles, one rebuild
    ok(&lab.deploy(&["pxe#*"]));
    for (m, alias) in CARRIED {
        let (_, dist) = lab.generation(m);
        let profile = format!("/nix/var/nix/profiles/confctl-{alias}");
        assert_eq!(lab.realpath("pxe.lab", &profile), dist, "{m}");
        assert_eq!(lab.realpath("pxe.lab", &format!("{profile}-1-link")), dist);
        lab.ssh("pxe.lab", &["test", "-e", &format!("{dist}/machine.json")]);
        assert!(lab.events().contains(&profile), "hooks saw {profile}: {}", lab.events());
    }
    assert_eq!(
        lab.events().matches("on-change").count(),
        1,
        "one hook run for two carried machines"
    );
    for ((m, alias), a) in STANDALONE.iter().zip(&standalone_a) {
        assert_eq!(&lab.realpath(alias, "/run/current-system"), a, "{m} untouched");
    }
    // the carrier's netboot tree now offers generation 1 of each carried machine
    for (m, alias) in CARRIED {
        assert_eq!(
            lab.netboot_generation(&format!("{alias}.lab")),
            (1, lab.generation(m).1),
            "{m}"
        );
    }

    // a finished run leaves no SSH connection behind
    assert_eq!(lab.ssh_processes(), Vec::<String>::new());

    // 4. redeploying the same generation is skipped and runs no hook
    let (gen_a, _) = lab.generation("pxe#node1");
    let before = lab.events();
    let out = lab.deploy(&["--generation", &gen_a, "pxe#node1"]);
    ok(&out);
    assert!(
        text(&out).contains("Skipping pxe#node1: already using target generation"),
        "{}",
        text(&out)
    );
    assert_eq!(lab.events(), before);

    // 5. updated builds
    lab.set_marker("B");
    ok(&lab.deploy(&["--build-only", "*"]));
    for ((m, _), a) in STANDALONE.iter().zip(&standalone_a) {
        assert_ne!(&lab.generation(m).1, a, "{m} rebuilt");
    }
    let dist_a: Vec<String> = CARRIED
        .iter()
        .map(|(_, alias)| {
            lab.realpath("pxe.lab", &format!("/nix/var/nix/profiles/confctl-{alias}"))
        })
        .collect();
    for (m, _) in CARRIED {
        let mj: serde_json::Value =
            serde_json::from_str(&file(&Path::new(&lab.generation(m).1).join("machine.json")))
                .unwrap();
        assert_eq!(mj["marker"], "B");
    }

    // 6. standalone updates leave carried profiles alone
    for (m, alias) in STANDALONE {
        let (gen_b, toplevel) = lab.generation(m);
        ok(&lab.deploy(&["--generation", &gen_b, m, "switch"]));
        assert_eq!(lab.realpath(alias, "/run/current-system"), toplevel);
        assert_eq!(lab.realpath(alias, "/nix/var/nix/profiles/system"), toplevel);
    }
    for ((_, alias), a) in CARRIED.iter().zip(&dist_a) {
        assert_eq!(&lab.realpath("pxe.lab", &format!("/nix/var/nix/profiles/confctl-{alias}")), a);
    }

    // 7. second carried generation
    for ((m, alias), a) in CARRIED.iter().zip(&dist_a) {
        let (gen_b, dist_b) = lab.generation(m);
        ok(&lab.deploy(&["--generation", &gen_b, m]));
        let profile = format!("/nix/var/nix/profiles/confctl-{alias}");
        assert_eq!(lab.realpath("pxe.lab", &profile), dist_b);
        assert_eq!(lab.realpath("pxe.lab", &format!("{profile}-2-link")), dist_b);
        assert_eq!(&lab.realpath("pxe.lab", &format!("{profile}-1-link")), a);
        assert_eq!(
            lab.netboot_generation(&format!("{alias}.lab")),
            (2, dist_b),
            "{m}: the netboot tree follows"
        );
    }
}

/// What upstream does not test: hosts that fail in different ways end in a known,
/// reported state, and nothing else changes.
#[test]
fn failures_leave_every_host_in_a_known_state() {
    let lab = Lab::up();
    ok(&lab.deploy(&["node1", "--json"]));
    let node1_a = lab.generation("node1").1;

    // a build that fails names the machine and touches no host
    let cfg = lab.conf().join("cluster/node1/config.nix");
    let text_a = file(&cfg);
    std::fs::write(&cfg, text_a.replacen("\n{\n", "\n{\n  confctl.marker = 1;\n", 1)).unwrap();
    let out = lab.deploy(&["node1"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("building 'node1' failed") && text(&out).contains("confctl.marker"),
        "{}",
        text(&out)
    );
    assert_eq!(lab.realpath("node1.lab", "/run/current-system"), node1_a);

    // an activation that fails is rolled back; the profile is not touched
    std::fs::write(&cfg, text_a.replacen("\n{\n", "\n{\n  lab.failActivation = true;\n", 1))
        .unwrap();
    let report = lab.failing_deploy(&["node1"]);
    assert_eq!(report.machine("node1")["state"], "failed", "{report}");
    assert_eq!(report.machine("node1")["phase"], "activate");
    assert!(
        report.machine("node1")["error"].as_str().unwrap().contains("switched back"),
        "{report}"
    );
    assert_eq!(
        lab.realpath("node1.lab", "/run/current-system"),
        node1_a,
        "still on the previous system"
    );
    assert_eq!(lab.realpath("node1.lab", "/nix/var/nix/profiles/system"), node1_a);
    // the same without auto-rollback: carrier activates the previous system again
    let report = lab.failing_deploy(&["node1", "--disable-auto-rollback"]);
    assert_eq!(report.machine("node1")["phase"], "activate", "{report}");
    assert!(report.machine("node1")["error"].as_str().unwrap().contains("rolled back"), "{report}");
    assert_eq!(lab.realpath("node1.lab", "/run/current-system"), node1_a);
    assert_eq!(lab.realpath("node1.lab", "/nix/var/nix/profiles/system"), node1_a);
    std::fs::write(&cfg, text_a).unwrap();

    // a changed host key is refused before anything is copied
    let known = lab.dir().join("known_hosts");
    let original = file(&known);
    let other = lab.host_root("node2.lab");
    let node2_key = std::fs::read_dir(&other)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pub"))
        .map(|p| file(&p))
        .expect("node2's host public key");
    let forged: String = original
        .lines()
        .map(|l| {
            if l.starts_with("node1.lab ") {
                format!("node1.lab {}", node2_key.trim())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&known, forged + "\n").unwrap();
    let out = lab.deploy(&["node1"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("host key"), "{}", text(&out));
    std::fs::write(&known, original).unwrap();

    // a copy that fails (node2's store cannot take new paths) activates nothing anywhere
    ok(&lab.deploy(&["node2"]));
    let node2_a = lab.generation("node2").1;
    lab.set_marker("C");
    let store = lab.host_root("node2.lab").join("nix/store");
    let _unfreeze = Unfreeze(store.clone());
    assert!(Command::new("chattr").arg("+i").arg(&store).status().unwrap().success());
    let report = lab.failing_deploy(&["{node1,node2}"]);
    assert_eq!(report.machine("node2")["state"], "failed", "{report}");
    assert_eq!(report.machine("node2")["phase"], "copy");
    assert_eq!(report.machine("node1")["state"], "not-attempted", "{report}");
    assert_eq!(
        lab.realpath("node1.lab", "/run/current-system"),
        node1_a,
        "node1 was copied, not switched"
    );
    assert_eq!(lab.realpath("node2.lab", "/run/current-system"), node2_a);
    drop(_unfreeze);
    lab.set_marker("A");

    // an unreachable host fails its machine; the reachable one in the same run deploys
    let lab_json: serde_json::Value =
        serde_json::from_str(&file(&lab.dir().join("lab.json"))).unwrap();
    let node2 =
        lab_json["hosts"].as_array().unwrap().iter().find(|h| h["alias"] == "node2.lab").unwrap();
    let pid = node2["pid"].as_i64().unwrap() as i32;
    Command::new("kill").arg(pid.to_string()).status().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let report = lab.failing_deploy(&["{node1,node2}"]);
    assert_eq!(report.machine("node2")["state"], "failed", "{report}");
    assert_eq!(report.machine("node2")["phase"], "status");
    assert!(
        matches!(report.machine("node1")["state"].as_str(), Some("current" | "deployed")),
        "{report}"
    );
}

/// boot, test and dry-activate do what spec 2.3 says; a failing health check fails the
/// machine and says it changed.
#[test]
fn actions_and_health_checks() {
    let lab = Lab::up();
    ok(&lab.deploy(&["node2"]));
    let (_, a) = lab.generation("node2");
    lab.set_marker("B");
    ok(&lab.deploy(&["--build-only", "node2"]));
    let (gen_b, b) = lab.generation("node2");

    ok(&lab.deploy(&["-g", &gen_b, "node2", "dry-activate"]));
    assert_eq!(lab.realpath("node2.lab", "/run/current-system"), a, "dry-activate changes nothing");
    assert_eq!(lab.realpath("node2.lab", "/nix/var/nix/profiles/system"), a);

    ok(&lab.deploy(&["-g", &gen_b, "node2", "boot"]));
    assert_eq!(lab.realpath("node2.lab", "/run/current-system"), a, "boot does not switch");
    assert_eq!(
        lab.realpath("node2.lab", "/nix/var/nix/profiles/system"),
        b,
        "boot sets the profile"
    );

    let out = lab.deploy(&["-g", &gen_b, "node2", "test", "--dry-activate-first"]);
    ok(&out);
    assert_eq!(lab.realpath("node2.lab", "/run/current-system"), b, "test switches");
    let log = lab.ssh("node2.lab", &["cat", "/run/carrier-activations.log"]);
    assert!(log.contains(&format!("test {b}")), "{log}");

    let out = lab.deploy(&["-g", &gen_b, "node2", "reboot"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("invalid action 'reboot'"), "{}", text(&out));

    // a machine command that keeps failing: the machine runs B and the report says so
    let module = lab.conf().join("cluster/node2/module.nix");
    let m = file(&module).replace(
        "{ name = \"node2\"; };",
        "{ name = \"node2\"; } // { healthChecks = { systemd.enable = false; \
         machineCommands = [ { description = \"marker\"; command = [ \"cat\" \"/etc/no-such-file\" ]; timeout = 2; cooldown = 1; } ]; }; };",
    );
    assert!(m.contains("no-such-file"), "{m}");
    std::fs::write(&module, m).unwrap();
    lab.set_marker("C");
    let report = lab.failing_deploy(&["node2"]);
    let r = report.machine("node2");
    assert_eq!(r["state"], "failed", "{report}");
    assert_eq!(r["phase"], "health-check");
    assert_eq!(r["changed"], true);
    assert!(r["error"].as_str().unwrap().contains("marker: exit status 1"), "{report}");
    let c = lab.generation("node2").1;
    assert_ne!(c, b);
    assert_eq!(
        lab.realpath("node2.lab", "/run/current-system"),
        c,
        "the new system stays; the report says it failed"
    );
}

/// A new system that cuts the deployer off: the confirmation never arrives, and the
/// target switches back to its previous system by itself (spec 2.3, auto-rollback).
#[test]
fn unconfirmed_activation_rolls_back_by_itself() {
    let lab = Lab::up();
    ok(&lab.deploy(&["node2"]));
    let (_, a) = lab.generation("node2");

    let module = lab.conf().join("cluster/node2/module.nix");
    let m = file(&module).replace(
        "{ name = \"node2\"; };",
        "{ name = \"node2\"; } // { autoRollback.timeout = 3; };",
    );
    std::fs::write(&module, m).unwrap();
    let cfg = lab.conf().join("cluster/node2/config.nix");
    std::fs::write(&cfg, file(&cfg).replacen("\n{\n", "\n{\n  lab.dropDeployer = true;\n", 1))
        .unwrap();

    let report = lab.failing_deploy(&["node2"]);
    let r = report.machine("node2");
    assert_eq!(r["state"], "failed", "{report}");
    assert_eq!(r["phase"], "activate");
    assert!(r["error"].as_str().unwrap().contains("switches back by itself"), "{report}");
    let b = lab.generation("node2").1;
    assert_ne!(a, b);

    // the target gave up waiting after 3 s and activated the previous system again
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while lab.realpath("node2.lab", "/run/current-system") != a {
        assert!(std::time::Instant::now() < deadline, "node2 did not switch back");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let log = lab.ssh("node2.lab", &["cat", "/run/carrier-activations.log"]);
    assert!(
        log.contains(&format!("switch {b}")) && log.trim_end().ends_with(&format!("switch {a}")),
        "{log}"
    );
    assert_eq!(
        lab.realpath("node2.lab", "/nix/var/nix/profiles/system"),
        a,
        "the profile was never set"
    );
}

/// Live processes whose command line is exactly `argv` (joined by spaces).
fn processes(argv: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let c = std::fs::read(e.path().join("cmdline")).ok()?;
            (String::from_utf8_lossy(&c).replace('\0', " ").trim() == argv).then_some(pid)
        })
        .collect()
}

/// Ends the process `pid` when dropped (also when a test fails) if it still runs `argv`.
struct EndIfStill(u32, &'static str);

impl Drop for EndIfStill {
    fn drop(&mut self) {
        if processes(self.1).contains(&self.0) {
            let _ = Command::new("kill").arg(self.0.to_string()).status();
        }
    }
}

/// One machine, three deploys at once: A's new system cuts A off (its auto-rollback is
/// in flight, unconfirmed), B deploys another generation from a second copy of the
/// configuration, C the same as B from A's configuration directory, started while A
/// runs. B waits on the host until A's activation has switched back; C waits for A's
/// lock of the directory. Host, profile and every report agree at the end.
#[test]
fn concurrent_deploys_of_one_machine_take_turns() {
    let lab = Lab::up();
    ok(&lab.deploy(&["node2"]));
    let a = lab.generation("node2").1;

    // A: a system that drops the deployer; the target switches back after 8 s
    let module = lab.conf().join("cluster/node2/module.nix");
    let m = file(&module).replace(
        "{ name = \"node2\"; };",
        "{ name = \"node2\"; } // { autoRollback.timeout = 8; };",
    );
    std::fs::write(&module, m).unwrap();
    let cfg = lab.conf().join("cluster/node2/config.nix");
    let plain = file(&cfg);
    std::fs::write(&cfg, plain.replacen("\n{\n", "\n{\n  lab.dropDeployer = true;\n", 1)).unwrap();
    ok(&lab.deploy(&["--build-only", "node2"]));
    let (gen_b, b) = lab.generation("node2");
    // C: system c from A's configuration directory
    std::fs::write(&cfg, plain).unwrap();
    lab.set_marker("C");
    ok(&lab.deploy(&["--build-only", "node2"]));
    let (gen_c1, c) = lab.generation("node2");
    // B: the same system from a second copy of the configuration (another operator)
    let conf2 = lab.tmp().join("conf2");
    let out = Command::new("cp").arg("-r").arg(lab.conf()).arg(&conf2).output().unwrap();
    ok(&out);
    let _ = std::fs::remove_dir_all(conf2.join(".confctl"));
    let deploy2 = |args: &[&str]| {
        let mut cmd = lab.cli(&conf2, "cache2").command(&["deploy", "-y", "--json"]);
        cmd.args(args);
        cmd
    };
    ok(&deploy2(&["--build-only", "node2"]).output().unwrap());
    let gen_c2 = std::fs::read_link(conf2.join(".confctl/generations/node2/current")).unwrap();
    let gen_c2 = gen_c2.file_name().unwrap().to_str().unwrap().to_string();
    ok(&deploy2(&["--copy-only", "-g", &gen_c2, "node2"]).output().unwrap());

    let spawn = |conf: &Path, cache: &str, generation: &str| {
        let mut cmd =
            lab.cli(conf, cache).command(&["deploy", "-y", "--json", "-g", generation, "node2"]);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let child_a = spawn(&lab.conf(), "cache", &gen_b);
    let pid_a = child_a.id();
    // C starts once A holds the configuration directory (without a lock: after 10 s)
    let lock = lab.conf().join(".confctl/deploy.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&lock).unwrap_or_default().contains(&format!("(pid {pid_a})"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let child_c = spawn(&lab.conf(), "cache", &gen_c1);
    // B starts once A's system is active (and has cut A off)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !lab
        .ssh("node2.lab", &["cat", "/run/carrier-activations.log"])
        .contains(&format!("switch {b}"))
    {
        assert!(std::time::Instant::now() < deadline, "A never switched");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let child_b = spawn(&conf2, "cache2", &gen_c2);
    let out_a = child_a.wait_with_output().unwrap();
    let (out_b, out_c) = (child_b.wait_with_output().unwrap(), child_c.wait_with_output().unwrap());

    let report = |o: &Output| {
        Report(serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o))))
    };
    let (ra, rb, rc) = (report(&out_a), report(&out_b), report(&out_c));
    // A: failed, the host switched back by itself: A changed nothing
    assert_eq!(ra.machine("node2")["state"], "failed", "{ra}");
    assert_eq!(ra.machine("node2")["changed"], false, "{ra}");
    // B deployed c; whichever of B and C came first to the host waited there for A's
    // unconfirmed activation, naming it (the other one waited for the first)
    assert_eq!(rb.machine("node2")["state"], "deployed", "{rb}\n{}", text(&out_b));
    let waited =
        format!("waiting for the activation lock on node2.lab, held by: activation of {b}");
    assert!(
        text(&out_b).contains(&waited) || text(&out_c).contains(&waited),
        "B: {}\nC: {}",
        text(&out_b),
        text(&out_c)
    );
    // C waited for A's lock on the configuration directory, naming A
    assert!(
        text(&out_c).contains(&format!("held by: carrier deploy (pid {pid_a})")),
        "{}",
        text(&out_c)
    );
    assert!(matches!(rc.machine("node2")["state"].as_str(), Some("current" | "deployed")), "{rc}");
    // the host runs c, its profile says c, and no switch back comes after
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(lab.realpath("node2.lab", "/run/current-system"), c);
    assert_eq!(lab.realpath("node2.lab", "/nix/var/nix/profiles/system"), c);
    let log = lab.ssh("node2.lab", &["cat", "/run/carrier-activations.log"]);
    assert!(log.trim_end().ends_with(&format!("switch {c}")), "{log}");
    assert_ne!(a, c);
    let conf2 = ConfDir::resolve(&conf2).unwrap();
    let _ = std::fs::remove_dir_all(carrier_core::build::default_gc_roots_dir(&conf2));
}

/// The switch succeeds, setting the system profile does not: the machine runs the new
/// system and the report says it changed.
#[test]
fn a_failed_profile_set_after_a_switch_reports_changed() {
    let lab = Lab::up();
    ok(&lab.deploy(&["node1"]));
    let a = lab.generation("node1").1;
    lab.set_marker("B");
    ok(&lab.deploy(&["--build-only", "node1"]));
    let b = lab.generation("node1").1;
    let profiles = lab.host_root("node1.lab").join("nix/var/nix/profiles");
    let _unfreeze = Unfreeze(profiles.clone());
    assert!(Command::new("chattr").arg("+i").arg(&profiles).status().unwrap().success());
    let report = lab.failing_deploy(&["-g", &lab.generation("node1").0, "node1"]);
    drop(_unfreeze);
    let r = report.machine("node1");
    assert_eq!(r["phase"], "activate", "{report}");
    assert!(r["error"].as_str().unwrap().contains("setting the system profile"), "{report}");
    assert_eq!(lab.realpath("node1.lab", "/run/current-system"), b);
    assert_eq!(lab.realpath("node1.lab", "/nix/var/nix/profiles/system"), a);
    assert_eq!(r["changed"], true, "{report}");
}

/// Health check commands that hang are killed when their timeout passes, here and on
/// the target, and the check fails saying so.
#[test]
fn hung_health_checks_are_killed_at_their_timeout() {
    let lab = Lab::up();
    let module = lab.conf().join("cluster/node1/module.nix");
    let m = file(&module).replace(
        "{ name = \"node1\"; };",
        "{ name = \"node1\"; } // { healthChecks = { systemd.enable = false; \
         builderCommands = [ { description = \"local\"; command = [ \"sleep\" \"37.5\" ]; timeout = 2; cooldown = 1; } ]; \
         machineCommands = [ { description = \"remote\"; command = [ \"sleep\" \"38.5\" ]; timeout = 2; cooldown = 1; } ]; }; };",
    );
    assert!(m.contains("38.5"), "{m}");
    std::fs::write(&module, m).unwrap();
    let started = std::time::Instant::now();
    let report = lab.failing_deploy(&["node1"]);
    let r = report.machine("node1");
    assert_eq!(r["phase"], "health-check", "{report}");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("local: `sleep 37.5` did not finish within 2 s"), "{report}");
    assert!(error.contains("remote: `sleep 38.5` did not finish within 2 s"), "{report}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "took {:?}", started.elapsed());
    assert_eq!(processes("sleep 37.5"), Vec::<u32>::new(), "the local check was killed");
    assert_eq!(processes("sleep 38.5"), Vec::<u32>::new(), "the remote check was killed");
}

/// The carrier's netboot build fails after the profile was set: the next deploy of the
/// same generation is not skipped as current, and brings the netboot tree up to date.
#[test]
fn a_failed_netboot_build_is_not_current() {
    let lab = Lab::up();
    ok(&lab.deploy(&["--build-only", "pxe#node1"]));
    let (generation, dist) = lab.generation("pxe#node1");
    let netboot_json = lab.host_root("pxe.lab").join("etc/carrier/netboot.json");
    let good = file(&netboot_json);
    std::fs::write(&netboot_json, "{ broken").unwrap();
    let report = lab.failing_deploy(&["-g", &generation, "pxe#node1"]);
    let r = report.machine("pxe#node1");
    assert_eq!(r["phase"], "carried-profile", "{report}");
    assert_eq!(r["changed"], true, "{report}");
    assert_eq!(lab.realpath("pxe.lab", "/nix/var/nix/profiles/confctl-node1"), dist);

    std::fs::write(&netboot_json, good).unwrap();
    let out = lab.deploy(&["-g", &generation, "pxe#node1"]);
    ok(&out);
    assert!(!text(&out).contains("Skipping pxe#node1"), "{}", text(&out));
    assert!(
        text(&out).contains("the carrier's on-change hooks have not succeeded since"),
        "{}",
        text(&out)
    );
    assert_eq!(lab.netboot_generation("node1.lab"), (1, dist), "the netboot tree follows");
    // now it is current
    let out = lab.deploy(&["-g", &generation, "pxe#node1"]);
    ok(&out);
    assert!(
        text(&out).contains("Skipping pxe#node1: already using target generation"),
        "{}",
        text(&out)
    );
}

/// Activations that hang. Without auto-rollback the command is killed on the host at
/// the deadline and the previous system activated again. With it, the run reports the
/// hang and what it left running; that keeps the host's activation lock, so the next
/// deploy gives up naming it; once the hung activation ends, the target switches back.
#[test]
fn hung_activations_are_reported_with_what_was_left_running() {
    let lab = Lab::up();
    ok(&lab.deploy(&["node2"]));
    let (gen_a, a) = lab.generation("node2");
    let cfg = lab.conf().join("cluster/node2/config.nix");
    std::fs::write(&cfg, file(&cfg).replacen("\n{\n", "\n{\n  lab.hangActivation = true;\n", 1))
        .unwrap();
    ok(&lab.deploy(&["--build-only", "node2"]));
    let (gen_b, b) = lab.generation("node2");
    let hung = "/bin/busybox sleep 3600";

    let started = std::time::Instant::now();
    let report = lab.failing_deploy(&[
        "-g",
        &gen_b,
        "--disable-auto-rollback",
        "--command-timeout",
        "3",
        "node2",
    ]);
    let r = report.machine("node2");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("switch-to-configuration switch` did not finish within 3 s and was killed (on node2.lab)"), "{report}");
    assert!(error.contains("rolled back"), "{report}");
    assert_eq!(r["changed"], false, "{report}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "took {:?}", started.elapsed());
    assert_eq!(lab.realpath("node2.lab", "/run/current-system"), a);
    assert_eq!(processes(hung), Vec::<u32>::new(), "killed on the host");

    let report = lab.failing_deploy(&["-g", &gen_b, "--command-timeout", "3", "node2"]);
    let r = report.machine("node2");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("the activation hung: still 'switching' after 3 s; left running on node2.lab: `sh /nix/store/"), "{report}");
    assert!(error.contains("switches back by itself"), "{report}");
    assert_eq!(r["changed"], true, "{report}");
    assert_eq!(lab.realpath("node2.lab", "/run/current-system"), b);
    let left = processes(hung);
    assert_eq!(left.len(), 1, "the hung activation is left running");
    let _cleanup = EndIfStill(left[0], hung);

    // the host runs b, but that activation is in flight: a deploy of b is not skipped
    let report = lab.failing_deploy(&["-g", &gen_b, "--lock-timeout", "2", "node2", "test"]);
    assert!(
        report.machine("node2")["error"]
            .as_str()
            .unwrap()
            .contains("waiting for the activation lock"),
        "{report}"
    );
    let report = lab.failing_deploy(&["-g", &gen_a, "--lock-timeout", "2", "node2"]);
    let error = report.machine("node2")["error"].as_str().unwrap().to_string();
    assert!(
        error.contains(&format!("timed out after 2 s waiting for the activation lock on node2.lab, held by: activation of {b}")),
        "{report}"
    );

    // the hung activation ends (here: its sleep is killed): the target switches back
    drop(_cleanup);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while lab.realpath("node2.lab", "/run/current-system") != a {
        assert!(std::time::Instant::now() < deadline, "node2 did not switch back");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    ok(&lab.deploy(&["-g", &gen_a, "node2"]));
}

/// `deploy --reboot --wait-online 60` against a lab host: the lab's `reboot` restarts the
/// host's sshd (lab.json records the new PID and the reboot), the host's uptime reads
/// lower, the deploy waits for it and records node1 deployed, and node1 then runs what
/// it was deployed with `boot`. A carried machine is reported as needing a netboot reboot.
#[test]
fn deploy_reboot_waits_until_the_lab_host_is_back() {
    let lab = Lab::up();
    ok(&lab.deploy(&["node1"]));
    let host = |alias: &str| -> serde_json::Value {
        let record: serde_json::Value =
            serde_json::from_str(&file(&lab.dir().join("lab.json"))).unwrap();
        record["hosts"].as_array().unwrap().iter().find(|h| h["alias"] == alias).unwrap().clone()
    };
    let uptime = || -> f64 {
        let text = lab.ssh("node1.lab", &["cat", "/proc/uptime"]);
        text.split_whitespace().next().unwrap().parse().unwrap()
    };
    assert_eq!(host("node1.lab")["reboots"], 0);
    let pid = host("node1.lab")["pid"].clone();
    lab.0.set_marker(&["node1"], "R");
    let before = uptime();

    let out = lab.deploy(&["--reboot", "--wait-online", "60", "{node1,pxe#node1}", "boot"]);
    let output = text(&out);
    assert!(out.status.success(), "{output}");
    assert!(output.contains("node1 (node1.lab) is online (took "), "{output}");
    assert!(
        output.contains("Skipping reboot of carried machine pxe#node1: it needs a netboot reboot"),
        "{output}"
    );
    let after = host("node1.lab");
    assert_eq!(after["reboots"], 1, "{after}");
    assert_ne!(after["pid"], pid, "a new sshd");
    assert!(uptime() < before, "the uptime starts again");
    let (_, toplevel) = lab.generation("node1");
    assert_eq!(lab.realpath("node1.lab", "/run/current-system"), toplevel, "booted into it");
    assert_eq!(lab.realpath("node1.lab", "/run/booted-system"), toplevel);

    let history = lab.carrier(&["history", "--json", "--limit", "1"]);
    let runs: serde_json::Value = serde_json::from_str(&ok(&history)).unwrap();
    let run = &runs[0];
    assert_eq!((run["action"].as_str(), run["success"].as_bool()), (Some("boot"), Some(true)));
    assert_eq!(run["options"]["reboot"], true, "{run}");
    let node1 = run["machines"].as_array().unwrap().iter().find(|m| m["machine"] == "node1");
    assert_eq!(node1.unwrap()["state"], "deployed", "{run}");

    // the lab is still whole: status sees the new sshd, down stops it
    ok(&lab.carrier(&["lab", "status", "--dir", lab.dir().to_str().unwrap()]));
}
