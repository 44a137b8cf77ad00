//! Commands as the tests run them: the `carrier` binary (one command builder, one success
//! check) and ssh to the hosts of a `carrier lab up`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What every `carrier` run of a test shares: the configuration directory (`-C`), a cache
/// directory of the test's own (`--cache-dir`, so no run touches a shared default) and the
/// ssh_config of a lab (`CARRIER_SSH_CONFIG`). Unset parts are left out of the command, and
/// the rest of the environment (`PATH`, `NIX_CONF_DIR`) is inherited.
#[derive(Debug, Clone, Default)]
pub(crate) struct Carrier {
    conf: Option<PathBuf>,
    cache: Option<PathBuf>,
    ssh_config: Option<PathBuf>,
}

impl Carrier {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// `-C <dir>`.
    pub(crate) fn conf(mut self, dir: impl Into<PathBuf>) -> Self {
        self.conf = Some(dir.into());
        self
    }

    /// `--cache-dir <dir>`.
    pub(crate) fn cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache = Some(dir.into());
        self
    }

    /// The lab's ssh_config for every SSH connection carrier opens.
    pub(crate) fn ssh_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.ssh_config = Some(path.into());
        self
    }

    /// The command for `carrier <global options> <args>`, for callers that add more
    /// (environment, stdio) or spawn it.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        if let Some(conf) = &self.conf {
            cmd.arg("-C").arg(conf);
        }
        if let Some(cache) = &self.cache {
            cmd.arg("--cache-dir").arg(cache);
        }
        if let Some(ssh_config) = &self.ssh_config {
            cmd.env("CARRIER_SSH_CONFIG", ssh_config);
        }
        // a test's records go to its own configuration's database, never to one the
        // environment names
        cmd.env_remove("CARRIER_DATABASE_URL");
        cmd.args(args);
        cmd
    }

    /// Runs `carrier <global options> <args>` to completion.
    pub(crate) fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run carrier")
    }
}

/// The `carrier` binary cargo built for these tests.
pub(crate) fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_carrier"))
}

/// Asserts that `o` succeeded (showing its exit status, stdout and stderr when not) and
/// returns its stdout.
#[track_caller]
pub(crate) fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}\n{}", o.status.code(), text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stdout followed by stderr, for messages and searches over both.
pub(crate) fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `argv` on the lab host `alias` through the lab's `ssh_config` (host keys checked); its
/// exit status is checked, its stdout returned trimmed.
#[track_caller]
pub(crate) fn lab_ssh(ssh_config: &Path, alias: &str, argv: &[&str]) -> String {
    let out = Command::new("ssh").arg("-F").arg(ssh_config).arg(alias).args(argv).output();
    ok(&out.expect("run ssh")).trim().to_string()
}
