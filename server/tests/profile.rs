//! `carrier profile set|delete-generations` with the real nix-env on real store paths
//! (added with `nix-store --add`), real hook scripts and a real lock.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::cli::{self, ok};

struct Carrier {
    tmp: tempfile::TempDir,
}

impl Carrier {
    /// A carrier whose hook appends `<action> <profile> -> <target>` to events.log.
    fn new(hook_body: &str) -> Self {
        Self::with(hook_body, serde_json::json!({}))
    }

    /// A carrier with extra `host.json` settings.
    fn with(hook_body: &str, extra: serde_json::Value) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("profiles")).unwrap();
        let hook = tmp.path().join("on-change");
        std::fs::write(&hook, format!("#!/bin/sh\nset -e\n{hook_body}\n")).unwrap();
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut config = serde_json::json!({
            "profilesDir": tmp.path().join("profiles"),
            "lockFile": tmp.path().join("profiles.lock"),
            "onChange": [[hook]],
        });
        config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        std::fs::write(tmp.path().join("host.json"), config.to_string()).unwrap();
        Carrier { tmp }
    }

    fn profile(&self, alias: &str) -> PathBuf {
        self.tmp.path().join("profiles").join(format!("confctl-{alias}"))
    }

    fn events(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("events.log")).unwrap_or_default()
    }

    /// `carrier profile --host-config <host.json>`, ready for a subcommand.
    fn profile_command(&self) -> Command {
        let mut cmd = cli::Carrier::new().command(&["profile", "--host-config"]);
        cmd.arg(self.tmp.path().join("host.json"));
        cmd
    }

    fn carrier(&self, args: &[&str]) -> Output {
        self.profile_command().args(args).current_dir(self.tmp.path()).output().unwrap()
    }
}

const LOG_HOOK: &str = r#"echo "$CARRIER_ACTION $CARRIER_PROFILE -> $(readlink "$CARRIER_PROFILE")" >> "$(dirname "$0")/events.log""#;

