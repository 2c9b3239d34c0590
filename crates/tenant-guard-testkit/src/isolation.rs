//! Asserting that a table is isolated between orgs, through the real guard.
//!
//! [`assert_table_isolated`] plays two principals of different orgs against each other on a
//! [`TenantPool`]: each inserts a row of its own, then each tries to see, update, delete and
//! create rows of the other (every attempt in a transaction that is rolled back, so a leaky
//! policy does no lasting harm), and each must be able to see, update and delete its own. It
//! works for any policy shape (a direct `org_id` column, a parent join, a membership table, per
//! user ownership): the caller only says how to insert a row for a given org and user.

use std::fmt;

use tenant_guard_core::Principal;
use tenant_guard_postgres::tokio_postgres::types::{ToSql, Type};
use tenant_guard_postgres::{GuardError, ScopeOptions, TenantPool, TenantTx};

/// A table under test: its name, its key column, and how to insert a row.
///
/// ```
/// use tenant_guard_testkit::isolation::IsolatedTable;
///
/// // $1: the target org id (uuid, as text); $2: the target user id (the token's `sub`, text).
/// let projects = IsolatedTable::new(
///     "public.projects",
///     "id",
///     "INSERT INTO projects (org_id, name) VALUES ($1::uuid, 'isolation probe') RETURNING id::text",
/// );
/// ```
#[derive(Debug, Clone)]
pub struct IsolatedTable {
    name: String,
    key: String,
    insert_sql: String,
    update_sql: Option<String>,
}

/// Quotes a possibly schema-qualified identifier (`schema.table` → `"schema"."table"`).
fn quote_path(path: &str) -> String {
    path.split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

impl IsolatedTable {
    /// `name` (optionally schema-qualified), its `key` column (any type with a text form), and an
    /// `INSERT … RETURNING <key>::text` statement run as a principal, where `$1` is the org id
    /// (text, cast it: `$1::uuid`) and `$2` the user id (text) the new row should belong to.
    pub fn new(name: &str, key: &str, insert_sql: &str) -> Self {
        Self {
            name: name.to_owned(),
            key: key.to_owned(),
            insert_sql: insert_sql.to_owned(),
            update_sql: None,
        }
    }

    /// The statement used to update a row, with `$1` its key as text. Default
    /// `UPDATE <table> SET <key> = <key> WHERE <key>::text = $1`; set another one when the key
    /// cannot be assigned (an identity column, for instance).
    #[must_use]
    pub fn update_sql(mut self, sql: &str) -> Self {
        self.update_sql = Some(sql.to_owned());
        self
    }

    /// The table's name as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn select_keys(&self) -> String {
        format!(
            "SELECT {key}::text FROM {table}",
            key = quote_path(&self.key),
            table = quote_path(&self.name)
        )
    }

    fn update(&self) -> String {
        self.update_sql.clone().unwrap_or_else(|| {
            format!(
                "UPDATE {table} SET {key} = {key} WHERE {key}::text = $1",
                key = quote_path(&self.key),
                table = quote_path(&self.name)
            )
        })
    }

    fn delete(&self) -> String {
        format!(
            "DELETE FROM {table} WHERE {key}::text = $1",
            key = quote_path(&self.key),
            table = quote_path(&self.name)
        )
    }
}

/// What [`check_table_isolated`] found wrong: one line per violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationFailure {
    /// The table.
    pub table: String,
    /// Each violation, in plain words.
    pub violations: Vec<String>,
}

impl fmt::Display for IsolationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "table {} is not isolated:", self.table)?;
        for v in &self.violations {
            write!(f, "\n  - {v}")?;
        }
        Ok(())
    }
}

impl std::error::Error for IsolationFailure {}

/// One side of the check.
struct Party<'a> {
    name: &'static str,
    principal: &'a Principal,
}

async fn begin(pool: &TenantPool, p: &Principal) -> Result<TenantTx, GuardError> {
    pool.begin(
        p,
        ScopeOptions::default().request_id("tenant-guard-isolation-check"),
    )
    .await
}

