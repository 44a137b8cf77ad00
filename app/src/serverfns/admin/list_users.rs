use leptos::prelude::*;

use crate::error::AppError;
use crate::model::UserView;

/// Every account (admins only).
#[server(prefix = "/api", endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<UserView>, AppError> {
    use crate::services::{Permission, accounts, authorize, set_status};

    let (state, _caller) = authorize(Permission::Administer).await?;
    accounts::users(&state.access).await.inspect_err(set_status)
}
