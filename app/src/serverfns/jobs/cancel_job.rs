use leptos::prelude::*;

use crate::error::AppError;

/// Cancels a job: a queued one at once, a running one between its steps (its requester or
/// an admin).
#[server(prefix = "/api", endpoint = "cancel_job")]
pub async fn cancel_job(id: i64) -> Result<(), AppError> {
    use crate::services::{Permission, authorize, jobs, set_status};

    let (state, caller) = authorize(Permission::Deploy).await?;
    jobs::cancel(&state, &caller, id).await.inspect_err(set_status)
}
