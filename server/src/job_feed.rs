//! `GET /jobs/<id>/events?after=<seq>`: the job's events after `after` (or the
//! `Last-Event-ID` a reconnecting browser sends) as server-sent events, one `message` per
//! event (its line, as JSON, with the sequence number as id), then an `end` event (data
//! `ended`: browsers drop events without data) once the job has finished and every event
//! was sent. Readers only. Works from the database, so it follows a job whichever instance
//! runs it.
//!
//! Live events come from one feed per job and instance, however many viewers follow it:
//! the feed reads the job's new events from the store every [`POLL`] (so events written
//! by a runner on another instance arrive too), serialises each once and broadcasts
//! them. A viewer subscribes before it reads the stored events, then takes from the feed
//! what it has not seen; one that missed a part (it subscribed as the feed started, or
//! fell behind) reads it from the store. Event numbers count from 1 per job without gaps,
//! which is how a viewer sees that it missed some. The feed ends when the job has ended
//! (its last broadcast says so) or nobody follows it any more.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::services::jobs::event_view;
use app::services::{Caller, Permission};
use axum::Router;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use carrier_storage::{JobEvent, JobId, Store};
use futures::StreamExt;
use tokio::sync::broadcast;

/// How often a feed looks for new events.
const POLL: Duration = Duration::from_millis(250);
/// Events a store read returns at most.
const PAGE: i64 = 200;

/// Events a feed read at once, each `(number, JSON of its view)`, and whether the job
/// had ended before they were read (then they are its last).
struct Batch {
    events: Vec<(i64, String)>,
    finished: bool,
}

/// The live feeds of this instance, by job.
#[derive(Clone)]
pub struct Feeds {
    store: Store,
    live: Arc<Mutex<HashMap<i64, broadcast::Sender<Arc<Batch>>>>>,
}

pub fn router(store: Store) -> Router {
    let feeds = Feeds { store, live: Arc::default() };
    Router::new().route("/jobs/{id}/events", get(events)).with_state(feeds)
}

#[derive(serde::Deserialize)]
struct After {
    after: Option<i64>,
}

