use leptos::prelude::*;

use crate::error::AppError;
use crate::model::StatusView;

/// Every machine's state from the latest background reading (readers).
#[server(prefix = "/api", endpoint = "get_status")]
pub async fn get_status() -> Result<StatusView, AppError> {
    use crate::services::{Permission, authorize, status};

    let (state, _caller) = authorize(Permission::ReadInventory).await?;
    status::page(&state).await
}
