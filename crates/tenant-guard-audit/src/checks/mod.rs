//! The static checks: each reads the [`Catalog`] snapshot and returns findings.

mod functions;
mod grants;
mod login;
mod policies;
mod relations;
mod rls;
pub(crate) mod tenant;

use crate::catalog::{Catalog, Column, Table};
use crate::config::AuditConfig;
use crate::finding::Finding;
use crate::sql;

/// The GUC the guard sets to the verified org (transaction-local).
pub(crate) const ORG_SETTING: &str = "tenant_guard.org_id";

/// Runs every static check.
pub(crate) fn run(catalog: &Catalog, config: &AuditConfig) -> Vec<Finding> {
    let mut findings = Vec::new();
    let tables: Vec<&Table> = catalog
        .tables
        .iter()
        .filter(|t| !config.is_allowed(&t.schema, &t.name))
        .collect();
    rls::check(&tables, &mut findings);
    policies::check(catalog, &tables, &mut findings);
    grants::check(catalog, &tables, &mut findings);
    tenant::check(catalog, &tables, &mut findings);
    functions::check(catalog, &mut findings);
    relations::check(catalog, config, &mut findings);
    login::check(catalog, &tables, &mut findings);
    findings
}

/// The expression a policy should compare the tenant column with: the org the guard set for
/// this transaction, read once per statement.
pub(crate) fn scope_expr(column: &Column) -> String {
    format!(
        "(SELECT pg_catalog.current_setting('{ORG_SETTING}', true)::{})",
        column.type_sql
    )
}

/// `org_id = (SELECT current_setting(…)::uuid)` for `table`'s tenant column.
pub(crate) fn tenant_predicate(table: &Table) -> Option<String> {
    column_predicate(table, table.tenant_column.as_deref()?)
}

fn column_predicate(table: &Table, name: &str) -> Option<String> {
    let column = table.column(name)?;
    Some(format!("{} = {}", sql::ident(name), scope_expr(column)))
}

/// The policy every tenant table should have (used in fixes).
pub(crate) fn isolation_policy_sql(table: &Table) -> String {
    match table.tenant_column.as_deref() {
        Some(column) => isolation_policy_on(table, column),
        None => format!(
            "CREATE POLICY {} ON {} FOR SELECT TO authenticated USING (…);  -- who may see which rows",
            sql::ident(&format!("{}_read", table.name)),
            table.sql_name(),
        ),
    }
}

/// The isolation policy keyed on `column` (the tenant column, or the tenants table's key).
pub(crate) fn isolation_policy_on(table: &Table, column: &str) -> String {
    match column_predicate(table, column) {
        Some(predicate) => format!(
            "CREATE POLICY {} ON {} FOR ALL TO authenticated\n  USING ({predicate})\n  WITH CHECK ({predicate});",
            sql::ident(&format!("{}_tenant_isolation", table.name)),
            table.sql_name(),
        ),
        None => format!(
            "CREATE POLICY {} ON {} FOR ALL TO authenticated USING (…);",
            sql::ident(&format!("{}_tenant_isolation", table.name)),
            table.sql_name(),
        ),
    }
}
