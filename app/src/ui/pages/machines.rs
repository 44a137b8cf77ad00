use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::model::{MachineList, MachineQuery, PER_PAGE, machine_href};
use crate::serverfns::inventory::list_machines;
use crate::ui::components::{ErrorBox, Tags};

/// All machines, carried ones included, with a server-side filter that works with and
/// without JavaScript (a plain GET form), [`PER_PAGE`] to a page (`?page=` links that
/// keep the filter).
#[component]
pub fn MachinesPage() -> impl IntoView {
    let query_map = use_query_map();
    let query = Memo::new(move |_| {
        let q = query_map.read();
        MachineQuery {
            pattern: q.get("pattern").unwrap_or_default(),
            tags: q.get("tags").unwrap_or_default(),
            attrs: q.get("attrs").unwrap_or_default(),
            managed: q.get("managed").unwrap_or_default(),
            page: q.get("page").unwrap_or_default(),
        }
    });
    let machines = Resource::new(move || query.get(), list_machines);
    view! {
        <Title text="Machines"/>
        <h1>"Machines"</h1>
        <FilterForm query=query.get_untracked()/>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match machines.await {
                    Ok(list) => view! { <MachinesTable list query=query.get_untracked()/> }.into_any(),
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn FilterForm(query: MachineQuery) -> impl IntoView {
    let managed = query.managed_or_default().to_string();
    let option = move |value: &'static str, label: &'static str| {
        let selected = managed == value;
        view! { <option value=value selected=selected>{label}</option> }
    };
    view! {
        <form method="get" action="/machines" class="filter" data-testid="filter">
            <label>"Pattern " <input type="search" name="pattern" value=query.pattern placeholder="node*, pxe#*"/></label>
            <label>"Tags " <input type="text" name="tags" value=query.tags placeholder="prod ^legacy"/></label>
            <label>"Attributes " <input type="text" name="attrs" value=query.attrs placeholder="spin=nixos labels.dc=prg"/></label>
            <label>"Managed "
                <select name="managed">
                    {option("all", "all")}
                    {option("managed", "managed")}
                    {option("unmanaged", "unmanaged")}
                </select>
            </label>
            <button type="submit">"Filter"</button>
        </form>
    }
}

#[component]
fn MachinesTable(list: MachineList, query: MachineQuery) -> impl IntoView {
    let shown = || (list.pages > 1).then(|| pager(&list, &query));
    let (top, bottom) = (shown(), shown());
    view! {
        <p class="count" data-testid="machine-count">{format!("{} of {} machines", list.matched, list.total)}</p>
        {top}
        <table class="machines" data-testid="machines">
            <thead>
                <tr><th>"Name"</th><th>"Spin"</th><th>"Target / FQDN"</th><th>"Carrier"</th><th>"Tags"</th></tr>
            </thead>
            <tbody>
                {list.machines.into_iter().map(|m| {
                    let href = machine_href(&m.name);
                    let carrier_href = m.carrier.as_deref().map(machine_href);
                    let target = match (&m.target, &m.fqdn) {
                        (Some(t), Some(f)) if t == f => t.clone(),
                        (Some(t), Some(f)) => format!("{t} ({f})"),
                        (Some(t), None) => t.clone(),
                        (None, Some(f)) => format!("— ({f})"),
                        (None, None) => "—".to_string(),
                    };
                    view! {
                        <tr data-machine=m.name.clone()>
                            <td>
                                <a href=href>{m.name.clone()}</a>
                                {m.is_carrier.then(|| view! { <span class="badge">"carrier"</span> })}
                                {(!m.managed).then(|| view! { <span class="badge muted">"unmanaged"</span> })}
                            </td>
                            <td>{m.spin}</td>
                            <td>{target}</td>
                            <td>{m.carrier.map(|c| view! { <a href=carrier_href.unwrap_or_default()>{c}</a> })}</td>
                            <td><Tags tags=m.tags/></td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        {bottom}
    }
}

/// Which machines this page shows, and links to the previous, next and every page.
fn pager(list: &MachineList, query: &MachineQuery) -> impl IntoView + use<> {
    let first = (list.page - 1) * PER_PAGE + 1;
    let last = first + list.machines.len() - 1;
    let current_page = list.page;
    let link = |page: usize, label: String| {
        let current = page == current_page;
        view! {
            <a href=query.page_href(page) aria-current=current.then_some("page")>{label}</a>
        }
    };
    view! {
        <nav class="pager" data-testid="pager">
            <span>{format!("{first}–{last}, page {} of {}", list.page, list.pages)}</span>
            {(list.page > 1).then(|| link(list.page - 1, "‹ previous".into()))}
            {(1..=list.pages).map(|p| link(p, p.to_string())).collect_view()}
            {(list.page < list.pages).then(|| link(list.page + 1, "next ›".into()))}
        </nav>
    }
}
