//! A background-jobs worker: claims jobs across all orgs, runs each one scoped to its own org.
//!
//! ```text
//! APP_ENV=development cargo run --features full --example service_jobs -- --once
//! ```
//!
//! With `DATABASE_URL` unset and `APP_ENV=development` it starts a throwaway PostgreSQL (outside
//! development a missing `DATABASE_URL` is a start-up error), seeds demo jobs for two orgs (one
//! fails twice, then succeeds) and processes them; `--once` (or `JOBS_EXIT_WHEN_IDLE=1`) exits
//! when the queue is empty, printing one summary line on stdout. `--seed-demo` seeds the demo
//! jobs into `DATABASE_URL` too. Without `--once` it runs until SIGTERM or Ctrl-C.
//!
//! # When to use the service role
//!
//! Only for the queue itself: finding the next job *across all orgs* (`FOR UPDATE SKIP LOCKED`)
//! cannot be done by any one org. Everything a job does to data, including marking itself done,
//! runs under Row Level Security as the job's own org (`with_org_job`), exactly like a user of
//! that org: a bug in a job can then only ever touch that org's rows.
//!
//! # Fairness between orgs
//!
//! Two caps keep one org's backlog from starving the others: `JOBS_PER_ORG` jobs of an org run
//! at once (a semaphore per org; a busy org is skipped by the claim), and, with
//! `JOBS_RATE_PER_ORG`, at most that many job attempts of an org start per
//! `JOBS_RATE_WINDOW_SECS`. The rate cap is the same building block as the HTTP layers' rate
//! limit ([`RateLimitBackend`](tenant_guard::RateLimitBackend)): with `DATABASE_URL` a
//! [`PgRateLimiter`](tenant_guard::postgres::PgRateLimiter) named `jobs`, so every worker process
//! on the database draws from one budget per org; on a throwaway database the in-memory
//! [`RateLimiter`](tenant_guard::RateLimiter). A job over the cap goes back to the queue
//! uncounted (its attempt is not spent) and its org is skipped until the cap's `Retry-After`;
//! `--once` then exits when only capped orgs have work left.
//!
//! Settings: `JOBS_PER_ORG` (concurrent jobs per org, default 2), `JOBS_RATE_PER_ORG` (job
//! attempts started per org and window, default: no cap), `JOBS_RATE_WINDOW_SECS` (default 60),
//! `JOBS_MAX_IN_FLIGHT` (default 8), `JOBS_RETRY_BASE_MS` (backoff after the first failure,
//! doubled each time, default 1000), `JOBS_SHUTDOWN_GRACE_SECS` (default 30), plus
//! `DATABASE_URL`, `DB_POOL_SIZE`, `LOG_FORMAT`.

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tenant_guard::postgres::support::RATE_LIMIT_SQL;
use tenant_guard::postgres::{
    PgRateLimiter, TenantPool, TenantTx, with_org_job, with_service_role,
};
use tenant_guard::{RateLimitBackend, RateLimitError, RateLimiter, Role, ServiceContext};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument as _;
use uuid::Uuid;

type BoxError = common::StartError;

/// The queue, on top of the reference apps' `projects` table (which the demo jobs write to).
/// Enqueuing and processing happen as the org (`authenticated`, under RLS); claiming across orgs
/// as `service_role`, which bypasses RLS but still needs table privileges.
const JOBS_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS public.jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    kind text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts int NOT NULL DEFAULT 0,
    max_attempts int NOT NULL DEFAULT 5,
    next_run_at timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS jobs_ready_idx ON public.jobs (next_run_at) WHERE status IN ('queued', 'running');
ALTER TABLE public.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.jobs FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE ON public.jobs TO authenticated;
GRANT SELECT, UPDATE ON public.jobs TO service_role;
DROP POLICY IF EXISTS jobs_org_isolation ON public.jobs;
CREATE POLICY jobs_org_isolation ON public.jobs
    FOR ALL TO authenticated
    USING (org_id = (SELECT tenant_guard.org_id()))
    WITH CHECK (org_id = (SELECT tenant_guard.org_id()));
"#;

/// Takes the next ready job of an org that has a free slot, or a `running` job whose lease
/// expired (its worker died), and leases it for five minutes. Committed at once: the row lock
/// lasts only for the claim, the lease keeps other workers away while the job runs.
const CLAIM_SQL: &str = "
UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_until = now() + interval '5 minutes'
WHERE id = (
    SELECT id FROM jobs
    WHERE ((status = 'queued' AND next_run_at <= now()) OR (status = 'running' AND locked_until < now()))
      AND org_id <> ALL($1::uuid[])
    ORDER BY next_run_at, created_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED)
RETURNING id, org_id, kind, payload, attempts, max_attempts";

