//! The isolation probe: for each tenant table, as org A insert a row, then as org B try to read,
//! update and delete it and to insert into org A.
//!
//! Tables whose required columns reference other tables get their parent rows made first (a
//! comment's task, the task's project, the project's org), inside the same transaction: see
//! [`rows`]. Parent rows are written by the login (or, if it may not, by their org through the
//! guard's scoping); the steps on the table under test always go through the guard's scoping.
//!
//! Everything happens in ONE transaction that is never committed: the probe ends it with
//! `ROLLBACK`, and if the process dies first the server aborts it when the connection drops.
//! Each table runs inside a savepoint that is rolled back too, so tables do not see each
//! other's probe rows. Sequences used by the probe's inserts stay advanced (sequences are not
//! transactional), and triggers with effects outside the database (e.g. `dblink`) would keep
//! them.

mod rows;

use std::collections::HashMap;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Transaction};

use crate::Progress;
use crate::catalog::{self, Catalog, Column, Table};
use crate::check::Check;
use crate::checks::isolation_policy_on;
use crate::checks::tenant::inferred_parent;
use crate::config::AuditConfig;
use crate::error::{AuditError, QueryContext};
use crate::finding::Finding;
use crate::report::ProbeSummary;
use crate::scope::{self, Identity};
use crate::severity::Severity;
use crate::sql;
use rows::{Rows, Value, cast};

/// The outcome of one cross-org step.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// RLS or privileges stopped it.
    Blocked,
    /// It worked: org B reached org A's data (rows affected).
    Leaked(u64),
    /// It failed for another reason, so it proves nothing.
    Inconclusive(String),
    /// Not tried (inserting "into org A" of the tenants table itself means nothing).
    NotApplicable,
}

/// Who wrote org A's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seeder {
    /// Org A itself, through the guard's scoping.
    OrgA,
    /// The login (org A could not insert: its policies or grants do not allow it).
    Login,
}

#[derive(Debug)]
enum Outcome {
    Probed {
        seeder: Seeder,
        read: Step,
        update: Step,
        delete: Step,
        insert: Step,
        /// What the probe could not set up (memberships), for the messages.
        notes: Vec<String>,
    },
    Skipped(String),
}

/// Runs the probe over the tenant tables of `catalog`, adding findings; returns the summary.
pub(crate) async fn run(
    client: &mut Client,
    catalog: &Catalog,
    config: &AuditConfig,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
    findings: &mut Vec<Finding>,
) -> Result<ProbeSummary, AuditError> {
    let role = config.probe_role.as_str();
    let mut summary = ProbeSummary::default();
    let can_scope = crate::unnamed::query_opt(
        client,
        "SELECT pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER') \
             FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
        &[&role],
    )
    .await
    .context("checking the probe role")?
    .map(|row| row.get::<_, bool>(0));
    let unavailable = match can_scope {
        None => Some(format!(
            "role {role} does not exist, so there is nothing to scope to"
        )),
        Some(false) => Some(format!(
            "the connecting login may not SET ROLE {role} (GRANT {role} TO <login>)"
        )),
        Some(true) => None,
    };
    if let Some(reason) = unavailable {
        findings.push(Finding::new(
            Check::ProbeUnavailable,
            Severity::Info,
            role,
            format!("The isolation probe did not run: {reason}."),
            format!("Connect as a login that is a member of {role}, or pass --probe-role."),
        ));
        return Ok(summary);
    }

    // Tenant tables by their tenant column, and the tenants table itself by its key (a policy
    // like seed 002's `organizations_all_access` shows every org to every org).
    let mut targets: Vec<(&Table, String)> = catalog
        .tables
        .iter()
        .filter(|t| t.rls && !t.is_partition && !config.is_allowed(&t.schema, &t.name))
        .filter_map(|t| t.tenant_column.clone().map(|c| (t, c)))
        .collect();
    if let Some((schema, name, key)) = inferred_parent(catalog)
        && let Some(parent) = catalog.tables.iter().find(|t| {
            t.schema == schema
                && t.name == name
                && t.rls
                && t.tenant_column.is_none()
                && !config.is_allowed(&t.schema, &t.name)
        })
    {
        targets.push((parent, key));
    }
    targets.sort_by_key(|(t, _)| t.object());
    if targets.is_empty() {
        return Ok(summary);
    }
    let claim_key = config
        .tenant_columns
        .first()
        .map_or("org_id", String::as_str);

    // The one transaction. It is never committed: `rollback` below, or the server's abort when
    // the connection drops (the `?` paths drop `tx`, which also queues a ROLLBACK).
    let tx = client
        .transaction()
        .await
        .context("starting the probe transaction")?;
    if config.statement_timeout_ms > 0 {
        tx.batch_execute(&format!(
            "SET LOCAL statement_timeout = {}",
            config.statement_timeout_ms
        ))
        .await
        .context("setting the probe's statement timeout")?;
    }
    let loaded = load_parents(&tx, catalog, &config.tenant_columns).await?;
    let memberships = memberships(catalog);
    let total = targets.len();
    for (index, (table, column)) in targets.into_iter().enumerate() {
        let object = table.object();
        progress(Progress::Probe {
            table: &object,
            index,
            total,
        });
        tx.batch_execute("SAVEPOINT tenant_guard_probe_table")
            .await
            .context("opening the probe's savepoint")?;
        let tenants_table = table.tenant_column.is_none();
        let outcome = probe_table(
            &tx,
            catalog,
            &loaded,
            &memberships,
            role,
            table,
            &column,
            claim_key,
            tenants_table,
        )
        .await;
        // Back to the login and to the state before this table, whatever happened.
        tx.batch_execute("ROLLBACK TO SAVEPOINT tenant_guard_probe_table")
            .await
            .context("rolling back the probe's savepoint")?;
        summary.tables += 1;
        report(table, &column, role, outcome?, &mut summary, findings);
    }
    tx.rollback()
        .await
        .context("rolling back the probe transaction")?;
    Ok(summary)
}

