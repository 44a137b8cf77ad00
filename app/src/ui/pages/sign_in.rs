use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The sign-in form: a plain POST to `/sign-in`, so it works with and without JavaScript.
/// The server answers with a redirect: to the machines page, or back here saying why.
#[component]
pub fn SignInPage() -> impl IntoView {
    let failed = use_query_map().read_untracked().get("failed");
    // one message for wrong passwords and unknown names: it must not tell which exist
    let message = failed.map(|f| match f.as_str() {
        "limited" => "Too many failed sign-ins; try again later.",
        "internal" => "internal error (see the server log)",
        _ => "Wrong name or password.",
    });
    view! {
        <Title text="Sign in"/>
        <h1>"Sign in"</h1>
        {message.map(|m| view! { <p class="error" role="alert" data-testid="sign-in-error">{m}</p> })}
        <form method="post" action="/sign-in" class="stack" data-testid="sign-in">
            <label>"Name " <input type="text" name="name" autocomplete="username" required/></label>
            <label>"Password " <input type="password" name="password" autocomplete="current-password" required/></label>
            <button type="submit">"Sign in"</button>
        </form>
    }
}
