//! `carrier user`, `carrier token` and `carrier audit` with the real binary on a SQLite
//! database: the first admin, passwords never from argv, a token shown once and stored
//! hashed, and an audit entry for every account and token change.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

struct Db {
    tmp: tempfile::TempDir,
}

impl Db {
    fn new() -> Db {
        let db = Db { tmp: tempfile::tempdir().unwrap() };
        std::fs::write(db.password_file(), "sup3r secret\n").unwrap();
        db
    }

    fn file(&self) -> PathBuf {
        self.tmp.path().join("carrier.sqlite")
    }

    /// Every byte the database holds: its file and its write-ahead log (where the last
    /// commits stay until a checkpoint).
    fn bytes(&self) -> Vec<u8> {
        let mut bytes = std::fs::read(self.file()).unwrap();
        let wal = self.tmp.path().join("carrier.sqlite-wal");
        bytes.extend(std::fs::read(wal).unwrap_or_default());
        bytes
    }

    fn password_file(&self) -> PathBuf {
        self.tmp.path().join("password")
    }

    fn carrier(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_carrier"));
        command
            .arg("-C")
            .arg(self.tmp.path())
            .arg("--database-url")
            .arg(format!("sqlite://{}", self.file().display()))
            .args(args)
            .stdin(std::process::Stdio::null());
        // SAFETY: setsid is async-signal-safe; it detaches the child from any terminal,
        // so a prompt cannot find one whoever runs the tests
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        command.output().unwrap()
    }

    fn add(&self, name: &str, role: &str, scope: &[&str]) -> Output {
        let file = self.password_file();
        let mut args = vec!["user", "add", name, "--role", role];
        for term in scope {
            args.extend(["--scope", term]);
        }
        args.extend(["--password-file", file.to_str().unwrap()]);
        self.carrier(&args)
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_slice(&ok(&self.carrier(args)).stdout).unwrap()
    }
}

fn ok(out: &Output) -> &Output {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn actions(db: &Db) -> Vec<(String, String, String)> {
    let log = db.json(&["audit", "--json"]);
    log.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("action"), s("target"), s("outcome"))
        })
        .collect()
}

#[test]
fn the_first_admin_and_more_accounts_are_made_from_the_cli_and_audited() {
    let db = Db::new();
    assert!(String::from_utf8_lossy(&ok(&db.add("alice", "admin", &[])).stdout).contains("alice"));
    ok(&db.add("bob", "deployer", &["tag:ci", "pxe-server#*"]));
    let users = db.json(&["user", "ls", "--json"]);
    assert_eq!(users[0]["name"], "alice");
    assert_eq!(users[0]["role"], "admin");
    assert_eq!(users[0]["scope"], Value::Null);
    assert_eq!(users[1]["scope"], serde_json::json!(["tag:ci", "pxe-server#*"]));
    let listed = String::from_utf8_lossy(&ok(&db.carrier(&["user", "ls"])).stdout).into_owned();
    assert!(listed.contains("tag:ci pxe-server#*"), "{listed}");

    // the password is stored as argon2id, never as given
    let text = db.bytes();
    assert!(!text.windows(12).any(|w| w == b"sup3r secret"), "the password is in the database");
    assert!(text.windows(10).any(|w| w == b"$argon2id$"));

    let err = failed(&db.add("bob", "viewer", &[]));
    assert!(err.contains("a user named 'bob' exists already"), "{err}");
    std::fs::write(db.password_file(), "another secret\n").unwrap();
    let file = db.password_file();
    ok(&db.carrier(&["user", "passwd", "bob", "--password-file", file.to_str().unwrap()]));
    ok(&db.carrier(&["user", "rm", "bob"]));
    assert_eq!(db.json(&["user", "ls", "--json"]).as_array().unwrap().len(), 1);

    let log = actions(&db);
    let expected = [
        ("user.rm", "bob", "ok"),
        ("user.passwd", "bob", "ok"),
        ("user.add", "bob", "failed: a user named 'bob' exists already"),
        ("user.add", "bob", "ok"),
        ("user.add", "alice", "ok"),
    ];
    let expected: Vec<_> =
        expected.iter().map(|(a, t, o)| (a.to_string(), t.to_string(), o.to_string())).collect();
    assert_eq!(log, expected);
    let entry = &db.json(&["audit", "--json", "--limit", "1", "--action", "user.add"])[0];
    assert_eq!(entry["target"], "bob");
    assert!(entry["actor"].as_str().unwrap().starts_with("os:"), "{entry}");
    assert_eq!(db.json(&["audit", "--json", "--actor", "nobody"]), serde_json::json!([]));
}