fn report(
    table: &Table,
    tenant: &str,
    role: &str,
    outcome: Outcome,
    summary: &mut ProbeSummary,
    findings: &mut Vec<Finding>,
) {
    let object = table.object();
    let (seeder, notes, steps) = match outcome {
        Outcome::Skipped(reason) => {
            summary.skipped += 1;
            findings.push(Finding::new(
                Check::ProbeSkipped,
                Severity::Info,
                object,
                format!("The isolation probe could not make a row here: {reason}."),
                "Nothing to fix in the table; check its isolation with a test that creates real rows.",
            ));
            return;
        }
        Outcome::Probed {
            seeder,
            read,
            update,
            delete,
            insert,
            notes,
        } => (
            seeder,
            notes,
            [
                (Check::ProbeCrossTenantRead, "read", read),
                (Check::ProbeCrossTenantUpdate, "update", update),
                (Check::ProbeCrossTenantDelete, "delete", delete),
                (Check::ProbeCrossTenantInsert, "insert into", insert),
            ],
        ),
    };
    let seeded = match seeder {
        Seeder::OrgA => "inserted as org A",
        Seeder::Login => "inserted by the login (org A's own insert was refused)",
    };
    let mut leaked = false;
    let mut inconclusive = Vec::new();
    for (check, verb, step) in steps {
        match step {
            Step::Blocked | Step::NotApplicable => {}
            Step::Leaked(rows) => {
                leaked = true;
                let what = match check {
                    Check::ProbeCrossTenantInsert => {
                        format!("inserted a row carrying org A's {tenant}")
                    }
                    Check::ProbeCrossTenantRead => format!("saw {rows} row(s) of org A"),
                    _ => format!("could {verb} org A's row ({rows} row(s) affected)"),
                };
                findings.push(Finding::new(
                    check,
                    Severity::Critical,
                    &object,
                    format!(
                        "Isolation probe: scoped as org B (role {role}, exactly as the guard scopes a request), the probe {what}; the row was {seeded}. Tenants are not isolated here. (Rolled back: nothing was kept.)"
                    ),
                    format!(
                        "-- Every permissive policy for {role} must compare {tenant} with the scoped org:\n{}",
                        isolation_policy_on(table, tenant)
                    ),
                ));
            }
            Step::Inconclusive(reason) => inconclusive.push(format!("{verb}: {reason}")),
        }
    }
    if leaked {
        summary.failed += 1;
    } else if inconclusive.is_empty() {
        summary.passed += 1;
    } else {
        summary.skipped += 1;
        findings.push(Finding::new(
            Check::ProbeInconclusive,
            Severity::Info,
            object,
            format!(
                "Isolation probe: no leak seen, but some steps failed for reasons other than RLS and prove nothing ({}).",
                with_notes(inconclusive.join("; "), &notes)
            ),
            "Check these operations with a test that creates real rows.",
        ));
    }
}

