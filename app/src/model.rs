//! What the dashboard shows, as plain serialisable types, plus the small calculations
//! on them (tested here, not in components).

use serde::{Deserialize, Serialize};

/// One row of the machines table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineSummary {
    pub name: String,
    pub spin: String,
    pub fqdn: Option<String>,
    pub target: Option<String>,
    pub carrier: Option<String>,
    pub tags: Vec<String>,
    pub managed: bool,
    pub is_carrier: bool,
}

/// One page of the machines a query selects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineList {
    /// The machines of this page, in name order.
    pub machines: Vec<MachineSummary>,
    /// Machines in the cluster before filtering.
    pub total: usize,
    /// Machines the query selects, on every page.
    pub matched: usize,
    /// This page, from 1.
    pub page: usize,
    /// Pages of [`PER_PAGE`] machines the query's machines fill (at least 1).
    pub pages: usize,
}

/// Machines on one page of the machines page (and of its JSON answer).
pub const PER_PAGE: usize = 50;

/// A page number as asked for (`?page=`): 1 when empty; an error names a value that is no
/// page number.
pub fn page_number(text: &str) -> Result<usize, String> {
    let page = text.trim();
    if page.is_empty() {
        return Ok(1);
    }
    match page.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("invalid page '{page}': a page is a number from 1")),
    }
}

/// The pages `matched` machines fill: at least one, an empty one when nothing matches.
pub fn page_count(matched: usize) -> usize {
    matched.div_ceil(PER_PAGE).max(1)
}

/// A carried `<carrier>#<alias>`: where and how a machine is carried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarriedView {
    pub name: String,
    pub carrier: String,
    pub source: String,
    pub alias: Option<String>,
    pub spin: String,
    pub build_attribute: String,
    pub profile: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineDetail {
    pub summary: MachineSummary,
    pub alias: Option<String>,
    pub cluster_name: String,
    pub profile: String,
    pub runnable: bool,
    pub build_attribute: String,
    /// Module files, relative to the configuration directory.
    pub files: Vec<String>,
    /// Every option as `(dotted path, JSON value)`.
    pub options: Vec<(String, String)>,
    /// For a source machine: its carried copies. For a carried machine: itself.
    pub carried_as: Vec<CarriedView>,
    /// For a carrier: what it carries.
    pub carries: Vec<CarriedView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarrierView {
    pub name: String,
    pub fqdn: Option<String>,
    pub carried: Vec<CarriedView>,
}

/// The inventory's provenance, shown in the page footer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryInfo {
    pub machines: usize,
    pub carriers: usize,
    pub evaluated_at: Option<String>,
    pub content_key: String,
}

/// The query of the machines page: raw strings, exactly as a form submits them (a
/// parameter left out is empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MachineQuery {
    pub pattern: String,
    /// Space- or comma-separated tags; `^tag` excludes.
    pub tags: String,
    /// Space-separated `key=value` / `key!=value`.
    pub attrs: String,
    /// `managed`, `unmanaged` or `all` (empty: all).
    pub managed: String,
    /// The page, from 1 (empty: the first).
    pub page: String,
}

impl MachineQuery {
    pub fn tag_list(&self) -> Vec<String> {
        split_words(&self.tags, &[' ', ','])
    }

    pub fn attr_list(&self) -> Vec<String> {
        split_words(&self.attrs, &[' '])
    }

    /// The dashboard lists every machine unless told otherwise (the CLI defaults to
    /// managed ones, as upstream).
    pub fn managed_or_default(&self) -> &str {
        if self.managed.trim().is_empty() { "all" } else { self.managed.trim() }
    }

    /// The page asked for: 1 when empty; an error names a value that is no page number.
    pub fn page_number(&self) -> Result<usize, String> {
        page_number(&self.page)
    }

    /// The machines page with this query's filters, at `page`: the link of a pager.
    pub fn page_href(&self, page: usize) -> String {
        let mut href = String::from("/machines?");
        for (key, value) in [
            ("pattern", &self.pattern),
            ("tags", &self.tags),
            ("attrs", &self.attrs),
            ("managed", &self.managed),
        ] {
            if !value.is_empty() {
                href.push_str(&format!("{key}={}&", urlencoding::encode(value)));
            }
        }
        href.push_str(&format!("page={page}"));
        href
    }
}

fn split_words(s: &str, seps: &[char]) -> Vec<String> {
    s.split(|c: char| seps.contains(&c) || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// `1 carrier`, `2 carriers`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// The URL of a machine's page. Names may hold `#` and `/`, so they are escaped.
pub fn machine_href(name: &str) -> String {
    format!("/machines/{}", urlencoding::encode(name))
}

/// Flattens an options tree into `(dotted.path, value)` rows; lists and empty
/// attrsets stay whole.
pub fn flatten_options(value: &serde_json::Value) -> Vec<(String, String)> {
    fn go(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    go(&path, child, out);
                }
            }
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    go("", value, &mut out);
    out
}

/// Who is signed in, for the header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallerView {
    /// The account; `None` for the shared token and anonymous callers.
    pub name: Option<String>,
    pub role: Option<String>,
    /// Signed in with a session (so a sign-out button makes sense).
    pub session: bool,
}

