//! QEMU PXE boots with a captured serial console.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::initramfs::marker_line;
use super::tools::tools;

/// The host's loopback as QEMU's user-mode guest sees it.
pub(crate) const GUEST_HOST: &str = "10.0.2.2";

/// Boot failures that end a boot early instead of waiting for the timeout.
pub(crate) const DEFAULT_FAIL_PATTERNS: &[&str] = &[
    "Could not find kernel image",
    "failed: No such file or directory",
    "\nboot: ",
    "Failed to load ",
    "Kernel panic",
    "No more network devices",
    "(http://ipxe.org/",
    "PXE-E",
    "Boot failed",
];

/// Where the guest's boot program comes from.
#[derive(Debug, Clone)]
pub(crate) enum BootSource {
    /// QEMU's built-in TFTP server serves `root`; DHCP hands out `bootfile` (`pxelinux.0`,
    /// or an iPXE script).
    BuiltinTftp { root: PathBuf, bootfile: String },
    /// DHCP hands out a URL that iPXE fetches: `http://10.0.2.2:<port>/x.ipxe` (nginx on
    /// loopback), `tftp://<lab service address>/pxelinux.0` (real atftpd in a [`Lab`]).
    /// QEMU's built-in TFTP server is off.
    Url(String),
    /// No network boot: QEMU loads `kernel` and `initrd` itself with the command line
    /// `append` (what a kexec of them would start).
    Direct { kernel: PathBuf, initrd: PathBuf, append: String },
}

/// One QEMU PXE boot.
#[derive(Debug, Clone)]
pub(crate) struct BootSpec {
    pub source: BootSource,
    /// The NIC's MAC, e.g. `52:54:00:12:34:56` (pxelinux asks for `01-52-54-00-12-34-56`).
    pub mac: String,
    /// Hard limit for the whole boot (default 60 s), from QEMU's start.
    pub timeout: Duration,
    /// Serial output that fails the boot at once.
    pub fail_on: Vec<String>,
    pub memory_mb: u32,
    /// UEFI firmware (OVMF) instead of the BIOS: the NIC's iPXE runs as an EFI driver.
    pub uefi: bool,
    /// The NIC model (default `e1000`; `virtio-net-pci` for a booted system that uses the
    /// network: the cloud kernel has no e1000 driver, see `Tools::kernel_modules`).
    pub nic: String,
}

/// Debian's OVMF (package `ovmf`).
pub(crate) const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

impl BootSpec {
    pub(crate) fn new(source: BootSource, mac: &str) -> BootSpec {
        BootSpec {
            source,
            mac: mac.to_string(),
            timeout: Duration::from_secs(60),
            fail_on: DEFAULT_FAIL_PATTERNS.iter().map(|s| s.to_string()).collect(),
            memory_mb: 256,
            uefi: false,
            nic: "e1000".to_string(),
        }
    }
}

/// A key sent to the serial console (a menu.c32 menu reads serial input as key presses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    Up,
    Down,
    Enter,
    Tab,
    Esc,
    Text(String),
}

impl Key {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        match self {
            Key::Up => b"\x1b[A".to_vec(),
            Key::Down => b"\x1b[B".to_vec(),
            Key::Enter => b"\r".to_vec(),
            Key::Tab => b"\t".to_vec(),
            Key::Esc => b"\x1b".to_vec(),
            Key::Text(s) => s.as_bytes().to_vec(),
        }
    }
}

/// Wait until `wait_for` appears in the serial output (after the previous step's match),
/// then send `keys`.
#[derive(Debug, Clone)]
pub(crate) struct MenuStep {
    pub wait_for: String,
    pub keys: Vec<Key>,
}

impl MenuStep {
    pub(crate) fn new(wait_for: &str, keys: &[Key]) -> MenuStep {
        MenuStep { wait_for: wait_for.to_string(), keys: keys.to_vec() }
    }
}

/// Removes ANSI escape sequences, carriage returns and other control characters (SO/SI,
/// BEL) from serial output.
pub(crate) fn strip_ansi(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\x1b' => match it.next() {
                Some('[') => {
                    // CSI: parameter and intermediate bytes, then one final byte 0x40..=0x7e.
                    for n in it.by_ref() {
                        if ('\x40'..='\x7e').contains(&n) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    // OSC: up to BEL or ESC \.
                    while let Some(n) = it.next() {
                        if n == '\x07' {
                            break;
                        }
                        if n == '\x1b' {
                            it.next();
                            break;
                        }
                    }
                }
                Some('(' | ')' | '*' | '+' | '#' | '%') => {
                    it.next();
                }
                _ => {}
            },
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// What an initramfs from [`build_initramfs`] printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub machine: String,
    pub generation: u64,
    /// `/proc/cmdline` of the booted kernel.
    pub cmdline: String,
}

