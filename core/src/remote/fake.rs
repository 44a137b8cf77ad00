//! A scripted [`Host`] for fast tests of the engines: a host is a few links (what a
//! path resolves to) and files; it does what the deploy engine's commands do to them
//! (`realpath`, `cat`, `switch-to-configuration`, `nix-env --set`, `carrier profile
//! set`, the auto-rollback protocol, the locks, status's system read), answers scripted replies instead
//! where a test says so, and logs every command. Deadlines are honoured on tokio's
//! clock, so tests on a paused clock take no real time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{CopyEvent, Host, HostError, HostLock, Hosts, failure_message};

/// How a scripted command answers.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Exits with `code` and `output`; with `effect` the command does its work first
    /// (a profile set whose hook then fails).
    Exit { code: i32, output: String, effect: bool },
    /// Never ends by itself: killed when its deadline passes.
    Hang,
}

impl Reply {
    pub(crate) fn ok(output: &str) -> Reply {
        Reply::Exit { code: 0, output: output.into(), effect: false }
    }

    pub(crate) fn fail(output: &str) -> Reply {
        Reply::Exit { code: 1, output: output.into(), effect: false }
    }

    /// Does its work, then fails.
    pub(crate) fn fail_after_effect(output: &str) -> Reply {
        Reply::Exit { code: 1, output: output.into(), effect: true }
    }
}

#[derive(Default)]
struct State {
    links: BTreeMap<String, String>,
    files: BTreeMap<String, String>,
    log: Vec<String>,
    /// Replies to commands starting with the key, in turn; the last one repeats.
    replies: Vec<(String, VecDeque<Reply>)>,
    /// The deploy lock: who holds it.
    lock_holder: Option<String>,
    activation_in_flight: bool,
    unreachable: bool,
}

pub(crate) struct FakeHost {
    name: String,
    command_timeout: Duration,
    state: Mutex<State>,
}

