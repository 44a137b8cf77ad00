//! Server-side services the server functions call: the state handed down from `main`
//! (no globals), the inventory service and the access policies (token, host and origin,
//! content security).

mod access;
mod inventory;
mod origin;
pub mod security;
pub mod sign_in_limit;
pub mod views;

pub use access::{AccessPolicy, Permission};
pub use inventory::InventoryService;
pub use origin::{HostAllowList, Refusal};

use std::sync::Arc;

/// Everything a server function may use, provided as Leptos context by the server.
#[derive(Clone)]
pub struct AppState {
    pub inventory: Arc<InventoryService>,
    pub access: Arc<AccessPolicy>,
}

/// The caller's state, after checking that the caller may do `permission`.
pub async fn authorize(permission: Permission) -> Result<AppState, crate::error::AppError> {
    let state = leptos::prelude::use_context::<AppState>().ok_or_else(|| {
        tracing::error!("AppState missing from the Leptos context");
        crate::error::AppError::Internal
    })?;
    let headers: http::HeaderMap = leptos_axum::extract().await.map_err(|e| {
        tracing::error!("reading request headers: {e}");
        crate::error::AppError::Internal
    })?;
    state.access.check(&headers, permission)?;
    Ok(state)
}