/// The first marker in (stripped) serial output.
pub(crate) fn find_marker(serial: &str) -> Option<Marker> {
    let start = serial.find("NETBOOT-OK machine=")?;
    let rest = &serial[start + "NETBOOT-OK machine=".len()..];
    let machine: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    let rest = rest[machine.len()..].trim_start_matches(' ').strip_prefix("gen=")?;
    let generation =
        rest.chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()?;
    let cl = rest.find("NETBOOT-CMDLINE: ")?;
    let cmdline =
        rest[cl + "NETBOOT-CMDLINE: ".len()..].lines().next().unwrap_or("").trim().to_string();
    Some(Marker { machine, generation, cmdline })
}

/// The result of a finished boot.
#[derive(Debug, Clone)]
pub(crate) struct BootLog {
    /// Serial output, ANSI escapes stripped.
    pub serial: String,
    /// QEMU's stderr.
    pub stderr: String,
    pub status: ExitStatus,
    pub elapsed: Duration,
}

impl BootLog {
    pub(crate) fn marker(&self) -> Option<Marker> {
        find_marker(&self.serial)
    }

    /// The marker, which must name `machine` and `generation`.
    pub(crate) fn expect_marker(&self, machine: &str, generation: u64) -> Result<Marker> {
        match self.marker() {
            Some(m) if m.machine == machine && m.generation == generation => Ok(m),
            other => bail!(
                "expected {}, found {other:?}; serial output:\n{}",
                marker_line(machine, generation),
                tail(&self.serial, 4000)
            ),
        }
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

// Boots take a core each under TCG: at most CARRIER_NETLAB_BOOTS (default 2) at a time.
struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

fn slots() -> &'static Slots {
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let n = std::env::var("CARRIER_NETLAB_BOOTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2usize)
            .max(1);
        Slots { free: Mutex::new(n), cv: Condvar::new() }
    })
}

struct SlotPermit;

impl SlotPermit {
    fn acquire() -> SlotPermit {
        let s = slots();
        let mut free = s.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = s.cv.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        SlotPermit
    }
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        let s = slots();
        *s.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        s.cv.notify_one();
    }
}

/// A running QEMU PXE boot: serial console on stdio (`-nographic`), captured; keys go to
/// its stdin. Killed (by PID) on drop or when the boot's deadline passes.
pub(crate) struct Qemu {
    child: Child,
    stdin: Option<ChildStdin>,
    serial: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    cursor: usize,
    started: Instant,
    deadline: Instant,
    spec: BootSpec,
    _slot: SlotPermit,
}

fn capture(r: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut r = r;
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&chunk[..n]);
        }
    })
}

