//! Server-side rendering through the real router, the real inventory service (real
//! nix-instantiate on examples/cluster) and a real SQLite database.

use std::path::PathBuf;
use std::sync::Arc;

use app::services::{AccessPolicy, AppState, InventoryService};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use carrier_core::auth::{Role, Scope};
use carrier_core::cluster::Inventory;
use carrier_core::conf_dir::ConfDir;
use leptos::prelude::get_configuration;
use server::web::WebConfig;
use tower::ServiceExt;

struct Harness {
    _tmp: tempfile::TempDir,
    app: axum::Router,
    db: sqlx::SqlitePool,
    store: carrier_storage::Store,
}

async fn harness(conf_dir: PathBuf, token: Option<&str>) -> Harness {
    harness_with(conf_dir, token, None, WebConfig::loopback()).await
}

/// A dashboard as `carrier serve --addr 127.0.0.1:3000 --anonymous-read` builds it (as
/// scripts/serve runs it); `cache_dir` replaces the fresh cache directory, `web` the HTTP
/// settings.
async fn harness_with(
    conf_dir: PathBuf,
    token: Option<&str>,
    cache_dir: Option<PathBuf>,
    web: WebConfig,
) -> Harness {
    harness_full(conf_dir, token, cache_dir, web, true).await
}

async fn harness_full(
    conf_dir: PathBuf,
    token: Option<&str>,
    cache_dir: Option<PathBuf>,
    web: WebConfig,
    anonymous_read: bool,
) -> Harness {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("carrier.db").display());
    let store = carrier_storage::Store::open(&url).await.unwrap();
    // the test reads the tables itself
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let cache_dir = cache_dir.unwrap_or_else(|| tmp.path().join("cache"));
    let conf_dir = ConfDir::resolve(&conf_dir).unwrap();
    let service = InventoryService::new(Inventory::new(cache_dir), conf_dir, store.clone());
    let access =
        AccessPolicy { anonymous_read, ..AccessPolicy::new(store.clone(), token.map(Into::into)) };
    let state = AppState {
        inventory: Arc::new(service),
        access: Arc::new(access),
        status: Default::default(),
        ssh_config: None,
    };
    let options = get_configuration(None).unwrap().leptos_options;
    Harness { _tmp: tmp, app: server::serve::router(state, options, &web), db, store }
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
    let (_, html) =
        get(&h.app, "/machines?pattern=pxe-server%23*&tags=&attrs=&managed=all", &[]).await;
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
    assert!(
        html.contains("invalid --attr &#x27;nonsense&#x27;")
            || html.contains("invalid --attr 'nonsense'"),
        "{html}"
    );
    assert!(rows_empty(&html));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_page_shows_options_and_carrier() {
    let h = harness(example(), None).await;
    let (status, html) = get(&h.app, "/machines/pxe-server", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("carrier.enable"), "every option is listed");
    assert!(html.contains("/nix/var/nix/profiles/confctl-"), "carried profiles are shown");
    let carried: Vec<&str> =
        html.split("data-carried=\"").skip(1).map(|s| &s[..s.find('"').unwrap()]).collect();
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
    assert!(
        html.contains("no machine named &#x27;no-such-machine&#x27;")
            || html.contains("no machine named 'no-such-machine'"),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_token_is_enforced_for_pages_and_server_functions() {
    let h = harness_full(example(), Some("s3cret"), None, WebConfig::loopback(), false).await;
    let (status, html) = get(&h.app, "/machines", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "anonymous callers are sent to sign in");
    assert!(rows_empty(&html));
    let (status, _) = get(&h.app, "/machines", &[("cookie", "carrier_token=wrong")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, html) = get(&h.app, "/machines", &[("cookie", "carrier_token=s3cret")]).await;
    assert!(!rows_empty(&html));

    let post = |auth: Option<&'static str>| {
        let mut req = Request::post("/api/list_carriers")
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.body(Body::empty()).unwrap()
    };
    let resp = h.app.clone().oneshot(post(None)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
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
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM evaluations").fetch_one(&h.db).await.unwrap();
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
        let page =
            tokio::time::timeout(std::time::Duration::from_secs(10), get(&h.app, "/carriers", &[]))
                .await;
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
    assert!(
        html.contains("data-testid=\"inventory-info\""),
        "the footer read the inventory: {html}"
    );
}

async fn send(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, headers, bytes.to_vec())
}

fn api_post(path: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Request<Body> {
    let mut req = Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body.into()).unwrap()
}

fn broken_cluster() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster/broken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("module.nix"), "{ cluster.broken = { spin = \"nixos\"; ").unwrap();
    tmp
}