/// A table where users are made members of an org (`workspace_memberships (workspace_id,
/// user_id)`): the probe enrols its two synthetic users there, so that policies written as
/// `EXISTS (SELECT 1 FROM memberships WHERE …)` see them as members of their own org.
struct Membership<'a> {
    table: &'a Table,
    tenant: String,
    user: String,
}

/// The membership tables of `catalog`: a name containing `member`, a tenant column, and a
/// `user_id` or `member_id` column of type uuid or text.
fn memberships(catalog: &Catalog) -> Vec<Membership<'_>> {
    catalog
        .tables
        .iter()
        .filter(|t| !t.is_partition && t.name.contains("member"))
        .filter_map(|table| {
            let tenant = table.tenant_column.clone()?;
            let user = ["user_id", "member_id"].into_iter().find_map(|name| {
                table
                    .column(name)
                    .filter(|c| c.type_name == "uuid" || c.category == 'S')
                    .map(|c| c.name.clone())
            })?;
            Some(Membership {
                table,
                tenant,
                user,
            })
        })
        .collect()
}

/// Loads the tables outside the catalog that foreign keys of `catalog`'s tables lead to
/// (transitively): parent rows may live there (`auth.users`).
async fn load_parents(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    tenant_columns: &[String],
) -> Result<HashMap<u32, Table>, AuditError> {
    let mut loaded: HashMap<u32, Table> = HashMap::new();
    let known = |oid: u32, loaded: &HashMap<u32, Table>| {
        loaded.contains_key(&oid) || catalog.tables.iter().any(|t| t.oid == oid)
    };
    let mut wanted: Vec<u32> = catalog
        .tables
        .iter()
        .flat_map(|t| t.foreign_keys.iter().map(|fk| fk.ref_oid))
        .filter(|&oid| !known(oid, &loaded))
        .collect();
    while !wanted.is_empty() {
        wanted.sort_unstable();
        wanted.dedup();
        let tables = catalog::load_tables_by_oid(tx, &wanted, tenant_columns).await?;
        wanted.clear();
        for table in tables {
            wanted.extend(table.foreign_keys.iter().map(|fk| fk.ref_oid));
            loaded.insert(table.oid, table);
        }
        wanted.retain(|&oid| !known(oid, &loaded));
    }
    Ok(loaded)
}

/// Enrols org A's and org B's synthetic users in every membership table; on failure, forgets
/// what it planned and says why (the probe goes on without memberships).
async fn enrol<'a>(
    tx: &Transaction<'_>,
    rows: &mut Rows<'a>,
    memberships: &[Membership<'a>],
    identities: &[Identity; 2],
    notes: &mut Vec<String>,
) -> Result<(), AuditError> {
    for membership in memberships {
        let start = rows.len();
        let mut planned = Ok(());
        for (org, identity) in identities.iter().enumerate() {
            let pinned = vec![
                (
                    membership.tenant.clone(),
                    Value::Text(rows.org(org).to_owned()),
                ),
                (membership.user.clone(), Value::Text(identity.sub.clone())),
            ];
            planned = planned.and_then(|()| {
                rows.plan_extra_row(
                    membership.table,
                    org,
                    pinned,
                    format!("the membership of {}'s probe user", org_name(org)),
                )
            });
        }
        let outcome = match planned {
            Ok(()) => rows.create_pending(tx, identities).await?,
            Err(reason) => Err(reason),
        };
        if let Err(reason) = outcome {
            rows.truncate(start);
            notes.push(format!(
                "the probe users could not be made members in {} ({reason})",
                membership.table.object()
            ));
        }
    }
    Ok(())
}

