//! `carrier lab up|status|down` end to end: real sshd in mount namespaces, real ssh, real
//! Nix copying closures to the simulated hosts. Needs root (unshare, mount), sshd,
//! ssh-keygen and nix (scripts/setup); traffic stays on 127.0.0.1.

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::cli::{Carrier, ok};
use support::processes::{run, run_ok};

const TIMEOUT: Duration = Duration::from_secs(60);

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/lab")
}

/// A lab state directory in a tempdir; dropping it runs `carrier lab down --purge`, so
/// no sshd outlives the test, panics included.
struct Lab {
    tmp: tempfile::TempDir,
}

impl Lab {
    fn new() -> Self {
        Lab { tmp: tempfile::tempdir().unwrap() }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("lab")
    }

    fn carrier(&self, args: &[&str]) -> Output {
        let mut cmd =
            Carrier::new().conf(fixture()).cache(self.tmp.path().join("cache")).command(&["lab"]);
        cmd.args(args).arg("--dir").arg(self.dir());
        run(&mut cmd, TIMEOUT).unwrap()
    }

    fn ssh(&self, alias: &str, command: &[&str]) -> Output {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F").arg(self.dir().join("ssh_config")).arg(alias).args(command);
        run(&mut cmd, TIMEOUT).unwrap()
    }

    fn record(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir().join("lab.json")).unwrap())
            .unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.carrier(&["down", "--purge"]);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Running and not a zombie (PID 1 of some containers never reaps).
fn pid_alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')').is_some_and(|(_, r)| !r.trim_start().starts_with(['Z', 'X']))
    })
}

/// Every running process whose command line mentions `needle`.
fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()))
        .filter(|pid| pid_alive(*pid))
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = text(&cmd).replace('\0', " ");
            cmd.contains(&needle).then(|| format!("{pid}: {cmd}"))
        })
        .collect()
}

/// A new store path on the developer's store, unique to this run.
fn tiny_store_path(dir: &Path) -> String {
    let file = dir.join("lab-payload");
    std::fs::write(&file, format!("lab payload {:?}\n", std::time::SystemTime::now())).unwrap();
    let out = run(Command::new("nix-store").arg("--add").arg(&file), TIMEOUT).unwrap();
    ok(&out).trim().to_string()
}

