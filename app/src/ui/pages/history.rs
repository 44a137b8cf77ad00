use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::model::{RunView, machine_href};
use crate::serverfns::history::list_history;
use crate::ui::components::ErrorBox;

/// Every build and deploy recorded, from the CLI and from the dashboard's jobs, newest
/// first, filtered by machine, user and outcome (a plain GET form).
#[component]
pub fn HistoryPage() -> impl IntoView {
    let query_map = use_query_map();
    let filter = Memo::new(move |_| {
        let q = query_map.read();
        let field = |k| q.get(k).unwrap_or_default();
        (field("machine"), field("user"), field("outcome"))
    });
    let runs = Resource::new(move || filter.get(), |(m, u, o)| list_history(m, u, o));
    let (machine, user, outcome) = filter.get_untracked();
    view! {
        <Title text="History"/>
        <h1>"History"</h1>
        <p class="count">"Builds and deploys from the command line and from this dashboard."</p>
        <form method="get" action="/history" class="filter" data-testid="history-filter">
            <label>"Machine " <input type="text" name="machine" value=machine/></label>
            <label>"User " <input type="text" name="user" value=user/></label>
            <label>"Outcome " <input type="text" name="outcome" value=outcome placeholder="succeeded, failed, unfinished"/></label>
            <button type="submit">"Filter"</button>
        </form>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match runs.await {
                    Ok(list) => view! { <RunsTable list/> }.into_any(),
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn RunsTable(list: Vec<RunView>) -> impl IntoView {
    view! {
        <table data-testid="history">
            <thead><tr><th>"Run"</th><th>"Outcome"</th><th>"What"</th><th>"Machines"</th><th>"User"</th><th>"From"</th><th>"Started"</th><th>"Finished"</th><th>"Git"</th></tr></thead>
            <tbody>
            {list.into_iter().map(|r| {
                let (outcome, class) = match r.success {
                    Some(true) => ("succeeded", "state succeeded"),
                    Some(false) => ("failed", "state failed"),
                    None => ("unfinished", "state running"),
                };
                let what = [Some(r.kind), r.action].into_iter().flatten().collect::<Vec<_>>().join(" ");
                view! {
                <tr data-run=r.id.to_string()>
                    <td>{format!("#{}", r.id)}
                        {r.job.map(|id| view! { " "<a href=format!("/jobs/{id}")>{format!("job {id}")}</a> })}</td>
                    <td class=class title=r.error.unwrap_or_default()>{outcome}</td>
                    <td>{what}</td>
                    <td>{r.machines.into_iter().map(|(m, o)| view! {
                        <a href=machine_href(&m)>{m.clone()}</a>{format!(": {o}")}<br/>
                    }).collect_view()}</td>
                    <td>{r.user}</td><td>{r.host}</td>
                    <td>{r.started_at}</td><td>{r.finished_at.unwrap_or_default()}</td>
                    <td><code>{r.git.unwrap_or_default()}</code></td>
                </tr>
                }
            }).collect_view()}
            </tbody>
        </table>
    }
}
