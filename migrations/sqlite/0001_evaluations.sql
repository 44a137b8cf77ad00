-- Every evaluation of the cluster configuration the server performed: when Nix ran
-- for a new content key, or when the configuration failed to evaluate.
CREATE TABLE evaluations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    content_key  TEXT    NOT NULL,
    evaluated_at TEXT    NOT NULL,
    machines     INTEGER,
    duration_ms  INTEGER NOT NULL,
    error        TEXT
);
CREATE INDEX evaluations_by_key ON evaluations (content_key, id);