impl CallerView {
    /// Whether the caller may start deploys (which machines is the server's to check).
    pub fn may_deploy(&self) -> bool {
        matches!(self.role.as_deref(), Some("deployer" | "admin"))
    }
}

/// One of the caller's API tokens (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    pub name: String,
    pub rights: String,
    pub scope: Vec<String>,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// One session of an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    /// The session's public id (the hash the database stores).
    pub id: String,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub address: Option<String>,
    /// The session this page was loaded with.
    pub current: bool,
}

/// One account, for admins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    pub name: String,
    pub role: String,
    /// Empty: every machine.
    pub scope: Vec<String>,
    pub created_at: String,
    pub disabled: bool,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditView {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub address: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub details: String,
    pub outcome: String,
}

/// Scope terms as typed in a form: separated by spaces or commas.
pub fn scope_terms(text: &str) -> Vec<String> {
    text.split([' ', ',']).filter(|t| !t.is_empty()).map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_deployers_and_admins_get_the_deploy_form() {
        let caller = |role: Option<&str>| CallerView {
            name: Some("x".into()),
            role: role.map(Into::into),
            session: true,
        };
        assert!(caller(Some("deployer")).may_deploy() && caller(Some("admin")).may_deploy());
        assert!(!caller(Some("viewer")).may_deploy() && !caller(None).may_deploy());
    }

    #[test]
    fn hrefs_escape_hash_and_slash() {
        assert_eq!(machine_href("pxe-server#prg/node1"), "/machines/pxe-server%23prg%2Fnode1");
        assert_eq!(machine_href("web1"), "/machines/web1");
    }

    #[test]
    fn counts() {
        assert_eq!(count(1, "carrier"), "1 carrier");
        assert_eq!(count(0, "machine"), "0 machines");
        assert_eq!(count(8, "machine"), "8 machines");
    }

    #[test]
    fn query_words() {
        let q = MachineQuery {
            tags: "prod, ^web  db".into(),
            attrs: "spin=nixos labels.dc!=prg".into(),
            ..Default::default()
        };
        assert_eq!(q.tag_list(), ["prod", "^web", "db"]);
        assert_eq!(q.attr_list(), ["spin=nixos", "labels.dc!=prg"]);
        assert_eq!(q.managed_or_default(), "all");
    }

    #[test]
    fn pages() {
        let q = |page: &str| MachineQuery { page: page.into(), ..Default::default() };
        assert_eq!(q("").page_number(), Ok(1));
        assert_eq!(q(" 3 ").page_number(), Ok(3));
        for bad in ["0", "-1", "two", "1.5"] {
            let e = q(bad).page_number().unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
        assert_eq!(page_count(0), 1);
        assert_eq!(page_count(PER_PAGE), 1);
        assert_eq!(page_count(PER_PAGE + 1), 2);
        assert_eq!(page_count(1510), 31);
    }

    #[test]
    fn page_links_keep_the_filters() {
        let q = MachineQuery {
            pattern: "pxe-server#*".into(),
            tags: "prod ^web".into(),
            managed: "all".into(),
            page: "1".into(),
            ..Default::default()
        };
        assert_eq!(
            q.page_href(2),
            "/machines?pattern=pxe-server%23%2A&tags=prod%20%5Eweb&managed=all&page=2"
        );
        assert_eq!(MachineQuery::default().page_href(1), "/machines?page=1");
    }

    #[test]
    fn options_flatten() {
        let rows = flatten_options(
            &json!({"spin": "nixos", "host": {"port": 22, "fqdn": null}, "tags": ["a"], "labels": {}}),
        );
        assert_eq!(
            rows,
            [
                ("host.fqdn".to_string(), "null".to_string()),
                ("host.port".into(), "22".into()),
                ("labels".into(), "{}".into()),
                ("spin".into(), "\"nixos\"".into()),
                ("tags".into(), "[\"a\"]".into()),
            ]
        );
    }

    #[test]
    fn scope_terms_split_on_spaces_and_commas() {
        assert_eq!(
            scope_terms(" tag:ci, pxe-server#*  node1"),
            ["tag:ci", "pxe-server#*", "node1"]
        );
        assert!(scope_terms(" , ").is_empty());
    }
}

/// A deploy as the dashboard's form asks for it (`/deploy`): the selection, the action and
/// the options the CLI offers. Checkboxes arrive as `Some("on")` or absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployForm {
    pub pattern: String,
    /// Space-separated tags (`^tag` excludes), as in the machines filter.
    #[serde(default)]
    pub tags: String,
    /// switch, boot, test, dry-activate, or build (only build: a build job).
    pub action: String,
    /// An existing build generation; empty: build now.
    #[serde(default)]
    pub generation: String,
    #[serde(default)]
    pub dry_activate_first: Option<String>,
    #[serde(default)]
    pub reboot: Option<String>,
    #[serde(default)]
    pub skip_health_checks: Option<String>,
    /// `default` (each machine's setting), `on` or `off`.
    #[serde(default)]
    pub auto_rollback: String,
    #[serde(default)]
    pub one_by_one: Option<String>,
    /// When a selected machine is in another job: `queue` behind it or `refuse`.
    #[serde(default)]
    pub if_busy: String,
}

