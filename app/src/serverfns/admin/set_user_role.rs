use leptos::prelude::*;

use crate::error::AppError;

/// Changes an account's role and scope (admins only).
#[server(prefix = "/api", endpoint = "set_user_role")]
pub async fn set_user_role(name: String, role: String, scope: String) -> Result<(), AppError> {
    use crate::services::{Permission, accounts, authorize, set_status};

    let (state, caller) = authorize(Permission::Administer).await?;
    accounts::set_role(&state.access, &caller, &name, &role, &scope).await.inspect_err(set_status)
}