#[test]
fn bad_passwords_roles_and_scopes_are_refused_and_change_nothing() {
    let db = Db::new();
    // no terminal and no --password-file: no password, no default
    let err = failed(&db.carrier(&["user", "add", "alice", "--role", "admin"]));
    assert!(err.contains("no terminal to ask for the password on: give --password-file"), "{err}");
    std::fs::write(db.password_file(), "short\n").unwrap();
    let err = failed(&db.add("alice", "admin", &[]));
    assert!(err.contains("shorter than 8 characters"), "{err}");
    std::fs::write(db.password_file(), "long enough\n").unwrap();
    let err = failed(&db.add("alice", "root", &[]));
    assert!(err.contains("invalid role 'root'"), "{err}");
    let err = failed(&db.add("alice", "deployer", &["node["]));
    assert!(err.contains("invalid scope term 'node['"), "{err}");
    let err = failed(&db.carrier(&["user", "add", "alice", "--role", "admin", "--password", "x"]));
    assert!(err.contains("unexpected argument '--password'"), "{err}");
    assert_eq!(db.json(&["user", "ls", "--json"]), serde_json::json!([]));
}

#[test]
fn a_token_is_shown_once_stored_hashed_limited_and_revoked() {
    let db = Db::new();
    ok(&db.add("bob", "deployer", &["tag:ci"]));
    let err = failed(&db.carrier(&["token", "create", "--user", "bob", "ci", "--rights", "admin"]));
    assert!(err.contains("cannot have admin rights: the user is a deployer"), "{err}");
    let out = db.carrier(&["token", "create", "--user", "bob", "ci", "--days", "7"]);
    ok(&out);
    let secret = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(secret.len(), 64, "{secret}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown only now"));

    let tokens = db.json(&["token", "ls", "--json"]);
    assert_eq!(tokens[0]["name"], "ci");
    assert_eq!(tokens[0]["rights"], "deployer");
    assert_eq!(tokens[0]["scope"], serde_json::json!(["tag:ci"]));
    assert!(!tokens.to_string().contains(&secret), "the token is listed");
    let text = db.bytes();
    assert!(!text.windows(64).any(|w| w == secret.as_bytes()), "the token is stored in the clear");

    ok(&db.carrier(&["token", "revoke", "--user", "bob", "ci"]));
    assert!(db.json(&["token", "ls", "--json", "--user", "bob"])[0]["revoked_at"].is_string());
    let err = failed(&db.carrier(&["token", "revoke", "--user", "bob", "ci"]));
    assert!(err.contains("user 'bob' has no active token named 'ci'"), "{err}");

    let log = actions(&db);
    let kinds: Vec<(&str, &str)> = log.iter().map(|(a, _, o)| (a.as_str(), o.as_str())).collect();
    assert_eq!(
        kinds[..3],
        [
            ("token.revoke", "failed: user 'bob' has no active token named 'ci'"),
            ("token.revoke", "ok"),
            ("token.create", "ok"),
        ]
    );
    assert!(!db.json(&["audit", "--json"]).to_string().contains(&secret), "the audit log has it");
}

#[test]
fn an_account_is_disabled_and_enabled_from_the_cli_and_audited() {
    let db = Db::new();
    ok(&db.add("bob", "viewer", &[]));
    ok(&db.carrier(&["user", "disable", "bob"]));
    assert_eq!(db.json(&["user", "ls", "--json"])[0]["disabled"], true);
    let listed = String::from_utf8_lossy(&ok(&db.carrier(&["user", "ls"])).stdout).into_owned();
    assert!(listed.contains("(disabled)"), "{listed}");
    ok(&db.carrier(&["user", "enable", "bob"]));
    assert_eq!(db.json(&["user", "ls", "--json"])[0]["disabled"], false);
    let err = failed(&db.carrier(&["user", "disable", "eve"]));
    assert!(err.contains("no user named 'eve'"), "{err}");
    let log = actions(&db);
    let kinds: Vec<(&str, &str)> = log.iter().map(|(a, _, o)| (a.as_str(), o.as_str())).collect();
    assert_eq!(
        kinds[..3],
        [
            ("user.disable", "failed: no user named 'eve'"),
            ("user.enable", "ok"),
            ("user.disable", "ok")
        ]
    );
}
