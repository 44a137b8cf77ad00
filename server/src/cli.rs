//! Command-line interface definitions (clap). Every command that takes machines uses
//! [`SelectArgs`], which parses into carrier-core's shared `Selection`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use carrier_core::cluster::Selection;
use carrier_core::conf_dir::{ConfDir, ConfDirError};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "carrier", version, about = "Deploy and netboot clusters of NixOS-style machines")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct GlobalArgs {
    /// The configuration directory: the one holding cluster/<name>/module.nix.
    #[arg(
        short = 'C',
        long = "config",
        env = "CARRIER_CONFIG",
        default_value = ".",
        global = true
    )]
    pub config: PathBuf,
    /// Where evaluated inventories are cached [default: $XDG_CACHE_HOME/carrier]
    #[arg(long, env = "CARRIER_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// The database of records (builds, deploys) and of the dashboard: sqlite://<file> or
    /// postgres://... [default: sqlite://<config dir>/.confctl/carrier.sqlite]
    #[arg(long, env = "CARRIER_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
}

impl GlobalArgs {
    /// The configuration directory, resolved to its real path.
    pub fn conf_dir(&self) -> Result<ConfDir, ConfDirError> {
        ConfDir::resolve(&self.config)
    }

    pub fn inventory(
        &self,
    ) -> Result<carrier_core::cluster::Inventory, carrier_core::cluster::InventoryError> {
        let dir = match &self.cache_dir {
            Some(dir) => dir.clone(),
            None => carrier_core::cluster::Inventory::default_cache_dir()?,
        };
        Ok(carrier_core::cluster::Inventory::new(dir))
    }

    /// `--database-url`, else the configuration directory's SQLite file: one database for
    /// the CLI and `carrier serve`.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| carrier_storage::default_url(&self.config))
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// List machines (carried machines included) as a table or JSON.
    Ls(LsArgs),
    /// Build the selected managed machines and record local build generations.
    Build(BuildArgs),
    /// Run the web dashboard.
    Serve(ServeArgs),
    /// Carried profiles on this carrier (run here by deploys of `<carrier>#<machine>`).
    Profile(ProfileArgs),
    /// The netboot server of this carrier.
    Netboot(NetbootArgs),
    /// Build, copy and activate machines; `<carrier>#<machine>` sets carried profiles.
    Deploy(DeployArgs),
    /// What each machine runs or has staged, against its last build (or `-g`).
    Status(StatusArgs),
    /// Simulated hosts (sshd in their own mount namespaces) for real deploys on one machine.
    Lab(LabArgs),
    /// On a netbooted machine: load (kexec) another generation its carrier offers.
    KexecNetboot(KexecNetbootArgs),
    /// Generations: local build generations, host and carried generations.
    Generation(GenerationArgs),
    /// Run nix-collect-garbage on the selected machines (carriers included; carried
    /// machines have no store of their own).
    CollectGarbage(CollectGarbageArgs),
    /// Whether each selected machine answers over SSH (`cat /proc/uptime`); exits
    /// non-zero when one does not. Carried machines are not reached directly.
    TestConnection(TestConnectionArgs),
    /// Recorded builds and deploys, newest first, with each machine's outcome.
    History(HistoryArgs),
    /// Run the selected machines' health checks against what they run now (no deploy);
    /// exits non-zero when a check fails.
    HealthCheck(HealthCheckArgs),
    /// With one machine and no command: an interactive shell on it. With a command
    /// (after the pattern, or after `--`): that command on every selected machine, each
    /// output line prefixed by the machine, then every exit status; exits non-zero when
    /// one failed. Carried machines are reached at a host of their own only.
    Ssh(SshArgs),
    /// Manage dashboard accounts: add (the first admin too), change a password, remove, list.
    User(UserArgs),
    /// Manage API tokens of accounts: create (shown once), list, revoke.
    Token(TokenArgs),
    /// The audit log of account, token and other changes, newest first.
    Audit(AuditArgs),
}

