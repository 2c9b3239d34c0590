//! [`ScopeOptions`]: per-transaction choices that are not part of the identity (defined once in
//! [`tenant_guard_core::scope`], shared with the sqlx backend).

pub use tenant_guard_core::scope::{ScopeOptions, ScopeSettings};
