use leptos::prelude::*;

use crate::error::AppError;
use crate::model::BootPreviewView;

/// What a client with `mac` gets from the carrier's netboot trees, asked of the carrier
/// now (readers: it changes nothing).
#[server(prefix = "/api", endpoint = "preview_boot")]
pub async fn preview_boot(carrier: String, mac: String) -> Result<BootPreviewView, AppError> {
    use crate::services::{Permission, authorize, carriers, set_status};

    let (state, _caller) = authorize(Permission::ReadInventory).await?;
    carriers::boot_preview(&state, &carrier, &mac).await.inspect_err(set_status)
}
