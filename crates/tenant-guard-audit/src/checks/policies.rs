//! What policies say: always true, true when auth is NULL, user metadata, per-row calls,
//! PUBLIC, ignoring the tenant column, overlapping permissive policies, anon reads.

use std::collections::BTreeMap;

use crate::catalog::{ANON, AUTHENTICATED, Catalog, Command, Policy, SERVICE_ROLE, Table};
use crate::check::Check;
use crate::expr;
use crate::finding::Finding;
use crate::severity::Severity;

use super::tenant_predicate;

pub(super) fn check(catalog: &Catalog, tables: &[&Table], findings: &mut Vec<Finding>) {
    for table in tables {
        for policy in &table.policies {
            check_policy(catalog, table, policy, findings);
        }
        if table.rls {
            multiple_permissive(table, findings);
        }
        anon_reads(catalog, table, findings);
    }
}

fn check_policy(catalog: &Catalog, table: &Table, policy: &Policy, findings: &mut Vec<Finding>) {
    let object = table.object();
    let on = format!("{} ON {}", policy.sql_name(), table.sql_name());
    let using = policy.using.as_deref();
    let with_check = policy.with_check.as_deref();
    let tenant = table.tenant_column.as_deref();
    let roles = policy
        .roles
        .iter()
        .map(|r| if r == "public" { "PUBLIC" } else { r.as_str() })
        .collect::<Vec<_>>()
        .join(", ");

    // Metadata the user controls: dangerous whatever the table's RLS state.
    if using
        .into_iter()
        .chain(with_check)
        .any(expr::references_user_metadata)
    {
        findings.push(
            Finding::new(
                Check::PolicyReferencesUserMetadata,
                Severity::Critical,
                &object,
                format!(
                    "Policy \"{}\" reads user_metadata, which every user can edit about themselves: anyone can grant themselves the access it guards.",
                    policy.name
                ),
                format!(
                    "-- Read authorisation data only from claims users cannot edit (app_metadata, or the verified org claim):\nALTER POLICY {on} USING (…);"
                ),
            )
            .with_policy(&policy.name),
        );
    }

    if !table.rls || !policy.permissive {
        return;
    }

    let using_true = policy.command != Command::Insert && using.is_some_and(expr::is_constant_true);
    let check_true = with_check.is_some_and(expr::is_constant_true);
    if policy.for_clients() && (using_true || check_true) {
        let writes = policy.command != Command::Select;
        let severity = if tenant.is_some() || writes {
            Severity::Critical
        } else {
            Severity::Medium
        };
        let clause = match (using_true, check_true) {
            (true, true) => "USING and WITH CHECK are",
            (true, false) => "USING is",
            _ => "WITH CHECK is",
        };
        let reach = if tenant.is_some() {
            "every org's rows"
        } else {
            "every row"
        };
        let fix = match tenant_predicate(table) {
            Some(predicate) => alter_with(&on, policy.command, &predicate),
            None if !writes => format!(
                "-- If the table is public on purpose, pass --allow {object}; otherwise scope it:\nALTER POLICY {on} USING (…);"
            ),
            None => format!(
                "DROP POLICY {on};\n-- Writes meant for the backend: CREATE POLICY … TO service_role; for users: scope the policy."
            ),
        };
        findings.push(
            Finding::new(
                Check::PolicyAlwaysTrue,
                severity,
                &object,
                format!(
                    "Permissive policy \"{}\" ({} for {roles}): {clause} always true, so it opens {reach} to {roles} (permissive policies OR together: the other policies cannot narrow it).",
                    policy.name,
                    policy.command.as_str(),
                ),
                fix,
            )
            .with_policy(&policy.name),
        );
    }

    let client_facing =
        policy.is_public() || policy.roles.iter().any(|r| r == ANON || r == AUTHENTICATED);
    if client_facing
        && matches!(policy.command, Command::Select | Command::All)
        && using.is_some_and(expr::has_null_auth_disjunct)
    {
        findings.push(
            Finding::new(
                Check::PolicyNullAuthDisjunct,
                Severity::High,
                &object,
                format!(
                    "Policy \"{}\" has a top-level `… IS NULL OR …` on an auth value: for any session without one (anon, a pooled connection without claims) the whole policy is true and every row is visible.",
                    policy.name
                ),
                format!(
                    "-- Require the auth value instead of admitting its absence, e.g. `auth.uid() IS NOT NULL AND …`:\nALTER POLICY {on} USING (…);"
                ),
            )
            .with_policy(&policy.name),
        );
    }

    let per_row: Vec<&str> = using
        .into_iter()
        .chain(with_check)
        .flat_map(expr::per_row_auth_calls)
        .fold(Vec::new(), |mut acc, call| {
            if !acc.contains(&call) {
                acc.push(call);
            }
            acc
        });
    if !per_row.is_empty() {
        let mut fix = format!("ALTER POLICY {on}");
        if let Some(using) = using {
            fix.push_str(&format!(
                " USING ({})",
                expr::wrap_per_row_calls(peel(using))
            ));
        }
        if let Some(check) = with_check {
            fix.push_str(&format!(
                " WITH CHECK ({})",
                expr::wrap_per_row_calls(peel(check))
            ));
        }
        fix.push(';');
        findings.push(
            Finding::new(
                Check::AuthRlsInitplan,
                Severity::Low,
                &object,
                format!(
                    "Policy \"{}\" calls {} for every row it checks; wrapped as `(select …)` it runs once per statement (often 10-100x faster on big tables).",
                    policy.name,
                    per_row.join(", ")
                ),
                fix,
            )
            .with_policy(&policy.name),
        );
    }

    if policy.roles == ["public"] && catalog.has_role(AUTHENTICATED) {
        findings.push(
            Finding::new(
                Check::PolicyForPublic,
                Severity::Medium,
                &object,
                format!(
                    "Policy \"{}\" applies to PUBLIC (no TO clause): to anon, to every login and to any role added later, not only to signed-in users.",
                    policy.name
                ),
                format!("ALTER POLICY {on} TO authenticated;"),
            )
            .with_policy(&policy.name),
        );
    }

    let Some(tenant) = tenant else {
        return;
    };
    if !policy.for_clients() {
        return;
    }
    if policy.command != Command::Insert
        && let Some(using) = using
        && !expr::is_constant_true(using)
        && (!expr::mentions_column(using, tenant) || !expr::reads_session(using))
    {
        let what = if expr::mentions_column(using, tenant) {
            format!(
                "compares {tenant} with nothing that depends on who is asking (it is the same for every org)"
            )
        } else {
            format!("never mentions {tenant}")
        };
        findings.push(
            Finding::new(
                Check::PolicyIgnoresTenantColumn,
                Severity::Medium,
                &object,
                format!(
                    "Policy \"{}\" ({} for {roles}) {what}: whatever it checks, it does not keep orgs apart (a user in two orgs, or any session passing its test, sees rows of every org).",
                    policy.name,
                    policy.command.as_str()
                ),
                match tenant_predicate(table) {
                    Some(predicate) => format!(
                        "ALTER POLICY {on} USING ({predicate} AND {});",
                        peel(using)
                    ),
                    None => format!("ALTER POLICY {on} USING (…);"),
                },
            )
            .with_policy(&policy.name),
        );
    }
    if matches!(
        policy.command,
        Command::Insert | Command::Update | Command::All
    ) {
        write_check(table, policy, tenant, &on, &roles, findings);
    }
}