/// How often an idle worker looks for ready jobs (and retries whose backoff has passed).
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A claimed job.
#[derive(Debug)]
struct Job {
    id: Uuid,
    org_id: Uuid,
    kind: String,
    payload: serde_json::Value,
    attempts: i32,
    max_attempts: i32,
}

/// How a job's attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    Retry,
    Failed,
}

#[derive(Debug)]
struct Settings {
    per_org: usize,
    /// Job attempts an org may start per window, shared by every worker on the database.
    rate_cap: Option<Arc<dyn RateLimitBackend>>,
    max_in_flight: usize,
    retry_base: Duration,
    grace: Duration,
    exit_when_idle: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => common::fail(&error),
    }
}

async fn run() -> Result<(), BoxError> {
    let config = common::Config::from_env()?;
    common::init_logging(config.log_format);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rate_cap = rate_cap(&config)?;
    let settings = Settings {
        per_org: env_number("JOBS_PER_ORG", 2)?,
        rate_cap,
        max_in_flight: env_number("JOBS_MAX_IN_FLIGHT", 8)?,
        retry_base: Duration::from_millis(env_number("JOBS_RETRY_BASE_MS", 1000)?),
        grace: Duration::from_secs(env_number("JOBS_SHUTDOWN_GRACE_SECS", 30)?),
        exit_when_idle: args.iter().any(|a| a == "--once")
            || std::env::var("JOBS_EXIT_WHEN_IDLE").is_ok_and(|v| v == "1"),
    };
    let mut schema = format!("{}{JOBS_SQL}", common::SCHEMA_SQL);
    if settings.rate_cap.is_some() && config.database_url.is_some() {
        // The shared cap's counters; the limiter connects with DATABASE_URL's login.
        schema.push_str(RATE_LIMIT_SQL);
        schema.push_str("\nSELECT tenant_guard.grant_rate_limiter(session_user);\n");
    }
    let database = common::open_database_with_schema(&config, &schema).await?;
    if config.database_url.is_none() || args.iter().any(|a| a == "--seed-demo") {
        seed_demo_jobs(&database.pool).await?;
    }
    let counts = work(&database.pool, &settings).await;
    let deferred = if settings.rate_cap.is_some() {
        format!(", {} deferred by the rate cap", counts[3])
    } else {
        String::new()
    };
    #[allow(clippy::print_stdout)]
    {
        println!(
            "jobs: {} done, {} retries scheduled, {} failed{deferred}",
            counts[0], counts[1], counts[2]
        );
    }
    Ok(())
}

/// The per-org rate cap of `JOBS_RATE_PER_ORG` per `JOBS_RATE_WINDOW_SECS`, if set: shared
/// through the database with `DATABASE_URL`, in memory on a throwaway database.
fn rate_cap(config: &common::Config) -> Result<Option<Arc<dyn RateLimitBackend>>, BoxError> {
    if std::env::var_os("JOBS_RATE_PER_ORG").is_none() {
        return Ok(None);
    }
    let per_window: u32 = env_number("JOBS_RATE_PER_ORG", 1)?;
    let window = Duration::from_secs(env_number("JOBS_RATE_WINDOW_SECS", 60)?);
    Ok(Some(match &config.database_url {
        Some(url) => {
            Arc::new(PgRateLimiter::builder("jobs", per_window, window).build_from_url(url)?)
        }
        None => Arc::new(RateLimiter::builder(per_window, window).build()?),
    }))
}

