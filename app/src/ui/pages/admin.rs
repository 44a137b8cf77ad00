use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::serverfns::admin::{
    RevokeUserSessions, SetUserDisabled, SetUserRole, list_audit, list_users,
};
use crate::ui::components::ErrorBox;

/// Every account: disable or enable it, change its role and scope, sign it out everywhere.
/// Accounts are added with `carrier user add`.
#[component]
pub fn AdminUsersPage() -> impl IntoView {
    let disable = ServerAction::<SetUserDisabled>::new();
    let role = ServerAction::<SetUserRole>::new();
    let sign_out = ServerAction::<RevokeUserSessions>::new();
    let users = Resource::new(
        move || (disable.version().get(), role.version().get(), sign_out.version().get()),
        |_| list_users(),
    );
    let failure = move || {
        let errors = [
            disable.value().get().and_then(Result::err),
            role.value().get().and_then(Result::err),
            sign_out.value().get().and_then(Result::err),
        ];
        errors.into_iter().flatten().next().map(|error| view! { <ErrorBox error/> })
    };
    view! {
        <Title text="Users"/>
        <h1>"Users"</h1>
        <p class="count">"Add accounts with " <code>"carrier user add NAME --role ROLE"</code> "."</p>
        {failure}
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match users.await {
                    Ok(list) => view! {
                        <table data-testid="users">
                            <thead><tr><th>"Name"</th><th>"Role and scope"</th><th>"Created"</th><th>"State"</th><th></th></tr></thead>
                            <tbody>
                            {list.into_iter().map(|u| {
                                let option = |value: &'static str, current: &str| {
                                    view! { <option value=value selected={value == current}>{value}</option> }
                                };
                                let names = [u.name.clone(), u.name.clone(), u.name.clone()];
                                let [for_role, for_disable, for_sign_out] = names;
                                let roles = ["viewer", "deployer", "admin"].map(|r| option(r, &u.role));
                                let (scope, disabled) = (u.scope.join(" "), u.disabled);
                                view! {
                                    <tr data-user=u.name.clone()>
                                        <td>{u.name.clone()}</td>
                                        <td>
                                            <ActionForm action=role attr:class="inline">
                                                <input type="hidden" name="name" value=for_role/>
                                                <select name="role">
                                                    {roles}
                                                </select>
                                                <input type="text" name="scope" value=scope placeholder="every machine"/>
                                                <button type="submit">"Change"</button>
                                            </ActionForm>
                                        </td>
                                        <td>{u.created_at}</td>
                                        <td>{if disabled { "disabled" } else { "enabled" }}</td>
                                        <td>
                                            <ActionForm action=disable attr:class="inline">
                                                <input type="hidden" name="name" value=for_disable/>
                                                <input type="hidden" name="disabled" value={(!disabled).to_string()}/>
                                                <button type="submit">{if disabled { "Enable" } else { "Disable" }}</button>
                                            </ActionForm>
                                            <ActionForm action=sign_out attr:class="inline">
                                                <input type="hidden" name="name" value=for_sign_out/>
                                                <button type="submit" data-testid="revoke-sessions">"Sign out everywhere"</button>
                                            </ActionForm>
                                        </td>
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
    }
}

/// The audit log, newest first, filtered by actor, action and time (a plain GET form).
#[component]
pub fn AdminAuditPage() -> impl IntoView {
    let query_map = use_query_map();
    let filter = Memo::new(move |_| {
        let q = query_map.read();
        let field = |k| q.get(k).unwrap_or_default();
        (field("actor"), field("action"), field("since"))
    });
    let entries = Resource::new(
        move || filter.get(),
        |(actor, action, since)| list_audit(actor, action, since),
    );
    let (actor, action, since) = filter.get_untracked();
    view! {
        <Title text="Audit log"/>
        <h1>"Audit log"</h1>
        <form method="get" action="/admin/audit" class="filter" data-testid="audit-filter">
            <label>"Actor " <input type="text" name="actor" value=actor/></label>
            <label>"Action " <input type="text" name="action" value=action placeholder="sign-in, token.create"/></label>
            <label>"Since " <input type="text" name="since" value=since placeholder="2026-12-03"/></label>
            <button type="submit">"Filter"</button>
        </form>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match entries.await {
                    Ok(list) => view! {
                        <table data-testid="audit">
                            <thead><tr><th>"When"</th><th>"Who"</th><th>"From"</th><th>"Action"</th><th>"Target"</th><th>"Outcome"</th><th>"Details"</th></tr></thead>
                            <tbody>
                            {list.into_iter().map(|e| view! {
                                <tr data-audit=e.id.to_string()>
                                    <td>{e.at}</td><td>{e.actor}</td><td>{e.address.unwrap_or_default()}</td>
                                    <td>{e.action}</td><td>{e.target.unwrap_or_default()}</td>
                                    <td>{e.outcome}</td><td><code>{e.details}</code></td>
                                </tr>
                            }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
    }
}
