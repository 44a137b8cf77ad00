//! Who may do what: roles, a deployer's scope of machines and the one pure decision every
//! surface (dashboard, API, CLI over tokens) asks before acting. Decisions: docs/accounts.md.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, Machine, ManagedFilter, NamePattern, SelectError, Selection};

/// An account's role; each includes the rights of the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Deployer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("invalid role '{0}': expected viewer, deployer or admin")]
    Role(String),
    #[error("invalid scope term '{term}': {source}")]
    Scope { term: String, source: SelectError },
    #[error("empty scope term: expected a machine pattern, tag:<tag> or <carrier>#*")]
    EmptyTerm,
}

impl FromStr for Role {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "deployer" => Ok(Role::Deployer),
            "admin" => Ok(Role::Admin),
            other => Err(AuthError::Role(other.to_string())),
        }
    }
}

/// The machines a deployer may act on: the union of its terms, each in the CLI's selection
/// language (a name pattern such as `node*` or `pxe-server#*`, or `tag:<tag>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Scope {
    terms: Vec<String>,
    selections: Vec<Selection>,
}

impl Scope {
    /// Parses every term; a bad one is named in the error.
    pub fn parse<S: AsRef<str>>(terms: &[S]) -> Result<Scope, AuthError> {
        let mut scope = Scope { terms: vec![], selections: vec![] };
        for term in terms.iter().map(|t| t.as_ref().trim()) {
            if term.is_empty() {
                return Err(AuthError::EmptyTerm);
            }
            let (pattern, tags) = match term.strip_prefix("tag:") {
                Some(tag) => (None, vec![tag.to_string()]),
                None => (Some(term), vec![]),
            };
            let invalid = |source| AuthError::Scope { term: term.into(), source };
            // Selection::parse checks patterns only when selecting; a scope is checked when given
            pattern.map(NamePattern::parse).transpose().map_err(invalid)?;
            let mut selection = Selection::parse(pattern, &tags, &[], None).map_err(invalid)?;
            // a scope names machines, managed or not; a deploy still acts on managed ones only
            selection.managed = ManagedFilter::All;
            scope.terms.push(term.to_string());
            scope.selections.push(selection);
        }
        Ok(scope)
    }

    pub fn terms(&self) -> &[String] {
        &self.terms
    }
}

impl TryFrom<Vec<String>> for Scope {
    type Error = AuthError;
    fn try_from(terms: Vec<String>) -> Result<Self, Self::Error> {
        Scope::parse(&terms)
    }
}

