//! The stable identifiers of every check.

use std::fmt;

use serde::{Serialize, Serializer};

macro_rules! checks {
    ($(
        $(#[doc = $doc:literal])+
        $variant:ident = $id:literal, $reference:expr;
    )+) => {
        /// What a [`Finding`](crate::Finding) is about: one variant per check, each with a stable,
        /// documented id (its `check` field in JSON).
        ///
        /// Ids never change meaning; new checks add new ids. Where a check follows one of
        /// Supabase's database linter (splinter) lints, [`Check::reference`] names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum Check {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl Check {
            /// Every check, in documentation order.
            pub const ALL: &'static [Check] = &[$(Check::$variant,)+];

            /// The stable id, e.g. `"rls_disabled"`.
            pub fn id(self) -> &'static str {
                match self { $(Check::$variant => $id,)+ }
            }

            /// What the check finds and why it matters (its documentation, as one paragraph).
            pub fn description(self) -> &'static str {
                match self { $(Check::$variant => concat!($($doc),+).trim_ascii(),)+ }
            }

            /// The splinter lint this check follows, e.g. `Some("splinter 0013")`.
            pub fn reference(self) -> Option<&'static str> {
                match self { $(Check::$variant => $reference,)+ }
            }
        }
    };
}

checks! {
    /// A table in an audited schema without Row Level Security: every role with a grant reads
    /// every org's rows. Critical on tenant tables, high elsewhere.
    RlsDisabled = "rls_disabled", Some("splinter 0013 rls_disabled_in_public");
    /// RLS is enabled but not forced: the table's owner (often the login the app connects with)
    /// bypasses every policy.
    RlsNotForced = "rls_not_forced", None;
    /// RLS is enabled and no policy exists: everyone but the owner is denied (usually a
    /// forgotten migration).
    RlsEnabledNoPolicy = "rls_enabled_no_policy", Some("splinter 0008 rls_enabled_no_policy");
    /// Policies exist on a table whose RLS is disabled: they do nothing.
    PolicyExistsRlsDisabled = "policy_exists_rls_disabled", Some("splinter 0007 policy_exists_rls_disabled");
    /// A permissive policy whose `USING` or `WITH CHECK` is constant true, for a role other than
    /// `service_role` (seed 002's `organizations_all_access`).
    PolicyAlwaysTrue = "rls_policy_always_true", Some("splinter 0024 rls_policy_always_true");
    /// A permissive read policy with a top-level `auth.uid() IS NULL OR …`: every row is visible
    /// whenever the auth function is NULL (anonymous or unscoped sessions).
    PolicyNullAuthDisjunct = "rls_policy_null_auth_disjunct", Some("splinter 0030 rls_policy_null_auth_disjunct");
    /// A policy that reads `user_metadata` (or `raw_user_meta_data`): users edit it themselves.
    PolicyReferencesUserMetadata = "rls_references_user_metadata", Some("splinter 0015 rls_references_user_metadata");
    /// Several permissive policies for the same role and action: they OR together, which is
    /// often wider than meant (and each costs time on every row).
    MultiplePermissivePolicies = "multiple_permissive_policies", Some("splinter 0006 multiple_permissive_policies");
    /// A policy for all roles (`PUBLIC`) where one for `authenticated` was probably meant.
    PolicyForPublic = "policy_for_public", None;
    /// A permissive policy on a tenant table whose `USING` never mentions the tenant column:
    /// it cannot be what keeps orgs apart.
    PolicyIgnoresTenantColumn = "policy_ignores_tenant_column", None;
    /// A permissive write policy (INSERT, UPDATE, ALL) on a tenant table whose effective
    /// `WITH CHECK` (its own, or for UPDATE/ALL its `USING` when absent) does not tie the tenant
    /// column to the caller's org, and no restrictive policy does: rows can be written into, or
    /// moved to, another org.
    WritePolicyWithoutTenantCheck = "write_policy_without_tenant_check", None;
    /// An UPDATE or ALL policy without `WITH CHECK` whose `USING` pins the tenant column:
    /// PostgreSQL reuses `USING` for new rows, so writes are pinned too (info: an explicit
    /// `WITH CHECK` keeps them pinned if `USING` is ever widened).
    WriteCheckFromUsing = "write_check_from_using", None;
    /// An INSERT policy without `WITH CHECK`: PostgreSQL accepts no row through it, so it
    /// grants nothing (usually a forgotten check).
    InsertPolicyWithoutCheck = "insert_policy_without_check", None;
    /// Role `anon` can read a tenant table (a grant plus RLS off or a policy that applies to it).
    AnonCanReadTenantTable = "anon_can_read_tenant_table", None;
    /// A policy calls `auth.uid()`/`auth.jwt()`/`current_setting(…)` per row instead of once
    /// through `(select …)`.
    AuthRlsInitplan = "auth_rls_initplan", Some("splinter 0003 auth_rls_initplan");
    /// The tenant column accepts NULL.
    TenantColumnNullable = "tenant_column_nullable", None;
    /// The tenant column has no foreign key to the tenants table.
    TenantColumnNoForeignKey = "tenant_column_no_foreign_key", None;
    /// No index starts with the tenant column: every policy check scans the table.
    TenantColumnNoIndex = "tenant_column_no_index", None;
    /// Rows whose tenant id is NULL or points at no tenant.
    OrphanRows = "orphan_rows", None;
    /// The orphan-row count could not run (the login is subject to RLS, types differ, …).
    OrphanRowsUnchecked = "orphan_rows_unchecked", None;
    /// `authenticated` has policies on a table but lacks the grants to use them (seed 004's
    /// "permission denied").
    MissingGrantsAuthenticated = "missing_grants_authenticated", None;
    /// A function without a fixed `search_path`; high for `SECURITY DEFINER` functions (callers
    /// can shadow the objects it uses and run code as its owner).
    FunctionSearchPathMutable = "function_search_path_mutable", Some("splinter 0011 function_search_path_mutable");
    /// `anon` may execute a `SECURITY DEFINER` function: it runs as its owner and bypasses RLS.
    AnonSecurityDefinerFunctionExecutable = "anon_security_definer_function_executable", Some("splinter 0028 anon_security_definer_function_executable");
    /// `authenticated` may execute a `SECURITY DEFINER` function: it runs as its owner and
    /// bypasses RLS.
    AuthenticatedSecurityDefinerFunctionExecutable = "authenticated_security_definer_function_executable", Some("splinter 0029 authenticated_security_definer_function_executable");
    /// A view over RLS tables that is not `security_invoker`: it reads as its owner, bypassing
    /// RLS.
    SecurityDefinerView = "security_definer_view", Some("splinter 0010 security_definer_view");
    /// A materialized view readable by client roles: materialized views have no RLS.
    MaterializedViewExposed = "materialized_view_in_api", Some("splinter 0016 materialized_view_in_api");
    /// A foreign table readable by client roles: foreign tables have no RLS.
    ForeignTableExposed = "foreign_table_in_api", Some("splinter 0017 foreign_table_in_api");
    /// The login is a superuser: RLS never applies to it, and `RESET ROLE` escapes every policy.
    LoginSuperuser = "login_superuser", None;
    /// The login has `BYPASSRLS`: RLS never applies to it.
    LoginBypassRls = "login_bypassrls", None;
    /// The login owns tables: owners bypass RLS unless it is forced, and can disable it.
    LoginOwnsTables = "login_owns_tables", None;
    /// The login itself holds table privileges on tenant tables: after `RESET ROLE` a
    /// connection keeps them.
    LoginDirectPrivileges = "login_direct_privileges", None;
    /// The roles the guard scopes to (`anon`, `authenticated`, `service_role`) or the `auth`
    /// helper functions do not exist; checks that need them were skipped.
    AppRolesMissing = "app_roles_missing", None;
    /// Isolation probe: org B read a row of org A.
    ProbeCrossTenantRead = "probe_cross_tenant_read", None;
    /// Isolation probe: org B updated a row of org A.
    ProbeCrossTenantUpdate = "probe_cross_tenant_update", None;
    /// Isolation probe: org B deleted a row of org A.
    ProbeCrossTenantDelete = "probe_cross_tenant_delete", None;
    /// Isolation probe: org B inserted a row into org A.
    ProbeCrossTenantInsert = "probe_cross_tenant_insert", None;
    /// Isolation probe: a step failed for a reason other than RLS, so it proves nothing.
    ProbeInconclusive = "probe_inconclusive", None;
    /// Isolation probe: the table could not be probed (no row could be made for it).
    ProbeSkipped = "probe_skipped", None;
    /// Isolation probe: it could not run at all (no role to scope to, or not allowed to).
    ProbeUnavailable = "probe_unavailable", None;
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Check {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_snake_case() {
        let ids: HashSet<_> = Check::ALL.iter().map(|c| c.id()).collect();
        assert_eq!(ids.len(), Check::ALL.len());
        for id in ids {
            assert!(
                id.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{id}"
            );
        }
    }

    #[test]
    fn covers_the_splinter_lints_of_the_issue() {
        let references: Vec<_> = Check::ALL.iter().filter_map(|c| c.reference()).collect();
        for lint in [
            "0003", "0006", "0007", "0008", "0010", "0011", "0013", "0015", "0016", "0017", "0024",
            "0028", "0029", "0030",
        ] {
            assert!(
                references.iter().any(|r| r.contains(lint)),
                "no check follows splinter {lint}"
            );
        }
    }
}
