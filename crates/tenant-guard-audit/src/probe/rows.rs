//! Making up rows for the probe: the row under test, and the parent rows its required foreign
//! keys need, recursively (a comment needs a task, which needs a project, which needs the org).
//!
//! Planning is separate from writing. [`Rows::plan_row`] decides, for one table, which columns
//! get which value: the org's id in the tenant column, a parent row's key in each foreign key
//! whose columns are all set (or any, for `MATCH FULL`), the column default where there is one
//! (the column's or its domain's), and a made-up value of the right type for the other required
//! columns (an enum's first label, a literal allowed by a `CHECK (c IN (…))`, a typed literal).
//! Nullable foreign key columns stay NULL. Parent rows are planned as [`Node`]s, parents before
//! children, and [`Rows::create_pending`] inserts them in that order, each `RETURNING` its
//! columns so that its children can copy the key.
//!
//! A parent row whose key is fully fixed by what the child already holds (the org row
//! `organizations(id)` for `org_id`, or the project `(org_id, id)` another key already chose) is
//! reused when the probe made it earlier. Every other parent row is fresh. Foreign keys that
//! lead back to a table on the way (a required self-reference, a cycle) cannot be satisfied
//! with one INSERT per row, so the planner gives up and says which.

use std::collections::HashMap;

use tokio_postgres::Transaction;

use crate::catalog::{Catalog, Column, ForeignKey, Table};
use crate::error::{AuditError, QueryContext};
use crate::scope::{self, Identity};
use crate::sql;

/// Required foreign keys deeper than this are not followed.
const MAX_DEPTH: usize = 12;
/// At most this many parent rows per probed table.
const MAX_ROWS: usize = 200;

/// What a column of a planned row gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    /// Text cast to the column's type (an org id, a user id).
    Text(String),
    /// An SQL expression already of the column's type (a made-up value).
    Sql(String),
    /// The value of column `.1` of planned row `.0`, known once that row exists.
    Ref(usize, String),
}

/// One parent row to create.
#[derive(Debug)]
struct Node {
    oid: u32,
    /// Index into the orgs: 0 for org A, 1 for org B.
    org: usize,
    values: Vec<(String, Value)>,
    /// Why the row is needed, for messages (`public.tasks (project_id) → public.projects`).
    needed_by: String,
    /// The row's columns as text, once it exists.
    result: Option<HashMap<String, Option<String>>>,
}

/// The parent rows of one table's probe.
pub(super) struct Rows<'a> {
    catalog: &'a Catalog,
    /// Tables outside the audited schemas that foreign keys lead to.
    loaded: &'a HashMap<u32, Table>,
    /// Org A's and org B's tenant ids, as text.
    orgs: [String; 2],
    nodes: Vec<Node>,
}

impl<'a> Rows<'a> {
    pub(super) fn new(
        catalog: &'a Catalog,
        loaded: &'a HashMap<u32, Table>,
        orgs: [String; 2],
    ) -> Self {
        Self {
            catalog,
            loaded,
            orgs,
            nodes: Vec::new(),
        }
    }

    pub(super) fn org(&self, org: usize) -> &str {
        &self.orgs[org]
    }

