//! `carrier serve`: composes the dashboard. Builds the configuration, opens the database
//! (the one the CLI records in, `GlobalArgs::database_url`) and the router, and passes
//! them down explicitly as Leptos context. Decides who may be served: accounts (sign-in,
//! API tokens), the shared token of one-person mode from a file or the environment (never
//! from the arguments), anonymous reading only with `--anonymous-read`, and that on a
//! non-loopback address only with `--public`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use app::services::{AccessPolicy, AppState, HostAllowList, InventoryService};
use app::{App, shell};
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{AxumRouteListing, LeptosRoutes, generate_route_list};

use crate::cli::{GlobalArgs, LogFormat, ServeArgs};
use crate::web::{WebConfig, harden};

pub fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let logs = tracing_subscriber::fmt().with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
    );
    match args.log_format {
        // colour codes only for a terminal, not in journald or a log file
        LogFormat::Text => {
            logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())).init()
        }
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
    tokio::runtime::Runtime::new()?.block_on(serve(global, args))?;
    Ok(ExitCode::SUCCESS)
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

pub fn router(state: AppState, leptos_options: LeptosOptions, web: &WebConfig) -> Router {
    let routes = routes();
    let access = state.access.clone();
    let board = state.status.clone();
    let store = access.store.clone();
    let json_pages = axum::middleware::from_fn_with_state(state.clone(), crate::api::json_pages);
    let context = move || provide_context(state.clone());
    let app = Router::new()
        .leptos_routes_with_context(&leptos_options, routes, context.clone(), {
            let options = leptos_options.clone();
            move || shell(options.clone())
        })
        // unknown paths render the app's not-found page, which reads the state too
        .fallback(leptos_axum::file_and_error_handler_with_context(context, shell))
        .with_state(leptos_options)
        .merge(crate::identity::router(access.clone()))
        .layer(json_pages)
        .merge(crate::job_feed::router(store.clone()))
        .merge(crate::metrics::router(crate::metrics::Metrics { store: store.clone(), board }))
        // every request's caller, resolved once, before any route runs
        .layer(axum::middleware::from_fn_with_state(access, crate::identity::identify))
        // for everyone, whoever asks: says only which part failed
        .merge(crate::healthz::router(store, "nix-instantiate"));
    harden(app, web)
}

/// The token every request must present: from `--token-file` or `CARRIER_TOKEN`.
/// A token in the arguments is refused: every user of the machine can read them.
fn token(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    if args.token.is_some() {
        bail!(
            "--token is not accepted: command-line arguments are visible to every user of this machine (ps). \
             Put the token in a file only you can read and pass --token-file <file>, or set CARRIER_TOKEN"
        );
    }
    let from_env = std::env::var("CARRIER_TOKEN").ok().filter(|t| !t.is_empty());
    match (&args.token_file, from_env) {
        (Some(_), Some(_)) => bail!(
            "both a token file (--token-file or CARRIER_TOKEN_FILE) and CARRIER_TOKEN are set; set one"
        ),
        (Some(path), None) => read_token_file(path).map(Some),
        (None, Some(token)) => check_token(&token, "CARRIER_TOKEN").map(|()| Some(token)),
        (None, None) => Ok(None),
    }
}

fn read_token_file(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let context = || format!("reading the token file {}", path.display());
    let meta = std::fs::metadata(path).with_context(context)?;
    if meta.mode() & 0o007 != 0 {
        bail!(
            "the token file {} may be read or changed by every user (mode {:o}); run `chmod o-rwx {}`",
            path.display(),
            meta.mode() & 0o7777,
            path.display()
        );
    }
    if meta.len() > 4096 {
        bail!("the token file {} is {} bytes; a token is one line", path.display(), meta.len());
    }
    let text = std::fs::read_to_string(path).with_context(context)?;
    let token = text.strip_suffix('\n').unwrap_or(&text);
    let token = token.strip_suffix('\r').unwrap_or(token);
    check_token(token, &format!("the token file {}", path.display()))?;
    Ok(token.to_string())
}