/// A real store path holding a machine.json that names `marker`.
fn store_path(marker: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join(format!("dist-{marker}"));
    std::fs::create_dir(&content).unwrap();
    std::fs::write(
        content.join("machine.json"),
        format!(r#"{{"toplevel":"/nix/store/x","marker":"{marker}"}}"#),
    )
    .unwrap();
    let out = Command::new("nix-store").arg("--add").arg(&content).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn realpath(p: &Path) -> String {
    std::fs::canonicalize(p).unwrap().display().to_string()
}

#[test]
fn set_creates_generations_and_runs_the_hook_each_time() {
    let c = Carrier::new(LOG_HOOK);
    let (a, b) = (store_path("a"), store_path("b"));
    let p = c.profile("node1");
    ok(&c.carrier(&["set", "-p", p.to_str().unwrap(), &a]));
    assert_eq!(realpath(&p), a);
    assert_eq!(realpath(&c.profile("node1-1-link")), a);
    assert_eq!(c.events().lines().count(), 1);
    assert!(
        c.events().starts_with(&format!("set {} -> confctl-node1-1-link", p.display())),
        "{}",
        c.events()
    );

    ok(&c.carrier(&["set", "-p", p.to_str().unwrap(), &b]));
    assert_eq!(realpath(&p), b);
    assert_eq!(realpath(&c.profile("node1-2-link")), b);
    assert_eq!(realpath(&c.profile("node1-1-link")), a, "the previous generation stays");
    assert_eq!(c.events().lines().count(), 2);

    ok(&c.carrier(&["delete-generations", "-p", p.to_str().unwrap(), "1"]));
    assert!(!c.profile("node1-1-link").exists());
    assert_eq!(realpath(&p), b);
    assert!(
        c.events().lines().nth(2).unwrap().starts_with("delete-generations "),
        "{}",
        c.events()
    );
}

#[test]
fn aliases_with_colons_work() {
    let c = Carrier::new(LOG_HOOK);
    let p = c.profile("prg:node1");
    let a = store_path("colon");
    ok(&c.carrier(&["set", "-p", p.to_str().unwrap(), &a]));
    assert_eq!(realpath(&c.profile("prg:node1-1-link")), a);
}

#[test]
fn a_failing_hook_fails_the_command_and_says_the_profile_changed() {
    let c = Carrier::new("echo 'netboot build failed' >&2; exit 3");
    let p = c.profile("node1");
    let a = store_path("hookfail");
    let o = c.carrier(&["set", "-p", p.to_str().unwrap(), &a]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("was changed, but the on-change hook"), "{err}");
    assert!(err.contains("exit status: 3") && err.contains("netboot build failed"), "{err}");
    assert_eq!(realpath(&p), a);
}

#[test]
fn bad_input_is_refused_before_anything_changes() {
    let c = Carrier::new(LOG_HOOK);
    let p = c.profile("node1");
    let a = store_path("bad");
    // not a store path
    let o = c.carrier(&["set", "-p", p.to_str().unwrap(), "/etc"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid store path '/etc'"));
    // a store path that does not exist
    let o = c.carrier(&[
        "set",
        "-p",
        p.to_str().unwrap(),
        "/nix/store/00000000000000000000000000000000-nothing",
    ]);
    assert!(!o.status.success());
    // not a carried profile
    let sys = c.tmp.path().join("profiles/system");
    let o = c.carrier(&["set", "-p", sys.to_str().unwrap(), &a]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("the name must be confctl-<alias>"));
    // a bad generation pattern
    let o = c.carrier(&["delete-generations", "-p", p.to_str().unwrap(), "1;reboot"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid generation '1;reboot'"));
    assert!(!p.exists(), "nothing was created");
    assert_eq!(c.events(), "", "no hook ran");
}

#[test]
fn nix_env_failure_runs_no_hook() {
    let c = Carrier::new(LOG_HOOK);
    let p = c.profile("node1");
    // deleting the current generation is refused by nix-env
    let a = store_path("current");
    ok(&c.carrier(&["set", "-p", p.to_str().unwrap(), &a]));
    let o = c.carrier(&["delete-generations", "-p", p.to_str().unwrap(), "1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nix-env failed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(c.events().lines().count(), 1, "only the set ran the hook");
}

#[test]
fn concurrent_changes_run_their_hooks_side_by_side_and_settle_their_records() {
    // The hook records its start and end around a sleep; the lock covers the changes,
    // not the hooks, so two concurrent changes' hooks overlap (their netboot builds can
    // coalesce), and each run clears the pending records its hooks covered.
    let c = Carrier::new(&format!(
        "echo start >> \"$(dirname \"$0\")/events.log\"; sleep 1; {LOG_HOOK}; echo end >> \"$(dirname \"$0\")/events.log\""
    ));
    let (a, b) = (store_path("ser-a"), store_path("ser-b"));
    let (p1, p2) = (c.profile("one"), c.profile("two"));
    std::thread::scope(|s| {
        let h1 = s.spawn(|| c.carrier(&["set", "-p", p1.to_str().unwrap(), &a]));
        let h2 = s.spawn(|| c.carrier(&["set", "-p", p2.to_str().unwrap(), &b]));
        ok(&h1.join().unwrap());
        ok(&h2.join().unwrap());
    });
    let events = c.events();
    let kinds: Vec<&str> = events.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(kinds[..2], ["start", "start"], "{events}");
    assert_eq!(kinds.iter().filter(|k| **k == "set").count(), 2, "{events}");
    assert_eq!((realpath(&p1), realpath(&p2)), (a, b));
    assert!(!pending(&c, "one").exists() && !pending(&c, "two").exists());
}

#[test]
fn several_profiles_in_one_set_run_the_hooks_once() {
    let c = Carrier::new(LOG_HOOK);
    let (a, b) = (store_path("multi-a"), store_path("multi-b"));
    let (p1, p2) = (c.profile("node1"), c.profile("node2"));
    ok(&c.carrier(&["set", "-p", p1.to_str().unwrap(), "-p", p2.to_str().unwrap(), &a, &b]));
    assert_eq!(realpath(&p1), a);
    assert_eq!(realpath(&p2), b);
    assert_eq!(c.events().lines().count(), 1, "one hook run for both: {}", c.events());

    // a count mismatch changes nothing and says what is wrong
    let out = c.carrier(&["set", "-p", p1.to_str().unwrap(), "-p", p2.to_str().unwrap(), &b]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 profiles (-p) but 1 store paths"));
    assert_eq!(realpath(&p1), a);
    assert_eq!(c.events().lines().count(), 1);
}

#[test]
fn several_profiles_in_one_delete_run_the_hooks_once() {
    let c = Carrier::new(LOG_HOOK);
    let paths: Vec<String> = (1..=4).map(|i| store_path(&format!("del-{i}"))).collect();
    let (p1, p2) = (c.profile("node1"), c.profile("node2"));
    for p in [&p1, &p2] {
        for path in &paths {
            ok(&c.carrier(&["set", "-p", p.to_str().unwrap(), path]));
        }
    }
    let hooks_before = c.events().lines().count();
    // one comma-separated list of generations per profile, in the same order
    let (s1, s2) = (p1.to_str().unwrap(), p2.to_str().unwrap());
    ok(&c.carrier(&["delete-generations", "-p", s1, "-p", s2, "1,2", "3"]));
    for (alias, gone, kept) in [("node1", [1, 2], [3, 4]), ("node2", [3, 3], [1, 2])] {
        for n in gone {
            assert!(!c.profile(&format!("{alias}-{n}-link")).exists(), "{alias} {n}");
        }
        for n in kept {
            assert!(c.profile(&format!("{alias}-{n}-link")).exists(), "{alias} {n}");
        }
    }
    assert_eq!(c.events().lines().count(), hooks_before + 1, "one hook run: {}", c.events());

    // a count mismatch or a bad list changes nothing and names the problem
    let out = c.carrier(&["delete-generations", "-p", s1, "-p", s2, "4"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 profiles (-p) but 1 generation lists"), "{err}");
    let out = c.carrier(&["delete-generations", "-p", s1, "-p", s2, "4", "1,x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid generation 'x'"));
    assert!(c.profile("node1-4-link").exists() && c.profile("node2-1-link").exists());
    assert_eq!(c.events().lines().count(), hooks_before + 1);
}

/// Where the carrier records that its on-change hooks have not succeeded since a
/// profile changed.
fn pending(c: &Carrier, alias: &str) -> PathBuf {
    c.tmp.path().join("profiles/.carrier-on-change-pending").join(format!("confctl-{alias}"))
}

#[test]
fn a_failed_change_among_several_still_runs_the_hooks() {
    let c = Carrier::new(LOG_HOOK);
    let (a, b) = (store_path("partial-a"), store_path("partial-b"));
    let (p1, p2) = (c.profile("node1"), c.profile("node2"));
    // node2's profile cannot be replaced: a directory with content is in its place
    std::fs::create_dir_all(p2.join("in-the-way")).unwrap();
    let o = c.carrier(&["set", "-p", p1.to_str().unwrap(), "-p", p2.to_str().unwrap(), &a, &b]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nix-env failed on") && err.contains("confctl-node2"), "{err}");
    assert_eq!(realpath(&p1), a, "node1 changed");
    assert_eq!(
        c.events().lines().count(),
        1,
        "the hooks ran for the change that happened: {}",
        c.events()
    );
    assert!(c.events().contains(&format!("set {}", p1.display())), "{}", c.events());
    assert!(
        !pending(&c, "node1").exists() && !pending(&c, "node2").exists(),
        "the hooks succeeded"
    );
}

#[test]
fn a_failed_hook_is_recorded_until_a_hook_run_succeeds() {
    let c = Carrier::new(&format!("test -e \"$(dirname \"$0\")/fail\" && exit 4; {LOG_HOOK}"));
    std::fs::write(c.tmp.path().join("fail"), "").unwrap();
    let p = c.profile("node1");
    let a = store_path("pending-a");
    assert!(!c.carrier(&["set", "-p", p.to_str().unwrap(), &a]).status.success());
    assert_eq!(realpath(&p), a);
    let record = std::fs::read_to_string(pending(&c, "node1"))
        .expect("the failure is recorded next to the profiles");
    assert!(record.contains("exit status: 4"), "{record}");

    // the same store path again: nix-env changes nothing, the hooks run and succeed
    std::fs::remove_file(c.tmp.path().join("fail")).unwrap();
    ok(&c.carrier(&["set", "-p", p.to_str().unwrap(), &a]));
    assert_eq!(c.events().lines().count(), 1, "{}", c.events());
    assert!(!pending(&c, "node1").exists());
    assert!(!c.profile("node1-2-link").exists(), "no new generation for the same path");
}

#[test]
fn a_hung_hook_is_killed_at_its_timeout() {
    let c = Carrier::with("sleep 7.31", serde_json::json!({ "hookTimeout": 1 }));
    let p = c.profile("node1");
    let a = store_path("hung");
    let started = std::time::Instant::now();
    let o = c.carrier(&["set", "-p", p.to_str().unwrap(), &a]);
    assert!(!o.status.success());
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("did not finish within 1 s and was killed"), "{err}");
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.trim() == "sleep 7.31")
        .collect();
    assert_eq!(left, Vec::<String>::new());
    assert!(pending(&c, "node1").exists());
}

#[test]
fn a_lock_wait_has_a_deadline_and_names_the_holder() {
    let c = Carrier::with(LOG_HOOK, serde_json::json!({ "lockTimeout": 1 }));
    let b = store_path("wait-b");
    let p2 = c.profile("two");
    // another change holds the lock (flock(1), as carrier takes it), having said who it is
    let lock = c.tmp.path().join("profiles.lock");
    std::fs::write(&lock, "carrier profile set (pid 4242): confctl-one").unwrap();
    let mut holder = Command::new("flock").arg(&lock).args(["sleep", "3"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let o = c.carrier(&["set", "-p", p2.to_str().unwrap(), &b]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("timed out after 1 s waiting for")
            && err.contains("held by: carrier profile set (pid 4242)"),
        "{err}"
    );
    assert!(holder.wait().unwrap().success());
    assert!(!p2.exists());
    ok(&c.carrier(&["set", "-p", p2.to_str().unwrap(), &b]));
}
