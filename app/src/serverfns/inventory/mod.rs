//! Reading the cluster inventory.

mod get_inventory_info;
mod get_machine;
mod list_carriers;
mod list_machines;

pub use get_inventory_info::*;
pub use get_machine::*;
pub use list_carriers::*;
pub use list_machines::*;
