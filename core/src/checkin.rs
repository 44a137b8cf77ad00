//! Check-in credentials of netbooted machines: one secret per carrier, and per (carrier,
//! machine) a token derived from it, so a machine holding its own token can report only
//! for itself, and another carrier's secret proves nothing. Decisions: docs/status.md.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of a carrier secret (written as hex).
pub const SECRET_LEN: usize = 32;

/// Separates this use of the secret from any other.
const LABEL: &[u8] = b"carrier-checkin-v1\0";

#[derive(Debug, thiserror::Error)]
pub enum CheckinError {
    // `error`, not `source`: the message carries it, so it is not shown twice in a chain
    #[error("reading the check-in secret '{}': {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error(
        "the check-in secret '{}' is readable or writable by others (mode {mode:o}): it must be \
         0600 or stricter",
        path.display()
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the check-in secret '{}' is not {SECRET_LEN} bytes written as hex", path.display())]
    Malformed { path: PathBuf },
    #[error("creating the check-in secret '{}': {error}", path.display())]
    Create { path: PathBuf, error: std::io::Error },
}

/// A carrier's check-in secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; SECRET_LEN]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// Reads a secret file: hex text (surrounding white space ignored), mode 0600 or stricter.
    pub fn read(path: &Path) -> Result<Secret, CheckinError> {
        let read = |error| CheckinError::Read { path: path.to_path_buf(), error };
        let meta = std::fs::metadata(path).map_err(read)?;
        if meta.mode() & 0o077 != 0 {
            return Err(CheckinError::Exposed {
                path: path.to_path_buf(),
                mode: meta.mode() & 0o7777,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let mut bytes = [0; SECRET_LEN];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|_| CheckinError::Malformed { path: path.to_path_buf() })?;
        Ok(Secret(bytes))
    }

    /// Writes a new random secret to `path` (mode 0600). An existing file is left alone
    /// and refused: replacing a secret invalidates every token the carrier serves.
    pub fn create(path: &Path) -> Result<Secret, CheckinError> {
        use std::io::{Read, Write};
        use std::os::unix::fs::DirBuilderExt;
        use std::os::unix::fs::OpenOptionsExt;
        let create = |error| CheckinError::Create { path: path.to_path_buf(), error };
        let mut bytes = [0; SECRET_LEN];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut r| r.read_exact(&mut bytes))
            .map_err(create)?;
        // a missing directory (`.confctl/checkin/`) is made, private
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(create)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(create)?;
        let written = file
            .write_all(format!("{}\n", hex::encode(bytes)).as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(error) = written {
            // no half-written secret is left behind
            let _ = std::fs::remove_file(path);
            return Err(create(error));
        }
        Ok(Secret(bytes))
    }

    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Secret {
        Secret(bytes)
    }

    fn mac(&self, carrier: &str, machine: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        for part in [LABEL, carrier.as_bytes(), b"\0", machine.as_bytes()] {
            mac.update(part);
        }
        mac
    }

    /// The token of `machine` (its profile name) on `carrier`, as hex.
    pub fn token(&self, carrier: &str, machine: &str) -> String {
        hex::encode(self.mac(carrier, machine).finalize().into_bytes())
    }

    /// Whether `token` is the token of `machine` on `carrier`; compared in constant time.
    pub fn verify(&self, carrier: &str, machine: &str, token: &str) -> bool {
        let mut given = [0; 32];
        hex::decode_to_slice(token, &mut given).is_ok()
            && self.mac(carrier, machine).verify_slice(&given).is_ok()
    }

    /// A value that changes with the secret and reveals nothing of it (cache keys).
    pub fn fingerprint(&self) -> String {
        self.token("", "fingerprint")
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn secret(byte: u8) -> Secret {
        Secret::from_bytes([byte; SECRET_LEN])
    }

    #[test]
    fn a_token_is_valid_for_its_carrier_and_machine_only() {
        let (a, b) = (secret(1), secret(2));
        let token = a.token("pxe", "node1");
        assert_eq!(token.len(), 64);
        assert!(a.verify("pxe", "node1", &token));
        assert!(!a.verify("pxe", "node2", &token), "another machine's token");
        assert!(!a.verify("pxe2", "node1", &token), "the same machine name on another carrier");
        assert!(!b.verify("pxe", "node1", &token), "minted with another carrier's secret");
        assert!(!a.verify("pxe", "node1", &token[..62]), "truncated");
        assert!(!a.verify("pxe", "node1", ""), "missing");
        assert!(!a.verify("pxe", "node1", &"zz".repeat(32)), "not hex");
        // the separator keeps ("a", "bc") and ("ab", "c") apart
        assert_ne!(a.token("a", "bc"), a.token("ab", "c"));
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn secret_files_must_be_private_and_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkin.secret");
        std::fs::write(&path, format!("{}\n", "ab".repeat(SECRET_LEN))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Secret::read(&path).unwrap_err().to_string();
        assert!(err.contains("readable or writable by others (mode 644)"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Secret::read(&path).unwrap(), Secret::from_bytes([0xab; SECRET_LEN]));
        std::fs::write(&path, "abcd").unwrap();
        let err = Secret::read(&path).unwrap_err().to_string();
        assert!(err.contains("is not 32 bytes written as hex"), "{err}");
        assert_eq!(format!("{:?}", secret(7)), "Secret(***)");
    }

    #[test]
    fn a_new_secret_is_random_private_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.secret"), dir.path().join("b.secret"));
        let secret = Secret::create(&a).unwrap();
        assert_eq!(std::fs::metadata(&a).unwrap().mode() & 0o777, 0o600);
        assert_eq!(Secret::read(&a).unwrap(), secret);
        assert_ne!(Secret::create(&b).unwrap(), secret);
        let err = Secret::create(&a).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("creating the check-in secret '{}'", a.display())),
            "{err}"
        );
        assert_eq!(Secret::read(&a).unwrap(), secret, "left alone");
    }

    #[test]
    fn a_new_secret_gets_its_directory_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".confctl/checkin/pxe.secret");
        let secret = Secret::create(&file).unwrap();
        assert_eq!(Secret::read(&file).unwrap(), secret);
        let checkin = std::fs::metadata(file.parent().unwrap()).unwrap();
        assert_eq!(checkin.mode() & 0o777, 0o700);
    }
}
