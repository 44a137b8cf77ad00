//! The job queue against both backends: enqueueing (refusing or queueing behind busy
//! machines), claiming with machine locks, events, cancelling, ending, the interruption of
//! jobs of restarted and dead serve instances, listing; and concurrent claims from two
//! stores (two pools, as two serve instances) over one database.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carrier_storage::{
    GitState, IfBusy, JobFilter, JobId, JobKind, JobState, NewJob, NewRun, RunKind, Store,
    StoreError,
};
use serde_json::json;

fn new_job(kind: JobKind, by: &str, machines: &[&str]) -> NewJob {
    NewJob {
        kind,
        requested_by: by.into(),
        request: json!({"selection": {"pattern": machines.join(",")}, "action": "switch"}),
        summary: format!("{} switch {}", kind.as_str(), machines.join(", ")),
        machines: machines.iter().map(|m| m.to_string()).collect(),
    }
}

fn deploy(machines: &[&str]) -> NewJob {
    new_job(JobKind::Deploy, "alice", machines)
}

/// The machine locks held: machine -> job.
async fn locks(url: &str) -> BTreeMap<String, i64> {
    let pool = pool(url).await;
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT machine, job_id FROM machine_locks").fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows.into_iter().collect()
}

fn held(pairs: &[(&str, JobId)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(m, j)| (m.to_string(), j.0)).collect()
}

async fn a_job_is_queued_claimed_and_finished(url: &str) {
    let store = Store::open(url).await.unwrap();
    let id = store.enqueue_job(&deploy(&["node2", "node1"]), IfBusy::Refuse).await.unwrap();
    let job = store.job(id).await.unwrap().unwrap();
    assert_eq!((job.id, job.kind, job.state), (id, JobKind::Deploy, JobState::Queued));
    assert_eq!(job.requested_by, "alice");
    assert_eq!(job.request, json!({"selection": {"pattern": "node2,node1"}, "action": "switch"}));
    assert_eq!(job.summary, "deploy switch node2, node1");
    assert_eq!(job.machines, ["node1", "node2"], "in name order");
    assert!(jiff::Timestamp::from_str(&job.created_at).is_ok(), "{}", job.created_at);
    assert_eq!((job.started_at, job.finished_at, job.instance), (None, None, None));
    assert!(!job.cancel_requested);

    let claimed = store.claim_job("serve-a").await.unwrap().expect("the queued job");
    assert_eq!((claimed.id, claimed.state), (id, JobState::Running));
    assert_eq!(claimed.instance.as_deref(), Some("serve-a"));
    assert!(claimed.started_at.is_some());
    assert_eq!(claimed.machines, ["node1", "node2"]);
    assert_eq!(locks(url).await, held(&[("node1", id), ("node2", id)]));
    assert!(store.claim_job("serve-a").await.unwrap().is_none(), "nothing else is queued");

    let run = store
        .start_run(&NewRun {
            kind: RunKind::Deploy,
            user: "alice".into(),
            host: "serve-a".into(),
            selection: json!({}),
            action: Some("switch".into()),
            options: json!({}),
            git: Some(GitState { revision: None, dirty: false }),
            generation: None,
            machines: vec!["node1".into(), "node2".into()],
        })
        .await
        .unwrap();
    store.set_job_run(id, run).await.unwrap();
    let report = json!({"machines": {"node1": "deployed", "node2": "deployed"}});
    store.finish_job(id, JobState::Succeeded, None, Some(&report)).await.unwrap();
    assert!(locks(url).await.is_empty(), "its machines are released");

    let job = store.job(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!((job.run_id, job.report, job.error), (Some(run), Some(report), None));
    assert!(job.finished_at.is_some());
    let err = store.finish_job(id, JobState::Failed, Some("again"), None).await.unwrap_err();
    assert!(matches!(err, StoreError::JobFinished(j) if j == id), "{err:?}");
    assert_eq!(err.to_string(), format!("job #{id} has ended already"));
    assert!(matches!(
        store.finish_job(JobId(999), JobState::Failed, None, None).await.unwrap_err(),
        StoreError::NoJob(JobId(999))
    ));
    assert!(store.job(JobId(999)).await.unwrap().is_none());
    assert!(matches!(
        store.set_job_run(JobId(999), run).await.unwrap_err(),
        StoreError::NoJob(JobId(999))
    ));
}
on_both_backends!(a_job_is_queued_claimed_and_finished);

async fn a_queued_job_ends_only_as_cancelled(url: &str) {
    let store = Store::open(url).await.unwrap();
    let id = store.enqueue_job(&deploy(&["node1"]), IfBusy::Queue).await.unwrap();
    let err = store.finish_job(id, JobState::Succeeded, None, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::JobTransition { from: JobState::Queued, to: JobState::Succeeded, .. }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), format!("job #{id} is queued: it cannot end as succeeded"));
    store.claim_job("serve-a").await.unwrap().unwrap();
    let err = store.finish_job(id, JobState::Queued, None, None).await.unwrap_err();
    assert!(matches!(err, StoreError::JobTransition { from: JobState::Running, .. }), "{err:?}");

    let queued = store.enqueue_job(&deploy(&["node1"]), IfBusy::Queue).await.unwrap();
    store.finish_job(queued, JobState::Cancelled, None, None).await.unwrap();
    assert_eq!(store.job(queued).await.unwrap().unwrap().state, JobState::Cancelled);
    assert_eq!(locks(url).await, held(&[("node1", id)]), "the running job keeps its machine");
}
on_both_backends!(a_queued_job_ends_only_as_cancelled);

