use leptos::prelude::*;

use crate::error::AppError;

/// Revokes one of the caller's own tokens by name.
#[server(prefix = "/api", endpoint = "revoke_token")]
pub async fn revoke_token(name: String) -> Result<(), AppError> {
    use crate::services::{Permission, accounts, authorize, set_status};

    let (state, caller) = authorize(Permission::OwnAccount).await?;
    accounts::revoke_my_token(&state.access, &caller, &name).await.inspect_err(set_status)
}