/// 50 requests (pages and server functions, 10 at a time) against a configuration that
/// does not evaluate: one evaluation is recorded, not one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_cluster_is_evaluated_and_recorded_once() {
    let conf = broken_cluster();
    let h = harness(conf.path().to_path_buf(), None).await;
    for round in 0..5 {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let app = h.app.clone();
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        let (_, html) =
                            get(&app, if round % 2 == 0 { "/machines" } else { "/carriers" }, &[])
                                .await;
                        assert!(html.contains("cluster/broken/module.nix"), "{html}");
                    } else {
                        let (status, _, body) =
                            send(&app, api_post("/api/list_carriers", &[], "")).await;
                        assert_ne!(status, StatusCode::OK);
                        assert!(
                            String::from_utf8_lossy(&body).contains("cluster/broken/module.nix")
                        );
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
    }
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT content_key, error FROM evaluations")
            .fetch_all(&h.db)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "one configuration, one evaluation record: {rows:?}");
    assert_eq!(rows[0].0.len(), 64, "the failure is recorded under its content key");
    assert!(rows[0].1.as_deref().unwrap().contains("cluster/broken/module.nix"));
}

/// Errors the browser sees never carry paths outside the configuration directory: a
/// cache directory that cannot be created is an internal error, logged on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_of_the_surroundings_stay_on_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let not_a_dir = tmp.path().join("cache-is-a-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let h = harness_with(example(), None, Some(not_a_dir), WebConfig::loopback()).await;
    let (_, html) = get(&h.app, "/carriers", &[]).await;
    assert!(
        !html.contains(&tmp.path().display().to_string()),
        "no server path in the page: {html}"
    );
    assert!(html.contains("internal error (see the server log)"), "{html}");
    let (_, _, body) = send(&h.app, api_post("/api/list_carriers", &[], "")).await;
    let body = String::from_utf8_lossy(&body);
    assert!(
        !body.contains(&tmp.path().display().to_string()) && body.contains("Internal"),
        "{body}"
    );
}