async fn refuse_names_the_job_holding_the_machine(url: &str) {
    let store = Store::open(url).await.unwrap();
    let running = store.enqueue_job(&deploy(&["node1", "node3"]), IfBusy::Refuse).await.unwrap();
    store.claim_job("serve-a").await.unwrap().unwrap();
    let queued = store.enqueue_job(&deploy(&["node2", "node3"]), IfBusy::Queue).await.unwrap();

    let err = store.enqueue_job(&deploy(&["node2", "node3"]), IfBusy::Refuse).await.unwrap_err();
    match &err {
        StoreError::Busy { machine, job, state } => {
            assert_eq!((machine.as_str(), *job, *state), ("node3", running, JobState::Running))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "machine 'node3' is in job #{running} (running); wait for it to end, cancel it, \
             or queue this job behind it"
        )
    );
    let err = store.enqueue_job(&deploy(&["node2"]), IfBusy::Refuse).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Busy { machine, job, state: JobState::Queued }
            if machine == "node2" && *job == queued),
        "{err:?}"
    );
    let all = store.jobs(&JobFilter::default(), 100).await.unwrap();
    assert_eq!(all.len(), 2, "a refused job is not stored");

    // what the deploy form shows as busy: the machines of the queued and running jobs
    let busy = store.busy_machines().await.unwrap();
    let expected = [("node1", running), ("node3", running), ("node2", queued), ("node3", queued)];
    assert_eq!(busy, expected.map(|(m, j)| (m.to_string(), j)));

    // a machine of no queued or running job is free
    store.enqueue_job(&deploy(&["node4"]), IfBusy::Refuse).await.unwrap();

    let err = store.enqueue_job(&deploy(&[]), IfBusy::Queue).await.unwrap_err();
    assert_eq!(err.to_string(), "a job needs at least one machine");
    let err = store.enqueue_job(&deploy(&["node5", "node6", "node5"]), IfBusy::Queue).await;
    assert_eq!(err.unwrap_err().to_string(), "machine 'node5' is named twice in the job");
}
on_both_backends!(refuse_names_the_job_holding_the_machine);