/// A token travels in a header and a cookie: one word of visible ASCII without `;` or `,`.
fn check_token(token: &str, source: &str) -> anyhow::Result<()> {
    if token.is_empty() {
        bail!("{source} holds an empty token");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b',') {
        bail!(
            "{source}: the token must be one line of visible ASCII characters without spaces, ';' or ','"
        );
    }
    Ok(())
}

/// A dashboard anyone on the network could read is served only when asked for: anonymous
/// reading on a non-loopback address needs `--public` (which implies it).
fn check_exposure(
    addr: std::net::SocketAddr,
    anonymous_read: bool,
    public: bool,
) -> anyhow::Result<()> {
    if addr.ip().is_loopback() || !(anonymous_read || public) {
        return Ok(());
    }
    if !public {
        bail!(
            "refusing to serve {addr} with --anonymous-read: every host that reaches this address \
             could read the inventory. Drop --anonymous-read (callers then sign in or present a \
             token), listen on a loopback address (--addr 127.0.0.1:3000), or pass --public to \
             serve it to everyone"
        );
    }
    tracing::warn!(
        "serving {addr} to everyone (--public): every host that reaches it may read the inventory"
    );
    Ok(())
}

async fn serve(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let token = token(&args)?;
    check_exposure(args.addr, args.anonymous_read, args.public)?;
    let web = WebConfig {
        hosts: HostAllowList::new(args.addr, &args.allowed_hosts),
        request_timeout: Duration::from_secs(args.request_timeout),
    };
    let conf_dir = global.conf_dir()?;
    let db = carrier_storage::Store::open(&global.database_url()).await?;
    let checkin =
        crate::checkin::CheckinState::new(db.clone(), crate::checkin::secrets_dir(conf_dir.path()));
    let inventory = global.inventory()?;
    let cache_dir = inventory.cache_dir().to_path_buf();
    let service = Arc::new(InventoryService::new(inventory, conf_dir.clone(), db.clone()));
    // Evaluate once up front so configuration errors show in the log at start.
    if let Err(e) = service.load().await {
        tracing::warn!("the cluster does not evaluate yet: {e}");
    }
    let board = Arc::new(app::services::status::StatusBoard::default());
    let (jobs_ended, jobs_ended_rx) = tokio::sync::mpsc::unbounded_channel();
    let instance = match &args.instance {
        Some(name) => name.clone(),
        None => crate::records::who().1,
    };
    let runner = crate::jobs::Runner {
        store: db.clone(),
        inventory: service.clone(),
        conf_dir: conf_dir.clone(),
        cache_dir,
        ssh_config: args.ssh_config.clone(),
        instance,
        stale_after: Duration::from_secs(args.heartbeat_timeout),
        max_running: args.max_running_jobs as usize,
        ended: jobs_ended,
    };
    let background = crate::jobs::background_runtime(args.background_nice)?;
    runner.start(!args.no_jobs, &background).await?;
    if args.status_interval > 0 {
        crate::status::Refresher {
            board: board.clone(),
            inventory: service.clone(),
            store: db.clone(),
            ssh_config: args.ssh_config.clone(),
            interval: Duration::from_secs(args.status_interval),
            jobs_ended: jobs_ended_rx,
        }
        .spawn(&background);
    }
    let access = AccessPolicy {
        anonymous_read: args.anonymous_read || args.public,
        trust_proxy: args.trust_proxy,
        ..AccessPolicy::new(db, token)
    };
    let state = AppState {
        inventory: service,
        access: Arc::new(access),
        status: board,
        ssh_config: args.ssh_config.clone(),
    };
    let mut leptos_options = get_configuration(None)?.leptos_options;
    leptos_options.site_addr = args.addr;
    leptos_options.site_root = args.site_root.display().to_string().into();
    // the check-in route answers machines, which have no dashboard token
    let app =
        router(state, leptos_options, &web).merge(harden(crate::checkin::router(checkin), &web));
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("listening on {}", args.addr))?;
    println!("carrier dashboard for {conf_dir} on http://{}/", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
