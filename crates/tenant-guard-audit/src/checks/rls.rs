//! RLS switched off, not forced, or without policies.

use crate::catalog::{ANON, AUTHENTICATED, Table};
use crate::check::Check;
use crate::finding::Finding;
use crate::severity::Severity;

use super::isolation_policy_sql;

pub(super) fn check(tables: &[&Table], findings: &mut Vec<Finding>) {
    for table in tables {
        let name = table.sql_name();
        if !table.rls && table.is_partition && !clients_can_reach(table) {
            // Reached through its parent, whose policies apply; nobody may query it directly.
            continue;
        }
        if !table.rls {
            let (severity, why) = if table.tenant_column.is_some() {
                (
                    Severity::Critical,
                    "every role with a grant on it reads and writes every org's rows",
                )
            } else {
                (
                    Severity::High,
                    "every role with a grant on it reads and writes every row",
                )
            };
            let fix = if table.policies.is_empty() {
                format!(
                    "ALTER TABLE {name} ENABLE ROW LEVEL SECURITY;\nALTER TABLE {name} FORCE ROW LEVEL SECURITY;\n{}",
                    isolation_policy_sql(table)
                )
            } else {
                format!(
                    "ALTER TABLE {name} ENABLE ROW LEVEL SECURITY;\nALTER TABLE {name} FORCE ROW LEVEL SECURITY;"
                )
            };
            findings.push(Finding::new(
                Check::RlsDisabled,
                severity,
                table.object(),
                format!("Row Level Security is disabled: {why}."),
                fix,
            ));
            if !table.policies.is_empty() {
                let names: Vec<&str> = table.policies.iter().map(|p| p.name.as_str()).collect();
                findings.push(Finding::new(
                    Check::PolicyExistsRlsDisabled,
                    Severity::High,
                    table.object(),
                    format!(
                        "Policies exist ({}) but RLS is disabled, so none of them applies: the table looks protected and is not.",
                        names.join(", ")
                    ),
                    format!(
                        "ALTER TABLE {name} ENABLE ROW LEVEL SECURITY;\nALTER TABLE {name} FORCE ROW LEVEL SECURITY;"
                    ),
                ));
            }
            continue;
        }
        if !table.force_rls {
            findings.push(Finding::new(
                Check::RlsNotForced,
                Severity::Medium,
                table.object(),
                format!(
                    "RLS is not forced: the owner ({}) bypasses every policy, so a connection that logs in as the owner, or a SECURITY DEFINER function it owns, sees all orgs.",
                    table.owner
                ),
                format!("ALTER TABLE {name} FORCE ROW LEVEL SECURITY;"),
            ));
        }
        if table.policies.is_empty() {
            findings.push(Finding::new(
                Check::RlsEnabledNoPolicy,
                Severity::Medium,
                table.object(),
                "RLS is enabled but no policy exists: every role but the owner is denied every row. Usually a forgotten migration (the app then fails with empty results).",
                isolation_policy_sql(table),
            ));
        }
    }
}

/// Whether a client role (`anon`, `authenticated`) holds any privilege on the table itself.
/// (The login's own privileges are `login_direct_privileges`' business.)
fn clients_can_reach(table: &Table) -> bool {
    [ANON, AUTHENTICATED]
        .iter()
        .any(|role| table.privileges_of(role).any())
}
