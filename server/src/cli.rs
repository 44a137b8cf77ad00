//! Command-line interface definitions (clap). Every command that takes machines uses
//! [`SelectArgs`], which parses into carrier-core's shared `Selection`.

use std::net::SocketAddr;
use std::path::PathBuf;

use carrier_core::cluster::Selection;
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
    #[arg(short = 'C', long = "config", env = "CARRIER_CONFIG", default_value = ".", global = true)]
    pub config: PathBuf,
    /// Where evaluated inventories are cached [default: $XDG_CACHE_HOME/carrier]
    #[arg(long, env = "CARRIER_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
}

impl GlobalArgs {
    pub fn inventory(&self) -> carrier_core::cluster::Inventory {
        let dir = self.cache_dir.clone().unwrap_or_else(carrier_core::cluster::Inventory::default_cache_dir);
        carrier_core::cluster::Inventory::new(dir)
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
    Set {
        /// The profile: <profiles dir>/confctl-<alias>.
        #[arg(short = 'p', long)]
        profile: PathBuf,
        store_path: String,
    },
    /// Delete generations (numbers, `old`, `+N`, `Nd`), then run the on-change hooks.
    DeleteGenerations {
        #[arg(short = 'p', long)]
        profile: PathBuf,
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
}

/// Machine selection shared by every command.
#[derive(Args, Debug)]
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
    /// Columns (attribute paths), comma-separated [default: name,spin,host.fqdn]
    #[arg(short = 'o', long = "output", value_delimiter = ',')]
    pub output: Option<Vec<String>>,
    /// Print JSON: full machine records, or the chosen columns when -o is given.
    #[arg(long)]
    pub json: bool,
    /// Omit the table header.
    #[arg(short = 'H', long = "hide-header")]
    pub hide_header: bool,
}

#[derive(Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Print JSON: machine name -> generation.
    #[arg(long)]
    pub json: bool,
    /// Pass --show-trace to Nix.
    #[arg(long)]
    pub show_trace: bool,
    /// Nix's --max-jobs (a number or `auto`).
    #[arg(short = 'j', long)]
    pub max_jobs: Option<String>,
    /// Nix's --cores.
    #[arg(long)]
    pub cores: Option<u32>,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CARRIER_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Database URL [default: sqlite in $XDG_DATA_HOME/carrier/carrier.db]
    #[arg(long, env = "CARRIER_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The built site (CSS, WASM) produced by `cargo leptos build`.
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
    /// Require this token (Bearer header or `carrier_token` cookie) for every request.
    #[arg(long, env = "CARRIER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}
