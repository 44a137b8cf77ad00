-- Jobs of `carrier serve`: deploys, builds, netboot rebuilds and generation removals a
-- request starts and a serve instance runs, one or several instances over one database.
-- Times are RFC 3339 UTC text; request, report and events are JSON text.

-- request: the selection, action and options as given; summary: one line for lists;
-- instance: the serve instance that claimed it; run_id: its record in the history.
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT    NOT NULL
                     CHECK (kind IN ('deploy', 'build', 'netboot-rebuild', 'generation-rm')),
    state            TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'succeeded',
                                                       'failed', 'cancelled', 'interrupted')),
    requested_by     TEXT    NOT NULL,
    request          TEXT    NOT NULL,
    summary          TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    instance         TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    run_id           INTEGER REFERENCES runs (id),
    error            TEXT,
    report           TEXT
);
CREATE INDEX jobs_by_state ON jobs (state, id);

-- The machines a job acts on.
CREATE TABLE job_machines (
    job_id  INTEGER NOT NULL REFERENCES jobs (id),
    machine TEXT    NOT NULL,
    PRIMARY KEY (job_id, machine)
);
CREATE INDEX job_machines_by_machine ON job_machines (machine, job_id);

-- A job's progress events, numbered from 1 per job.
CREATE TABLE job_events (
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    seq    INTEGER NOT NULL,
    at     TEXT    NOT NULL,
    event  TEXT    NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- The machines of running jobs: inserted when a job is claimed, deleted when it ends, in
-- the same transactions. The primary key makes a second claim on a machine fail.
CREATE TABLE machine_locks (
    machine TEXT    PRIMARY KEY,
    job_id  INTEGER NOT NULL REFERENCES jobs (id)
);

-- Live serve instances, by name; a stale heartbeat means the instance is gone.
CREATE TABLE instances (
    name         TEXT PRIMARY KEY,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);
