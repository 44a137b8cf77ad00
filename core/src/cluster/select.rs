//! Machine selection shared by every command and page: a pattern (exact name, flake key,
//! then an fnmatch-style glob with `*`, `?`, `[...]`, `{a,b}`; `#` and `/` are ordinary
//! characters), `--tag t` / `--tag ^t`, `--attr key=value` / `key!=value` with dotted
//! paths, and the managed filter.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Cluster, Machine, attr_to_string};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("invalid machine pattern '{pattern}': {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("invalid --attr '{0}': expected key=value or key!=value")]
    Attr(String),
    #[error("invalid --tag '{0}': expected a tag or ^tag")]
    Tag(String),
    #[error("invalid --managed '{0}': expected y, yes, n, no, a or all")]
    Managed(String),
    /// A build or deploy selected no managed machine; names what was to be done.
    #[error("no machines to {0}")]
    NoMachines(&'static str),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagedFilter {
    #[default]
    Managed,
    Unmanaged,
    All,
}

impl FromStr for ManagedFilter {
    type Err = SelectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "y" | "yes" | "managed" => Ok(ManagedFilter::Managed),
            "n" | "no" | "unmanaged" => Ok(ManagedFilter::Unmanaged),
            "a" | "all" => Ok(ManagedFilter::All),
            other => Err(SelectError::Managed(other.to_string())),
        }
    }
}

impl ManagedFilter {
    pub fn as_str(self) -> &'static str {
        match self {
            ManagedFilter::Managed => "managed",
            ManagedFilter::Unmanaged => "unmanaged",
            ManagedFilter::All => "all",
        }
    }
}

/// `--tag t` (must have) or `--tag ^t` (must not have).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagFilter {
    pub tag: String,
    pub negated: bool,
}

impl FromStr for TagFilter {
    type Err = SelectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (negated, tag) = match s.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if tag.is_empty() {
            return Err(SelectError::Tag(s.to_string()));
        }
        Ok(TagFilter { tag: tag.to_string(), negated })
    }
}

/// `--attr key=value` or `key!=value`; values compare as strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrFilter {
    pub key: String,
    pub value: String,
    pub negated: bool,
}

impl FromStr for AttrFilter {
    type Err = SelectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value, negated) = if let Some((k, v)) = s.split_once("!=") {
            (k, v, true)
        } else if let Some((k, v)) = s.split_once('=') {
            (k, v, false)
        } else {
            return Err(SelectError::Attr(s.to_string()));
        };
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(SelectError::Attr(s.to_string()));
        }
        Ok(AttrFilter { key: key.to_string(), value: value.to_string(), negated })
    }
}

/// A complete selection, as parsed from CLI arguments or a dashboard query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub pattern: Option<String>,
    pub tags: Vec<TagFilter>,
    pub attrs: Vec<AttrFilter>,
    pub managed: ManagedFilter,
}

impl Selection {
    /// Parses the raw strings every surface receives (CLI flags, query parameters).
    pub fn parse(
        pattern: Option<&str>,
        tags: &[String],
        attrs: &[String],
        managed: Option<&str>,
    ) -> Result<Self, SelectError> {
        Ok(Selection {
            pattern: pattern.map(str::trim).filter(|p| !p.is_empty()).map(Into::into),
            tags: tags
                .iter()
                .filter(|t| !t.trim().is_empty())
                .map(|t| t.trim().parse())
                .collect::<Result<_, _>>()?,
            attrs: attrs
                .iter()
                .filter(|a| !a.trim().is_empty())
                .map(|a| a.trim().parse())
                .collect::<Result<_, _>>()?,
            managed: managed.map(str::parse).transpose()?.unwrap_or_default(),
        })
    }

    /// The selected machines, in cluster (name) order.
    pub fn select<'a>(&self, cluster: &'a Cluster) -> Result<Vec<&'a Machine>, SelectError> {
        let matcher = match &self.pattern {
            None => None,
            Some(p) => Some(PatternMatcher::new(p, cluster)?),
        };
        Ok(cluster
            .machines
            .iter()
            .filter(|m| self.attrs.iter().all(|f| attr_matches(m, f)))
            .filter(|m| self.tags.iter().all(|f| m.meta_config.tags.contains(&f.tag) != f.negated))
            .filter(|m| matcher.as_ref().is_none_or(|p| p.matches(m)))
            .filter(|m| match self.managed {
                ManagedFilter::Managed => m.is_managed(),
                ManagedFilter::Unmanaged => !m.is_managed(),
                ManagedFilter::All => true,
            })
            .collect())
    }

    /// The machines a build or deploy acts on (`what`: "build", "deploy"): the selected
    /// ones that are managed, whatever the managed filter says (upstream's deploy front
    /// part, spec 2.0 step 1). None is an error.
    pub fn select_managed<'a>(
        &self,
        cluster: &'a Cluster,
        what: &'static str,
    ) -> Result<Vec<&'a Machine>, SelectError> {
        let machines: Vec<&Machine> =
            self.select(cluster)?.into_iter().filter(|m| m.is_managed()).collect();
        if machines.is_empty() {
            return Err(SelectError::NoMachines(what));
        }
        Ok(machines)
    }
}

