//! `POST /api/checkin`: a netbooted machine reports what it booted. Authenticated by the
//! machine's token (HMAC of its carrier's secret, `carrier_core::checkin`), checked in
//! constant time; rate-limited per source address (the sign-in limiter's sliding window);
//! refused reports are recorded nowhere. Design: docs/status.md, "Booted".

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use app::services::sign_in_limit::{RetryAfter, SignInLimiter};
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use carrier_core::carrier::netboot::model::check_word;
use carrier_core::checkin::{CheckinError, Secret};
use carrier_storage::{NewCheckin, Store};
use serde::Deserialize;

/// The largest body accepted.
pub const BODY_MAX: usize = 4096;
/// The longest kernel command line accepted.
pub const CMDLINE_MAX: usize = 2048;

/// What the route needs: where to record, where each carrier's secret lies
/// (`<secrets>/<carrier>.secret`), and the counts of recent check-ins per address.
#[derive(Clone)]
pub struct CheckinState {
    pub store: Store,
    pub secrets: PathBuf,
    limiter: Arc<SignInLimiter>,
}

impl CheckinState {
    pub fn new(store: Store, secrets: PathBuf) -> CheckinState {
        CheckinState { store, secrets, limiter: Arc::default() }
    }
}

/// The directory of the carriers' secrets in a configuration directory.
pub fn secrets_dir(conf_dir: &std::path::Path) -> PathBuf {
    conf_dir.join(".confctl/checkin")
}

pub fn router(state: CheckinState) -> Router {
    Router::new().route("/api/checkin", post(checkin)).with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    carrier: String,
    machine: String,
    generation: u64,
    mac: String,
    cmdline: String,
}

type Answer = (StatusCode, String);

fn answer(status: StatusCode, text: impl Into<String>) -> Answer {
    (status, text.into())
}

/// The rate limit, with the sign-in limiter's rules (docs/status.md): every check-in
/// counts against its source address (`PER_ADDRESS` in the window) and against the
/// address and the machine it names together (`PER_ACCOUNT`); over either, 429 before the
/// token is looked at. A body that is not valid counts under one name for all of them.
async fn checkin(State(state): State<CheckinState>, request: Request) -> Response {
    let address = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let source = address.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    let address = address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let body = match axum::body::to_bytes(request.into_body(), BODY_MAX).await {
        Ok(bytes) => serde_json::from_slice::<Body>(&bytes)
            .map_err(|e| answer(StatusCode::BAD_REQUEST, format!("invalid body: {e}\n")))
            .and_then(|b| match check(&b) {
                Ok(()) => Ok(b),
                Err(message) => Err(answer(StatusCode::BAD_REQUEST, format!("{message}\n"))),
            }),
        Err(_) => Err(answer(StatusCode::PAYLOAD_TOO_LARGE, "body over 4096 bytes\n")),
    };
    let named = match &body {
        Ok(b) => format!("{address} {}/{}", b.carrier, b.machine),
        Err(_) => format!("{address} (invalid)"),
    };
    let now = Instant::now();
    if let Err(RetryAfter(wait)) = state.limiter.check(&named, address, now) {
        tracing::warn!("check-in from {source} over the rate limit");
        let text = format!("too many check-ins from {source}; retry in {} s\n", wait.as_secs());
        let retry = [(header::RETRY_AFTER, wait.as_secs().max(1).to_string())];
        return (StatusCode::TOO_MANY_REQUESTS, retry, text).into_response();
    }
    // the limiter counts what it is told: here every check-in, accepted or not
    state.limiter.failed(&named, address, now);
    let Some(token) = token else {
        return answer(StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <token>\n")
            .into_response();
    };
    match body {
        Ok(body) => verify_and_record(&state, body, &token, source).await.into_response(),
        Err(refused) => refused.into_response(),
    }
}

async fn verify_and_record(
    state: &CheckinState,
    body: Body,
    token: &str,
    source: String,
) -> Answer {
    let secret = match Secret::read(&state.secrets.join(format!("{}.secret", body.carrier))) {
        Ok(s) => s,
        // an unknown carrier answers as a wrong token: carrier names cannot be probed
        Err(CheckinError::Read { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
            return answer(StatusCode::FORBIDDEN, "forbidden\n");
        }
        Err(e) => {
            tracing::error!("check-in of {} on {}: {e}", body.machine, body.carrier);
            return answer(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
        }
    };
    if !secret.verify(&body.carrier, &body.machine, token) {
        tracing::warn!("refused check-in for {} on {} from {source}", body.machine, body.carrier);
        return answer(StatusCode::FORBIDDEN, "forbidden\n");
    }
    let record = NewCheckin {
        carrier: body.carrier,
        machine: body.machine,
        generation: body.generation,
        mac: body.mac.to_ascii_lowercase(),
        cmdline: without_token(&body.cmdline),
        source,
    };
    match state.store.record_checkin(&record).await {
        Ok(()) => answer(StatusCode::NO_CONTENT, ""),
        Err(e) => {
            tracing::error!("recording a check-in: {e}");
            answer(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}

/// The command line as recorded: the token parameter's value replaced, so that whoever
/// reads the records cannot check in as the machine.
fn without_token(cmdline: &str) -> String {
    cmdline
        .split(' ')
        .map(|p| if p.starts_with("carrier.token=") { "carrier.token=(redacted)" } else { p })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Each field's rules; the error names the field.
fn check(b: &Body) -> Result<(), String> {
    for (field, value) in [("carrier", &b.carrier), ("machine", &b.machine)] {
        if value.is_empty() || value.starts_with('.') || value.contains('/') {
            return Err(format!(
                "field `{field}`: '{}' is not a machine name",
                value.escape_default()
            ));
        }
        check_word(value).map_err(|why| format!("field `{field}`: {why}"))?;
    }
    if b.generation == 0 || b.generation > i64::MAX as u64 {
        return Err(format!("field `generation`: {} is not a generation number", b.generation));
    }
    let octets: Vec<&str> = b.mac.split(':').collect();
    if octets.len() != 6
        || !octets.iter().all(|o| o.len() == 2 && o.bytes().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(format!(
            "field `mac`: '{}' is not six hex octets separated by ':'",
            b.mac.escape_default()
        ));
    }
    if b.cmdline.len() > CMDLINE_MAX {
        return Err(format!("field `cmdline`: over {CMDLINE_MAX} characters"));
    }
    if let Some(c) = b.cmdline.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(format!("field `cmdline`: contains '{}'", c.escape_default()));
    }
    Ok(())
}