impl From<Scope> for Vec<String> {
    fn from(scope: Scope) -> Self {
        scope.terms
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// See machines, generations, history.
    View,
    /// Build, deploy or remove generations of the machines given.
    Deploy,
    /// Manage accounts and tokens of others, read the audit log, revoke sessions.
    Administer,
}

impl Action {
    fn needs(self) -> Role {
        match self {
            Action::View => Role::Viewer,
            Action::Deploy => Role::Deployer,
            Action::Administer => Role::Admin,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Why, in words fit to show the caller.
    Denied(String),
}

/// Whether an account with `role` and `scope` (`None`: every machine) may do `action` on
/// `machines`, resolved from the request's selection in `cluster`. A scope limits deployers
/// only: every machine of the request must be in it; admins are never limited and viewers
/// see everything they may see at all.
pub fn authorize(
    role: Role,
    scope: Option<&Scope>,
    action: Action,
    machines: &[&Machine],
    cluster: &Cluster,
) -> Decision {
    let needs = action.needs();
    if role < needs {
        return Decision::Denied(format!("this needs the {needs} role; the account is a {role}"));
    }
    let Some(scope) = scope.filter(|_| action == Action::Deploy && role == Role::Deployer) else {
        return Decision::Allowed;
    };
    let mut allowed: HashSet<&str> = HashSet::new();
    for selection in &scope.selections {
        // a term that cannot be resolved allows nothing rather than everything
        if let Ok(selected) = selection.select(cluster) {
            allowed.extend(selected.iter().map(|m| m.name.as_str()));
        }
    }
    let outside: Vec<&str> =
        machines.iter().map(|m| m.name.as_str()).filter(|n| !allowed.contains(n)).collect();
    if outside.is_empty() {
        Decision::Allowed
    } else {
        Decision::Denied(format!(
            "outside the account's scope ({}): {}",
            scope.terms.join(", "),
            outside.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Spin;
    use crate::cluster::model::tests::machine;

    /// pxe-server carries two machines; node1 and ci1 are tagged `ci`.
    fn cluster() -> Cluster {
        let mut ms = vec![
            machine("pxe-server", Spin::Nixos),
            machine("node1", Spin::Nixos),
            machine("node2", Spin::Nixos),
            machine("ci1", Spin::Nixos),
        ];
        ms[1].meta_config.tags = vec!["ci".into()];
        ms[3].meta_config.tags = vec!["ci".into()];
        for name in ["pxe-server#a", "pxe-server#b"] {
            let mut carried = machine(name, Spin::Nixos);
            carried.carrier = Some("pxe-server".into());
            carried.cluster_name = name.split_once('#').unwrap().1.into();
            ms.push(carried);
        }
        ms.sort_by(|a, b| a.name.cmp(&b.name));
        Cluster { machines: ms }
    }

    /// The machines a request resolves to, by the CLI's own selection rules.
    fn resolve<'a>(cluster: &'a Cluster, pattern: &str) -> Vec<&'a Machine> {
        Selection::parse(Some(pattern), &[], &[], Some("all")).unwrap().select(cluster).unwrap()
    }

    #[test]
    fn roles_by_action() {
        let cluster = cluster();
        let all = resolve(&cluster, "*");
        use Action::*;
        use Role::*;
        let table = [
            (Viewer, View, true),
            (Viewer, Deploy, false),
            (Viewer, Administer, false),
            (Deployer, View, true),
            (Deployer, Deploy, true),
            (Deployer, Administer, false),
            (Admin, View, true),
            (Admin, Deploy, true),
            (Admin, Administer, true),
        ];
        for (role, action, allowed) in table {
            let decision = authorize(role, None, action, &all, &cluster);
            assert_eq!(decision == Decision::Allowed, allowed, "{role} {action:?}: {decision:?}");
        }
        let Decision::Denied(why) = authorize(Viewer, None, Deploy, &all, &cluster) else {
            unreachable!()
        };
        assert_eq!(why, "this needs the deployer role; the account is a viewer");
    }

    #[test]
    fn scopes_by_selection() {
        let cluster = cluster();
        // (scope, requested selection, role, allowed)
        let table: &[(&[&str], &str, Role, bool)] = &[
            (&["tag:ci"], "node1", Role::Deployer, true),
            (&["tag:ci"], "ci1", Role::Deployer, true),
            (&["tag:ci"], "node*", Role::Deployer, false),
            (&["tag:ci"], "pxe-server#a", Role::Deployer, false),
            (&["pxe-server#*"], "pxe-server#*", Role::Deployer, true),
            (&["pxe-server#*"], "pxe-server#b", Role::Deployer, true),
            (&["pxe-server#*"], "pxe-server", Role::Deployer, false),
            (&["tag:ci", "pxe-server#*"], "{node1,ci1,pxe-server#a}", Role::Deployer, true),
            (&["tag:ci", "pxe-server#*"], "*", Role::Deployer, false),
            (&["node?"], "node*", Role::Deployer, true),
            (&["node1"], "node*", Role::Deployer, false),
            (&["tag:nosuch"], "node1", Role::Deployer, false),
            // a scope does not limit admins
            (&["tag:ci"], "*", Role::Admin, true),
        ];
        for &(terms, request, role, allowed) in table {
            let scope = Scope::parse(terms).unwrap();
            let machines = resolve(&cluster, request);
            assert!(!machines.is_empty(), "{request} resolves to nothing");
            let decision = authorize(role, Some(&scope), Action::Deploy, &machines, &cluster);
            assert_eq!(decision == Decision::Allowed, allowed, "{terms:?} {request}: {decision:?}");
        }
        // a scoped deployer still views everything
        let scope = Scope::parse(&["tag:ci"]).unwrap();
        let all = resolve(&cluster, "*");
        let view = authorize(Role::Deployer, Some(&scope), Action::View, &all, &cluster);
        assert_eq!(view, Decision::Allowed);
    }

    #[test]
    fn a_denial_names_the_machines_outside_the_scope() {
        let cluster = cluster();
        let scope = Scope::parse(&["tag:ci"]).unwrap();
        let machines = resolve(&cluster, "node*");
        let decision = authorize(Role::Deployer, Some(&scope), Action::Deploy, &machines, &cluster);
        assert_eq!(
            decision,
            Decision::Denied("outside the account's scope (tag:ci): node2".into())
        );
    }

    #[test]
    fn bad_scopes_and_roles_are_named() {
        assert_eq!(Scope::parse(&[" "]), Err(AuthError::EmptyTerm));
        let err = Scope::parse(&["node[", "tag:ci"]).unwrap_err();
        assert!(err.to_string().starts_with("invalid scope term 'node['"), "{err}");
        assert_eq!("root".parse::<Role>(), Err(AuthError::Role("root".into())));
        let scope: Scope = serde_json::from_str(r#"["tag:ci","pxe-server#*"]"#).unwrap();
        assert_eq!(serde_json::to_string(&scope).unwrap(), r#"["tag:ci","pxe-server#*"]"#);
    }
}
