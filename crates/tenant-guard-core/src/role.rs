//! Postgres role names that are safe to switch to.

use std::fmt;

/// Longest identifier Postgres keeps without truncation (NAMEDATALEN - 1).
const MAX_ROLE_LEN: usize = 63;

/// A plain Postgres role name: `[a-z_][a-z0-9_]*`, at most 63 bytes, not `pg_`-prefixed.
///
/// A `Role` can never hold quotes, spaces, upper case or any character that would need quoting,
/// so it is safe wherever a role name goes. Which roles a token may *use* is decided separately
/// by the verifier's allowlist.
///
/// ```
/// use tenant_guard_core::Role;
///
/// assert_eq!(Role::new("authenticated").unwrap().as_str(), "authenticated");
/// assert!(Role::new("Robert\"; DROP TABLE x; --").is_err());
/// assert!(Role::new("pg_read_server_files").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Role(Box<str>);

/// The name given to [`Role::new`] is not a plain Postgres role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a plain Postgres role name (expected [a-z_][a-z0-9_]*, at most 63 bytes, not pg_*)")]
pub struct InvalidRole;

impl Role {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, InvalidRole> {
        if is_plain_role_name(name) {
            Ok(Self(name.into()))
        } else {
            Err(InvalidRole)
        }
    }

    /// The role name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `true` when `name` matches `[a-z_][a-z0-9_]{0,62}` and is not a `pg_` system role.
pub(crate) fn is_plain_role_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(b'a'..=b'z' | b'_') => {}
        _ => return false,
    }
    bytes.len() <= MAX_ROLE_LEN
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && !name.starts_with("pg_")
}

impl AsRef<str> for Role {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::str::FromStr for Role {
    type Err = InvalidRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in [
            "authenticated",
            "anon",
            "service_role",
            "_x",
            "a1",
            &"a".repeat(63),
        ] {
            assert!(Role::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_that_needs_quoting() {
        for bad in [
            "",
            "Authenticated",
            "1abc",
            "a b",
            "a\"b",
            "a'b",
            "a;b",
            "a-b",
            "ä",
            "pg_signal_backend",
            &"a".repeat(64),
            "a\0",
        ] {
            assert_eq!(Role::new(bad), Err(InvalidRole), "{bad:?}");
        }
    }
}
