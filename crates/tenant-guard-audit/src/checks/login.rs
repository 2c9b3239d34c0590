//! The login's own powers: superuser, BYPASSRLS, ownership, direct privileges; missing roles.

use crate::catalog::{ANON, AUTHENTICATED, Catalog, SERVICE_ROLE, Table};
use crate::check::Check;
use crate::finding::Finding;
use crate::severity::Severity;
use crate::sql;

/// How many tables a login finding names before "…".
const NAMED: usize = 5;

pub(super) fn check(catalog: &Catalog, tables: &[&Table], findings: &mut Vec<Finding>) {
    let login = &catalog.login;
    let role = sql::ident(&login.name);
    let dedicated = format!(
        "CREATE ROLE app_login LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT PASSWORD '…';\nGRANT {ANON}, {AUTHENTICATED}, {SERVICE_ROLE} TO app_login;  -- then connect as app_login"
    );
    if login.superuser {
        findings.push(Finding::new(
            Check::LoginSuperuser,
            Severity::Critical,
            &login.name,
            "The login is a superuser: RLS never applies to it, so any statement that runs before scoping, after a RESET ROLE, or in a SECURITY DEFINER path sees every org.",
            dedicated,
        ));
        return;
    }
    if login.bypass_rls {
        findings.push(Finding::new(
            Check::LoginBypassRls,
            Severity::Critical,
            &login.name,
            "The login has BYPASSRLS: no policy applies to it, so anything it runs unscoped (or after RESET ROLE) sees every org.",
            format!("ALTER ROLE {role} NOBYPASSRLS;"),
        ));
    }

    let owned: Vec<&&Table> = tables.iter().filter(|t| t.owner == login.name).collect();
    if !owned.is_empty() {
        let unforced = owned.iter().any(|t| !t.force_rls);
        let severity = if unforced {
            Severity::High
        } else {
            Severity::Medium
        };
        findings.push(Finding::new(
            Check::LoginOwnsTables,
            severity,
            &login.name,
            format!(
                "The login owns {} table(s) ({}): owners bypass RLS unless it is forced, and can ALTER TABLE … DISABLE ROW LEVEL SECURITY at will.",
                owned.len(),
                names(&owned)
            ),
            owned
                .iter()
                .take(NAMED)
                .map(|t| format!("ALTER TABLE {} OWNER TO migrations_owner;", t.sql_name()))
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }

    let direct: Vec<&&Table> = tables
        .iter()
        .filter(|t| t.tenant_column.is_some() && t.owner != login.name)
        .filter(|t| t.privileges_of(&login.name).any())
        .collect();
    if !direct.is_empty() {
        let mut fix: Vec<String> = direct
            .iter()
            .take(NAMED)
            .map(|t| format!("REVOKE ALL ON {} FROM {role};", t.sql_name()))
            .collect();
        fix.push(format!(
            "ALTER ROLE {role} NOINHERIT;  -- privileges should come only from SET ROLE"
        ));
        findings.push(Finding::new(
            Check::LoginDirectPrivileges,
            Severity::Medium,
            &login.name,
            format!(
                "The login itself holds privileges on {} tenant table(s) ({}), directly or through inherited roles: a connection that runs RESET ROLE (or was never scoped) keeps them.",
                direct.len(),
                names(&direct)
            ),
            fix.join("\n"),
        ));
    }

    let missing: Vec<&str> = [ANON, AUTHENTICATED, SERVICE_ROLE]
        .into_iter()
        .filter(|r| !catalog.has_role(r))
        .collect();
    if !missing.is_empty() {
        findings.push(Finding::new(
            Check::AppRolesMissing,
            Severity::Info,
            &catalog.database,
            format!(
                "Role(s) {} do not exist, so checks about them were skipped. The guard scopes connections to these roles; its support SQL creates them.",
                missing.join(", ")
            ),
            missing
                .iter()
                .map(|r| format!("CREATE ROLE {r} NOLOGIN;"))
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
}

fn names(tables: &[&&Table]) -> String {
    let mut list: Vec<String> = tables.iter().take(NAMED).map(|t| t.object()).collect();
    if tables.len() > NAMED {
        list.push("…".to_owned());
    }
    list.join(", ")
}