async fn a_queued_job_of_the_same_kind_and_machines_is_reused(url: &str) {
    let store = Store::open(url).await.unwrap();
    let rebuild = |m: &[&str]| new_job(JobKind::NetbootRebuild, "alice", m);
    let (running, reused) = store.enqueue_job_coalesced(&rebuild(&["pxe"])).await.unwrap();
    assert!(!reused);
    store.claim_job("serve-a").await.unwrap().unwrap();
    // a running one is not reused: what it reads may be older than this request
    let (queued, reused) = store.enqueue_job_coalesced(&rebuild(&["pxe"])).await.unwrap();
    assert!(!reused && queued != running);
    // two at once while that one is queued: both get it
    let (one, two) = (rebuild(&["pxe"]), rebuild(&["pxe"]));
    let (a, b) = tokio::join!(store.enqueue_job_coalesced(&one), store.enqueue_job_coalesced(&two));
    assert_eq!((a.unwrap(), b.unwrap()), ((queued, true), (queued, true)));
    // another kind, or other machines, are jobs of their own
    let (deploy_id, reused) = store.enqueue_job_coalesced(&deploy(&["pxe"])).await.unwrap();
    assert!(!reused && deploy_id != queued);
    let (other, reused) = store.enqueue_job_coalesced(&rebuild(&["pxe", "pxe2"])).await.unwrap();
    assert!(!reused && other != queued);
    let (pxe2, reused) = store.enqueue_job_coalesced(&rebuild(&["pxe2"])).await.unwrap();
    assert!(!reused && pxe2 != other, "a job on more machines is not this one");
    // cancelled: no longer queued, a new request gets a new job
    store.request_cancel(queued).await.unwrap();
    let (next, reused) = store.enqueue_job_coalesced(&rebuild(&["pxe"])).await.unwrap();
    assert!(!reused && next > queued);
    let all = store.jobs(&JobFilter::default(), 100).await.unwrap();
    assert_eq!(all.len(), 6, "{all:?}");
}
on_both_backends!(a_queued_job_of_the_same_kind_and_machines_is_reused);

async fn a_queued_job_waits_for_the_jobs_before_it_on_its_machines(url: &str) {
    let store = Store::open(url).await.unwrap();
    let first = store.enqueue_job(&deploy(&["node1"]), IfBusy::Refuse).await.unwrap();
    assert_eq!(store.claim_job("serve-a").await.unwrap().unwrap().id, first);
    let second = store.enqueue_job(&deploy(&["node1", "node2"]), IfBusy::Queue).await.unwrap();
    // a later job on node2 alone waits behind the second, although node2 is free
    let third = store.enqueue_job(&deploy(&["node2"]), IfBusy::Queue).await.unwrap();
    assert!(store.claim_job("serve-a").await.unwrap().is_none());
    assert!(store.claim_job("serve-b").await.unwrap().is_none());
    assert_eq!(store.job(second).await.unwrap().unwrap().state, JobState::Queued);

    store
        .finish_job(first, JobState::Failed, Some("node1: activation failed"), None)
        .await
        .unwrap();
    assert_eq!(
        store.job(first).await.unwrap().unwrap().error.as_deref(),
        Some("node1: activation failed")
    );
    let claimed = store.claim_job("serve-b").await.unwrap().unwrap();
    assert_eq!((claimed.id, claimed.instance.as_deref()), (second, Some("serve-b")));
    assert!(store.claim_job("serve-a").await.unwrap().is_none(), "node2 is the second's");
    store.finish_job(second, JobState::Succeeded, None, None).await.unwrap();
    assert_eq!(store.claim_job("serve-a").await.unwrap().unwrap().id, third);
}
on_both_backends!(a_queued_job_waits_for_the_jobs_before_it_on_its_machines);