#[test]
fn lab_hosts_are_real_ssh_and_nix_hosts() {
    let lab = Lab::new();
    let out = lab.carrier(&["up"]);
    let ssh_config = lab.dir().join("ssh_config");
    assert_eq!(ok(&out), format!("export CARRIER_SSH_CONFIG={}\n", ssh_config.display()));

    let record = lab.record();
    let hosts = record["hosts"].as_array().unwrap();
    let aliases: Vec<&str> = hosts.iter().map(|h| h["alias"].as_str().unwrap()).collect();
    assert_eq!(aliases, ["node1.lab", "node2.lab", "pxe.lab"]);
    let carriers: Vec<bool> = hosts.iter().map(|h| h["carrier"].as_bool().unwrap()).collect();
    assert_eq!(carriers, [false, false, true]);
    assert_eq!(record["sshConfig"], ssh_config.display().to_string());
    let pids: Vec<u64> = hosts.iter().map(|h| h["pid"].as_u64().unwrap()).collect();

    // Every host answers over ssh, in its own UTS namespace, with its Nix database in
    // place, as a real host (concurrent first copies to a host without one fail with
    // "SQLite database is busy").
    for alias in &aliases {
        assert!(
            lab.dir().join("hosts").join(alias).join("nix/var/nix/db/db.sqlite").is_file(),
            "{alias}"
        );
        let uptime = ok(&lab.ssh(alias, &["cat", "/proc/uptime"]));
        assert!(uptime.split_whitespace().all(|f| f.parse::<f64>().is_ok()), "{alias}: {uptime:?}");
        assert_eq!(ok(&lab.ssh(alias, &["hostname"])).trim(), *alias);
    }

    // Each host has its own /nix: a copied closure lands on node1 only.
    let path = tiny_store_path(lab.tmp.path());
    let base = Path::new(&path).file_name().unwrap().to_owned();
    let mut copy = Command::new("nix-copy-closure");
    copy.args(["--to", "node1.lab", &path])
        .env("NIX_SSHOPTS", format!("-F {}", ssh_config.display()));
    ok(&run(&mut copy, TIMEOUT).unwrap());
    ok(&lab.ssh("node1.lab", &["test", "-e", &path]));
    assert!(lab.dir().join("hosts/node1.lab/nix/store").join(&base).exists());
    assert!(!lab.dir().join("hosts/node2.lab/nix/store").join(&base).exists());
    let o = lab.ssh("node2.lab", &["test", "-e", &path]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));

    // The running carrier is on the PATH; only carriers get the carrier settings.
    assert!(ok(&lab.ssh("pxe.lab", &["carrier", "--version"])).starts_with("carrier "));
    let host_json = lab.dir().join("hosts/pxe.lab/etc/carrier/host.json");
    assert_eq!(
        ok(&lab.ssh("pxe.lab", &["printenv", "CARRIER_HOST_CONFIG"])).trim(),
        host_json.display().to_string()
    );
    assert_eq!(lab.ssh("node1.lab", &["printenv", "CARRIER_HOST_CONFIG"]).status.code(), Some(1));
    ok(&lab.ssh("pxe.lab", &["carrier", "profile", "list", "--json"]));

    // A host presenting another key than known_hosts says is refused.
    let known_hosts = lab.dir().join("known_hosts");
    let original = std::fs::read_to_string(&known_hosts).unwrap();
    let other = lab.tmp.path().join("other_key");
    ok(&run(
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other),
        TIMEOUT,
    )
    .unwrap());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let forged: String = original
        .lines()
        .map(|l| {
            if l.starts_with("node1.lab ") {
                format!(
                    "node1.lab {}\n",
                    other_pub.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
                )
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&known_hosts, forged).unwrap();
    let o = lab.ssh("node1.lab", &["true"]);
    std::fs::write(&known_hosts, &original).unwrap();
    assert!(!o.status.success());
    let stderr = text(&o.stderr);
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
    ok(&lab.ssh("node1.lab", &["true"]));

    // status: every host alive.
    let status: Value = serde_json::from_str(&ok(&lab.carrier(&["status", "--json"]))).unwrap();
    assert!(status.as_array().unwrap().iter().all(|h| h["alive"] == true), "{status}");
    let table = ok(&lab.carrier(&["status"]));
    assert!(
        table.lines().any(|l| l.starts_with("pxe.lab ") && l.ends_with("yes    yes")),
        "{table}"
    );

    // A second up refuses and names the running hosts.
    let o = lab.carrier(&["up"]);
    assert!(!o.status.success());
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("already up") && stderr.contains(&format!("pxe.lab pid {}", pids[2])),
        "{stderr}"
    );

    // down stops exactly the recorded sshds.
    ok(&lab.carrier(&["down"]));
    for pid in &pids {
        assert!(!pid_alive(*pid), "pid {pid} still runs");
    }
    assert!(processes_mentioning(&lab.dir()).is_empty(), "{:?}", processes_mentioning(&lab.dir()));
    assert!(!lab.dir().join("lab.json").exists());
    let o = lab.carrier(&["down"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("no lab is up in"), "{}", text(&o.stderr));
    assert!(!lab.carrier(&["status"]).status.success());

    // Up again in the same directory: same host keys, node1's /nix kept; then purge.
    ok(&lab.carrier(&["up"]));
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), original);
    ok(&lab.ssh("node1.lab", &["test", "-e", &path]));
    ok(&lab.carrier(&["down", "--purge"]));
    assert!(
        !lab.dir().exists(),
        "purge leaves {:?}",
        std::fs::read_dir(lab.dir()).map(|d| d.count())
    );
}

#[test]
fn a_host_that_fails_to_start_stops_the_others() {
    let lab = Lab::new();
    // A broken host key for node2: its sshd exits at once, after node1's has started.
    let host = lab.dir().join("hosts/node2.lab");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("ssh_host_ed25519_key"), "not a key\n").unwrap();
    std::fs::write(host.join("ssh_host_ed25519_key.pub"), "ssh-ed25519 AAAAbroken lab\n").unwrap();
    let o = lab.carrier(&["up"]);
    assert!(!o.status.success());
    let stderr = text(&o.stderr);
    assert!(stderr.contains("lab host 'node2.lab' did not start"), "{stderr}");
    assert!(stderr.contains("sshd.log"), "{stderr}");
    assert!(!lab.dir().join("lab.json").exists());
    assert!(processes_mentioning(&lab.dir()).is_empty(), "{:?}", processes_mentioning(&lab.dir()));
}

#[test]
fn state_dir_must_be_owned_by_the_caller_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new();
    std::fs::create_dir(lab.dir()).unwrap();
    std::fs::set_permissions(lab.dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = lab.carrier(&["up"]);
    assert!(!o.status.success(), "a world-writable state directory was used");
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains(&format!("'{}'", lab.dir().display())) && stderr.contains("writable by"),
        "{stderr}"
    );
    assert!(processes_mentioning(&lab.dir()).is_empty(), "{:?}", processes_mentioning(&lab.dir()));
    assert!(!lab.dir().join("hosts").exists(), "nothing written");

    std::fs::set_permissions(lab.dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(lab.dir(), Some(65534), Some(65534)).unwrap();
    let o = lab.carrier(&["up"]);
    assert!(!o.status.success(), "another user's state directory was used");
    let stderr = text(&o.stderr);
    assert!(stderr.contains("owned by uid 65534"), "{stderr}");
    assert!(!lab.dir().join("hosts").exists(), "nothing written");
    std::os::unix::fs::chown(lab.dir(), Some(0), Some(0)).unwrap();
}

