//! What an account does to itself (its tokens and sessions) and what an admin does to
//! accounts, thin over carrier-storage; every change is audited, refused ones included
//! (docs/accounts.md).

use carrier_core::auth::{Role, Scope};
use carrier_storage::{AuditFilter, StoreError, User, session_id};
use serde_json::json;

use super::access::{AccessPolicy, Caller, Via, internal};
use crate::error::AppError;
use crate::model::{AuditView, CallerView, SessionView, TokenView, UserView, scope_terms};

/// Longest token lifetime the dashboard creates.
pub const MAX_TOKEN_DAYS: u32 = 365;

pub fn caller_view(caller: &Caller) -> CallerView {
    CallerView {
        name: caller.account.clone(),
        role: caller.role().map(|r| r.to_string()),
        session: caller.via == Via::Session,
    }
}

pub async fn my_tokens(access: &AccessPolicy, caller: &Caller) -> Result<Vec<TokenView>, AppError> {
    let tokens = access.store.tokens(Some(account(caller)?)).await.map_err(internal)?;
    Ok(tokens
        .into_iter()
        .map(|t| TokenView {
            name: t.name,
            rights: t.rights.to_string(),
            scope: t.scope.map(|s| s.terms().to_vec()).unwrap_or_default(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            last_used_at: t.last_used_at,
        })
        .collect())
}

/// A token for the caller's own account with at most the caller's rights; returns its
/// secret, shown once. Only a signed-in session creates tokens: a token cannot mint
/// another (which could outlive it).
pub async fn create_token(
    access: &AccessPolicy,
    caller: &Caller,
    name: &str,
    rights: &str,
    scope: &str,
    days: u32,
) -> Result<String, AppError> {
    let owner = account(caller)?;
    if caller.via != Via::Session {
        return Err(AppError::Forbidden("tokens are created from a signed-in session".into()));
    }
    let name = name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(AppError::BadInput("a token name is 1 to 64 characters".into()));
    }
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        return Err(AppError::BadInput(format!(
            "invalid expiry '{days}': 1 to {MAX_TOKEN_DAYS} days"
        )));
    }
    let rights: Role = rights.parse().map_err(|e| AppError::BadInput(format!("{e}")))?;
    let scope = parse_scope(scope)?;
    let details = json!({"name": name, "rights": rights, "scope": scope, "days": days});
    let result = match caller.role() {
        Some(role) if rights > role => Err(StoreError::Rights { user: owner.into(), role, rights }),
        _ => match user(access, owner).await {
            Ok(owner) => {
                let ttl = jiff::SignedDuration::from_hours(24 * i64::from(days));
                access.store.create_token(&owner, name, rights, scope.as_ref(), ttl).await
            }
            Err(e) => Err(e),
        },
    };
    audited(access, caller, "token.create", owner, details, result).await
}

pub async fn revoke_my_token(
    access: &AccessPolicy,
    caller: &Caller,
    name: &str,
) -> Result<(), AppError> {
    let owner = account(caller)?;
    let result = access.store.revoke_token(owner, name).await;
    audited(access, caller, "token.revoke", owner, json!({"name": name}), result).await
}

/// The account's sessions; `current` is the secret of the caller's own session cookie.
pub async fn sessions(
    access: &AccessPolicy,
    user: &str,
    current: Option<&str>,
) -> Result<Vec<SessionView>, AppError> {
    let current = current.map(session_id);
    let sessions = access.store.sessions(user).await.map_err(internal)?;
    Ok(sessions
        .into_iter()
        .map(|s| SessionView {
            current: current.as_deref() == Some(s.id.as_str()),
            id: s.id,
            created_at: s.created_at,
            expires_at: s.expires_at,
            revoked_at: s.revoked_at,
            address: s.address,
        })
        .collect())
}

pub async fn revoke_my_session(
    access: &AccessPolicy,
    caller: &Caller,
    id: &str,
) -> Result<(), AppError> {
    let owner = account(caller)?;
    let result = access.store.revoke_session_of(owner, id).await;
    let details = json!({"session": id.chars().take(12).collect::<String>()});
    audited(access, caller, "session.revoke", owner, details, result).await
}

pub async fn users(access: &AccessPolicy) -> Result<Vec<UserView>, AppError> {
    let users = access.store.users().await.map_err(internal)?;
    Ok(users
        .into_iter()
        .map(|u| UserView {
            name: u.name,
            role: u.role.to_string(),
            scope: u.scope.map(|s| s.terms().to_vec()).unwrap_or_default(),
            created_at: u.created_at,
            disabled: u.disabled,
        })
        .collect())
}

