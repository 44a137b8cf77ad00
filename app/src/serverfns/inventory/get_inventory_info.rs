use leptos::prelude::*;

use crate::error::AppError;
use crate::model::InventoryInfo;

/// Counts and provenance of the inventory, for the footer.
#[server(prefix = "/api", endpoint = "get_inventory_info")]
pub async fn get_inventory_info() -> Result<InventoryInfo, AppError> {
    use crate::services::{Permission, authorize, set_status};

    let (state, _caller) = authorize(Permission::ReadInventory).await?;
    state.inventory.info().await.inspect_err(set_status)
}
