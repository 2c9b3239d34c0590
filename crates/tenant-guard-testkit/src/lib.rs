//! Test support for tenant-guard: a throwaway PostgreSQL server from local binaries, and a fresh
//! database per test so tests run in parallel.
//!
//! ```no_run
//! use tenant_guard_testkit::TestPostgres;
//!
//! #[tokio::test]
//! async fn databases_are_independent() -> Result<(), Box<dyn std::error::Error>> {
//!     // One server per test process, started on first use (or TENANT_GUARD_TEST_DATABASE_URL).
//!     let server = TestPostgres::shared()?;
//!     // One database per test, dropped with the handle.
//!     let a = server.create_database()?;
//!     let b = server.create_database()?;
//!     a.connect().await?.batch_execute("CREATE TABLE t (id int)").await?;
//!     let found: i64 = b
//!         .connect()
//!         .await?
//!         .query_one("SELECT count(*) FROM pg_tables WHERE tablename = 't'", &[])
//!         .await?
//!         .get(0);
//!     assert_eq!(found, 0);
//!     Ok(())
//! }
//! ```
//!
//! The server needs PostgreSQL's server binaries (Debian/Ubuntu: `apt-get install postgresql`),
//! or `TENANT_GUARD_TEST_DATABASE_URL` set to a superuser connection string of a running server.
//! Running as root is fine: the server then runs as the `postgres` (or `nobody`) user. See
//! [`TestPostgres`] for the details.
//!
//! [`capture::Capture`] collects `tracing` spans and events in memory, for tests of what the guard
//! and the adapters log.
//!
//! TLS, opt-in: [`TestCertificates`] generates a CA and a server certificate in the test (no
//! network, no `openssl`), and [`TestPostgres::start_local_tls`] starts a server of the test's own
//! with `ssl = on` presenting it (the default and shared servers stay without TLS).
//!
//! Deployment shapes: [`TestPgBouncer`] starts Debian's `pgbouncer` (`apt-get install pgbouncer`)
//! in front of a server, in `pool_mode = transaction` by default with few server connections, and
//! [`TestPostgres::start_local_replicated`] + [`TestPostgres::start_standby`] give a primary and a
//! real streaming hot standby ([`TestStandby`]), for tests of the guard behind a pooler and across
//! read replicas.
//!
//! Roles are shared by all databases of a server: tests that create roles must tolerate them
//! existing already (`CREATE ROLE` inside a `DO` block that checks `pg_roles`, for instance).
#![deny(missing_docs)]

#[cfg(not(unix))]
compile_error!("tenant-guard-testkit supports Unix only (it runs local PostgreSQL binaries)");

mod admin;
pub mod capture;
mod conninfo;
mod database;
mod error;
pub mod isolation;
pub mod issuer;
mod server;

pub use database::TestDatabase;
pub use error::TestkitError;
pub use isolation::{IsolatedTable, assert_table_isolated, check_table_isolated};
pub use issuer::TestIssuer;
pub use server::tls::TestCertificates;
pub use server::{
    DATABASE_URL_ENV, PGBOUNCER_ENV, PgBouncerOptions, TestPgBouncer, TestPostgres, TestStandby,
};