/// Whether `expr` ties `tenant` to who is asking (mentions the column and reads the session).
fn pins_tenant(expr: &str, tenant: &str) -> bool {
    expr::mentions_column(expr, tenant) && expr::reads_session(expr)
}

/// The expression PostgreSQL checks new rows against for `policy`: its `WITH CHECK`, else (for
/// UPDATE and ALL) its `USING`, with `true` when it is the latter.
fn effective_check(policy: &Policy) -> Option<(&str, bool)> {
    match (policy.with_check.as_deref(), policy.command) {
        (Some(check), _) => Some((check, false)),
        (None, Command::Insert) => None,
        (None, _) => policy.using.as_deref().map(|using| (using, true)),
    }
}

/// A restrictive policy that pins the tenant on every write `policy` allows, for all its roles
/// (restrictive policies AND with the permissive ones, so the tenant is pinned anyway).
fn restrictive_cover<'t>(table: &'t Table, policy: &Policy, tenant: &str) -> Option<&'t Policy> {
    let writes = [Command::Insert, Command::Update];
    table.policies.iter().find(|r| {
        !r.permissive
            && writes
                .iter()
                .filter(|w| policy.command.covers(**w))
                .all(|w| r.command.covers(*w))
            && policy.roles.iter().all(|role| r.applies_to(role))
            && effective_check(r).is_some_and(|(check, _)| pins_tenant(check, tenant))
    })
}

