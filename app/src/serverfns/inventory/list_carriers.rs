use leptos::prelude::*;

use crate::error::AppError;
use crate::model::CarrierView;

/// Every carrier with its carried machines.
#[server(prefix = "/api", endpoint = "list_carriers")]
pub async fn list_carriers() -> Result<Vec<CarrierView>, AppError> {
    use crate::services::{Permission, authorize, set_status};

    let (state, _caller) = authorize(Permission::ReadInventory).await?;
    state.inventory.carriers().await.inspect_err(set_status)
}
