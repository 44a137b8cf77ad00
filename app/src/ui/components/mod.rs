//! Pieces shared by several pages.

mod error_box;
mod layout;
mod tags;

pub use error_box::ErrorBox;
pub use layout::Layout;
pub use tags::Tags;
