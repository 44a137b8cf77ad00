use leptos::prelude::*;

use crate::error::AppError;

/// A token for the caller's own account, at most its rights; the secret is returned once.
#[server(prefix = "/api", endpoint = "create_token")]
pub async fn create_token(
    name: String,
    rights: String,
    scope: String,
    days: u32,
) -> Result<String, AppError> {
    use crate::services::{Permission, accounts, authorize, set_status};

    let (state, caller) = authorize(Permission::OwnAccount).await?;
    accounts::create_token(&state.access, &caller, &name, &rights, &scope, days)
        .await
        .inspect_err(set_status)
}
