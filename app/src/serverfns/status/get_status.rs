use leptos::prelude::*;

use crate::error::AppError;
use crate::model::{StatusQuery, StatusView};

/// Every machine's state from the latest background reading, counted, and one page of
/// the machines in one state or all (readers).
#[server(prefix = "/api", endpoint = "get_status")]
pub async fn get_status(query: StatusQuery) -> Result<StatusView, AppError> {
    use crate::services::{Permission, authorize, set_status, status};

    let (state, _caller) = authorize(Permission::ReadInventory).await?;
    status::page(&state, &query).await.inspect_err(set_status)
}
