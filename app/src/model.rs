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
pub const PER_PAGE: usize = 100;

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
        let page = self.page.trim();
        if page.is_empty() {
            return Ok(1);
        }
        match page.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("invalid page '{page}': a page is a number from 1")),
        }
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
        assert_eq!(page_count(1510), 16);
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
