use leptos::prelude::*;

use crate::error::AppError;
use crate::model::StatusView;

/// Every machine's state from the latest background reading (readers).
#[server(prefix = "/api", endpoint = "get_status")]
pub async fn get_status() -> Result<StatusView, AppError> {
    use crate::services::{Permission, authorize, status};

    let (state, _caller) = authorize(Permission::ReadInventory).await?;
    let tags = match state.inventory.load().await {
        Ok(loaded) => loaded
            .cluster
            .machines
            .iter()
            .map(|m| (m.name.clone(), m.meta_config.tags.clone()))
            .collect(),
        Err(_) => Default::default(),
    };
    status::view(&state.status, &state.access.store, &tags).await
}