async fn jobs_on_other_machines_run_at_once(url: &str) {
    let store = Store::open(url).await.unwrap();
    let a = store.enqueue_job(&deploy(&["node1", "node2"]), IfBusy::Refuse).await.unwrap();
    let blocked = store.enqueue_job(&deploy(&["node2"]), IfBusy::Queue).await.unwrap();
    let b = store.enqueue_job(&deploy(&["node3"]), IfBusy::Refuse).await.unwrap();
    let c = store
        .enqueue_job(&new_job(JobKind::NetbootRebuild, "bob", &["pxe"]), IfBusy::Refuse)
        .await
        .unwrap();
    let mut claimed = Vec::new();
    while let Some(job) = store.claim_job("serve-a").await.unwrap() {
        claimed.push(job.id);
    }
    assert_eq!(claimed, [a, b, c], "oldest first, the blocked one skipped");
    assert_eq!(locks(url).await, held(&[("node1", a), ("node2", a), ("node3", b), ("pxe", c)]));
    assert_eq!(store.job(blocked).await.unwrap().unwrap().state, JobState::Queued);
}
on_both_backends!(jobs_on_other_machines_run_at_once);

async fn events_are_numbered_and_paged(url: &str) {
    let store = Store::open(url).await.unwrap();
    let id = store.enqueue_job(&deploy(&["node1"]), IfBusy::Refuse).await.unwrap();
    let other = store.enqueue_job(&deploy(&["node2"]), IfBusy::Refuse).await.unwrap();
    assert_eq!(store.append_job_events(id, &[]).await.unwrap(), 0);
    let event = |i: i64| json!({"phase": "copy", "machine": "node1", "n": i});
    assert_eq!(store.append_job_events(id, &[event(1), event(2), event(3)]).await.unwrap(), 3);
    assert_eq!(store.append_job_events(other, &[event(100)]).await.unwrap(), 1, "per job");
    assert_eq!(store.append_job_events(id, &[event(4), event(5)]).await.unwrap(), 5);
    assert_eq!(store.append_job_events(id, &[]).await.unwrap(), 5);

    let all = store.job_events(id, 0, 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(
        all.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        (1..=5).map(event).collect::<Vec<_>>()
    );
    assert!(jiff::Timestamp::from_str(&all[0].at).is_ok(), "{}", all[0].at);
    let page = store.job_events(id, 2, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    assert!(store.job_events(id, 5, 10).await.unwrap().is_empty());
    assert_eq!(store.job_events(other, 0, 10).await.unwrap()[0].event, event(100));

    let err = store.append_job_events(JobId(999), &[event(1)]).await.unwrap_err();
    assert!(matches!(err, StoreError::NoJob(JobId(999))), "{err:?}");
    assert!(matches!(store.append_job_events(JobId(999), &[]).await, Err(StoreError::NoJob(_))));
    assert!(store.job_events(JobId(999), 0, 10).await.unwrap().is_empty());
}
on_both_backends!(events_are_numbered_and_paged);

async fn a_queued_job_is_cancelled_at_once_a_running_one_is_asked(url: &str) {
    let store = Store::open(url).await.unwrap();
    let running = store.enqueue_job(&deploy(&["node1"]), IfBusy::Refuse).await.unwrap();
    store.claim_job("serve-a").await.unwrap().unwrap();
    let queued = store.enqueue_job(&deploy(&["node1"]), IfBusy::Queue).await.unwrap();

    assert_eq!(store.request_cancel(queued).await.unwrap(), JobState::Cancelled);
    let job = store.job(queued).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert!(job.finished_at.is_some() && job.started_at.is_none());

    assert!(!store.cancel_requested(running).await.unwrap());
    assert_eq!(store.request_cancel(running).await.unwrap(), JobState::Running);
    assert!(store.cancel_requested(running).await.unwrap());
    assert!(store.job(running).await.unwrap().unwrap().cancel_requested);
    store.finish_job(running, JobState::Cancelled, Some("cancelled by alice"), None).await.unwrap();
    assert!(locks(url).await.is_empty());
    assert!(store.claim_job("serve-a").await.unwrap().is_none(), "the cancelled one never runs");

    for id in [queued, running] {
        let err = store.request_cancel(id).await.unwrap_err();
        assert!(matches!(err, StoreError::JobFinished(j) if j == id), "{err:?}");
    }
    assert!(matches!(store.request_cancel(JobId(999)).await, Err(StoreError::NoJob(_))));
    assert!(matches!(store.cancel_requested(JobId(999)).await, Err(StoreError::NoJob(_))));
}
on_both_backends!(a_queued_job_is_cancelled_at_once_a_running_one_is_asked);

async fn a_restarted_instance_interrupts_its_old_jobs(url: &str) {
    let store = Store::open(url).await.unwrap();
    store.register_instance("serve-a").await.unwrap();
    store.register_instance("serve-b").await.unwrap();
    let mine = store.enqueue_job(&deploy(&["node1"]), IfBusy::Refuse).await.unwrap();
    store.claim_job("serve-a").await.unwrap().unwrap();
    let theirs = store.enqueue_job(&deploy(&["node2"]), IfBusy::Refuse).await.unwrap();
    store.claim_job("serve-b").await.unwrap().unwrap();
    let waiting = store.enqueue_job(&deploy(&["node1"]), IfBusy::Queue).await.unwrap();

    // serve-a restarts: what it ran did not finish
    store.register_instance("serve-a").await.unwrap();
    let job = store.job(mine).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Interrupted);
    assert_eq!(job.error.as_deref(), Some("the server restarted while it ran"));
    assert!(job.finished_at.is_some());
    assert_eq!(store.job(theirs).await.unwrap().unwrap().state, JobState::Running);
    assert_eq!(locks(url).await, held(&[("node2", theirs)]));
    assert_eq!(store.claim_job("serve-a").await.unwrap().unwrap().id, waiting);
    store.heartbeat("serve-a").await.unwrap();
}
on_both_backends!(a_restarted_instance_interrupts_its_old_jobs);

async fn jobs_of_a_dead_instance_are_interrupted(url: &str) {
    let store = Store::open(url).await.unwrap();
    store.register_instance("serve-a").await.unwrap();
    store.register_instance("serve-b").await.unwrap();
    let dead = store.enqueue_job(&deploy(&["node1", "node2"]), IfBusy::Refuse).await.unwrap();
    store.claim_job("serve-a").await.unwrap().unwrap();
    let alive = store.enqueue_job(&deploy(&["node3"]), IfBusy::Refuse).await.unwrap();
    store.claim_job("serve-b").await.unwrap().unwrap();
    let finished = store.enqueue_job(&deploy(&["node4"]), IfBusy::Refuse).await.unwrap();
    store.claim_job("serve-a").await.unwrap().unwrap();
    store.finish_job(finished, JobState::Succeeded, None, None).await.unwrap();

    assert!(store.interrupt_dead_instances(Duration::from_secs(60)).await.unwrap().is_empty());
    // serve-a's last heartbeat was ten minutes ago
    let pool = pool(url).await;
    sqlx::query("UPDATE instances SET heartbeat_at = $1 WHERE name = 'serve-a'")
        .bind(
            (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(10))
                .round(jiff::Unit::Second)
                .unwrap()
                .to_string(),
        )
        .execute(&pool)
        .await
        .unwrap();
    store.heartbeat("serve-b").await.unwrap();

    assert_eq!(store.interrupt_dead_instances(Duration::from_secs(60)).await.unwrap(), [dead]);
    let job = store.job(dead).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Interrupted);
    assert_eq!(job.error.as_deref(), Some("instance serve-a stopped answering while it ran"));
    assert_eq!(store.job(finished).await.unwrap().unwrap().state, JobState::Succeeded);
    assert_eq!(store.job(alive).await.unwrap().unwrap().state, JobState::Running);
    assert_eq!(locks(url).await, held(&[("node3", alive)]));
    let instances: Vec<String> =
        sqlx::query_scalar("SELECT name FROM instances").fetch_all(&pool).await.unwrap();
    assert_eq!(instances, ["serve-b"]);
    let err = store.heartbeat("serve-a").await.unwrap_err();
    assert!(matches!(&err, StoreError::UnknownInstance(n) if n == "serve-a"), "{err:?}");
    assert!(store.interrupt_dead_instances(Duration::from_secs(60)).await.unwrap().is_empty());
    // a job of the dead instance that its runner still tries to end has ended already
    let err = store.finish_job(dead, JobState::Succeeded, None, None).await.unwrap_err();
    assert!(matches!(err, StoreError::JobFinished(_)), "{err:?}");
}
on_both_backends!(jobs_of_a_dead_instance_are_interrupted);

