use leptos::prelude::*;

use crate::error::AppError;

/// Ends one of the caller's own sessions by its id.
#[server(prefix = "/api", endpoint = "revoke_session")]
pub async fn revoke_session(id: String) -> Result<(), AppError> {
    use crate::services::{Permission, accounts, authorize, set_status};

    let (state, caller) = authorize(Permission::OwnAccount).await?;
    accounts::revoke_my_session(&state.access, &caller, &id).await.inspect_err(set_status)
}
