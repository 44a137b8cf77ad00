use leptos::prelude::*;

use crate::error::AppError;
use crate::model::MachineDetail;

/// One machine with every option, its carrier and its carried names.
#[server(prefix = "/api", endpoint = "get_machine")]
pub async fn get_machine(name: String) -> Result<MachineDetail, AppError> {
    use crate::services::{Permission, authorize, set_status};

    let (state, caller) = authorize(Permission::ReadInventory).await?;
    state.inventory.machine(&caller, &name).await.inspect_err(set_status)
}
