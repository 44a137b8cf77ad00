//! Typed progress events of builds and deploys. The engine emits them to an
//! [`EventSink`]; the CLI prints them (progress lines or JSON), the dashboard streams them.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// A step of a run: of a deploy, or of a dashboard job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Build,
    Status,
    Copy,
    Activate,
    CarriedProfile,
    Reboot,
    HealthCheck,
    /// Removing generations (a dashboard job).
    Generations,
    /// Rebuilding a carrier's netboot trees (a dashboard job).
    Netboot,
}

impl Phase {
    /// The phase in words (`carried profile`, `health checks`).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Build => "build",
            Phase::Status => "status",
            Phase::Copy => "copy",
            Phase::Activate => "activate",
            Phase::CarriedProfile => "carried profile",
            Phase::Reboot => "reboot",
            Phase::HealthCheck => "health checks",
            Phase::Generations => "generations",
            Phase::Netboot => "netboot",
        }
    }
}

/// How one machine's step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    Ok,
    Skipped { reason: String },
    Failed { error: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A phase starts for `machines` machines.
    PhaseStarted { phase: Phase, machines: usize },
    /// Counts within a phase: derivations built, paths copied, bytes transferred.
    Progress { phase: Phase, machine: Option<String>, done: u64, expected: u64, bytes: u64 },
    /// One line of output (Nix's log, a remote command's output).
    Log { phase: Phase, machine: Option<String>, line: String },
    /// A line the user must see even without details: waiting for a lock and whom for,
    /// a step repeated and why.
    Notice { phase: Phase, machine: Option<String>, line: String },
    /// A machine's step has ended.
    MachineFinished { phase: Phase, machine: String, outcome: Outcome },
    /// A phase has ended.
    PhaseFinished { phase: Phase },
}

/// Where events go. Implementations must be cheap: they are called from worker threads.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);

    /// An interactive deploy's question before `machine`'s step in `phase` (copy,
    /// activation, carried profile, reboot): whether to go on. A sink that cannot ask
    /// says no, so nothing happens that nobody confirmed.
    fn confirm(&self, _phase: Phase, _machine: &str) -> bool {
        false
    }

    /// Whether whoever started the run has asked to stop it (a dashboard job cancelled).
    /// The deploy engine asks before each machine's copy, activation, carried profile and
    /// reboot: a step under way finishes (and auto-rollback still guards it), later steps
    /// are not attempted.
    fn cancelled(&self) -> bool {
        false
    }
}

/// Drops every event.
pub struct Discard;

impl EventSink for Discard {
    fn emit(&self, _: Event) {}
}

/// Keeps every event, for tests and for summaries.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<Event>>);

impl EventSink for Recorder {
    fn emit(&self, event: Event) {
        self.0.lock().expect("recorder lock").push(event);
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().expect("recorder lock").clone()
    }
}
