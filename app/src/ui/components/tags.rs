use leptos::prelude::*;

#[component]
pub fn Tags(tags: Vec<String>) -> impl IntoView {
    view! {
        <span class="tags">
            {tags.into_iter().map(|t| view! { <span class="tag">{t}</span> }).collect_view()}
        </span>
    }
}