/// Probes one table inside the caller's savepoint. Database errors that belong to the table
/// (constraints, missing privileges) become outcomes; only connection-level failures are errors.
///
/// Order: the two orgs (in the tenants table, when the tenant column references one), the
/// probe users' memberships, the parent rows of org A's row, org A's row (as org A, else as the
/// login), the parent rows of the row org B will try to insert into org A, then org B's steps.
#[allow(clippy::too_many_arguments)]
async fn probe_table<'a>(
    tx: &Transaction<'_>,
    catalog: &'a Catalog,
    loaded: &'a HashMap<u32, Table>,
    memberships: &[Membership<'a>],
    role: &str,
    table: &'a Table,
    tenant: &str,
    claim_key: &str,
    tenants_table: bool,
) -> Result<Outcome, AuditError> {
    let Some(column) = table.column(tenant) else {
        return Ok(Outcome::Skipped(format!("no column {tenant}")));
    };
    let (Some(org_a), Some(org_b)) = (tenant_value(column), tenant_value(column)) else {
        return Ok(Outcome::Skipped(format!(
            "tenant column type {} is not supported by the probe",
            column.type_sql
        )));
    };
    let identities = [
        Identity::synthetic(role, &org_a, claim_key),
        Identity::synthetic(role, &org_b, claim_key),
    ];
    let mut rows = Rows::new(catalog, loaded, [org_a.clone(), org_b.clone()]);
    let mut notes = Vec::new();

    // The orgs themselves, when the tenant column references a tenants table.
    if let Some(fk) = table
        .foreign_keys
        .iter()
        .find(|fk| fk.columns.len() == 1 && fk.columns[0] == tenant && fk.ref_columns.len() == 1)
    {
        for org in 0..2 {
            let mut values = vec![(tenant.to_owned(), Value::Text(rows.org(org).to_owned()))];
            if let Err(reason) = rows.plan_parent(table, fk, org, &mut values) {
                return Ok(Outcome::Skipped(format!(
                    "the orgs cannot be created in {}.{}: {reason}",
                    fk.ref_schema, fk.ref_table
                )));
            }
        }
        if let Err(reason) = rows.create_pending(tx, &identities).await? {
            return Ok(Outcome::Skipped(format!(
                "could not create the two orgs in {}.{} ({reason})",
                fk.ref_schema, fk.ref_table
            )));
        }
    }
    if !tenants_table {
        enrol(tx, &mut rows, memberships, &identities, &mut notes).await?;
    }

    let pinned = || vec![(tenant.to_owned(), Value::Text(org_a.clone()))];
    let values_a = match rows.plan_row(table, 0, pinned()) {
        Ok(values) => values,
        Err(reason) => return Ok(Outcome::Skipped(with_notes(reason, &notes))),
    };
    if let Err(reason) = rows.create_pending(tx, &identities).await? {
        return Ok(Outcome::Skipped(with_notes(reason, &notes)));
    }
    let insert_a = match rows.insert_sql(table, &values_a) {
        Ok(sql) => sql,
        Err(reason) => return Ok(Outcome::Skipped(with_notes(reason, &notes))),
    };

    scope::scope(tx, &identities[0])
        .await
        .context("scoping as org A")?;
    let seeder = match attempt(tx, &insert_a).await? {
        Ok(_) => Seeder::OrgA,
        Err(as_org) => {
            scope::unscope(tx).await.context("returning to the login")?;
            match attempt(tx, &insert_a).await? {
                Ok(_) => Seeder::Login,
                Err(as_login) => {
                    return Ok(Outcome::Skipped(with_notes(
                        format!(
                            "inserting a row failed as org A ({as_org}) and as the login ({as_login})"
                        ),
                        &notes,
                    )));
                }
            }
        }
    };

    // The row org B will try to insert into org A, with parents of its own (org A's).
    let insert_into_a = if tenants_table {
        rows.register(table, 0, &values_a);
        scope::unscope(tx).await.context("returning to the login")?;
        enrol(tx, &mut rows, memberships, &identities, &mut notes).await?;
        None
    } else {
        scope::unscope(tx).await.context("returning to the login")?;
        Some(match rows.plan_row(table, 0, pinned()) {
            Ok(values) => match rows.create_pending(tx, &identities).await? {
                Ok(()) => rows.insert_sql(table, &values),
                Err(reason) => Err(reason),
            },
            Err(reason) => Err(reason),
        })
    };

    scope::scope(tx, &identities[1])
        .await
        .context("scoping as org B")?;
    let target = format!(
        "{} WHERE {} = {}",
        table.sql_name(),
        sql::ident(tenant),
        cast(&org_a, column)
    );
    let read = step(tx, &format!("SELECT count(*) FROM {target}"), true).await?;
    let update = step(
        tx,
        &format!(
            "UPDATE {} SET {col} = {col} WHERE {col} = {}",
            table.sql_name(),
            cast(&org_a, column),
            col = sql::ident(tenant)
        ),
        false,
    )
    .await?;
    let delete = step(tx, &format!("DELETE FROM {target}"), false).await?;
    let insert = match insert_into_a {
        None => Step::NotApplicable,
        Some(Ok(sql)) => step(tx, &sql, false).await?,
        Some(Err(reason)) => Step::Inconclusive(format!("could not prepare the row: {reason}")),
    };
    Ok(Outcome::Probed {
        seeder,
        read,
        update,
        delete,
        insert,
        notes,
    })
}