impl DeployForm {
    pub fn checked(field: &Option<String>) -> bool {
        field.as_deref().is_some_and(|v| !v.is_empty() && v != "false")
    }

    /// The tags as a list.
    pub fn tag_list(&self) -> Vec<String> {
        self.tags.split_whitespace().map(str::to_string).collect()
    }
}

/// A machine a deploy would touch, shown before it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployPreviewRow {
    pub name: String,
    /// `carried by <carrier>` or the host it is reached at.
    pub target: String,
    pub build_attribute: String,
    /// The running or queued job it is part of, if any.
    pub busy_in: Option<i64>,
    /// What it runs (or has staged) by the latest reading, and its state; `None`: not read.
    pub now: Option<String>,
    /// What the deploy would give it: a new build, or the build generation asked for.
    pub would_get: String,
}

/// One job in lists and at the top of its page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: i64,
    pub kind: String,
    /// queued, running, succeeded, failed, cancelled, interrupted.
    pub state: String,
    pub requested_by: String,
    pub summary: String,
    pub machines: Vec<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub instance: Option<String>,
    pub cancel_requested: bool,
    pub error: Option<String>,
    /// Each machine's final state (`deployed`, `failed in activate: ...`), once finished.
    pub outcomes: Vec<(String, String)>,
}

impl JobView {
    pub fn finished(&self) -> bool {
        !matches!(self.state.as_str(), "queued" | "running")
    }
}

/// One progress event of a job, as a line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEventView {
    pub seq: i64,
    pub at: String,
    /// build, status, copy, activate, carried-profile, reboot, health-check.
    pub phase: String,
    pub machine: Option<String>,
    /// `phase`, `progress`, `log`, `notice`, `ok`, `skipped`, `failed`.
    pub level: String,
    pub text: String,
}

/// A job's page: the job and its events so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDetail {
    pub job: JobView,
    pub events: Vec<JobEventView>,
    /// Whether the caller may cancel it (its requester or an admin, while it is not finished).
    pub can_cancel: bool,
}

/// The status page's filter: one state (empty: every machine) and the page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusQuery {
    pub state: String,
    /// Only the machines with this tag (empty: every machine); the counts too.
    pub tag: String,
    pub page: String,
}

impl StatusQuery {
    /// The status page with this state and tag, at `page`: a pager's link.
    pub fn page_href(&self, page: usize) -> String {
        let mut href = String::from("/status?");
        for (key, value) in [("tag", &self.tag), ("state", &self.state)] {
            if !value.trim().is_empty() {
                href.push_str(&format!("{key}={}&", urlencoding::encode(value.trim())));
            }
        }
        href.push_str(&format!("page={page}"));
        href
    }
}

