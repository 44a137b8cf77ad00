//! carrier's dashboard: routes, pages and server functions. Server functions are thin
//! adapters over carrier-core; pages only arrange data the server functions return.

pub mod error;
pub mod model;
pub mod serverfns;
#[cfg(feature = "ssr")]
pub mod services;
pub mod ui;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, path};

use ui::pages::{
    AccountPage, AdminAuditPage, AdminUsersPage, CarrierPage, CarriersPage, DeployPage,
    HistoryPage, JobPage, JobsPage, MachinePage, MachinesPage, NotFound, SignInPage, StatusPage,
};

/// The browser's entry (the `frontend` crate): hydrates the islands on the page. A
/// server function's redirect (a started job's page) is followed as a plain navigation:
/// there is no client-side router.
#[cfg(feature = "hydrate")]
pub fn hydrate_islands() {
    let _ = leptos::server_fn::redirect::set_redirect_hook(|to: &str| {
        if let Some(window) = web_sys::window() {
            let _ = window.location().set_href(to);
        }
    });
    leptos::mount::hydrate_islands();
}

/// The HTML document the server renders around [`App`].
pub fn shell(options: LeptosOptions) -> impl IntoView {
    // before the scripts below render: they carry this response's nonce
    #[cfg(feature = "ssr")]
    services::security::provide_page_csp();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options islands=true/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// Every page renders completely on the server (`SsrMode::Async`), so it works with
/// JavaScript off. Links and forms are plain HTML; only the islands (`#[island]`: the
/// live job, the status refresh, the deploy form, the account's tokens and sessions) are
/// hydrated in the browser, so only their code is in the WASM.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/carrier.css"/>
        <Title formatter=|page: String| format!("{page} · carrier")/>
        <Router>
            <ui::components::Layout>
                <Routes fallback=NotFound>
                    <Route path=path!("/") view=MachinesPage ssr=SsrMode::Async/>
                    <Route path=path!("/machines") view=MachinesPage ssr=SsrMode::Async/>
                    <Route path=path!("/machines/*name") view=MachinePage ssr=SsrMode::Async/>
                    <Route path=path!("/carriers") view=CarriersPage ssr=SsrMode::Async/>
                    <Route path=path!("/carriers/*name") view=CarrierPage ssr=SsrMode::Async/>
                    <Route path=path!("/sign-in") view=SignInPage ssr=SsrMode::Async/>
                    <Route path=path!("/account") view=AccountPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/users") view=AdminUsersPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/audit") view=AdminAuditPage ssr=SsrMode::Async/>
                    <Route path=path!("/deploy") view=DeployPage ssr=SsrMode::Async/>
                    <Route path=path!("/jobs") view=JobsPage ssr=SsrMode::Async/>
                    <Route path=path!("/jobs/:id") view=JobPage ssr=SsrMode::Async/>
                    <Route path=path!("/status") view=StatusPage ssr=SsrMode::Async/>
                    <Route path=path!("/history") view=HistoryPage ssr=SsrMode::Async/>
                </Routes>
            </ui::components::Layout>
        </Router>
    }
}
