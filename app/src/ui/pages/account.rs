use leptos::prelude::*;
use leptos_meta::Title;

use crate::model::{SessionView, TokenView};
use crate::serverfns::account::{
    CreateToken, RevokeSession, RevokeToken, list_my_sessions, list_my_tokens,
};
use crate::ui::components::ErrorBox;

/// The caller's own API tokens (create, shown once; list; revoke) and sessions.
#[component]
pub fn AccountPage() -> impl IntoView {
    let lists = Resource::new(
        || (),
        |_| async {
            Ok::<_, crate::error::AppError>((list_my_tokens().await?, list_my_sessions().await?))
        },
    );
    view! {
        <Title text="Account"/>
        <h1>"Account"</h1>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match lists.await {
                    Ok((tokens, sessions)) => view! { <Account tokens sessions/> }.into_any(),
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// The account's forms as an island: a new token's secret is shown in place, once (without
/// JavaScript the post answers with a redirect, and the secret has nowhere to go); the
/// lists are read again after each change.
#[island]
fn Account(tokens: Vec<TokenView>, sessions: Vec<SessionView>) -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let end = ServerAction::<RevokeSession>::new();
    let (tokens, sessions) = (RwSignal::new(tokens), RwSignal::new(sessions));
    Effect::watch(
        move || (create.version().get(), revoke.version().get(), end.version().get()),
        move |_, _, _| {
            leptos::task::spawn_local(async move {
                if let Ok(list) = list_my_tokens().await {
                    tokens.set(list);
                }
                if let Ok(list) = list_my_sessions().await {
                    sessions.set(list);
                }
            })
        },
        false,
    );
    view! {
        <h2>"API tokens"</h2>
        <ActionForm action=create attr:class="stack" attr:data-testid="create-token">
            <label>"Name " <input type="text" name="name" required/></label>
            <label>"Rights "
                <select name="rights">
                    <option value="viewer">"viewer"</option>
                    <option value="deployer">"deployer"</option>
                    <option value="admin">"admin"</option>
                </select>
            </label>
            <label>"Scope (optional: patterns, tag:<tag>, <carrier>#*) " <input type="text" name="scope"/></label>
            <label>"Days until it expires " <input type="number" name="days" value="90" min="1" max="365"/></label>
            <button type="submit">"Create token"</button>
        </ActionForm>
        {move || create.value().get().map(|result| match result {
            Ok(secret) => view! {
                <p>"The new token, shown only now (use: Authorization: Bearer …):"</p>
                <p class="secret" data-testid="new-token">{secret}</p>
            }.into_any(),
            Err(error) => view! { <ErrorBox error/> }.into_any(),
        })}
        {move || revoke.value().get().and_then(Result::err).map(|error| view! { <ErrorBox error/> })}
        {move || view! { <Tokens list=tokens.get() revoke/> }}
        <h2>"Sessions"</h2>
        {move || view! { <Sessions list=sessions.get() end/> }}
    }
}

#[component]
fn Tokens(list: Vec<TokenView>, revoke: ServerAction<RevokeToken>) -> impl IntoView {
    view! {
        <table data-testid="tokens">
            <thead><tr><th>"Name"</th><th>"Rights"</th><th>"Scope"</th><th>"Expires"</th><th>"State"</th><th></th></tr></thead>
            <tbody>
            {list.into_iter().map(|t| {
                let state = match (&t.revoked_at, &t.last_used_at) {
                    (Some(at), _) => format!("revoked {at}"),
                    (None, Some(at)) => format!("last used {at}"),
                    (None, None) => "never used".into(),
                };
                let active = t.revoked_at.is_none();
                let name = t.name.clone();
                view! {
                    <tr data-token=t.name.clone()>
                        <td>{t.name.clone()}</td><td>{t.rights}</td><td>{t.scope.join(" ")}</td>
                        <td>{t.expires_at}</td><td>{state}</td>
                        <td>{active.then(|| view! {
                            <ActionForm action=revoke attr:class="inline">
                                <input type="hidden" name="name" value=name/>
                                <button type="submit">"Revoke"</button>
                            </ActionForm>
                        })}</td>
                    </tr>
                }
            }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn Sessions(list: Vec<SessionView>, end: ServerAction<RevokeSession>) -> impl IntoView {
    view! {
        <table data-testid="sessions">
            <thead><tr><th>"Started"</th><th>"Expires"</th><th>"From"</th><th>"State"</th><th></th></tr></thead>
            <tbody>
            {list.into_iter().map(|s| {
                let state = match (&s.revoked_at, s.current) {
                    (Some(at), _) => format!("ended {at}"),
                    (None, true) => "this session".into(),
                    (None, false) => "active".into(),
                };
                let active = s.revoked_at.is_none();
                let id = s.id.clone();
                view! {
                    <tr>
                        <td>{s.created_at}</td><td>{s.expires_at}</td>
                        <td>{s.address.unwrap_or_default()}</td><td>{state}</td>
                        <td>{active.then(|| view! {
                            <ActionForm action=end attr:class="inline">
                                <input type="hidden" name="id" value=id/>
                                <button type="submit">"End"</button>
                            </ActionForm>
                        })}</td>
                    </tr>
                }
            }).collect_view()}
            </tbody>
        </table>
    }
}