#[derive(Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add an account; the password is asked twice on the terminal or read from a file.
    Add {
        name: String,
        /// viewer, deployer or admin.
        #[arg(long)]
        role: String,
        /// Limit a deployer to these machines: a name pattern, tag:<tag> or <carrier>#*
        /// (repeatable; the union). Without it: every machine.
        #[arg(long)]
        scope: Vec<String>,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Change an account's password; its sessions end.
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Remove an account with its sessions and tokens.
    Rm { name: String },
    /// Disable an account: its sessions end, it cannot sign in, its tokens match nothing.
    Disable { name: String },
    /// Enable a disabled account again (its ended sessions stay ended).
    Enable { name: String },
    /// List accounts.
    Ls {
        /// Print JSON: a list of accounts.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct PasswordArgs {
    /// Read the password from this file (its first line) instead of the terminal.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token for an account and print it, once.
    Create {
        /// The account the token acts for.
        #[arg(long)]
        user: String,
        /// The token's name, unique per account.
        name: String,
        /// The role the token acts with, at most the account's [default: the account's].
        #[arg(long)]
        rights: Option<String>,
        /// Narrow the token to these machines (as `user add --scope`) [default: the
        /// account's scope].
        #[arg(long)]
        scope: Vec<String>,
        /// Days until the token expires.
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
    /// List tokens (never their secrets).
    Ls {
        /// Only this account's.
        #[arg(long)]
        user: Option<String>,
        /// Print JSON: a list of tokens.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an account's token by name.
    Revoke {
        #[arg(long)]
        user: String,
        name: String,
    },
}

#[derive(Args)]
pub struct AuditArgs {
    /// Print JSON: a list of entries.
    #[arg(long)]
    pub json: bool,
    /// At most this many entries.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub limit: u32,
    /// Only entries of this actor.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only entries of this action (e.g. user.add, token.revoke).
    #[arg(long)]
    pub action: Option<String>,
}

#[derive(Args)]
pub struct GenerationArgs {
    #[command(subcommand)]
    pub command: GenerationCommand,
}

#[derive(Subcommand)]
pub enum GenerationCommand {
    /// List generations: local build generations (default), host or carried ones (-r),
    /// or both (-l -r), joined where they hold the same store path.
    Ls(GenerationLsArgs),
    /// Remove generations: `rm [pattern] <selector>` with a selector `N`/`-N` (offset:
    /// 0 the newest, 1 the oldest, -1 the one before the newest), `old`, `Nd` (older
    /// than N days), `+N` (all but the newest N) or a name/glob. Never the current one.
    Rm(GenerationRmArgs),
    /// Remove generations by the retention limits (`buildGenerations`,
    /// `hostGenerations`: min, max, maxAge), then collect garbage where configured.
    Rotate(GenerationRotateArgs),
}

/// Where generations are read and changed.
#[derive(Args)]
pub struct GenerationSource {
    /// Local build generations (the default without -r).
    #[arg(short = 'l', long)]
    pub local: bool,
    /// Generations on the hosts: the system profile, or the carried profile on the carrier.
    #[arg(short = 'r', long)]
    pub remote: bool,
    /// ssh_config with the hosts' aliases (a lab's `ssh_config`, for example).
    #[arg(long, env = "CARRIER_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
    /// Seconds a command on a host may run (garbage collection included).
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub command_timeout: u64,
}

/// Garbage collection after remote changes.
#[derive(Args)]
pub struct GcArgs {
    /// Do not run nix-collect-garbage after removing remote generations.
    #[arg(long = "no-gc", visible_alias = "no-collect-garbage")]
    pub no_gc: bool,
    /// Hosts collecting garbage at the same time.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_concurrent_gc: u64,
}

#[derive(Args)]
pub struct GenerationLsArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Only generations this selector names (as for `rm`; the current one included).
    #[arg(allow_hyphen_values = true)]
    pub generation: Option<String>,
    #[command(flatten)]
    pub source: GenerationSource,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct GenerationRmArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// The selector; with a single argument, that argument is the selector and every
    /// selected machine is concerned.
    #[arg(allow_hyphen_values = true)]
    pub selector: Option<String>,
    #[command(flatten)]
    pub source: GenerationSource,
    #[command(flatten)]
    pub gc: GcArgs,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
}

#[derive(Args)]
pub struct GenerationRotateArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub source: GenerationSource,
    #[command(flatten)]
    pub gc: GcArgs,
    /// Print what would be removed, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
}

#[derive(Args)]
pub struct CollectGarbageArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Hosts collecting garbage at the same time.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_concurrent_gc: u64,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
    /// ssh_config with the hosts' aliases (a lab's `ssh_config`, for example).
    #[arg(long, env = "CARRIER_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
    /// Seconds nix-collect-garbage may run on a host.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub command_timeout: u64,
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Only runs of these machines: a name or glob, as for every command.
    pub pattern: Option<String>,
    /// Print JSON: a list of runs.
    #[arg(long)]
    pub json: bool,
    /// At most this many runs.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: usize,
}

