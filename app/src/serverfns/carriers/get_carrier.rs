use leptos::prelude::*;

use crate::error::AppError;
use crate::model::CarrierDetail;

/// A carrier: what it carries, holds and served, by the latest reading (readers).
#[server(prefix = "/api", endpoint = "get_carrier")]
pub async fn get_carrier(name: String) -> Result<CarrierDetail, AppError> {
    use crate::services::{Permission, authorize, carriers, set_status};

    let (state, caller) = authorize(Permission::ReadInventory).await?;
    carriers::detail(&state, &caller, &name).await.inspect_err(set_status)
}
