//! The isolation probe: catches leaky policies, passes correct ones, and leaves nothing behind,
//! even when the process running it is killed mid-probe.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    APP_LOGIN, CHAIN, CORRECT, LEAKY, MEMBERSHIPS, SEED_002, SEED_004, SUPABASE_AUTH, audit,
    database, expected, row_counts,
};
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

#[allow(clippy::expect_used)]
fn probe_counts(report: &Report) -> (usize, usize, usize, usize) {
    let probe = report.summary.probe.as_ref().expect("probe summary");
    (probe.tables, probe.passed, probe.failed, probe.skipped)
}

/// projects → tasks → comments, each with a required foreign key to its parent: the probe makes
/// the org, project and task it needs, tests all three tables (and the tenants table), catches
/// the leaky middle level and passes the others.
#[tokio::test]
async fn the_probe_creates_parent_rows_down_a_chain() {
    let (_db, mut client) = database(&[CHAIN]).await;
    let before = row_counts(&client).await;
    let report = audit(&mut client, AuditConfig::new().probe(true)).await;
    assert_eq!(
        probe_pairs(&report),
        expected(&[("probe_cross_tenant_read", "public.tasks")]),
        "{}",
        report.to_text(false)
    );
    // organizations, projects, tasks, comments: none skipped.
    assert_eq!(
        probe_counts(&report),
        (4, 3, 1, 0),
        "{}",
        report.to_text(false)
    );
    let leak = report
        .findings
        .iter()
        .find(|f| f.check.id() == "probe_cross_tenant_read")
        .unwrap();
    // The row was org A's own insert, through the guard's scoping, not the login's.
    assert!(
        leak.message.contains("the row was inserted as org A."),
        "{}",
        leak.message
    );
    assert_eq!(
        row_counts(&client).await,
        before,
        "the probe left rows behind"
    );
}