    fn table(&self, oid: u32) -> Option<&'a Table> {
        self.catalog
            .tables
            .iter()
            .find(|t| t.oid == oid)
            .or_else(|| self.loaded.get(&oid))
    }

    /// How many parent rows are planned (to roll back a failed batch with [`Rows::truncate`]).
    pub(super) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Forgets the rows planned since `len` (after a batch failed).
    pub(super) fn truncate(&mut self, len: usize) {
        self.nodes.truncate(len);
    }

    /// Plans the values of a row of `table` for org `org` with `pinned` columns fixed, planning
    /// the parent rows it needs. Returns the row's values; the row itself is not planned.
    pub(super) fn plan_row(
        &mut self,
        table: &'a Table,
        org: usize,
        pinned: Vec<(String, Value)>,
    ) -> Result<Vec<(String, Value)>, String> {
        self.plan(table, org, pinned, &mut Vec::new())
    }

    /// Plans `table`'s row (as [`Rows::plan_row`]) and then the row itself, as a parent row to
    /// create (a membership, a synthetic org).
    pub(super) fn plan_extra_row(
        &mut self,
        table: &'a Table,
        org: usize,
        pinned: Vec<(String, Value)>,
        needed_by: String,
    ) -> Result<(), String> {
        let values = self.plan_row(table, org, pinned)?;
        self.nodes.push(Node {
            oid: table.oid,
            org,
            values,
            needed_by,
            result: None,
        });
        Ok(())
    }

    /// Plans the parent row `fk` of `child` needs, given the child's `values` so far (which
    /// fix some of the parent's key), and adds the parent's key to `values`.
    pub(super) fn plan_parent(
        &mut self,
        child: &'a Table,
        fk: &ForeignKey,
        org: usize,
        values: &mut Vec<(String, Value)>,
    ) -> Result<(), String> {
        let mut path = vec![child.oid];
        self.parent(child, fk, org, values, &mut path)
    }

    /// Records a row the probe inserted itself (the tenants table's row under test), so that
    /// parent rows fixed to its key reuse it.
    pub(super) fn register(&mut self, table: &Table, org: usize, values: &[(String, Value)]) {
        let result = values
            .iter()
            .filter_map(|(name, value)| match value {
                Value::Text(text) => Some((name.clone(), Some(text.clone()))),
                _ => None,
            })
            .collect();
        self.nodes.push(Node {
            oid: table.oid,
            org,
            values: values.to_vec(),
            needed_by: table.object(),
            result: Some(result),
        });
    }

    fn plan(
        &mut self,
        table: &'a Table,
        org: usize,
        pinned: Vec<(String, Value)>,
        path: &mut Vec<u32>,
    ) -> Result<Vec<(String, Value)>, String> {
        if path.len() >= MAX_DEPTH {
            return Err(format!(
                "its required foreign keys lead more than {MAX_DEPTH} tables deep ({})",
                self.chain(path, table.oid)
            ));
        }
        let mut values = pinned;
        if let Some(tenant) = &table.tenant_column
            && !assigned(&values, tenant)
        {
            values.push((tenant.clone(), Value::Text(self.orgs[org].clone())));
        }
        path.push(table.oid);
        for fk in &table.foreign_keys {
            self.parent(table, fk, org, &mut values, path)?;
        }
        path.pop();
        for column in &table.columns {
            if assigned(&values, &column.name) || !required(column) {
                continue;
            }
            let Some(value) = filler(column, table) else {
                return Err(format!(
                    "required column {} of {} has type {}, which the probe cannot make up",
                    column.name,
                    table.object(),
                    column.type_sql
                ));
            };
            values.push((column.name.clone(), Value::Sql(value)));
        }
        Ok(values)
    }

    /// `path` ends with `child`.
    fn parent(
        &mut self,
        child: &'a Table,
        fk: &ForeignKey,
        org: usize,
        values: &mut Vec<(String, Value)>,
        path: &mut Vec<u32>,
    ) -> Result<(), String> {
        let columns = fk
            .columns
            .iter()
            .map(|name| child.column(name))
            .collect::<Option<Vec<&Column>>>()
            .ok_or_else(|| format!("a foreign key of {} names unknown columns", child.object()))?;
        let set = |c: &Column| assigned(values, &c.name) || c.not_null || c.domain_not_null;
        let needed = if fk.match_full {
            columns.iter().any(|c| set(c))
        } else {
            columns.iter().all(|c| set(c))
        };
        if !needed {
            // A NULL in the key: PostgreSQL does not check it, and the columns stay NULL.
            return Ok(());
        }
        let parent_name = format!("{}.{}", fk.ref_schema, fk.ref_table);
        let cols = fk.columns.join(", ");
        let Some(parent) = self.table(fk.ref_oid) else {
            return Err(format!(
                "required column(s) {cols} of {} reference {parent_name}, which the probe could not read",
                child.object()
            ));
        };
        let pinned: Vec<(String, Value)> = fk
            .columns
            .iter()
            .zip(&fk.ref_columns)
            .filter_map(|(c, r)| value_of(values, c).map(|v| (r.clone(), v.clone())))
            .collect();
        if pinned.len() == fk.ref_columns.len() && self.find(parent.oid, &pinned).is_some() {
            // The key is fixed and the probe already made that row (the org, usually).
            return Ok(());
        }
        if let Some(generated) = columns
            .iter()
            .find(|c| c.identity_or_generated && !assigned(values, &c.name))
        {
            return Err(format!(
                "column {} of {} is generated but references {parent_name}",
                generated.name,
                child.object()
            ));
        }
        if parent.oid == child.oid {
            return Err(format!(
                "required column(s) {cols} of {} reference the table itself, so every row needs another row first (the probe does not insert self-referencing rows)",
                child.object()
            ));
        }
        if path.contains(&parent.oid) {
            return Err(format!(
                "required foreign keys form a cycle ({}), which one INSERT per row cannot satisfy",
                self.chain(path, parent.oid)
            ));
        }
        if self.nodes.len() >= MAX_ROWS {
            return Err(format!("it would need more than {MAX_ROWS} parent rows"));
        }
        let parent_values = self.plan(parent, org, pinned, path)?;
        let index = self.nodes.len();
        self.nodes.push(Node {
            oid: parent.oid,
            org,
            values: parent_values,
            needed_by: format!("{} ({cols}) → {parent_name}", child.object()),
            result: None,
        });
        for (column, referenced) in fk.columns.iter().zip(&fk.ref_columns) {
            if !assigned(values, column) {
                let value = self.node_value(index, referenced);
                values.push((column.clone(), value));
            }
        }
        Ok(())
    }

    /// `a → b → a`: the tables of `path` from `back_to`'s first appearance, then `back_to`.
    fn chain(&self, path: &[u32], back_to: u32) -> String {
        let start = path.iter().position(|&o| o == back_to).unwrap_or(0);
        let name = |oid: u32| {
            self.table(oid)
                .map_or_else(|| oid.to_string(), Table::object)
        };
        path[start..]
            .iter()
            .chain(std::iter::once(&back_to))
            .map(|&oid| name(oid))
            .collect::<Vec<_>>()
            .join(" → ")
    }

    /// A planned row of table `oid` whose values equal `pinned`.
    fn find(&self, oid: u32, pinned: &[(String, Value)]) -> Option<usize> {
        (0..self.nodes.len()).find(|&n| {
            self.nodes[n].oid == oid
                && pinned
                    .iter()
                    .all(|(column, value)| self.node_value(n, column) == *value)
        })
    }

    /// What column `column` of planned row `node` holds, as a value another row can copy.
    fn node_value(&self, node: usize, column: &str) -> Value {
        match value_of(&self.nodes[node].values, column) {
            Some(value @ (Value::Text(_) | Value::Ref(..))) => value.clone(),
            _ => Value::Ref(node, column.to_owned()),
        }
    }

    /// The SQL for `value` in `column`.
    fn sql_value(&self, column: &Column, value: &Value) -> Result<String, String> {
        match value {
            Value::Text(text) => Ok(cast(text, column)),
            Value::Sql(expr) => Ok(expr.clone()),
            Value::Ref(node, name) => {
                let Some(result) = &self.nodes[*node].result else {
                    return Err(format!(
                        "the parent row in {} was not created",
                        self.nodes[*node].needed_by
                    ));
                };
                Ok(match result.get(name) {
                    Some(Some(text)) => cast(text, column),
                    _ => "NULL".to_owned(),
                })
            }
        }
    }

    /// `INSERT INTO table (…) VALUES (…)` for planned `values` (the parents must exist).
    pub(super) fn insert_sql(
        &self,
        table: &Table,
        values: &[(String, Value)],
    ) -> Result<String, String> {
        if values.is_empty() {
            return Ok(format!("INSERT INTO {} DEFAULT VALUES", table.sql_name()));
        }
        let mut names = Vec::new();
        let mut exprs = Vec::new();
        for (name, value) in values {
            let column = table
                .column(name)
                .ok_or_else(|| format!("{} has no column {name}", table.object()))?;
            names.push(sql::ident(name));
            exprs.push(self.sql_value(column, value)?);
        }
        Ok(format!(
            "INSERT INTO {} ({}) VALUES ({})",
            table.sql_name(),
            names.join(", "),
            exprs.join(", ")
        ))
    }

    /// Creates the planned parent rows that do not exist yet, in order: each first as the
    /// login (the owner or migration login the audit connects as), then, if the login may not,
    /// as its org through the guard's scoping. Leaves the transaction unscoped. `Ok(Err(reason))`
    /// names the row that could not be made and both refusals.
    pub(super) async fn create_pending(
        &mut self,
        tx: &Transaction<'_>,
        identities: &[Identity; 2],
    ) -> Result<Result<(), String>, AuditError> {
        for index in 0..self.nodes.len() {
            if self.nodes[index].result.is_some() {
                continue;
            }
            let node = &self.nodes[index];
            let Some(table) = self.table(node.oid) else {
                return Ok(Err(format!("table {} disappeared", node.oid)));
            };
            let insert = match self.insert_sql(table, &node.values) {
                Ok(insert) => insert,
                Err(reason) => return Ok(Err(reason)),
            };
            let returning: Vec<String> = table
                .columns
                .iter()
                .map(|c| format!("{}::text", sql::ident(&c.name)))
                .collect();
            let sql = format!("{insert} RETURNING {}", returning.join(", "));
            scope::unscope(tx).await.context("returning to the login")?;
            let row = match returning_row(tx, &sql).await? {
                Ok(row) => row,
                Err(as_login) => {
                    scope::scope(tx, &identities[node.org])
                        .await
                        .context("scoping to create a parent row")?;
                    let scoped = returning_row(tx, &sql).await?;
                    scope::unscope(tx).await.context("returning to the login")?;
                    match scoped {
                        Ok(row) => row,
                        Err(as_org) => {
                            return Ok(Err(format!(
                                "could not create a row in {} for {}: as the login ({as_login}), and as {} through the guard's scoping ({as_org})",
                                table.object(),
                                node.needed_by,
                                super::org_name(node.org),
                            )));
                        }
                    }
                }
            };
            let result = table
                .columns
                .iter()
                .zip(row)
                .map(|(c, v)| (c.name.clone(), v))
                .collect();
            self.nodes[index].result = Some(result);
        }
        Ok(Ok(()))
    }
}

