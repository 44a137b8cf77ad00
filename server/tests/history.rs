//! Records of real runs: `carrier build` and `carrier deploy` against a lab (sshd hosts
//! with their own /nix, real nix-build and nix-copy-closure) on a configuration in git,
//! read back with `carrier history`; and a deploy whose database cannot be written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::cli::{ok, text};

mod support;

support::lab::lab_type!();

impl Lab {
    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(self.conf())
            .args(["-c", "user.name=carrier test", "-c", "user.email=test@carrier.invalid"])
            .args(args)
            .output()
            .unwrap();
        ok(&out);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `carrier history --json` with extra arguments.
    fn history(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["history", "--json"];
        all.extend(args);
        let out = self.carrier(&all);
        ok(&out);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    }
}

/// Makes a directory writable again (chattr -i) when the test ends, even on a panic.
struct Unfreeze(PathBuf);

impl Drop for Unfreeze {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

fn machines(run: &Value) -> Vec<(String, String)> {
    run["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["machine"].as_str().unwrap().into(), m["state"].as_str().unwrap().into()))
        .collect()
}

fn command_output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    ok(&out);
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn builds_and_deploys_are_recorded_and_listed() {
    let lab = Lab::up();
    lab.git(&["init", "-q"]);
    lab.git(&["add", "-A"]);
    lab.git(&["commit", "-q", "--no-gpg-sign", "-m", "lab"]);
    let revision = lab.git(&["rev-parse", "HEAD"]);

    ok(&lab.carrier(&["build", "node1"]));
    let built = lab.generation_name("node1");
    // an edit not committed: the deploy's tree is dirty
    std::fs::write(lab.conf().join("NOTES"), "not committed\n").unwrap();
    ok(&lab.carrier(&["deploy", "-y", "node1", "switch", "--one-by-one"]));
    let deployed = lab.generation_name("node1");
    let missing = lab.carrier(&["deploy", "-y", "-g", "1999-01-01--00-00-00", "node2", "boot"]);
    assert!(!missing.status.success(), "{}", text(&missing));

    let runs = lab.history(&[]);
    assert_eq!(runs.len(), 3, "{runs:?}");
    let (failed, deploy, build) = (&runs[0], &runs[1], &runs[2]);
    let user = command_output("id", &["-un"]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    for run in &runs {
        assert_eq!((run["user"].as_str(), run["host"].as_str()), (Some(&*user), Some(&*host)));
        assert!(run["finished_at"].is_string(), "{run}");
        assert_eq!(run["git"]["revision"].as_str(), Some(revision.as_str()), "{run}");
    }

    assert_eq!(build["kind"], "build");
    assert_eq!(build["action"], Value::Null);
    assert_eq!(build["selection"]["pattern"], "node1");
    assert_eq!(build["git"]["dirty"], false, "carrier's own .confctl does not count");
    assert_eq!(build["success"], true);
    assert_eq!(build["generation"].as_str(), Some(built.as_str()));
    assert_eq!(machines(build), [("node1".to_string(), "built".to_string())]);

    assert_eq!(
        (deploy["kind"].as_str(), deploy["action"].as_str()),
        (Some("deploy"), Some("switch"))
    );
    assert_eq!(deploy["git"]["dirty"], true);
    assert_eq!(deploy["options"]["one_by_one"], true);
    assert_eq!(deploy["success"], true);
    assert_eq!(deploy["machines"][0]["generation"].as_str(), Some(deployed.as_str()));
    assert_eq!(machines(deploy), [("node1".to_string(), "deployed".to_string())]);

    assert_eq!(failed["action"], "boot");
    assert_eq!(failed["generation"], "1999-01-01--00-00-00");
    assert_eq!(failed["success"], false);
    assert_eq!(machines(failed), [("node2".to_string(), "failed".to_string())]);
    assert_eq!(failed["machines"][0]["phase"], "build");
    let error = failed["machines"][0]["error"].as_str().unwrap();
    assert!(error.contains("no build generation '1999-01-01--00-00-00'"), "{error}");

    // the pattern keeps runs of matching machines, by core's glob rules
    let node2 = lab.history(&["node2"]);
    assert_eq!(node2.len(), 1);
    assert_eq!(node2[0]["id"], failed["id"]);
    assert_eq!(lab.history(&["node[12]"]).len(), 3);
    assert_eq!(lab.history(&["node*", "--limit", "2"]).len(), 2);
    assert!(lab.history(&["os1"]).is_empty());

    let table = lab.carrier(&["history"]);
    ok(&table);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("deploy switch"), "{table}");
    assert!(table.contains(&format!("git {} (dirty)", &revision[..12])), "{table}");
    assert!(table.contains("no build generation '1999-01-01--00-00-00'"), "{table}");

    // the default database: beside the build generations, the owner's only
    let file = lab.conf().join(".confctl/carrier.sqlite");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_deploy_whose_recording_fails_still_deploys_and_says_so() {
    let lab = Lab::up();
    let frozen = lab.tmp().join("frozen");
    std::fs::create_dir(&frozen).unwrap();
    // immutable: not even root may create the database file in it
    ok(&Command::new("chattr").arg("+i").arg(&frozen).output().unwrap());
    let _unfreeze = Unfreeze(frozen.clone());
    let url = format!("sqlite://{}", frozen.join("carrier.sqlite").display());

    let out = lab.carrier(&["--database-url", &url, "deploy", "-y", "node1"]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: this deploy is not recorded in the history"), "{stderr}");
    assert!(stderr.contains(&frozen.join("carrier.sqlite").display().to_string()), "{stderr}");
    let toplevel: Value = serde_json::from_slice(
        &std::fs::read(
            lab.conf()
                .join(".confctl/generations/node1")
                .join(lab.generation_name("node1"))
                .join("generation.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        lab.ssh("node1.lab", &["realpath", "/run/current-system"]),
        toplevel["toplevel"].as_str().unwrap(),
        "deployed all the same"
    );
    assert!(!Path::new(&frozen.join("carrier.sqlite")).exists());
}

/// `carrier` with the configuration `conf` and nothing else configured.
fn carrier_in(conf: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_carrier"))
        .arg("-C")
        .arg(conf)
        .args(args)
        .env_remove("CARRIER_DATABASE_URL")
        .output()
        .unwrap()
}

#[test]
fn history_without_records_creates_nothing_and_a_newer_database_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    let out = carrier_in(&conf, &["history", "--json"]);
    ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    assert!(!conf.join(".confctl").exists(), "no database made just to list nothing");

    // a database a newer carrier migrated, named by the environment
    let file = tmp.path().join("newer.sqlite");
    let url = format!("sqlite://{}", file.display());
    let out = carrier_in(&conf, &["--database-url", &url, "history"]);
    ok(&out);
    tokio_block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', 1, x'00', 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    });
    let out = Command::new(env!("CARGO_BIN_EXE_carrier"))
        .arg("-C")
        .arg(&conf)
        .arg("history")
        .env("CARRIER_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("the database {url} was written by a newer carrier")),
        "{stderr}"
    );
    assert!(stderr.contains("migration 9999"), "{stderr}");
}

fn tokio_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

#[test]
fn a_build_is_recorded_in_postgresql() {
    let pg = support::postgres::Postgres::start();
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("conf");
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/lab");
    ok(&Command::new("cp").arg("-r").arg(&example).arg(&conf).output().unwrap());
    let _ = std::fs::remove_dir_all(conf.join(".confctl"));
    let cache = tmp.path().join("cache");
    let carrier = |args: &[&str]| {
        let mut all = vec!["--cache-dir", cache.to_str().unwrap()];
        all.extend(args);
        carrier_in(&conf, &all)
    };
    let url = pg.url();
    let build = carrier(&["--database-url", &url, "build", "node2"]);
    let roots = carrier_core::build::default_gc_roots_dir(
        &carrier_core::conf_dir::ConfDir::resolve(&conf).unwrap(),
    );
    let _ = std::fs::remove_dir_all(roots);
    ok(&build);
    let out = carrier(&["--database-url", &url, "history", "--json"]);
    ok(&out);
    let runs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (runs[0]["kind"].as_str(), runs[0]["success"].as_bool()),
        (Some("build"), Some(true))
    );
    assert_eq!(machines(&runs[0]), [("node2".to_string(), "built".to_string())]);
    assert_eq!(runs[0]["git"], Value::Null, "not in git: recorded as such");
    assert!(!conf.join(".confctl/carrier.sqlite").exists(), "the URL replaces the default");
}