/// Required self-references and cycles cannot be satisfied with one INSERT per row, a `point`
/// is beyond the probe's made-up values, and a parent table may refuse rows: the probe skips
/// those tables, says exactly why, and still probes the rest.
#[tokio::test]
async fn the_probe_skips_what_it_cannot_build_and_says_why() {
    let schema = "GRANT USAGE ON SCHEMA public TO authenticated;
         CREATE TABLE public.folders (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             org_id uuid NOT NULL,
             parent_id uuid NOT NULL REFERENCES public.folders (id));
         CREATE TABLE public.chickens (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             org_id uuid NOT NULL,
             egg_id uuid NOT NULL);
         CREATE TABLE public.eggs (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             org_id uuid NOT NULL,
             chicken_id uuid NOT NULL REFERENCES public.chickens (id));
         ALTER TABLE public.chickens ADD FOREIGN KEY (egg_id) REFERENCES public.eggs (id)
             DEFERRABLE INITIALLY DEFERRED;
         CREATE TABLE public.nests (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             org_id uuid NOT NULL,
             parent_id uuid REFERENCES public.nests (id),
             label text NOT NULL);
         CREATE TABLE public.places (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             org_id uuid NOT NULL,
             location point NOT NULL);
         CREATE TABLE public.ledgers (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             name text NOT NULL);
         CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql SET search_path = '' AS $$
             BEGIN RAISE EXCEPTION 'ledgers are opened by the billing system'; END $$;
         REVOKE EXECUTE ON FUNCTION public.refuse() FROM PUBLIC;
         CREATE TRIGGER ledgers_refuse BEFORE INSERT ON public.ledgers
             FOR EACH ROW EXECUTE FUNCTION public.refuse();
         CREATE TABLE public.entries (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             org_id uuid NOT NULL,
             ledger_id uuid NOT NULL REFERENCES public.ledgers (id));
         DO $$
         DECLARE t text;
         BEGIN
             FOREACH t IN ARRAY ARRAY['folders', 'chickens', 'eggs', 'nests', 'places', 'entries'] LOOP
                 EXECUTE format('CREATE INDEX ON public.%I (org_id)', t);
                 EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', t);
                 EXECUTE format('ALTER TABLE public.%I FORCE ROW LEVEL SECURITY', t);
                 EXECUTE format('CREATE POLICY isolation ON public.%I FOR ALL TO authenticated
                     USING (org_id = (SELECT pg_catalog.current_setting(''tenant_guard.org_id'', true)::uuid))
                     WITH CHECK (org_id = (SELECT pg_catalog.current_setting(''tenant_guard.org_id'', true)::uuid))', t);
                 EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO authenticated', t);
             END LOOP;
         END $$;";
    let (_db, mut client) = database(&[schema]).await;
    let report = audit(&mut client, AuditConfig::new().probe(true)).await;
    assert_eq!(
        probe_pairs(&report),
        expected(&[
            ("probe_skipped", "public.folders"),
            ("probe_skipped", "public.chickens"),
            ("probe_skipped", "public.eggs"),
            ("probe_skipped", "public.places"),
            ("probe_skipped", "public.entries"),
        ]),
        "{}",
        report.to_text(false)
    );
    let message = |object: &str| {
        report
            .findings
            .iter()
            .find(|f| f.object == object && f.check.id() == "probe_skipped")
            .map(|f| f.message.clone())
            .unwrap()
    };
    assert!(
        message("public.folders")
            .contains("required column(s) parent_id of public.folders reference the table itself"),
        "{}",
        message("public.folders")
    );
    assert!(
        message("public.chickens").contains(
            "required foreign keys form a cycle (public.chickens → public.eggs → public.chickens)"
        ),
        "{}",
        message("public.chickens")
    );
    assert!(
        message("public.eggs").contains(
            "required foreign keys form a cycle (public.eggs → public.chickens → public.eggs)"
        ),
        "{}",
        message("public.eggs")
    );
    assert!(
        message("public.places").contains(
            "required column location of public.places has type point, which the probe cannot make up"
        ),
        "{}",
        message("public.places")
    );
    // A parent the database refuses: the precise error, for both ways of writing it.
    assert!(
        message("public.entries").contains(
            "could not create a row in public.ledgers for public.entries (ledger_id) → public.ledgers: \
             as the login (P0001: ledgers are opened by the billing system), \
             and as org A through the guard's scoping (42501: permission denied for table ledgers)"
        ),
        "{}",
        message("public.entries")
    );
    // nests: its self-reference is nullable, so it stays NULL and the table is probed.
    assert_eq!(probe_counts(&report), (6, 1, 0, 5));
}

/// Connected as the application's login (no privileges of its own, only SET ROLE), the probe
/// cannot write parent rows as the login, so it writes them as their org through the guard's
/// scoping, as the application would; where the org may not either, it says so for both.
#[tokio::test]
async fn parent_rows_fall_back_to_the_orgs_own_scoping() {
    let schema = "GRANT USAGE ON SCHEMA public TO authenticated;
         CREATE TABLE public.projects (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             org_id uuid NOT NULL,
             name text NOT NULL);
         CREATE TABLE public.tasks (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             org_id uuid NOT NULL,
             project_id uuid NOT NULL REFERENCES public.projects (id),
             title text NOT NULL);
         CREATE TABLE public.reports (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             org_id uuid NOT NULL,
             body text NOT NULL);
         CREATE TABLE public.report_notes (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             org_id uuid NOT NULL,
             report_id uuid NOT NULL REFERENCES public.reports (id),
             body text NOT NULL);
         DO $$
         DECLARE t text;
         BEGIN
             FOREACH t IN ARRAY ARRAY['projects', 'tasks', 'reports', 'report_notes'] LOOP
                 EXECUTE format('CREATE INDEX ON public.%I (org_id)', t);
                 EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', t);
                 EXECUTE format('ALTER TABLE public.%I FORCE ROW LEVEL SECURITY', t);
                 EXECUTE format('CREATE POLICY isolation ON public.%I FOR ALL TO authenticated
                     USING (org_id = (SELECT pg_catalog.current_setting(''tenant_guard.org_id'', true)::uuid))
                     WITH CHECK (org_id = (SELECT pg_catalog.current_setting(''tenant_guard.org_id'', true)::uuid))', t);
             END LOOP;
         END $$;
         GRANT SELECT, INSERT, UPDATE, DELETE ON public.projects, public.tasks, public.report_notes
             TO authenticated;
         -- Reports are written by a backend job only.
         GRANT SELECT ON public.reports TO authenticated;";
    let (db, client) = database(&[schema]).await;
    let before = row_counts(&client).await;
    let mut config = db.config().clone();
    config.user(APP_LOGIN);
    let (mut app, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect as the application login");
    tokio::spawn(connection);
    let report = tenant_guard_audit::audit(
        &mut app,
        &AuditConfig::new().probe(true).orphan_sample_rows(0),
    )
    .await
    .expect("audit");
    assert_eq!(
        probe_pairs(&report),
        expected(&[
            // Org A could not insert its own report (no INSERT grant), nor could the login.
            ("probe_skipped", "public.reports"),
            ("probe_skipped", "public.report_notes"),
        ]),
        "{}",
        report.to_text(false)
    );
    let notes = report
        .findings
        .iter()
        .find(|f| f.object == "public.report_notes" && f.check.id() == "probe_skipped")
        .unwrap();
    assert!(
        notes.message.contains(
            "could not create a row in public.reports for public.report_notes (report_id) → public.reports: \
             as the login (42501: permission denied for table reports), \
             and as org A through the guard's scoping (42501: permission denied for table reports)"
        ),
        "{}",
        notes.message
    );
    // projects and tasks: the task's project was made by org A itself.
    assert_eq!(
        probe_counts(&report),
        (4, 2, 0, 2),
        "{}",
        report.to_text(false)
    );
    assert_eq!(
        row_counts(&client).await,
        before,
        "the probe left rows behind"
    );
}

/// Seed 004's membership policies (`EXISTS (SELECT 1 FROM workspace_memberships …)`): the probe
/// enrols its users in their own workspace, so org A writes its rows itself, and org B, a
/// member of another workspace, exposes a policy that only asks for "a member of something".
#[tokio::test]
async fn the_probe_enrols_its_users_in_membership_tables() {
    let (_db, mut client) = database(&[SUPABASE_AUTH, MEMBERSHIPS]).await;
    let before = row_counts(&client).await;
    let report = audit(
        &mut client,
        AuditConfig::new()
            .tenant_columns(["workspace_id"])
            .probe(true),
    )
    .await;
    assert_eq!(
        probe_pairs(&report),
        expected(&[
            ("probe_cross_tenant_read", "public.tasks"),
            ("probe_cross_tenant_update", "public.tasks"),
            ("probe_cross_tenant_delete", "public.tasks"),
            ("probe_cross_tenant_insert", "public.tasks"),
        ]),
        "{}",
        report.to_text(false)
    );
    // workspaces (the tenants table), workspace_memberships, projects, tasks.
    assert_eq!(
        probe_counts(&report),
        (4, 3, 1, 0),
        "{}",
        report.to_text(false)
    );
    let leak = report
        .findings
        .iter()
        .find(|f| f.check.id() == "probe_cross_tenant_read")
        .unwrap();
    assert!(
        leak.message.contains("the row was inserted as org A."),
        "{}",
        leak.message
    );
    assert_eq!(
        row_counts(&client).await,
        before,
        "the probe left rows behind"
    );
}

/// Seed 004 as filed: work_sessions needs a project (required project_id), which the probe now
/// makes, so every RLS table with a tenant column is probed; none leaks (no grants at all).
#[tokio::test]
async fn the_probe_reaches_seed_004_tables_behind_required_foreign_keys() {
    let (_db, mut client) = database(&[SUPABASE_AUTH, SEED_004]).await;
    let before = row_counts(&client).await;
    let report = audit(
        &mut client,
        AuditConfig::new()
            .tenant_columns(["workspace_id"])
            .allow("workspace_memberships")
            .probe(true),
    )
    .await;
    assert_eq!(
        probe_pairs(&report),
        expected(&[]),
        "{}",
        report.to_text(false)
    );
    // workspaces, projects, work_sessions.
    assert_eq!(
        probe_counts(&report),
        (3, 3, 0, 0),
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

/// The table under test has required foreign keys (guarded → guarded_projects → guarded_orgs),
/// so the probe first writes the org and the project (statements of their own), then org A's
/// row, which blocks in a trigger on an advisory lock this test holds. The test waits until the
/// probe's backend has written (it has a transaction id) and is waiting, kills the CLI process
/// with SIGKILL, releases the lock, and waits for the backend to end. Nothing the probe wrote
/// is there, parents included: it was never committed.
#[tokio::test]
async fn nothing_persists_when_the_probe_is_killed() {
    const LOCK: i64 = 727_274;
    let blocker = format!(
        "GRANT USAGE ON SCHEMA public TO authenticated;
         CREATE TABLE public.guarded_orgs (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             name text NOT NULL);
         CREATE TABLE public.guarded_projects (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             org_id uuid NOT NULL REFERENCES public.guarded_orgs (id),
             name text NOT NULL);
         CREATE TABLE public.guarded (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             org_id uuid NOT NULL REFERENCES public.guarded_orgs (id),
             project_id uuid NOT NULL REFERENCES public.guarded_projects (id),
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
    for table in ["guarded", "guarded_projects", "guarded_orgs"] {
        let rows: i64 = client
            .query_one(&format!("SELECT count(*) FROM public.{table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 0, "a row the killed probe wrote in {table} persisted");
    }
}

/// A tenant table and a column named by keywords the audit used to leave unquoted (`natural`,
/// `verbose`), with a CHECK whose allowed value holds a backslash and a quote.
const KEYWORDS: &str = r#"
CREATE TABLE public."natural" (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    "verbose" text NOT NULL CHECK ("verbose" IN (E'C:\\it''s'))
);
CREATE INDEX natural_org_id_idx ON public."natural" (org_id);
ALTER TABLE public."natural" ENABLE ROW LEVEL SECURITY;
ALTER TABLE public."natural" FORCE ROW LEVEL SECURITY;
CREATE POLICY natural_tenant_isolation ON public."natural"
    FOR ALL TO authenticated
    USING (org_id = (SELECT pg_catalog.current_setting('tenant_guard.org_id', true)::uuid))
    WITH CHECK (org_id = (SELECT pg_catalog.current_setting('tenant_guard.org_id', true)::uuid));
GRANT SELECT, INSERT, UPDATE, DELETE ON public."natural" TO authenticated;
"#;

/// Issue 17: the SQL the probe writes quotes every keyword PostgreSQL reserves, and its literals
/// read the same whatever `standard_conforming_strings` says.
#[tokio::test]
async fn the_probe_quotes_keywords_and_literals_whatever_the_string_settings() {
    for conforming in ["on", "off"] {
        let (_db, mut client) = database(&[CORRECT, KEYWORDS]).await;
        client
            .batch_execute(&format!("SET standard_conforming_strings = {conforming}"))
            .await
            .unwrap();
        let report = audit(&mut client, AuditConfig::new().allow("plans").probe(true)).await;
        let probe = report.summary.probe.expect("probe summary");
        assert_eq!(
            (probe.tables, probe.passed, probe.failed, probe.skipped),
            (5, 5, 0, 0),
            "standard_conforming_strings = {conforming}: {}",
            report.to_text(false)
        );
    }
}