/// Runs an `INSERT … RETURNING` in a savepoint: the returned columns as text, or why the
/// database refused (the savepoint is then rolled back).
async fn returning_row(
    tx: &Transaction<'_>,
    sql: &str,
) -> Result<Result<Vec<Option<String>>, String>, AuditError> {
    tx.batch_execute("SAVEPOINT tenant_guard_probe_parent")
        .await
        .context("opening a probe savepoint")?;
    match crate::unnamed::query_one(tx, sql, &[]).await {
        Ok(row) => {
            tx.batch_execute("RELEASE SAVEPOINT tenant_guard_probe_parent")
                .await
                .context("releasing a probe savepoint")?;
            Ok(Ok((0..row.len()).map(|i| row.get(i)).collect()))
        }
        Err(error) => {
            let Some(db) = error.as_db_error() else {
                return Err(AuditError::query("creating a parent row", error));
            };
            let reason = format!("{}: {}", db.code().code(), db.message());
            tx.batch_execute("ROLLBACK TO SAVEPOINT tenant_guard_probe_parent")
                .await
                .context("rolling back a probe savepoint")?;
            Ok(Err(reason))
        }
    }
}

fn value_of<'v>(values: &'v [(String, Value)], column: &str) -> Option<&'v Value> {
    values.iter().find(|(c, _)| c == column).map(|(_, v)| v)
}

