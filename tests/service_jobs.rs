//! Black-box test of `examples/service_jobs.rs`: runs the worker binary once (`--once
//! --seed-demo`) against a fresh testkit database, then checks the queue and the jobs' writes
//! with SQL as the superuser (who sees every org).
//!
//! The example binary is built by `cargo test --features full` next to this test's executable.

// Test helpers: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use tenant_guard_testkit::{TestDatabase, TestPostgres};
use uuid::Uuid;

/// Variables the example reads; cleared so the caller's environment cannot change the test.
const EXAMPLE_VARS: &[&str] = &[
    "APP_ENV",
    "DATABASE_URL",
    "DB_POOL_SIZE",
    "LOG_FORMAT",
    "JOBS_PER_ORG",
    "JOBS_RATE_PER_ORG",
    "JOBS_RATE_WINDOW_SECS",
    "JOBS_MAX_IN_FLIGHT",
    "JOBS_RETRY_BASE_MS",
    "JOBS_SHUTDOWN_GRACE_SECS",
    "JOBS_EXIT_WHEN_IDLE",
];

/// The example binary `name`, built next to this test executable (as in `reference_app.rs`).
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/service_jobs-HASH → target/<profile>/examples/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "example binary {} not found: run the tests with `cargo test --features full` \
         (which builds the examples), or build it with `cargo build --features full --example {name}`",
        path.display()
    );
    path
}

/// Runs the worker once (`--once --seed-demo`) on `database` with `env`: (stdout, stderr).
fn run_worker(database: &TestDatabase, env: &[(&str, &str)]) -> (String, String) {
    let mut command = Command::new(example_binary("service_jobs"));
    for var in EXAMPLE_VARS {
        command.env_remove(var);
    }
    let output = command
        .args(["--once", "--seed-demo"])
        .env("DATABASE_URL", database.url())
        .env("JOBS_RETRY_BASE_MS", "50")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "exit status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

#[tokio::test]
async fn worker_runs_every_job_once_in_its_own_org() {
    let database = TestPostgres::shared()
        .expect("test PostgreSQL")
        .create_database_async()
        .await
        .expect("test database");
    let (stdout, stderr) = run_worker(&database, &[]);

    let client = database.connect().await.expect("superuser connection");
    let jobs = client
        .query(
            "SELECT id, org_id, status, attempts, payload FROM jobs ORDER BY created_at",
            &[],
        )
        .await
        .expect("jobs");
    assert_eq!(jobs.len(), 5, "the demo seeds five jobs");
    let orgs: std::collections::BTreeSet<Uuid> = jobs.iter().map(|j| j.get(1)).collect();
    assert_eq!(orgs.len(), 2, "demo jobs for two orgs");
    for job in &jobs {
        let id: Uuid = job.get(0);
        let status: &str = job.get(2);
        let attempts: i32 = job.get(3);
        let payload: serde_json::Value = job.get(4);
        assert_eq!(status, "done", "job {id} ({payload}): {stderr}");
        // The flaky job fails twice, then succeeds; every other job succeeds at once.
        let expected = if payload.get("fail_first").is_some() {
            3
        } else {
            1
        };
        assert_eq!(attempts, expected, "attempts of job {id} ({payload})");
    }
    assert_eq!(
        jobs.iter()
            .filter(|j| j.get::<_, serde_json::Value>(4).get("fail_first").is_some())
            .count(),
        1,
        "exactly one flaky demo job"
    );
    assert_eq!(
        stdout.trim(),
        "jobs: 5 done, 2 retries scheduled, 0 failed",
        "summary line"
    );

    // Each job wrote exactly one project, in its own org, as the org-scoped job principal; the
    // failed attempts' inserts were rolled back.
    let projects = client
        .query(
            "SELECT p.org_id, p.created_by, j.org_id \
             FROM projects p LEFT JOIN jobs j ON j.payload->>'name' = p.name",
            &[],
        )
        .await
        .expect("projects");
    assert_eq!(projects.len(), jobs.len(), "one project per job, no more");
    for project in &projects {
        let org: Uuid = project.get(0);
        let created_by: Option<&str> = project.get(1);
        let job_org: Option<Uuid> = project.get(2);
        assert_eq!(Some(org), job_org, "a project landed outside its job's org");
        assert_eq!(created_by, Some("service:jobs-worker"));
    }
    for org in &orgs {
        let count = |table: &str| {
            let sql = format!("SELECT count(*) FROM {table} WHERE org_id = $1");
            let client = &client;
            async move {
                client
                    .query_one(&sql, &[org])
                    .await
                    .expect("count")
                    .get::<_, i64>(0)
            }
        };
        assert_eq!(count("projects").await, count("jobs").await, "org {org}");
    }
}

/// The per-org rate cap (`JOBS_RATE_PER_ORG`), shared through the database: with one job attempt
/// per org and hour, each org starts exactly one job; the next claim of each org is given back
/// uncounted (attempt not spent) and the org skipped, so `--once` exits with their work queued.
#[tokio::test]
async fn the_rate_cap_defers_an_orgs_jobs_without_spending_attempts() {
    let database = TestPostgres::shared()
        .expect("test PostgreSQL")
        .create_database_async()
        .await
        .expect("test database");
    let (stdout, stderr) = run_worker(
        &database,
        &[
            ("JOBS_RATE_PER_ORG", "1"),
            ("JOBS_RATE_WINDOW_SECS", "3600"),
        ],
    );
    // Which of an org's jobs came first is not ordered (they were enqueued together), so the
    // started job of the first org may be the flaky one (retry scheduled) or not (done).
    let summary = stdout.trim();
    assert!(
        summary == "jobs: 2 done, 0 retries scheduled, 0 failed, 2 deferred by the rate cap"
            || summary == "jobs: 1 done, 1 retries scheduled, 0 failed, 2 deferred by the rate cap",
        "{summary}\n{stderr}"
    );

    let client = database.connect().await.expect("superuser connection");
    let per_org = client
        .query(
            "SELECT org_id, sum(attempts)::int, count(*) FILTER (WHERE attempts = 0)::int \
             FROM jobs GROUP BY org_id ORDER BY org_id",
            &[],
        )
        .await
        .expect("jobs per org");
    assert_eq!(per_org.len(), 2);
    for row in &per_org {
        let org: Uuid = row.get(0);
        let jobs_in_org: i64 = client
            .query_one("SELECT count(*) FROM jobs WHERE org_id = $1", &[&org])
            .await
            .unwrap()
            .get(0);
        assert_eq!(row.get::<_, i32>(1), 1, "one attempt started in org {org}");
        assert_eq!(
            i64::from(row.get::<_, i32>(2)),
            jobs_in_org - 1,
            "the others untouched: deferred attempts are not spent (org {org})"
        );
    }
    // The shared counters saw one allowed attempt per org (refused ones are not counted).
    let counters = client
        .query(
            "SELECT org_id, hits FROM tenant_guard.rate_counters WHERE limiter = 'jobs' \
             ORDER BY org_id",
            &[],
        )
        .await
        .expect("rate counters");
    let orgs: Vec<Uuid> = per_org.iter().map(|r| r.get(0)).collect();
    let counted: Vec<(Uuid, i32)> = counters.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(counted, orgs.iter().map(|o| (*o, 1)).collect::<Vec<_>>());
}