fn attr_matches(m: &Machine, f: &AttrFilter) -> bool {
    (attr_to_string(m.attr(&f.key).as_ref()) == f.value) != f.negated
}

/// Upstream's resolution order: an exact machine name, then an exact flake key,
/// then the glob.
enum PatternMatcher {
    Exact(String),
    Key(String),
    Glob(globset::GlobMatcher),
}

impl PatternMatcher {
    fn new(pattern: &str, cluster: &Cluster) -> Result<Self, SelectError> {
        if cluster.get(pattern).is_some() {
            return Ok(PatternMatcher::Exact(pattern.to_string()));
        }
        if pattern.starts_with("m_") && cluster.machines.iter().any(|m| m.key() == pattern) {
            return Ok(PatternMatcher::Key(pattern.to_string()));
        }
        Ok(PatternMatcher::Glob(glob(pattern)?))
    }

    fn matches(&self, m: &Machine) -> bool {
        match self {
            PatternMatcher::Exact(name) => &m.name == name,
            PatternMatcher::Key(key) => &m.key() == key,
            PatternMatcher::Glob(g) => g.is_match(&m.name),
        }
    }
}

fn glob(pattern: &str) -> Result<globset::GlobMatcher, SelectError> {
    let glob = globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
        .map_err(|e| SelectError::Pattern {
            pattern: pattern.to_string(),
            reason: e.kind().to_string(),
        })?;
    Ok(glob.compile_matcher())
}

/// The pattern on bare machine names, for machines that may no longer be in the cluster
/// (records of past runs): the exact name, else the same glob as [`Selection`]'s.
#[derive(Debug, Clone)]
pub struct NamePattern {
    exact: String,
    glob: globset::GlobMatcher,
}

impl NamePattern {
    pub fn parse(pattern: &str) -> Result<Self, SelectError> {
        Ok(NamePattern { exact: pattern.to_string(), glob: glob(pattern)? })
    }