async fn jobs_are_listed_newest_first_and_filtered(url: &str) {
    let store = Store::open(url).await.unwrap();
    let a = store
        .enqueue_job(&new_job(JobKind::Build, "alice", &["node1", "node2"]), IfBusy::Queue)
        .await
        .unwrap();
    let b = store
        .enqueue_job(&new_job(JobKind::Deploy, "bob", &["node2"]), IfBusy::Queue)
        .await
        .unwrap();
    let c = store
        .enqueue_job(&new_job(JobKind::GenerationRm, "token", &["node3"]), IfBusy::Queue)
        .await
        .unwrap();
    store.claim_job("serve-a").await.unwrap().unwrap();
    let ids = |jobs: Vec<carrier_storage::Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let list = |filter: JobFilter, limit| {
        let store = store.clone();
        async move { ids(store.jobs(&filter, limit).await.unwrap()) }
    };

    let all = store.jobs(&JobFilter::default(), 10).await.unwrap();
    assert_eq!(all.iter().map(|j| j.id).collect::<Vec<_>>(), [c, b, a]);
    assert_eq!(all[2].machines, ["node1", "node2"]);
    assert_eq!((all[0].kind, all[2].kind), (JobKind::GenerationRm, JobKind::Build));
    assert_eq!(list(JobFilter::default(), 2).await, [c, b]);
    let machine = |m: &str| JobFilter { machine: Some(m.into()), ..JobFilter::default() };
    assert_eq!(list(machine("node2"), 10).await, [b, a]);
    assert_eq!(list(machine("node2"), 1).await, [b]);
    assert_eq!(list(machine("node9"), 10).await, []);
    let by = |u: &str| JobFilter { requested_by: Some(u.into()), ..JobFilter::default() };
    assert_eq!(list(by("bob"), 10).await, [b]);
    assert_eq!(list(by("token"), 10).await, [c]);
    let state = |s| JobFilter { state: Some(s), ..JobFilter::default() };
    assert_eq!(list(state(JobState::Running), 10).await, [a]);
    assert_eq!(list(state(JobState::Queued), 10).await, [c, b]);
    let both = JobFilter {
        machine: Some("node2".into()),
        state: Some(JobState::Queued),
        requested_by: None,
    };
    let listed = store.jobs(&both, 10).await.unwrap();
    assert_eq!(listed.iter().map(|j| j.id).collect::<Vec<_>>(), [b]);
    assert_eq!(listed[0].machines, ["node2"]);
}
on_both_backends!(jobs_are_listed_newest_first_and_filtered);

