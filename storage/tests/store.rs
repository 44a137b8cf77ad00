//! The store against both backends: a SQLite file and a PostgreSQL cluster of the test's
//! own. Migrations, the refusal of a database from a newer carrier, and the records of
//! builds and deploys (start, end, interrupted, listing, filtering by machine).

mod support;

use std::str::FromStr;

use carrier_storage::{
    Checkin, GitState, MachineOutcome, NewCheckin, NewRun, RunEnd, RunKind, Store, StoreError,
};
use serde_json::json;

fn new_run(kind: RunKind, machines: &[&str]) -> NewRun {
    NewRun {
        kind,
        user: "alice".into(),
        host: "workstation".into(),
        selection: json!({"pattern": "node*", "tags": ["^slow"], "attrs": []}),
        action: (kind == RunKind::Deploy).then(|| "switch".into()),
        options: json!({"one_by_one": true}),
        git: Some(GitState { revision: Some("0123abcd".into()), dirty: true }),
        generation: None,
        machines: machines.iter().map(|m| m.to_string()).collect(),
    }
}

fn outcome(machine: &str, state: &str, phase: Option<&str>, error: Option<&str>) -> MachineOutcome {
    MachineOutcome {
        machine: machine.into(),
        generation: Some("2026-12-03--11-00-00".into()),
        state: state.into(),
        phase: phase.map(Into::into),
        error: error.map(Into::into),
    }
}

fn all(_: &str) -> bool {
    true
}

async fn migrations_apply_on_an_empty_database(url: &str) {
    let store = Store::open(url).await.unwrap();
    assert!(store.runs(&all, 10).await.unwrap().is_empty());
    store.close().await;
    // opening again applies nothing and keeps what is there
    let store = Store::open(url).await.unwrap();
    let id = store.start_run(&new_run(RunKind::Build, &["node1"])).await.unwrap();
    store.close().await;
    let store = Store::open(url).await.unwrap();
    assert_eq!(store.runs(&all, 10).await.unwrap()[0].id, id);
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool(url).await)
            .await
            .unwrap();
    assert_eq!(applied, [1, 2, 3, 4, 5]);
}
on_both_backends!(migrations_apply_on_an_empty_database);

async fn a_database_answers_a_ping_until_it_is_closed(url: &str) {
    let store = Store::open(url).await.unwrap();
    store.ping().await.unwrap();
    store.close().await;
    let e = store.ping().await.unwrap_err();
    assert!(e.to_string().contains("pinging the database"), "{e}");
}
on_both_backends!(a_database_answers_a_ping_until_it_is_closed);

/// A SQLite database is kept in write-ahead-log mode (readers do not wait for writers);
/// the mode is the file's, so a later opener (the CLI, another process) sees it too.
#[tokio::test]
async fn a_sqlite_database_uses_the_write_ahead_log() {
    let db = support::Db::sqlite();
    let store = Store::open(&db.url()).await.unwrap();
    let mode: String =
        sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&pool(&db.url()).await).await.unwrap();
    assert_eq!(mode, "wal");
    // a reader is not blocked by an exclusive write transaction (with a rollback journal
    // it would wait for the lock, then fail)
    let writer = pool(&db.url()).await;
    let mut conn = writer.acquire().await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut *conn).await.unwrap();
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, outcome, details) \
         VALUES ('2026-12-04T00:00:00Z', 'x', 'y', 'ok', '{}')",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    let started = std::time::Instant::now();
    assert!(store.runs(&all, 10).await.unwrap().is_empty());
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "the reader waited");
    sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();
    store.close().await;
}