impl FakeHost {
    pub(crate) fn new(name: &str) -> Arc<FakeHost> {
        Arc::new(FakeHost {
            name: name.into(),
            command_timeout: Duration::from_secs(900),
            state: Mutex::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake host state")
    }

    /// `path` resolves to `to`.
    pub(crate) fn link(&self, path: &str, to: &str) {
        self.state().links.insert(path.into(), to.into());
    }

    pub(crate) fn link_of(&self, path: &str) -> Option<String> {
        self.state().links.get(path).cloned()
    }

    pub(crate) fn file(&self, path: &str, text: &str) {
        self.state().files.insert(path.into(), text.into());
    }

    pub(crate) fn has_file(&self, path: &str) -> bool {
        self.state().files.contains_key(path)
    }

    /// Commands starting with `prefix` answer `replies` in turn, the last one repeating.
    pub(crate) fn reply(&self, prefix: &str, replies: impl IntoIterator<Item = Reply>) {
        self.state().replies.push((prefix.into(), replies.into_iter().collect()));
    }

    /// Another deploy holds the host's deploy lock.
    pub(crate) fn hold_lock(&self, holder: &str) {
        self.state().lock_holder = Some(holder.into());
    }

    pub(crate) fn activation_in_flight(&self) {
        self.state().activation_in_flight = true;
    }

    pub(crate) fn unreachable(&self) {
        self.state().unreachable = true;
    }

    /// Every command (argv joined by spaces), copy (`copy <paths>`), lock
    /// (`lock <who>`) and release (`unlock`), in order.
    pub(crate) fn log(&self) -> Vec<String> {
        self.state().log.clone()
    }

    /// The logged lines that start with `prefix`.
    pub(crate) fn logged(&self, prefix: &str) -> Vec<String> {
        self.log().into_iter().filter(|l| l.starts_with(prefix)).collect()
    }

    fn next_reply(&self, line: &str) -> Option<Reply> {
        let mut state = self.state();
        let (_, replies) =
            state.replies.iter_mut().find(|(prefix, _)| line.starts_with(prefix.as_str()))?;
        if replies.len() > 1 { replies.pop_front() } else { replies.front().cloned() }
    }

    async fn exec(&self, argv: &[&str], limit: Option<Duration>) -> Result<Output, HostError> {
        let line = argv.join(" ");
        self.state().log.push(line.clone());
        match self.next_reply(&line) {
            None => Ok(self.effect(argv).await),
            Some(Reply::Exit { code, output, effect }) => {
                if effect {
                    self.effect(argv).await;
                }
                Ok(output_of(code, &output))
            }
            Some(Reply::Hang) => match limit {
                Some(limit) => {
                    tokio::time::sleep(limit).await;
                    let secs = limit.as_secs_f64().ceil().max(1.0) as u64;
                    Err(HostError::TimedOut { host: self.name.clone(), command: line, secs })
                }
                None => std::future::pending().await,
            },
        }
    }

    /// What the command does on a real host, to this host's links and files.
    async fn effect(&self, argv: &[&str]) -> Output {
        let ok = || output_of(0, "");
        match argv {
            ["realpath", "-e", path] => match self.link_of(path) {
                Some(to) => output_of(0, &format!("{to}\n")),
                None => output_of(1, "realpath: no such file"),
            },
            ["cat", path] => match self.state().files.get(*path) {
                Some(text) => output_of(0, text),
                None => output_of(1, "cat: no such file"),
            },
            ["flock", "-n", "-E", "75", _, "true"] => {
                output_of(if self.state().activation_in_flight { 75 } else { 0 }, "")
            }
            [stc, action] if stc.ends_with("/bin/switch-to-configuration") => {
                if matches!(*action, "switch" | "test") {
                    self.link(
                        "/run/current-system",
                        stc.trim_end_matches("/bin/switch-to-configuration"),
                    );
                }
                ok()
            }
            // the host goes down; tests script what `cat /proc/uptime` answers after it
            ["reboot"] => ok(),
            ["nix-env", "-p", profile, "--set", path] => {
                self.link(profile, path);
                ok()
            }
            ["carrier", "profile", "set", rest @ ..] => {
                let profiles: Vec<&str> =
                    rest.chunks(2).take_while(|c| c[0] == "-p").map(|c| c[1]).collect();
                for (profile, path) in profiles.iter().zip(&rest[profiles.len() * 2..]) {
                    self.link(profile, path);
                    // the hooks ran
                    let record = crate::carrier::profile_change::pending_record(Path::new(profile));
                    self.state().files.remove(&record.display().to_string());
                }
                ok()
            }
            ["sh", "-c", _, "sh", check_file] => {
                self.file(check_file, "confirmed");
                ok()
            }
            ["flock", "-n", "-o", ..] => self.auto_rollback(argv).await,
            ["sh", "-c", script, "sh"] if *script == crate::status::read::SYSTEM_SCRIPT => {
                output_of(0, &self.system_answer())
            }
            _ => output_of(127, &format!("fake host: no script for `{}`", argv.join(" "))),
        }
    }

    /// What `carrier status`'s system read prints: the links, the uptime (the first
    /// field of the file `/proc/uptime`), the running system's info files.
    fn system_answer(&self) -> String {
        let state = self.state();
        let mut out = String::new();
        for (key, path) in [
            ("current", "/run/current-system"),
            ("booted", "/run/booted-system"),
            ("profile", "/nix/var/nix/profiles/system"),
        ] {
            if let Some(to) = state.links.get(path) {
                out.push_str(&format!("{key} {to}\n"));
            }
        }
        out.push_str("profile-time \n");
        if let Some(up) = state.files.get("/proc/uptime") {
            out.push_str(&format!("uptime {}\n", up.split(' ').next().unwrap_or("")));
        }
        for name in ["inputs-info", "swpins-info"] {
            if let Some(text) =
                state.files.get(&format!("/run/current-system/etc/confctl/{name}.json"))
            {
                out.push_str(&format!("{name} {}\n{text}", text.len()));
            }
        }
        out
    }

    /// The auto-rollback script (spec 2.3) under the activation lock: activates, says
    /// `switched`, waits for `confirmed`, switches back after its timeout without one.
    async fn auto_rollback(&self, argv: &[&str]) -> Output {
        let [.., "-t", timeout, toplevel, action, check_file] = argv else {
            return output_of(2, "fake host: not an auto-rollback argv");
        };
        let timeout = Duration::from_secs(timeout.parse().expect("-t seconds"));
        let previous = self.link_of("/run/current-system");
        self.state().activation_in_flight = true;
        if *action == "switch" || *action == "test" {
            self.link("/run/current-system", toplevel);
        }
        self.file(check_file, "switched");
        let started = tokio::time::Instant::now();
        let confirmed = loop {
            if self.state().files.get(*check_file).is_some_and(|s| s == "confirmed") {
                break true;
            }
            if started.elapsed() >= timeout {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.state().activation_in_flight = false;
        if confirmed {
            return output_of(0, "");
        }
        if let Some(previous) = previous {
            self.link("/run/current-system", &previous);
        }
        output_of(1, "not confirmed: switched back")
    }
}

fn output_of(code: i32, text: &str) -> Output {
    // a wait status: the exit code in the second byte
    Output {
        status: ExitStatus::from_raw(code << 8),
        stdout: text.as_bytes().to_vec(),
        stderr: Vec::new(),
    }
}

impl Host for FakeHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    async fn output_within(&self, argv: &[&str], limit: Duration) -> Result<Output, HostError> {
        self.exec(argv, Some(limit)).await
    }

    /// Logs `argv` and then `<<< input`; `cat` answers its input.
    async fn output_with_input(
        &self,
        argv: &[&str],
        input: &[u8],
        limit: Duration,
    ) -> Result<Output, HostError> {
        let input = String::from_utf8_lossy(input).into_owned();
        if argv == ["cat"] {
            let line = format!("cat <<< {input}");
            self.state().log.push(line);
            return Ok(output_of(0, &input));
        }
        let out = self.exec(argv, Some(limit)).await;
        self.state().log.push(format!("<<< {input}"));
        out
    }

    async fn output_unbounded(&self, argv: &[&str]) -> Result<Output, HostError> {
        self.exec(argv, None).await
    }

    async fn copy_closure(
        &self,
        paths: &[PathBuf],
        limit: Duration,
        on_event: &(dyn Fn(CopyEvent) + Sync),
    ) -> Result<(), HostError> {
        let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let line = format!("copy {}", paths.join(" "));
        self.state().log.push(line.clone());
        match self.next_reply(&line) {
            Some(Reply::Hang) => {
                tokio::time::sleep(limit).await;
                Err(HostError::CopyTimedOut { host: self.name.clone(), secs: limit.as_secs() })
            }
            Some(Reply::Exit { code, output, .. }) if code != 0 => Err(HostError::Copy {
                host: self.name.clone(),
                message: failure_message(&output_of(code, &output)),
            }),
            _ => {
                on_event(CopyEvent::Log(format!("copying {} paths...", paths.len())));
                Ok(())
            }
        }
    }

    async fn lock<'a>(
        &'a self,
        who: &str,
        wait: Duration,
        on_wait: &(dyn Fn(String) + Sync),
    ) -> Result<HostLock<'a>, HostError> {
        let holder = {
            let mut state = self.state();
            state.log.push(format!("lock {who}"));
            match &state.lock_holder {
                // also a second lock by the same run: on a real host it would wait
                Some(holder) => holder.clone(),
                None => {
                    state.lock_holder = Some(who.to_string());
                    return Ok(HostLock::new(async move {
                        let mut state = self.state();
                        state.lock_holder = None;
                        state.log.push("unlock".into());
                    }));
                }
            }
        };
        on_wait(format!("waiting for the deploy lock on {}, held by: {holder}", self.name));
        tokio::time::sleep(wait).await;
        Err(HostError::LockTimeout {
            host: self.name.clone(),
            lock: "deploy".into(),
            secs: wait.as_secs(),
            holder,
        })
    }
}

/// The fake hosts of a run, by name; `localhost` is always there.
pub(crate) struct FakeHosts {
    hosts: BTreeMap<String, Arc<FakeHost>>,
    opened: Mutex<BTreeSet<String>>,
}

impl FakeHosts {
    pub(crate) fn new(hosts: &[&Arc<FakeHost>]) -> FakeHosts {
        let mut all: BTreeMap<String, Arc<FakeHost>> =
            hosts.iter().map(|h| (h.name.clone(), Arc::clone(h))).collect();
        all.entry("localhost".into()).or_insert_with(|| FakeHost::new("localhost"));
        FakeHosts { hosts: all, opened: Mutex::default() }
    }
}

impl Hosts for FakeHosts {
    type Host = FakeHost;

    async fn open(&self, name: &str, _port: u16) -> Result<Arc<FakeHost>, HostError> {
        let connect =
            |message: &str| HostError::Connect { host: name.to_string(), message: message.into() };
        let host = self.hosts.get(name).ok_or_else(|| connect("no such fake host"))?;
        if host.state().unreachable {
            return Err(connect("Connection refused"));
        }
        self.opened.lock().expect("opened").insert(name.to_string());
        Ok(Arc::clone(host))
    }

    async fn reconnect(&self, name: &str, port: u16) -> Result<Arc<FakeHost>, HostError> {
        if let Some(host) = self.hosts.get(name) {
            host.state().log.push("reconnect".into());
        }
        self.open(name, port).await
    }

    fn local(&self) -> Arc<FakeHost> {
        Arc::clone(&self.hosts["localhost"])
    }

    fn opened(&self) -> usize {
        self.opened.lock().expect("opened").len()
    }

    async fn close(self) {}
}
