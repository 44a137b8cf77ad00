use leptos::prelude::*;

use crate::error::AppError;
use crate::model::RunView;

/// Builds and deploys newest first, filtered by machine, user and outcome (readers).
#[server(prefix = "/api", endpoint = "list_history")]
pub async fn list_history(
    machine: String,
    user: String,
    outcome: String,
) -> Result<Vec<RunView>, AppError> {
    use crate::services::{Permission, authorize, history, set_status};

    let (state, _caller) = authorize(Permission::ReadInventory).await?;
    history::list(&state, &machine, &user, &outcome).await.inspect_err(set_status)
}