/// "org A" or "org B".
fn org_name(org: usize) -> &'static str {
    if org == 0 { "org A" } else { "org B" }
}

fn with_notes(reason: String, notes: &[String]) -> String {
    if notes.is_empty() {
        reason
    } else {
        format!("{reason}; also, {}", notes.join("; "))
    }
}

/// Runs `sql` in a savepoint: `Ok(Ok(rows))` when it worked, `Ok(Err(reason))` when the
/// database refused it (the savepoint is rolled back), `Err` when the connection failed.
async fn attempt(tx: &Transaction<'_>, sql: &str) -> Result<Result<u64, String>, AuditError> {
    tx.batch_execute("SAVEPOINT tenant_guard_probe_seed")
        .await
        .context("opening a probe savepoint")?;
    match crate::unnamed::execute(tx, sql, &[]).await {
        Ok(rows) => {
            tx.batch_execute("RELEASE SAVEPOINT tenant_guard_probe_seed")
                .await
                .context("releasing a probe savepoint")?;
            Ok(Ok(rows))
        }
        Err(error) => {
            let Some(db) = error.as_db_error() else {
                return Err(AuditError::query("running a probe statement", error));
            };
            let reason = format!("{}: {}", db.code().code(), db.message());
            tx.batch_execute("ROLLBACK TO SAVEPOINT tenant_guard_probe_seed")
                .await
                .context("rolling back a probe savepoint")?;
            Ok(Err(reason))
        }
    }
}

/// One cross-org step as org B, in a savepoint that is always rolled back (so a write that got
/// through is undone and the next step still finds org A's row). `count` steps return a count
/// to compare with 0; the others report rows affected.
async fn step(tx: &Transaction<'_>, sql: &str, count: bool) -> Result<Step, AuditError> {
    tx.batch_execute("SAVEPOINT tenant_guard_probe_step")
        .await
        .context("opening a probe step's savepoint")?;
    let result = if count {
        crate::unnamed::query_one(tx, sql, &[])
            .await
            .map(|row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    } else {
        crate::unnamed::execute(tx, sql, &[]).await
    };
    let result = match result {
        Err(error) if error.as_db_error().is_none() => {
            return Err(AuditError::query("running a probe step", error));
        }
        other => other,
    };
    tx.batch_execute("ROLLBACK TO SAVEPOINT tenant_guard_probe_step")
        .await
        .context("rolling back a probe step's savepoint")?;
    Ok(match result {
        Ok(0) => Step::Blocked,
        Ok(rows) => Step::Leaked(rows),
        Err(error) => match error.as_db_error() {
            Some(db) if db.code() == &SqlState::INSUFFICIENT_PRIVILEGE => Step::Blocked,
            Some(db) => Step::Inconclusive(format!("{}: {}", db.code().code(), db.message())),
            None => Step::Inconclusive(error.to_string()),
        },
    })
}

/// A fresh tenant id of the column's type, as text; `None` for unsupported types.
fn tenant_value(column: &Column) -> Option<String> {
    let random = uuid::Uuid::new_v4();
    match (column.type_name.as_str(), column.category) {
        ("uuid", _) => Some(random.to_string()),
        (_, 'S') => Some(format!("tenant-guard-probe-{random}")),
        ("int2", _) => Some(format!("-{}", 1 + random.as_u128() % 30_000)),
        ("int4", _) => Some(format!("-{}", 1 + random.as_u128() % 2_000_000_000)),
        ("int8" | "numeric", _) => Some(format!("-{}", 1 + random.as_u128() % 9_000_000_000_000)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rows::tests::column;

    #[test]
    fn tenant_values_are_fresh_and_typed() {
        let uuid_col = column("org_id", "uuid", 'U');
        let a = tenant_value(&uuid_col).unwrap();
        let b = tenant_value(&uuid_col).unwrap();
        assert_ne!(a, b);
        assert!(uuid::Uuid::parse_str(&a).is_ok());
        let int_col = column("org_id", "int4", 'N');
        assert!(tenant_value(&int_col).unwrap().parse::<i32>().unwrap() < 0);
        assert!(tenant_value(&column("org_id", "point", 'G')).is_none());
        assert_eq!(
            cast("x'y", &column("org_id", "text", 'S')),
            "CAST(E'x''y' AS text)"
        );
    }
}