async fn a_database_from_a_newer_carrier_is_refused(url: &str) {
    Store::open(url).await.unwrap().close().await;
    let pool = pool(url).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(9999_i64)
    .bind("from the future")
    .bind(true)
    .bind(vec![0_u8; 48])
    .bind(1_i64)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let err = Store::open(url).await.unwrap_err();
    assert!(matches!(err, StoreError::Newer { version: 9999, known: 5, .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("written by a newer carrier"), "{message}");
    assert!(message.contains("migration 9999"), "{message}");
}
on_both_backends!(a_database_from_a_newer_carrier_is_refused);

async fn runs_are_recorded_from_start_to_end(url: &str) {
    let store = Store::open(url).await.unwrap();
    let build = store.start_run(&new_run(RunKind::Build, &["node1", "node2"])).await.unwrap();
    store
        .finish_run(
            build,
            &RunEnd {
                success: true,
                error: None,
                generation: Some("2026-12-03--11-00-00".into()),
                machines: vec![
                    outcome("node1", "built", None, None),
                    outcome("node2", "built", None, None),
                ],
            },
        )
        .await
        .unwrap();
    let mut deploy = new_run(RunKind::Deploy, &["node1", "node2"]);
    deploy.git = None;
    deploy.generation = Some("2026-12-03--11-00-00".into());
    let deploy = store.start_run(&deploy).await.unwrap();
    store
        .finish_run(
            deploy,
            &RunEnd {
                success: false,
                error: None,
                generation: None,
                machines: vec![
                    outcome("node1", "deployed", None, None),
                    outcome(
                        "node2",
                        "failed",
                        Some("activate"),
                        Some("switch-to-configuration exited 1"),
                    ),
                ],
            },
        )
        .await
        .unwrap();

    let runs = store.runs(&all, 10).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [deploy, build], "newest first");
    let (d, b) = (&runs[0], &runs[1]);
    assert_eq!((b.kind, d.kind), (RunKind::Build, RunKind::Deploy));
    assert_eq!((b.user.as_str(), b.host.as_str()), ("alice", "workstation"));
    assert_eq!(b.selection, json!({"pattern": "node*", "tags": ["^slow"], "attrs": []}));
    assert_eq!(b.options, json!({"one_by_one": true}));
    assert_eq!(b.action, None);
    assert_eq!(d.action.as_deref(), Some("switch"));
    assert_eq!(b.git, Some(GitState { revision: Some("0123abcd".into()), dirty: true }));
    assert_eq!(d.git, None, "no git is recorded as such");
    assert_eq!(b.generation.as_deref(), Some("2026-12-03--11-00-00"));
    assert_eq!((b.success, d.success), (Some(true), Some(false)));
    assert!(b.finished_at.is_some() && d.finished_at.is_some());
    assert!(jiff::Timestamp::from_str(&d.started_at).is_ok(), "{}", d.started_at);
    assert_eq!(
        d.machines,
        [
            outcome("node1", "deployed", None, None),
            outcome("node2", "failed", Some("activate"), Some("switch-to-configuration exited 1")),
        ]
    );
    assert_eq!(store.runs(&all, 1).await.unwrap().len(), 1);
}
on_both_backends!(runs_are_recorded_from_start_to_end);

async fn an_interrupted_run_stays_unfinished(url: &str) {
    let store = Store::open(url).await.unwrap();
    let mut run = new_run(RunKind::Deploy, &["pxe#node1", "node2"]);
    run.generation = Some("2026-12-01--08-00-00".into());
    let id = store.start_run(&run).await.unwrap();
    store.close().await;
    // the process that started it is gone; another one reads the history
    let runs = Store::open(url).await.unwrap().runs(&all, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, id);
    assert_eq!((runs[0].finished_at.as_deref(), runs[0].success), (None, None));
    let pending = |m: &str| MachineOutcome {
        machine: m.into(),
        generation: Some("2026-12-01--08-00-00".into()),
        state: "pending".into(),
        phase: None,
        error: None,
    };
    assert_eq!(runs[0].machines, [pending("node2"), pending("pxe#node1")]);
}
on_both_backends!(an_interrupted_run_stays_unfinished);

async fn history_is_filtered_by_machine(url: &str) {
    let store = Store::open(url).await.unwrap();
    // more runs than one page of the listing: every third run touches a carried machine
    let mut carried = Vec::new();
    for i in 0..130 {
        let machines: &[&str] = if i % 3 == 0 { &["pxe#node1", "node2"] } else { &["node2"] };
        let id = store.start_run(&new_run(RunKind::Deploy, machines)).await.unwrap();
        if i % 3 == 0 {
            carried.push(id);
        }
    }
    carried.reverse();
    let is_carried = |m: &str| m.starts_with("pxe#");
    let runs = store.runs(&is_carried, 40).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), carried[..40]);
    for run in &runs {
        let names: Vec<_> = run.machines.iter().map(|m| m.machine.as_str()).collect();
        assert_eq!(names, ["pxe#node1"], "only the machines asked for");
    }
    assert_eq!(store.runs(&is_carried, 1000).await.unwrap().len(), carried.len());
    assert!(store.runs(&|m: &str| m == "nothing", 10).await.unwrap().is_empty());
}
on_both_backends!(history_is_filtered_by_machine);

