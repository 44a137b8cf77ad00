//! `carrier ssh <pattern> <command...>`: one command (an argv: each word arrives as
//! given, no remote shell re-reads it) on several machines over the run's connections,
//! one machine after the other or all at once, with optional standard input; and
//! upstream's aggregation of identical outputs.

use std::process::Output;
use std::time::Duration;

use super::{Destination, Host, HostError, Hosts};

/// How one machine's command ended.
#[derive(Debug)]
pub struct CommandResult {
    pub machine: String,
    pub result: Result<Output, HostError>,
}

impl CommandResult {
    /// `0`, `1`, …, `killed by a signal`, or why the command did not run.
    pub fn status(&self) -> String {
        match &self.result {
            Ok(out) => match out.status.code() {
                Some(code) => code.to_string(),
                None => "killed by a signal".into(),
            },
            Err(e) => format!("not run: {e}"),
        }
    }

    pub fn success(&self) -> bool {
        self.result.as_ref().is_ok_and(|o| o.status.success())
    }

    /// Standard output followed by standard error (upstream merges them).
    pub fn text(&self) -> String {
        match &self.result {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(_) => String::new(),
        }
    }
}

/// What the command is and how it runs.
#[derive(Debug, Clone)]
pub struct CommandRun<'a> {
    pub argv: &'a [String],
    /// Given to every machine's command on its standard input.
    pub input: Option<&'a [u8]>,
    /// All machines at once, instead of one after the other.
    pub parallel: bool,
    pub limit: Duration,
}

/// Runs the command on every destination; `on_done` hears each result as it ends.
/// Returns the results in the order of `destinations`.
pub async fn run_on<H: Hosts>(
    destinations: &[Destination],
    run: &CommandRun<'_>,
    hosts: &H,
    on_done: &(dyn Fn(&CommandResult) + Sync),
) -> Vec<CommandResult> {
    if run.parallel {
        let all = destinations.iter().map(|d| run_one(d, run, hosts, on_done));
        futures::future::join_all(all).await
    } else {
        let mut out = Vec::new();
        for d in destinations {
            out.push(run_one(d, run, hosts, on_done).await);
        }
        out
    }
}

async fn run_one<H: Hosts>(
    d: &Destination,
    run: &CommandRun<'_>,
    hosts: &H,
    on_done: &(dyn Fn(&CommandResult) + Sync),
) -> CommandResult {
    let argv: Vec<&str> = run.argv.iter().map(String::as_str).collect();
    let result = match hosts.open(&d.host, d.port).await {
        Ok(host) => match run.input {
            Some(input) => host.output_with_input(&argv, input, run.limit).await,
            None => host.output_within(&argv, run.limit).await,
        },
        Err(e) => Err(e),
    };
    let r = CommandResult { machine: d.machine.clone(), result };
    on_done(&r);
    r
}

/// Upstream's `--aggregate`: machines grouped by exit status and output, each group's
/// machines sorted, groups in the order they first appear.
pub fn aggregate(results: &[CommandResult]) -> Vec<(Vec<String>, String, String)> {
    let mut groups: Vec<(Vec<String>, String, String)> = Vec::new();
    for r in results {
        let (status, text) = (r.status(), r.text());
        match groups.iter_mut().find(|(_, s, t)| *s == status && *t == text) {
            Some((machines, _, _)) => machines.push(r.machine.clone()),
            None => groups.push((vec![r.machine.clone()], status, text)),
        }
    }
    groups.iter_mut().for_each(|(machines, _, _)| machines.sort());
    groups
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::remote::fake::{FakeHost, FakeHosts, Reply};

    fn dest(m: &str) -> Destination {
        Destination { machine: m.into(), host: format!("{m}.lab"), port: 22 }
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn each_machine_runs_the_argv_and_reports_its_exit() {
        let (a, b, c) = (FakeHost::new("a.lab"), FakeHost::new("b.lab"), FakeHost::new("c.lab"));
        a.reply("uname -a", [Reply::ok("Linux a\n")]);
        b.reply("uname -a", [Reply::fail("no\n")]);
        c.unreachable();
        let hosts = FakeHosts::new(&[&a, &b, &c]);
        let words = argv(&["uname", "-a"]);
        let run = CommandRun {
            argv: &words,
            input: None,
            parallel: false,
            limit: Duration::from_secs(5),
        };
        let heard = Mutex::new(Vec::new());
        let on_done = |r: &CommandResult| heard.lock().unwrap().push(r.machine.clone());
        let results = run_on(&[dest("a"), dest("b"), dest("c")], &run, &hosts, &on_done).await;
        let summary: Vec<(&str, String, bool)> =
            results.iter().map(|r| (r.machine.as_str(), r.status(), r.success())).collect();
        assert_eq!(
            summary,
            [
                ("a", "0".into(), true),
                ("b", "1".into(), false),
                ("c", "not run: cannot connect to c.lab: Connection refused".into(), false),
            ]
        );
        assert_eq!(results[0].text(), "Linux a\n");
        assert_eq!(*heard.lock().unwrap(), ["a", "b", "c"]);
        assert_eq!(a.log(), ["uname -a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn input_reaches_every_machine_and_parallel_runs_overlap() {
        let (a, b) = (FakeHost::new("a.lab"), FakeHost::new("b.lab"));
        a.reply("sleep", [Reply::Hang]);
        b.reply("sleep", [Reply::Hang]);
        let hosts = FakeHosts::new(&[&a, &b]);
        let words = argv(&["cat"]);
        let run = CommandRun {
            argv: &words,
            input: Some(b"hello\n"),
            parallel: true,
            limit: Duration::from_secs(5),
        };
        let results = run_on(&[dest("a"), dest("b")], &run, &hosts, &|_| {}).await;
        assert!(results.iter().all(|r| r.text() == "hello\n"), "{results:?}");
        assert_eq!(b.log(), ["cat <<< hello\n"]);

        // two commands hanging until their 5 s deadline: together they take 5 s, not 10
        let words = argv(&["sleep", "60"]);
        let run = CommandRun { argv: &words, input: None, parallel: true, ..run };
        let started = tokio::time::Instant::now();
        let results = run_on(&[dest("a"), dest("b")], &run, &hosts, &|_| {}).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(results.iter().all(|r| r.status().contains("did not finish within 5 s")));
    }

    #[test]
    fn identical_outputs_are_grouped() {
        let result = |m: &str, code: i32, text: &str| CommandResult {
            machine: m.into(),
            result: Ok(Output {
                status: std::os::unix::process::ExitStatusExt::from_raw(code << 8),
                stdout: text.as_bytes().to_vec(),
                stderr: Vec::new(),
            }),
        };
        let results = [
            result("c", 0, "x\n"),
            result("b", 1, "x\n"),
            result("a", 0, "x\n"),
            result("d", 0, "y\n"),
        ];
        assert_eq!(
            aggregate(&results),
            [
                (vec!["a".to_string(), "c".into()], "0".to_string(), "x\n".to_string()),
                (vec!["b".into()], "1".into(), "x\n".into()),
                (vec!["d".into()], "0".into(), "y\n".into()),
            ]
        );
    }
}
