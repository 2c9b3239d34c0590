//! Policies for `authenticated` that its grants make unusable (seed 004).

use crate::catalog::{AUTHENTICATED, Catalog, Command, Table};
use crate::check::Check;
use crate::finding::Finding;
use crate::severity::Severity;
use crate::sql;

pub(super) fn check(catalog: &Catalog, tables: &[&Table], findings: &mut Vec<Finding>) {
    if !catalog.has_role(AUTHENTICATED) {
        return;
    }
    for table in tables {
        let privileges = table.privileges_of(AUTHENTICATED);
        let mut missing: Vec<Command> = Vec::new();
        for policy in table
            .policies
            .iter()
            .filter(|p| p.roles.iter().any(|r| r == AUTHENTICATED))
        {
            for action in policy.command.actions() {
                if !privileges.has(*action) && !missing.contains(action) {
                    missing.push(*action);
                }
            }
        }
        let usage = catalog
            .schema_usage
            .get(&(table.schema.clone(), AUTHENTICATED.to_owned()))
            .copied()
            .unwrap_or(true);
        let uses_table = table
            .policies
            .iter()
            .any(|p| p.roles.iter().any(|r| r == AUTHENTICATED));
        if missing.is_empty() && (usage || !uses_table) {
            continue;
        }
        missing.sort_by_key(|c| Command::All.actions().iter().position(|a| a == c));
        let list: Vec<&str> = missing.iter().map(|c| c.as_str()).collect();
        let mut fix = String::new();
        if !usage {
            fix.push_str(&format!(
                "GRANT USAGE ON SCHEMA {} TO authenticated;\n",
                sql::ident(&table.schema)
            ));
        }
        if !list.is_empty() {
            fix.push_str(&format!(
                "GRANT {} ON {} TO authenticated;",
                list.join(", "),
                table.sql_name()
            ));
        }
        let what = match (list.is_empty(), usage) {
            (false, true) => format!("lacks {} on it", list.join(", ")),
            (false, false) => format!(
                "lacks {} on it and USAGE on schema {}",
                list.join(", "),
                table.schema
            ),
            _ => format!("lacks USAGE on schema {}", table.schema),
        };
        findings.push(Finding::new(
            Check::MissingGrantsAuthenticated,
            Severity::High,
            table.object(),
            format!(
                "authenticated has policies here but {what}: its queries fail with \"permission denied\" before any policy runs (seed 004)."
            ),
            fix.trim_end().to_owned(),
        ));
    }
}
