//! `POST /api/checkin` through the real route and a real SQLite store: an accepted
//! check-in is recorded and read back as the latest; forged, missing and borrowed
//! tokens, another carrier's secret, bad bodies and requests over the rate limit are
//! refused and recorded nowhere.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;

use app::services::sign_in_limit::{PER_ACCOUNT, PER_ADDRESS};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use carrier_core::checkin::{SECRET_LEN, Secret};
use carrier_storage::Store;
use serde_json::{Value, json};
use server::checkin::{CheckinState, router};
use tower::ServiceExt;

struct Harness {
    tmp: tempfile::TempDir,
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
    let app = router(CheckinState::new(store.clone(), secrets));
    Harness { tmp, app, store }
}

fn body(machine: &str, generation: u64) -> Value {
    json!({"carrier": "pxe", "machine": machine, "generation": generation,
           "mac": "52:54:00:12:34:56", "cmdline": "init=/nix/store/x/init carrier.generation=2"})
}

async fn post(h: &Harness, token: Option<&str>, body: &Value) -> (StatusCode, String) {
    post_from(h, None, token, body).await
}

/// A POST as from `source` (what `carrier serve` takes from the connection).
async fn post_from(
    h: &Harness,
    source: Option<SocketAddr>,
    token: Option<&str>,
    body: &Value,
) -> (StatusCode, String) {
    let mut req = Request::post("/api/checkin").header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut req = req.body(Body::from(body.to_string())).unwrap();
    if let Some(source) = source {
        req.extensions_mut().insert(ConnectInfo(source));
    }
    let resp = h.app.clone().oneshot(req).await.unwrap();
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
    // each from its own address: an address gets only a few invalid bodies (rate limit)
    for (i, (b, expected)) in cases.into_iter().enumerate() {
        let source = SocketAddr::from(([192, 0, 2, 10 + i as u8], 40000));
        let (status, text) = post_from(&h, Some(source), Some(&t), &b).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{b}: {text}");
        assert!(text.contains(expected), "{text} should contain {expected}");
    }
    assert!(h.store.latest_checkins().await.unwrap().is_empty(), "nothing recorded");
}

/// Every check-in recorded, not only the latest per machine.
async fn recorded(h: &Harness) -> i64 {
    let url = format!("sqlite://{}", h.tmp.path().join("db.sqlite").display());
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM checkins").fetch_one(&db).await.unwrap();
    db.close().await;
    n
}

/// A source address gets `PER_ACCOUNT` check-ins per machine and `PER_ADDRESS` in all
/// within the window (sign_in_limit's numbers); the next one is answered 429 before its
/// token is looked at, and is recorded nowhere. Other addresses are not affected.
#[tokio::test]
async fn checkins_over_the_limit_of_an_address_get_429_and_are_not_recorded() {
    let h = harness().await;
    let a: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let b: SocketAddr = "192.0.2.2:40000".parse().unwrap();
    let node1 = token(PXE, "pxe", "node1");
    for i in 0..PER_ACCOUNT {
        let (status, text) = post_from(&h, Some(a), Some(&node1), &body("node1", 2)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "check-in {i}: {text}");
    }
    let (status, text) = post_from(&h, Some(a), Some(&node1), &body("node1", 2)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    assert!(text.contains("too many check-ins from 192.0.2.1"), "{text}");
    assert_eq!(recorded(&h).await, PER_ACCOUNT as i64, "the refused one is not recorded");
    let (status, text) = post_from(&h, Some(b), Some(&node1), &body("node1", 2)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "another address: {text}");

    // the address's limit over all machines it names
    let mut sent = PER_ACCOUNT;
    for m in 2.. {
        let machine = format!("node{m}");
        let t = token(PXE, "pxe", &machine);
        for _ in 0..PER_ACCOUNT.min(PER_ADDRESS - sent) {
            let (status, text) = post_from(&h, Some(a), Some(&t), &body(&machine, 1)).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{machine}: {text}");
            sent += 1;
        }
        if sent == PER_ADDRESS {
            break;
        }
    }
    let before = recorded(&h).await;
    let t = token(PXE, "pxe", "fresh");
    let (status, text) = post_from(&h, Some(a), Some(&t), &body("fresh", 1)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    // a forged token is not even looked at
    let (status, _) = post_from(&h, Some(a), Some(&"00".repeat(32)), &body("fresh", 1)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(recorded(&h).await, before, "nothing recorded over the limit");
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
