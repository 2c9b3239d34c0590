//! What to audit and how.

use crate::error::AuditError;

/// What to audit and how. Built with chained methods; the defaults match the CLI's.
///
/// ```
/// use tenant_guard_audit::AuditConfig;
///
/// let config = AuditConfig::new()
///     .schemas(["public", "app"])
///     .tenant_columns(["org_id", "workspace_id"])
///     .allow("public.plans")
///     .probe(true);
/// assert_eq!(config.schema_list(), ["public", "app"]);
/// ```
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub(crate) schemas: Vec<String>,
    pub(crate) tenant_columns: Vec<String>,
    pub(crate) allow: Vec<String>,
    pub(crate) probe: bool,
    pub(crate) probe_role: String,
    pub(crate) login_role: Option<String>,
    pub(crate) orphan_sample_rows: u64,
    pub(crate) statement_timeout_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl AuditConfig {
    /// Schema `public`, tenant column `org_id`, no allowed table, no probe, orphan counts over
    /// at most 100 000 rows per table, a 60 s statement timeout.
    pub fn new() -> Self {
        Self {
            schemas: vec!["public".to_owned()],
            tenant_columns: vec!["org_id".to_owned()],
            allow: Vec::new(),
            probe: false,
            probe_role: "authenticated".to_owned(),
            login_role: None,
            orphan_sample_rows: 100_000,
            statement_timeout_ms: 60_000,
        }
    }

    /// The schemas to audit (replaces the default `public`).
    pub fn schemas<I, S>(mut self, schemas: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.schemas = schemas.into_iter().map(Into::into).collect();
        self
    }

    /// The tenant column names, in order of preference (replaces the default `org_id`). A table
    /// holding any of them is a tenant table.
    pub fn tenant_columns<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tenant_columns = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Allows a table to be public on purpose: `table` (in any audited schema) or
    /// `schema.table`. Allowed tables get no table findings.
    pub fn allow(mut self, table: impl Into<String>) -> Self {
        self.allow.push(table.into());
        self
    }

    /// Runs the isolation probe (writes inside a transaction that is always rolled back).
    ///
    /// For each tenant table with RLS (and the tenants table itself), the probe scopes as a
    /// synthetic org A exactly as the guard scopes a request, inserts a row, then scopes as org
    /// B and tries to read, update and delete it and to insert a row into org A.
    ///
    /// When the row needs parent rows (required foreign keys: a comment's task, the task's
    /// project, the project's org), the probe creates them first in the same transaction, with
    /// their tenant column set to the synthetic org: as the connecting login, or, if it may not
    /// write them, as that org through the guard's scoping. Nullable foreign keys stay NULL;
    /// other required columns get their default, an enum's first label, a value a
    /// `CHECK (c IN (…))` allows, or a typed literal. Membership tables (a name containing
    /// `member`, a tenant column and a `user_id`/`member_id` column) get each probe user enrolled
    /// in its own org, so `EXISTS (SELECT 1 FROM memberships …)` policies see them. Tables the
    /// probe cannot make a row for (a required self-reference, a cycle of required foreign keys,
    /// a type it does not know, an insert the database refuses) are reported as `probe_skipped`
    /// with the exact reason.
    pub fn probe(mut self, enabled: bool) -> Self {
        self.probe = enabled;
        self
    }

    /// The role the probe scopes to (default `authenticated`, as the guard does).
    pub fn probe_role(mut self, role: impl Into<String>) -> Self {
        self.probe_role = role.into();
        self
    }

    /// Checks the powers of this login role instead of the connection's `session_user`: for CI
    /// jobs that connect as a migration owner but want the application's login checked.
    pub fn login_role(mut self, role: impl Into<String>) -> Self {
        self.login_role = Some(role.into());
        self
    }

    /// Counts orphan rows over at most this many rows per table; `0` skips the count.
    pub fn orphan_sample_rows(mut self, rows: u64) -> Self {
        self.orphan_sample_rows = rows;
        self
    }

    /// The statement timeout for the audit's queries, in milliseconds; `0` disables it.
    pub fn statement_timeout_ms(mut self, milliseconds: u64) -> Self {
        self.statement_timeout_ms = milliseconds;
        self
    }

    /// The schemas to audit.
    pub fn schema_list(&self) -> &[String] {
        &self.schemas
    }

    /// The tenant column names.
    pub fn tenant_column_list(&self) -> &[String] {
        &self.tenant_columns
    }

    /// Whether `schema.table` was allowed.
    pub fn is_allowed(&self, schema: &str, table: &str) -> bool {
        self.allow.iter().any(|entry| match entry.split_once('.') {
            Some((s, t)) => s == schema && t == table,
            None => entry == table,
        })
    }

    pub(crate) fn validate(&self) -> Result<(), AuditError> {
        let invalid = |reason: &str| {
            Err(AuditError::InvalidConfig {
                reason: reason.to_owned(),
            })
        };
        if self.schemas.is_empty() {
            return invalid("at least one schema is needed");
        }
        if self.tenant_columns.is_empty() {
            return invalid("at least one tenant column is needed");
        }
        let names = self
            .schemas
            .iter()
            .chain(&self.tenant_columns)
            .chain(std::iter::once(&self.probe_role))
            .chain(&self.login_role);
        for name in names {
            if name.is_empty() {
                return invalid("schema, column and role names cannot be empty");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_matches_bare_and_qualified_names() {
        let config = AuditConfig::new().allow("plans").allow("app.countries");
        assert!(config.is_allowed("public", "plans"));
        assert!(config.is_allowed("app", "plans"));
        assert!(config.is_allowed("app", "countries"));
        assert!(!config.is_allowed("public", "countries"));
        assert!(!config.is_allowed("public", "plan"));
    }

    #[test]
    fn rejects_empty_lists_and_names() {
        assert!(AuditConfig::new().validate().is_ok());
        assert!(
            AuditConfig::new()
                .schemas(Vec::<String>::new())
                .validate()
                .is_err()
        );
        assert!(AuditConfig::new().tenant_columns([""]).validate().is_err());
        assert!(AuditConfig::new().login_role("").validate().is_err());
    }
}
