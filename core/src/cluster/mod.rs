//! The cluster inventory: the typed model of `cluster.<name>`, its evaluation from
//! Nix, carrier expansion and machine selection.

mod error;
mod expand;
mod inventory;
pub(crate) mod model;
mod select;

pub use error::InventoryError;
pub use expand::expand;
pub use inventory::{
    Inventory, LoadOutcome, Loaded, discover_module_files, flake_argv, flake_installable, is_flake,
};
pub use model::*;
pub use select::{AttrFilter, ManagedFilter, NamePattern, SelectError, Selection, TagFilter};
