//! The tenant column's integrity: NOT NULL, a foreign key, an index.

use std::collections::HashMap;

use crate::catalog::{Catalog, Table};
use crate::check::Check;
use crate::finding::Finding;
use crate::severity::Severity;
use crate::sql;

/// The table tenant ids point at, as `(schema, table, column)`.
pub(crate) type Parent = (String, String, String);

/// The tenants table, guessed from the foreign keys tenant columns already have: the most
/// common single-column target. `None` when no tenant column has a foreign key.
pub(crate) fn inferred_parent(catalog: &Catalog) -> Option<Parent> {
    let mut counts: HashMap<Parent, usize> = HashMap::new();
    for table in &catalog.tables {
        let Some(tenant) = &table.tenant_column else {
            continue;
        };
        for fk in &table.foreign_keys {
            if fk.columns.len() == 1 && &fk.columns[0] == tenant && fk.ref_columns.len() == 1 {
                *counts
                    .entry((
                        fk.ref_schema.clone(),
                        fk.ref_table.clone(),
                        fk.ref_columns[0].clone(),
                    ))
                    .or_default() += 1;
            }
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        .map(|(parent, _)| parent)
}

pub(super) fn check(catalog: &Catalog, tables: &[&Table], findings: &mut Vec<Finding>) {
    let parent = inferred_parent(catalog);
    for table in tables {
        let Some(name) = table.tenant_column.as_deref() else {
            continue;
        };
        let Some(column) = table.column(name) else {
            continue;
        };
        let col = sql::ident(name);
        if !column.not_null && !has_not_null_check(table, name) {
            findings.push(Finding::new(
                Check::TenantColumnNullable,
                Severity::High,
                table.object(),
                format!(
                    "{name} accepts NULL: a row without an org belongs to nobody, matches no org's policy (or, with `IS NULL` policies, every org's), and survives org deletion."
                ),
                format!(
                    "-- After fixing or deleting rows with NULL {name}:\nALTER TABLE {} ALTER COLUMN {col} SET NOT NULL;",
                    table.sql_name()
                ),
            ));
        }
        if !table
            .foreign_keys
            .iter()
            .any(|fk| fk.columns.iter().any(|c| c == name))
        {
            let target = match &parent {
                Some((schema, parent_table, parent_column)) => format!(
                    "{}({})",
                    sql::qualified(schema, parent_table),
                    sql::ident(parent_column)
                ),
                None => "public.organizations(id)  -- your tenants table".to_owned(),
            };
            findings.push(Finding::new(
                Check::TenantColumnNoForeignKey,
                Severity::Medium,
                table.object(),
                format!(
                    "{name} has no foreign key: rows can name orgs that do not exist (typos, deleted orgs), and deleting an org leaves its rows behind."
                ),
                format!(
                    "ALTER TABLE {} ADD FOREIGN KEY ({col}) REFERENCES {target} ON DELETE CASCADE;",
                    table.sql_name()
                ),
            ));
        }
        if !table.index_leading_columns.contains(&column.num) {
            let concurrently = if table.partitioned {
                ""
            } else {
                "CONCURRENTLY "
            };
            findings.push(Finding::new(
                Check::TenantColumnNoIndex,
                Severity::Medium,
                table.object(),
                format!(
                    "No index starts with {name}: every query filtered by its policy scans the whole table, for every org."
                ),
                format!(
                    "CREATE INDEX {concurrently}{} ON {} ({col});",
                    sql::ident(&format!("{}_{}_idx", table.name, name)),
                    table.sql_name()
                ),
            ));
        }
    }
}

/// A validated `CHECK (col IS NOT NULL)` is as good as NOT NULL (seed 002 relied on one).
pub(crate) fn has_not_null_check(table: &Table, column: &str) -> bool {
    let wanted = format!("check({}isnotnull)", sql::ident(column)).to_ascii_lowercase();
    table.checks.iter().any(|def| {
        let compact: String = def
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '(' && *c != ')')
            .collect::<String>()
            .to_ascii_lowercase();
        compact == wanted.replace(['(', ')'], "")
    })
}
