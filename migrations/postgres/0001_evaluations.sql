-- Every evaluation of the cluster configuration the server performed: when Nix ran
-- for a new content key, or when the configuration failed to evaluate.
CREATE TABLE evaluations (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    content_key  TEXT    NOT NULL,
    evaluated_at TEXT    NOT NULL,
    machines     BIGINT,
    duration_ms  BIGINT  NOT NULL,
    error        TEXT
);
CREATE INDEX evaluations_by_key ON evaluations (content_key, id);
