//! Accounts, their sessions and API tokens, and the append-only audit log. Secrets never
//! reach the database: passwords as argon2id hashes, session ids and tokens (32 random
//! bytes each) as their SHA-256.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use carrier_core::auth::{Role, Scope};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError, now, query};

/// A user's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub role: Role,
    /// `None`: every machine.
    pub scope: Option<Scope>,
    pub created_at: String,
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub user: String,
    pub name: String,
    /// The role the token acts with; at most its user's.
    pub rights: Role,
    pub scope: Option<Scope>,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// A session as its holder and admins see it; `id` is the SHA-256 of the secret (what the
/// database stores), safe to show: the secret cannot be derived from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    pub id: String,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub address: Option<String>,
}

/// An entry to append to the audit log.
#[derive(Debug, Clone, Default)]
pub struct NewAuditEntry {
    /// The account (or `os:<user>` for the CLI run by a local user) that acted.
    pub actor: String,
    /// Where from: the client's address; `None` for the local CLI.
    pub address: Option<String>,
    /// e.g. `user.add`, `token.revoke`, `sign-in`.
    pub action: String,
    pub target: Option<String>,
    pub details: serde_json::Value,
    /// The configuration's git revision and dirty flag, where one was used.
    pub git: Option<crate::GitState>,
    /// `ok`, `denied`, `failed: ...`.
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub address: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub details: serde_json::Value,
    pub git: Option<crate::GitState>,
    pub outcome: String,
}

/// Which audit entries to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Entries at or after this time (RFC 3339 UTC, as the `at` column).
    pub since: Option<String>,
    pub limit: i64,
}

/// argon2id with 19 MiB of memory, 6 passes and 1 lane: OWASP's minimum memory with more
/// passes, about 60 ms per hash on a current 2-core server (docs/benchmarks.md). Stored
/// hashes carry their own parameters, so verification follows whatever hashed them.
fn hasher() -> Result<argon2::Argon2<'static>, StoreError> {
    let params = argon2::Params::new(19 * 1024, 6, 1, None)
        .map_err(|e| StoreError::Secret(e.to_string()))?;
    Ok(argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params))
}

/// The argon2id hash of a password, as a PHC string with its salt and parameters.
pub fn hash_password(password: &str) -> Result<String, StoreError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| StoreError::Secret(e.to_string()))?;
    hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| StoreError::Secret(e.to_string()))
}

/// Whether `password` matches an argon2id `hash`; an unreadable hash matches nothing.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A new secret for a session or token: shown to its holder as hex, stored as its hash.
fn new_secret() -> Result<(String, String), StoreError> {
    let secret = hex::encode(random_bytes::<32>()?);
    let hash = secret_hash(&secret);
    Ok((secret, hash))
}

/// The public id of a session: what the database stores for its secret.
pub fn session_id(secret: &str) -> String {
    secret_hash(secret)
}

/// SHA-256 suffices for 256-bit random secrets: there is nothing to guess from a hash.
fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], StoreError> {
    use std::io::Read;
    let mut bytes = [0_u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| StoreError::Secret(format!("reading /dev/urandom: {e}")))?;
    Ok(bytes)
}

const USER_COLUMNS: &str =
    "u.id, u.name, u.role, u.scope, u.created_at, CAST(u.disabled AS INTEGER) AS disabled";

impl Store {
    /// Adds an account; its name must be new.
    pub async fn add_user(
        &self,
        name: &str,
        password_hash: &str,
        role: Role,
        scope: Option<&Scope>,
    ) -> Result<UserId, StoreError> {
        if self.user(name).await?.is_some() {
            return Err(StoreError::UserExists(name.into()));
        }
        sqlx::query_scalar(
            "INSERT INTO users (name, password_hash, role, scope, created_at, disabled) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(name)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(scope.map(scope_json))
        .bind(now())
        .bind(false)
        .fetch_one(&self.pool)
        .await
        .map(UserId)
        .map_err(query("adding a user"))
    }

    pub async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .and_then(|row| row.as_ref().map(user).transpose())
            .map_err(query("reading a user"))
    }

