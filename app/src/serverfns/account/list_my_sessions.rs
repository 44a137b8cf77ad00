use leptos::prelude::*;

use crate::error::AppError;
use crate::model::SessionView;

/// The caller's own sessions, the current one marked.
#[server(prefix = "/api", endpoint = "list_my_sessions")]
pub async fn list_my_sessions() -> Result<Vec<SessionView>, AppError> {
    use crate::services::{Permission, accounts, authorize, set_status};

    let (state, caller) = authorize(Permission::OwnAccount).await?;
    let headers: http::HeaderMap = leptos_axum::extract().await.map_err(|e| {
        tracing::error!("reading request headers: {e}");
        AppError::Internal
    })?;
    let current = crate::services::cookie(&headers, crate::services::SESSION_COOKIE);
    let name = caller.account.as_deref().unwrap_or_default();
    accounts::sessions(&state.access, name, current).await.inspect_err(set_status)
}
