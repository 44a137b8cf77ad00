use leptos::prelude::*;

use crate::error::AppError;
use crate::model::JobDetail;

/// A job and its events so far (readers).
#[server(prefix = "/api", endpoint = "get_job")]
pub async fn get_job(id: i64) -> Result<JobDetail, AppError> {
    use crate::services::{Permission, authorize, jobs, set_status};

    let (state, caller) = authorize(Permission::ReadInventory).await?;
    jobs::detail(&state, &caller, id).await.inspect_err(set_status)
}
