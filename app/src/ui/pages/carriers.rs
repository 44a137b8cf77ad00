use leptos::prelude::*;
use leptos_meta::Title;

use super::machine::CarriedTable;
use crate::model::{carrier_href, count};
use crate::serverfns::inventory::list_carriers;
use crate::ui::components::ErrorBox;

/// Every carrier with its carried machines.
#[component]
pub fn CarriersPage() -> impl IntoView {
    let carriers = Resource::new(|| (), |_| list_carriers());
    view! {
        <Title text="Carriers"/>
        <h1>"Carriers"</h1>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match carriers.await {
                    Ok(list) if list.is_empty() => view! { <p>"No machine has carrier.enable set."</p> }.into_any(),
                    Ok(list) => list.into_iter().map(|c| view! {
                        <section class="carrier" data-carrier=c.name.clone()>
                            <h2><a href=carrier_href(&c.name)>{c.name.clone()}</a>
                                {c.fqdn.map(|f| view! { <small>{f}</small> })}</h2>
                            <p>{count(c.carried.len(), "carried machine")}</p>
                            <CarriedTable rows=c.carried/>
                        </section>
                    }).collect_view().into_any(),
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
    }
}
