use leptos::prelude::*;

use crate::error::AppError;
use crate::model::DeployForm;

/// Queues a deploy (deployers, within their scope) and answers at once with the job's id;
/// the browser is sent to the job's page, where it runs live.
#[server(prefix = "/api", endpoint = "start_deploy")]
pub async fn start_deploy(form: DeployForm) -> Result<i64, AppError> {
    use crate::services::{Permission, authorize, jobs, set_status};

    let (state, caller) = authorize(Permission::Deploy).await?;
    let id = jobs::start_deploy(&state, &caller, &form).await.inspect_err(set_status)?;
    leptos_axum::redirect(&format!("/jobs/{id}"));
    Ok(id)
}
