//! One module per page.

pub mod account;
pub mod admin;
pub mod carrier;
pub mod carriers;
pub mod history;
pub mod jobs;
pub mod machine;
pub mod machines;
pub mod sign_in;
pub mod status;

pub use account::AccountPage;
pub use admin::{AdminAuditPage, AdminUsersPage};
pub use carrier::CarrierPage;
pub use carriers::CarriersPage;
pub use history::HistoryPage;
pub use jobs::{DeployPage, JobPage, JobsPage};
pub use machine::MachinePage;
pub use machines::MachinesPage;
pub use sign_in::SignInPage;
pub use status::StatusPage;

use leptos::prelude::*;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.set_status(http::StatusCode::NOT_FOUND);
    }
    view! { <h1>"Page not found"</h1> }
}
