//! Fixture schemas recreating the seeds' mistakes produce exactly the expected findings; a
//! correct schema produces none.

mod common;

use common::{
    APP_LOGIN, CORRECT, EXTRA_ROLES, EXTRAS, SEED_002, SEED_004, SUPABASE_AUTH, audit, database,
    expected, pairs,
};
use tenant_guard_audit::{AuditConfig, Check, Severity};

#[tokio::test]
async fn seed_002_mistakes_are_found_exactly() {
    let (_db, mut client) = database(&[SUPABASE_AUTH, SEED_002]).await;
    let report = audit(&mut client, AuditConfig::new()).await;
    assert_eq!(
        pairs(&report),
        expected(&[
            // organizations_all_access: USING (true) WITH CHECK (true) for everyone.
            ("rls_policy_always_true", "public.organizations"),
            ("policy_for_public", "public.organizations"),
            ("rls_not_forced", "public.organizations"),
            // The two isolation policies: no TO clause, auth.jwt() per row, not forced, and
            // Supabase's default grants let anon through them.
            ("policy_for_public", "public.sms_confirmation_logs"),
            ("auth_rls_initplan", "public.sms_confirmation_logs"),
            ("rls_not_forced", "public.sms_confirmation_logs"),
            ("anon_can_read_tenant_table", "public.sms_confirmation_logs"),
            ("policy_for_public", "public.appointment_bookings"),
            ("auth_rls_initplan", "public.appointment_bookings"),
            ("rls_not_forced", "public.appointment_bookings"),
            ("anon_can_read_tenant_table", "public.appointment_bookings"),
            // The orphan audit done by hand.
            ("tenant_column_nullable", "public.cold_call_logs"),
            ("tenant_column_no_foreign_key", "public.cold_call_logs"),
            ("tenant_column_no_index", "public.cold_call_logs"),
            ("orphan_rows", "public.cold_call_logs"),
        ]),
        "{}",
        report.to_text(false)
    );
    let always_true = &report.findings[0];
    assert_eq!(always_true.check, Check::PolicyAlwaysTrue);
    assert_eq!(always_true.severity, Severity::Critical);
    assert_eq!(
        always_true.policy.as_deref(),
        Some("organizations_all_access")
    );
    let orphans = report
        .findings
        .iter()
        .find(|f| f.check == Check::OrphanRows)
        .unwrap();
    assert!(
        orphans.message.contains("1 with NULL org_id")
            && orphans
                .message
                .contains("1 whose org_id matches no row of public.organizations"),
        "{}",
        orphans.message
    );
    // The CHECK (org_id IS NOT NULL) of sms_confirmation_logs counts as NOT NULL.
    assert_eq!(report.summary.tables_scanned, 4);
    assert_eq!(report.summary.tables_with_rls, 4);
    assert_eq!(report.summary.tables_with_forced_rls, 1);
    assert_eq!(report.summary.tenant_tables, 3);
    assert_eq!(report.summary.findings.critical, 1);
}

#[tokio::test]
async fn seed_002_orphan_count_respects_the_row_bound() {
    let (_db, mut client) = database(&[SUPABASE_AUTH, SEED_002]).await;
    let report = audit(&mut client, AuditConfig::new().orphan_sample_rows(1)).await;
    let orphans: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.check == Check::OrphanRows)
        .collect();
    // The first row read is the healthy one: within the bound, nothing is found.
    assert!(orphans.is_empty(), "{orphans:?}");
    let skipped = audit(&mut client, AuditConfig::new().orphan_sample_rows(0)).await;
    assert!(
        !skipped
            .findings
            .iter()
            .any(|f| f.check == Check::OrphanRows)
    );
}

#[tokio::test]
async fn seed_004_mistakes_are_found_exactly() {
    let (_db, mut client) = database(&[SUPABASE_AUTH, SEED_004]).await;
    let config = AuditConfig::new()
        .tenant_columns(["workspace_id"])
        .allow("workspace_memberships");
    let report = audit(&mut client, config).await;
    assert_eq!(
        pairs(&report),
        expected(&[
            // Migration 004b's state: no RLS.
            ("rls_disabled", "public.work_checkpoints"),
            // 004c without 004d: policies for authenticated, no grants ("permission denied").
            ("missing_grants_authenticated", "public.projects"),
            ("missing_grants_authenticated", "public.work_sessions"),
            ("missing_grants_authenticated", "public.work_artifacts"),
            // Never forced; auth.uid() per row inside the membership subqueries.
            ("rls_not_forced", "public.projects"),
            ("rls_not_forced", "public.work_sessions"),
            ("rls_not_forced", "public.work_artifacts"),
            ("auth_rls_initplan", "public.projects"),
            ("auth_rls_initplan", "public.work_sessions"),
            ("auth_rls_initplan", "public.work_artifacts"),
            // The UPDATE policies have no WITH CHECK: their membership USING is reused for the
            // new row, which pins workspace_id (info).
            ("write_check_from_using", "public.projects"),
            ("write_check_from_using", "public.work_sessions"),
        ]),
        "{}",
        report.to_text(false)
    );
    let grants = report
        .findings
        .iter()
        .find(|f| f.check == Check::MissingGrantsAuthenticated && f.object == "public.projects")
        .unwrap();
    assert_eq!(
        grants.fix,
        "GRANT SELECT, INSERT, UPDATE, DELETE ON public.projects TO authenticated;"
    );
    // One auth_rls_initplan per policy (four per table), the service_role policy excluded.
    let initplans = report
        .findings
        .iter()
        .filter(|f| f.check == Check::AuthRlsInitplan && f.object == "public.projects")
        .count();
    assert_eq!(initplans, 4);
    assert_eq!(report.summary.allowed_tables, 1);
}