/// The status page: every machine's state from the latest background reading, counted by
/// state; the machines of one state (or all), [`PER_PAGE`] to a page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// The state shown (empty: every machine).
    pub state: String,
    /// The tag shown (empty: every machine).
    pub tag: String,
    /// Machines in that state.
    pub matched: usize,
    /// This page, from 1, of `pages`.
    pub page: usize,
    pub pages: usize,
    /// When the hosts were last read (UTC); `None` before the first reading ended.
    pub read_at: Option<String>,
    /// Why the last reading failed as a whole, if it did.
    pub error: Option<String>,
    /// `(state, machines)`, most urgent first, of the tag's machines (or all).
    pub counts: Vec<(String, usize)>,
    /// This page's machines: standalone ones first, then each carrier's carried machines.
    pub groups: Vec<StatusGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusGroup {
    /// `standalone` or `carried by <carrier>`.
    pub name: String,
    pub machines: Vec<StatusRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRow {
    pub machine: String,
    pub state: String,
    pub tags: Vec<String>,
    /// The build generation it should run (or have staged).
    pub desired: Option<String>,
    /// What runs (standalone) or is staged (carried: `generation <n>`) now.
    pub current: Option<String>,
    /// Carried: the generation it last reported booting.
    pub booted: Option<String>,
    /// How long it has differed from the desired generation (`3.2d`).
    pub drift: Option<String>,
    pub detail: Option<String>,
    /// The last build or deploy recorded for it: `(when, outcome)`.
    pub last_deploy: Option<(String, String)>,
}

/// Upstream's age format: `3.2d`, `5.0h`, `12.0m`, `30.0s`.
pub fn age(secs: f64) -> String {
    match secs {
        s if s >= 86400.0 => format!("{:.1}d", s / 86400.0),
        s if s >= 3600.0 => format!("{:.1}h", s / 3600.0),
        s if s >= 60.0 => format!("{:.1}m", s / 60.0),
        s => format!("{s:.1}s"),
    }
}

/// The URL of a carrier's page (names may hold `/`).
pub fn carrier_href(name: &str) -> String {
    format!("/carriers/{}", urlencoding::encode(name))
}

/// A carrier's page: what the cluster says it carries, what it holds by the latest
/// background reading, its netboot trees' last build and its machines' check-ins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarrierDetail {
    pub carrier: CarrierView,
    /// When the carrier was last read (UTC); `None` before a reading.
    pub read_at: Option<String>,
    /// Why what it holds is not known (the reading failed, or did not reach it).
    pub read_error: Option<String>,
    pub profiles: Vec<CarriedProfile>,
    pub netboot: Option<NetbootBuild>,
    /// Why the last netboot build is not known.
    pub netboot_error: Option<String>,
    /// The latest check-in of each machine that netbooted from it.
    pub checkins: Vec<CheckinRow>,
    /// Whether the caller may change it: remove generations, rebuild its trees.
    pub may_change: bool,
}

/// A carried profile on a carrier, with every generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarriedProfile {
    /// Its name: `node1` for `/nix/var/nix/profiles/confctl-node1`.
    pub profile: String,
    /// The cluster's carried machine it belongs to (`pxe#node1`), if any.
    pub machine: Option<String>,
    /// Newest first.
    pub generations: Vec<CarriedGeneration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarriedGeneration {
    pub number: u64,
    /// When it was set, RFC 3339 UTC.
    pub date: String,
    pub store_path: String,
    pub version: Option<String>,
    /// The short revision (or the version's), as the menus show it.
    pub revision: Option<String>,
    pub current: bool,
    pub macs: Vec<String>,
    pub kernel_params: Vec<String>,
    /// The kernel and initrd the trees serve for it.
    pub boot_files: Vec<String>,
    /// Why its `machine.json` could not be read.
    pub error: Option<String>,
}

/// The last build of a carrier's netboot trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetbootBuild {
    pub finished_at: String,
    pub seconds: f64,
    /// Why it failed (nothing was published then).
    pub error: Option<String>,
    /// The fqdns of the machines published.
    pub published: Vec<String>,
    pub rendered: usize,
    pub reused: usize,
    /// Machines, generations or MACs left out, and why.
    pub faults: Vec<NetbootFault>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetbootFault {
    pub profile: String,
    pub generation: Option<u64>,
    pub kind: String,
    pub message: String,
    /// The whole machine is left out (else a generation or a MAC).
    pub left_out: bool,
}

/// What a netbooted machine last reported it booted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckinRow {
    pub machine: String,
    pub generation: u64,
    pub mac: String,
    pub received_at: String,
}

/// What a client with one MAC gets from a carrier's published trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootPreviewView {
    /// Normalised (`aa-bb-cc-dd-ee-ff`).
    pub mac: String,
    /// `(profile, fqdn)` of the machine served this MAC; `None`: the default menus.
    pub machine: Option<(String, String)>,
    /// The generation it boots by default, its store path and kernel parameters.
    pub generation: Option<(u64, String, Vec<String>)>,
    /// `(what, path, content)`: the PXELINUX file and the iPXE scripts served.
    pub files: Vec<(String, String, String)>,
    /// Other profiles claiming the MAC, left out by the build: why.
    pub conflicts: Vec<String>,
    /// Profiles listing the MAC that the trees do not serve it to.
    pub unserved_claimants: Vec<String>,
}

/// One build or deploy in the history: from the CLI or a dashboard job alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    pub id: i64,
    /// `build` or `deploy`.
    pub kind: String,
    pub user: String,
    /// Where it ran: `user@host` for the CLI, `carrier serve (<instance>)` for a job.
    pub host: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub action: Option<String>,
    /// `None` while it runs (or when it was interrupted).
    pub success: Option<bool>,
    pub error: Option<String>,
    /// The configuration's git revision, `+dirty` when it had changes.
    pub git: Option<String>,
    /// `(machine, outcome)`: `deployed`, `failed in activate: ...`.
    pub machines: Vec<(String, String)>,
    /// The dashboard job it was, if it was one.
    pub job: Option<i64>,
}
