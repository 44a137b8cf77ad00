//! Pieces shared by several pages.

pub mod error_box;
pub mod layout;
pub mod tags;

pub use error_box::ErrorBox;
pub use layout::Layout;
pub use tags::Tags;
