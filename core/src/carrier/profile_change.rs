//! What upstream calls `carrier-env`: changing a carried profile on the carrier
//! (`nix-env --set` or `--delete-generations`), then running the carrier's on-change
//! hooks. Profile changes of one carrier are serialised by an exclusive lock; the hooks
//! run after it is released, so that the netboot builds of concurrent changes coalesce.
//! Until the hooks have succeeded after a change, a record next to the profiles says so
//! ([`pending_record`]): a deployer must not take such a profile for current.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

use crate::profile_name::ProfileName;

/// The carrier's own settings, `/etc/carrier/host.json` (written by the NixOS module).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostConfig {
    /// Where `confctl-<alias>` profiles live.
    #[serde(default = "default_profiles_dir")]
    pub profiles_dir: PathBuf,
    /// Serialises profile changes of this carrier.
    #[serde(default = "default_lock_file")]
    pub lock_file: PathBuf,
    /// Commands (argv vectors) run in order after every change.
    #[serde(default)]
    pub on_change: Vec<Vec<String>>,
    /// Seconds to wait for the lock before giving up.
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout: u64,
    /// Seconds an on-change hook may run before it (and its process group) is killed.
    #[serde(default = "default_hook_timeout")]
    pub hook_timeout: u64,
}

// Two lock waits (before the change and after the hooks) and the hooks together stay
// below the deployer's default command deadline (900 s), so a deploy hears the
// carrier's own error rather than killing it.
fn default_lock_timeout() -> u64 {
    120
}

fn default_hook_timeout() -> u64 {
    600
}

fn default_profiles_dir() -> PathBuf {
    PathBuf::from(crate::profile_name::PROFILES_DIR)
}

fn default_lock_file() -> PathBuf {
    PathBuf::from("/run/carrier/profiles.lock")
}

impl HostConfig {
    pub const DEFAULT_PATH: &'static str = "/etc/carrier/host.json";

    pub fn load(path: &Path) -> Result<Self, ProfileChangeError> {
        let bad =
            |message: String| ProfileChangeError::Config { file: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let config: HostConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if let Some(i) = config.on_change.iter().position(|argv| argv.is_empty()) {
            return Err(bad(format!("onChange[{i}] is an empty command")));
        }
        Ok(config)
    }
}

/// A change of a carried profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileChange {
    /// Make `store_path` the profile's new generation.
    Set { store_path: String },
    /// Delete generations: numbers, `old`, `+N` (keep the last N) or `Nd` (older than N days).
    DeleteGenerations { generations: Vec<String> },
}

impl ProfileChange {
    fn action(&self) -> &'static str {
        match self {
            ProfileChange::Set { .. } => "set",
            ProfileChange::DeleteGenerations { .. } => "delete-generations",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileChangeError {
    #[error("invalid carrier configuration {}: {message}", file.display())]
    Config { file: PathBuf, message: String },
    #[error("invalid profile '{}': {reason}", profile.display())]
    Profile { profile: PathBuf, reason: String },
    #[error("invalid store path '{0}': expected an existing path directly below /nix/store")]
    StorePath(String),
    #[error("invalid generation '{0}': expected a number, 'old', '+N' or 'Nd'")]
    Generation(String),
    #[error("no generations given to delete")]
    NoGenerations,
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error("recording pending on-change hooks in {}: {source}", path.display())]
    Record {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("nix-env failed on '{}' ({status}): {stderr}", profile.display())]
    NixEnv { profile: PathBuf, status: String, stderr: String },
    #[error(
        "the profile '{}' was changed, but the on-change hook `{}` failed ({status}): {output}",
        profile.display(),
        argv.join(" ")
    )]
    Hook { profile: PathBuf, argv: Vec<String>, status: String, output: String },
    #[error(
        "the profile '{}' was changed, but the on-change hook `{}` did not finish within {secs} s and was killed{left}",
        profile.display(),
        argv.join(" ")
    )]
    HookTimeout { profile: PathBuf, argv: Vec<String>, secs: u64, left: String },
    #[error("{first}; {}", rest.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several { first: Box<ProfileChangeError>, rest: Vec<ProfileChangeError> },
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// Only `<profiles dir>/confctl-<name>` may be changed: a typo must not touch the
/// system profile or anything else. Returns the profile's name.
pub fn check_profile(
    config: &HostConfig,
    profile: &Path,
) -> Result<ProfileName, ProfileChangeError> {
    let bad = |reason: &str| ProfileChangeError::Profile {
        profile: profile.to_path_buf(),
        reason: reason.into(),
    };
    let name =
        profile.file_name().and_then(|n| n.to_str()).ok_or_else(|| bad("it has no file name"))?;
    if profile.parent() != Some(config.profiles_dir.as_path()) {
        return Err(bad(&format!(
            "carried profiles live directly in {}",
            config.profiles_dir.display()
        )));
    }
    ProfileName::from_file_name(name).ok_or_else(|| bad("the name must be confctl-<alias>"))
}