impl Qemu {
    /// Starts the boot (waiting first for a free boot slot; the timeout starts after that).
    pub(crate) fn start(spec: &BootSpec) -> Result<Qemu> {
        let slot = SlotPermit::acquire();
        let esc = |p: &str| p.replace(',', ",,");
        let netdev = match &spec.source {
            BootSource::BuiltinTftp { root, bootfile } => {
                format!(
                    "user,id=n0,tftp={},bootfile={}",
                    esc(&root.to_string_lossy()),
                    esc(bootfile)
                )
            }
            BootSource::Url(url) => format!("user,id=n0,bootfile={}", esc(url)),
            BootSource::Direct { .. } => "user,id=n0".to_string(),
        };
        let mut cmd = Command::new(&tools().qemu);
        cmd.args(["-machine", "pc,accel=tcg", "-m", &spec.memory_mb.to_string(), "-smp", "1"])
            .args(["-nographic", "-no-reboot", "-boot", "order=n,reboot-timeout=0"])
            .args(if spec.uefi { vec!["-bios", OVMF] } else { vec![] })
            .args(match &spec.source {
                BootSource::Direct { kernel, initrd, append } => {
                    vec![
                        "-kernel".into(),
                        kernel.clone().into_os_string(),
                        "-initrd".into(),
                        initrd.clone().into_os_string(),
                        "-append".into(),
                        append.into(),
                    ]
                }
                _ => Vec::<std::ffi::OsString>::new(),
            })
            .args(["-netdev", &netdev])
            .args(["-device", &format!("{},netdev=n0,mac={}", spec.nic, spec.mac)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
        let serial = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            capture(child.stdout.take().expect("stdout"), serial.clone()),
            capture(child.stderr.take().expect("stderr"), stderr.clone()),
        ];
        Ok(Qemu {
            stdin: child.stdin.take(),
            child,
            serial,
            stderr,
            readers,
            cursor: 0,
            started,
            deadline: started + spec.timeout,
            spec: spec.clone(),
            _slot: slot,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The serial output so far, ANSI escapes stripped.
    pub(crate) fn serial(&self) -> String {
        strip_ansi(&self.serial.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    fn failure(&self, what: &str) -> anyhow::Error {
        anyhow!(
            "QEMU boot (mac {}, {:?}): {what} after {:.1}s\nstderr: {}\nserial output:\n{}",
            self.spec.mac,
            self.spec.source,
            self.started.elapsed().as_secs_f64(),
            self.stderr_text().trim(),
            tail(&self.serial(), 4000)
        )
    }

    fn check_failed(&self, serial: &str) -> Result<()> {
        for p in &self.spec.fail_on {
            if serial.contains(p.as_str()) {
                return Err(self.failure(&format!("the serial output shows {p:?}")));
            }
        }
        Ok(())
    }

    /// Waits until `needle` appears in the serial output after the previous match, at most
    /// `timeout` (and never past the boot's deadline).
    pub(crate) fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = self.deadline.min(Instant::now() + timeout);
        loop {
            let serial = self.serial();
            if let Some(pos) = serial.get(self.cursor..).and_then(|s| s.find(needle)) {
                self.cursor += pos + needle.len();
                return Ok(());
            }
            self.check_failed(&serial)?;
            if let Some(status) = self.child.try_wait()? {
                return Err(
                    self.failure(&format!("QEMU exited ({status}) before {needle:?} appeared"))
                );
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                return Err(self.failure(&format!("timeout waiting for {needle:?}")));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends keys to the serial console, 200 ms apart.
    pub(crate) fn send_keys(&mut self, keys: &[Key]) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow!("QEMU's stdin is closed"))?;
        for k in keys {
            stdin.write_all(&k.bytes())?;
            stdin.flush()?;
            thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Waits for QEMU to exit (the initramfs powers off; `-no-reboot`), killing it at the
    /// boot's deadline.
    pub(crate) fn wait_exit(mut self) -> Result<BootLog> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return Ok(BootLog {
                    serial: self.serial(),
                    stderr: self.stderr_text(),
                    status,
                    elapsed: self.started.elapsed(),
                });
            }
            self.check_failed(&self.serial())?;
            if Instant::now() >= self.deadline {
                let _ = self.child.kill();
                return Err(self.failure("timeout (QEMU killed)"));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.stdin.take();
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Boots `spec`, walking the menu `steps`, and waits for QEMU to power off.
pub(crate) fn boot(spec: &BootSpec, steps: &[MenuStep]) -> Result<BootLog> {
    let mut q = Qemu::start(spec)?;
    for step in steps {
        q.wait_for(&step.wait_for, spec.timeout)?;
        q.send_keys(&step.keys)?;
    }
    let log = q.wait_exit()?;
    eprintln!(
        "netlab: boot of {} ({:?}) took {:.1}s",
        spec.mac,
        spec.source,
        log.elapsed.as_secs_f64()
    );
    Ok(log)
}

/// [`boot`], then the marker, which must name `machine` and `generation`.
pub(crate) fn boot_expect(
    spec: &BootSpec,
    steps: &[MenuStep],
    machine: &str,
    generation: u64,
) -> Result<(Marker, BootLog)> {
    let log = boot(spec, steps)?;
    let m = log.expect_marker(machine, generation)?;
    Ok((m, log))
}

/// An iPXE script booting `kernel` with `initrd` and the kernel command line `cmdline`.
pub(crate) fn ipxe_script(kernel_url: &str, initrd_url: &str, cmdline: &str) -> String {
    format!("#!ipxe\nkernel {kernel_url} {cmdline}\ninitrd {initrd_url}\nboot\n")
}

/// A set of names, for checks such as "atftpd served exactly these files".
pub(crate) fn served_by_atftpd(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|l| l.split("Serving ").nth(1))
        .filter_map(|r| r.split(" to ").next())
        .map(str::to_string)
        .collect()
}