#[derive(Args)]
pub struct KexecNetbootArgs {
    /// The carrier's HTTP URL [default: derived from httproot= of the kernel command line].
    #[arg(short = 's', long)]
    pub server_url: Option<String>,
    /// The machine (fqdn) to boot [default: this machine].
    #[arg(short = 'm', long, env = "CARRIER_MACHINE_FQDN")]
    pub machine: Option<String>,
    /// Generation number; negative: index from the newest (-1 is the second newest).
    #[arg(short = 'g', long, allow_hyphen_values = true)]
    pub generation: Option<i64>,
    /// Variant [default: the first, if any].
    #[arg(short = 'v', long)]
    pub variant: Option<String>,
    /// Pick the machine from a list and confirm before loading.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Extra kernel parameters, appended as given (never run through a shell).
    #[arg(short = 'a', long, default_value = "")]
    pub append: String,
    /// Boot the loaded kernel now (kexec --exec).
    #[arg(short = 'e', long, conflicts_with = "unload")]
    pub exec: bool,
    /// Unload a loaded kernel (kexec --unload).
    #[arg(short = 'u', long)]
    pub unload: bool,
    /// With --exec: do not sync file systems first.
    #[arg(short = 'y', long)]
    pub no_sync: bool,
    /// The kernel command line to read httproot= from.
    #[arg(long, default_value = carrier_core::carrier::kexec::PROC_CMDLINE)]
    pub cmdline: PathBuf,
    /// The kexec program.
    #[arg(long, env = "CARRIER_KEXEC", default_value = "kexec")]
    pub kexec: PathBuf,
}

#[derive(Args)]
pub struct LabArgs {
    /// The lab's state directory [default: <config dir>/.carrier-lab]
    #[arg(long, global = true)]
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Subcommand)]
pub enum LabCommand {
    /// Start one lab host per runnable machine and print the CARRIER_SSH_CONFIG export.
    Up,
    /// Stop the lab's sshds (exactly the recorded PIDs) and remove its record.
    Down {
        /// Also remove the host directories (their /nix stores), keys and configs.
        #[arg(long)]
        purge: bool,
    },
    /// Show each lab host: alias, port, PID, alive, carrier.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reboot a lab host: restart its sshd with its uptime starting at zero (what the
    /// host's own `reboot` runs).
    Reboot {
        /// The host's alias (its ssh target).
        alias: String,
    },
}

#[derive(Args)]
pub struct ProfileArgs {
    /// The carrier's settings: profiles directory, lock file, on-change hooks.
    #[arg(long, env = "CARRIER_HOST_CONFIG", default_value = carrier_core::carrier::profile_change::HostConfig::DEFAULT_PATH, global = true)]
    pub host_config: PathBuf,
    #[command(subcommand)]
    pub command: ProfileCommand,
}