/// Claims and runs jobs until shutdown (or, with `exit_when_idle`, until nothing is left that
/// the rate cap allows now). Returns how many attempts ended done, retried and failed, and how
/// many claims the rate cap deferred.
async fn work(pool: &TenantPool, settings: &Settings) -> [usize; 4] {
    let mut counts = [0; 4];
    let mut in_flight: JoinSet<Outcome> = JoinSet::new();
    let mut slots: HashMap<Uuid, Arc<Semaphore>> = HashMap::new();
    // Orgs over the rate cap, until when.
    let mut capped: HashMap<Uuid, Instant> = HashMap::new();
    let shutdown = common::shutdown_signal();
    tokio::pin!(shutdown);
    'claiming: loop {
        while in_flight.len() < settings.max_in_flight {
            // Orgs whose slots are all taken, or over their rate cap, are skipped by the claim,
            // so one busy org cannot hold the queue (or hoard leased jobs) while the others wait.
            let now = Instant::now();
            capped.retain(|_, until| *until > now);
            let busy: Vec<Uuid> = slots
                .iter()
                .filter(|(_, s)| s.available_permits() == 0)
                .map(|(org, _)| *org)
                .chain(capped.keys().copied())
                .collect();
            match claim(pool, &busy).await {
                Ok(Some(job)) => {
                    if let Some(cap) = &settings.rate_cap
                        && let Some(wait) = over_the_cap(cap.as_ref(), job.org_id).await
                    {
                        tracing::info!(org_id = %job.org_id, ?wait, "org over its job rate cap; job deferred");
                        capped.insert(job.org_id, Instant::now() + wait);
                        counts[3] += 1;
                        defer(pool, &job).await;
                        continue;
                    }
                    let slot = slots
                        .entry(job.org_id)
                        .or_insert_with(|| Arc::new(Semaphore::new(settings.per_org)));
                    // Only this loop takes permits, and the org was not busy: this succeeds.
                    let Ok(permit) = Arc::clone(slot).try_acquire_owned() else {
                        break; // the lease expires and the job is claimed again
                    };
                    let span = tracing::info_span!(
                        "job",
                        job_id = %job.id,
                        org_id = %job.org_id,
                        attempt = job.attempts
                    );
                    let task = process(pool.clone(), job, permit, settings.retry_base);
                    in_flight.spawn(task.instrument(span));
                }
                Ok(None) if settings.exit_when_idle && in_flight.is_empty() => {
                    let capped: Vec<Uuid> = capped.keys().copied().collect();
                    if !pending(pool, &capped).await.unwrap_or(true) {
                        break 'claiming;
                    }
                    break;
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "claiming jobs failed; retrying");
                    break;
                }
            }
        }
        tokio::select! {
            () = &mut shutdown => break 'claiming,
            Some(done) = in_flight.join_next() => {
                tally(&mut counts, done);
                slots.retain(|_, s| s.available_permits() < settings.per_org);
            }
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
    // Stop claiming, let the jobs in flight finish, but not forever: jobs still running after
    // the grace period are cancelled (their transactions roll back, their leases expire and
    // another worker retries them).
    tracing::info!(
        in_flight = in_flight.len(),
        "stopped claiming; finishing jobs in flight"
    );
    let drain = async {
        while let Some(done) = in_flight.join_next().await {
            tally(&mut counts, done);
        }
    };
    if tokio::time::timeout(settings.grace, drain).await.is_err() {
        tracing::warn!("shutdown grace period over; cancelling the remaining jobs");
    }
    counts
}

/// Counts one job attempt of `org` against the rate cap: `None` when it may start, else how long
/// the org must wait. A cap that cannot be checked defers the job for a second (fail closed).
async fn over_the_cap(cap: &dyn RateLimitBackend, org: Uuid) -> Option<Duration> {
    let role = Role::new("authenticated").ok()?;
    let principal = ServiceContext::new("jobs-worker").org_principal(org, role);
    match cap.check_request(&principal).outcome().await {
        Ok(_) => None,
        Err(RateLimitError::Limited(limited)) => Some(limited.retry_after()),
        Err(error) => {
            tracing::warn!(%error, "the job rate cap could not be checked; deferring");
            Some(Duration::from_secs(1))
        }
    }
}

/// NOT the service role: gives a claimed job back to the queue as its own org, without spending
/// the attempt the claim counted.
async fn defer(pool: &TenantPool, job: &Job) {
    let context = ServiceContext::new("jobs-worker").with_job_id(job.id.to_string());
    let released = with_org_job(pool, &context, job.org_id, async |tx| {
        tx.execute(
            "UPDATE jobs SET status = 'queued', attempts = attempts - 1, locked_until = NULL \
             WHERE id = $1",
            &[&job.id],
        )
        .await
    })
    .await;
    if let Err(error) = released {
        tracing::error!(%error, "giving a deferred job back failed; its lease will expire");
    }
}

fn tally(counts: &mut [usize; 4], done: Result<Outcome, tokio::task::JoinError>) {
    match done {
        Ok(Outcome::Done) => counts[0] += 1,
        Ok(Outcome::Retry) => counts[1] += 1,
        Ok(Outcome::Failed) => counts[2] += 1,
        Err(error) => tracing::error!(%error, "job task panicked; its lease will expire"),
    }
}

/// SERVICE ROLE: the claim must see every org's jobs. It reads and updates the `jobs` row only,
/// never the job's data.
async fn claim(pool: &TenantPool, busy_orgs: &[Uuid]) -> Result<Option<Job>, BoxError> {
    let context = ServiceContext::new("jobs-claim");
    with_service_role(pool, &context, async |tx| {
        let Some(row) = tx.query_opt(CLAIM_SQL, &[&busy_orgs]).await? else {
            return Ok(None);
        };
        Ok(Some(Job {
            id: row.try_get(0)?,
            org_id: row.try_get(1)?,
            kind: row.try_get(2)?,
            payload: row.try_get(3)?,
            attempts: row.try_get(4)?,
            max_attempts: row.try_get(5)?,
        }))
    })
    .await
}

