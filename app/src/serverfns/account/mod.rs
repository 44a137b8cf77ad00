//! The caller's own account: who it is, its API tokens and sessions.

mod create_token;
mod get_caller;
mod list_my_sessions;
mod list_my_tokens;
mod revoke_session;
mod revoke_token;

pub use create_token::*;
pub use get_caller::*;
pub use list_my_sessions::*;
pub use list_my_tokens::*;
pub use revoke_session::*;
pub use revoke_token::*;