    pub fn matches(&self, name: &str) -> bool {
        name == self.exact || self.glob.is_match(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Spin;
    use crate::cluster::model::tests::machine;
    use serde_json::json;

    fn cluster() -> Cluster {
        let mut ms = vec![
            machine("pxe", Spin::Nixos),
            machine("node1", Spin::Nixos),
            machine("node2", Spin::Vpsadminos),
            machine("prg/web1", Spin::Nixos),
            machine("legacy", Spin::Openvz),
        ];
        let mut carried = machine("pxe#node1", Spin::Nixos);
        carried.carrier = Some("pxe".into());
        carried.cluster_name = "node1".into();
        ms.push(carried);
        ms[1].meta_config.tags = vec!["prod".into(), "web".into()];
        ms[2].meta_config.tags = vec!["prod".into()];
        ms[3].meta_config.labels.insert("dc".into(), json!("prg"));
        ms[3].meta_config.labels.insert("rack".into(), json!({"row": 3}));
        ms.sort_by(|a, b| a.name.cmp(&b.name));
        Cluster { machines: ms }
    }

    fn names(sel: &Selection) -> Vec<String> {
        sel.select(&cluster()).unwrap().iter().map(|m| m.name.clone()).collect()
    }

    fn sel(
        pattern: Option<&str>,
        tags: &[&str],
        attrs: &[&str],
        managed: Option<&str>,
    ) -> Selection {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Selection::parse(pattern, &s(tags), &s(attrs), managed).unwrap()
    }

    #[test]
    fn no_pattern_selects_all_managed_in_name_order() {
        assert_eq!(
            names(&sel(None, &[], &[], None)),
            ["node1", "node2", "prg/web1", "pxe", "pxe#node1"]
        );
        assert_eq!(names(&sel(None, &[], &[], Some("n"))), ["legacy"]);
        assert_eq!(names(&sel(None, &[], &[], Some("a"))).len(), 6);
    }

    #[test]
    fn name_patterns_match_names_as_selections_do() {
        let p = NamePattern::parse("pxe#node*").unwrap();
        assert!(p.matches("pxe#node1") && !p.matches("node1"));
        let odd = NamePattern::parse("odd[1]").unwrap();
        assert!(odd.matches("odd[1]") && odd.matches("odd1"), "the exact name, then the glob");
        assert!(matches!(NamePattern::parse("odd[name"), Err(SelectError::Pattern { .. })));
        let braces = NamePattern::parse("{a,b}/x").unwrap();
        assert!(braces.matches("a/x") && braces.matches("b/x") && !braces.matches("c/x"));
    }

    #[test]
    fn builds_and_deploys_take_managed_machines_only_and_need_one() {
        let c = cluster();
        let names = |s: &Selection, what| {
            s.select_managed(&c, what).map(|ms| ms.iter().map(|m| m.name.clone()).collect())
        };
        let managed: Result<Vec<String>, _> = names(&sel(None, &[], &[], None), "deploy");
        assert_eq!(managed.unwrap(), ["node1", "node2", "prg/web1", "pxe", "pxe#node1"]);
        // --managed all or no still leaves the unmanaged machine out
        let all = names(&sel(None, &[], &[], Some("a")), "build").unwrap();
        assert_eq!(all, ["node1", "node2", "prg/web1", "pxe", "pxe#node1"]);
        let e = names(&sel(Some("legacy"), &[], &[], Some("a")), "build").unwrap_err();
        assert_eq!(e, SelectError::NoMachines("build"));
        assert_eq!(e.to_string(), "no machines to build");
        let e = names(&sel(Some("nothing"), &[], &[], None), "deploy").unwrap_err();
        assert_eq!(e.to_string(), "no machines to deploy");
    }

    #[test]
    fn globs_treat_hash_and_slash_as_ordinary() {
        assert_eq!(names(&sel(Some("pxe#*"), &[], &[], None)), ["pxe#node1"]);
        assert_eq!(names(&sel(Some("*node1"), &[], &[], None)), ["node1", "pxe#node1"]);
        assert_eq!(names(&sel(Some("*web*"), &[], &[], None)), ["prg/web1"]);
        assert_eq!(names(&sel(Some("node?"), &[], &[], None)), ["node1", "node2"]);
        assert_eq!(names(&sel(Some("node[2-9]"), &[], &[], None)), ["node2"]);
        assert_eq!(names(&sel(Some("{pxe,node2}"), &[], &[], None)), ["node2", "pxe"]);
        assert_eq!(names(&sel(Some("pxe"), &[], &[], None)), ["pxe"], "exact name");
        assert!(names(&sel(Some("nothing"), &[], &[], None)).is_empty());
    }

    #[test]
    fn exact_name_wins_over_glob_meaning() {
        let mut c = cluster();
        c.machines.push(machine("odd[1]", Spin::Nixos));
        c.machines.sort_by(|a, b| a.name.cmp(&b.name));
        let s = sel(Some("odd[1]"), &[], &[], None);
        let got: Vec<_> = s.select(&c).unwrap().iter().map(|m| m.name.clone()).collect();
        assert_eq!(got, ["odd[1]"]);
    }

    #[test]
    fn flake_key_selects() {
        let key = cluster().get("pxe#node1").unwrap().key();
        assert_eq!(names(&sel(Some(&key), &[], &[], None)), ["pxe#node1"]);
    }

    #[test]
    fn tags_and_negated_tags() {
        assert_eq!(names(&sel(None, &["prod"], &[], None)), ["node1", "node2"]);
        assert_eq!(names(&sel(None, &["prod", "^web"], &[], None)), ["node2"]);
        assert_eq!(names(&sel(None, &["^prod"], &[], None)), ["prg/web1", "pxe", "pxe#node1"]);
    }

    #[test]
    fn attrs_with_dotted_paths() {
        assert_eq!(names(&sel(None, &[], &["labels.dc=prg"], None)), ["prg/web1"]);
        assert_eq!(names(&sel(None, &[], &["labels.rack.row=3"], None)), ["prg/web1"]);
        assert_eq!(names(&sel(None, &[], &["spin=vpsadminos"], None)), ["node2"]);
        assert_eq!(names(&sel(None, &[], &["spin!=nixos"], None)), ["node2"]);
        assert_eq!(names(&sel(None, &[], &["carrier=pxe"], None)), ["pxe#node1"]);
        // a missing attribute reads as the empty string
        assert_eq!(names(&sel(None, &[], &["labels.dc="], None)).len(), 4);
    }

    #[test]
    fn bad_filters_name_the_value() {
        let e = Selection::parse(None, &[], &["nodot".into()], None).unwrap_err();
        assert_eq!(e.to_string(), "invalid --attr 'nodot': expected key=value or key!=value");
        let e = Selection::parse(None, &["^".into()], &[], None).unwrap_err();
        assert!(e.to_string().contains("'^'"));
        let e = Selection::parse(None, &[], &[], Some("maybe")).unwrap_err();
        assert!(e.to_string().contains("'maybe'"));
        let e = sel(Some("node[1"), &[], &[], None).select(&cluster()).unwrap_err();
        assert!(e.to_string().contains("'node[1'"), "{e}");
    }
}
