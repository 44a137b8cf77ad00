//! Who is asking: the layer that resolves each request's caller once (before routing) and
//! refuses pages the caller may not see, and the sign-in and sign-out form posts. Both
//! posts are plain forms answered with a redirect, so they work without JavaScript. The
//! rules live in `app::services` (docs/accounts.md).

use std::net::SocketAddr;
use std::sync::Arc;

use app::error::AppError;
use app::services::{
    AccessPolicy, Caller, SESSION_COOKIE, SignInError, Via, cookie, page_permission,
    session_cookie, status_of,
};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Form, Router};
use serde::Deserialize;

/// Resolves the caller of every request into its extensions, where server functions
/// (`app::services::authorize`) and the sign-in routes find it. A page the caller may not
/// see is refused here: anonymous callers are sent to the sign-in page (a JSON request is
/// answered 401), others get 403.
pub async fn identify(
    State(access): State<Arc<AccessPolicy>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let caller = match access.resolve(request.headers(), peer).await {
        Ok(caller) => caller,
        Err(e) => return refusal(&e),
    };
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    if let Some(permission) = page_permission(request.uri().path()).filter(|_| is_read)
        && let Err(e) = caller.require(permission)
    {
        return match e {
            // a program asking for JSON gets the refusal, not a page to sign in on
            e if crate::api::wants_json(request.headers()) => crate::api::error_response(&e),
            AppError::Unauthorized(_) => redirect("/sign-in", None),
            e => refusal(&e),
        };
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn refusal(e: &AppError) -> Response {
    (status_of(e), format!("{e}\n")).into_response()
}

/// `POST /sign-in` and `POST /sign-out`; the sign-in page itself is the app's.
pub fn router(access: Arc<AccessPolicy>) -> Router {
    Router::new()
        .route("/sign-in", post(sign_in))
        .route("/sign-out", post(sign_out))
        .with_state(access)
}

#[derive(Deserialize)]
struct SignInForm {
    name: String,
    password: String,
}

/// Success: a session cookie and the machines page. Failure: back to the sign-in page,
/// which says why without telling whether the name exists.
async fn sign_in(
    State(access): State<Arc<AccessPolicy>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    match access.sign_in(form.name.trim(), &form.password, caller.address).await {
        Ok(secret) => {
            let cookie = session_cookie(Some(&secret), access.secure(&headers));
            redirect("/machines", Some(cookie))
        }
        Err(SignInError::Wrong) => redirect("/sign-in?failed=wrong", None),
        Err(SignInError::Limited(retry)) => {
            let mut response = redirect("/sign-in?failed=limited", None);
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry.0.as_secs()));
            response
        }
        Err(SignInError::Internal) => redirect("/sign-in?failed=internal", None),
    }
}

/// Revokes the session on the server and clears the cookie.
async fn sign_out(
    State(access): State<Arc<AccessPolicy>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE).filter(|_| caller.via == Via::Session)
        && let Err(e) = access.sign_out(secret, &caller).await
    {
        return refusal(&e);
    }
    redirect("/sign-in", Some(session_cookie(None, access.secure(&headers))))
}

/// 303 See Other: the browser follows with a GET, so a reload does not post again.
fn redirect(to: &'static str, set_cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(LOCATION, HeaderValue::from_static(to));
    if let Some(value) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}
