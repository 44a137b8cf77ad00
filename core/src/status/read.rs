//! The reads of `carrier status` on one host: its system in one command (a constant
//! script: the three system links, when the profile was set, uptime, the running
//! system's info files), and of a carrier its carried profiles in one
//! `carrier profile list --json` and its netboot trees' last build in one
//! `carrier netboot last-build --json`.

use std::path::PathBuf;

use serde::Serialize;

use crate::carrier::netboot::{BootPreview, LastBuild};
use crate::carrier::profiles::ProfileListing;
use crate::remote::{Host, HostError, failure_message};

/// Where a standalone machine's state is read from.
pub const CURRENT_SYSTEM: &str = "/run/current-system";
pub const BOOTED_SYSTEM: &str = "/run/booted-system";
pub use crate::profile_name::SYSTEM_PROFILE;

/// Prints `<key> <value>` lines: the real paths of the three links (empty when one does
/// not exist), the system profile link's own mtime, the first field of /proc/uptime;
/// then each info file of the running system as `<name> <bytes>` followed by exactly that
/// many bytes. Constant text, no inputs. Needs only POSIX sh, `readlink -f`, `stat -c`
/// and `wc -c` (coreutils or busybox).
pub(crate) const SYSTEM_SCRIPT: &str = r#"for l in current:/run/current-system booted:/run/booted-system profile:/nix/var/nix/profiles/system; do
  p=${l#*:}
  if [ -e "$p" ]; then printf '%s %s\n' "${l%%:*}" "$(readlink -f "$p")"; fi
done
printf 'profile-time %s\n' "$(stat -c %Y /nix/var/nix/profiles/system 2>/dev/null)"
read -r up rest < /proc/uptime && printf 'uptime %s\n' "$up"
for f in inputs-info swpins-info; do
  p=/run/current-system/etc/confctl/$f.json
  if [ -f "$p" ]; then printf '%s %s\n' "$f" "$(wc -c < "$p" | tr -d ' ')"; cat "$p"; fi
done
"#;

/// What one read of a standalone host says.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SystemRead {
    /// Seconds since the host booted.
    pub uptime: Option<f64>,
    /// The real paths of `/run/current-system`, `/run/booted-system` and the system
    /// profile; None when the link does not exist.
    pub current: Option<PathBuf>,
    pub booted: Option<PathBuf>,
    pub profile: Option<PathBuf>,
    /// When the system profile was last set (its link's mtime), epoch seconds.
    pub profile_time: Option<i64>,
    #[serde(skip)]
    pub inputs_info: Option<serde_json::Value>,
    #[serde(skip)]
    pub swpins_info: Option<serde_json::Value>,
}

/// Why a host's read gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Connecting or running the command failed: the host counts as unreachable.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The host answered, but not what was asked.
    #[error("{0}")]
    Answer(String),
}

/// Reads a standalone host's system with one command.
pub async fn system(host: &impl Host) -> Result<SystemRead, ReadError> {
    let out = host.output(&["sh", "-c", SYSTEM_SCRIPT, "sh"]).await.map_err(shorter)?;
    if !out.status.success() {
        return Err(ReadError::Answer(format!(
            "reading the system state on {}: {}",
            host.name(),
            failure_message(&out)
        )));
    }
    parse_system(&out.stdout)
        .map_err(|e| ReadError::Answer(format!("reading the system state on {}: {e}", host.name())))
}

/// Errors name the system read by a short name, not by the script's text.
fn shorter(e: HostError) -> HostError {
    let command = "sh -c <status read>".to_string();
    match e {
        HostError::Run { host, message, .. } => HostError::Run { host, command, message },
        HostError::TimedOut { host, secs, .. } => HostError::TimedOut { host, command, secs },
        HostError::NoAnswer { host, secs, .. } => HostError::NoAnswer { host, command, secs },
        other => other,
    }
}

/// Parses [`SYSTEM_SCRIPT`]'s output.
pub fn parse_system(out: &[u8]) -> Result<SystemRead, String> {
    let mut read = SystemRead::default();
    let mut rest = out;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[(end + 1).min(rest.len())..];
        let (key, value) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let path = || (!value.is_empty()).then(|| PathBuf::from(value));
        match key {
            "current" => read.current = path(),
            "booted" => read.booted = path(),
            "profile" => read.profile = path(),
            "profile-time" => read.profile_time = value.trim().parse().ok(),
            "uptime" => read.uptime = value.trim().parse().ok(),
            "inputs-info" | "swpins-info" => {
                let len: usize = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{key}`: expected a byte count, found '{value}'"))?;
                if len > rest.len() {
                    return Err(format!("`{key}`: {len} bytes announced, {} sent", rest.len()));
                }
                // an unreadable file is left out, as upstream does
                let info = serde_json::from_slice(&rest[..len]).ok();
                rest = &rest[len..];
                if key == "inputs-info" {
                    read.inputs_info = info;
                } else {
                    read.swpins_info = info;
                }
            }
            "" => {}
            other => return Err(format!("unexpected line '{other} {value}'")),
        }
    }
    Ok(read)
}

/// The carried profiles of a carrier (`carrier profile list --json` there).
pub async fn profiles(host: &impl Host) -> Result<Vec<ProfileListing>, ReadError> {
    json_answer(host, &["carrier", "profile", "list", "--json"]).await
}

/// The last build of a carrier's netboot trees (`carrier netboot last-build --json`
/// there); `None` when none was recorded since it started.
pub async fn netboot(host: &impl Host) -> Result<Option<LastBuild>, ReadError> {
    json_answer(host, &["carrier", "netboot", "last-build", "--json"]).await
}

/// What a client with `mac` (normalised) gets from a carrier's published netboot trees
/// (`carrier netboot preview <mac> --json` there).
pub async fn boot_preview(host: &impl Host, mac: &str) -> Result<BootPreview, ReadError> {
    json_answer(host, &["carrier", "netboot", "preview", mac, "--json"]).await
}

/// A carrier command's JSON answer.
async fn json_answer<T: serde::de::DeserializeOwned>(
    host: &impl Host,
    argv: &[&str],
) -> Result<T, ReadError> {
    let out = host.output(argv).await?;
    let what = || format!("`{}` on {}", argv.join(" "), host.name());
    if !out.status.success() {
        return Err(ReadError::Answer(format!("{}: {}", what(), failure_message(&out))));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| ReadError::Answer(format!("{}: unreadable answer: {e}", what())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_answer_parses_and_bad_ones_are_named() {
        let out = b"current /nix/store/a\nprofile /nix/store/b\nprofile-time 1700000000\n\
uptime 12.50\ninputs-info 15\n{\"nixpkgs\":{}}\nswpins-info 3\n[1]";
        let read = parse_system(out).unwrap();
        assert_eq!(read.current, Some("/nix/store/a".into()));
        assert_eq!(read.booted, None);
        assert_eq!(read.profile, Some("/nix/store/b".into()));
        assert_eq!(read.profile_time, Some(1_700_000_000));
        assert_eq!(read.uptime, Some(12.5));
        assert_eq!(read.inputs_info, Some(serde_json::json!({"nixpkgs": {}})));
        assert_eq!(read.swpins_info, Some(serde_json::json!([1])));

        let e = parse_system(b"inputs-info 99\n{}").unwrap_err();
        assert_eq!(e, "`inputs-info`: 99 bytes announced, 2 sent");
        let e = parse_system(b"current /a\nsomething else\n").unwrap_err();
        assert_eq!(e, "unexpected line 'something else'");
    }
}