/// SERVICE ROLE: whether any org but the `capped` ones still has work queued or running (for
/// `--once`).
async fn pending(pool: &TenantPool, capped: &[Uuid]) -> Result<bool, BoxError> {
    let context = ServiceContext::new("jobs-idle-check");
    with_service_role(pool, &context, async |tx| {
        let row = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE status IN ('queued', 'running') \
                 AND org_id <> ALL($1::uuid[]))",
                &[&capped],
            )
            .await?;
        Ok(row.try_get(0)?)
    })
    .await
}

/// NOT the service role: the job runs as its own org, under RLS. Its writes and its `done` mark
/// commit together; on failure both roll back and the failure is recorded in a second
/// transaction of the same org, with the next attempt `retry_base * 2^(attempts - 1)` later.
async fn process(
    pool: TenantPool,
    job: Job,
    _slot: OwnedSemaphorePermit,
    retry_base: Duration,
) -> Outcome {
    let context = ServiceContext::new("jobs-worker").with_job_id(job.id.to_string());
    let result = with_org_job(&pool, &context, job.org_id, async |tx| {
        run_job(tx, &job).await?;
        tx.execute(
            "UPDATE jobs SET status = 'done', locked_until = NULL, last_error = NULL WHERE id = $1",
            &[&job.id],
        )
        .await?;
        Ok::<_, BoxError>(())
    })
    .await;
    let Err(error) = result else {
        tracing::info!("job done");
        return Outcome::Done;
    };
    let outcome = if job.attempts >= job.max_attempts {
        Outcome::Failed
    } else {
        Outcome::Retry
    };
    let exponent = u32::try_from(job.attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    let backoff = retry_base.saturating_mul(2_u32.pow(exponent));
    tracing::warn!(%error, ?outcome, ?backoff, "job attempt failed");
    let status = if outcome == Outcome::Failed {
        "failed"
    } else {
        "queued"
    };
    let recorded = with_org_job(&pool, &context, job.org_id, async |tx| {
        tx.execute(
            "UPDATE jobs SET status = $2, locked_until = NULL, last_error = $3, \
             next_run_at = now() + $4::float8 * interval '1 second' WHERE id = $1",
            &[&job.id, &status, &error.to_string(), &backoff.as_secs_f64()],
        )
        .await
    })
    .await;
    if let Err(error) = recorded {
        tracing::error!(%error, "recording the failure failed; the lease will expire");
    }
    outcome
}

/// The job's actual work, in its org's transaction.
async fn run_job(tx: &mut TenantTx, job: &Job) -> Result<(), BoxError> {
    match job.kind.as_str() {
        "create_project" => {
            let name = job.payload["name"].as_str().unwrap_or("unnamed");
            // `job.org_id` is the only org this transaction can write: any other would be
            // refused by the policy's WITH CHECK, whatever this code does.
            tx.execute(
                "INSERT INTO projects (org_id, name, created_by) \
                 VALUES ($1, $2, tenant_guard.user_id())",
                &[&job.org_id, &name],
            )
            .await?;
            // Demo: a downstream call that fails on the first `fail_first` attempts. The insert
            // above is rolled back with it, so a retried job never writes twice.
            let fail_first = job.payload["fail_first"].as_i64().unwrap_or(0);
            if i64::from(job.attempts) <= fail_first {
                return Err(format!("downstream unavailable (attempt {})", job.attempts).into());
            }
            Ok(())
        }
        other => Err(format!("unknown job kind {other:?}").into()),
    }
}

/// Enqueues the demo jobs, each as its org (as an API handler would, under RLS).
async fn seed_demo_jobs(pool: &TenantPool) -> Result<(), BoxError> {
    let context = ServiceContext::new("seed-demo-jobs");
    for (index, (name, org)) in common::DEMO_ORGS.into_iter().enumerate() {
        let org: Uuid = org.parse()?;
        let count = if index == 0 { 3 } else { 2 };
        with_org_job(pool, &context, org, async |tx| {
            for n in 1..=count {
                let mut payload = serde_json::json!({ "name": format!("{name} report {n}") });
                if index == 0 && n == 1 {
                    payload["fail_first"] = 2.into(); // fails twice, then succeeds
                }
                tx.execute(
                    "INSERT INTO jobs (org_id, kind, payload) VALUES ($1, 'create_project', $2)",
                    &[&org, &payload],
                )
                .await?;
            }
            Ok::<_, BoxError>(())
        })
        .await?;
    }
    tracing::info!("seeded demo jobs for {} orgs", common::DEMO_ORGS.len());
    Ok(())
}

/// A positive number from the environment, or `default` when unset.
fn env_number<T: std::str::FromStr + Default + PartialOrd>(
    name: &str,
    default: T,
) -> Result<T, BoxError> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => match v.trim().parse::<T>() {
            Ok(n) if n > T::default() => Ok(n),
            _ => Err(format!("{name} must be a positive integer, got {v:?}").into()),
        },
    }
}
