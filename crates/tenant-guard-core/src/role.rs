//! Postgres role names that are safe to switch to.

use std::fmt;

/// Longest identifier Postgres keeps without truncation (NAMEDATALEN - 1).
const MAX_ROLE_LEN: usize = 63;

/// A plain Postgres role name: `[a-z_][a-z0-9_]*`, at most 63 bytes, not `pg_`-prefixed, and not
/// a name PostgreSQL gives a meaning of its own ([`RESERVED_ROLE_NAMES`]: `none`, which
/// `set_config('role', 'none', true)` reads as `RESET ROLE`, the login's own role; `public`;
/// `current_user`, `session_user`, …).
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
/// assert!(Role::new("none").is_err()); // would mean RESET ROLE
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Role(Box<str>);

/// The name given to [`Role::new`] is not a plain Postgres role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a plain Postgres role name (expected [a-z_][a-z0-9_]*, at most 63 bytes, not pg_*, not a \
     reserved name such as none or public)"
)]
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

/// Names [`Role::new`] refuses although they match the pattern: each means something else to
/// PostgreSQL where a role name goes. `none` as the value of the `role` setting is `RESET ROLE`
/// (the login's own privileges); `public` is every role; `current_user`, `current_role`,
/// `session_user` and `user` name whoever is in force; `all` and `default` are keywords of role
/// commands. (PostgreSQL folds unquoted names to lower case; upper-case names are refused by the
/// pattern already.)
pub const RESERVED_ROLE_NAMES: &[&str] = &[
    "none",
    "public",
    "current_user",
    "current_role",
    "session_user",
    "user",
    "all",
    "default",
];

/// `true` when `name` matches `[a-z_][a-z0-9_]{0,62}`, is not a `pg_` system role and is not one
/// of the [`RESERVED_ROLE_NAMES`].
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
        && !RESERVED_ROLE_NAMES.contains(&name)
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

    #[test]
    fn rejects_names_postgres_reserves_in_any_case() {
        for reserved in RESERVED_ROLE_NAMES {
            for name in [
                reserved.to_string(),
                reserved.to_uppercase(),
                format!("{}{}", &reserved[..1].to_uppercase(), &reserved[1..]),
            ] {
                assert_eq!(Role::new(&name), Err(InvalidRole), "{name:?}");
                assert!(name.parse::<Role>().is_err(), "{name:?}");
            }
        }
        // Names that merely contain one are plain names.
        for ok in ["none_of_them", "public_api", "users", "nonexistent"] {
            assert!(Role::new(ok).is_ok(), "{ok}");
        }
    }
}