    /// Every account, by name.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users u ORDER BY u.name"))
            .fetch_all(&self.pool)
            .await
            .and_then(|rows| rows.iter().map(user).collect())
            .map_err(query("listing users"))
    }

    /// The account and its password hash, to check a password against; a disabled
    /// account is returned too (the caller refuses it).
    pub async fn credentials(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(query("reading a user"))?;
        row.map(|r| Ok((user(&r)?, r.try_get("password_hash")?)))
            .transpose()
            .map_err(query("reading a user"))
    }

    /// Replaces a password and ends the account's sessions: whoever knew the old one is
    /// signed out.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<(), StoreError> {
        let what = "changing a password";
        let mut tx = self.pool.begin().await.map_err(query(what))?;
        let changed = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(password_hash)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(query(what))?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::NoUser(name.into()));
        }
        revoke_all_sessions(&mut tx, name).await.map_err(query(what))?;
        tx.commit().await.map_err(query(what))
    }

    /// Removes an account with its sessions and tokens; the audit log keeps its name.
    pub async fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        let what = "removing a user";
        let mut tx = self.pool.begin().await.map_err(query(what))?;
        // explicit rather than ON DELETE CASCADE: SQLite enforces it only with foreign keys on
        for table in ["sessions", "api_tokens"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE user_id = (SELECT id FROM users WHERE name = $1)"
            ))
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(query(what))?;
        }
        let removed = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(query(what))?
            .rows_affected();
        if removed == 0 {
            return Err(StoreError::NoUser(name.into()));
        }
        tx.commit().await.map_err(query(what))
    }

    /// Starts a session for `user` lasting `ttl`; returns its secret id (the cookie's value).
    pub async fn create_session(
        &self,
        user: UserId,
        ttl: jiff::SignedDuration,
        address: Option<&str>,
    ) -> Result<String, StoreError> {
        let (secret, hash) = new_secret()?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, created_at, expires_at, address) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash)
        .bind(user.0)
        .bind(now())
        .bind(after(ttl)?)
        .bind(address)
        .execute(&self.pool)
        .await
        .map_err(query("starting a session"))?;
        Ok(secret)
    }

    /// The user of a session that is neither expired nor revoked, whose account is enabled.
    pub async fn session_user(&self, secret: &str) -> Result<Option<User>, StoreError> {
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 \
             AND CAST(u.disabled AS INTEGER) = 0"
        ))
        .bind(secret_hash(secret))
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .and_then(|row| row.as_ref().map(user).transpose())
        .map_err(query("reading a session"))
    }

    /// Ends a session (sign-out); an unknown one is not an error.
    pub async fn revoke_session(&self, secret: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE id_hash = $2 AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(secret_hash(secret))
        .execute(&self.pool)
        .await
        .map_err(query("revoking a session"))?;
        Ok(())
    }

    /// Disables or enables an account. Disabling ends its sessions (enabling again does not
    /// bring them back); its tokens match nothing while it is disabled.
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError> {
        let what = "disabling or enabling a user";
        let mut tx = self.pool.begin().await.map_err(query(what))?;
        let changed = sqlx::query("UPDATE users SET disabled = $1 WHERE name = $2")
            .bind(disabled)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(query(what))?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::NoUser(name.into()));
        }
        if disabled {
            revoke_all_sessions(&mut tx, name).await.map_err(query(what))?;
        }
        tx.commit().await.map_err(query(what))
    }

    /// Changes an account's role and scope (`None`: every machine).
    pub async fn set_role(
        &self,
        name: &str,
        role: Role,
        scope: Option<&Scope>,
    ) -> Result<(), StoreError> {
        let changed = sqlx::query("UPDATE users SET role = $1, scope = $2 WHERE name = $3")
            .bind(role.as_str())
            .bind(scope.map(scope_json))
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(query("changing a user's role"))?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::NoUser(name.into()));
        }
        Ok(())
    }

    /// An account's sessions that have not expired, newest first.
    pub async fn sessions(&self, user: &str) -> Result<Vec<Session>, StoreError> {
        sqlx::query(
            "SELECT s.id_hash, s.created_at, s.expires_at, s.revoked_at, s.address \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.name = $1 AND s.expires_at > $2 ORDER BY s.created_at DESC, s.id_hash",
        )
        .bind(user)
        .bind(now())
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(session).collect())
        .map_err(query("listing sessions"))
    }

    /// Revokes one session of `user` by its public id ([`session_id`]).
    pub async fn revoke_session_of(&self, user: &str, id: &str) -> Result<(), StoreError> {
        let revoked = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE id_hash = $2 AND revoked_at IS NULL \
             AND user_id = (SELECT id FROM users WHERE name = $3)",
        )
        .bind(now())
        .bind(id)
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(query("revoking a session"))?
        .rows_affected();
        if revoked == 0 {
            return Err(StoreError::NoSession(user.into()));
        }
        Ok(())
    }

    /// Revokes every session of `user` (an admin signing them out); returns how many.
    pub async fn revoke_sessions(&self, user: &str) -> Result<u64, StoreError> {
        let what = "revoking sessions";
        let mut tx = self.pool.begin().await.map_err(query(what))?;
        let n = revoke_all_sessions(&mut tx, user).await.map_err(query(what))?;
        tx.commit().await.map_err(query(what))?;
        Ok(n)
    }

    /// Creates an API token for `user` acting with `rights` (at most the user's role) and
    /// `scope`; returns its secret, which is shown once and never stored.
    pub async fn create_token(
        &self,
        user: &User,
        name: &str,
        rights: Role,
        scope: Option<&Scope>,
        ttl: jiff::SignedDuration,
    ) -> Result<String, StoreError> {
        if rights > user.role {
            return Err(StoreError::Rights { user: user.name.clone(), role: user.role, rights });
        }
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT id FROM api_tokens WHERE user_id = $1 AND name = $2")
                .bind(user.id.0)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(query("creating a token"))?;
        if exists.is_some() {
            return Err(StoreError::TokenExists { user: user.name.clone(), name: name.into() });
        }
        let (secret, hash) = new_secret()?;
        sqlx::query(
            "INSERT INTO api_tokens (user_id, name, hash, rights, scope, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(user.id.0)
        .bind(name)
        .bind(hash)
        .bind(rights.as_str())
        // a token's scope narrows the user's; without one it has the user's
        .bind(scope.or(user.scope.as_ref()).map(scope_json))
        .bind(now())
        .bind(after(ttl)?)
        .execute(&self.pool)
        .await
        .map_err(query("creating a token"))?;
        Ok(secret)
    }

    /// Tokens, of one user or of all, by user and name.
    pub async fn tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>, StoreError> {
        sqlx::query(
            "SELECT t.id, u.name AS user_name, t.name, t.rights, t.scope, t.created_at, \
             t.expires_at, t.revoked_at, t.last_used_at \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE $1 IS NULL OR u.name = $1 ORDER BY u.name, t.name",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(token).collect())
        .map_err(query("listing tokens"))
    }

    /// Revokes a user's token by name.
    pub async fn revoke_token(&self, user: &str, name: &str) -> Result<(), StoreError> {
        let revoked = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL \
             AND user_id = (SELECT id FROM users WHERE name = $3)",
        )
        .bind(now())
        .bind(name)
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(query("revoking a token"))?
        .rows_affected();
        if revoked == 0 {
            return Err(StoreError::NoToken { user: user.into(), name: name.into() });
        }
        Ok(())
    }

    /// The user and token of a bearer secret that is neither expired nor revoked, whose
    /// account is enabled; records its use.
    pub async fn token_user(&self, secret: &str) -> Result<Option<(User, ApiToken)>, StoreError> {
        let what = "reading a token";
        let hash = secret_hash(secret);
        let at = now();
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, t.id AS token_id FROM api_tokens t \
             JOIN users u ON u.id = t.user_id WHERE t.hash = $1 AND t.revoked_at IS NULL \
             AND t.expires_at > $2 AND CAST(u.disabled AS INTEGER) = 0"
        ))
        .bind(&hash)
        .bind(&at)
        .fetch_optional(&self.pool)
        .await
        .map_err(query(what))?;
        let Some(row) = row else { return Ok(None) };
        let owner = user(&row).map_err(query(what))?;
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE hash = $2")
            .bind(&at)
            .bind(&hash)
            .execute(&self.pool)
            .await
            .map_err(query(what))?;
        let id: i64 = row.try_get("token_id").map_err(query(what))?;
        let tokens = self.tokens(Some(&owner.name)).await?;
        let token = tokens
            .into_iter()
            .find(|t| t.id == id)
            .ok_or(StoreError::Query { what, source: sqlx::Error::RowNotFound })?;
        Ok(Some((owner, token)))
    }

    /// Appends an entry to the audit log, stamped now.
    pub async fn audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, address, action, target, details, git_revision, \
             git_dirty, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(now())
        .bind(&entry.actor)
        .bind(&entry.address)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(entry.details.to_string())
        .bind(entry.git.as_ref().and_then(|g| g.revision.clone()))
        .bind(entry.git.as_ref().map(|g| g.dirty))
        .bind(&entry.outcome)
        .execute(&self.pool)
        .await
        .map_err(query("writing the audit log"))?;
        Ok(())
    }

    /// Audit entries, newest first.
    pub async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        sqlx::query(
            "SELECT id, at, actor, address, action, target, details, git_revision, \
             CAST(git_dirty AS INTEGER) AS git_dirty, outcome FROM audit_log \
             WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2) \
             AND ($3 IS NULL OR at >= $3) ORDER BY id DESC LIMIT $4",
        )
        .bind(&filter.actor)
        .bind(&filter.action)
        .bind(&filter.since)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(audit_entry).collect())
        .map_err(query("reading the audit log"))
    }
}

