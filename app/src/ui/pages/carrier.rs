use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::machine::CarriedTable;
use crate::model::{
    BootPreviewView, CarriedProfile, CarrierDetail, CheckinRow, NetbootBuild, count, machine_href,
};
use crate::serverfns::carriers::{get_carrier, preview_boot};
use crate::ui::components::ErrorBox;

/// One carrier: its netboot trees' last build and what it left out, a boot preview for a
/// MAC (`?mac=`, a plain GET form), every carried profile with its generations, the
/// check-ins of machines that booted from it, and what the cluster says it carries. What
/// it holds comes from the latest background reading; only the preview asks the carrier.
#[component]
pub fn CarrierPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let name = Memo::new(move |_| {
        let raw = params.read().get("name").unwrap_or_default();
        urlencoding::decode(&raw).map(|n| n.into_owned()).unwrap_or(raw)
    });
    let mac = Memo::new(move |_| query.read().get("mac").unwrap_or_default());
    let carrier = Resource::new(move || name.get(), get_carrier);
    let preview = Resource::new(
        move || (name.get(), mac.get()),
        |(name, mac)| async move {
            match mac.trim().is_empty() {
                true => None,
                false => Some(preview_boot(name, mac).await),
            }
        },
    );
    view! {
        <Title text=move || format!("Carrier {}", name.get())/>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match carrier.await {
                    Ok(detail) => view! { <Detail detail/> }.into_any(),
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
        <h2>"Boot preview"</h2>
        <form method="get" class="filters" data-testid="boot-preview-form">
            <label>"MAC "<input name="mac" placeholder="52:54:00:12:34:56" value=move || mac.get()/></label>
            <button type="submit">"Preview"</button>
        </form>
        <Transition fallback=|| view! { <p>"Asking the carrier…"</p> }>
            {move || Suspend::new(async move {
                match preview.await {
                    None => view! { <p class="count">"Enter a MAC to see exactly what that machine gets when it netboots."</p> }.into_any(),
                    Some(Ok(p)) => view! { <Preview p/> }.into_any(),
                    Some(Err(error)) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Detail(detail: CarrierDetail) -> impl IntoView {
    let CarrierDetail {
        carrier,
        read_at,
        read_error,
        profiles,
        netboot,
        netboot_error,
        checkins,
        may_change,
    } = detail;
    let name = carrier.name.clone();
    view! {
        <h1 data-testid="carrier-name">{carrier.name.clone()}
            {carrier.fqdn.map(|f| view! { <small>" "{f}</small> })}</h1>
        <p class="count" data-testid="carrier-read-at">
            {match read_at {
                Some(at) => format!("read {at}"),
                None => "not read yet (the status refresher reads carriers in the background)".to_string(),
            }}
            " · "<a href=machine_href(&carrier.name)>"machine page"</a>
        </p>
        {read_error.map(|e| view! { <p class="error" data-testid="carrier-error">{e}</p> })}
        <h2>"Netboot"</h2>
        {may_change.then(|| view! {
            // a plain form post: the answer sends the browser to the job's page
            <form method="post" action="/api/rebuild_netboot" class="inline" data-testid="rebuild-netboot">
                <input type="hidden" name="carrier" value=name.clone()/>
                <button type="submit">"Rebuild the netboot trees"</button>
            </form>
        })}
        {netboot_error.map(|e| view! { <p class="error">{format!("last build not read: {e}")}</p> })}
        {netboot.map(|b| view! { <LastBuild b/> })}
        <h2>{count(profiles.len(), "carried profile")}</h2>
        {profiles.into_iter().map(|p| view! { <Profile p may_change/> }).collect_view().into_any()}
        <Checkins rows=checkins/>
        <h2>"In the cluster"</h2>
        <CarriedTable rows=carrier.carried/>
    }
}

#[component]
fn Checkins(rows: Vec<CheckinRow>) -> impl IntoView {
    view! {
        <h2>"Check-ins"</h2>
        <table class="checkins" data-testid="checkins">
            <thead><tr><th>"Machine"</th><th>"Generation"</th><th>"MAC"</th><th>"Received"</th></tr></thead>
            <tbody>
                {rows.into_iter().map(|c| view! {
                    <tr data-machine=c.machine.clone()><td>{c.machine.clone()}</td><td>{c.generation}</td><td><code>{c.mac}</code></td><td>{c.received_at}</td></tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn LastBuild(b: NetbootBuild) -> impl IntoView {
    let summary = match &b.error {
        Some(e) => format!("failed: {e}"),
        None => format!(
            "published {} ({} rendered, {} reused)",
            count(b.published.len(), "machine"),
            b.rendered,
            b.reused
        ),
    };
    view! {
        <p data-testid="netboot-last-build">{format!("last build ended {}, took {:.2} s: {summary}", b.finished_at, b.seconds)}</p>
        {(!b.faults.is_empty()).then(|| view! {
            <table class="faults" data-testid="netboot-faults">
                <thead><tr><th>"Profile"</th><th>"Generation"</th><th>"Problem"</th><th>"Left out"</th></tr></thead>
                <tbody>
                    {b.faults.into_iter().map(|f| view! {
                        <tr data-kind=f.kind><td>{f.profile}</td><td>{f.generation}</td><td>{f.message}</td>
                            <td>{if f.left_out { "the machine" } else { "a generation or MAC" }}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        })}
        {b.warnings.into_iter().map(|w| view! { <p class="count">{format!("warning: {w}")}</p> }).collect_view()}
    }
}

/// A carried profile's generations; with `may_change`, each one but the current can be
/// removed (a job; a plain form post).
#[component]
fn Profile(p: CarriedProfile, may_change: bool) -> impl IntoView {
    let CarriedProfile { profile, machine, generations } = p;
    let removable = may_change.then(|| machine.clone()).flatten();
    view! {
        <h3 data-profile=profile.clone()>{profile.clone()}
            {machine.map(|m| view! { " · "<a href=machine_href(&m)>{m.clone()}</a> })}</h3>
        <table class="generations" data-testid="generations" data-profile=profile>
            <thead><tr><th>"#"</th><th>"Date"</th><th>"Version"</th><th>"Current"</th><th>"MACs"</th><th>"Kernel parameters"</th><th>"Store path and boot files"</th><th></th></tr></thead>
            <tbody>
                {generations.into_iter().map(|g| view! {
                    <tr data-generation=g.number.to_string() class:current=g.current>
                        <td>{g.number}</td>
                        <td>{g.date}</td>
                        <td>{[g.version, g.revision].into_iter().flatten().collect::<Vec<_>>().join(" ")}</td>
                        <td>{if g.current { "current" } else { "" }}</td>
                        <td><code>{g.macs.join(" ")}</code></td>
                        <td><code>{g.kernel_params.join(" ")}</code></td>
                        <td><code>{g.store_path}</code>
                            {g.boot_files.into_iter().map(|f| view! { <br/><code>{f}</code> }).collect_view()}
                            {g.error.map(|e| view! { <br/><span class="error">{e}</span> })}</td>
                        <td>{removable.clone().filter(|_| !g.current).map(|machine| view! {
                            <form method="post" action="/api/remove_generation" class="inline" data-testid="remove-generation">
                                <input type="hidden" name="machine" value=machine/>
                                <input type="hidden" name="generation" value=g.number.to_string()/>
                                <button type="submit">"Remove"</button>
                            </form>
                        })}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn Preview(p: BootPreviewView) -> impl IntoView {
    let BootPreviewView { mac, machine, generation, files, conflicts, unserved_claimants } = p;
    let who = match (&machine, &generation) {
        (Some((profile, fqdn)), Some((n, store, _))) => {
            format!("{mac} boots {fqdn} ({profile}), generation {n} by default: {store}")
        }
        _ => format!("{mac} is no machine's: it gets the default menus"),
    };
    view! {
        <div data-testid="boot-preview">
            <p><strong>{who}</strong></p>
            {generation.map(|(_, _, params)| view! { <p>"Kernel parameters: "<code>{params.join(" ")}</code></p> })}
            {conflicts.into_iter().map(|c| view! { <p class="error">{c}</p> }).collect_view()}
            {(!unserved_claimants.is_empty()).then(|| view! {
                <p class="error">{format!("also listed by, but not served to: {}", unserved_claimants.join(", "))}</p>
            })}
            {files.into_iter().map(|(what, path, content)| view! {
                <h3>{what}" "<code>{path}</code></h3>
                <pre class="file">{content}</pre>
            }).collect_view()}
        </div>
    }
}
