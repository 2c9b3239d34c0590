//! A snapshot of what the checks need from the system catalogs, read in one transaction.

use std::collections::HashMap;

use tokio_postgres::Transaction;

use crate::config::AuditConfig;
use crate::error::{AuditError, QueryContext};

/// The roles the guard scopes connections to.
pub(crate) const ANON: &str = "anon";
pub(crate) const AUTHENTICATED: &str = "authenticated";
pub(crate) const SERVICE_ROLE: &str = "service_role";

/// Everything the static checks look at.
#[derive(Debug)]
pub(crate) struct Catalog {
    pub(crate) database: String,
    pub(crate) server_version: String,
    pub(crate) login: Login,
    /// Which of `anon`, `authenticated`, `service_role` exist.
    pub(crate) app_roles: Vec<String>,
    /// Which of `auth.uid()`, `auth.jwt()`, `auth.role()` exist.
    pub(crate) auth_helpers: Vec<String>,
    pub(crate) tables: Vec<Table>,
    pub(crate) functions: Vec<Function>,
    pub(crate) relations: Vec<Relation>,
    /// (schema, role) → whether the role has USAGE on the schema.
    pub(crate) schema_usage: HashMap<(String, String), bool>,
}

/// The login whose powers are checked.
#[derive(Debug)]
pub(crate) struct Login {
    pub(crate) name: String,
    pub(crate) superuser: bool,
    pub(crate) bypass_rls: bool,
}

#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) oid: u32,
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) is_partition: bool,
    /// A partitioned table (its partitions hold the rows).
    pub(crate) partitioned: bool,
    pub(crate) rls: bool,
    pub(crate) force_rls: bool,
    pub(crate) owner: String,
    pub(crate) columns: Vec<Column>,
    pub(crate) policies: Vec<Policy>,
    pub(crate) foreign_keys: Vec<ForeignKey>,
    /// Check constraint definitions (`CHECK ((org_id IS NOT NULL))`) that are validated.
    pub(crate) checks: Vec<String>,
    /// Every check constraint definition, validated or not: what a new row must pass.
    pub(crate) insert_checks: Vec<String>,
    /// The first key column (attnum) of each valid index; 0 for an expression.
    pub(crate) index_leading_columns: Vec<i16>,
    /// role → privileges, for the app roles and the login.
    pub(crate) privileges: HashMap<String, Privileges>,
    /// The first configured tenant column this table holds.
    pub(crate) tenant_column: Option<String>,
}

impl Table {
    /// `schema.name` as shown in findings.
    pub(crate) fn object(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// `schema.name` quoted for SQL.
    pub(crate) fn sql_name(&self) -> String {
        crate::sql::qualified(&self.schema, &self.name)
    }

    pub(crate) fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub(crate) fn privileges_of(&self, role: &str) -> Privileges {
        self.privileges.get(role).copied().unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) num: i16,
    pub(crate) name: String,
    pub(crate) not_null: bool,
    pub(crate) has_default: bool,
    pub(crate) identity_or_generated: bool,
    /// `format_type`, usable in a cast.
    pub(crate) type_sql: String,
    /// `typcategory` of the (base) type.
    pub(crate) category: char,
    /// `typtype` of the (base) type: `e` for enums.
    pub(crate) type_kind: char,
    pub(crate) type_oid: u32,
    pub(crate) type_name: String,
    /// The column's type is a domain with a default (used when the column has none).
    pub(crate) domain_default: bool,
    /// The column's type is a domain declared NOT NULL.
    pub(crate) domain_not_null: bool,
}

/// A policy command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    All,
    Select,
    Insert,
    Update,
    Delete,
}

impl Command {
    fn from_polcmd(code: &str) -> Self {
        match code {
            "r" => Command::Select,
            "a" => Command::Insert,
            "w" => Command::Update,
            "d" => Command::Delete,
            _ => Command::All,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Command::All => "ALL",
            Command::Select => "SELECT",
            Command::Insert => "INSERT",
            Command::Update => "UPDATE",
            Command::Delete => "DELETE",
        }
    }

