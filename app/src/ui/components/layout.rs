use leptos::prelude::*;

use crate::model::count;
use crate::serverfns::inventory::get_inventory_info;

/// Navigation, the page, and a footer with the inventory's provenance.
#[component]
pub fn Layout(children: Children) -> impl IntoView {
    let info = Resource::new(|| (), |_| get_inventory_info());
    view! {
        <header class="top">
            <a class="brand" href="/machines">"carrier"</a>
            <nav>
                <a href="/machines">"Machines"</a>
                <a href="/carriers">"Carriers"</a>
            </nav>
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
