//! From the role claim as found to the Postgres role the request runs as: IdP names mapped to
//! Postgres roles, arrays resolved, a default when the token names none, the allowlist last.

use std::borrow::Cow;

use crate::error::AuthError;
use crate::role::Role;

/// How a role claim holding an array of names (`realm_access.roles`, `cognito:groups`,
/// `https://example.com/roles`) is read.
///
/// Elements that are not allowed roles (after [mapping](crate::VerifierBuilder::map_role)) are
/// ignored; when none is left, the [default role](crate::VerifierBuilder::default_role) applies,
/// or the request is refused with `role_not_allowed`.
///
/// ```
/// use tenant_guard_core::{Environment, RoleArray, Verifier};
///
/// let verifier = Verifier::builder(Environment::Production)
///     .hmac_secret("a-long-random-secret-from-your-vault")
///     .role_claim("realm_access.roles")
///     .role_array(RoleArray::ExactlyOneAllowed)
///     .map_role("admin", "org_admin")
///     .allowed_roles(["authenticated", "org_admin"])
///     .build()?;
/// # Ok::<(), tenant_guard_core::AuthError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoleArray {
    /// An array is refused (`role_not_allowed`): the role claim must be one string (the default,
    /// Supabase's and PostgREST's shape).
    #[default]
    Refuse,
    /// The first element, in token order, that maps to an allowed role.
    FirstAllowed,
    /// Exactly one allowed role among the elements (repeats of it count once); two different
    /// allowed roles are refused as ambiguous.
    ExactlyOneAllowed,
}

impl std::str::FromStr for RoleArray {
    type Err = AuthError;

    /// `refuse`, `first` or `exactly_one` (as in `JWT_ROLE_ARRAY`).
    fn from_str(s: &str) -> Result<Self, AuthError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "refuse" => Ok(Self::Refuse),
            "first" | "first_allowed" => Ok(Self::FirstAllowed),
            "exactly_one" | "exactly_one_allowed" | "one" => Ok(Self::ExactlyOneAllowed),
            other => Err(AuthError::InvalidConfig(format!(
                "role array mode {other:?}: expected refuse, first or exactly_one"
            ))),
        }
    }
}