#[derive(Subcommand)]
pub enum ProfileCommand {
    /// Make a store path the profile's new generation, then run the on-change hooks.
    /// Several profiles at once: `-p A -p B <path for A> <path for B>`; the hooks then run
    /// once, after all of them.
    Set {
        /// The profile: <profiles dir>/confctl-<alias> (repeatable).
        #[arg(short = 'p', long, required = true)]
        profile: Vec<PathBuf>,
        /// One store path per profile, in the same order.
        #[arg(required = true)]
        store_path: Vec<String>,
    },
    /// Delete generations (numbers, `old`, `+N`, `Nd`), then run the on-change hooks.
    /// Several profiles at once: `-p A -p B <list for A> <list for B>`, each list
    /// comma-separated (`1,2`); the hooks then run once, after all of them.
    DeleteGenerations {
        /// The profile: <profiles dir>/confctl-<alias> (repeatable).
        #[arg(short = 'p', long, required = true)]
        profile: Vec<PathBuf>,
        /// With one profile: its generations; with several: one list per profile.
        #[arg(required = true)]
        generations: Vec<String>,
    },
    /// List carried profiles: generations, dates, current, store paths, machine.json.
    List {
        /// Only this profile (<profiles dir>/confctl-<alias>); all confctl-* otherwise.
        #[arg(short = 'p', long)]
        profile: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct NetbootArgs {
    #[command(subcommand)]
    pub command: NetbootCommand,
}

#[derive(Subcommand)]
pub enum NetbootCommand {
    /// Rebuild and publish the TFTP and HTTP netboot trees from the carried profiles.
    /// Exits non-zero, with a summary, when a machine was left out.
    Build {
        /// The netboot configuration (JSON; written by the NixOS module).
        #[arg(long, env = "CARRIER_NETBOOT_CONFIG", default_value = "/etc/carrier/netboot.json")]
        config: PathBuf,
        /// Print the build report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what a netbooting client with this MAC gets from the published trees: the
    /// machine, the generation it boots by default, the PXELINUX file and the iPXE scripts.
    Preview {
        /// The client's MAC: six hex octets separated by ':' or by '-'.
        mac: String,
        /// The netboot configuration (JSON; written by the NixOS module).
        #[arg(long, env = "CARRIER_NETBOOT_CONFIG", default_value = "/etc/carrier/netboot.json")]
        config: PathBuf,
        /// Print the preview as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the last build of the netboot trees: when it ended, how long it took, what it
    /// published and left out, or why it failed (`null` with --json when there was none
    /// since the carrier started).
    LastBuild {
        /// The netboot configuration (JSON; written by the NixOS module).
        #[arg(long, env = "CARRIER_NETBOOT_CONFIG", default_value = "/etc/carrier/netboot.json")]
        config: PathBuf,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a new random check-in secret (mode 0600) for `checkin.secretFile`; the same
    /// file goes to `<configuration>/.confctl/checkin/<carrier>.secret` for `carrier serve`.
    /// An existing file is never replaced; a missing directory is made (mode 0700).
    CheckinSecret {
        /// Where to write it.
        file: PathBuf,
    },
}

/// Machine selection shared by every command (recorded as given).
#[derive(Args, Debug, serde::Serialize)]
pub struct SelectArgs {
    /// Machine name, flake key or glob (`*`, `?`, `[..]`, `{a,b}`; `#` is ordinary).
    pub pattern: Option<String>,
    /// Require a tag; `^tag` excludes it. Repeatable, all must hold.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// `key=value` or `key!=value` on a machine attribute (dotted path). Repeatable.
    #[arg(short = 'a', long = "attr")]
    pub attrs: Vec<String>,
    /// y|yes|n|no|a|all: managed machines only (default), unmanaged only, or all.
    #[arg(long)]
    pub managed: Option<String>,
}

impl SelectArgs {
    pub fn selection(&self) -> Result<Selection, carrier_core::cluster::SelectError> {
        Selection::parse(self.pattern.as_deref(), &self.tags, &self.attrs, self.managed.as_deref())
    }
}

#[derive(Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Columns (attribute paths), comma-separated [default: `confctl.list.columns` of
    /// configs/confctl.nix, else name,spin,host.fqdn]
    #[arg(short = 'o', long = "output", value_delimiter = ',')]
    pub output: Option<Vec<String>>,
    /// Print JSON: full machine records, or the chosen columns when -o is given.
    #[arg(long)]
    pub json: bool,
    /// Omit the table header.
    #[arg(short = 'H', long = "hide-header")]
    pub hide_header: bool,
}

/// Serialised (without the selection) as a build record's options.
#[derive(Args, serde::Serialize)]
pub struct BuildArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub select: SelectArgs,
    /// Print JSON: machine name -> generation.
    #[arg(long)]
    pub json: bool,
    /// Accepted for compatibility with upstream: `carrier build` changes no machine and
    /// asks nothing.
    #[arg(short = 'y', long = "yes")]
    #[serde(skip)]
    pub yes: bool,
    #[command(flatten)]
    #[serde(flatten)]
    pub nix: NixBuildArgs,
    /// ssh_config for remote builders' aliases (a lab's `ssh_config`, for example).
    #[arg(long, env = "CARRIER_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
}

/// How Nix builds, for `build` and `deploy`.
#[derive(Args, serde::Serialize)]
pub struct NixBuildArgs {
    /// Pass --show-trace to Nix.
    #[arg(long)]
    pub show_trace: bool,
    /// Nix's --max-jobs (a number or `auto`) [default: `confctl.nix.maxJobs` of
    /// configs/confctl.nix, else Nix's own].
    #[arg(short = 'j', long)]
    pub max_jobs: Option<String>,
    /// Nix's --cores.
    #[arg(long)]
    pub cores: Option<u32>,
    /// Nix's --builders: remote builders, e.g. 'ssh://host x86_64-linux - 4' (with -j 0
    /// everything is built there).
    #[arg(long)]
    pub builders: Option<String>,
}

impl NixBuildArgs {
    /// Without `-j`: the configuration's `confctl.nix.maxJobs` (evaluated only then), so
    /// the build and its record say the value used.
    pub fn default_max_jobs(
        &mut self,
        conf_dir: &ConfDir,
        cache_dir: &Path,
    ) -> Result<(), carrier_core::settings::SettingsError> {
        if self.max_jobs.is_none() {
            let settings = carrier_core::settings::ConfctlSettings::load(conf_dir, cache_dir)?;
            self.max_jobs = settings.nix_max_jobs;
        }
        Ok(())
    }

    /// The build options these say, Nix's code materialized in `cache_dir`.
    pub fn options(
        &self,
        cache_dir: &Path,
        ssh_config: Option<PathBuf>,
    ) -> carrier_core::build::BuildOptions {
        carrier_core::build::BuildOptions {
            show_trace: self.show_trace,
            max_jobs: self.max_jobs.clone(),
            cores: self.cores,
            builders: self.builders.clone(),
            ssh_config,
            ..carrier_core::build::BuildOptions::new(cache_dir)
        }
    }
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on. With --anonymous-read, a non-loopback address needs --public.
    #[arg(long, env = "CARRIER_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// The log's format: `text` (a line per event, its fields as key=value) or `json` (a
    /// JSON object per line: time, level, target, the event's fields and, for a request,
    /// its method, URI and version).
    #[arg(long, value_enum, env = "CARRIER_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// The built site (CSS, WASM) produced by `cargo leptos build`.
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
    /// A file holding the shared token of one-person mode (whoever presents it as
    /// `Authorization: Bearer` or the `carrier_token` cookie acts as an admin); or set
    /// CARRIER_TOKEN. Not readable by other users.
    #[arg(long, env = "CARRIER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Refused with an explanation: a token in the arguments is visible to every user
    /// of the machine (`ps`).
    #[arg(long, hide = true)]
    pub token: Option<String>,
    /// Serve a non-loopback address to everyone: who reaches it may read the inventory
    /// without signing in (implies --anonymous-read).
    #[arg(long)]
    pub public: bool,
    /// Callers without credentials may read the inventory (machines, carriers); changes and
    /// account pages still need a sign-in. On a non-loopback address only with --public.
    #[arg(long)]
    pub anonymous_read: bool,
    /// Behind a reverse proxy: take the client address from the last `X-Forwarded-For`
    /// entry (for the sign-in rate limit and the audit log) and mark cookies `Secure` when
    /// it sends `X-Forwarded-Proto: https`.
    #[arg(long)]
    pub trust_proxy: bool,
    /// Also answer requests for this host name (the browser's `Host`), e.g. the name DNS
    /// or a reverse proxy gives this server. Repeatable. The bind address, and localhost
    /// for loopback binds, are always answered; other names are refused (DNS rebinding).
    #[arg(long = "allowed-host", value_name = "NAME", value_parser = parse_host_name)]
    pub allowed_hosts: Vec<String>,
    /// Seconds a request may take before it is answered 408 (an evaluation it started
    /// goes on and is cached).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout: u64,
    /// ssh_config with the hosts' aliases, for deploys run as jobs (as `carrier deploy
    /// --ssh-config`).
    #[arg(long, env = "CARRIER_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
    /// This instance's name among the `carrier serve` instances sharing one database
    /// (jobs record where they run; at start, this instance's unfinished jobs are marked
    /// interrupted). Default: the host name.
    #[arg(long, value_name = "NAME", value_parser = parse_instance_name)]
    pub instance: Option<String>,
    /// Run no jobs on this instance (it still queues and shows them, and marks its own
    /// earlier jobs interrupted at start).
    #[arg(long)]
    pub no_jobs: bool,
    /// Jobs this instance runs at once (on machines no other job holds; deploys and builds
    /// of one configuration directory still take turns on its deploy lock).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_running_jobs: u32,
    /// How much lower the CPU priority of background work is than the pages' (a nice
    /// increment, 0 to 19): the jobs and the status refresher's readings, with the Nix
    /// builds, copies and ssh sessions they start, yield to the pages. 0: the same.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub background_nice: i32,
    /// Seconds without a heartbeat after which another instance is taken for dead and its
    /// running jobs are marked interrupted; this instance beats every third of it.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(3..))]
    pub heartbeat_timeout: u64,
    /// Seconds between the status page's readings of every host (and after every job);
    /// 0: never (a configuration whose hosts do not exist, like the bundled example).
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = parse_status_interval)]
    pub status_interval: u64,
}

fn parse_status_interval(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if n == 0 || n >= 5 => Ok(n),
        _ => Err(format!("'{value}': 0 (never) or at least 5 seconds")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_instance_name(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!("'{value}': 1 to 64 letters, digits, '-', '_' or '.'"))
    }
}

fn parse_host_name(value: &str) -> Result<String, String> {
    app::services::HostAllowList::parse_name(value)
}

/// Serialised (without the selection and action) as a deploy record's options.
/// Records an option by its command-line spelling.
fn as_text<T: std::fmt::Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

#[derive(Args, serde::Serialize)]
pub struct DeployArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub select: SelectArgs,
    /// switch (default), boot, test or dry-activate.
    #[serde(skip)]
    pub action: Option<String>,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
    /// Deploy this existing build generation instead of building.
    #[arg(short = 'g', long = "generation")]
    pub generation: Option<String>,
    /// Ask before each machine's copy, activation (or carried profile) and reboot; the
    /// answers are read from standard input (end of input: no).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Copies running at the same time.
    #[arg(long, default_value_t = 5)]
    pub max_concurrent_copy: usize,
    /// Copy, activate and check one machine before starting the next.
    #[arg(long)]
    pub one_by_one: bool,
    /// Copy closures, activate nothing.
    #[arg(long)]
    pub copy_only: bool,
    /// Build, copy nothing.
    #[arg(long)]
    pub build_only: bool,
    /// Run `switch-to-configuration dry-activate` before the action.
    #[arg(long)]
    pub dry_activate_first: bool,
    /// Force auto-rollback on for every machine.
    #[arg(long, conflicts_with = "disable_auto_rollback")]
    pub enable_auto_rollback: bool,
    /// Force auto-rollback off.
    #[arg(long)]
    pub disable_auto_rollback: bool,
    /// Run health checks after activation (the default; upstream's `--health-checks`).
    #[arg(long, overrides_with = "no_health_checks")]
    #[serde(skip)]
    pub health_checks: bool,
    /// Skip health checks after activation.
    #[arg(long, overrides_with = "health_checks")]
    pub no_health_checks: bool,
    /// With --one-by-one: failed health checks do not stop the run.
    #[arg(long)]
    pub keep_going: bool,
    /// Reboot the standalone machines after activating (only with action `boot`).
    #[arg(long)]
    pub reboot: bool,
    /// With --reboot: seconds to wait for each host to come back, `wait` (no limit)
    /// or `nowait`.
    #[arg(long, value_name = "SECS|wait|nowait", default_value = "600")]
    #[serde(serialize_with = "as_text")]
    pub wait_online: carrier_core::deploy::WaitOnline,
    /// ssh_config with the hosts' aliases (a lab's `ssh_config`, for example).
    #[arg(long, env = "CARRIER_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
    /// Seconds a command on a host may run (activation included) before it is killed.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub command_timeout: u64,
    /// Seconds one copy (nix-copy-closure) may run.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub copy_timeout: u64,
    /// Seconds to wait for a lock (the configuration directory's, a host's) before failing.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub lock_timeout: u64,
    #[command(flatten)]
    #[serde(flatten)]
    pub nix: NixBuildArgs,
    /// Print the final report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct TestConnectionArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// ssh_config with the hosts' aliases (a lab's `ssh_config`, for example).
    #[arg(long, env = "CARRIER_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
    /// Seconds to connect to a host (upstream's ConnectTimeout=3), and again to read.
    #[arg(long, value_name = "SECS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

#[derive(Args)]
pub struct HealthCheckArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Accepted for compatibility: nothing changes, so nothing is asked.
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
    /// Checks running at the same time.
    #[arg(short = 'j', long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_jobs: u64,
    /// Print JSON: every check with its outcome, and the counts.
    #[arg(long)]
    pub json: bool,
    /// ssh_config with the hosts' aliases (a lab's `ssh_config`, for example).
    #[arg(long, env = "CARRIER_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
}

