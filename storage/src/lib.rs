//! carrier's database, shared by the CLI and `carrier serve`: one [`Store`] opened from a
//! URL (`sqlite://...` or `postgres://...`), migrated at open, queried through sqlx's
//! `Any` driver with runtime queries whose `$1` placeholders both dialects accept.
//! Decisions: docs/storage.md.

mod accounts;
mod checkins;
mod jobs;
mod records;

use std::path::{Path, PathBuf};

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{MigrateError, Migrator};

pub use accounts::{
    ApiToken, AuditEntry, AuditFilter, NewAuditEntry, Session, User, UserId, hash_password,
    session_id, verify_password,
};
pub use checkins::{Checkin, NewCheckin};
pub use jobs::{IfBusy, Job, JobEvent, JobFilter, JobId, JobKind, JobState, NewJob};
pub use records::{GitState, MachineOutcome, NewRun, Run, RunEnd, RunId, RunKind};

/// The SQLite file inside the configuration directory, beside the build generations.
pub const DEFAULT_FILE: &str = ".confctl/carrier.sqlite";

static SQLITE: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL '{url}': use sqlite://<file> or postgres://...")]
    Scheme { url: String },
    #[error("creating the database file {}: {source}", path.display())]
    Create { path: PathBuf, source: std::io::Error },
    #[error("opening the database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error(
        "the database {url} was written by a newer carrier: it has migration {version}, this \
         carrier knows migrations up to {known}; use that carrier or another --database-url"
    )]
    Newer { url: String, version: i64, known: i64 },
    #[error("migrating the database {url}: {source}")]
    Migrate { url: String, source: MigrateError },
    #[error("a user named '{0}' exists already")]
    UserExists(String),
    #[error("no user named '{0}'")]
    NoUser(String),
    #[error("user '{user}' has a token named '{name}' already")]
    TokenExists { user: String, name: String },
    #[error("user '{user}' has no active token named '{name}'")]
    NoToken { user: String, name: String },
    #[error("user '{0}' has no active session with that id")]
    NoSession(String),
    #[error("a token of '{user}' cannot have {rights} rights: the user is a {role}")]
    Rights { user: String, role: carrier_core::auth::Role, rights: carrier_core::auth::Role },
    #[error(
        "machine '{machine}' is in job #{job} ({state}); wait for it to end, cancel it, or queue \
         this job behind it"
    )]
    Busy { machine: String, job: JobId, state: JobState },
    #[error("a job needs at least one machine")]
    JobWithoutMachines,
    #[error("machine '{0}' is named twice in the job")]
    JobMachineTwice(String),
    #[error("no job #{0}")]
    NoJob(JobId),
    #[error("job #{0} has ended already")]
    JobFinished(JobId),
    #[error("job #{job} is {from}: it cannot end as {to}")]
    JobTransition { job: JobId, from: JobState, to: JobState },
    #[error(
        "serve instance '{0}' is not registered: it was declared dead after its heartbeat went \
         stale, and its jobs were interrupted"
    )]
    UnknownInstance(String),
    #[error("making a secret: {0}")]
    Secret(String),
    #[error("database error while {what}: {source}")]
    Query { what: &'static str, source: sqlx::Error },
}

/// Which SQL dialect a store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn of(url: &str) -> Option<Backend> {
        let scheme = url.split_once(':')?.0;
        match scheme {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }

    fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        }
    }
}

/// An open, migrated database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// `sqlite://<conf_dir>/.confctl/carrier.sqlite`: the database the CLI and `carrier serve`
/// use unless given `--database-url`. Does not touch the file system.
pub fn default_url(conf_dir: &Path) -> String {
    let conf = std::path::absolute(conf_dir).unwrap_or_else(|_| conf_dir.to_path_buf());
    format!("sqlite://{}", conf.join(DEFAULT_FILE).display())
}

impl Store {
    /// Opens the database at `url` and applies the migrations this carrier knows. A
    /// missing SQLite file is created with mode 0600 (its directory as needed). A database
    /// that has a migration this carrier does not know is refused before anything changes.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let backend = Backend::of(url).ok_or_else(|| StoreError::Scheme { url: redact(url) })?;
        if backend == Backend::Sqlite {
            create_sqlite_file(url)?;
        }
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .connect(url)
            .await
            .map_err(|source| StoreError::Open { url: redact(url), source })?;
        if backend == Backend::Sqlite {
            // write-ahead log: readers (pages, event streams) never wait for a writer (a
            // job's events), nor a writer for readers. A setting of the file, kept from
            // the first open on; every commit is still synced (`synchronous` stays FULL).
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(|source| StoreError::Open { url: redact(url), source })?;
        }
        let migrator = backend.migrator();
        migrator.run(&pool).await.map_err(|source| match source {
            MigrateError::VersionMissing(version) => StoreError::Newer {
                url: redact(url),
                version,
                known: migrator.iter().map(|m| m.version).max().unwrap_or(0),
            },
            source => StoreError::Migrate { url: redact(url), source },
        })?;
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Waits for the pool's connections to close (SQLite: the file is complete on disk).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A trivial query: whether the database answers (`GET /healthz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(query("pinging the database"))?;
        Ok(())
    }

    /// Records an evaluation of the cluster configuration (`carrier serve`).
    pub async fn record_evaluation(
        &self,
        content_key: &str,
        machines: Option<usize>,
        duration_ms: i64,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO evaluations (content_key, evaluated_at, machines, duration_ms, error) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(content_key)
        .bind(now())
        .bind(machines.map(|m| m as i64))
        .bind(duration_ms)
        .bind(error)
        .execute(&self.pool)
        .await
        .map_err(query("recording an evaluation"))?;
        Ok(())
    }

    /// When the configuration with this content key last evaluated without error.
    pub async fn last_evaluation(&self, content_key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT evaluated_at FROM evaluations WHERE content_key = $1 AND error IS NULL \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(content_key)
        .fetch_optional(&self.pool)
        .await
        .map_err(query("reading evaluations"))
    }
}

/// Creates a SQLite database file readable by its owner only, unless it exists. SQLite
/// gives its journal files the database file's mode.
fn create_sqlite_file(url: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::str::FromStr;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|source| StoreError::Open { url: redact(url), source })?;
    let path = options.get_filename();
    if path.as_os_str() == ":memory:" {
        return Ok(());
    }
    let create = |source| StoreError::Create { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(create)?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(create(e)),
        _ => Ok(()),
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_string(),
    }
}

/// Now, RFC 3339 in UTC to the second: the text every time column holds.
fn now() -> String {
    rfc3339(jiff::Timestamp::now())
}

/// A time as the time columns hold it, RFC 3339 in UTC to the second: texts of one form
/// compare as the times do.
fn rfc3339(t: jiff::Timestamp) -> String {
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

fn query(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("postgres://u:secret@db/x?sslmode=require"),
            "postgres://u:***@db/x?sslmode=require"
        );
        assert_eq!(redact("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(redact("sqlite:///var/lib/c.sqlite"), "sqlite:///var/lib/c.sqlite");
    }

    #[test]
    fn the_default_database_lies_beside_the_build_generations() {
        assert_eq!(
            default_url(Path::new("/srv/conf")),
            "sqlite:///srv/conf/.confctl/carrier.sqlite"
        );
    }

    #[test]
    fn backends_by_scheme() {
        assert_eq!(Backend::of("sqlite://x"), Some(Backend::Sqlite));
        assert_eq!(Backend::of("postgres:///db?host=/run"), Some(Backend::Postgres));
        assert_eq!(Backend::of("mysql://x"), None);
    }
}
