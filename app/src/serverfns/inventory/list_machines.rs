use leptos::prelude::*;

use crate::error::AppError;
use crate::model::{MachineList, MachineQuery};

/// One page of the machines matching a query, using the same selection as `carrier ls`.
#[server(prefix = "/api", endpoint = "list_machines")]
pub async fn list_machines(query: MachineQuery) -> Result<MachineList, AppError> {
    use crate::services::{Permission, authorize, set_status};

    let (state, caller) = authorize(Permission::ReadInventory).await?;
    state.inventory.machines(&caller, &query).await.inspect_err(set_status)
}
