//! Counting orphan rows: NULL tenant ids, and tenant ids matching no tenant.

use tokio_postgres::Transaction;

use crate::Progress;
use crate::catalog::{Catalog, Table};
use crate::check::Check;
use crate::checks::tenant::{Parent, has_not_null_check, inferred_parent};
use crate::config::AuditConfig;
use crate::error::{AuditError, QueryContext};
use crate::finding::Finding;
use crate::severity::Severity;
use crate::sql;

/// What to count in one table.
struct Plan<'a> {
    table: &'a Table,
    column: &'a str,
    nullable: bool,
    parent: Option<Parent>,
}

/// Counts orphans in every tenant table of `tables`, reading at most
/// `config.orphan_sample_rows` rows of each. Runs inside the audit's read-only transaction, with
/// `row_security = off` so that a login subject to RLS gets an error (reported as
/// `orphan_rows_unchecked`) rather than a silently filtered count.
pub(crate) async fn check(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    config: &AuditConfig,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
    findings: &mut Vec<Finding>,
) -> Result<(), AuditError> {
    if config.orphan_sample_rows == 0 {
        return Ok(());
    }
    let inferred = inferred_parent(catalog);
    let plans: Vec<Plan<'_>> = catalog
        .tables
        .iter()
        .filter(|t| !t.is_partition && !config.is_allowed(&t.schema, &t.name))
        .filter_map(|table| {
            let column = table.tenant_column.as_deref()?;
            let nullable = !table.column(column)?.not_null && !has_not_null_check(table, column);
            let fk = table
                .foreign_keys
                .iter()
                .find(|fk| fk.columns.len() == 1 && fk.columns[0] == column);
            let parent = match fk {
                Some(fk) if fk.validated => None,
                Some(fk) if fk.ref_columns.len() == 1 => Some((
                    fk.ref_schema.clone(),
                    fk.ref_table.clone(),
                    fk.ref_columns[0].clone(),
                )),
                Some(_) => None,
                None => inferred
                    .clone()
                    .filter(|(s, t, _)| !(s == &table.schema && t == &table.name)),
            };
            (nullable || parent.is_some()).then_some(Plan {
                table,
                column,
                nullable,
                parent,
            })
        })
        .collect();
    if plans.is_empty() {
        return Ok(());
    }
    tx.batch_execute("SET LOCAL row_security = off")
        .await
        .context("disabling row security for the orphan count")?;
    let total = plans.len();
    for (index, plan) in plans.iter().enumerate() {
        let object = plan.table.object();
        progress(Progress::OrphanScan {
            table: &object,
            index,
            total,
        });
        count(tx, config, plan, findings).await?;
    }
    Ok(())
}

async fn count(
    tx: &Transaction<'_>,
    config: &AuditConfig,
    plan: &Plan<'_>,
    findings: &mut Vec<Finding>,
) -> Result<(), AuditError> {
    let table = plan.table;
    let col = sql::ident(plan.column);
    let nulls = if plan.nullable {
        format!("count(*) FILTER (WHERE s.{col} IS NULL)")
    } else {
        "0::bigint".to_owned()
    };
    let (dangling, parent_name) = match &plan.parent {
        Some((schema, name, column)) => (
            format!(
                "count(*) FILTER (WHERE s.{col} IS NOT NULL AND NOT EXISTS \
                 (SELECT 1 FROM {} p WHERE p.{} = s.{col}))",
                sql::qualified(schema, name),
                sql::ident(column)
            ),
            Some(format!("{schema}.{name}")),
        ),
        None => ("0::bigint".to_owned(), None),
    };
    let query = format!(
        "SELECT {nulls}, {dangling}, count(*) FROM (SELECT {col} FROM {} LIMIT {}) s",
        table.sql_name(),
        config.orphan_sample_rows
    );
    tx.batch_execute("SAVEPOINT tenant_guard_orphans")
        .await
        .context("opening a savepoint")?;
    match crate::unnamed::query_one(tx, &query, &[]).await {
        Ok(row) => {
            tx.batch_execute("RELEASE SAVEPOINT tenant_guard_orphans")
                .await
                .context("releasing a savepoint")?;
            let nulls: i64 = row.get(0);
            let dangling: i64 = row.get(1);
            let scanned: i64 = row.get(2);
            if nulls == 0 && dangling == 0 {
                return Ok(());
            }
            let bounded = u64::try_from(scanned).unwrap_or(0) >= config.orphan_sample_rows;
            let scope = if bounded {
                format!(
                    "in the first {scanned} rows read (the table has more; the count stops there)"
                )
            } else {
                format!("of {scanned} rows")
            };
            let mut parts = Vec::new();
            let mut conditions = Vec::new();
            if nulls > 0 {
                parts.push(format!("{nulls} with NULL {}", plan.column));
                conditions.push(format!("{col} IS NULL"));
            }
            if let (true, Some(parent), Some((schema, name, column))) =
                (dangling > 0, &parent_name, &plan.parent)
            {
                parts.push(format!(
                    "{dangling} whose {} matches no row of {parent}",
                    plan.column
                ));
                conditions.push(format!(
                    "{col} NOT IN (SELECT {} FROM {})",
                    sql::ident(column),
                    sql::qualified(schema, name)
                ));
            }
            findings.push(Finding::new(
                Check::OrphanRows,
                Severity::High,
                table.object(),
                format!(
                    "Orphan rows {scope}: {}. They belong to no org: invisible to every tenant, or visible to the wrong one once an id is reused, and they block NOT NULL / foreign keys.",
                    parts.join(", ")
                ),
                format!(
                    "SELECT * FROM {} WHERE {};  -- inspect, then reassign or delete them",
                    table.sql_name(),
                    conditions.join(" OR ")
                ),
            ));
        }
        Err(error) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT tenant_guard_orphans")
                .await
                .context("rolling back to a savepoint")?;
            let reason = error
                .as_db_error()
                .map(|db| db.message().to_owned())
                .unwrap_or_else(|| error.to_string());
            findings.push(Finding::new(
                Check::OrphanRowsUnchecked,
                Severity::Info,
                table.object(),
                format!("Orphan rows were not counted: {reason}."),
                "Run the audit as a login that may read the whole table (the table owner, or a role with BYPASSRLS, in CI only).",
            ));
        }
    }
    Ok(())
}
