//! `GET /healthz`: whether the dashboard can work. 200 when the database answers a trivial
//! query and Nix runs (`nix-instantiate --version`, its outcome kept for [`NIX_CHECKED_FOR`]),
//! 503 otherwise. Answered to everyone, before any caller is resolved: the answer says only
//! which part failed (`ok` or `failed`); why is logged on the server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, HeaderValue};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use carrier_core::nix;
use carrier_storage::Store;
use serde_json::json;

/// How long the outcome of the Nix check is reused: a probe every few seconds runs Nix
/// at most once a minute.
pub const NIX_CHECKED_FOR: Duration = Duration::from_secs(60);

/// A database query that takes longer than this counts as failed.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(5);

struct Health {
    store: Store,
    /// The program whose `--version` must run.
    nix_program: String,
    nix_checked: Mutex<Option<(bool, Instant)>>,
}

/// The `/healthz` route over `store`; `nix_program` is `nix-instantiate` (tests name a
/// missing one).
pub fn router(store: Store, nix_program: &str) -> Router {
    let health =
        Health { store, nix_program: nix_program.to_string(), nix_checked: Mutex::new(None) };
    Router::new().route("/healthz", get(healthz)).with_state(Arc::new(health))
}

async fn healthz(State(health): State<Arc<Health>>) -> Response {
    let (database, nix) = tokio::join!(health.database(), health.nix());
    let word = |ok: bool| if ok { "ok" } else { "failed" };
    let status = if database && nix { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut response =
        (status, Json(json!({"database": word(database), "nix": word(nix)}))).into_response();
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl Health {
    async fn database(&self) -> bool {
        match tokio::time::timeout(DATABASE_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::error!("health check: {e}");
                false
            }
            Err(_) => {
                tracing::error!(
                    "health check: the database did not answer within {DATABASE_TIMEOUT:?}"
                );
                false
            }
        }
    }

    async fn nix(&self) -> bool {
        if let Some((ok, at)) = *self.nix_checked.lock().unwrap()
            && at.elapsed() < NIX_CHECKED_FOR
        {
            return ok;
        }
        let argv = vec![self.nix_program.clone(), "--version".to_string()];
        let ok = match tokio::task::spawn_blocking(move || nix::run(&argv)).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::error!("health check: {} --version: {e}", self.nix_program);
                false
            }
            Err(e) => {
                tracing::error!("health check: the Nix check did not finish: {e}");
                false
            }
        };
        *self.nix_checked.lock().unwrap() = Some((ok, Instant::now()));
        ok
    }
}
