//! The operator's commands around deploys against real lab hosts (sshd in mount
//! namespaces, real ssh): `carrier test-connection`. Needs root, sshd and ssh-keygen
//! (scripts/setup); traffic stays on 127.0.0.1.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::cli::{Carrier, ok, text};
use support::processes::run;

const TIMEOUT: Duration = Duration::from_secs(60);

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/lab")
}

/// A lab up in a tempdir; dropping it runs `carrier lab down --purge`, panics included.
struct Lab {
    tmp: tempfile::TempDir,
}

impl Lab {
    fn up() -> Self {
        let lab = Lab { tmp: tempfile::tempdir().unwrap() };
        ok(&lab.lab(&["up"]));
        lab
    }

    fn carrier(&self) -> Carrier {
        Carrier::new()
            .conf(fixture())
            .cache(self.tmp.path().join("cache"))
            .ssh_config(self.tmp.path().join("lab/ssh_config"))
    }

    fn lab(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = self.carrier().command(&["lab"]);
        cmd.args(args).arg("--dir").arg(self.tmp.path().join("lab"));
        run(&mut cmd, TIMEOUT).unwrap()
    }

    /// The PID of the sshd simulating `alias`, as `lab up` recorded it.
    fn sshd_pid(&self, alias: &str) -> u64 {
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.tmp.path().join("lab/lab.json")).unwrap(),
        )
        .unwrap();
        let hosts = record["hosts"].as_array().unwrap();
        let host = hosts.iter().find(|h| h["alias"] == alias).unwrap();
        host["pid"].as_u64().unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.lab(&["down", "--purge"]);
    }
}

#[test]
fn test_connection_names_the_unreachable_host_and_fails() {
    let lab = Lab::up();
    let out = ok(&lab.carrier().output(&["test-connection"]));
    for machine in ["node1", "node2", "pxe"] {
        assert!(out.contains(&format!("{machine}: reachable (up ")), "{out}");
    }
    assert!(out.contains("Result: 3 successful, 0 failed"), "{out}");

    // node2's host goes away: its sshd, started by this test's `lab up`, by its PID
    let pid = lab.sshd_pid("node2.lab").to_string();
    ok(&run(Command::new("kill").arg(&pid), TIMEOUT).unwrap());
    let o = lab.carrier().output(&["test-connection"]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(out.contains("node1: reachable (up "), "{out}");
    assert!(out.contains("node2: unreachable: cannot connect to node2.lab"), "{out}");
    assert!(out.contains("Result: 2 successful, 1 failed\nFailed machines:\n  node2\n"), "{out}");

    // carried machines are reached through their carrier only
    let o = lab.carrier().output(&["test-connection", "pxe#*"]);
    assert!(!o.status.success());
    let err = text(&o);
    assert!(
        err.contains("skipping pxe#node1: a carried machine is reached only through its carrier"),
        "{err}"
    );
    assert!(err.contains("no runnable machines selected"), "{err}");
}
