//! The isolation probe: catches leaky policies, passes correct ones, and leaves nothing behind,
//! even when the process running it is killed mid-probe.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{CORRECT, LEAKY, SEED_002, SUPABASE_AUTH, audit, database, expected, row_counts};
use tenant_guard_audit::{AuditConfig, Report};

fn probe_pairs(report: &Report) -> BTreeSet<(String, String)> {
    report
        .findings
        .iter()
        .filter(|f| f.check.id().starts_with("probe_"))
        .map(|f| (f.check.id().to_owned(), f.object.clone()))
        .collect()
}

#[tokio::test]
async fn the_probe_catches_leaky_policies_and_passes_correct_ones() {
    let (_db, mut client) = database(&[LEAKY]).await;
    let before = row_counts(&client).await;
    let report = audit(&mut client, AuditConfig::new().probe(true)).await;
    assert_eq!(
        probe_pairs(&report),
        expected(&[
            // USING (org_id IS NOT NULL): org B sees and deletes org A's note. Its WITH CHECK
            // is scoped, so B can neither move the row nor insert into A.
            ("probe_cross_tenant_read", "public.notes"),
            ("probe_cross_tenant_delete", "public.notes"),
            // WITH CHECK (true) on insert: org B writes into org A.
            ("probe_cross_tenant_insert", "public.tickets"),
        ]),
        "{}",
        report.to_text(false)
    );
    let probe = report.summary.probe.expect("probe summary");
    assert_eq!(
        (probe.tables, probe.passed, probe.failed, probe.skipped),
        (3, 1, 2, 0)
    );
    // The static checks point at the same policies.
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.check.id() == "policy_ignores_tenant_column" && f.object == "public.notes")
    );
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.check.id() == "rls_policy_always_true" && f.object == "public.tickets")
    );
    assert_eq!(
        row_counts(&client).await,
        before,
        "the probe left rows behind"
    );
}

#[tokio::test]
async fn the_probe_passes_a_correct_schema() {
    let (_db, mut client) = database(&[CORRECT]).await;
    let before = row_counts(&client).await;
    let report = audit(&mut client, AuditConfig::new().allow("plans").probe(true)).await;
    assert!(report.findings.is_empty(), "{}", report.to_text(false));
    let probe = report.summary.probe.expect("probe summary");
    // projects, tasks, events (through its parent), and the tenants table organizations.
    assert_eq!(
        (probe.tables, probe.passed, probe.failed, probe.skipped),
        (4, 4, 0, 0)
    );
    assert_eq!(
        row_counts(&client).await,
        before,
        "the probe left rows behind"
    );
}

#[tokio::test]
async fn the_probe_catches_seed_002_on_the_tenants_table() {
    let (_db, mut client) = database(&[SUPABASE_AUTH, SEED_002]).await;
    let before = row_counts(&client).await;
    let report = audit(&mut client, AuditConfig::new().probe(true)).await;
    assert_eq!(
        probe_pairs(&report),
        expected(&[
            ("probe_cross_tenant_read", "public.organizations"),
            ("probe_cross_tenant_update", "public.organizations"),
            ("probe_cross_tenant_delete", "public.organizations"),
        ]),
        "{}",
        report.to_text(false)
    );
    assert_eq!(
        row_counts(&client).await,
        before,
        "the probe left rows behind"
    );
}

#[tokio::test]
async fn the_probe_reports_when_it_cannot_run() {
    let (_db, mut client) = database(&[LEAKY]).await;
    let report = audit(
        &mut client,
        AuditConfig::new()
            .probe(true)
            .probe_role("tg_audit_no_such_role"),
    )
    .await;
    assert_eq!(
        probe_pairs(&report),
        expected(&[("probe_unavailable", "tg_audit_no_such_role")])
    );
}

/// The probe's first write blocks in a trigger on an advisory lock this test holds; the test
/// waits until the probe's backend has written (it has a transaction id) and is waiting, kills
/// the CLI process with SIGKILL, releases the lock, and waits for the backend to end. Nothing
/// the probe wrote is there: it was never committed.
#[tokio::test]
async fn nothing_persists_when_the_probe_is_killed() {
    const LOCK: i64 = 727_274;
    let blocker = format!(
        "GRANT USAGE ON SCHEMA public TO authenticated;
         CREATE TABLE public.guarded (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             org_id uuid NOT NULL,
             body text NOT NULL);
         CREATE INDEX ON public.guarded (org_id);
         ALTER TABLE public.guarded ENABLE ROW LEVEL SECURITY;
         ALTER TABLE public.guarded FORCE ROW LEVEL SECURITY;
         CREATE POLICY guarded_isolation ON public.guarded FOR ALL TO authenticated
             USING (org_id = (SELECT pg_catalog.current_setting('tenant_guard.org_id', true)::uuid))
             WITH CHECK (org_id = (SELECT pg_catalog.current_setting('tenant_guard.org_id', true)::uuid));
         GRANT SELECT, INSERT, UPDATE, DELETE ON public.guarded TO authenticated;
         CREATE FUNCTION public.wait_for_test() RETURNS trigger LANGUAGE plpgsql
             SET search_path = '' AS $$
             BEGIN
                 PERFORM pg_catalog.pg_advisory_xact_lock_shared({LOCK});
                 RETURN NULL;
             END $$;
         REVOKE EXECUTE ON FUNCTION public.wait_for_test() FROM PUBLIC;
         GRANT EXECUTE ON FUNCTION public.wait_for_test() TO authenticated;
         CREATE TRIGGER guarded_wait AFTER INSERT ON public.guarded
             FOR EACH ROW EXECUTE FUNCTION public.wait_for_test();"
    );
    let (db, client) = database(&[&blocker]).await;
    let database_name: String = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await
        .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_tenant-guard"))
        .args(["audit", "--probe", "--fail-on", "none", "--format", "json"])
        .env("DATABASE_URL", db.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the CLI");

    // Wait (bounded) until the probe's backend has written and is waiting for our lock.
    let mut probe_pid: Option<i32> = None;
    for _ in 0..600 {
        let row = client
            .query_opt(
                "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid \
                 WHERE a.datname = $1 AND l.locktype = 'advisory' AND NOT l.granted \
                   AND a.backend_xid IS NOT NULL",
                &[&database_name],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            probe_pid = Some(row.get(0));
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the CLI ended before blocking"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let probe_pid = probe_pid.expect("the probe never reached the blocking insert");

    child.kill().expect("kill the CLI");
    child.wait().expect("reap the CLI");
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await
        .unwrap();

    // The backend notices its client is gone once the insert returns, and aborts.
    let mut gone = false;
    for _ in 0..600 {
        let alive: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)",
                &[&probe_pid],
            )
            .await
            .unwrap()
            .get(0);
        if !alive {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the killed probe's backend did not end");
    let rows: i64 = client
        .query_one("SELECT count(*) FROM public.guarded", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "a row written by the killed probe persisted");
}
