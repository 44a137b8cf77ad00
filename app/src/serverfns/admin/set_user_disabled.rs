use leptos::prelude::*;

use crate::error::AppError;

/// Disables (its sessions end) or enables an account (admins only).
#[server(prefix = "/api", endpoint = "set_user_disabled")]
pub async fn set_user_disabled(name: String, disabled: bool) -> Result<(), AppError> {
    use crate::services::{Permission, accounts, authorize, set_status};

    let (state, caller) = authorize(Permission::Administer).await?;
    accounts::set_disabled(&state.access, &caller, &name, disabled).await.inspect_err(set_status)
}
