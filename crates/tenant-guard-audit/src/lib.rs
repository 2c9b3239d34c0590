//! Audits a live PostgreSQL database for the multi-tenant Row Level Security mistakes that leak
//! one org's data to another, and ships the `tenant-guard audit` command that runs it in CI.
//!
//! ```no_run
//! use tenant_guard_audit::{AuditConfig, Severity};
//!
//! # async fn run() -> Result<(), tenant_guard_audit::AuditError> {
//! let mut client = tenant_guard_audit::connect("postgres://app@localhost/app").await?;
//! let config = AuditConfig::new().tenant_columns(["org_id"]).probe(true);
//! let report = tenant_guard_audit::audit(&mut client, &config).await?;
//! for finding in &report.findings {
//!     println!("{} {} {}: {}", finding.severity, finding.check, finding.object, finding.message);
//! }
//! assert!(!report.has_findings_at_or_above(Severity::High), "{}", report.to_json());
//! # Ok(())
//! # }
//! ```
//!
//! What it checks (each [`Check`] has a stable id): RLS disabled, not forced, or without
//! policies; policies that do nothing, are always true, are true when `auth.uid()` is NULL, read
//! `user_metadata`, apply to `PUBLIC`, ignore the tenant column, overlap, or call auth functions
//! per row; `anon` reading tenant tables; tenant columns that are nullable, lack a foreign key or
//! an index, and orphan rows; grants missing for `authenticated`; functions without a fixed
//! `search_path` and SECURITY DEFINER functions clients can call; views, materialized views and
//! foreign tables that read past RLS; a login that is superuser, has BYPASSRLS, owns tables or
//! holds privileges itself. The optional isolation probe proves isolation on the live schema,
//! creating the parent rows that tables behind required foreign keys need (projects → tasks →
//! comments): see [`AuditConfig::probe`].
//!
//! The audit only reads, in a read-only transaction, except for the probe, whose writes all
//! happen in one transaction that is always rolled back (and that the server aborts if the
//! process dies). It does not assume the guard's support SQL: roles and `auth` helpers are
//! looked up, and checks that need a missing one are skipped (an `info` finding says so).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod catalog;
mod check;
mod checks;
mod config;
mod error;
mod expr;
mod finding;
mod orphans;
mod probe;
mod render;
mod report;
mod sarif;
mod scope;
mod severity;
mod sql;
mod unnamed;

use tenant_guard_postgres::tls::DatabaseUrl;
use tokio_postgres::{Client, IsolationLevel};

pub use check::Check;
pub use config::AuditConfig;
pub use error::AuditError;
pub use finding::Finding;
pub use report::{FORMAT_VERSION, ProbeSummary, Report, SeverityCounts, Summary};
pub use sarif::SARIF_SCHEMA_URI;
pub use severity::{ParseSeverityError, Severity};

use crate::catalog::Catalog;
use crate::error::QueryContext;

/// Where a long audit is, for progress display.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Progress<'a> {
    /// Reading the catalogs.
    Catalog,
    /// Counting orphan rows in `table`, the `index`-th of `total` (from 0).
    OrphanScan {
        /// `schema.table`.
        table: &'a str,
        /// Position, from 0.
        index: usize,
        /// Tables to scan.
        total: usize,
    },
    /// Probing `table`, the `index`-th of `total` (from 0).
    Probe {
        /// `schema.table`.
        table: &'a str,
        /// Position, from 0.
        index: usize,
        /// Tables to probe.
        total: usize,
    },
}

/// Connects to `url` (a `postgres://` URL or a `key=value` connection string), driving the
/// connection on the current tokio runtime.
///
/// TLS follows libpq's `sslmode` (`disable`, `prefer` — the default —, `require`, `verify-ca`,
/// `verify-full`) and `sslrootcert` (a PEM file of trusted CAs, or `system`; the operating
/// system's store when absent): see [`tenant_guard_postgres::tls`]. For a managed database use
/// `?sslmode=verify-full` (with the provider's CA in `sslrootcert` when it is not a public one).
pub async fn connect(url: &str) -> Result<Client, AuditError> {
    let url: DatabaseUrl = url.parse().map_err(AuditError::from_tls)?;
    let connector = url.tls().connector().map_err(AuditError::from_tls)?;
    let (client, connection) = url
        .config()
        .connect(connector)
        .await
        .map_err(|source| AuditError::Connect { source })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "audit connection closed with an error");
        }
    });
    Ok(client)
}

/// Audits the database `client` is connected to.
///
/// `&mut` because the audit runs its own transactions (a read-only snapshot, and the probe's
/// rolled-back one); the client must not be inside a transaction.
pub async fn audit(client: &mut Client, config: &AuditConfig) -> Result<Report, AuditError> {
    audit_with_progress(client, config, &mut |_| {}).await
}

/// [`audit`], calling `progress` as it goes (for long scans).
pub async fn audit_with_progress(
    client: &mut Client,
    config: &AuditConfig,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Report, AuditError> {
    config.validate()?;
    progress(Progress::Catalog);
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .context("starting the audit's read-only transaction")?;
    // An empty search_path makes printed policy expressions schema-qualified (`auth.uid()`);
    // standard_conforming_strings on makes their literals standard (a backslash is a character),
    // whatever the server or the caller's session says.
    tx.batch_execute(&format!(
        "SET LOCAL search_path = ''; SET LOCAL standard_conforming_strings = on; \
         SET LOCAL statement_timeout = {}",
        config.statement_timeout_ms
    ))
    .await
    .context("preparing the audit's transaction")?;
    let catalog = Catalog::load(&tx, config).await?;
    let mut findings = checks::run(&catalog, config);
    orphans::check(&tx, &catalog, config, progress, &mut findings).await?;
    tx.rollback()
        .await
        .context("ending the audit's read-only transaction")?;

    let probe = if config.probe {
        Some(probe::run(client, &catalog, config, progress, &mut findings).await?)
    } else {
        None
    };

    let scanned: Vec<_> = catalog.tables.iter().collect();
    let summary = Summary {
        format_version: FORMAT_VERSION,
        database: catalog.database.clone(),
        login: catalog.login.name.clone(),
        server_version: catalog.server_version.clone(),
        schemas: config.schemas.clone(),
        tenant_columns: config.tenant_columns.clone(),
        app_roles: catalog.app_roles.clone(),
        auth_helpers: catalog.auth_helpers.clone(),
        tables_scanned: scanned.len(),
        tables_with_rls: scanned.iter().filter(|t| t.rls).count(),
        tables_with_forced_rls: scanned.iter().filter(|t| t.rls && t.force_rls).count(),
        tenant_tables: scanned.iter().filter(|t| t.tenant_column.is_some()).count(),
        allowed_tables: scanned
            .iter()
            .filter(|t| config.is_allowed(&t.schema, &t.name))
            .count(),
        findings: SeverityCounts::default(),
        probe,
    };
    Ok(Report::new(summary, findings))
}
