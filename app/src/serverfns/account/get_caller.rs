use leptos::prelude::*;

use crate::error::AppError;
use crate::model::CallerView;

/// Who is asking (for the header): anyone may ask, the answer is about themselves.
#[server(prefix = "/api", endpoint = "get_caller")]
pub async fn get_caller() -> Result<CallerView, AppError> {
    use crate::services::{accounts, state_and_caller};

    let (_, caller) = state_and_caller()?;
    Ok(accounts::caller_view(&caller))
}