    /// The single actions this command covers.
    pub(crate) fn actions(self) -> &'static [Command] {
        match self {
            Command::All => &[
                Command::Select,
                Command::Insert,
                Command::Update,
                Command::Delete,
            ],
            Command::Select => &[Command::Select],
            Command::Insert => &[Command::Insert],
            Command::Update => &[Command::Update],
            Command::Delete => &[Command::Delete],
        }
    }

    pub(crate) fn covers(self, action: Command) -> bool {
        self.actions().contains(&action)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) name: String,
    pub(crate) permissive: bool,
    pub(crate) command: Command,
    /// Role names; `public` for PUBLIC.
    pub(crate) roles: Vec<String>,
    /// Roles of this policy that are superusers or BYPASSRLS (the policy is moot for them).
    pub(crate) bypass_roles: Vec<String>,
    pub(crate) using: Option<String>,
    pub(crate) with_check: Option<String>,
}

impl Policy {
    pub(crate) fn is_public(&self) -> bool {
        self.roles.iter().any(|r| r == "public")
    }

    pub(crate) fn applies_to(&self, role: &str) -> bool {
        self.is_public() || self.roles.iter().any(|r| r == role)
    }

    /// Whether the policy serves some client role: anything but `service_role` and roles that
    /// bypass RLS anyway.
    pub(crate) fn for_clients(&self) -> bool {
        self.roles
            .iter()
            .any(|r| r != SERVICE_ROLE && !self.bypass_roles.contains(r))
    }