fn checkin(carrier: &str, machine: &str, generation: u64, source: &str) -> NewCheckin {
    NewCheckin {
        carrier: carrier.into(),
        machine: machine.into(),
        generation,
        mac: "52:54:00:12:34:56".into(),
        cmdline: format!("init=/nix/store/x/init carrier.generation={generation}"),
        source: source.into(),
    }
}

async fn the_latest_checkin_per_machine_is_read(url: &str) {
    let store = Store::open(url).await.unwrap();
    assert!(store.latest_checkins().await.unwrap().is_empty());
    store.record_checkin(&checkin("pxe", "node1", 3, "10.0.0.5")).await.unwrap();
    store.record_checkin(&checkin("pxe", "node2", 7, "10.0.0.6")).await.unwrap();
    store.record_checkin(&checkin("pxe", "node1", 4, "10.0.0.5")).await.unwrap();
    // the same profile name on another carrier is another machine
    store.record_checkin(&checkin("pxe2", "node1", 1, "10.0.1.5")).await.unwrap();
    store.record_checkin(&checkin("pxe", "node1", 2, "10.0.0.9")).await.unwrap();
    store.close().await;

    let latest = Store::open(url).await.unwrap().latest_checkins().await.unwrap();
    let key = |c: &Checkin| (c.carrier.clone(), c.machine.clone(), c.generation, c.source.clone());
    assert_eq!(
        latest.iter().map(key).collect::<Vec<_>>(),
        [
            ("pxe".into(), "node1".into(), 2, "10.0.0.9".into()),
            ("pxe".into(), "node2".into(), 7, "10.0.0.6".into()),
            ("pxe2".into(), "node1".into(), 1, "10.0.1.5".into()),
        ],
        "the last received per (carrier, machine), even when it is an older generation"
    );
    assert_eq!(latest[0].mac, "52:54:00:12:34:56");
    assert_eq!(latest[0].cmdline, "init=/nix/store/x/init carrier.generation=2");
    assert!(jiff::Timestamp::from_str(&latest[0].received_at).is_ok(), "{}", latest[0].received_at);
}
on_both_backends!(the_latest_checkin_per_machine_is_read);

#[tokio::test]
async fn a_new_sqlite_file_is_private_and_its_directory_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("conf/.confctl/carrier.sqlite");
    Store::open(&format!("sqlite://{}", file.display())).await.unwrap().close().await;
    assert_eq!(support::mode(&file), 0o600);
    assert_eq!(
        carrier_storage::default_url(&dir.path().join("conf")),
        format!("sqlite://{}", file.display())
    );
}

#[tokio::test]
async fn an_unknown_scheme_is_refused_by_name() {
    let err = Store::open("mysql://db/carrier").await.unwrap_err();
    assert!(err.to_string().contains("unsupported database URL 'mysql://db/carrier'"), "{err}");
}

async fn pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}
