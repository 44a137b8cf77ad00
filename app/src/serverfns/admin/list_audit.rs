use leptos::prelude::*;

use crate::error::AppError;
use crate::model::AuditView;

/// The audit log, newest first, filtered by actor, action and time (admins only).
#[server(prefix = "/api", endpoint = "list_audit")]
pub async fn list_audit(
    actor: String,
    action: String,
    since: String,
) -> Result<Vec<AuditView>, AppError> {
    use crate::services::{Permission, accounts, authorize, set_status};

    let (state, _caller) = authorize(Permission::Administer).await?;
    accounts::audit_log(&state.access, &actor, &action, &since).await.inspect_err(set_status)
}