/// What the racing claimers saw, shared between them.
#[derive(Default)]
struct Race {
    /// machine -> the job a claimer is running on it now
    running: HashMap<String, JobId>,
    /// every claim, in the order claimed
    claims: Vec<(JobId, Vec<String>)>,
}

/// Two serve instances, each with its own pool, claim ~20 queued jobs on overlapping
/// machines as fast as they can: every job runs exactly once, never two on one machine at
/// once, and the jobs of a machine in the order they were queued.
async fn concurrent_claims_never_share_a_machine(url: &str) {
    const JOBS: usize = 20;
    let store = Store::open(url).await.unwrap();
    let names = ["node1", "node2", "node3", "node4", "node5"];
    let mut queued = Vec::new();
    for i in 0..JOBS {
        let (a, b) = (names[i % 5], names[(i * 3 + 1) % 5]);
        let machines: Vec<&str> = if a == b { vec![a] } else { vec![a, b] };
        queued.push(store.enqueue_job(&deploy(&machines), IfBusy::Queue).await.unwrap());
    }
    let race = Arc::new(Mutex::new(Race::default()));
    let mut workers = Vec::new();
    for instance in ["serve-a", "serve-b"] {
        let (url, race) = (url.to_string(), race.clone());
        workers.push(tokio::spawn(async move {
            let store = Store::open(&url).await.unwrap();
            let pool = pool(&url).await;
            let mut ran = 0;
            loop {
                let Some(job) = store.claim_job(instance).await.unwrap() else {
                    if race.lock().unwrap().claims.len() == JOBS {
                        return ran;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                {
                    let mut race = race.lock().unwrap();
                    for m in &job.machines {
                        if let Some(other) = race.running.insert(m.clone(), job.id) {
                            panic!("{m} is in job {other} and job {} at once", job.id);
                        }
                    }
                    race.claims.push((job.id, job.machines.clone()));
                }
                for m in &job.machines {
                    let holder: i64 =
                        sqlx::query_scalar("SELECT job_id FROM machine_locks WHERE machine = $1")
                            .bind(m)
                            .fetch_one(&pool)
                            .await
                            .unwrap();
                    assert_eq!(holder, job.id.0, "{instance}: {m} locked for job {}", job.id);
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
                {
                    let mut race = race.lock().unwrap();
                    for m in &job.machines {
                        race.running.remove(m);
                    }
                }
                store.finish_job(job.id, JobState::Succeeded, None, None).await.unwrap();
                ran += 1;
            }
        }));
    }
    let mut ran = Vec::new();
    for worker in workers {
        ran.push(worker.await.unwrap());
    }
    let claims = std::mem::take(&mut race.lock().unwrap().claims);
    let mut claimed: Vec<JobId> = claims.iter().map(|(id, _)| *id).collect();
    claimed.sort();
    assert_eq!(claimed, queued, "every job claimed exactly once");
    assert!(ran.iter().all(|&n| n > 0), "both instances ran jobs: {ran:?}");
    for name in names {
        let order: Vec<JobId> = claims
            .iter()
            .filter(|(_, ms)| ms.iter().any(|m| m == name))
            .map(|(id, _)| *id)
            .collect();
        assert!(order.is_sorted(), "{name}: jobs ran in the order queued: {order:?}");
    }
    let succeeded = JobFilter { state: Some(JobState::Succeeded), ..JobFilter::default() };
    assert_eq!(store.jobs(&succeeded, 100).await.unwrap().len(), JOBS);
    assert!(locks(url).await.is_empty());
}

mod concurrent_claims {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let db = crate::support::Db::postgres();
        super::concurrent_claims_never_share_a_machine(&db.url()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let db = crate::support::Db::sqlite();
        super::concurrent_claims_never_share_a_machine(&db.url()).await;
    }
}

/// The lock's primary key decides when a machine is locked after a claim chose its
/// candidate: an uncommitted lock on node1 (another instance's, invisible to the
/// candidate query) makes the claim of node1's job wait, fail on the key, and claim the
/// next job instead.
#[tokio::test]
async fn a_claim_that_loses_a_machine_takes_the_next_job() {
    let db = support::Db::postgres();
    let url = db.url();
    let store = Store::open(&url).await.unwrap();
    let first = store.enqueue_job(&deploy(&["node1"]), IfBusy::Queue).await.unwrap();
    let second = store.enqueue_job(&deploy(&["node2"]), IfBusy::Queue).await.unwrap();
    let pool = pool(&url).await;
    let mut other = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO machine_locks (machine, job_id) VALUES ('node1', $1)")
        .bind(second.0)
        .execute(&mut *other)
        .await
        .unwrap();
    let claim = tokio::spawn({
        let store = store.clone();
        async move { store.claim_job("serve-b").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!claim.is_finished(), "the claim waits for the other transaction's lock");
    other.commit().await.unwrap();
    let claimed = claim.await.unwrap().unwrap().expect("the next job");
    assert_eq!(claimed.id, second);
    assert_eq!(store.job(first).await.unwrap().unwrap().state, JobState::Queued);
    assert_eq!(locks(&url).await, held(&[("node1", second), ("node2", second)]));
}

async fn pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}
