use leptos::prelude::*;

use crate::error::AppError;

/// Signs an account out everywhere (admins only); returns how many sessions ended.
#[server(prefix = "/api", endpoint = "revoke_user_sessions")]
pub async fn revoke_user_sessions(name: String) -> Result<u64, AppError> {
    use crate::services::{Permission, accounts, authorize, set_status};

    let (state, caller) = authorize(Permission::Administer).await?;
    accounts::revoke_sessions(&state.access, &caller, &name).await.inspect_err(set_status)
}
