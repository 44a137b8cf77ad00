//! The HTTP layers around the dashboard's router: request tracing, security headers,
//! compression, the host/origin check, a request timeout and a body limit. The policies
//! themselves (which hosts, which CSP) live in `app::services`.

use std::time::Duration;

use app::services::security::RESOURCE_CSP;
use app::services::{HostAllowList, Refusal};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// Request bodies are server function arguments (a filter form at most): 64 KiB is
/// far more than any of them needs.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What `carrier serve` decided about its HTTP surface.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub hosts: HostAllowList,
    pub request_timeout: Duration,
}

impl WebConfig {
    /// A loopback dashboard with the default timeout (tests).
    pub fn loopback() -> Self {
        WebConfig {
            hosts: HostAllowList::new(([127, 0, 0, 1], 3000).into(), &[]),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Wraps `router` in the layers, outermost first: tracing sees every request, refused
/// ones included; the headers are set on every response, refusals and timeouts
/// included; a request for a foreign host is refused before any work starts.
pub fn harden(router: Router, config: &WebConfig) -> Router {
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    router.layer(
        ServiceBuilder::new()
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            )
            // pages set their own policy, with their scripts' nonce
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(RESOURCE_CSP),
            ))
            .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .layer(header(header::X_FRAME_OPTIONS, "DENY"))
            // not no-referrer: under it browsers send `Origin: null` on the dashboard's own
            // form posts, which the origin check refuses; nothing goes to other origins
            .layer(header(header::REFERRER_POLICY, "same-origin"))
            .layer(header(HeaderName::from_static("cross-origin-opener-policy"), "same-origin"))
            .layer(header(HeaderName::from_static("cross-origin-resource-policy"), "same-origin"))
            .layer(CompressionLayer::new())
            .layer(middleware::from_fn_with_state(config.hosts.clone(), check_host))
            .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                config.request_timeout,
            )),
    )
}

async fn check_host(State(hosts): State<HostAllowList>, request: Request, next: Next) -> Response {
    let authority = request.uri().authority().map(|a| a.as_str());
    match hosts.check(request.method(), authority, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(Refusal::Host(host)) => {
            tracing::warn!(host = ?host, "refused a request for a host this server does not answer to (see --allowed-host)");
            (StatusCode::MISDIRECTED_REQUEST, "this server does not answer to that host name\n")
                .into_response()
        }
        Err(Refusal::Origin(origin)) => {
            tracing::warn!(origin = ?origin, method = %request.method(), "refused a cross-origin request");
            (StatusCode::FORBIDDEN, "cross-origin request refused\n").into_response()
        }
    }
}
