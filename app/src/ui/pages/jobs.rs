use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::error::AppError;
use crate::model::{DeployForm, JobDetail, JobEventView, JobView};
use crate::serverfns::account::get_caller;
use crate::serverfns::jobs::{StartDeploy, cancel_job, get_job, list_jobs, preview_deploy};
use crate::ui::components::ErrorBox;

/// The deploy form: the selection (previewed as the machines it resolves to, a plain GET
/// form) and the options (an island: a plain form post without JavaScript). Starting
/// answers at once with the job's page.
#[component]
pub fn DeployPage() -> impl IntoView {
    let query_map = use_query_map();
    let form = Memo::new(move |_| {
        let q = query_map.read();
        let field = |k| q.get(k).unwrap_or_default();
        DeployForm {
            pattern: field("pattern"),
            tags: field("tags"),
            action: Some(field("action")).filter(|a| !a.is_empty()).unwrap_or("switch".into()),
            ..DeployForm::default()
        }
    });
    let preview = Resource::new(
        move || form.get(),
        |form| async move {
            if form.pattern.trim().is_empty() { Ok(vec![]) } else { preview_deploy(form).await }
        },
    );
    let initial = form.get_untracked();
    let (pattern, tags, action) =
        (initial.pattern.clone(), initial.tags.clone(), initial.action.clone());
    // the form only for those who may deploy (the server checks every start regardless)
    let caller = Resource::new(|| (), |_| get_caller());
    view! {
        <Title text="Deploy"/>
        <h1>"Deploy"</h1>
        <form method="get" action="/deploy" class="filter" data-testid="deploy-preview-form">
            <label>"Pattern " <input type="search" name="pattern" value=pattern placeholder="node*, pxe-server#*"/></label>
            <label>"Tags " <input type="text" name="tags" value=tags placeholder="prod ^legacy"/></label>
            <input type="hidden" name="action" value=action/>
            <button type="submit">"Show machines"</button>
        </form>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match preview.await {
                    Ok(rows) if rows.is_empty() => view! { <p class="count">"Choose the machines to deploy."</p> }.into_any(),
                    Ok(rows) => view! {
                        <p class="count" data-testid="deploy-count">{format!("{} machine(s) selected", rows.len())}</p>
                        <table data-testid="deploy-preview">
                            <thead><tr><th>"Machine"</th><th>"Reached at"</th><th>"Build attribute"</th><th>"Runs now"</th><th>"Would get"</th><th>"Busy"</th></tr></thead>
                            <tbody>
                            {rows.into_iter().map(|r| {
                                let name = r.name.clone();
                                view! {
                                <tr data-machine=name>
                                    <td>{r.name}</td><td>{r.target}</td><td><code>{r.build_attribute}</code></td>
                                    <td class="now">{r.now.unwrap_or_else(|| "not read yet".into())}</td><td class="would-get">{r.would_get}</td>
                                    <td>{r.busy_in.map(|id| view! { <a href=format!("/jobs/{id}")>{format!("in job {id}")}</a> })}</td>
                                </tr>
                                }
                            }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
        <Suspense fallback=|| ()>
            {move || {
                let initial = initial.clone();
                Suspend::new(async move {
                    match caller.await {
                        Ok(c) if c.may_deploy() => view! { <StartForm initial/> }.into_any(),
                        _ => view! {
                            <p class="count" data-testid="deploy-needs-role">"Starting a deploy needs the deployer role."</p>
                        }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
}

/// The deploy's action and options for `initial`'s selection, posted to `start_deploy`.
/// With JavaScript a refusal shows here and the browser goes to the started job's page;
/// without, the post answers with a redirect to it.
#[island]
fn StartForm(initial: DeployForm) -> impl IntoView {
    let start = ServerAction::<StartDeploy>::new();
    let chosen = initial.action.clone();
    let action_option = move |value: &'static str| {
        view! { <option value=value selected={chosen == value}>{value}</option> }
    };
    // build: only build, a new local build generation (`carrier build`)
    let actions = ["switch", "boot", "test", "dry-activate", "build"].map(action_option);
    let nothing_chosen = initial.pattern.trim().is_empty();
    let (form_pattern, form_tags) = (initial.pattern, initial.tags);
    view! {
        {move || start.value().get().and_then(Result::err).map(|error| view! { <ErrorBox error/> })}
        <ActionForm action=start attr:class="deploy" attr:data-testid="deploy-form">
            <input type="hidden" name="form[pattern]" value=form_pattern/>
            <input type="hidden" name="form[tags]" value=form_tags/>
            <fieldset>
                <label>"Action " <select name="form[action]">{actions}</select></label>
                <label>"Generation " <input type="text" name="form[generation]" placeholder="new build"/></label>
                <label>"Auto-rollback "
                    <select name="form[auto_rollback]">
                        <option value="default" selected>"each machine's setting"</option>
                        <option value="on">"on"</option>
                        <option value="off">"off"</option>
                    </select>
                </label>
                <label><input type="checkbox" name="form[dry_activate_first]"/>" dry-activate first"</label>
                <label><input type="checkbox" name="form[one_by_one]"/>" one by one"</label>
                <label><input type="checkbox" name="form[reboot]"/>" reboot (boot only)"</label>
                <label><input type="checkbox" name="form[skip_health_checks]"/>" skip health checks"</label>
                <label>"If a machine is busy "
                    <select name="form[if_busy]">
                        <option value="queue" selected>"queue behind its job"</option>
                        <option value="refuse">"refuse"</option>
                    </select>
                </label>
            </fieldset>
            <button type="submit" data-testid="start-deploy" disabled=nothing_chosen>"Deploy"</button>
        </ActionForm>
    }
}

/// The history of jobs, newest first, filtered by machine, requester and state (a plain
/// GET form).
#[component]
pub fn JobsPage() -> impl IntoView {
    let query_map = use_query_map();
    let filter = Memo::new(move |_| {
        let q = query_map.read();
        let field = |k| q.get(k).unwrap_or_default();
        (field("machine"), field("user"), field("state"))
    });
    let jobs = Resource::new(move || filter.get(), |(m, u, s)| list_jobs(m, u, s));
    let (machine, user, state) = filter.get_untracked();
    view! {
        <Title text="Jobs"/>
        <h1>"Jobs"</h1>
        <p class="count"><a href="/deploy">"Start a deploy"</a></p>
        <form method="get" action="/jobs" class="filter" data-testid="jobs-filter">
            <label>"Machine " <input type="text" name="machine" value=machine/></label>
            <label>"Started by " <input type="text" name="user" value=user/></label>
            <label>"State " <input type="text" name="state" value=state placeholder="running, failed"/></label>
            <button type="submit">"Filter"</button>
        </form>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match jobs.await {
                    Ok(list) => view! { <JobsTable list/> }.into_any(),
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn JobsTable(list: Vec<JobView>) -> impl IntoView {
    view! {
        <table data-testid="jobs">
            <thead><tr><th>"Job"</th><th>"State"</th><th>"What"</th><th>"Started by"</th><th>"Created"</th><th>"Finished"</th></tr></thead>
            <tbody>
            {list.into_iter().map(|j| {
                let class = format!("state {}", j.state);
                view! {
                <tr data-job=j.id.to_string()>
                    <td><a href=format!("/jobs/{}", j.id)>{format!("#{}", j.id)}</a></td>
                    <td class=class>{j.state}</td>
                    <td>{j.summary}</td><td>{j.requested_by}</td>
                    <td>{j.created_at}</td><td>{j.finished_at.unwrap_or_default()}</td>
                </tr>
                }
            }).collect_view()}
            </tbody>
        </table>
    }
}

/// One job: its state, each machine's outcome, and its log. Rendered complete on the
/// server (the history from the database); with JavaScript the log continues live from
/// `/jobs/<id>/events` (server-sent events) until the job ends.
#[component]
pub fn JobPage() -> impl IntoView {
    let params = use_params_map();
    let id = params.read_untracked().get("id").and_then(|i| i.parse::<i64>().ok());
    let detail = Resource::new(
        || (),
        move |_| async move {
            match id {
                Some(id) => get_job(id).await,
                None => Err(AppError::NotFound("job".into())),
            }
        },
    );
    view! {
        <Title text="Job"/>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(detail) => view! { <LiveJob detail/> }.into_any(),
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// The job as an island: its log follows live while it runs, and it is read again when it
/// ends or is cancelled. The cancel button is a plain form post without JavaScript.
#[island]
fn LiveJob(detail: JobDetail) -> impl IntoView {
    let id = detail.job.id;
    let current = RwSignal::new(detail);
    let failure = RwSignal::new(None::<AppError>);
    let reread = move || {
        leptos::task::spawn_local(async move {
            match get_job(id).await {
                Ok(detail) => current.set(detail),
                Err(error) => failure.set(Some(error)),
            }
        })
    };
    let cancel = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        leptos::task::spawn_local(async move {
            match cancel_job(id).await {
                Ok(()) => reread(),
                Err(error) => failure.set(Some(error)),
            }
        });
    };
    view! {
        {move || failure.get().map(|error| view! { <ErrorBox error/> })}
        {move || view! { <JobBody detail=current.get() cancel on_end=reread/> }}
    }
}

#[component]
fn JobBody(
    detail: JobDetail,
    cancel: impl Fn(leptos::ev::SubmitEvent) + Copy + 'static,
    on_end: impl Fn() + Copy + 'static,
) -> impl IntoView {
    let JobDetail { job, events, can_cancel } = detail;
    let last = events.last().map(|e| e.seq).unwrap_or(0);
    let live = RwSignal::new(Vec::<JobEventView>::new());
    if !job.finished() {
        follow(job.id, last, live, on_end);
    }
    let id = job.id;
    view! {
        <h1 data-testid="job-title">{format!("Job #{} · {}", job.id, job.summary)}</h1>
        <p data-testid="job-state" class=format!("state {}", job.state)>
            {job.state.clone()}
            {job.cancel_requested.then_some(" (cancel requested)")}
        </p>
        <p class="count">
            {format!("started by {} · created {}", job.requested_by, job.created_at)}
            {job.started_at.map(|t| format!(" · started {t}"))}
            {job.finished_at.map(|t| format!(" · finished {t}"))}
            {job.instance.map(|i| format!(" · on {i}"))}
        </p>
        {job.error.map(|e| view! { <p class="error" data-testid="job-error">{e}</p> })}
        {can_cancel.then(|| view! {
            <form method="post" action="/api/cancel_job" class="inline" on:submit=cancel>
                <input type="hidden" name="id" value=id.to_string()/>
                <button type="submit" data-testid="cancel-job">"Cancel"</button>
            </form>
        })}
        {(!job.outcomes.is_empty()).then(|| view! {
            <table data-testid="job-outcomes">
                <thead><tr><th>"Machine"</th><th>"Outcome"</th></tr></thead>
                <tbody>
                {job.outcomes.into_iter().map(|(m, o)| {
                    let name = m.clone();
                    view! { <tr data-machine=name><td>{m}</td><td>{o}</td></tr> }
                }).collect_view()}
                </tbody>
            </table>
        })}
        <h2>"Log"</h2>
        <ol class="job-log" data-testid="job-log">
            {events.into_iter().map(event_line).collect_view()}
            <For each=move || live.get() key=|e| e.seq children=event_line/>
        </ol>
    }
}

fn event_line(e: JobEventView) -> impl IntoView {
    view! {
        <li class=format!("event {}", e.level) data-seq=e.seq.to_string()>
            <time>{e.at}</time>
            {e.machine.map(|m| view! { <span class="machine">{format!("[{m}]")}</span> })}
            " "<span class="text">{e.text}</span>
        </li>
    }
}

/// Follows a running job's events in the browser (server-sent events from after `last`);
/// the server renders the history, so this does nothing there.
#[allow(unused_variables)]
fn follow(id: i64, last: i64, live: RwSignal<Vec<JobEventView>>, on_end: impl Fn() + 'static) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        use wasm_bindgen::closure::Closure;

        let Ok(source) = web_sys::EventSource::new(&format!("/jobs/{id}/events?after={last}"))
        else {
            return;
        };
        let on_event =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |m: web_sys::MessageEvent| {
                let Some(text) = m.data().as_string() else { return };
                if let Ok(event) = serde_json::from_str::<JobEventView>(&text) {
                    live.update(|l| {
                        if l.last().is_none_or(|e| e.seq < event.seq) {
                            l.push(event)
                        }
                    });
                }
            });
        source.set_onmessage(Some(on_event.as_ref().unchecked_ref()));
        on_event.forget();
        let closing = source.clone();
        let on_end = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            closing.close();
            on_end();
        });
        let _ = source.add_event_listener_with_callback("end", on_end.as_ref().unchecked_ref());
        on_end.forget();
        let source = StoredValue::new_local(source);
        on_cleanup(move || source.with_value(|s| s.close()));
    }
}