fn assigned(values: &[(String, Value)], column: &str) -> bool {
    value_of(values, column).is_some()
}

/// A column an INSERT must fill: NOT NULL (itself or through its domain), no default (its own or
/// its domain's), not identity or generated.
fn required(column: &Column) -> bool {
    (column.not_null || column.domain_not_null)
        && !column.has_default
        && !column.domain_default
        && !column.identity_or_generated
}

/// `CAST(E'value' AS type)`.
pub(super) fn cast(value: &str, column: &Column) -> String {
    format!("CAST({} AS {})", sql::literal(value), column.type_sql)
}

/// A made-up value for a required column of `table` (fresh where uniqueness may matter), as SQL
/// of the column's type; `None` for types the probe does not know.
pub(super) fn filler(column: &Column, table: &Table) -> Option<String> {
    if column.type_kind == 'e' {
        return Some(format!(
            "(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e WHERE e.enumtypid = {} \
             ORDER BY e.enumsortorder LIMIT 1)::{}",
            column.type_oid, column.type_sql
        ));
    }
    if let Some(allowed) = check_literal(table, &column.name) {
        return Some(cast(&allowed, column));
    }
    let random = uuid::Uuid::new_v4();
    let constrained = table
        .insert_checks
        .iter()
        .any(|def| mentions(def, &sql::ident(&column.name)));
    let text = match (column.type_name.as_str(), column.category) {
        ("uuid", _) => random.to_string(),
        ("json" | "jsonb", _) => "{}".to_owned(),
        ("bytea", _) => String::new(),
        (_, 'S') => format!("tg-probe-{}", &random.simple().to_string()[..8]),
        // A CHECK on a number is most often a small positive range.
        (_, 'N') if constrained => "1".to_owned(),
        (_, 'N') => format!("{}", 1 + random.as_u128() % 30_000),
        (_, 'B') => "false".to_owned(),
        (_, 'D') => "now".to_owned(),
        (_, 'T') => "1 day".to_owned(),
        (_, 'A') => "{}".to_owned(),
        (_, 'I') => "127.0.0.1".to_owned(),
        (_, 'R') => "empty".to_owned(),
        _ => return None,
    };
    Some(cast(&text, column))
}