/// DNS rebinding: evil.example resolving to 127.0.0.1 makes the operator's browser send
/// `Host: evil.example:3000`; neither pages nor server functions answer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_and_origins_are_refused() {
    let mut web = WebConfig::loopback();
    web.hosts = app::services::HostAllowList::new(
        ([127, 0, 0, 1], 3000).into(),
        &["carrier.example.org".into()],
    );
    let h = harness_with(example(), None, None, web).await;
    let (status, html) = get(&h.app, "/machines", &[("host", "evil.example:3000")]).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert!(rows_empty(&html), "{html}");
    let (status, _, body) =
        send(&h.app, api_post("/api/list_carriers", &[("host", "evil.example:3000")], "")).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert!(!String::from_utf8_lossy(&body).contains("pxe-server"));

    for host in ["127.0.0.1:3000", "localhost:3000", "carrier.example.org"] {
        let (status, html) = get(&h.app, "/machines", &[("host", host)]).await;
        assert_eq!(status, StatusCode::OK, "{host}");
        assert!(!rows_empty(&html), "{host}");
    }

    // a server function POST from another origin (a page on another port of this
    // machine, or anywhere else) is refused; from the dashboard's own origin it answers
    let same = [("host", "127.0.0.1:3000"), ("origin", "http://127.0.0.1:3000")];
    assert_eq!(send(&h.app, api_post("/api/list_carriers", &same, "")).await.0, StatusCode::OK);
    for origin in ["http://evil.example", "http://127.0.0.1:8080", "null"] {
        let (status, _, body) = send(
            &h.app,
            api_post("/api/list_carriers", &[("host", "127.0.0.1:3000"), ("origin", origin)], ""),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}");
        assert!(!String::from_utf8_lossy(&body).contains("pxe-server"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_security_headers_and_the_page_csp_names_its_scripts_nonce() {
    let h = harness(example(), None).await;
    let (status, headers, body) =
        send(&h.app, Request::get("/machines").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let html = String::from_utf8(body).unwrap();
    let header = |h: &axum::http::HeaderMap, name: &str| {
        h.get(name).map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(header(&headers, "x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(header(&headers, "x-frame-options").as_deref(), Some("DENY"));
    // not no-referrer: under it browsers send `Origin: null` on the dashboard's own form
    // posts, which the origin check refuses; same-origin still sends nothing elsewhere
    assert_eq!(header(&headers, "referrer-policy").as_deref(), Some("same-origin"));
    let csp = header(&headers, "content-security-policy").expect("the page has a CSP");
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("'wasm-unsafe-eval'"), "{csp}");
    assert!(!csp.contains("'unsafe-inline'") && !csp.contains("'unsafe-eval'"), "{csp}");
    let nonce =
        csp.split("'nonce-").nth(1).and_then(|s| s.split('\'').next()).expect("a nonce in the CSP");
    assert!(nonce.len() >= 16, "{nonce}");
    // every inline script of the page carries it (else the browser would block hydration)
    let scripts: Vec<&str> =
        html.split("<script").skip(1).map(|s| &s[..s.find('>').unwrap()]).collect();
    assert!(!scripts.is_empty(), "{html}");
    for attrs in &scripts {
        assert!(
            attrs.contains(&format!("nonce=\"{nonce}\"")),
            "script without this response's nonce: <script{attrs}>"
        );
    }
    // a second page gets another nonce
    let (_, headers2, _) =
        send(&h.app, Request::get("/carriers").body(Body::empty()).unwrap()).await;
    assert_ne!(header(&headers2, "content-security-policy").unwrap(), csp);

    // everything else may run and load nothing
    let (_, headers, _) = send(&h.app, api_post("/api/list_carriers", &[], "")).await;
    assert_eq!(header(&headers, "x-content-type-options").as_deref(), Some("nosniff"));
    let csp = header(&headers, "content-security-policy").unwrap();
    assert!(
        csp.starts_with("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_compressed_for_clients_that_accept_gzip() {
    let h = harness(example(), None).await;
    let req =
        Request::get("/machines").header("accept-encoding", "gzip").body(Body::empty()).unwrap();
    let (status, headers, body) = send(&h.app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("content-encoding").map(|v| v.to_str().unwrap()), Some("gzip"));
    assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzip stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_bodies_are_refused() {
    let h = harness(example(), None).await;
    let query = "query[tags]=&query[attrs]=&query[managed]=all&query[pattern]=";
    let body = format!("{query}{}", "x".repeat(server::web::BODY_LIMIT));
    let length = body.len().to_string();
    let (status, _, _) =
        send(&h.app, api_post("/api/list_machines", &[("content-length", &length)], body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _, _) =
        send(&h.app, api_post("/api/list_machines", &[], format!("{query}*"))).await;
    assert_eq!(status, StatusCode::OK);
}

/// A request that outlives the timeout is answered 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_time_out() {
    let mut web = WebConfig::loopback();
    web.request_timeout = std::time::Duration::from_millis(1);
    let h = harness_with(example(), None, None, web).await;
    let (status, _) = get(&h.app, "/carriers", &[]).await;
    assert_eq!(
        status,
        StatusCode::REQUEST_TIMEOUT,
        "the first request runs Nix: far longer than 1 ms"
    );
}

/// Nix may point into carrier's evaluator (in the cache directory, under the server's
/// home); the browser sees the evaluator's place named, not its path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nix_errors_name_the_cache_directory_without_its_path() {
    let conf = tempfile::tempdir().unwrap();
    let dir = conf.path().join("cluster/a");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("module.nix"),
        r#"{ config, ... }: { cluster.a = { spin = "nixos"; tags = config.cluster.a.tags; }; }"#,
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let h = harness_with(
        conf.path().to_path_buf(),
        None,
        Some(cache.path().to_path_buf()),
        WebConfig::loopback(),
    )
    .await;
    let (_, html) = get(&h.app, "/machines", &[]).await;
    assert!(html.contains("infinite recursion"), "{html}");
    assert!(html.contains("at &lt;carrier cache&gt;/evaluator-"), "{html}");
    assert!(!html.contains(&cache.path().display().to_string()), "{html}");
}

/// The dashboard as `carrier serve` runs it without `--anonymous-read`, with viewer `vic`,
/// deployer `dee` scoped to `tag:prg` and admin `ada` (password `correct horse`), and a
/// session cookie of each.
async fn with_accounts() -> (Harness, Vec<(&'static str, String)>) {
    let h = harness_full(example(), None, None, WebConfig::loopback(), false).await;
    let hash = carrier_storage::hash_password("correct horse").unwrap();
    let prg = Scope::parse(&["tag:prg"]).unwrap();
    let mut cookies = vec![];
    for (name, role, scope) in [
        ("vic", Role::Viewer, None),
        ("dee", Role::Deployer, Some(&prg)),
        ("ada", Role::Admin, None),
    ] {
        let id = h.store.add_user(name, &hash, role, scope).await.unwrap();
        let secret =
            h.store.create_session(id, jiff::SignedDuration::from_hours(1), None).await.unwrap();
        cookies.push((name, format!("carrier_session={secret}")));
    }
    (h, cookies)
}

const SAME_ORIGIN: [(&str, &str); 2] =
    [("host", "127.0.0.1:3000"), ("origin", "http://127.0.0.1:3000")];

/// A form post from the dashboard's own page, with `cookie` (if any), from 192.0.2.7.
fn form_post(path: &str, cookie: Option<&str>, body: &str) -> Request<Body> {
    let mut headers = SAME_ORIGIN.to_vec();
    if let Some(c) = cookie {
        headers.push(("cookie", c));
    }
    let mut req = api_post(path, &headers, body.to_string());
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from(([192, 0, 2, 7], 40000))));
    req
}

/// Every route as anonymous, viewer, scoped deployer and admin: the status each gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_authorises_its_caller() {
    let (h, cookies) = with_accounts().await;
    const SEE: u16 = 303;
    // (method, path, form body, [anonymous, viewer, scoped deployer, admin])
    let table: &[(&str, &str, &str, [u16; 4])] = &[
        ("GET", "/", "", [SEE, 200, 200, 200]),
        ("GET", "/machines", "", [SEE, 200, 200, 200]),
        ("GET", "/machines/pxe-server", "", [SEE, 200, 200, 200]),
        ("GET", "/carriers", "", [SEE, 200, 200, 200]),
        ("GET", "/no/such/page", "", [SEE, 404, 404, 404]),
        ("GET", "/sign-in", "", [200, 200, 200, 200]),
        ("GET", "/account", "", [SEE, 200, 200, 200]),
        ("GET", "/admin/users", "", [SEE, 403, 403, 200]),
        ("GET", "/admin/audit", "", [SEE, 403, 403, 200]),
        ("POST", "/api/get_caller", "", [200, 200, 200, 200]),
        ("POST", "/api/get_inventory_info", "", [401, 200, 200, 200]),
        ("POST", "/api/list_carriers", "", [401, 200, 200, 200]),
        ("POST", "/api/get_machine", "name=pxe-server", [401, 200, 200, 200]),
        ("POST", "/api/get_machine", "name=nosuch", [401, 404, 404, 404]),
        (
            "POST",
            "/api/list_machines",
            "query[pattern]=*&query[tags]=&query[attrs]=&query[managed]=",
            [401, 200, 200, 200],
        ),
        (
            "POST",
            "/api/list_machines",
            "query[pattern]=*&query[tags]=&query[attrs]=nonsense&query[managed]=",
            [401, 400, 400, 400],
        ),
        ("POST", "/api/list_my_tokens", "", [401, 200, 200, 200]),
        ("POST", "/api/list_my_sessions", "", [401, 200, 200, 200]),
        ("POST", "/api/create_token", "name=t&rights=viewer&scope=&days=1", [401, 200, 200, 200]),
        ("POST", "/api/create_token", "name=u&rights=root&scope=&days=1", [401, 400, 400, 400]),
        ("POST", "/api/revoke_token", "name=t", [401, 200, 200, 200]),
        ("POST", "/api/list_users", "", [401, 403, 403, 200]),
        ("POST", "/api/list_audit", "actor=&action=&since=", [401, 403, 403, 200]),
        ("POST", "/api/set_user_role", "name=vic&role=viewer&scope=", [401, 403, 403, 200]),
        ("POST", "/api/set_user_role", "name=vic&role=root&scope=", [401, 403, 403, 400]),
        ("POST", "/api/set_user_disabled", "name=nobody&disabled=false", [401, 403, 403, 400]),
        ("POST", "/api/revoke_user_sessions", "name=nobody", [401, 403, 403, 400]),
        ("GET", "/deploy", "", [SEE, 200, 200, 200]),
        ("GET", "/status", "", [SEE, 200, 200, 200]),
        ("GET", "/metrics", "", [SEE, 200, 200, 200]),
        ("POST", "/api/get_status", "query[state]=&query[page]=", [401, 200, 200, 200]),
        ("POST", "/api/get_status", "query[state]=fine&query[page]=", [401, 400, 400, 400]),
        ("POST", "/api/get_status", "query[state]=outdated&query[page]=x", [401, 400, 400, 400]),
        ("GET", "/jobs", "", [SEE, 200, 200, 200]),
        ("GET", "/jobs/999/events", "", [SEE, 404, 404, 404]),
        ("GET", "/jobs/abc/events", "", [SEE, 404, 404, 404]),
        ("POST", "/api/list_jobs", "machine=&requested_by=&state=", [401, 200, 200, 200]),
        ("POST", "/api/list_jobs", "machine=&requested_by=&state=bogus", [401, 400, 400, 400]),
        ("POST", "/api/get_job", "id=999", [401, 404, 404, 404]),
        (
            "POST",
            "/api/preview_deploy",
            "form[pattern]=pxe-server&form[action]=switch",
            [401, 200, 200, 200],
        ),
        // the scoped deployer's scope (tag:prg) does not hold backup
        (
            "POST",
            "/api/start_deploy",
            "form[pattern]=backup&form[action]=switch&form[if_busy]=queue",
            [401, 403, 403, 200],
        ),
        (
            "POST",
            "/api/start_deploy",
            "form[pattern]=prg/db1&form[action]=explode",
            [401, 403, 400, 400],
        ),
        ("POST", "/api/cancel_job", "id=999", [401, 403, 404, 404]),
        ("GET", "/carriers/pxe-server", "", [SEE, 200, 200, 200]),
        ("POST", "/api/get_carrier", "name=pxe-server", [401, 200, 200, 200]),
        ("POST", "/api/get_carrier", "name=backup", [401, 404, 404, 404]),
        // checked before the carrier is asked
        ("POST", "/api/preview_boot", "carrier=pxe-server&mac=52:54", [401, 400, 400, 400]),
        ("POST", "/api/preview_boot", "carrier=backup&mac=52:54:00:00:00:01", [401, 404, 404, 404]),
        ("GET", "/history", "", [SEE, 200, 200, 200]),
        ("POST", "/api/list_history", "machine=&user=&outcome=", [401, 200, 200, 200]),
        ("POST", "/api/list_history", "machine=&user=&outcome=bad", [401, 400, 400, 400]),
        ("POST", "/api/remove_generation", "machine=nosuch&generation=1", [401, 403, 404, 404]),
        ("POST", "/api/rebuild_netboot", "carrier=nosuch", [401, 403, 404, 404]),
        ("POST", "/api/rebuild_netboot", "carrier=backup", [401, 403, 400, 400]),
    ];
    let callers: Vec<Option<&str>> =
        std::iter::once(None).chain(cookies.iter().map(|(_, c)| Some(c.as_str()))).collect();
    let mut wrong = vec![];
    for &(method, path, body, expected) in table {
        for (caller, want) in callers.iter().zip(expected) {
            let req = if method == "GET" {
                let mut req = Request::get(path);
                if let Some(c) = caller {
                    req = req.header("cookie", *c);
                }
                req.body(Body::empty()).unwrap()
            } else {
                form_post(path, *caller, body)
            };
            let (status, headers, body) = send(&h.app, req).await;
            let body = String::from_utf8_lossy(&body);
            if status.as_u16() != want {
                wrong.push(format!("{method} {path} as {caller:?}: {status}, expected {want}"));
            }
            if status == StatusCode::SEE_OTHER {
                assert_eq!(headers["location"], "/sign-in", "{method} {path}");
            }
            // a refusal shows no inventory
            if status.is_client_error() {
                assert!(!body.contains("pxe-server"), "{method} {path} as {caller:?}: {body}");
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_and_out_with_a_form_post() {
    let (h, _) = with_accounts().await;
    // wrong password and unknown name: the same answer
    for (name, password) in [("vic", "wrong"), ("nobody", "correct horse")] {
        let body = format!("name={name}&password={}", password.replace(' ', "+"));
        let (status, headers, _) = send(&h.app, form_post("/sign-in", None, &body)).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers["location"], "/sign-in?failed=wrong", "{name}");
        assert!(!headers.contains_key("set-cookie"));
    }
    let (status, html) = get(&h.app, "/sign-in?failed=wrong", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Wrong name or password."), "{html}");

    let body = "name=vic&password=correct+horse";
    let (status, headers, _) = send(&h.app, form_post("/sign-in", None, body)).await;
    assert_eq!(
        (status, &headers["location"]),
        (StatusCode::SEE_OTHER, &"/machines".parse().unwrap())
    );
    let set_cookie = headers["set-cookie"].to_str().unwrap();
    assert!(set_cookie.contains("; HttpOnly; SameSite=Lax; Max-Age=43200"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "not behind a TLS proxy: {set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let (status, html) = get(&h.app, "/machines", &[("cookie", &cookie)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("vic (viewer)"), "the header names who is signed in");
    assert!(html.contains("data-testid=\"sign-out\""));

    let (status, headers, _) = send(&h.app, form_post("/sign-out", Some(&cookie), "")).await;
    assert_eq!(
        (status, &headers["location"]),
        (StatusCode::SEE_OTHER, &"/sign-in".parse().unwrap())
    );
    assert!(headers["set-cookie"].to_str().unwrap().contains("carrier_session=; "));
    // revoked on the server: the old cookie no longer works
    assert_eq!(get(&h.app, "/machines", &[("cookie", &cookie)]).await.0, StatusCode::SEE_OTHER);

    let log: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT action, outcome, address FROM audit_log ORDER BY id")
            .fetch_all(&h.db)
            .await
            .unwrap();
    let seen: Vec<(&str, &str)> = log.iter().map(|(a, o, _)| (a.as_str(), o.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("sign-in", "failed: wrong password"),
            ("sign-in", "failed: no such account"),
            ("sign-in", "ok"),
            ("sign-out", "ok"),
        ]
    );
    assert!(log.iter().all(|(_, _, a)| a.as_deref() == Some("192.0.2.7")), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_signs_a_user_out_and_disables_an_account_at_once() {
    let (h, cookies) = with_accounts().await;
    let (vic, dee, ada) = (&cookies[0].1, &cookies[1].1, &cookies[2].1);
    assert_eq!(get(&h.app, "/machines", &[("cookie", vic)]).await.0, StatusCode::OK);
    let (status, _, body) =
        send(&h.app, form_post("/api/revoke_user_sessions", Some(ada), "name=vic")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(get(&h.app, "/machines", &[("cookie", vic)]).await.0, StatusCode::SEE_OTHER);

    let body = "name=dee&disabled=true";
    assert_eq!(
        send(&h.app, form_post("/api/set_user_disabled", Some(ada), body)).await.0,
        StatusCode::OK
    );
    assert_eq!(get(&h.app, "/machines", &[("cookie", dee)]).await.0, StatusCode::SEE_OTHER);
    let (_, html) = get(&h.app, "/admin/audit?action=user.disable", &[("cookie", ada)]).await;
    assert!(html.contains(">dee<") && html.contains(">ada<"), "{html}");
    let (_, html) = get(&h.app, "/admin/audit?since=2999-01-01", &[("cookie", ada)]).await;
    assert!(!html.contains("user.disable"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_form_posts_are_refused() {
    let (h, cookies) = with_accounts().await;
    let ada = &cookies[2].1;
    let foreign = |path: &str, cookie: Option<&str>, body: &str, origin: Option<&str>| {
        let mut headers = vec![("host", "127.0.0.1:3000")];
        headers.extend(origin.map(|o| ("origin", o)));
        headers.extend(cookie.map(|c| ("cookie", c)));
        api_post(path, &headers, body.to_string())
    };
    // a page elsewhere posts the sign-in form (login CSRF) or an admin's change
    let sign_in =
        foreign("/sign-in", None, "name=vic&password=correct+horse", Some("http://evil.example"));
    let (status, headers, _) = send(&h.app, sign_in).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!headers.contains_key("set-cookie"));
    let body = "name=vic&role=admin&scope=";
    for origin in [Some("http://evil.example"), Some("null"), None] {
        let (status, _, _) =
            send(&h.app, foreign("/api/set_user_role", Some(ada), body, origin)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin:?}");
    }
    assert_eq!(h.store.user("vic").await.unwrap().unwrap().role, Role::Viewer);
}

/// A configuration of `n` machines `m000`, `m001`, … with tag `even` on every second one.
fn many_machines(n: usize) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..n {
        let dir = tmp.path().join(format!("cluster/m{i:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        let tags = if i % 2 == 0 { "[ \"even\" ]" } else { "[ ]" };
        let module = format!("{{ cluster.m{i:03} = {{ spin = \"nixos\"; tags = {tags}; }}; }}");
        std::fs::write(dir.join("module.nix"), module).unwrap();
    }
    tmp
}

async fn get_json(
    app: &axum::Router,
    uri: &str,
    cookie: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let mut req = Request::get(uri).header("accept", "application/json");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let (status, headers, body) = send(app, req.body(Body::empty()).unwrap()).await;
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, headers, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_machines_page_is_paginated_with_links_that_keep_the_filter() {
    let conf = many_machines(250);
    let h = harness(conf.path().to_path_buf(), None).await;
    let (status, html) = get(&h.app, "/machines", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let first = rows(&html);
    assert_eq!(first.len(), 50);
    assert_eq!((first[0].as_str(), first[49].as_str()), ("m000", "m049"));
    assert!(html.contains("250 of 250 machines"), "{html}");
    assert!(html.contains("1–50, page 1 of 5"), "{html}");
    assert!(html.contains("href=\"/machines?page=2\""), "a link to the next page: {html}");

    let (_, html) = get(&h.app, "/machines?page=5", &[]).await;
    let last = rows(&html);
    assert_eq!(last.len(), 50);
    assert_eq!((last[0].as_str(), last[49].as_str()), ("m200", "m249"));
    assert!(html.contains("201–250, page 5 of 5"), "{html}");

    // the filter applies before pages are cut, and the links carry it
    let (_, html) = get(&h.app, "/machines?tags=even&page=3", &[]).await;
    let even = rows(&html);
    assert_eq!(even.len(), 25);
    assert_eq!(even[0], "m200");
    assert!(html.contains("125 of 250 machines"), "{html}");
    assert!(html.contains("href=\"/machines?tags=even&amp;page=1\""), "{html}");

    // a page that is not there, or no page number, is named
    for (page, says) in
        [("6", "invalid page &#x27;6&#x27;"), ("zero", "invalid page &#x27;zero&#x27;")]
    {
        let (status, html) = get(&h.app, &format!("/machines?page={page}"), &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains(says) || html.contains(&says.replace("&#x27;", "'")), "{html}");
        assert!(rows_empty(&html));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_pages_answer_json_with_the_data_they_show() {
    let h = harness(example(), None).await;
    let (status, headers, list) = get_json(&h.app, "/machines?pattern=pxe-server%23*", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"));
    assert_eq!(headers["vary"], "accept");
    let names: Vec<&str> =
        list["machines"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert!(!names.is_empty() && names.iter().all(|n| n.starts_with("pxe-server#")), "{list}");
    assert_eq!(list["matched"], names.len());
    assert_eq!((list["page"].as_u64(), list["pages"].as_u64()), (Some(1), Some(1)));
    assert!(list["total"].as_u64().unwrap() > names.len() as u64);

    let carried = names[0];
    let (status, _, machine) = get_json(&h.app, &app::model::machine_href(carried), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(machine["summary"]["name"], carried);
    assert_eq!(machine["summary"]["carrier"], "pxe-server");

    let (status, _, carriers) = get_json(&h.app, "/carriers", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(carriers[0]["name"], "pxe-server");
    assert_eq!(carriers[0]["carried"].as_array().unwrap().len(), names.len());

    // errors are JSON too, with the page's message and a status
    let (status, _, e) = get_json(&h.app, "/machines/no-such-machine", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(e["error"], "not found: no machine named 'no-such-machine' in the cluster");
    let (status, _, e) = get_json(&h.app, "/machines?attrs=nonsense", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(e["error"].as_str().unwrap().contains("'nonsense'"), "{e}");

    // a browser still gets the page
    let (status, html) = get(&h.app, "/carriers", &[("accept", "text/html,*/*;q=0.8")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_answers_are_authorised_like_the_pages() {
    let (h, cookies) = with_accounts().await;
    let viewer = cookies.iter().find(|(n, _)| *n == "vic").map(|(_, c)| c.as_str());
    for path in ["/machines", "/machines/pxe-server", "/carriers"] {
        let (status, headers, body) = get_json(&h.app, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} anonymous: {body}");
        assert!(headers.get("location").is_none());
        assert!(!body.to_string().contains("pxe-server"), "{path}: {body}");
        assert!(body["error"].as_str().unwrap().starts_with("not authorised"), "{body}");

        let (status, _, body) = get_json(&h.app, path, viewer).await;
        assert_eq!(status, StatusCode::OK, "{path} as a viewer: {body}");
        assert!(body.to_string().contains("pxe-server"), "{path}: {body}");
    }
    let (status, _, _) = get_json(&h.app, "/carriers", Some("carrier_session=forged")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an unknown session is anonymous");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_says_which_part_fails_and_nothing_else() {
    let h = harness_full(example(), None, None, WebConfig::loopback(), false).await;
    // for everyone, no sign-in
    let (status, headers, body) = get_json(&h.app, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, serde_json::json!({"database": "ok", "nix": "ok"}));
    assert_eq!(headers["cache-control"], "no-store");

    // Nix missing
    let missing = server::healthz::router(h.store.clone(), "no-such-nix-instantiate");
    let (status, _, body) = get_json(&missing, "/healthz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, serde_json::json!({"database": "ok", "nix": "failed"}));

    // the database gone: its pool closed
    h.store.close().await;
    let (status, _, body) = get_json(&h.app, "/healthz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, serde_json::json!({"database": "failed", "nix": "ok"}));
}

/// The dashboard looks at the configuration's files again at most
/// `REVALIDATE_AFTER` after it last did: a machine added (or a file changed) then shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_configuration_file_is_seen() {
    let conf = many_machines(3);
    let h = harness(conf.path().to_path_buf(), None).await;
    let names = |list: &serde_json::Value| -> Vec<String> {
        list["machines"].as_array().unwrap().iter().map(|m| m["name"].to_string()).collect()
    };
    let (_, _, list) = get_json(&h.app, "/machines", None).await;
    assert_eq!(names(&list), ["\"m000\"", "\"m001\"", "\"m002\""]);

    let module = conf.path().join("cluster/m001/module.nix");
    std::fs::write(&module, "{ cluster.renamed = { spin = \"nixos\"; }; }").unwrap();
    std::thread::sleep(app::services::REVALIDATE_AFTER);
    let (_, _, list) = get_json(&h.app, "/machines", None).await;
    assert_eq!(names(&list), ["\"m000\"", "\"m002\"", "\"renamed\""]);
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM evaluations").fetch_one(&h.db).await.unwrap();
    assert_eq!(n, 2, "one evaluation per content");
}
