//! `POST /api/checkin`: a netbooted machine reports what it booted. Authenticated by the
//! machine's token (HMAC of its carrier's secret, `carrier_core::checkin`), checked in
//! constant time; refused reports are recorded nowhere. Design: docs/status.md, "Booted".

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::routing::post;
use carrier_core::carrier::netboot::model::check_word;
use carrier_core::checkin::{CheckinError, Secret};
use carrier_storage::{NewCheckin, Store};
use serde::Deserialize;

/// The largest body accepted.
pub const BODY_MAX: usize = 4096;
/// The longest kernel command line accepted.
pub const CMDLINE_MAX: usize = 2048;

/// What the route needs: where to record, and where each carrier's secret lies
/// (`<secrets>/<carrier>.secret`).
#[derive(Clone)]
pub struct CheckinState {
    pub store: Store,
    pub secrets: PathBuf,
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

async fn checkin(State(state): State<CheckinState>, request: Request) -> Answer {
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let Some(token) = token else {
        return answer(StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <token>\n");
    };
    let bytes = match axum::body::to_bytes(request.into_body(), BODY_MAX).await {
        Ok(b) => b,
        Err(_) => return answer(StatusCode::PAYLOAD_TOO_LARGE, "body over 4096 bytes\n"),
    };
    let body: Body = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => return answer(StatusCode::BAD_REQUEST, format!("invalid body: {e}\n")),
    };
    if let Err(message) = check(&body) {
        return answer(StatusCode::BAD_REQUEST, format!("{message}\n"));
    }
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
    if !secret.verify(&body.carrier, &body.machine, &token) {
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