/// Disables (its sessions end) or enables an account; an admin cannot disable itself
/// (nobody might be left to enable it).
pub async fn set_disabled(
    access: &AccessPolicy,
    caller: &Caller,
    name: &str,
    disabled: bool,
) -> Result<(), AppError> {
    if disabled && caller.account.as_deref() == Some(name) {
        return Err(AppError::BadInput("you cannot disable your own account".into()));
    }
    let action = if disabled { "user.disable" } else { "user.enable" };
    let result = access.store.set_disabled(name, disabled).await;
    audited(access, caller, action, name, json!({}), result).await
}

pub async fn set_role(
    access: &AccessPolicy,
    caller: &Caller,
    name: &str,
    role: &str,
    scope: &str,
) -> Result<(), AppError> {
    let role: Role = role.parse().map_err(|e| AppError::BadInput(format!("{e}")))?;
    let scope = parse_scope(scope)?;
    let details = json!({"role": role, "scope": scope});
    let result = access.store.set_role(name, role, scope.as_ref()).await;
    audited(access, caller, "user.role", name, details, result).await
}

/// Signs an account out everywhere: its next request is anonymous.
pub async fn revoke_sessions(
    access: &AccessPolicy,
    caller: &Caller,
    name: &str,
) -> Result<u64, AppError> {
    let result = match access.store.user(name).await {
        Ok(None) => Err(StoreError::NoUser(name.into())),
        Ok(Some(_)) => access.store.revoke_sessions(name).await,
        Err(e) => Err(e),
    };
    audited(access, caller, "user.sign-out", name, json!({}), result).await
}

pub async fn audit_log(
    access: &AccessPolicy,
    actor: &str,
    action: &str,
    since: &str,
) -> Result<Vec<AuditView>, AppError> {
    let given = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
    let since = given(since)
        .map(|s| {
            // a date alone means its start
            let s = if s.len() == 10 { format!("{s}T00:00:00Z") } else { s };
            s.parse::<jiff::Timestamp>().map(|t| t.to_string()).map_err(|_| {
                AppError::BadInput(format!(
                    "invalid time '{s}': expected a date (2026-12-03) or a UTC time \
                     (2026-12-03T14:00:00Z)"
                ))
            })
        })
        .transpose()?;
    let filter = AuditFilter { actor: given(actor), action: given(action), since, limit: 200 };
    let entries = access.store.audit_log(&filter).await.map_err(internal)?;
    Ok(entries
        .into_iter()
        .map(|e| AuditView {
            id: e.id,
            at: e.at,
            actor: e.actor,
            address: e.address,
            action: e.action,
            target: e.target,
            details: e.details.to_string(),
            outcome: e.outcome,
        })
        .collect())
}

fn account(caller: &Caller) -> Result<&str, AppError> {
    caller.account.as_deref().ok_or_else(|| AppError::Forbidden("this needs an account".into()))
}

async fn user(access: &AccessPolicy, name: &str) -> Result<User, StoreError> {
    access.store.user(name).await?.ok_or_else(|| StoreError::NoUser(name.into()))
}

fn parse_scope(text: &str) -> Result<Option<Scope>, AppError> {
    let terms = scope_terms(text);
    if terms.is_empty() {
        return Ok(None);
    }
    Scope::parse(&terms).map(Some).map_err(|e| AppError::BadInput(e.to_string()))
}

/// Writes the audit entry of a change, made or refused, and maps its result: what the
/// caller got wrong (an unknown name, a duplicate) is shown; anything else is logged.
async fn audited<T>(
    access: &AccessPolicy,
    caller: &Caller,
    action: &str,
    target: &str,
    details: serde_json::Value,
    result: Result<T, StoreError>,
) -> Result<T, AppError> {
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("failed: {e}"),
    };
    access.audit(caller, action, Some(target), details, &outcome).await?;
    result.map_err(|e| match e {
        StoreError::NoUser(_)
        | StoreError::UserExists(_)
        | StoreError::TokenExists { .. }
        | StoreError::NoToken { .. }
        | StoreError::NoSession(_)
        | StoreError::Rights { .. } => AppError::BadInput(e.to_string()),
        e => internal(e),
    })
}
