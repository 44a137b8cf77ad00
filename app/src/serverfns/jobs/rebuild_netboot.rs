use leptos::prelude::*;

use crate::error::AppError;

/// Queues a rebuild of `carrier`'s netboot trees (deployers whose scope holds the
/// carrier) and answers at once with the job's id: the id of the rebuild already queued
/// for it, if there is one. The browser is sent to the job's page.
#[server(prefix = "/api", endpoint = "rebuild_netboot")]
pub async fn rebuild_netboot(carrier: String) -> Result<i64, AppError> {
    use crate::services::{Permission, authorize, jobs, set_status};

    let (state, caller) = authorize(Permission::Deploy).await?;
    let id =
        jobs::start_netboot_rebuild(&state, &caller, &carrier).await.inspect_err(set_status)?;
    leptos_axum::redirect(&format!("/jobs/{id}"));
    Ok(id)
}
