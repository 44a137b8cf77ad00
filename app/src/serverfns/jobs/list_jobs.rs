use leptos::prelude::*;

use crate::error::AppError;
use crate::model::JobView;

/// Jobs newest first, filtered by machine, requester and state (readers).
#[server(prefix = "/api", endpoint = "list_jobs")]
pub async fn list_jobs(
    machine: String,
    requested_by: String,
    state: String,
) -> Result<Vec<JobView>, AppError> {
    use crate::services::{Permission, authorize, jobs, set_status};

    let (app, _caller) = authorize(Permission::ReadInventory).await?;
    jobs::list(&app, &machine, &requested_by, &state).await.inspect_err(set_status)
}
