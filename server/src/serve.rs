//! `carrier serve`: composes the dashboard. Builds the configuration, the database
//! pool and the router, and passes them down explicitly as Leptos context.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use app::services::{AccessPolicy, AppState, InventoryService};
use app::{shell, App};
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::SqlitePool;

use crate::cli::{GlobalArgs, ServeArgs};

pub fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    tokio::runtime::Runtime::new()?.block_on(serve(global, args))?;
    Ok(ExitCode::SUCCESS)
}

/// The default embedded database: SQLite in `$XDG_DATA_HOME/carrier/carrier.db`.
fn default_database_url() -> anyhow::Result<String> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let dir = env("XDG_DATA_HOME")
        .map(|d| d.join("carrier"))
        .or_else(|| env("HOME").map(|h| h.join(".local/share/carrier")))
        .context("neither XDG_DATA_HOME nor HOME is set; pass --database-url")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(format!("sqlite://{}", dir.join("carrier.db").display()))
}

pub async fn connect(url: &str) -> anyhow::Result<SqlitePool> {
    let options: SqliteConnectOptions =
        url.parse().with_context(|| format!("invalid --database-url '{url}'"))?;
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options.create_if_missing(true))
        .await
        .with_context(|| format!("opening the database '{url}'"))?;
    sqlx::migrate!("../migrations/sqlite").run(&pool).await.context("running database migrations")?;
    Ok(pool)
}

/// The whole web application, ready to serve; tests call this too.
/// The app's routes, generated once per process. While leptos generates a route list it
/// suppresses resource loading process-wide, and a page whose data starts loading in that
/// moment never finishes (leptos-rs/leptos#4773); so no route list is generated while
/// pages may be rendering.
fn routes() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

pub fn router(state: AppState, leptos_options: LeptosOptions) -> Router {
    let routes = routes();
    let context = move || provide_context(state.clone());
    Router::new()
        .leptos_routes_with_context(&leptos_options, routes, context.clone(), {
            let options = leptos_options.clone();
            move || shell(options.clone())
        })
        // unknown paths render the app's not-found page, which reads the state too
        .fallback(leptos_axum::file_and_error_handler_with_context(context, shell))
        .with_state(leptos_options)
}

async fn serve(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let conf_dir = std::path::absolute(&global.config)?;
    let db = connect(&match args.database_url {
        Some(url) => url,
        None => default_database_url()?,
    })
    .await?;
    let service = InventoryService::new(global.inventory()?, conf_dir.clone(), db);
    // Evaluate once up front so configuration errors show in the log at start.
    if let Err(e) = service.load().await {
        tracing::warn!("the cluster does not evaluate yet: {e}");
    }
    let state = AppState {
        inventory: Arc::new(service),
        access: Arc::new(AccessPolicy { token: args.token }),
    };
    let mut leptos_options = get_configuration(None)?.leptos_options;
    leptos_options.site_addr = args.addr;
    leptos_options.site_root = args.site_root.display().to_string().into();
    let app = router(state, leptos_options);
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("listening on {}", args.addr))?;
    println!("carrier dashboard for {} on http://{}/", conf_dir.display(), listener.local_addr()?);
    axum::serve(listener, app.into_make_service())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