    /// `ALTER POLICY` needs the quoted name.
    pub(crate) fn sql_name(&self) -> String {
        crate::sql::ident(&self.name)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ForeignKey {
    pub(crate) columns: Vec<String>,
    pub(crate) ref_schema: String,
    pub(crate) ref_table: String,
    pub(crate) ref_columns: Vec<String>,
    pub(crate) validated: bool,
    /// The referenced table.
    pub(crate) ref_oid: u32,
    /// `MATCH FULL`: a row with some key columns set must reference a parent even when others
    /// are NULL (with the default `MATCH SIMPLE`, any NULL column skips the check).
    pub(crate) match_full: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Privileges {
    pub(crate) select: bool,
    pub(crate) insert: bool,
    pub(crate) update: bool,
    pub(crate) delete: bool,
}

impl Privileges {
    pub(crate) fn has(self, action: Command) -> bool {
        match action {
            Command::Select => self.select,
            Command::Insert => self.insert,
            Command::Update => self.update,
            Command::Delete => self.delete,
            Command::All => self.select && self.insert && self.update && self.delete,
        }
    }

    pub(crate) fn any(self) -> bool {
        self.select || self.insert || self.update || self.delete
    }
}

#[derive(Debug)]
pub(crate) struct Function {
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) identity_args: String,
    pub(crate) security_definer: bool,
    pub(crate) config: Vec<String>,
    pub(crate) is_procedure: bool,
    /// Returns `trigger` (cannot be called directly).
    pub(crate) is_trigger: bool,
    /// App roles that may execute it.
    pub(crate) executable_by: Vec<String>,
}

impl Function {
    pub(crate) fn object(&self) -> String {
        format!("{}.{}({})", self.schema, self.name, self.identity_args)
    }

    pub(crate) fn sql_signature(&self) -> String {
        format!(
            "{} {}({})",
            if self.is_procedure {
                "PROCEDURE"
            } else {
                "FUNCTION"
            },
            crate::sql::qualified(&self.schema, &self.name),
            self.identity_args
        )
    }
}

/// A view, materialized view or foreign table.
#[derive(Debug)]
pub(crate) struct Relation {
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) kind: char,
    pub(crate) security_invoker: bool,
    /// RLS-enabled tables the view reads.
    pub(crate) rls_tables: Vec<String>,
    /// Client roles (`public`, `anon`, `authenticated`) that may select from it.
    pub(crate) readers: Vec<String>,
}

impl Relation {
    pub(crate) fn object(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

impl Catalog {
    /// Reads the snapshot. `tx` should be a read-only repeatable-read transaction with an empty
    /// `search_path` (so printed expressions are schema-qualified).
    pub(crate) async fn load(
        tx: &Transaction<'_>,
        config: &AuditConfig,
    ) -> Result<Self, AuditError> {
        let schemas = &config.schemas;
        let row = crate::unnamed::query_one(
            tx,
            "SELECT pg_catalog.current_database()::text, session_user::text, \
                 pg_catalog.current_setting('server_version')",
            &[],
        )
        .await
        .context("reading the server's identity")?;
        let database: String = row.get(0);
        let session_user: String = row.get(1);
        let server_version: String = row.get(2);

        let existing: Vec<String> = crate::unnamed::query(
            tx,
            "SELECT n.nspname::text FROM pg_catalog.pg_namespace n WHERE n.nspname = ANY($1)",
            &[schemas],
        )
        .await
        .context("listing schemas")?
        .iter()
        .map(|r| r.get(0))
        .collect();
        if let Some(missing) = schemas.iter().find(|s| !existing.contains(s)) {
            return Err(AuditError::InvalidConfig {
                reason: format!("schema `{missing}` does not exist in database `{database}`"),
            });
        }

        let login_name = config.login_role.clone().unwrap_or(session_user);
        let login = crate::unnamed::query_opt(
            tx,
            "SELECT r.rolname::text, r.rolsuper, r.rolbypassrls \
                 FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
            &[&login_name],
        )
        .await
        .context("reading the login role")?
        .map(|r| Login {
            name: r.get(0),
            superuser: r.get(1),
            bypass_rls: r.get(2),
        })
        .ok_or_else(|| AuditError::InvalidConfig {
            reason: format!("login role `{login_name}` does not exist"),
        })?;

        let app_roles: Vec<String> = crate::unnamed::query(
            tx,
            "SELECT r.rolname::text FROM pg_catalog.pg_roles r \
                 WHERE r.rolname = ANY($1) ORDER BY 1",
            &[&vec![ANON, AUTHENTICATED, SERVICE_ROLE]],
        )
        .await
        .context("looking for the app roles")?
        .iter()
        .map(|r| r.get(0))
        .collect();
        let auth_helpers: Vec<String> = crate::unnamed::query(
            tx,
            "SELECT DISTINCT p.proname::text FROM pg_catalog.pg_proc p \
                 JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                 WHERE n.nspname = 'auth' AND p.proname IN ('uid', 'jwt', 'role') ORDER BY 1",
            &[],
        )
        .await
        .context("looking for the auth helper functions")?
        .iter()
        .map(|r| r.get(0))
        .collect();

        // Roles whose privileges matter: the client roles that exist, and the login.
        let mut privileged_roles: Vec<String> = app_roles
            .iter()
            .filter(|r| *r != SERVICE_ROLE)
            .cloned()
            .collect();
        if !privileged_roles.contains(&login.name) {
            privileged_roles.push(login.name.clone());
        }

        let mut tables = load_tables(tx, config).await?;
        let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
        let by_oid: HashMap<u32, usize> =
            tables.iter().enumerate().map(|(i, t)| (t.oid, i)).collect();

        load_details(tx, &mut tables, &by_oid, &oids).await?;

        for row in crate::unnamed::query(
            tx,
            "SELECT i.indrelid, i.indkey[0]::int2 FROM pg_catalog.pg_index i \
                 WHERE i.indrelid = ANY($1) AND i.indisvalid",
            &[&oids],
        )
        .await
        .context("reading indexes")?
        {
            if let Some(&i) = by_oid.get(&row.get::<_, u32>(0)) {
                tables[i].index_leading_columns.push(row.get(1));
            }
        }

        for row in crate::unnamed::query(
            tx,
            "SELECT c.oid, r.rolname::text, \
                   pg_catalog.has_table_privilege(r.oid, c.oid, 'SELECT'), \
                   pg_catalog.has_table_privilege(r.oid, c.oid, 'INSERT'), \
                   pg_catalog.has_table_privilege(r.oid, c.oid, 'UPDATE'), \
                   pg_catalog.has_table_privilege(r.oid, c.oid, 'DELETE') \
                 FROM unnest($1::oid[]) AS c(oid) \
                 CROSS JOIN pg_catalog.pg_roles r WHERE r.rolname = ANY($2)",
            &[&oids, &privileged_roles],
        )
        .await
        .context("reading table privileges")?
        {
            if let Some(&i) = by_oid.get(&row.get::<_, u32>(0)) {
                tables[i].privileges.insert(
                    row.get(1),
                    Privileges {
                        select: row.get(2),
                        insert: row.get(3),
                        update: row.get(4),
                        delete: row.get(5),
                    },
                );
            }
        }

        for table in &mut tables {
            table.tenant_column = tenant_column_of(table, &config.tenant_columns);
        }

        let mut schema_usage = HashMap::new();
        for row in crate::unnamed::query(
            tx,
            "SELECT n.nspname::text, r.rolname::text, \
                   pg_catalog.has_schema_privilege(r.oid, n.oid, 'USAGE') \
                 FROM pg_catalog.pg_namespace n CROSS JOIN pg_catalog.pg_roles r \
                 WHERE n.nspname = ANY($1) AND r.rolname = ANY($2)",
            &[schemas, &privileged_roles],
        )
        .await
        .context("reading schema privileges")?
        {
            schema_usage.insert((row.get(0), row.get(1)), row.get(2));
        }

        let client_roles: Vec<&str> = [ANON, AUTHENTICATED]
            .into_iter()
            .filter(|r| app_roles.iter().any(|a| a == r))
            .collect();
        let functions = crate::unnamed::query(
            tx,
            "SELECT n.nspname::text, p.proname::text, \
                   pg_catalog.pg_get_function_identity_arguments(p.oid), p.prosecdef, \
                   COALESCE(p.proconfig, '{}')::text[], p.prokind = 'p', \
                   ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r \
                         WHERE r.rolname = ANY($2) \
                           AND pg_catalog.has_function_privilege(r.oid, p.oid, 'EXECUTE') \
                         ORDER BY 1), \
                   p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype \
                 FROM pg_catalog.pg_proc p \
                 JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                 WHERE n.nspname = ANY($1) AND p.prokind IN ('f', 'p') \
                   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                                   WHERE d.classid = 'pg_catalog.pg_proc'::regclass \
                                     AND d.objid = p.oid AND d.deptype = 'e') \
                 ORDER BY 1, 2, 3",
            &[schemas, &client_roles],
        )
        .await
        .context("reading functions")?
        .iter()
        .map(|row| Function {
            schema: row.get(0),
            name: row.get(1),
            identity_args: row.get(2),
            security_definer: row.get(3),
            config: row.get(4),
            is_procedure: row.get(5),
            executable_by: row.get(6),
            is_trigger: row.get(7),
        })
        .collect();

        let relations = crate::unnamed::query(
            tx,
            "SELECT n.nspname::text, c.relname::text, c.relkind::text, \
                   COALESCE(c.reloptions, '{}')::text[], \
                   ARRAY(SELECT DISTINCT tn.nspname::text || '.' || t.relname::text \
                         FROM pg_catalog.pg_rewrite rw \
                         JOIN pg_catalog.pg_depend d \
                           ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = rw.oid \
                         JOIN pg_catalog.pg_class t ON t.oid = d.refobjid \
                         JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace \
                         WHERE rw.ev_class = c.oid AND t.oid <> c.oid AND t.relrowsecurity), \
                   ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r \
                         WHERE r.rolname = ANY($2) \
                           AND pg_catalog.has_table_privilege(r.oid, c.oid, 'SELECT') ORDER BY 1), \
                   EXISTS (SELECT 1 FROM pg_catalog.aclexplode(c.relacl) AS a \
                           WHERE a.grantee = 0 AND a.privilege_type = 'SELECT') \
                 FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('v', 'm', 'f') AND n.nspname = ANY($1) \
                   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                                   WHERE d.classid = 'pg_catalog.pg_class'::regclass \
                                     AND d.objid = c.oid AND d.deptype = 'e') \
                 ORDER BY 1, 2",
            &[schemas, &client_roles],
        )
        .await
        .context("reading views")?
        .iter()
        .map(|row| {
            let options: Vec<String> = row.get(3);
            let mut readers: Vec<String> = row.get(5);
            if row.get::<_, bool>(6) {
                readers.insert(0, "public".to_owned());
            }
            Relation {
                schema: row.get(0),
                name: row.get(1),
                kind: first_char(&row.get::<_, String>(2)),
                security_invoker: options.iter().any(|o| is_security_invoker_on(o)),
                rls_tables: row.get(4),
                readers,
            }
        })
        .collect();

        Ok(Self {
            database,
            server_version,
            login,
            app_roles,
            auth_helpers,
            tables,
            functions,
            relations,
            schema_usage,
        })
    }

    pub(crate) fn has_role(&self, role: &str) -> bool {
        self.app_roles.iter().any(|r| r == role)
    }
}

/// Columns, policies, foreign keys and check constraints of `tables` (`by_oid` indexes them).
async fn load_details(
    tx: &Transaction<'_>,
    tables: &mut [Table],
    by_oid: &HashMap<u32, usize>,
    oids: &[u32],
) -> Result<(), AuditError> {
    for row in crate::unnamed::query(
        tx,
        "SELECT a.attrelid, a.attnum, a.attname::text, a.attnotnull, a.atthasdef, \
                    (a.attidentity <> '' OR a.attgenerated <> ''), \
                    pg_catalog.format_type(a.atttypid, a.atttypmod), \
                    COALESCE(bt.typcategory, t.typcategory)::text, \
                    COALESCE(bt.typtype, t.typtype)::text, \
                    COALESCE(bt.oid, t.oid), COALESCE(bt.typname, t.typname)::text, \
                    t.typtype = 'd' AND t.typdefault IS NOT NULL, \
                    t.typtype = 'd' AND t.typnotnull \
             FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_catalog.pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype \
             WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attrelid, a.attnum",
        &[&oids],
    )
    .await
    .context("reading columns")?
    {
        let Some(&i) = by_oid.get(&row.get::<_, u32>(0)) else {
            continue;
        };
        tables[i].columns.push(Column {
            num: row.get(1),
            name: row.get(2),
            not_null: row.get(3),
            has_default: row.get(4),
            identity_or_generated: row.get(5),
            type_sql: row.get(6),
            category: first_char(&row.get::<_, String>(7)),
            type_kind: first_char(&row.get::<_, String>(8)),
            type_oid: row.get(9),
            type_name: row.get(10),
            domain_default: row.get(11),
            domain_not_null: row.get(12),
        });
    }

    for row in crate::unnamed::query(
        tx,
        "SELECT p.polrelid, p.polname::text, p.polpermissive, p.polcmd::text, \
               ARRAY(SELECT CASE WHEN r.oid = 0 THEN 'public' \
                                 ELSE COALESCE(ro.rolname::text, r.oid::text) END \
                     FROM unnest(p.polroles) AS r(oid) \
                     LEFT JOIN pg_catalog.pg_roles ro ON ro.oid = r.oid ORDER BY 1), \
               ARRAY(SELECT ro.rolname::text FROM pg_catalog.pg_roles ro \
                     WHERE ro.oid = ANY(p.polroles) AND (ro.rolsuper OR ro.rolbypassrls)), \
               pg_catalog.pg_get_expr(p.polqual, p.polrelid), \
               pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) \
             FROM pg_catalog.pg_policy p WHERE p.polrelid = ANY($1) \
             ORDER BY p.polrelid, p.polname",
        &[&oids],
    )
    .await
    .context("reading policies")?
    {
        let Some(&i) = by_oid.get(&row.get::<_, u32>(0)) else {
            continue;
        };
        tables[i].policies.push(Policy {
            name: row.get(1),
            permissive: row.get(2),
            command: Command::from_polcmd(&row.get::<_, String>(3)),
            roles: row.get(4),
            bypass_roles: row.get(5),
            using: row.get(6),
            with_check: row.get(7),
        });
    }

    for row in crate::unnamed::query(
        tx,
            "SELECT co.conrelid, co.contype::text, co.convalidated, \
               ARRAY(SELECT a.attname::text FROM unnest(co.conkey) WITH ORDINALITY AS k(n, i) \
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = k.n \
                     ORDER BY k.i), \
               rn.nspname::text, rc.relname::text, \
               ARRAY(SELECT a.attname::text FROM unnest(co.confkey) WITH ORDINALITY AS k(n, i) \
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = co.confrelid AND a.attnum = k.n \
                     ORDER BY k.i), \
               pg_catalog.pg_get_constraintdef(co.oid), co.confrelid, \
               co.confmatchtype::text \
             FROM pg_catalog.pg_constraint co \
             LEFT JOIN pg_catalog.pg_class rc ON rc.oid = co.confrelid \
             LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace \
             WHERE co.conrelid = ANY($1) AND co.contype IN ('f', 'c')",
            &[&oids],
        )
        .await
        .context("reading constraints")?
    {
        let Some(&i) = by_oid.get(&row.get::<_, u32>(0)) else {
            continue;
        };
        let kind: String = row.get(1);
        let validated: bool = row.get(2);
        if kind == "f" {
            tables[i].foreign_keys.push(ForeignKey {
                columns: row.get(3),
                ref_schema: row.get::<_, Option<String>>(4).unwrap_or_default(),
                ref_table: row.get::<_, Option<String>>(5).unwrap_or_default(),
                ref_columns: row.get(6),
                validated,
                ref_oid: row.get(8),
                match_full: row.get::<_, String>(9) == "f",
            });
        } else {
            let def: String = row.get(7);
            if validated {
                tables[i].checks.push(def.clone());
            }
            tables[i].insert_checks.push(def);
        }
    }
    Ok(())
}

/// Tables by oid, with their columns and constraints (no privileges), and each one's tenant
/// column among `tenant_columns`: for the probe, whose parent rows may live outside the audited
/// schemas.
pub(crate) async fn load_tables_by_oid(
    tx: &Transaction<'_>,
    oids: &[u32],
    tenant_columns: &[String],
) -> Result<Vec<Table>, AuditError> {
    let mut tables: Vec<Table> = crate::unnamed::query(
        tx,
        &format!("{TABLE_COLUMNS} WHERE c.oid = ANY($1) ORDER BY 2, 3"),
        &[&oids],
    )
    .await
    .context("reading a parent table")?
    .iter()
    .map(table_from_row)
    .collect();
    let by_oid: HashMap<u32, usize> = tables.iter().enumerate().map(|(i, t)| (t.oid, i)).collect();
    load_details(tx, &mut tables, &by_oid, oids).await?;
    for table in &mut tables {
        table.tenant_column = tenant_column_of(table, tenant_columns);
    }
    Ok(tables)
}

/// The first of `tenant_columns` that `table` holds.
fn tenant_column_of(table: &Table, tenant_columns: &[String]) -> Option<String> {
    tenant_columns
        .iter()
        .find(|c| table.columns.iter().any(|col| &col.name == *c))
        .cloned()
}

/// The `pg_class` columns [`table_from_row`] reads.
const TABLE_COLUMNS: &str = "SELECT c.oid, n.nspname::text, c.relname::text, c.relispartition, \
       c.relrowsecurity, c.relforcerowsecurity, pg_catalog.pg_get_userbyid(c.relowner)::text, \
       c.relkind = 'p' \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace";

async fn load_tables(tx: &Transaction<'_>, config: &AuditConfig) -> Result<Vec<Table>, AuditError> {
    Ok(crate::unnamed::query(
        tx,
        &format!(
            "{TABLE_COLUMNS} \
                 WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1) \
                   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                                   WHERE d.classid = 'pg_catalog.pg_class'::regclass \
                                     AND d.objid = c.oid AND d.deptype = 'e') \
                 ORDER BY 2, 3"
        ),
        &[&config.schemas],
    )
    .await
    .context("listing tables")?
    .iter()
    .map(table_from_row)
    .collect())
}

fn table_from_row(row: &tokio_postgres::Row) -> Table {
    Table {
        oid: row.get(0),
        schema: row.get(1),
        name: row.get(2),
        is_partition: row.get(3),
        rls: row.get(4),
        force_rls: row.get(5),
        owner: row.get(6),
        partitioned: row.get(7),
        columns: Vec::new(),
        policies: Vec::new(),
        foreign_keys: Vec::new(),
        checks: Vec::new(),
        insert_checks: Vec::new(),
        index_leading_columns: Vec::new(),
        privileges: HashMap::new(),
        tenant_column: None,
    }
}

fn first_char(s: &str) -> char {
    s.chars().next().unwrap_or(' ')
}

/// `security_invoker=true` in any of PostgreSQL's boolean spellings.
fn is_security_invoker_on(option: &str) -> bool {
    option
        .to_ascii_lowercase()
        .split_once('=')
        .is_some_and(|(key, value)| {
            key == "security_invoker" && matches!(value, "1" | "true" | "yes" | "on")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_invoker_spellings() {
        for on in [
            "security_invoker=true",
            "security_invoker=on",
            "SECURITY_INVOKER=1",
        ] {
            assert!(is_security_invoker_on(on));
        }
        for off in [
            "security_invoker=false",
            "security_barrier=true",
            "security_invoker",
        ] {
            assert!(!is_security_invoker_on(off));
        }
    }

    #[test]
    fn commands_cover_actions() {
        assert!(Command::All.covers(Command::Delete));
        assert!(!Command::Select.covers(Command::Insert));
        assert_eq!(Command::from_polcmd("w"), Command::Update);
        assert_eq!(Command::from_polcmd("*"), Command::All);
    }
}
