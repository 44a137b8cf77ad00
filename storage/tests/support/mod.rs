//! The databases storage tests run against: a SQLite file in a temporary directory, and a
//! throw-away PostgreSQL cluster of the test's own (`initdb` into a temporary directory,
//! `pg_ctl start` listening on a Unix socket in it only, `pg_ctl stop` on drop). initdb
//! refuses to run as root, so as root the cluster is run by `nobody` through `setpriv`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A database for one test; dropping it removes it (and stops its server).
pub(crate) enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(Postgres),
}

impl Db {
    pub(crate) fn sqlite() -> Db {
        Db::Sqlite(tempfile::tempdir().unwrap())
    }

    pub(crate) fn postgres() -> Db {
        Db::Postgres(Postgres::start())
    }

    pub(crate) fn url(&self) -> String {
        match self {
            Db::Sqlite(dir) => format!("sqlite://{}", dir.path().join("carrier.sqlite").display()),
            Db::Postgres(pg) => pg.url(),
        }
    }
}

/// Runs the async test `$name(url)` once per backend: `$name::sqlite`, `$name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let db = $crate::support::Db::sqlite();
                super::$name(&db.url()).await;
            }

            #[tokio::test]
            async fn postgres() {
                let db = $crate::support::Db::postgres();
                super::$name(&db.url()).await;
            }
        }
    };
}

/// The one place that knows where PostgreSQL's server programs are: `pg_config --bindir`,
/// else the newest Debian `/usr/lib/postgresql/<version>/bin`.
pub(crate) fn pg_bindir() -> PathBuf {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|dir| dir.join("initdb").exists());
    if let Some(dir) = from_pg_config {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).expect(
        "PostgreSQL's server programs (initdb, pg_ctl) not found: neither `pg_config --bindir` \
         nor /usr/lib/postgresql/<version>/bin has them",
    )
}

/// A PostgreSQL cluster only this test uses, reachable through a Unix socket in its
/// directory; superuser `carrier`, trusted local connections.
pub(crate) struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// As root: the unprivileged user (uid, gid) the server runs as.
    run_as: Option<(u32, u32)>,
}

impl Postgres {
    pub(crate) fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: geteuid has no preconditions and cannot fail
        let run_as = (unsafe { libc::geteuid() } == 0).then(nobody);
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let pg = Postgres { dir, bin: pg_bindir(), run_as };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "carrier".as_ref(),
                "--auth=trust".as_ref(),
                "--no-locale".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        // pg_ctl hands -o to the server through a shell: the directory is quoted; a
        // temporary directory's name holds no quote.
        let options =
            format!("-k '{}' -c listen_addresses='' -c fsync=off", pg.dir.path().display());
        pg.run(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                pg.dir.path().join("server.log").as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
            ],
        );
        pg
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres:///postgres?host={}&user=carrier", self.dir.path().display())
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut cmd = match self.run_as {
            Some((uid, gid)) => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(program);
                cmd
            }
            None => Command::new(program),
        };
        cmd.current_dir(self.dir.path()).env_remove("PGDATA");
        cmd
    }

    fn run(&self, program: &str, args: &[&OsStr]) {
        let out = self.command(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-w", "-m", "immediate", "-D"])
            .arg(self.data())
            .output();
    }
}

/// The uid and gid of `nobody`, who runs the test clusters when the tests run as root.
/// Looked up once: getpwnam's result lives in a buffer shared by the process's threads.
fn nobody() -> (u32, u32) {
    static NOBODY: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *NOBODY.get_or_init(|| {
        // SAFETY: a NUL-terminated name; the only call, made once
        let pw = unsafe { libc::getpwnam(c"nobody".as_ptr()) };
        assert!(!pw.is_null(), "running as root, PostgreSQL's test cluster needs the user nobody");
        // SAFETY: a non-null result of getpwnam points to a valid passwd record
        unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
    })
}

/// A file's permission bits.
#[allow(dead_code, reason = "only store.rs checks file modes")]
pub(crate) fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}
