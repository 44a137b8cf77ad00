//! The Nix profiles carrier deploys to, named in one place: a machine's own system
//! profile and a carried machine's `confctl-<alias with / -> :>` on its carrier (spec 1.4),
//! with the `confctl-<name>-<N>-link` generation links Nix creates next to it.

use std::fmt;

use crate::cluster::safe_name;

/// Where Nix keeps system-wide profiles: the system profile and the carried ones.
pub const PROFILES_DIR: &str = "/nix/var/nix/profiles";

/// The profile a machine's own system is activated from (`<PROFILES_DIR>/system`).
pub const SYSTEM_PROFILE: &str = "/nix/var/nix/profiles/system";

/// What every carried profile's file name starts with.
const PREFIX: &str = "confctl-";

/// The name of a carried machine's profile on its carrier: the carried alias with `/`
/// (not allowed in a file name) replaced by `:`. Its file is `confctl-<name>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileName(String);

impl ProfileName {
    /// The profile of a machine carried under `alias` (its alias, else its source name).
    pub fn for_alias(alias: &str) -> ProfileName {
        ProfileName(safe_name(alias))
    }

    /// The profile a file name in a profiles directory is: `confctl-<name>`, with a name,
    /// and not one of its generation links (`…-link`). None for anything else (the system
    /// profile, other profiles, links).
    pub fn from_file_name(file_name: &str) -> Option<ProfileName> {
        match file_name.strip_prefix(PREFIX) {
            Some(name) if !name.is_empty() && !name.ends_with("-link") => {
                Some(ProfileName(name.to_string()))
            }
            _ => None,
        }
    }

    /// The name without the prefix (`prg:node1`), as profile listings and reports show it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// `confctl-<name>`.
    pub fn file_name(&self) -> String {
        format!("{PREFIX}{}", self.0)
    }

    /// `<PROFILES_DIR>/confctl-<name>`: where a deploy sets the profile on the carrier.
    pub fn path(&self) -> String {
        format!("{PROFILES_DIR}/{}", self.file_name())
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Splits a directory entry name into `(profile name, generation number)` when it is a
/// generation link: `^confctl-(.+)-(\d+)-link$` with a greedy name, so the name is
/// everything before the *last* `-<digits>-link` and dashed names work.
pub fn parse_generation_link(file_name: &str) -> Option<(ProfileName, u64)> {
    let rest = file_name.strip_prefix(PREFIX)?.strip_suffix("-link")?;
    let (name, number) = rest.rsplit_once('-')?;
    if name.is_empty() || number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((ProfileName(name.to_string()), number.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alias_with_slashes_names_a_file() {
        let p = ProfileName::for_alias("prg/node1");
        assert_eq!(p.as_str(), "prg:node1");
        assert_eq!(p.to_string(), "prg:node1");
        assert_eq!(p.file_name(), "confctl-prg:node1");
        assert_eq!(p.path(), "/nix/var/nix/profiles/confctl-prg:node1");
        assert_eq!(ProfileName::for_alias("a/b/c").as_str(), "a:b:c");
        assert_eq!(ProfileName::for_alias("node1").path(), "/nix/var/nix/profiles/confctl-node1");
    }

    #[test]
    fn the_system_profile_is_in_the_profiles_dir() {
        assert_eq!(SYSTEM_PROFILE, format!("{PROFILES_DIR}/system"));
        // The system profile is never a carried one.
        assert_eq!(ProfileName::from_file_name("system"), None);
    }

    #[test]
    fn file_names_round_trip_and_links_are_not_profiles() {
        let p = ProfileName::for_alias("prg/node1");
        assert_eq!(ProfileName::from_file_name(&p.file_name()), Some(p));
        assert_eq!(ProfileName::from_file_name("confctl-"), None);
        assert_eq!(ProfileName::from_file_name("confctl-node1-3-link"), None);
        assert_eq!(ProfileName::from_file_name("node1"), None);
    }

    #[test]
    fn generation_link_names() {
        assert_eq!(
            parse_generation_link("confctl-node1-3-link"),
            Some((ProfileName("node1".into()), 3))
        );
        assert_eq!(
            parse_generation_link("confctl-my-node-2-12-link"),
            Some((ProfileName("my-node-2".into()), 12))
        );
        assert_eq!(
            parse_generation_link("confctl-os:node2-1-link"),
            Some((ProfileName("os:node2".into()), 1))
        );
        assert_eq!(parse_generation_link("confctl-node1"), None);
        assert_eq!(parse_generation_link("confctl--1-link"), None);
        assert_eq!(parse_generation_link("confctl-x-1a-link"), None);
        assert_eq!(parse_generation_link("system-1-link"), None);
        assert_eq!(parse_generation_link("confctl-x--link"), None);
    }
}