/// Generation patterns nix-env understands; anything else is refused up front.
pub fn check_generation(spec: &str) -> Result<(), ProfileChangeError> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ok = spec == "old"
        || digits(spec)
        || spec.strip_prefix('+').is_some_and(digits)
        || spec.strip_suffix('d').is_some_and(digits);
    if ok { Ok(()) } else { Err(ProfileChangeError::Generation(spec.to_string())) }
}

fn check_store_path(path: &str) -> Result<(), ProfileChangeError> {
    let p = Path::new(path);
    let ok = p.parent() == Some(Path::new("/nix/store")) && p.exists();
    if ok { Ok(()) } else { Err(ProfileChangeError::StorePath(path.to_string())) }
}

/// The nix-env argv of a change.
pub fn nix_env_argv(profile: &Path, change: &ProfileChange) -> Vec<String> {
    let mut argv = vec!["nix-env".to_string(), "-p".into(), profile.display().to_string()];
    match change {
        ProfileChange::Set { store_path } => argv.extend(["--set".to_string(), store_path.clone()]),
        ProfileChange::DeleteGenerations { generations } => {
            argv.push("--delete-generations".into());
            argv.extend(generations.iter().cloned());
        }
    }
    argv
}

/// The record of a profile whose on-change hooks have not succeeded since it changed:
/// `<profiles dir>/.carrier-on-change-pending/<profile name>` (a name netboot builds and
/// listings ignore, on the same file system as the profiles, so it survives reboots as
/// they do). Its text says why.
pub fn pending_record(profile: &Path) -> PathBuf {
    let dir = profile.parent().unwrap_or(Path::new("/"));
    dir.join(".carrier-on-change-pending").join(profile.file_name().unwrap_or_default())
}

