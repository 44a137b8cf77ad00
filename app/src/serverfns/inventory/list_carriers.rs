use leptos::prelude::*;

use crate::error::AppError;
use crate::model::CarrierView;

/// Every carrier with its carried machines.
#[server(prefix = "/api", endpoint = "list_carriers")]
pub async fn list_carriers() -> Result<Vec<CarrierView>, AppError> {
    use crate::services::{Permission, authorize, views};

    let (state, _caller) = authorize(Permission::ReadInventory).await?;
    let loaded = state.inventory.load().await?;
    Ok(loaded.cluster.carriers().map(|c| views::carrier(&loaded.cluster, c)).collect())
}