async fn revoke_all_sessions(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: &str,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = $1 WHERE revoked_at IS NULL AND user_id = \
         (SELECT id FROM users WHERE name = $2)",
    )
    .bind(now())
    .bind(user)
    .execute(&mut **tx)
    .await
    .map(|r| r.rows_affected())
}

fn session(row: &AnyRow) -> Result<Session, sqlx::Error> {
    Ok(Session {
        id: row.try_get("id_hash")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        address: row.try_get("address")?,
    })
}

fn scope_json(scope: &Scope) -> String {
    serde_json::to_string(scope.terms()).unwrap_or_default()
}

fn decode<E: std::fmt::Display>(e: E) -> sqlx::Error {
    sqlx::Error::Decode(e.to_string().into())
}

fn scope(row: &AnyRow) -> Result<Option<Scope>, sqlx::Error> {
    let text: Option<String> = row.try_get("scope")?;
    text.map(|t| serde_json::from_str(&t).map_err(decode)).transpose()
}

fn user(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: UserId(row.try_get("id")?),
        name: row.try_get("name")?,
        role: row.try_get::<String, _>("role")?.parse().map_err(decode)?,
        scope: scope(row)?,
        created_at: row.try_get("created_at")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
    })
}

fn token(row: &AnyRow) -> Result<ApiToken, sqlx::Error> {
    Ok(ApiToken {
        id: row.try_get("id")?,
        user: row.try_get("user_name")?,
        name: row.try_get("name")?,
        rights: row.try_get::<String, _>("rights")?.parse().map_err(decode)?,
        scope: scope(row)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

fn audit_entry(row: &AnyRow) -> Result<AuditEntry, sqlx::Error> {
    let details: String = row.try_get("details")?;
    let revision: Option<String> = row.try_get("git_revision")?;
    let dirty: Option<i64> = row.try_get("git_dirty")?;
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        address: row.try_get("address")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        details: serde_json::from_str(&details).map_err(decode)?,
        git: dirty.map(|d| crate::GitState { revision, dirty: d != 0 }),
        outcome: row.try_get("outcome")?,
    })
}

/// Now plus `ttl`, as a time column holds it.
fn after(ttl: jiff::SignedDuration) -> Result<String, StoreError> {
    let at = jiff::Timestamp::now()
        .checked_add(ttl)
        .and_then(|t| t.round(jiff::Unit::Second))
        .map_err(|e| StoreError::Secret(format!("expiry out of range: {e}")))?;
    Ok(at.to_string())
}
