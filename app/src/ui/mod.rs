//! Pages and components. They arrange signals and format values; calculations live on
//! the plain types in `crate::model`.

pub mod components;
pub mod pages;