/// The write side of a permissive client policy on a tenant table: does the check PostgreSQL
/// applies to new rows (explicit `WITH CHECK`, or `USING` reused) pin the tenant column?
fn write_check(
    table: &Table,
    policy: &Policy,
    tenant: &str,
    on: &str,
    roles: &str,
    findings: &mut Vec<Finding>,
) {
    let object = table.object();
    let command = policy.command.as_str();
    let rows = match policy.command {
        Command::Insert => "inserted rows",
        Command::Update => "updated rows",
        _ => "inserted and updated rows",
    };
    let set_check = match tenant_predicate(table) {
        Some(predicate) => format!("ALTER POLICY {on} WITH CHECK ({predicate});"),
        None => format!("ALTER POLICY {on} WITH CHECK (…);"),
    };
    let Some((check, implicit)) = effective_check(policy) else {
        // INSERT without WITH CHECK: PostgreSQL has nothing to accept a row with.
        findings.push(
            Finding::new(
                Check::InsertPolicyWithoutCheck,
                Severity::Info,
                &object,
                format!(
                    "INSERT policy \"{}\" (for {roles}) has no WITH CHECK: PostgreSQL then accepts no row through it (a missing check counts as false for INSERT), so it grants nothing. If inserts were meant, give it the check that pins {tenant}.",
                    policy.name
                ),
                set_check,
            )
            .with_policy(&policy.name),
        );
        return;
    };
    if expr::is_constant_true(check) {
        // rls_policy_always_true reports it (critical).
        return;
    }
    let pinned = pins_tenant(check, tenant);
    if !pinned && restrictive_cover(table, policy, tenant).is_some() {
        return;
    }
    let text = peel(check);
    match (pinned, implicit) {
        (true, false) => {}
        (true, true) => findings.push(
            Finding::new(
                Check::WriteCheckFromUsing,
                Severity::Info,
                &object,
                format!(
                    "Policy \"{}\" ({command} for {roles}) has no WITH CHECK, so PostgreSQL checks {rows} against its USING: `{text}`. That pins {tenant} to the caller's org, so rows cannot be written into or moved to another org; an explicit WITH CHECK keeps it so if USING is ever widened.",
                    policy.name
                ),
                format!("ALTER POLICY {on} WITH CHECK ({text});"),
            )
            .with_policy(&policy.name),
        ),
        (false, false) => findings.push(
            Finding::new(
                Check::WritePolicyWithoutTenantCheck,
                Severity::High,
                &object,
                format!(
                    "Policy \"{}\" ({command} for {roles}) has a WITH CHECK that does not tie {tenant} to the caller's org: `{text}`. A user can write rows into another org, or move rows there.",
                    policy.name
                ),
                set_check,
            )
            .with_policy(&policy.name),
        ),
        (false, true) => findings.push(
            Finding::new(
                Check::WritePolicyWithoutTenantCheck,
                Severity::High,
                &object,
                format!(
                    "Policy \"{}\" ({command} for {roles}) has no WITH CHECK, so PostgreSQL checks {rows} against its USING: `{text}`, which does not tie {tenant} to the caller's org. A user can write rows into another org, or move rows there (UPDATE … SET {tenant} = …).",
                    policy.name
                ),
                set_check,
            )
            .with_policy(&policy.name),
        ),
    }
}

