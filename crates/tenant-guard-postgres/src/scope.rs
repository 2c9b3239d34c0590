//! What a transaction is scoped to, and the one statement that scopes it: defined once in
//! [`tenant_guard_core::scope`], shared with the sqlx backend.

pub(crate) use tenant_guard_core::scope::{SCOPE_SQL, Scope, ScopeSettings};
