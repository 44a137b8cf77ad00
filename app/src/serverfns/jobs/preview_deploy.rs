use leptos::prelude::*;

use crate::error::AppError;
use crate::model::{DeployForm, DeployPreviewRow};

/// The machines a deploy form selects, each with the job it is busy in (readers).
#[server(prefix = "/api", endpoint = "preview_deploy")]
pub async fn preview_deploy(form: DeployForm) -> Result<Vec<DeployPreviewRow>, AppError> {
    use crate::services::{Permission, authorize, jobs, set_status};

    let (state, _caller) = authorize(Permission::ReadInventory).await?;
    jobs::preview(&state, &form).await.inspect_err(set_status)
}
