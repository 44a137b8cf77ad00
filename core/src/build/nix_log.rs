//! Nix's `--log-format internal-json` stderr (`@nix {...}` lines) turned into build
//! events: derivation counts as [`Event::Progress`], messages and build output as
//! [`Event::Log`], error messages kept for the build's error.

use std::collections::HashSet;

use serde_json::Value;

use crate::events::{Event, EventSink, Phase};

/// Nix's activity type `actBuilds` (the whole build: done/expected derivations).
const ACT_BUILDS: u64 = 104;
/// `actBuild` (one derivation; its text is "building '<drv>'").
const ACT_BUILD: u64 = 105;
/// Result types: a builder's output line, and progress counts.
const RES_BUILD_LOG_LINE: u64 = 101;
const RES_PROGRESS: u64 = 105;
/// Messages above Nix's `info` level (`-v` shows them) are not forwarded.
const LVL_INFO: u64 = 3;

/// Reads one nix invocation's stderr, line by line.
pub(super) struct LogParser<'a> {
    sink: &'a dyn EventSink,
    /// The machine to attribute events to, when the invocation builds only one.
    machine: Option<String>,
    builds_activities: HashSet<u64>,
    last_progress: (u64, u64),
    /// Error-level messages and unparsed lines: the error of a failed invocation.
    pub errors: Vec<String>,
}

impl<'a> LogParser<'a> {
    pub(super) fn new(sink: &'a dyn EventSink, machine: Option<String>) -> Self {
        LogParser {
            sink,
            machine,
            builds_activities: HashSet::new(),
            last_progress: (0, 0),
            errors: Vec::new(),
        }
    }

    pub(super) fn line(&mut self, line: &str) {
        let Some(json) = line.strip_prefix("@nix ") else {
            if !line.trim().is_empty() {
                self.errors.push(line.to_string());
                self.log(line.to_string());
            }
            return;
        };
        let Ok(v) = serde_json::from_str::<Value>(json) else { return };
        let num = |k: &str| v.get(k).and_then(Value::as_u64);
        let fields = v.get("fields").and_then(Value::as_array);
        match v.get("action").and_then(Value::as_str) {
            Some("msg") => {
                let level = num("level").unwrap_or(0);
                let msg = v.get("msg").and_then(Value::as_str).unwrap_or_default();
                let msg = crate::nix::clean_stderr(msg);
                if msg.is_empty() {
                    return;
                }
                if level == 0 {
                    self.errors.push(msg.clone());
                }
                if level <= LVL_INFO {
                    self.log(msg);
                }
            }
            Some("start") => {
                let (Some(id), Some(ty)) = (num("id"), num("type")) else { return };
                if ty == ACT_BUILDS {
                    self.builds_activities.insert(id);
                } else if ty == ACT_BUILD
                    && let Some(text) = v.get("text").and_then(Value::as_str)
                {
                    self.log(text.to_string());
                }
            }
            Some("result") => {
                let (Some(id), Some(ty), Some(fields)) = (num("id"), num("type"), fields) else {
                    return;
                };
                if ty == RES_PROGRESS && self.builds_activities.contains(&id) {
                    let n = |i: usize| fields.get(i).and_then(Value::as_u64).unwrap_or(0);
                    let (done, expected) = (n(0), n(1));
                    if expected > 0 && (done, expected) != self.last_progress {
                        self.last_progress = (done, expected);
                        self.sink.emit(Event::Progress {
                            phase: Phase::Build,
                            machine: self.machine.clone(),
                            done,
                            expected,
                            bytes: 0,
                        });
                    }
                } else if ty == RES_BUILD_LOG_LINE
                    && let Some(text) = fields.first().and_then(Value::as_str)
                {
                    self.log(text.to_string());
                }
            }
            _ => {}
        }
    }

    fn log(&self, line: String) {
        self.sink.emit(Event::Log { phase: Phase::Build, machine: self.machine.clone(), line });
    }

    /// Nix's error, cleaned; `fallback` when Nix said nothing.
    pub(super) fn error_message(&self, fallback: &str) -> String {
        let text = self.errors.join("\n");
        let text = crate::nix::clean_stderr(&text);
        if text.is_empty() { fallback.to_string() } else { text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Recorder;

    #[test]
    fn internal_json_becomes_events() {
        let rec = Recorder::default();
        let mut p = LogParser::new(&rec, Some("node1".into()));
        for l in [
            r#"@nix {"action":"start","id":7,"level":0,"text":"","type":104}"#,
            r#"@nix {"action":"start","fields":["/nix/store/x.drv","",1,1],"id":8,"level":3,"text":"building '/nix/store/x.drv'","type":105}"#,
            r#"@nix {"action":"result","fields":["hello from the builder"],"id":8,"type":101}"#,
            r#"@nix {"action":"result","fields":[0,2,1,0],"id":7,"type":105}"#,
            r#"@nix {"action":"result","fields":[0,2,1,0],"id":7,"type":105}"#,
            r#"@nix {"action":"result","fields":[1,2,0,0],"id":7,"type":105}"#,
            r#"@nix {"action":"result","fields":[1,2,0,0],"id":9,"type":105}"#,
            r#"@nix {"action":"msg","level":5,"msg":"evaluating file 'x'"}"#,
            "@nix {\"action\":\"msg\",\"level\":0,\"msg\":\"\\u001b[31;1merror:\\u001b[0m builder for 'x' failed\"}",
        ] {
            p.line(l);
        }
        let ev = rec.events();
        let progress: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Progress { done, expected, machine, .. } => {
                    Some((*done, *expected, machine.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(progress, [(0, 2, Some("node1".into())), (1, 2, Some("node1".into()))]);
        let logs: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Log { line, .. } => Some(line.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            logs,
            ["building '/nix/store/x.drv'", "hello from the builder", "builder for 'x' failed"]
        );
        assert_eq!(p.error_message("?"), "builder for 'x' failed");
    }
}
