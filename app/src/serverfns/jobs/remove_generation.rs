use leptos::prelude::*;

use crate::error::AppError;

/// Queues the removal of generation `generation` of `machine` (deployers, within their
/// scope; never the current one) and answers at once with the job's id; the browser is
/// sent to the job's page.
#[server(prefix = "/api", endpoint = "remove_generation")]
pub async fn remove_generation(machine: String, generation: u64) -> Result<i64, AppError> {
    use crate::services::{Permission, authorize, jobs, set_status};

    let (state, caller) = authorize(Permission::Deploy).await?;
    let id = jobs::start_generation_removal(&state, &caller, &machine, generation)
        .await
        .inspect_err(set_status)?;
    leptos_axum::redirect(&format!("/jobs/{id}"));
    Ok(id)
}
