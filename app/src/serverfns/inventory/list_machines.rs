use leptos::prelude::*;

use crate::error::AppError;
use crate::model::{MachineList, MachineQuery};

/// The machines matching a query, using the same selection as `carrier ls`.
#[server(prefix = "/api", endpoint = "list_machines")]
pub async fn list_machines(query: MachineQuery) -> Result<MachineList, AppError> {
    use crate::services::{Permission, authorize, views};
    use carrier_core::auth::Action;
    use carrier_core::cluster::Selection;

    let (state, caller) = authorize(Permission::ReadInventory).await?;
    let selection = Selection::parse(
        Some(query.pattern.as_str()),
        &query.tag_list(),
        &query.attr_list(),
        Some(query.managed_or_default()),
    )
    .map_err(|e| AppError::BadInput(e.to_string()))?;
    let loaded = state.inventory.load().await?;
    let selected =
        selection.select(&loaded.cluster).map_err(|e| AppError::BadInput(e.to_string()))?;
    // the caller's rights over exactly the machines this request resolved to
    caller.check(Action::View, &selected, &loaded.cluster)?;
    Ok(MachineList {
        machines: selected.into_iter().map(views::summary).collect(),
        total: loaded.cluster.machines.len(),
    })
}
