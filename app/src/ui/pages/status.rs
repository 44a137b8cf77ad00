use leptos::prelude::*;
use leptos_meta::Title;

use leptos_router::hooks::use_query_map;

use crate::model::{StatusQuery, StatusView, machine_href};
use crate::serverfns::status::get_status;
use crate::ui::components::ErrorBox;

/// Every machine's state for the whole team: counts at the top (each a link to the
/// machines in that state), then machines grouped standalone and by carrier, with drift
/// age and last deploy, 50 to a page. Rendered on the server from the latest background
/// reading (useful without JavaScript); with JavaScript it reads again every 15 seconds.
#[component]
pub fn StatusPage() -> impl IntoView {
    let q = use_query_map().read_untracked();
    let query = StatusQuery {
        state: q.get("state").unwrap_or_default(),
        tag: q.get("tag").unwrap_or_default(),
        page: q.get("page").unwrap_or_default(),
    };
    let status = Resource::new(move || (), {
        let query = query.clone();
        move |_| get_status(query.clone())
    });
    view! {
        <Title text="Status"/>
        <h1>"Status"</h1>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                let query = query.clone();
                Suspend::new(async move {
                    match status.await {
                        Ok(view) => view! { <LiveStatus view query/> }.into_any(),
                        Err(error) => view! { <ErrorBox error/> }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
}

/// The status of `query`'s machines as an island: read again every 15 seconds (a failed
/// reading keeps the last one).
#[island]
fn LiveStatus(view: StatusView, query: StatusQuery) -> impl IntoView {
    let current = RwSignal::new(view);
    #[cfg(feature = "hydrate")]
    let _ = set_interval_with_handle(
        move || {
            let query = query.clone();
            leptos::task::spawn_local(async move {
                if let Ok(view) = get_status(query).await {
                    current.set(view);
                }
            });
        },
        std::time::Duration::from_secs(15),
    );
    #[cfg(not(feature = "hydrate"))]
    let _ = query;
    move || view! { <StatusBody view=current.get()/> }
}

#[component]
fn StatusBody(view: StatusView) -> impl IntoView {
    let StatusView { state, tag, matched, page, pages, read_at, error, counts, groups } = view;
    let query = StatusQuery { state: state.clone(), tag: tag.clone(), page: String::new() };
    // a state's machines (or all) of the tag shown
    let of_state =
        |s: &str| StatusQuery { state: s.to_string(), tag: tag.clone(), page: String::new() };
    let pager = (pages > 1).then(|| view! {
        <nav class="pager" data-testid="status-pager">
            <span>{format!("{matched} machine(s), page {page} of {pages}")}</span>
            {(1..=pages).map(|p| view! {
                <a href=query.page_href(p) aria-current=(p == page).then_some("page")>{p.to_string()}</a>
            }).collect_view()}
        </nav>
    });
    view! {
        <p class="count" data-testid="status-read-at">
            {match read_at {
                Some(at) => format!("hosts read {at}"),
                None => "the hosts have not been read yet".to_string(),
            }}
        </p>
        {error.map(|e| view! { <p class="error" data-testid="status-error">{e}</p> })}
        {(!tag.is_empty()).then(|| view! {
            <p class="count" data-testid="status-tag">{format!("machines tagged {tag} · ")}<a href="/status">"every machine"</a></p>
        })}
        <ul class="counts" data-testid="status-counts">
            {counts.into_iter().map(|(name, n)| {
                let href = match name.as_str() {
                    "machines" => of_state("").page_href(1),
                    s => of_state(s).page_href(1),
                };
                let current = (name == state || (name == "machines" && state.is_empty())).then_some("page");
                let key = name.clone();
                view! { <li data-state=key><a href=href aria-current=current><strong>{n}</strong>" "{name}</a></li> }
            }).collect_view()}
        </ul>
        {pager}
        {groups.into_iter().map(|g| view! {
            <h2>{g.name}</h2>
            <table class="status" data-testid="status">
                <thead><tr><th>"Machine"</th><th>"State"</th><th>"Drift"</th><th>"Desired"</th><th>"Now"</th><th>"Booted"</th><th>"Last deploy"</th><th>"Tags"</th></tr></thead>
                <tbody>
                {g.machines.into_iter().map(|m| {
                    let (name, href, class) = (m.machine.clone(), machine_href(&m.machine), format!("state {}", m.state.replace(' ', "-")));
                    view! {
                        <tr data-machine=name>
                            <td><a href=href>{m.machine}</a></td>
                            <td class=class title=m.detail.unwrap_or_default()>{m.state}</td>
                            <td>{m.drift.unwrap_or_default()}</td>
                            <td>{m.desired.unwrap_or_default()}</td>
                            <td><code>{m.current.unwrap_or_default()}</code></td>
                            <td>{m.booted.unwrap_or_default()}</td>
                            <td>{m.last_deploy.map(|(at, outcome)| format!("{outcome}, {at}"))}</td>
                            <td class="tags">{m.tags.into_iter().map(|t| {
                                let href = StatusQuery { tag: t.clone(), ..StatusQuery::default() }.page_href(1);
                                view! { <a class="tag" href=href>{t}</a>" " }
                            }).collect_view()}</td>
                        </tr>
                    }
                }).collect_view()}
                </tbody>
            </table>
        }).collect_view()}
    }
}
