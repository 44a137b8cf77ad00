use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::model::{CarriedView, MachineDetail, machine_href};
use crate::serverfns::inventory::get_machine;
use crate::ui::components::{ErrorBox, Tags};

/// One machine: every option, which carrier carries it and under which names.
#[component]
pub fn MachinePage() -> impl IntoView {
    let params = use_params_map();
    let name = Memo::new(move |_| {
        let raw = params.read().get("name").unwrap_or_default();
        urlencoding::decode(&raw).map(|n| n.into_owned()).unwrap_or(raw)
    });
    let machine = Resource::new(move || name.get(), get_machine);
    view! {
        <Title text=move || name.get()/>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match machine.await {
                    Ok(detail) => view! { <Detail detail/> }.into_any(),
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Detail(detail: MachineDetail) -> impl IntoView {
    let s = detail.summary;
    let carrier_link = s.carrier.clone().map(|c| {
        let href = machine_href(&c);
        view! { <a href=href>{c}</a> }
    });
    view! {
        <h1 data-testid="machine-name">{s.name.clone()}</h1>
        <dl class="facts">
            <dt>"Spin"</dt><dd>{s.spin}</dd>
            <dt>"FQDN"</dt><dd>{s.fqdn.unwrap_or_else(|| "—".into())}</dd>
            <dt>"Target"</dt><dd>{s.target.unwrap_or_else(|| "— (not deployable)".into())}</dd>
            <dt>"Managed"</dt><dd>{if s.managed { "yes" } else { "no" }}</dd>
            <dt>"Runnable"</dt><dd>{if detail.runnable { "yes" } else { "no" }}</dd>
            <dt>"Build attribute"</dt><dd><code>{detail.build_attribute}</code></dd>
            <dt>"Profile"</dt><dd data-testid="profile"><code>{detail.profile}</code></dd>
            <dt>"Tags"</dt><dd><Tags tags=s.tags/></dd>
            {carrier_link.map(|l| view! { <dt>"Carried by"</dt><dd data-testid="carried-by">{l}</dd> })}
            {detail.alias.map(|a| view! { <dt>"Alias"</dt><dd>{a}</dd> })}
            <dt>"Source machine"</dt><dd><a href=machine_href(&detail.cluster_name)>{detail.cluster_name.clone()}</a></dd>
            <dt>"Defined in"</dt><dd>{detail.files.join(", ")}</dd>
        </dl>
        {(!detail.carries.is_empty()).then(|| view! {
            <h2>"Carries"</h2>
            <CarriedTable rows=detail.carries/>
        })}
        {(!detail.carried_as.is_empty() && s.carrier.is_none()).then(|| view! {
            <h2>"Carried as"</h2>
            <CarriedTable rows=detail.carried_as/>
        })}
        <h2>"Options"</h2>
        <table class="options" data-testid="options">
            <thead><tr><th>"Option"</th><th>"Value"</th></tr></thead>
            <tbody>
                {detail.options.into_iter().map(|(k, v)| view! {
                    <tr><td><code>{k}</code></td><td><code>{v}</code></td></tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// Carried machines: name, carrier, alias, build attribute, profile path.
#[component]
pub fn CarriedTable(rows: Vec<CarriedView>) -> impl IntoView {
    view! {
        <table class="carried">
            <thead><tr><th>"Name"</th><th>"Carrier"</th><th>"Source"</th><th>"Alias"</th><th>"Spin"</th><th>"Build attribute"</th><th>"Profile"</th></tr></thead>
            <tbody>
                {rows.into_iter().map(|c| view! {
                    <tr data-carried=c.name.clone()>
                        <td><a href=machine_href(&c.name)>{c.name.clone()}</a></td>
                        <td><a href=machine_href(&c.carrier)>{c.carrier.clone()}</a></td>
                        <td><a href=machine_href(&c.source)>{c.source.clone()}</a></td>
                        <td>{c.alias.unwrap_or_else(|| "—".into())}</td>
                        <td>{c.spin}</td>
                        <td><code>{c.build_attribute}</code></td>
                        <td><code>{c.profile}</code></td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}