/// Runs `f` in a transaction of `p` and rolls it back.
async fn probe<T>(
    pool: &TenantPool,
    p: &Principal,
    f: impl AsyncFnOnce(&TenantTx) -> Result<T, GuardError>,
) -> Result<T, GuardError> {
    let tx = begin(pool, p).await?;
    let result = f(&tx).await;
    let _ = tx.rollback().await;
    result
}

/// The outcome of running the insert statement.
enum Inserted {
    Key(String),
    Refused(GuardError),
    /// It ran but did not return the key as text.
    BadReturn,
}

async fn insert(
    pool: &TenantPool,
    table: &IsolatedTable,
    as_: &Principal,
    owner: &Principal,
    commit: bool,
) -> Result<Inserted, GuardError> {
    let tx = begin(pool, as_).await?;
    let org = owner.org_id().to_string();
    let user = owner.user_id().to_owned();
    // Both parameters typed as text, so a statement may use either or both.
    let params: [(&(dyn ToSql + Sync), Type); 2] = [(&org, Type::TEXT), (&user, Type::TEXT)];
    let outcome = match tx.query_typed(&table.insert_sql, &params).await {
        Ok(rows) => match rows.first().map(|row| row.try_get::<_, String>(0)) {
            Some(Ok(key)) if rows.len() == 1 => Inserted::Key(key),
            _ => Inserted::BadReturn,
        },
        Err(e) => Inserted::Refused(e),
    };
    match (&outcome, commit) {
        (Inserted::Key(_), true) => tx.commit().await?,
        _ => tx.rollback().await?,
    }
    Ok(outcome)
}

const BAD_RETURN: &str =
    "the insert statement must insert one row and end with `RETURNING <key>::text`";

/// Checks the isolation of `table` between `a` and `b` (principals of two different orgs, or
/// two different users for per-user tables), through `pool`. See the module docs.
pub async fn check_table_isolated(
    pool: &TenantPool,
    table: &IsolatedTable,
    a: &Principal,
    b: &Principal,
) -> Result<(), IsolationFailure> {
    let mut violations = Vec::new();
    let fail = |violations: Vec<String>| IsolationFailure {
        table: table.name.clone(),
        violations,
    };
    let a = Party {
        name: "A",
        principal: a,
    };
    let b = Party {
        name: "B",
        principal: b,
    };

    // Each inserts a row of its own (committed, removed at the end).
    let mut keys = Vec::new();
    for party in [&a, &b] {
        match insert(pool, table, party.principal, party.principal, true).await {
            Ok(Inserted::Key(key)) => keys.push(key),
            Ok(Inserted::BadReturn) => violations.push(BAD_RETURN.to_owned()),
            Ok(Inserted::Refused(e)) | Err(e) => violations.push(format!(
                "{} cannot insert a row of its own: {e} ({})",
                party.name,
                e.db_error().map_or("", |d| d.message())
            )),
        }
    }
    let [key_a, key_b] = match <[String; 2]>::try_from(keys) {
        Ok(keys) => keys,
        Err(_) => return Err(fail(violations)),
    };

    for (me, mine, other, theirs) in [(&a, &key_a, &b, &key_b), (&b, &key_b, &a, &key_a)] {
        let p = me.principal;
        // Select.
        match probe(pool, p, async |tx| {
            tx.query(&*table.select_keys(), &[]).await
        })
        .await
        {
            Ok(rows) => {
                let seen: Vec<String> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
                if !seen.contains(mine) {
                    violations.push(format!("{} cannot see its own row {mine}", me.name));
                }
                if seen.contains(theirs) {
                    violations.push(format!(
                        "{} can SELECT {}'s row {theirs}",
                        me.name, other.name
                    ));
                }
            }
            Err(e) => violations.push(format!("{} cannot select from the table: {e}", me.name)),
        }
        // Update and delete the other's row: nothing may be affected (or the database refuses).
        for (verb, sql) in [("UPDATE", table.update()), ("DELETE", table.delete())] {
            match probe(pool, p, async |tx| tx.execute(&*sql, &[theirs]).await).await {
                Ok(0) => {}
                Ok(n) => violations.push(format!(
                    "{} can {verb} {}'s row {theirs} ({n} row(s) affected)",
                    me.name, other.name
                )),
                Err(e) if e.is_forbidden_by_policy() => {}
                Err(e) => violations.push(format!(
                    "{verb} of {}'s row by {} failed unexpectedly: {e}",
                    other.name, me.name
                )),
            }
            // Its own row: allowed, exactly that row.
            match probe(pool, p, async |tx| tx.execute(&*sql, &[mine]).await).await {
                Ok(1) => {}
                Ok(n) => violations.push(format!(
                    "{} cannot {verb} its own row {mine} ({n} row(s) affected)",
                    me.name
                )),
                Err(e) => {
                    violations.push(format!("{} cannot {verb} its own row {mine}: {e}", me.name))
                }
            }
        }
        // Insert a row belonging to the other: must be refused.
        match insert(pool, table, p, other.principal, false).await {
            Ok(Inserted::Key(key)) => violations.push(format!(
                "{} can INSERT a row for {} (got key {key}; rolled back)",
                me.name, other.name
            )),
            Ok(Inserted::BadReturn) => violations.push(format!(
                "{} can INSERT a row for {} (rolled back)",
                me.name, other.name
            )),
            Ok(Inserted::Refused(_)) => {}
            Err(e) => violations.push(format!("{} could not begin a transaction: {e}", me.name)),
        }
    }

    // Clean up: each deletes its own row.
    for (party, key) in [(&a, &key_a), (&b, &key_b)] {
        let cleanup = async {
            let tx = begin(pool, party.principal).await?;
            tx.execute(&*table.delete(), &[key]).await?;
            tx.commit().await
        };
        if let Err(e) = cleanup.await {
            tracing::warn!(table = %table.name, %e, "isolation check could not remove its probe row");
        }
    }

    if violations.is_empty() {
        Ok(())
    } else {
        Err(fail(violations))
    }
}