/// `ALTER POLICY … USING (p) WITH CHECK (p)` with the clauses the command allows.
fn alter_with(on: &str, command: Command, predicate: &str) -> String {
    match command {
        Command::Select | Command::Delete => format!("ALTER POLICY {on} USING ({predicate});"),
        Command::Insert => format!("ALTER POLICY {on} WITH CHECK ({predicate});"),
        Command::Update | Command::All => {
            format!("ALTER POLICY {on} USING ({predicate}) WITH CHECK ({predicate});")
        }
    }
}

fn peel(expr: &str) -> &str {
    let trimmed = expr.trim();
    match trimmed.strip_prefix('(').and_then(|s| s.strip_suffix(')')) {
        Some(inner) if balanced(inner) => inner,
        _ => trimmed,
    }
}

fn balanced(text: &str) -> bool {
    let mut depth = 0i64;
    let mut in_literal = false;
    for c in text.chars() {
        match c {
            '\'' => in_literal = !in_literal,
            '(' if !in_literal => depth += 1,
            ')' if !in_literal => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

/// One finding per table listing each (role, action) with several permissive policies.
fn multiple_permissive(table: &Table, findings: &mut Vec<Finding>) {
    let permissive: Vec<&Policy> = table.policies.iter().filter(|p| p.permissive).collect();
    let mut roles: Vec<&str> = permissive
        .iter()
        .flat_map(|p| p.roles.iter())
        .map(String::as_str)
        .filter(|r| *r != SERVICE_ROLE)
        .filter(|r| {
            !permissive
                .iter()
                .any(|p| p.bypass_roles.iter().any(|b| b == r))
        })
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let mut overlaps: BTreeMap<(String, &'static str), Vec<&str>> = BTreeMap::new();
    for role in roles {
        for action in Command::All.actions() {
            let names: Vec<&str> = permissive
                .iter()
                .filter(|p| p.command.covers(*action))
                .filter(|p| {
                    if role == "public" {
                        p.is_public()
                    } else {
                        p.applies_to(role)
                    }
                })
                .map(|p| p.name.as_str())
                .collect();
            if names.len() > 1 {
                overlaps.insert((role.to_owned(), action.as_str()), names);
            }
        }
    }
    if overlaps.is_empty() {
        return;
    }
    let detail: Vec<String> = overlaps
        .iter()
        .map(|((role, action), names)| format!("{action} for {role}: {}", names.join(" OR ")))
        .collect();
    findings.push(Finding::new(
        Check::MultiplePermissivePolicies,
        Severity::Low,
        table.object(),
        format!(
            "Several permissive policies apply to the same role and action, and they OR together (wider than each looks alone, and each is evaluated on every row): {}.",
            detail.join("; ")
        ),
        format!(
            "-- Merge them into one policy per role and action, or make the narrowing ones RESTRICTIVE:\nCREATE POLICY … ON {} AS RESTRICTIVE …;",
            table.sql_name()
        ),
    ));
}

fn anon_reads(catalog: &Catalog, table: &Table, findings: &mut Vec<Finding>) {
    let Some(tenant) = table.tenant_column.as_deref() else {
        return;
    };
    if !catalog.has_role(ANON) || !table.privileges_of(ANON).select {
        return;
    }
    let through: Vec<&str> = table
        .policies
        .iter()
        .filter(|p| p.permissive && p.command.covers(Command::Select) && p.applies_to(ANON))
        .filter(|p| p.using.is_some())
        .map(|p| p.name.as_str())
        .collect();
    let how = if !table.rls {
        "RLS is off".to_owned()
    } else if through.is_empty() {
        return;
    } else {
        format!("policies {} apply to it", through.join(", "))
    };
    findings.push(Finding::new(
        Check::AnonCanReadTenantTable,
        Severity::High,
        table.object(),
        format!(
            "Role anon (requests without a signed-in user) may SELECT this tenant table ({tenant}) and {how}: tenant data should never be one policy mistake away from the public."
        ),
        format!(
            "REVOKE ALL ON {} FROM anon;\nREVOKE ALL ON {} FROM PUBLIC;",
            table.sql_name(),
            table.sql_name()
        ),
    ));
}
