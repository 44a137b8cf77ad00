//! The `carrier` binary as a user runs it, against examples/cluster and real Nix.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use support::cli::{Carrier, ok};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster")
}

/// `carrier -C examples/cluster --cache-dir <cache>`.
fn carrier(cache: &std::path::Path) -> Carrier {
    Carrier::new().conf(example()).cache(cache)
}

#[test]
fn ls_prints_the_managed_machines_table() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(&carrier(tmp.path()).output(&["ls"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["NAME", "SPIN", "HOST.FQDN"]);
    assert!(
        lines.iter().any(|l| l.starts_with("pxe-server#node1 ")
            && l.contains("vpsadminos")
            && l.ends_with("node1.prg.example.org")),
        "{out}"
    );
    assert!(lines.iter().any(|l| l.starts_with("pxe-server ")), "{out}");
}

#[test]
fn ls_json_records_and_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(&carrier(tmp.path()).output(&["ls", "pxe-server#*", "--json"]));
    let records: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> =
        records.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["pxe-server#node1", "pxe-server#rescue"]);
    assert_eq!(records[0]["carrier"], "pxe-server");
    assert_eq!(records[0]["clusterName"], "prg/node1");
    assert_eq!(records[0]["alias"], "node1");
    assert_eq!(records[0]["profile"], "/nix/var/nix/profiles/confctl-node1");
    assert_eq!(
        records[0]["metaConfig"]["buildAttribute"],
        serde_json::json!(["system", "build", "dist"])
    );
    assert_eq!(records[0]["runnable"], false);

    let out = ok(&carrier(tmp.path()).output(&[
        "ls",
        "--managed",
        "all",
        "--tag",
        "netboot",
        "--tag",
        "^rescue",
        "-o",
        "name,labels.boot",
        "--json",
    ]));
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows, serde_json::json!([{"name": "pxe-server#node1", "labels.boot": "pxe"}]));
}

#[test]
fn bad_arguments_name_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    let o = carrier(tmp.path()).output(&["ls", "--attr", "nonsense"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid --attr 'nonsense'"));
    let o = carrier(tmp.path()).output(&["ls", "--managed", "maybe"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid --managed 'maybe'"));
    let o = carrier(tmp.path()).conf(tmp.path().join("nowhere")).output(&["ls"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nowhere/cluster' does not exist"));
}

#[test]
fn missing_nix_says_how_to_install_it() {
    let tmp = tempfile::tempdir().unwrap();
    let o = carrier(tmp.path()).command(&["ls"]).env("PATH", tmp.path()).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Nix is not installed") && err.contains("apt-get install"), "{err}");
}

/// Runs `cmd` with output to files, killed after `timeout` (then the status is not success).
fn run_with_timeout(
    cmd: &mut Command,
    dir: &std::path::Path,
    timeout: std::time::Duration,
) -> (Output, bool) {
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = cmd
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + timeout;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break (status, false);
        }
        if std::time::Instant::now() >= deadline {
            child.kill().unwrap();
            break (child.wait().unwrap(), true);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    (
        Output { status, stdout: std::fs::read(out).unwrap(), stderr: std::fs::read(err).unwrap() },
        timed_out,
    )
}

#[test]
fn ls_does_not_follow_directory_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("conf");
    for (dir, name) in [("cluster/a", "a"), ("cluster/prg/b", "prg/b")] {
        std::fs::create_dir_all(conf.join(dir)).unwrap();
        std::fs::write(
            conf.join(dir).join("module.nix"),
            format!("{{ cluster.\"{name}\".spin = \"nixos\"; }}"),
        )
        .unwrap();
    }
    // Loops, and a nested `result` link into the (large) store.
    std::os::unix::fs::symlink(".", conf.join("cluster/loop")).unwrap();
    std::os::unix::fs::symlink("..", conf.join("cluster/prg/up")).unwrap();
    std::os::unix::fs::symlink("/nix/store", conf.join("cluster/a/result")).unwrap();
    std::os::unix::fs::symlink(".", conf.join("self")).unwrap();
    let mut cmd =
        Carrier::new().conf(&conf).cache(tmp.path().join("cache")).command(&["ls", "--json"]);
    let (o, timed_out) = run_with_timeout(&mut cmd, tmp.path(), std::time::Duration::from_secs(60));
    assert!(!timed_out, "`carrier ls` did not finish within 60 s");
    let records: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    let names: Vec<&str> =
        records.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "prg/b"]);
}

#[test]
fn cache_dir_must_be_private_and_never_a_shared_default() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();

    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = carrier(&open).output(&["ls"]);
    assert!(!o.status.success(), "a world-writable cache was used");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("'{}'", open.display())) && err.contains("writable by"), "{err}");
    assert!(err.contains("chmod go-w"), "{err}");
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0, "nothing written to it");

    // Owned by someone else (nobody), even if private to them.
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let o = carrier(&theirs).output(&["ls"]);
    assert!(!o.status.success(), "another user's cache was used");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("'{}'", theirs.display())) && err.contains("owned by uid 65534"),
        "{err}"
    );

    // No cache directory configured at all: an error, not a directory under $TMPDIR.
    let shared = tmp.path().join("shared-tmp");
    std::fs::create_dir(&shared).unwrap();
    let o = Carrier::new()
        .conf(example())
        .command(&["ls"])
        .env_remove("CARRIER_CACHE_DIR")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("HOME")
        .env("TMPDIR", &shared)
        .output()
        .unwrap();
    assert!(!o.status.success(), "carrier picked a cache directory by itself");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("CARRIER_CACHE_DIR") && err.contains("--cache-dir"), "{err}");
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0, "nothing written to $TMPDIR");
}

#[test]
fn reboot_needs_action_boot_and_wait_online_names_a_bad_value() {
    let tmp = tempfile::tempdir().unwrap();
    let o = carrier(tmp.path()).output(&["deploy", "-y", "--reboot", "pxe-server", "switch"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--reboot can be used only with action boot (not switch)"), "{err}");
    let o = carrier(tmp.path()).output(&["deploy", "--reboot", "--wait-online", "soon"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("invalid --wait-online 'soon'"), "{err}");
}