/// The role claim as found in the token.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) enum RoleFound<'a> {
    /// No member at the path (or an empty array).
    #[default]
    Absent,
    /// One string.
    Name(Cow<'a, str>),
    /// An array of strings (read only when the mode accepts arrays).
    Names(Vec<Cow<'a, str>>),
    /// Anything else (a number, an object, null, an array with a non-string, an array when
    /// arrays are refused).
    Other,
}

/// Everything that turns a found role claim into a [`Role`].
#[derive(Debug, Clone)]
pub(crate) struct RoleRule {
    pub(crate) allowed: Box<[Role]>,
    pub(crate) array: RoleArray,
    pub(crate) default: Option<Role>,
    /// IdP name → allowed Postgres role.
    pub(crate) map: Box<[(Box<str>, Role)]>,
}

impl RoleRule {
    /// Checks and assembles the configuration: every name a valid role, the default and every
    /// mapping target in the allowlist.
    pub(crate) fn new(
        allowed: &[String],
        array: RoleArray,
        default: Option<&str>,
        map: &[(String, String)],
    ) -> Result<Self, AuthError> {
        let role = |name: &str, what: &str| {
            Role::new(name).map_err(|e| AuthError::InvalidConfig(format!("{what} {name:?}: {e}")))
        };
        let allowed = allowed
            .iter()
            .map(|r| role(r, "role"))
            .collect::<Result<Box<[_]>, _>>()?;
        if allowed.is_empty() {
            return Err(AuthError::InvalidConfig("no allowed role".into()));
        }
        let in_allowlist = |r: Role, what: &str| {
            if allowed.contains(&r) {
                Ok(r)
            } else {
                Err(AuthError::InvalidConfig(format!(
                    "{what} {:?} is not an allowed role",
                    r.as_str()
                )))
            }
        };
        let default = default
            .map(|d| in_allowlist(role(d, "default role")?, "the default role"))
            .transpose()?;
        let map = map
            .iter()
            .map(|(from, to)| {
                if from.is_empty() {
                    return Err(AuthError::InvalidConfig(
                        "a mapped IdP role name is empty".into(),
                    ));
                }
                let target = in_allowlist(role(to, "mapped role")?, "the mapping target")?;
                Ok((from.as_str().into(), target))
            })
            .collect::<Result<Box<[_]>, AuthError>>()?;
        Ok(Self {
            allowed,
            array,
            default,
            map,
        })
    }

    /// The allowed role `name` stands for, if any: its mapping when it has one, else itself.
    fn allowed(&self, name: &str) -> Option<&Role> {
        if let Some((_, to)) = self.map.iter().find(|(from, _)| **from == *name) {
            return Some(to);
        }
        self.allowed.iter().find(|r| r.as_str() == name)
    }

    /// The role of the request.
    pub(crate) fn resolve(&self, found: &RoleFound<'_>) -> Result<Role, AuthError> {
        let fallback = || self.default.clone().ok_or(AuthError::RoleNotAllowed);
        match found {
            RoleFound::Absent => fallback(),
            RoleFound::Name(name) => self.allowed(name).cloned().ok_or(AuthError::RoleNotAllowed),
            RoleFound::Names(names) => {
                let mut picked: Option<&Role> = None;
                for role in names.iter().filter_map(|n| self.allowed(n)) {
                    match (self.array, picked) {
                        (RoleArray::FirstAllowed, _) => return Ok(role.clone()),
                        (_, Some(p)) if p != role => return Err(AuthError::RoleNotAllowed),
                        _ => picked = Some(role),
                    }
                }
                picked.cloned().map_or_else(fallback, Ok)
            }
            RoleFound::Other => Err(AuthError::RoleNotAllowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(array: RoleArray, default: Option<&str>) -> RoleRule {
        RoleRule::new(
            &["authenticated".into(), "org_admin".into()],
            array,
            default,
            &[
                ("admin".into(), "org_admin".into()),
                ("Admin".into(), "org_admin".into()),
                ("member".into(), "authenticated".into()),
            ],
        )
        .unwrap()
    }

    fn names(list: &[&'static str]) -> RoleFound<'static> {
        RoleFound::Names(list.iter().map(|s| Cow::Borrowed(*s)).collect())
    }

    fn got(rule: &RoleRule, found: &RoleFound<'_>) -> Result<String, AuthError> {
        rule.resolve(found).map(|r| r.as_str().to_owned())
    }

    #[test]
    fn strings_map_then_meet_the_allowlist() {
        let r = rule(RoleArray::Refuse, None);
        let name = |s: &'static str| RoleFound::Name(Cow::Borrowed(s));
        assert_eq!(got(&r, &name("admin")), Ok("org_admin".into()));
        assert_eq!(got(&r, &name("org_admin")), Ok("org_admin".into()));
        assert_eq!(got(&r, &name("authenticated")), Ok("authenticated".into()));
        for bad in ["postgres", "service_role", "ADMIN", "admin "] {
            assert_eq!(got(&r, &name(bad)), Err(AuthError::RoleNotAllowed), "{bad}");
        }
        assert_eq!(got(&r, &RoleFound::Absent), Err(AuthError::RoleNotAllowed));
        assert_eq!(got(&r, &RoleFound::Other), Err(AuthError::RoleNotAllowed));
    }

    #[test]
    fn defaults_apply_only_when_no_role_is_named() {
        let r = rule(RoleArray::FirstAllowed, Some("authenticated"));
        assert_eq!(got(&r, &RoleFound::Absent), Ok("authenticated".into()));
        assert_eq!(got(&r, &names(&[])), Ok("authenticated".into()));
        assert_eq!(
            got(&r, &names(&["offline_access", "uma_authorization"])),
            Ok("authenticated".into())
        );
        // A named role that is not allowed is a refusal, never the default.
        assert_eq!(
            got(&r, &RoleFound::Name("postgres".into())),
            Err(AuthError::RoleNotAllowed)
        );
        assert_eq!(got(&r, &RoleFound::Other), Err(AuthError::RoleNotAllowed));
    }

    #[test]
    fn array_modes() {
        let first = rule(RoleArray::FirstAllowed, None);
        let one = rule(RoleArray::ExactlyOneAllowed, None);
        let list = names(&["offline_access", "member", "admin"]);
        assert_eq!(got(&first, &list), Ok("authenticated".into()));
        assert_eq!(got(&one, &list), Err(AuthError::RoleNotAllowed));
        let list = names(&["offline_access", "admin", "org_admin", "Admin"]);
        assert_eq!(got(&one, &list), Ok("org_admin".into()));
        assert_eq!(got(&one, &names(&["x"])), Err(AuthError::RoleNotAllowed));
        assert_eq!(got(&first, &names(&[])), Err(AuthError::RoleNotAllowed));
    }

    #[test]
    fn configuration_is_checked() {
        let roles = ["authenticated".to_owned()];
        assert!(RoleRule::new(&roles, RoleArray::Refuse, Some("org_admin"), &[]).is_err());
        assert!(RoleRule::new(&roles, RoleArray::Refuse, Some("Bad Name"), &[]).is_err());
        assert!(
            RoleRule::new(
                &roles,
                RoleArray::Refuse,
                None,
                &[("admin".into(), "postgres".into())]
            )
            .is_err()
        );
        assert!(
            RoleRule::new(
                &roles,
                RoleArray::Refuse,
                None,
                &[(String::new(), "authenticated".into())]
            )
            .is_err()
        );
        assert!(RoleRule::new(&[], RoleArray::Refuse, None, &[]).is_err());
        assert_eq!("first".parse::<RoleArray>(), Ok(RoleArray::FirstAllowed));
        assert_eq!(
            "exactly_one".parse::<RoleArray>(),
            Ok(RoleArray::ExactlyOneAllowed)
        );
        assert!("all".parse::<RoleArray>().is_err());
    }
}
