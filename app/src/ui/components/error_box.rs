use leptos::prelude::*;

use crate::error::AppError;

#[component]
pub fn ErrorBox(error: AppError) -> impl IntoView {
    let title = match &error {
        AppError::BadInput(_) => "Invalid input",
        AppError::NotFound(_) => "Not found",
        AppError::Unauthorized(_) => "Not signed in",
        AppError::Forbidden(_) => "Not allowed",
        AppError::Cluster(_) => "The cluster configuration does not evaluate",
        AppError::Unavailable(_) => "A host did not answer",
        AppError::Internal | AppError::Transport(_) => "Error",
    };
    view! {
        <div class="error" role="alert">
            <strong>{title}</strong>
            <pre>{error.to_string()}</pre>
        </div>
    }
}
