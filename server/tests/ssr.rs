//! Server-side rendering through the real router, the real inventory service (real
//! nix-instantiate on examples/cluster) and a real SQLite database.

use std::path::PathBuf;
use std::sync::Arc;

use app::services::{AccessPolicy, AppState, InventoryService};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use carrier_core::cluster::Inventory;
use leptos::prelude::get_configuration;
use tower::ServiceExt;

struct Harness {
    _tmp: tempfile::TempDir,
    app: axum::Router,
    db: sqlx::SqlitePool,
}

async fn harness(conf_dir: PathBuf, token: Option<&str>) -> Harness {
    let tmp = tempfile::tempdir().unwrap();
    let db = server::serve::connect(&format!("sqlite://{}", tmp.path().join("carrier.db").display()))
        .await
        .unwrap();
    let service = InventoryService::new(Inventory::new(tmp.path().join("cache")), conf_dir, db.clone());
    let state = AppState {
        inventory: Arc::new(service),
        access: Arc::new(AccessPolicy { token: token.map(Into::into) }),
    };
    let options = get_configuration(None).unwrap().leptos_options;
    Harness { _tmp: tmp, app: server::serve::router(state, options), db }
}

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster")
}

async fn get(app: &axum::Router, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn rows(html: &str) -> Vec<String> {
    html.split("data-machine=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].replace("&#x23;", "#").replace("&#35;", "#"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_page_lists_every_machine_with_carried_ones() {
    let h = harness(example(), None).await;
    let (status, html) = get(&h.app, "/machines", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let rows = rows(&html);
    assert!(rows.contains(&"pxe-server".to_string()), "{rows:?}");
    assert!(rows.iter().any(|r| r.starts_with("pxe-server#")), "{rows:?}");
    let mut sorted = rows.clone();
    sorted.sort();
    assert_eq!(rows, sorted, "machines are in name order");
    // an evaluation was recorded in the database
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM evaluations WHERE error IS NULL")
        .fetch_one(&h.db)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_is_applied_server_side() {
    let h = harness(example(), None).await;
    let (_, html) = get(&h.app, "/machines?pattern=pxe-server%23*&tags=&attrs=&managed=all", &[]).await;
    let rows = rows(&html);
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.starts_with("pxe-server#")), "{rows:?}");
    // the form is rendered with the submitted values
    assert!(html.contains("value=\"pxe-server#*\""), "form keeps the pattern");

    let (_, html) = get(&h.app, "/machines?attrs=spin%3Dvpsadminos", &[]).await;
    assert!(!rows_empty(&html));
    assert!(!html.contains("data-machine=\"pxe-server\""));
}

fn rows_empty(html: &str) -> bool {
    rows(html).is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filter_names_the_value() {
    let h = harness(example(), None).await;
    let (status, html) = get(&h.app, "/machines?attrs=nonsense", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("invalid --attr &#x27;nonsense&#x27;") || html.contains("invalid --attr 'nonsense'"), "{html}");
    assert!(rows_empty(&html));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_page_shows_options_and_carrier() {
    let h = harness(example(), None).await;
    let (status, html) = get(&h.app, "/machines/pxe-server", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("carrier.enable"), "every option is listed");
    assert!(html.contains("/nix/var/nix/profiles/confctl-"), "carried profiles are shown");
    let carried: Vec<&str> = html.split("data-carried=\"").skip(1).map(|s| &s[..s.find('"').unwrap()]).collect();
    assert!(carried.len() >= 2, "{carried:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carriers_page_lists_carried_machines() {
    let h = harness(example(), None).await;
    let (status, html) = get(&h.app, "/carriers", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("data-carrier=\"pxe-server\""));
    assert!(html.contains("system.build.dist"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_machine_is_not_found() {
    let h = harness(example(), None).await;
    let (_, html) = get(&h.app, "/machines/no-such-machine", &[]).await;
    assert!(html.contains("no machine named &#x27;no-such-machine&#x27;") || html.contains("no machine named 'no-such-machine'"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_enforced_for_pages_and_server_functions() {
    let h = harness(example(), Some("s3cret")).await;
    let (_, html) = get(&h.app, "/machines", &[]).await;
    assert!(html.contains("a token is required"));
    assert!(rows_empty(&html));
    let (_, html) = get(&h.app, "/machines", &[("cookie", "carrier_token=s3cret")]).await;
    assert!(!rows_empty(&html));

    let post = |auth: Option<&'static str>| {
        let mut req = Request::post("/api/list_carriers").header("content-type", "application/x-www-form-urlencoded");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.body(Body::empty()).unwrap()
    };
    let resp = h.app.clone().oneshot(post(None)).await.unwrap();
    assert_ne!(resp.status(), StatusCode::OK);
    let resp = h.app.clone().oneshot(post(Some("Bearer s3cret"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let carriers: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(carriers[0]["name"], "pxe-server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_cluster_shows_the_nix_error_without_absolute_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster/broken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("module.nix"), "{ cluster.broken = { spin = \"nixos\"; ").unwrap();
    let h = harness(tmp.path().to_path_buf(), None).await;
    let (_, html) = get(&h.app, "/machines", &[]).await;
    assert!(html.contains("cluster/broken/module.nix"), "{html}");
    assert!(!html.contains(&tmp.path().display().to_string()), "absolute paths stay on the server");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM evaluations WHERE error IS NOT NULL")
        .fetch_one(&h.db)
        .await
        .unwrap();
    assert!(n >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_record_one_evaluation() {
    let h = harness(example(), None).await;
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let app = h.app.clone();
            tokio::spawn(async move { get(&app, "/carriers", &[]).await })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.await.unwrap().0, StatusCode::OK);
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM evaluations").fetch_one(&h.db).await.unwrap();
    assert_eq!(n, 1, "one configuration, one evaluation record");
}

/// Building a router while another one renders pages must not stall those pages (leptos
/// stalls a page whose data starts loading while a route list is generated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_while_other_routers_are_built() {
    let h = harness(example(), None).await;
    let builder = tokio::spawn(async {
        for _ in 0..20 {
            harness(example(), None).await;
        }
    });
    for _ in 0..20 {
        let page = tokio::time::timeout(std::time::Duration::from_secs(10), get(&h.app, "/carriers", &[])).await;
        let (status, html) = page.expect("the page finished rendering");
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("data-carrier=\"pxe-server\""));
    }
    builder.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_get_the_not_found_page_with_the_app_state() {
    let h = harness(example(), None).await;
    let (status, html) = get(&h.app, "/no/such/page", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("data-testid=\"inventory-info\""), "the footer read the inventory: {html}");
}