#[tokio::test]
async fn a_correct_schema_has_no_findings() {
    let (_db, mut client) = database(&[CORRECT]).await;
    let report = audit(&mut client, AuditConfig::new().allow("plans")).await;
    assert!(report.findings.is_empty(), "{}", report.to_text(false));
    // organizations, projects, tasks, events and its partition, plans.
    assert_eq!(report.summary.tables_scanned, 6);
    assert_eq!(report.summary.tenant_tables, 4);
    // No Supabase-style helpers here: the audit does not need them.
    assert!(report.summary.auth_helpers.is_empty());

    // Without --allow, the public table is reported; connecting as a superuser is too.
    let strict = tenant_guard_audit::audit(&mut client, &AuditConfig::new())
        .await
        .unwrap();
    let superuser = superuser(&client).await;
    assert_eq!(
        pairs(&strict),
        expected(&[
            ("rls_disabled", "public.plans"),
            ("login_superuser", superuser.as_str()),
        ]),
        "{}",
        strict.to_text(false)
    );
}

#[tokio::test]
async fn the_other_mistakes_are_found_exactly() {
    let (_db, mut client) = database(&[EXTRA_ROLES, SUPABASE_AUTH, EXTRAS]).await;
    let report = audit(&mut client, AuditConfig::new()).await;
    let common = [
        ("rls_enabled_no_policy", "public.forgotten"),
        ("rls_disabled", "public.switched_off"),
        ("policy_exists_rls_disabled", "public.switched_off"),
        ("rls_policy_null_auth_disjunct", "public.null_auth"),
        ("rls_references_user_metadata", "public.metadata_admin"),
        ("multiple_permissive_policies", "public.overlapping"),
        ("policy_ignores_tenant_column", "public.overlapping"),
        ("write_policy_without_tenant_check", "public.movable"),
        ("rls_policy_always_true", "public.open_read"),
        ("rls_not_forced", "public.owned"),
        ("function_search_path_mutable", "public.slugify(t text)"),
        ("function_search_path_mutable", "public.all_bodies()"),
        (
            "anon_security_definer_function_executable",
            "public.all_bodies()",
        ),
        (
            "authenticated_security_definer_function_executable",
            "public.all_bodies()",
        ),
        (
            "authenticated_security_definer_function_executable",
            "public.count_base()",
        ),
        ("security_definer_view", "public.base_report"),
        ("materialized_view_in_api", "public.base_totals"),
        ("foreign_table_in_api", "public.remote_rows"),
    ];
    assert_eq!(
        pairs(&report),
        expected(&common),
        "{}",
        report.to_text(false)
    );
    let severity_of = |check: Check, object: &str| {
        report
            .findings
            .iter()
            .find(|f| f.check == check && f.object == object)
            .map(|f| f.severity)
    };
    assert_eq!(
        severity_of(Check::FunctionSearchPathMutable, "public.all_bodies()"),
        Some(Severity::High)
    );
    assert_eq!(
        severity_of(Check::FunctionSearchPathMutable, "public.slugify(t text)"),
        Some(Severity::Low)
    );
    assert_eq!(
        severity_of(Check::PolicyAlwaysTrue, "public.open_read"),
        Some(Severity::Critical)
    );

    // The same database seen from logins with too much power.
    let owner = tenant_guard_audit::audit(
        &mut client,
        &AuditConfig::new().login_role("tg_audit_owner_login"),
    )
    .await
    .unwrap();
    let mut with_owner = expected(&common);
    with_owner.extend(expected(&[
        ("login_owns_tables", "tg_audit_owner_login"),
        ("login_direct_privileges", "tg_audit_owner_login"),
    ]));
    assert_eq!(pairs(&owner), with_owner, "{}", owner.to_text(false));

    let bypass = tenant_guard_audit::audit(
        &mut client,
        &AuditConfig::new().login_role("tg_audit_bypass_login"),
    )
    .await
    .unwrap();
    let mut with_bypass = expected(&common);
    with_bypass.extend(expected(&[("login_bypassrls", "tg_audit_bypass_login")]));
    assert_eq!(pairs(&bypass), with_bypass, "{}", bypass.to_text(false));
    assert_eq!(report.summary.login, APP_LOGIN);
}

#[tokio::test]
async fn a_missing_schema_or_login_is_an_error() {
    let (_db, mut client) = database(&[]).await;
    let missing_schema =
        tenant_guard_audit::audit(&mut client, &AuditConfig::new().schemas(["nope"]))
            .await
            .unwrap_err();
    assert!(
        missing_schema
            .to_string()
            .contains("schema `nope` does not exist")
    );
    let missing_login = tenant_guard_audit::audit(
        &mut client,
        &AuditConfig::new().login_role("tg_audit_no_such_login"),
    )
    .await
    .unwrap_err();
    assert!(missing_login.to_string().contains("does not exist"));
    // An empty database: nothing to report but the superuser login.
    let report = tenant_guard_audit::audit(&mut client, &AuditConfig::new())
        .await
        .unwrap();
    let superuser = superuser(&client).await;
    assert_eq!(
        pairs(&report),
        expected(&[("login_superuser", superuser.as_str())])
    );
}

#[allow(clippy::unwrap_used)]
async fn superuser(client: &tokio_postgres::Client) -> String {
    client
        .query_one("SELECT session_user::text", &[])
        .await
        .unwrap()
        .get(0)
}