/// Like [`check_table_isolated`], panicking with the list of violations.
///
/// ```no_run
/// use tenant_guard_postgres::TenantPool;
/// use tenant_guard_testkit::isolation::{IsolatedTable, assert_table_isolated};
/// use tenant_guard_testkit::issuer::TestIssuer;
///
/// # async fn demo(pool: TenantPool) {
/// let issuer = TestIssuer::new();
/// let alice = issuer.user(uuid::Uuid::new_v4());
/// let bob = issuer.user(uuid::Uuid::new_v4());
/// let projects = IsolatedTable::new(
///     "projects",
///     "id",
///     "INSERT INTO projects (org_id, name) VALUES ($1::uuid, 'probe') RETURNING id::text",
/// );
/// assert_table_isolated(&pool, &projects, &alice, &bob).await;
/// # }
/// ```
///
/// # Panics
/// When the table is not isolated, with every violation found.
pub async fn assert_table_isolated(
    pool: &TenantPool,
    table: &IsolatedTable,
    a: &Principal,
    b: &Principal,
) {
    if let Err(failure) = check_table_isolated(pool, table, a, b).await {
        panic!("{failure}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_path("public.projects"), "\"public\".\"projects\"");
        assert_eq!(quote_path("we\"ird"), "\"we\"\"ird\"");
        let t = IsolatedTable::new("app.items", "id", "INSERT …");
        assert_eq!(
            t.delete(),
            "DELETE FROM \"app\".\"items\" WHERE \"id\"::text = $1"
        );
        assert_eq!(
            t.update(),
            "UPDATE \"app\".\"items\" SET \"id\" = \"id\" WHERE \"id\"::text = $1"
        );
    }

    #[test]
    fn failures_list_every_violation() {
        let f = IsolationFailure {
            table: "projects".into(),
            violations: vec!["A can SELECT B's row".into(), "B can DELETE A's row".into()],
        };
        let text = f.to_string();
        assert!(text.starts_with("table projects is not isolated:"));
        assert!(text.contains("\n  - B can DELETE"));
    }
}