/// The first literal a check constraint of `table` allows for `column`, when one has the shape
/// `column = 'x'` or `column = ANY (ARRAY['x', …])` (how PostgreSQL prints `IN ('x', …)`).
fn check_literal(table: &Table, column: &str) -> Option<String> {
    let ident = sql::ident(column);
    table.insert_checks.iter().find_map(|def| {
        word_positions(def, &ident).find_map(|at| {
            let rest = &def[at + ident.len()..];
            let quote = rest.find('\'')?;
            let between = &rest[..quote];
            let simple = between.contains('=')
                && !["<", ">", "!", " AND ", " OR ", "NOT ", "~"]
                    .iter()
                    .any(|bad| between.contains(bad));
            simple.then(|| read_literal(&rest[quote..])).flatten()
        })
    })
}

/// Where `word` occurs in `text` as a whole identifier.
fn word_positions<'t>(text: &'t str, word: &'t str) -> impl Iterator<Item = usize> + 't {
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '"';
    text.match_indices(word)
        .map(|(at, _)| at)
        .filter(move |&at| {
            let before = text[..at].chars().next_back();
            let after = text[at + word.len()..].chars().next();
            !before.is_some_and(ident_char) && !after.is_some_and(ident_char)
        })
}

fn mentions(def: &str, ident: &str) -> bool {
    word_positions(def, ident).next().is_some()
}