#[derive(Args)]
pub struct SshArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// The command and its arguments, each word passed as given (for shell syntax run
    /// `sh -c '...'`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
    /// Run the command on all machines at once (default: one after the other).
    #[arg(short = 'p', long)]
    pub parallel: bool,
    /// Group machines with the same exit status and output.
    #[arg(short = 'g', long)]
    pub aggregate: bool,
    /// Give this text to the command on its standard input.
    #[arg(short = 'i', long, conflicts_with = "input_file")]
    pub input_string: Option<String>,
    /// Give this file to the command on its standard input.
    #[arg(short = 'f', long)]
    pub input_file: Option<PathBuf>,
    /// ssh_config with the hosts' aliases (a lab's `ssh_config`, for example).
    #[arg(long, env = "CARRIER_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
    /// Seconds to connect to a host.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Seconds the command may run on a host before it is killed there.
    #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub command_timeout: u64,
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Compare with this build generation (name, offset or `current`) instead of the
    /// last build.
    #[arg(short = 'g', long = "generation", allow_hyphen_values = true)]
    pub generation: Option<String>,
    /// Print JSON: one record per machine.
    #[arg(long)]
    pub json: bool,
    /// ssh_config with the hosts' aliases (a lab's `ssh_config`, for example).
    #[arg(long, env = "CARRIER_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
    /// Seconds to connect to a host, and again for each read on it.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(argv: &[&str]) -> SshArgs {
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Ssh(args) => args,
            _ => panic!("not ssh"),
        }
    }

    #[test]
    fn ssh_takes_the_command_after_the_pattern_with_or_without_dashes() {
        for argv in [
            &["carrier", "ssh", "-p", "node*", "uname", "-a"][..],
            &["carrier", "ssh", "-p", "node*", "--", "uname", "-a"],
        ] {
            let args = ssh(argv);
            assert_eq!(args.select.pattern.as_deref(), Some("node*"));
            assert_eq!(args.command, ["uname", "-a"]);
            assert!(args.parallel);
        }
        let args = ssh(&["carrier", "ssh", "node1"]);
        assert!(args.command.is_empty());
        let both = ["carrier", "ssh", "-i", "x", "-f", "/f", "n", "cat"];
        assert!(Cli::try_parse_from(both).is_err(), "one input only");
    }

    #[test]
    fn status_readings_are_off_at_0_or_every_5_seconds_or_more() {
        let interval =
            |v: &str| match Cli::try_parse_from(["carrier", "serve", "--status-interval", v]) {
                Ok(Cli { command: Command::Serve(args), .. }) => Ok(args.status_interval),
                Ok(_) => panic!("not serve"),
                Err(e) => Err(e.to_string()),
            };
        assert_eq!(interval("0"), Ok(0));
        assert_eq!(interval("5"), Ok(5));
        let e = interval("3").unwrap_err();
        assert!(e.contains("'3': 0 (never) or at least 5 seconds"), "{e}");
    }

    #[test]
    fn instance_names_are_a_plain_word() {
        let instance = |v: &str| match Cli::try_parse_from(["carrier", "serve", "--instance", v]) {
            Ok(Cli { command: Command::Serve(args), .. }) => Ok(args.instance.unwrap()),
            Ok(_) => panic!("not serve"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(instance("web-1.prg_a").as_deref(), Ok("web-1.prg_a"));
        for bad in ["", "a b", "a/b", "$(reboot)", "ä", &"x".repeat(65)] {
            let e = instance(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}': 1 to 64 letters")), "{bad}: {e}");
        }
    }

    #[test]
    fn health_checks_can_be_switched_on_and_off_the_last_flag_winning() {
        let deploy = |argv: &[&str]| match Cli::try_parse_from(argv).expect("parses").command {
            Command::Deploy(args) => args,
            _ => panic!("not deploy"),
        };
        assert!(!deploy(&["carrier", "deploy"]).no_health_checks);
        assert!(deploy(&["carrier", "deploy", "--no-health-checks"]).no_health_checks);
        let on = deploy(&["carrier", "deploy", "--no-health-checks", "--health-checks"]);
        assert!(!on.no_health_checks);
        let off = deploy(&["carrier", "deploy", "--health-checks", "--no-health-checks"]);
        assert!(off.no_health_checks);
        assert!(deploy(&["carrier", "deploy", "-i", "-y"]).interactive);
        let Command::Build(build) =
            Cli::try_parse_from(["carrier", "build", "-y"]).expect("build -y parses").command
        else {
            panic!("not build");
        };
        assert!(build.yes);
    }

    #[test]
    fn deploy_passes_nix_build_flags_like_build() {
        let argv =
            ["carrier", "deploy", "-j", "3", "--cores", "2", "--show-trace", "--builders", "b"];
        let Command::Deploy(args) = Cli::try_parse_from(argv).expect("parses").command else {
            panic!("not deploy");
        };
        let opts = args.nix.options(Path::new("/cache"), None);
        assert!(opts.show_trace);
        assert_eq!(opts.max_jobs.as_deref(), Some("3"));
        assert_eq!(opts.cores, Some(2));
        assert_eq!(opts.builders.as_deref(), Some("b"));
        assert_eq!(opts.cache_dir, Path::new("/cache"));
    }
}