/// Validates every change, takes the carrier's lock, runs nix-env for each, releases the
/// lock, then runs each on-change hook once with `CARRIER_PROFILE` and `CARRIER_ACTION` in
/// its environment. A hook failure is reported as such: the profiles have already changed
/// then (upstream behaves alike; the message says so).
///
/// Several changes under one lock, then the hooks once: a deploy that sets several
/// carried profiles of a carrier rebuilds its netboot tree once. Everything is
/// validated before anything changes; `CARRIER_PROFILE` names the first profile and
/// `CARRIER_PROFILES` all of them, one per line.
///
/// The hooks run without the lock (as upstream's `carrier-env`, which takes none): the
/// hooks of concurrent changes overlap, and `carrier netboot build` coalesces their
/// builds (one more build covers every request that arrived during a build). Only the
/// profile changes and the pending records are serialised.
///
/// Every profile about to change is recorded as pending first; the hooks run whenever
/// a change happened or a record was left by an earlier run (even when another change
/// failed). Their outcome then settles, under the lock again, every record they covered
/// that no later change has rewritten since: success clears it, failure says why.
/// `on_wait` hears whom a lock wait is for.
pub fn apply_all(
    config: &HostConfig,
    changes: &[(PathBuf, ProfileChange)],
    on_wait: &dyn Fn(String),
) -> Result<(), ProfileChangeError> {
    for (profile, change) in changes {
        check_profile(config, profile)?;
        match change {
            ProfileChange::Set { store_path } => check_store_path(store_path)?,
            ProfileChange::DeleteGenerations { generations } if generations.is_empty() => {
                return Err(ProfileChangeError::NoGenerations);
            }
            ProfileChange::DeleteGenerations { generations } => {
                generations.iter().try_for_each(|g| check_generation(g))?
            }
        }
    }
    let Some((first, first_change)) = changes.first() else { return Ok(()) };
    let profiles: Vec<String> = changes.iter().map(|(p, _)| p.display().to_string()).collect();
    let pid = std::process::id();
    let who = format!("carrier profile set (pid {pid}): {}", profiles.join(" "));
    let wait = Duration::from_secs(config.lock_timeout);

    let mut failures = Vec::new();
    let lock = crate::lock::acquire(&config.lock_file, &who, wait, on_wait)?;
    let earlier = pending(config)?;
    for (profile, change) in changes {
        // the pid makes the text this run's own (see `settle`)
        let why = format!("{} started (pid {pid}), on-change hooks not yet run", change.action());
        record_pending(profile, &why)?;
    }
    let mut changed = 0;
    for (profile, change) in changes {
        let out = run(&nix_env_argv(profile, change), &[])?;
        if out.status.success() {
            changed += 1;
        } else {
            failures.push(ProfileChangeError::NixEnv {
                profile: profile.to_path_buf(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    if changed == 0 && earlier.is_empty() {
        // nothing changed and nothing was left to do: no hook needed
        for (profile, _) in changes {
            clear_pending(profile)?;
        }
        drop(lock);
    } else {
        // the records the hooks will cover, as they are before the hooks start
        let covered: Vec<(PathBuf, Option<String>)> = changes
            .iter()
            .map(|(p, _)| p)
            .chain(earlier.iter().filter(|p| !changes.iter().any(|(c, _)| c == *p)))
            .map(|p| (p.clone(), read_pending(p)))
            .collect();
        drop(lock);
        let all: Vec<String> = covered.iter().map(|(p, _)| p.display().to_string()).collect();
        let env = [
            ("CARRIER_PROFILE", first.display().to_string()),
            ("CARRIER_PROFILES", all.join("\n")),
            ("CARRIER_ACTION", first_change.action().to_string()),
        ];
        let hooks = run_hooks(config, first, &env);
        let _lock = crate::lock::acquire(&config.lock_file, &who, wait, on_wait)?;
        settle(&covered, hooks.as_ref().err())?;
        if let Err(e) = hooks {
            failures.push(e);
        }
    }
    let mut failures = failures.into_iter();
    match failures.next() {
        None => Ok(()),
        Some(first) => {
            let rest: Vec<_> = failures.collect();
            if rest.is_empty() {
                Err(first)
            } else {
                Err(ProfileChangeError::Several { first: Box::new(first), rest })
            }
        }
    }
}

/// After the hooks (under the lock): each covered record still as it was when they
/// started is cleared (`failed` is `None`) or says why they failed. A record rewritten
/// meanwhile belongs to a later change, whose own hooks settle it.
fn settle(
    covered: &[(PathBuf, Option<String>)],
    failed: Option<&ProfileChangeError>,
) -> Result<(), ProfileChangeError> {
    for (profile, seen) in covered {
        if read_pending(profile) != *seen {
            continue;
        }
        match failed {
            None => clear_pending(profile)?,
            Some(e) => record_pending(profile, &e.to_string())?,
        }
    }
    Ok(())
}

/// The text of `profile`'s pending record, if it has one.
fn read_pending(profile: &Path) -> Option<String> {
    std::fs::read_to_string(pending_record(profile)).ok()
}

fn run_hooks(
    config: &HostConfig,
    first: &Path,
    env: &[(&str, String)],
) -> Result<(), ProfileChangeError> {
    let limit = Duration::from_secs(config.hook_timeout);
    for hook in &config.on_change {
        let (program, args) = hook.split_first().expect("argv has a program");
        let mut cmd = Command::new(program);
        cmd.args(args).envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let ran = crate::process::run_with_deadline(cmd, limit)
            .map_err(|source| ProfileChangeError::Spawn { program: program.clone(), source })?;
        let mut output = String::from_utf8_lossy(&ran.stdout).trim().to_string();
        let stderr = String::from_utf8_lossy(&ran.stderr);
        if !stderr.trim().is_empty() {
            output = format!("{output}\n{}", stderr.trim()).trim().to_string();
        }
        match ran.status {
            None => {
                let left = if ran.left_running.is_empty() {
                    String::new()
                } else {
                    format!("; left running (they keep its output open): {}", ran.left_running)
                };
                return Err(ProfileChangeError::HookTimeout {
                    profile: first.to_path_buf(),
                    argv: hook.clone(),
                    secs: limit.as_secs(),
                    left,
                });
            }
            Some(status) if !status.success() => {
                return Err(ProfileChangeError::Hook {
                    profile: first.to_path_buf(),
                    argv: hook.clone(),
                    status: status.to_string(),
                    output,
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The profiles with a pending record (see [`pending_record`]).
fn pending(config: &HostConfig) -> Result<Vec<PathBuf>, ProfileChangeError> {
    let dir =
        pending_record(&config.profiles_dir.join("x")).parent().expect("record dir").to_path_buf();
    match std::fs::read_dir(&dir) {
        Ok(entries) => Ok(entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .filter(|n| n.to_str().and_then(ProfileName::from_file_name).is_some())
            .map(|n| config.profiles_dir.join(n))
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(ProfileChangeError::Record { path: dir, source }),
    }
}

/// Writes the record of `profile` (atomically: a reader sees the old or the new text).
fn record_pending(profile: &Path, why: &str) -> Result<(), ProfileChangeError> {
    let path = pending_record(profile);
    let err = |source| ProfileChangeError::Record { path: path.clone(), source };
    let dir = path.parent().expect("record dir");
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    let when =
        jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default();
    std::io::Write::write_all(&mut tmp, format!("{when}: {why}\n").as_bytes()).map_err(err)?;
    tmp.persist(&path).map_err(|e| err(e.error))?;
    Ok(())
}

fn clear_pending(profile: &Path) -> Result<(), ProfileChangeError> {
    let path = pending_record(profile);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ProfileChangeError::Record { path, source: e })
        }
        _ => Ok(()),
    }
}

fn run(
    argv: &[String],
    env: &[(&str, String)],
) -> Result<std::process::Output, ProfileChangeError> {
    let (program, args) = argv.split_first().expect("argv has a program");
    Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ProfileChangeError::Spawn { program: program.clone(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HostConfig {
        HostConfig {
            profiles_dir: "/nix/var/nix/profiles".into(),
            lock_file: "/run/carrier/profiles.lock".into(),
            on_change: vec![],
            lock_timeout: 120,
            hook_timeout: 600,
        }
    }

    #[test]
    fn argv_of_set_and_delete() {
        let p = Path::new("/nix/var/nix/profiles/confctl-node1");
        assert_eq!(
            nix_env_argv(p, &ProfileChange::Set { store_path: "/nix/store/abc-dist".into() }),
            [
                "nix-env",
                "-p",
                "/nix/var/nix/profiles/confctl-node1",
                "--set",
                "/nix/store/abc-dist"
            ]
        );
        assert_eq!(
            nix_env_argv(
                p,
                &ProfileChange::DeleteGenerations { generations: vec!["1".into(), "+3".into()] }
            ),
            [
                "nix-env",
                "-p",
                "/nix/var/nix/profiles/confctl-node1",
                "--delete-generations",
                "1",
                "+3"
            ]
        );
    }

    #[test]
    fn only_carried_profiles_may_change() {
        let c = config();
        assert!(check_profile(&c, Path::new("/nix/var/nix/profiles/confctl-node1")).is_ok());
        assert!(check_profile(&c, Path::new("/nix/var/nix/profiles/confctl-prg:node1")).is_ok());
        for bad in [
            "/nix/var/nix/profiles/system",
            "/nix/var/nix/profiles/confctl-",
            "/nix/var/nix/profiles/confctl-node1-3-link",
            "/tmp/confctl-node1",
            "/nix/var/nix/profiles/x/confctl-node1",
        ] {
            let e = check_profile(&c, Path::new(bad)).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn generation_patterns() {
        for ok in ["1", "42", "old", "+5", "30d"] {
            assert!(check_generation(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-1", "+", "d", "5x", "1;rm", "old "] {
            assert!(check_generation(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hooks_settle_only_the_records_no_later_change_rewrote() {
        let tmp = tempfile::tempdir().unwrap();
        let (one, two) = (tmp.path().join("confctl-one"), tmp.path().join("confctl-two"));
        record_pending(&one, "set started (pid 1)").unwrap();
        record_pending(&two, "set started (pid 1)").unwrap();
        let covered = [(one.clone(), read_pending(&one)), (two.clone(), read_pending(&two))];
        // a later change of `two` while the hooks ran
        record_pending(&two, "set started (pid 2)").unwrap();
        settle(&covered, None).unwrap();
        assert_eq!(read_pending(&one), None, "covered and unchanged: cleared");
        assert!(read_pending(&two).unwrap().contains("pid 2"), "the later change's record stays");

        let covered = [(two.clone(), read_pending(&two))];
        let failed = ProfileChangeError::NoGenerations;
        settle(&covered, Some(&failed)).unwrap();
        assert!(read_pending(&two).unwrap().contains("no generations given"), "the failure");
    }

    #[test]
    fn config_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("host.json");
        std::fs::write(&f, r#"{"onChange": [[]]}"#).unwrap();
        let e = HostConfig::load(&f).unwrap_err().to_string();
        assert!(e.contains("host.json") && e.contains("onChange[0]"), "{e}");
        std::fs::write(&f, r#"{"onchange": []}"#).unwrap();
        let e = HostConfig::load(&f).unwrap_err().to_string();
        assert!(e.contains("unknown field `onchange`"), "{e}");
        std::fs::write(&f, r#"{"onChange": [["/bin/true"]]}"#).unwrap();
        let c = HostConfig::load(&f).unwrap();
        assert_eq!(c.profiles_dir, Path::new("/nix/var/nix/profiles"));
    }
}