/// The SQL string literal at the start of `text` (which starts with `'`), unescaped. The catalog
/// is read with `standard_conforming_strings` on, so a backslash is an ordinary character.
fn read_literal(text: &str) -> Option<String> {
    let mut chars = text.chars().skip(1).peekable();
    let mut out = String::new();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next();
                out.push('\'');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn column(name: &str, type_name: &str, category: char) -> Column {
        Column {
            num: 1,
            name: name.to_owned(),
            not_null: true,
            has_default: false,
            identity_or_generated: false,
            type_sql: type_name.to_owned(),
            category,
            type_kind: 'b',
            type_oid: 0,
            type_name: type_name.to_owned(),
            domain_default: false,
            domain_not_null: false,
        }
    }

    fn table(checks: &[&str]) -> Table {
        Table {
            oid: 1,
            schema: "public".to_owned(),
            name: "t".to_owned(),
            is_partition: false,
            partitioned: false,
            rls: true,
            force_rls: true,
            owner: "o".to_owned(),
            columns: Vec::new(),
            policies: Vec::new(),
            foreign_keys: Vec::new(),
            checks: Vec::new(),
            insert_checks: checks.iter().map(|c| (*c).to_owned()).collect(),
            index_leading_columns: Vec::new(),
            privileges: HashMap::new(),
            tenant_column: None,
        }
    }

    #[test]
    fn fillers_cover_common_types() {
        let t = table(&[]);
        for (name, category) in [
            ("text", 'S'),
            ("int4", 'N'),
            ("bool", 'B'),
            ("timestamptz", 'D'),
            ("jsonb", 'U'),
            ("uuid", 'U'),
            ("int4range", 'R'),
        ] {
            assert!(filler(&column("c", name, category), &t).is_some(), "{name}");
        }
        assert!(filler(&column("c", "point", 'G'), &t).is_none());
    }

    #[test]
    fn check_constraints_choose_an_allowed_literal() {
        let t = table(&[
            "CHECK ((status = ANY (ARRAY['open'::text, 'done'::text])))",
            "CHECK (((kind)::text = ANY ((ARRAY['a''b'::character varying, 'c'::character varying])::text[])))",
            "CHECK ((name <> ''::text))",
            "CHECK ((priority >= 1) AND (priority <= 5))",
            "CHECK ((substatus = 'x'::text))",
        ]);
        assert_eq!(check_literal(&t, "status").as_deref(), Some("open"));
        assert_eq!(check_literal(&t, "kind").as_deref(), Some("a'b"));
        assert_eq!(check_literal(&t, "substatus").as_deref(), Some("x"));
        assert_eq!(
            check_literal(&table(&[r"CHECK ((path = 'C:\tmp'::text))"]), "path").as_deref(),
            Some(r"C:\tmp")
        );
        // `<>` says what is forbidden, not what is allowed.
        assert_eq!(check_literal(&t, "name"), None);
        // `status` is not `substatus`.
        assert_eq!(check_literal(&t, "tatus"), None);
        assert_eq!(
            filler(&column("priority", "int4", 'N'), &t).as_deref(),
            Some("CAST(E'1' AS int4)")
        );
        assert_eq!(
            filler(&column("status", "text", 'S'), &t).as_deref(),
            Some("CAST(E'open' AS text)")
        );
    }

    #[test]
    fn required_columns_respect_defaults_and_domains() {
        let mut c = column("c", "text", 'S');
        assert!(required(&c));
        c.domain_default = true;
        assert!(!required(&c));
        let mut d = column("d", "text", 'S');
        d.not_null = false;
        assert!(!required(&d));
        d.domain_not_null = true;
        assert!(required(&d));
    }
}
