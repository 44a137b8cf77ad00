//! The `carrier` binary as a user runs it, against examples/cluster and real Nix.

use std::path::PathBuf;
use std::process::{Command, Output};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster")
}

fn carrier(args: &[&str], cache: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_carrier"))
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn ls_prints_the_managed_machines_table() {
    let tmp = tempfile::tempdir().unwrap();
    let out = stdout(&carrier(&["-C", example().to_str().unwrap(), "ls"], tmp.path()));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["NAME", "SPIN", "HOST.FQDN"]);
    assert!(lines.iter().any(|l| l.starts_with("pxe-server#node1 ") && l.contains("vpsadminos") && l.ends_with("node1.prg.example.org")), "{out}");
    assert!(lines.iter().any(|l| l.starts_with("pxe-server ")), "{out}");
}

#[test]
fn ls_json_records_and_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = example();
    let out = stdout(&carrier(&["-C", conf.to_str().unwrap(), "ls", "pxe-server#*", "--json"], tmp.path()));
    let records: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = records.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["pxe-server#node1", "pxe-server#rescue"]);
    assert_eq!(records[0]["carrier"], "pxe-server");
    assert_eq!(records[0]["clusterName"], "prg/node1");
    assert_eq!(records[0]["alias"], "node1");
    assert_eq!(records[0]["profile"], "/nix/var/nix/profiles/confctl-node1");
    assert_eq!(records[0]["metaConfig"]["buildAttribute"], serde_json::json!(["system", "build", "dist"]));
    assert_eq!(records[0]["runnable"], false);

    let out = stdout(&carrier(
        &["-C", conf.to_str().unwrap(), "ls", "--managed", "all", "--tag", "netboot", "--tag", "^rescue", "-o", "name,labels.boot", "--json"],
        tmp.path(),
    ));
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows, serde_json::json!([{"name": "pxe-server#node1", "labels.boot": "pxe"}]));
}

#[test]
fn bad_arguments_name_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = example();
    let o = carrier(&["-C", conf.to_str().unwrap(), "ls", "--attr", "nonsense"], tmp.path());
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid --attr 'nonsense'"));
    let o = carrier(&["-C", conf.to_str().unwrap(), "ls", "--managed", "maybe"], tmp.path());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid --managed 'maybe'"));
    let o = carrier(&["-C", tmp.path().join("nowhere").to_str().unwrap(), "ls"], tmp.path());
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nowhere/cluster' does not exist"));
}

#[test]
fn missing_nix_says_how_to_install_it() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_carrier"))
        .env("PATH", tmp.path())
        .args(["--cache-dir", tmp.path().to_str().unwrap(), "-C", example().to_str().unwrap(), "ls"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Nix is not installed") && err.contains("apt-get install"), "{err}");
}
