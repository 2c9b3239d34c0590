//! Write-side findings: per command, whether the check PostgreSQL applies to new rows (the
//! policy's WITH CHECK, or its USING when UPDATE/ALL has none) pins the tenant column.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{SUPABASE_AUTH, WRITE_SIDE, audit, database, expected, pairs};
use tenant_guard_audit::{AuditConfig, Check, Finding, Report, Severity};

fn finding<'r>(report: &'r Report, check: Check, policy: &str) -> &'r Finding {
    report
        .findings
        .iter()
        .find(|f| f.check == check && f.policy.as_deref() == Some(policy))
        .unwrap_or_else(|| panic!("no {check} for {policy}:\n{}", report.to_text(false)))
}

#[tokio::test]
async fn write_checks_are_judged_per_command() {
    let (_db, mut client) = database(&[SUPABASE_AUTH, WRITE_SIDE]).await;
    let report = audit(&mut client, AuditConfig::new()).await;
    assert_eq!(
        pairs(&report),
        expected(&[
            ("write_check_from_using", "public.notes"),
            ("write_policy_without_tenant_check", "public.docs"),
            ("policy_ignores_tenant_column", "public.docs"),
            ("write_check_from_using", "public.files"),
            ("write_policy_without_tenant_check", "public.tickets"),
            ("insert_policy_without_check", "public.comments"),
            ("write_policy_without_tenant_check", "public.moves"),
        ]),
        "{}",
        report.to_text(false)
    );

    // Implicit and pinned: info, with the reason and the USING text, and the explicit fix.
    let notes = finding(&report, Check::WriteCheckFromUsing, "notes_update");
    assert_eq!(notes.severity, Severity::Info);
    assert!(
        notes.message.contains("no WITH CHECK")
            && notes
                .message
                .contains("checks updated rows against its USING")
            && notes
                .message
                .contains("current_setting('tenant_guard.org_id'"),
        "{}",
        notes.message
    );
    assert!(
        notes
            .fix
            .starts_with("ALTER POLICY notes_update ON public.notes WITH CHECK (org_id = ")
    );
    let files = finding(&report, Check::WriteCheckFromUsing, "files_all");
    assert!(
        files.message.contains("inserted and updated rows"),
        "{}",
        files.message
    );

    // Implicit and not pinned: high, saying the USING is what PostgreSQL reuses.
    let docs = finding(&report, Check::WritePolicyWithoutTenantCheck, "docs_update");
    assert_eq!(docs.severity, Severity::High);
    assert!(
        docs.message.contains("no WITH CHECK") && docs.message.contains("auth.uid()"),
        "{}",
        docs.message
    );
    assert!(docs.fix.contains("WITH CHECK (org_id = (SELECT pg_catalog.current_setting('tenant_guard.org_id', true)::uuid))"), "{}", docs.fix);

    // Explicit checks that do not pin: high.
    for policy in ["tickets_insert", "moves_update"] {
        let f = finding(&report, Check::WritePolicyWithoutTenantCheck, policy);
        assert_eq!(f.severity, Severity::High);
        assert!(
            f.message
                .contains("has a WITH CHECK that does not tie org_id"),
            "{}",
            f.message
        );
    }

    // INSERT without a check grants nothing: info.
    let comments = finding(&report, Check::InsertPolicyWithoutCheck, "comments_insert");
    assert_eq!(comments.severity, Severity::Info);
}

/// The findings' claims hold on the live database: the implicit check really pins notes, and
/// docs' really lets a row move to another org.
#[tokio::test]
async fn the_findings_match_what_postgresql_does() {
    let (_db, client) = database(&[SUPABASE_AUTH, WRITE_SIDE]).await;
    let org_a = "00000000-0000-0000-0000-00000000000a";
    let org_b = "00000000-0000-0000-0000-00000000000b";
    let user = "00000000-0000-0000-0000-0000000000aa";
    client
        .batch_execute(&format!(
            "INSERT INTO public.organizations VALUES ('{org_a}', 'a'), ('{org_b}', 'b');
             INSERT INTO public.notes (org_id) VALUES ('{org_a}');
             INSERT INTO public.docs (org_id, created_by) VALUES ('{org_a}', '{user}');"
        ))
        .await
        .unwrap();
    let as_org_a = format!(
        "BEGIN; SET LOCAL ROLE authenticated;
         SELECT set_config('tenant_guard.org_id', '{org_a}', true);
         SELECT set_config('request.jwt.claims', '{{\"sub\": \"{user}\"}}', true);
         SELECT set_config('request.jwt.claim.sub', '{user}', true);"
    );
    let moved_note = client
        .batch_execute(&format!(
            "{as_org_a} UPDATE public.notes SET org_id = '{org_b}'; COMMIT;"
        ))
        .await;
    assert!(
        moved_note.is_err(),
        "notes_update let a row move to another org"
    );
    client.batch_execute("ROLLBACK").await.unwrap();
    client
        .batch_execute(&format!(
            "{as_org_a} UPDATE public.docs SET org_id = '{org_b}'; COMMIT;"
        ))
        .await
        .expect("docs_update lets the author move the row");
    let moved: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM public.docs WHERE org_id = '{org_b}'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(moved, 1);
}
