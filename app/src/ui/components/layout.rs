use leptos::prelude::*;

use crate::model::{CallerView, count};
use crate::serverfns::account::get_caller;
use crate::serverfns::inventory::get_inventory_info;

/// Navigation, who is signed in, the page, and a footer with the inventory's provenance.
#[component]
pub fn Layout(children: Children) -> impl IntoView {
    let info = Resource::new(|| (), |_| get_inventory_info());
    let caller = Resource::new(|| (), |_| get_caller());
    view! {
        <header class="top">
            <a class="brand" href="/machines">"carrier"</a>
            <nav>
                <a href="/machines">"Machines"</a>
                <a href="/carriers">"Carriers"</a>
                <a href="/status">"Status"</a>
                <a href="/jobs">"Jobs"</a>
                <a href="/history">"History"</a>
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        let may = caller.await.is_ok_and(|c| c.may_deploy());
                        may.then(|| view! { <a href="/deploy" data-testid="nav-deploy">"Deploy"</a> })
                    })}
                </Suspense>
            </nav>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    view! { <Who caller=caller.await.unwrap_or_default()/> }
                })}
            </Suspense>
        </header>
        <main>{children()}</main>
        <footer>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match info.await {
                        Ok(i) => view! {
                            <span data-testid="inventory-info">
                                {format!("{}, {}", count(i.machines, "machine"), count(i.carriers, "carrier"))}
                                {i.evaluated_at.map(|t| format!(" · evaluated {t}"))}
                                {format!(" · config {}", i.content_key)}
                            </span>
                        }.into_any(),
                        Err(_) => view! { <span>"inventory unavailable"</span> }.into_any(),
                    }
                })}
            </Suspense>
        </footer>
    }
}

/// The signed-in account with its pages and a sign-out button (a plain form post, so it
/// works without JavaScript), or a sign-in link. Links only: every page checks for itself.
#[component]
fn Who(caller: CallerView) -> impl IntoView {
    let admin = caller.role.as_deref() == Some("admin") && caller.name.is_some();
    let Some(name) = caller.name else {
        let label = if caller.role.is_some() { "shared token" } else { "" };
        return view! {
            <div class="who">
                <span>{label}</span>
                {caller.role.is_none().then(|| view! { <a href="/sign-in">"Sign in"</a> })}
            </div>
        }
        .into_any();
    };
    view! {
        <div class="who">
            {admin.then(|| view! { <a href="/admin/users">"Users"</a> <a href="/admin/audit">"Audit"</a> })}
            <a href="/account" data-testid="caller">{format!("{name} ({})", caller.role.unwrap_or_default())}</a>
            {caller.session.then(|| view! {
                <form method="post" action="/sign-out" class="inline">
                    <button type="submit" data-testid="sign-out">"Sign out"</button>
                </form>
            })}
        </div>
    }
    .into_any()
}
