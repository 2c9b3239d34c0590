//! The startup check of the pool's login role.
//!
//! `SET ROLE` is undone by `RESET ROLE`, which any SQL can run. Isolation therefore also depends
//! on the login itself being powerless: PostgREST's `authenticator` pattern (`LOGIN NOINHERIT`,
//! no table privileges, only membership in the app roles). A superuser, a `BYPASSRLS` login or the
//! owner of the tenant tables turns every slip into a cross-tenant leak.

use std::fmt;

use tokio_postgres::Client;

/// What the pool does when its login fails the check (see [`LoginReport::problems`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LoginPolicy {
    /// Log a `warn` event once per pool and carry on (the default: development setups often log
    /// in as a superuser).
    #[default]
    Warn,
    /// Refuse to hand out connections: every checkout fails with
    /// [`GuardError::InsecureLogin`](crate::GuardError::InsecureLogin). Recommended in production.
    Refuse,
    /// Do not check.
    Skip,
}

/// The facts about the pool's login that matter for isolation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginReport {
    /// The login role (`session_user`).
    pub login: String,
    /// It is a superuser (bypasses RLS and every privilege).
    pub superuser: bool,
    /// It has `BYPASSRLS`.
    pub bypass_rls: bool,
    /// It inherits the privileges of roles granted to it (`INHERIT` with at least one membership).
    pub inherits_privileges: bool,
    /// Tables with row level security that it owns (an owner bypasses RLS unless it is forced,
    /// and can always disable it).
    pub owned_rls_tables: Vec<String>,
}

/// The catalog query behind [`LoginReport`]; reads only `pg_catalog`.
const LOGIN_CHECK_SQL: &str = "\
SELECT r.rolname::text, r.rolsuper, r.rolbypassrls,
       r.rolinherit AND EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid),
       coalesce((SELECT array_agg(format('%I.%I', n.nspname, c.relname) ORDER BY 1)
                   FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relowner = r.oid AND c.relkind IN ('r', 'p') AND c.relrowsecurity
                    AND n.nspname NOT IN ('pg_catalog', 'information_schema')),
                '{}')
  FROM pg_catalog.pg_roles r
 WHERE r.rolname = session_user";

impl LoginReport {
    /// Reads the report for the login of `client`.
    pub async fn read(client: &Client) -> Result<Self, tokio_postgres::Error> {
        // Unnamed (no prepared statement): works behind a transaction-mode pooler too.
        let row = client.query_typed_one(LOGIN_CHECK_SQL, &[]).await?;
        Ok(Self {
            login: row.try_get(0)?,
            superuser: row.try_get(1)?,
            bypass_rls: row.try_get(2)?,
            inherits_privileges: row.try_get(3)?,
            owned_rls_tables: row.try_get(4)?,
        })
    }

    /// What is wrong with the login, one sentence each; empty when it is fit for the pool.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.superuser {
            problems.push(format!(
                "login `{}` is a superuser: it bypasses row level security",
                self.login
            ));
        }
        if self.bypass_rls {
            problems.push(format!("login `{}` has BYPASSRLS", self.login));
        }
        if self.inherits_privileges {
            problems.push(format!(
                "login `{}` inherits the privileges of the roles granted to it (create it NOINHERIT)",
                self.login
            ));
        }
        if !self.owned_rls_tables.is_empty() {
            problems.push(format!(
                "login `{}` owns tables with row level security ({}): owners bypass or can disable it",
                self.login,
                self.owned_rls_tables.join(", ")
            ));
        }
        problems
    }

    /// `true` when [`problems`](Self::problems) is empty.
    pub fn is_fit(&self) -> bool {
        self.problems().is_empty()
    }
}

impl fmt::Display for LoginReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problems = self.problems();
        if problems.is_empty() {
            write!(f, "login `{}` is fit for the pool", self.login)
        } else {
            f.write_str(&problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> LoginReport {
        LoginReport {
            login: "authenticator".into(),
            superuser: false,
            bypass_rls: false,
            inherits_privileges: false,
            owned_rls_tables: vec![],
        }
    }

    #[test]
    fn an_authenticator_login_is_fit() {
        assert!(report().is_fit());
        assert_eq!(
            report().to_string(),
            "login `authenticator` is fit for the pool"
        );
    }

    #[test]
    fn every_unsafe_attribute_is_reported() {
        let r = LoginReport {
            superuser: true,
            bypass_rls: true,
            inherits_privileges: true,
            owned_rls_tables: vec!["public.projects".into()],
            ..report()
        };
        let problems = r.problems();
        assert_eq!(problems.len(), 4);
        assert!(problems[0].contains("superuser"));
        assert!(problems[3].contains("public.projects"));
        assert!(!r.is_fit());
    }
}
