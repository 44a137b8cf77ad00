//! The read pages as JSON: a `GET` of `/machines`, `/machines/<name>`, `/carriers`,
//! `/carriers/<name>`, `/jobs`, `/jobs/<id>`, `/status` or `/history` whose
//! `Accept` header names `application/json` is answered with the data the page shows, from
//! the same service call and with the same authorisation as the page's server function
//! (docs/api.md). Runs after the caller is resolved; every other request passes through.

use app::error::AppError;
use app::model::{MachineQuery, StatusQuery};
use app::services::{AppState, Caller, Permission, carriers, history, jobs, status, status_of};
use axum::extract::{Query, Request, State};
use axum::http::header::{ACCEPT, HeaderValue, VARY};
use axum::http::{HeaderMap, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

/// A read page, as its JSON answer needs it.
#[derive(Debug, PartialEq)]
enum Page {
    Machines(MachineQuery),
    Machine(String),
    Carriers,
    Carrier(String),
    Jobs(JobsQuery),
    Job(i64),
    Status(StatusQuery),
    History(HistoryQuery),
}

/// The filters of the history page.
#[derive(Debug, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
struct HistoryQuery {
    machine: String,
    user: String,
    outcome: String,
}

/// The filters of the jobs page.
#[derive(Debug, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
struct JobsQuery {
    machine: String,
    user: String,
    state: String,
}

/// Answers the read pages' JSON requests; tells caches that those pages vary by `Accept`.
pub async fn json_pages(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let page = page(request.uri()).filter(|_| request.method() == Method::GET);
    let Some(page) = page else {
        return next.run(request).await;
    };
    let mut response = if wants_json(request.headers()) {
        let caller = request.extensions().get::<Caller>().cloned();
        match answer(&state, caller, page).await {
            Ok(value) => Json(value).into_response(),
            Err(e) => error_response(&e),
        }
    } else {
        next.run(request).await
    };
    response.headers_mut().append(VARY, HeaderValue::from_static("accept"));
    response
}

/// Whether the client asked for JSON: a media range of `Accept` is `application/json`.
/// Browsers never send it when they load a page.
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |range| {
            range.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json")
        },
    )
}

/// An error as a JSON client gets it: its status and `{"error": <message>}`; the message
/// is an `AppError`'s, safe to show.
pub fn error_response(e: &AppError) -> Response {
    (status_of(e), Json(json!({ "error": e.to_string() }))).into_response()
}

/// The read page a path names; a query that does not parse is the machines page with an
/// unusable query (answered 400 by `answer`).
fn page(uri: &Uri) -> Option<Result<Page, AppError>> {
    let path = uri.path();
    if path == "/machines" {
        return Some(query(uri).map(Page::Machines));
    }
    match path {
        "/carriers" => return Some(Ok(Page::Carriers)),
        "/status" => return Some(query(uri).map(Page::Status)),
        "/jobs" => return Some(query(uri).map(Page::Jobs)),
        "/history" => return Some(query(uri).map(Page::History)),
        _ => {}
    }
    if let Some(id) = path.strip_prefix("/jobs/").filter(|i| !i.is_empty() && !i.contains('/')) {
        let id = id.parse().map_err(|_| AppError::NotFound(format!("job '{id}'")));
        return Some(id.map(Page::Job));
    }
    let (name, page): (_, fn(String) -> Page) = match path.strip_prefix("/machines/") {
        Some(name) => (name, Page::Machine),
        None => (path.strip_prefix("/carriers/")?, Page::Carrier),
    };
    let name = Some(name).filter(|n| !n.is_empty())?;
    Some(
        urlencoding::decode(name)
            .map(|n| page(n.into_owned()))
            .map_err(|_| AppError::BadInput(format!("the name '{name}' is not UTF-8"))),
    )
}

/// A page's filters from the query string.
fn query<Q: serde::de::DeserializeOwned>(uri: &Uri) -> Result<Q, AppError> {
    Query::<Q>::try_from_uri(uri)
        .map(|Query(q)| q)
        .map_err(|e| AppError::BadInput(format!("the query string: {}", e.body_text())))
}

async fn answer(
    state: &AppState,
    caller: Option<Caller>,
    page: Result<Page, AppError>,
) -> Result<serde_json::Value, AppError> {
    let caller = caller.ok_or_else(|| {
        tracing::error!("no caller resolved for this request (the router lacks its layer)");
        AppError::Internal
    })?;
    caller.require(Permission::ReadInventory)?;
    let inventory = &state.inventory;
    let value = match page? {
        Page::Machines(query) => serde_json::to_value(inventory.machines(&caller, &query).await?),
        Page::Machine(name) => serde_json::to_value(inventory.machine(&caller, &name).await?),
        Page::Carriers => serde_json::to_value(inventory.carriers().await?),
        Page::Carrier(name) => serde_json::to_value(carriers::detail(state, &caller, &name).await?),
        Page::Jobs(q) => {
            serde_json::to_value(jobs::list(state, &q.machine, &q.user, &q.state).await?)
        }
        Page::Job(id) => serde_json::to_value(jobs::detail(state, &caller, id).await?),
        Page::Status(q) => serde_json::to_value(status::page(state, &q).await?),
        Page::History(q) => {
            serde_json::to_value(history::list(state, &q.machine, &q.user, &q.outcome).await?)
        }
    };
    value.map_err(|e| {
        tracing::error!("serialising a JSON answer: {e}");
        AppError::Internal
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn json_is_asked_for_by_its_media_range() {
        assert!(wants_json(&accept("application/json")));
        assert!(wants_json(&accept("text/plain;q=0.5, Application/JSON; q=1")));
        assert!(!wants_json(&accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(!wants_json(&accept("application/json-seq")));
        assert!(!wants_json(&HeaderMap::new()));
    }

    #[test]
    fn pages_are_read_from_the_path_and_query() {
        let page = |uri: &str| page(&uri.parse().unwrap());
        assert_eq!(page("/carriers"), Some(Ok(Page::Carriers)));
        assert_eq!(
            page("/machines/pxe-server%23prg%2Fnode1"),
            Some(Ok(Page::Machine("pxe-server#prg/node1".into())))
        );
        let Some(Ok(Page::Machines(q))) = page("/machines?pattern=node*&page=2") else {
            panic!("the machines page");
        };
        assert_eq!((q.pattern.as_str(), q.page.as_str(), q.tags.as_str()), ("node*", "2", ""));
        assert_eq!(page("/machines/"), None);
        assert_eq!(page("/account"), None);
        assert!(matches!(page("/machines/%FF"), Some(Err(AppError::BadInput(_)))));
        assert_eq!(page("/carriers/pxe%2Fa"), Some(Ok(Page::Carrier("pxe/a".into()))));
        assert_eq!(page("/status"), Some(Ok(Page::Status(StatusQuery::default()))));
        assert_eq!(page("/jobs/12"), Some(Ok(Page::Job(12))));
        assert!(matches!(page("/jobs/x"), Some(Err(AppError::NotFound(_)))));
        assert_eq!(page("/jobs/12/events"), None, "the event stream is its own route");
        let Some(Ok(Page::Jobs(q))) = page("/jobs?state=failed&machine=n1") else {
            panic!("the jobs page");
        };
        assert_eq!((q.state.as_str(), q.machine.as_str()), ("failed", "n1"));
    }
}
