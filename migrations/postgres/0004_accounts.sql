-- Accounts of the dashboard and the CLI, their sessions and API tokens, and the audit log.
-- Times are RFC 3339 UTC text; scope, rights and details are JSON text. Secrets are never
-- stored: a password as its argon2id PHC string, a session id or token as the hex SHA-256
-- of its 32 random bytes.

-- role: what the account may do; scope: a JSON list of selection terms (a name pattern,
-- `tag:<tag>`, `<carrier>#*`) limiting a deployer to those machines, NULL for all.
CREATE TABLE users (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('viewer', 'deployer', 'admin')),
    scope         TEXT,
    created_at    TEXT    NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE sessions (
    id_hash    TEXT    PRIMARY KEY,
    user_id    BIGINT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT    NOT NULL,
    expires_at TEXT    NOT NULL,
    revoked_at TEXT,
    address    TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- rights: the role the token acts with, at most its user's; scope as users.scope, within
-- the user's.
CREATE TABLE api_tokens (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    hash         TEXT    NOT NULL UNIQUE,
    rights       TEXT    NOT NULL CHECK (rights IN ('viewer', 'deployer', 'admin')),
    scope        TEXT,
    created_at   TEXT    NOT NULL,
    expires_at   TEXT    NOT NULL,
    revoked_at   TEXT,
    last_used_at TEXT,
    UNIQUE (user_id, name)
);

-- Append-only: triggers refuse every UPDATE and DELETE. actor is a user name as it was
-- (users may be removed later); git_revision/git_dirty only where a configuration was used.
CREATE TABLE audit_log (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           TEXT    NOT NULL,
    actor        TEXT    NOT NULL,
    address      TEXT,
    action       TEXT    NOT NULL,
    target       TEXT,
    details      TEXT    NOT NULL,
    git_revision TEXT,
    git_dirty    BOOLEAN,
    outcome      TEXT    NOT NULL
);
CREATE INDEX audit_log_by_actor ON audit_log (actor, id);
CREATE INDEX audit_log_by_action ON audit_log (action, id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
