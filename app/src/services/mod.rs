//! Server-side services the server functions call: the state handed down from `main`
//! (no globals), the inventory service, who is asking (`access`: callers, sign-in) and
//! the policies of the HTTP surface (host and origin, content security).

mod access;
pub mod accounts;
pub mod carriers;
pub mod history;
mod inventory;
pub mod jobs;
mod origin;
pub mod security;
pub mod sign_in_limit;
pub mod status;
pub mod views;

pub use access::{
    AccessPolicy, Caller, Permission, SESSION_COOKIE, SignInError, Via, cookie, session_cookie,
};
pub use inventory::{InventoryService, REVALIDATE_AFTER};
pub use origin::{HostAllowList, Refusal};

use std::sync::Arc;

use crate::error::AppError;

/// Everything a server function may use, provided as Leptos context by the server.
#[derive(Clone)]
pub struct AppState {
    pub inventory: Arc<InventoryService>,
    pub access: Arc<AccessPolicy>,
    /// The latest status reading, kept fresh by `carrier serve`'s refresher.
    pub status: Arc<status::StatusBoard>,
    /// The hosts' ssh_config (`carrier serve --ssh-config`), for what a request asks a
    /// host: the boot preview, the generation a removal names before it is queued.
    pub ssh_config: Option<std::path::PathBuf>,
}

/// The one check every server function makes first: the state and the request's caller
/// (resolved once per request by the server, before routing), if the caller may do
/// `permission`. A refused server function call is answered 401 or 403.
pub async fn authorize(permission: Permission) -> Result<(AppState, Caller), AppError> {
    let (state, caller) = state_and_caller()?;
    if let Err(e) = caller.require(permission) {
        set_status(&e);
        return Err(e);
    }
    Ok((state, caller))
}

/// The state and the caller, whoever it is (for "who am I" and sign-out).
pub fn state_and_caller() -> Result<(AppState, Caller), AppError> {
    use leptos::prelude::use_context;
    let state = use_context::<AppState>().ok_or_else(|| {
        tracing::error!("AppState missing from the Leptos context");
        AppError::Internal
    })?;
    let parts = use_context::<http::request::Parts>();
    let caller = parts.as_ref().and_then(|p| p.extensions.get::<Caller>()).cloned();
    let caller = caller.ok_or_else(|| {
        tracing::error!("no caller resolved for this request (the router lacks its layer)");
        AppError::Internal
    })?;
    Ok((state, caller))
}

/// A server function call that failed gets the status of its error (401, 403, 400, 404,
/// else 500); a page that calls one while rendering keeps its status (the page's own check
/// set it). Server functions whose service refuses for reasons beyond `authorize` (a
/// deployer's scope, bad input) answer through this.
pub fn set_status(e: &AppError) {
    use leptos::prelude::use_context;
    let is_call =
        use_context::<http::request::Parts>().is_some_and(|p| p.uri.path().starts_with("/api/"));
    let Some(response) = use_context::<leptos_axum::ResponseOptions>().filter(|_| is_call) else {
        return;
    };
    response.set_status(status_of(e));
}

/// The HTTP status of an error.
pub fn status_of(e: &AppError) -> http::StatusCode {
    match e {
        AppError::BadInput(_) => http::StatusCode::BAD_REQUEST,
        AppError::NotFound(_) => http::StatusCode::NOT_FOUND,
        AppError::Unauthorized(_) => http::StatusCode::UNAUTHORIZED,
        AppError::Forbidden(_) => http::StatusCode::FORBIDDEN,
        AppError::Unavailable(_) => http::StatusCode::BAD_GATEWAY,
        _ => http::StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What a page needs, by its path: the sign-in page is for everyone, `/admin/*` for
/// admins, `/account` for a signed-in account, every other page (the not-found page
/// too) for readers. Server functions (`/api/*`) check for themselves; the built site
/// (`/pkg/*`) is public.
pub fn page_permission(path: &str) -> Option<Permission> {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    if under("/api") || under("/pkg") || path == "/sign-in" || path == "/sign-out" {
        None
    } else if under("/admin") {
        Some(Permission::Administer)
    } else if path == "/account" {
        Some(Permission::OwnAccount)
    } else {
        Some(Permission::ReadInventory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_need_what_their_path_says() {
        use Permission::*;
        for (path, needs) in [
            ("/", Some(ReadInventory)),
            ("/machines/pxe-server%23a", Some(ReadInventory)),
            ("/nonsense", Some(ReadInventory)),
            ("/administer", Some(ReadInventory)),
            ("/admin", Some(Administer)),
            ("/admin/users", Some(Administer)),
            ("/account", Some(OwnAccount)),
            ("/sign-in", None),
            ("/api/list_machines", None),
            ("/pkg/carrier.wasm", None),
        ] {
            assert_eq!(page_permission(path), needs, "{path}");
        }
    }
}
