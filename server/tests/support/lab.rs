//! A lab of a configuration's hosts for one test (`carrier lab up`: sshd hosts with their
//! own `/nix`; examples/lab unless told otherwise), on a copy of the configuration that the
//! test may edit; taken down, with the build generations' GC roots, when it is dropped.
//! Test files wrap it in their own `Lab` (`Deref`) to add what only they need.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::cli::{Carrier, lab_ssh, ok};

pub(crate) struct Lab {
    tmp: tempfile::TempDir,
}

impl Lab {
    /// A copy of examples/lab (without its local state) and a lab of its hosts.
    pub(crate) fn up() -> Lab {
        Lab::up_from("examples/lab")
    }

    /// A copy of `fixture` (a configuration directory, relative to the workspace; without
    /// its local state) and a lab of its hosts.
    pub(crate) fn up_from(fixture: &str) -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(fixture);
        let conf = tmp.path().join("conf");
        ok(&Command::new("cp").arg("-r").arg(&example).arg(&conf).output().unwrap());
        let _ = std::fs::remove_dir_all(conf.join(".confctl"));
        let lab = Lab { tmp };
        ok(&lab.carrier(&["lab", "up", "--dir", lab.dir().to_str().unwrap()]));
        lab
    }

    /// The test's temporary directory (configuration, lab, caches below it).
    pub(crate) fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    pub(crate) fn conf(&self) -> PathBuf {
        self.tmp().join("conf")
    }

    pub(crate) fn dir(&self) -> PathBuf {
        self.tmp().join("lab")
    }

    pub(crate) fn host_root(&self, alias: &str) -> PathBuf {
        self.dir().join("hosts").join(alias)
    }

    /// `carrier` on this lab, with configuration directory `conf` and cache `cache` (below
    /// the test's temporary directory).
    pub(crate) fn cli(&self, conf: &Path, cache: &str) -> Carrier {
        Carrier::new()
            .conf(conf)
            .cache(self.tmp().join(cache))
            .ssh_config(self.dir().join("ssh_config"))
    }

    pub(crate) fn carrier(&self, args: &[&str]) -> Output {
        self.cli(&self.conf(), "cache").output(args)
    }

    /// A command on a lab host; its exit status is checked.
    pub(crate) fn ssh(&self, alias: &str, argv: &[&str]) -> String {
        lab_ssh(&self.dir().join("ssh_config"), alias, argv)
    }

    /// The name of the machine's current build generation.
    pub(crate) fn generation_name(&self, machine: &str) -> String {
        let dir = self.conf().join(".confctl/generations").join(machine.replace('/', ":"));
        let link = std::fs::read_link(dir.join("current")).unwrap();
        link.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// Sets `confctl.marker` in the `config.nix` of `machines` (a change that makes a new
    /// system).
    pub(crate) fn set_marker(&self, machines: &[&str], marker: &str) {
        for m in machines {
            let f = self.conf().join("cluster").join(m).join("config.nix");
            let text = std::fs::read_to_string(&f).unwrap();
            let re = text.find("confctl.marker = \"").expect("config sets confctl.marker");
            let start = re + "confctl.marker = \"".len();
            let end = start + text[start..].find('"').unwrap();
            std::fs::write(&f, format!("{}{marker}{}", &text[..start], &text[end..])).unwrap();
        }
    }

    /// Stops the sshd of lab host `alias` (the PID `lab up` recorded, which this test
    /// started), as a host going down, and waits until it is gone.
    pub(crate) fn stop(&self, alias: &str) {
        let lab: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir().join("lab.json")).unwrap()).unwrap();
        let hosts = lab["hosts"].as_array().unwrap();
        let host = hosts.iter().find(|h| h["alias"] == alias).unwrap_or_else(|| panic!("{lab}"));
        let pid = host["pid"].as_u64().unwrap().to_string();
        ok(&Command::new("kill").arg(&pid).output().unwrap());
        // gone, or a zombie of a PID 1 that does not reap
        let gone = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => {
                s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with(['Z', 'X']))
            }
            Err(_) => true,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !gone() {
            assert!(std::time::Instant::now() < deadline, "sshd {pid} of {alias} did not stop");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Live processes whose command line names this lab's ssh_config (SSH masters).
    pub(crate) fn ssh_processes(&self) -> Vec<String> {
        let cfg = self.dir().join("ssh_config").display().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&cfg))
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.carrier(&["lab", "down", "--dir", self.dir().to_str().unwrap(), "--purge"]);
        if let Ok(conf) = carrier_core::conf_dir::ConfDir::resolve(&self.conf()) {
            let _ = std::fs::remove_dir_all(carrier_core::build::default_gc_roots_dir(&conf));
        }
    }
}

/// Declares a test file's `Lab`: the shared [`Lab`] (through `Deref`) and `Lab::up()`; the
/// file adds its own methods in an `impl Lab` of its own.
#[allow(unused_macros)] // not every test binary has a lab
macro_rules! lab_type {
    () => {
        /// The shared lab ([`support::lab::Lab`]) with what these tests add.
        struct Lab(support::lab::Lab);

        impl std::ops::Deref for Lab {
            type Target = support::lab::Lab;
            fn deref(&self) -> &support::lab::Lab {
                &self.0
            }
        }

        impl Lab {
            fn up() -> Lab {
                Lab(support::lab::Lab::up())
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use lab_type;