#[test]
fn files_are_never_written_through_planted_links() {
    let lab = Lab::new();
    let victims = lab.tmp.path().join("victims");
    std::fs::create_dir_all(&victims).unwrap();
    let host = lab.dir().join("hosts/node1.lab");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::create_dir_all(lab.dir().join("nix-conf")).unwrap();
    let planted = [
        lab.dir().join("ssh_config"),
        lab.dir().join("known_hosts"),
        lab.dir().join("nix-conf/nix.conf"),
        host.join("sshd_config"),
        host.join("sshd.log"),
    ];
    for (i, link) in planted.iter().enumerate() {
        let victim = victims.join(i.to_string());
        std::fs::write(&victim, "precious\n").unwrap();
        std::os::unix::fs::symlink(&victim, link).unwrap();
    }
    ok(&lab.carrier(&["up"]));
    for (i, link) in planted.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(victims.join(i.to_string())).unwrap(),
            "precious\n",
            "{}",
            link.display()
        );
        assert!(
            link.symlink_metadata().unwrap().is_file(),
            "{} is not a regular file",
            link.display()
        );
    }
    ok(&lab.ssh("node1.lab", &["true"]));
}

#[test]
fn sshd_runs_with_strict_modes() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new();
    ok(&lab.carrier(&["up"]));
    let config = std::fs::read_to_string(lab.dir().join("hosts/node1.lab/sshd_config")).unwrap();
    assert!(config.contains("\nStrictModes yes\n"), "{config}");
    ok(&lab.ssh("node1.lab", &["true"]));
    // The host's /root/.ssh/authorized_keys, or /root, made writable by others: sshd
    // refuses the keys. (Debian's sshd tolerates group-writability when the group is
    // the user's own, as root's is, so others' write bit is what is tested.)
    let root = lab.dir().join("hosts/node1.lab/root");
    let keys = root.join(".ssh/authorized_keys");
    let log = lab.dir().join("hosts/node1.lab/sshd.log");
    for (path, open, private) in [(&keys, 0o646, 0o600), (&root, 0o757, 0o700)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(open)).unwrap();
        let o = lab.ssh("node1.lab", &["true"]);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(private)).unwrap();
        assert!(
            !o.status.success(),
            "sshd accepted keys with {} writable by others",
            path.display()
        );
        let refused = std::fs::read_to_string(&log).unwrap();
        assert!(refused.contains("Authentication refused: bad ownership or modes"), "{refused}");
        ok(&lab.ssh("node1.lab", &["true"]));
    }
}

#[test]
fn down_stops_only_processes_of_the_layout_it_computes() {
    let lab = Lab::new();
    ok(&lab.carrier(&["up"]));
    let pids: Vec<u64> = lab.record()["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["pid"].as_u64().unwrap())
        .collect();
    // An unrelated process with an sshd_config path on its command line (as the system's
    // own sshd has), which a tampered lab.json points at.
    let elsewhere = lab.tmp.path().join("elsewhere");
    // Its own process group, so that its `sleep` child ends with it; no inherited output,
    // which the test harness would wait on.
    let mut victim = Command::new("sh")
        .args(["-c", "sleep 300; :", "sh"])
        .arg(elsewhere.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut record = lab.record();
    for (alias, root) in [("evil.lab", elsewhere.clone()), ("node1.lab", elsewhere.clone())] {
        record["hosts"].as_array_mut().unwrap().push(serde_json::json!({
            "machine": "evil", "alias": alias, "port": 1, "pid": victim.id(), "root": root, "carrier": false
        }));
    }
    std::fs::write(lab.dir().join("lab.json"), serde_json::to_string(&record).unwrap()).unwrap();

    let o = lab.carrier(&["down"]);
    let victim_alive = pid_alive(victim.id() as u64);
    let group = format!("-{}", victim.id());
    run_ok(Command::new("kill").args(["-KILL", "--", &group]), Duration::from_secs(10)).unwrap();
    victim.wait().unwrap();
    assert!(victim_alive, "down killed a process outside the lab: {}", text(&o.stderr));
    ok(&o);
    for pid in &pids {
        assert!(!pid_alive(*pid), "pid {pid} still runs");
    }
    assert!(text(&o.stderr).contains("left alone"), "{}", text(&o.stderr));
}
