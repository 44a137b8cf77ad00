-- One row per `carrier build` or `carrier deploy`, inserted when the run starts and
-- completed when it ends: a run whose finished_at stays NULL was interrupted.
-- Times are RFC 3339 UTC text; selection and options are JSON text.
-- git_revision and git_dirty are both NULL when the configuration is not in a git work
-- tree; git_revision alone is NULL in a repository without commits.
CREATE TABLE runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT    NOT NULL CHECK (kind IN ('build', 'deploy')),
    user_name    TEXT    NOT NULL,
    host_name    TEXT    NOT NULL,
    started_at   TEXT    NOT NULL,
    finished_at  TEXT,
    selection    TEXT    NOT NULL,
    action       TEXT,
    options      TEXT    NOT NULL,
    git_revision TEXT,
    git_dirty    BOOLEAN,
    generation   TEXT,
    success      BOOLEAN,
    error        TEXT
);

-- Each machine of a run: `pending` from the start, its outcome once the run ends.
CREATE TABLE run_machines (
    run_id     INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    machine    TEXT    NOT NULL,
    generation TEXT,
    state      TEXT    NOT NULL,
    phase      TEXT,
    error      TEXT,
    PRIMARY KEY (run_id, machine)
);
CREATE INDEX run_machines_by_machine ON run_machines (machine, run_id);
