//! Accounts of others and the audit log, for admins.

mod list_audit;
mod list_users;
mod revoke_user_sessions;
mod set_user_disabled;
mod set_user_role;

pub use list_audit::*;
pub use list_users::*;
pub use revoke_user_sessions::*;
pub use set_user_disabled::*;
pub use set_user_role::*;
