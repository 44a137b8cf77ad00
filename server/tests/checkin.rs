//! `POST /api/checkin` through the real route and a real SQLite store: an accepted
//! check-in is recorded and read back as the latest; forged, missing and borrowed
//! tokens, another carrier's secret and bad bodies are refused and recorded nowhere.

use std::os::unix::fs::PermissionsExt;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use carrier_core::checkin::{SECRET_LEN, Secret};
use carrier_storage::Store;
use serde_json::{Value, json};
use server::checkin::{CheckinState, router};
use tower::ServiceExt;

struct Harness {
    _tmp: tempfile::TempDir,
    app: axum::Router,
    store: Store,
}

const PXE: [u8; SECRET_LEN] = [0x11; SECRET_LEN];
const OTHER: [u8; SECRET_LEN] = [0x22; SECRET_LEN];

async fn harness() -> Harness {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = tmp.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    for (carrier, secret) in [("pxe", PXE), ("pxe2", OTHER)] {
        let path = secrets.join(format!("{carrier}.secret"));
        std::fs::write(&path, hex::encode(secret)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let url = format!("sqlite://{}", tmp.path().join("db.sqlite").display());
    let store = Store::open(&url).await.unwrap();
    let app = router(CheckinState { store: store.clone(), secrets });
    Harness { _tmp: tmp, app, store }
}

fn body(machine: &str, generation: u64) -> Value {
    json!({"carrier": "pxe", "machine": machine, "generation": generation,
           "mac": "52:54:00:12:34:56", "cmdline": "init=/nix/store/x/init carrier.generation=2"})
}

async fn post(h: &Harness, token: Option<&str>, body: &Value) -> (StatusCode, String) {
    let mut req = Request::post("/api/checkin").header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp =
        h.app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn token(secret: [u8; SECRET_LEN], carrier: &str, machine: &str) -> String {
    Secret::from_bytes(secret).token(carrier, machine)
}

#[tokio::test]
async fn a_machine_with_its_token_is_recorded() {
    let h = harness().await;
    let (status, text) = post(&h, Some(&token(PXE, "pxe", "node1")), &body("node1", 2)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    let latest = h.store.latest_checkins().await.unwrap();
    assert_eq!(latest.len(), 1);
    let c = &latest[0];
    assert_eq!((c.carrier.as_str(), c.machine.as_str(), c.generation), ("pxe", "node1", 2));
    assert_eq!(c.mac, "52:54:00:12:34:56");
    assert_eq!(c.source, "unknown", "no connection info in a oneshot request");
}

#[tokio::test]
async fn refused_checkins_are_recorded_nowhere() {
    let h = harness().await;
    let forged = "00".repeat(32);
    let cases: [(&str, Option<String>, Value, StatusCode); 6] = [
        ("missing token", None, body("node1", 2), StatusCode::UNAUTHORIZED),
        ("forged token", Some(forged), body("node1", 2), StatusCode::FORBIDDEN),
        ("not hex", Some("x".into()), body("node1", 2), StatusCode::FORBIDDEN),
        (
            "machine A's token for machine B",
            Some(token(PXE, "pxe", "node1")),
            body("node2", 2),
            StatusCode::FORBIDDEN,
        ),
        (
            "another carrier's secret, same machine name",
            Some(token(OTHER, "pxe", "node1")),
            body("node1", 2),
            StatusCode::FORBIDDEN,
        ),
        (
            "an unknown carrier",
            Some(token(PXE, "nope", "node1")),
            json!({"carrier": "nope", "machine": "node1", "generation": 1,
                   "mac": "52:54:00:12:34:56", "cmdline": "x"}),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (what, t, b, expected) in cases {
        let (status, text) = post(&h, t.as_deref(), &b).await;
        assert_eq!(status, expected, "{what}: {text}");
    }
    assert!(h.store.latest_checkins().await.unwrap().is_empty(), "nothing recorded");
}

#[tokio::test]
async fn bad_bodies_are_refused_naming_the_field() {
    let h = harness().await;
    let t = token(PXE, "pxe", "node1");
    let with = |field: &str, value: Value| {
        let mut b = body("node1", 2);
        b[field] = value;
        b
    };
    let cases = [
        (
            with("mac", json!("52:54:00:12:34")),
            "field `mac`: '52:54:00:12:34' is not six hex octets",
        ),
        (with("cmdline", json!("a\nb")), "field `cmdline`: contains '\\n'"),
        (with("cmdline", json!("x".repeat(3000))), "field `cmdline`: over 2048 characters"),
        (with("carrier", json!("../pxe")), "field `carrier`: '../pxe' is not a machine name"),
        (with("machine", json!("a b")), "field `machine`: contains ' '"),
        (with("generation", json!(0)), "field `generation`: 0 is not a generation number"),
        (with("extra", json!(1)), "unknown field `extra`"),
    ];
    for (b, expected) in cases {
        let (status, text) = post(&h, Some(&t), &b).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{b}: {text}");
        assert!(text.contains(expected), "{text} should contain {expected}");
    }
    assert!(h.store.latest_checkins().await.unwrap().is_empty(), "nothing recorded");
}

/// The token travels in the kernel command line the machine reports; the record keeps the
/// command line without it (whoever reads the records could check in as the machine).
#[tokio::test]
async fn the_recorded_command_line_has_no_token() {
    let h = harness().await;
    let t = token(PXE, "pxe", "node1");
    let mut b = body("node1", 2);
    b["cmdline"] = json!(format!("init=/x carrier.token={t} carrier.generation=2"));
    let (status, text) = post(&h, Some(&t), &b).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    let latest = h.store.latest_checkins().await.unwrap();
    assert_eq!(latest[0].cmdline, "init=/x carrier.token=(redacted) carrier.generation=2");
}
