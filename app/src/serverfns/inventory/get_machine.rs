use leptos::prelude::*;

use crate::error::AppError;
use crate::model::MachineDetail;

/// One machine with every option, its carrier and its carried names.
#[server(prefix = "/api", endpoint = "get_machine")]
pub async fn get_machine(name: String) -> Result<MachineDetail, AppError> {
    use crate::services::{Permission, authorize, views};

    let (state, caller) = authorize(Permission::ReadInventory).await?;
    let loaded = state.inventory.load().await?;
    let machine = loaded
        .cluster
        .get(&name)
        .ok_or_else(|| AppError::NotFound(format!("no machine named '{name}' in the cluster")))?;
    caller.check(carrier_core::auth::Action::View, &[machine], &loaded.cluster)?;
    Ok(views::detail(&loaded.cluster, machine, &state.inventory))
}