async fn events(
    State(feeds): State<Feeds>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(after): Query<After>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = caller.require(Permission::ReadInventory) {
        return (app::services::status_of(&e), e.to_string()).into_response();
    }
    let Ok(id) = id.parse::<i64>() else {
        return (StatusCode::NOT_FOUND, format!("no job '{id}'")).into_response();
    };
    match feeds.store.job(JobId(id)).await {
        Ok(Some(_)) => {}
        Ok(None) => return (StatusCode::NOT_FOUND, format!("no job {id}")).into_response(),
        Err(e) => {
            tracing::error!("{e}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let from = resumed.or(after.after).unwrap_or(0).max(0);
    let viewer = Viewer::new(feeds, JobId(id), from);
    let stream = futures::stream::unfold(viewer, Viewer::next).flatten();
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

impl Feeds {
    /// A receiver of `job`'s feed, started if none runs.
    fn subscribe(&self, job: JobId) -> broadcast::Receiver<Arc<Batch>> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(feed) = live.get(&job.0) {
            return feed.subscribe();
        }
        let (feed, receiver) = broadcast::channel(64);
        live.insert(job.0, feed.clone());
        tokio::spawn(self.clone().run(job, feed));
        receiver
    }

    /// Ends `feed` (under the lock a new viewer takes to subscribe): if nobody follows it,
    /// or always once the job has ended. Returns whether it ended.
    fn end(&self, job: JobId, feed: &broadcast::Sender<Arc<Batch>>, always: bool) -> bool {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if !always && feed.receiver_count() > 0 {
            return false;
        }
        if live.get(&job.0).is_some_and(|f| f.same_channel(feed)) {
            live.remove(&job.0);
        }
        true
    }

    /// Reads `job`'s new events and broadcasts them until the job has ended or nobody
    /// follows it. Starts after the events stored now: viewers read those themselves.
    async fn run(self, job: JobId, feed: broadcast::Sender<Arc<Batch>>) {
        let mut after = self.store.append_job_events(job, &[]).await.unwrap_or(0);
        loop {
            if self.end(job, &feed, false) {
                return;
            }
            // whether the job had ended before reading: then no event can follow
            let finished = match self.store.job(job).await {
                Ok(Some(j)) => j.state.is_finished(),
                Ok(None) => true,
                Err(e) => {
                    tracing::warn!("following job {}: {e}", job.0);
                    false
                }
            };
            let mut events = vec![];
            loop {
                let page = self.store.job_events(job, after, PAGE).await.unwrap_or_default();
                let full = page.len() as i64 == PAGE;
                for e in page {
                    after = e.seq;
                    events.push(serialised(e));
                }
                if !full {
                    break;
                }
            }
            if !events.is_empty() || finished {
                let _ = feed.send(Arc::new(Batch { events, finished }));
            }
            if finished {
                self.end(job, &feed, true);
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn serialised(e: JobEvent) -> (i64, String) {
    let seq = e.seq;
    (seq, serde_json::to_string(&event_view(e)).unwrap_or_default())
}

fn sse((seq, data): &(i64, String)) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default().id(seq.to_string()).data(data))
}

/// One viewer of a job: the last event number it was sent, and whether it must read the
/// store before taking from the feed.
struct Viewer {
    feeds: Feeds,
    job: JobId,
    seen: i64,
    feed: Option<broadcast::Receiver<Arc<Batch>>>,
    /// At the start, after a gap, after falling behind: the store has what comes next.
    catch_up: bool,
    /// The job has ended: what is left in the store, then `end`.
    ending: bool,
    done: bool,
}

type Events = futures::stream::Iter<std::vec::IntoIter<Result<SseEvent, Infallible>>>;

fn send(events: Vec<Result<SseEvent, Infallible>>, viewer: Viewer) -> Option<(Events, Viewer)> {
    Some((futures::stream::iter(events), viewer))
}

impl Viewer {
    fn new(feeds: Feeds, job: JobId, after: i64) -> Viewer {
        Viewer { feeds, job, seen: after, feed: None, catch_up: true, ending: false, done: false }
    }

    /// The next events to send (possibly none), or `None` once `end` was sent.
    async fn next(mut self) -> Option<(Events, Viewer)> {
        if self.done {
            return None;
        }
        if self.feed.is_none() && !self.ending {
            // subscribed before reading the store: nothing falls between the two
            self.feed = Some(self.feeds.subscribe(self.job));
            self.catch_up = true;
        }
        if self.catch_up || self.ending {
            let page = self.stored().await;
            if !page.is_empty() {
                return send(page, self);
            }
            self.catch_up = false;
        }
        if self.ending {
            self.done = true;
            return send(vec![Ok(SseEvent::default().event("end").data("ended"))], self);
        }
        let feed = self.feed.as_mut()?;
        match feed.recv().await {
            Ok(batch) => {
                let mut out = vec![];
                if batch.events.first().is_some_and(|(seq, _)| *seq > self.seen + 1) {
                    self.catch_up = true;
                } else {
                    out =
                        batch.events.iter().filter(|(seq, _)| *seq > self.seen).map(sse).collect();
                    self.seen =
                        batch.events.last().map_or(self.seen, |(seq, _)| self.seen.max(*seq));
                }
                self.ending = batch.finished;
                send(out, self)
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                self.catch_up = true;
                send(vec![], self)
            }
            Err(broadcast::error::RecvError::Closed) => {
                // the feed ended before telling this viewer: the job ended, or nobody
                // followed it for a moment; the store says which
                self.feed = None;
                self.ending = match self.feeds.store.job(self.job).await {
                    Ok(Some(j)) => j.state.is_finished(),
                    Ok(None) | Err(_) => true,
                };
                send(vec![], self)
            }
        }
    }

    /// The stored events after the last one sent, at most a page.
    async fn stored(&mut self) -> Vec<Result<SseEvent, Infallible>> {
        let page = self.feeds.store.job_events(self.job, self.seen, PAGE).await.unwrap_or_default();
        self.seen = page.last().map_or(self.seen, |e| e.seq);
        page.into_iter().map(|e| sse(&serialised(e))).collect()
    }
}
