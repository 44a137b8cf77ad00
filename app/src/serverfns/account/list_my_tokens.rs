use leptos::prelude::*;

use crate::error::AppError;
use crate::model::TokenView;

/// The caller's own API tokens (never their secrets).
#[server(prefix = "/api", endpoint = "list_my_tokens")]
pub async fn list_my_tokens() -> Result<Vec<TokenView>, AppError> {
    use crate::services::{Permission, accounts, authorize, set_status};

    let (state, caller) = authorize(Permission::OwnAccount).await?;
    accounts::my_tokens(&state.access, &caller).await.inspect_err(set_status)
}
