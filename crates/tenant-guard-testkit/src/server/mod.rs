//! The test server: a throwaway local PostgreSQL, or the one named by
//! `TENANT_GUARD_TEST_DATABASE_URL`.

mod binaries;
mod local;
mod pgbouncer;
mod standby;
pub(crate) mod tls;
mod user;

pub use pgbouncer::{PGBOUNCER_ENV, PgBouncerOptions, TestPgBouncer};
pub use standby::TestStandby;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use tokio_postgres::Config;

use crate::admin::{self, Admin};
use crate::database::{Cluster, TestDatabase};
use crate::error::TestkitError;
use local::LocalServer;

/// The environment variable naming an existing server to use instead of starting one: a superuser
/// connection string (`postgres://user:password@host:port/postgres` or `host=… user=…`).
pub const DATABASE_URL_ENV: &str = "TENANT_GUARD_TEST_DATABASE_URL";

/// A PostgreSQL server for tests: a throwaway one started from local binaries, or an existing one
/// named by [`TENANT_GUARD_TEST_DATABASE_URL`](DATABASE_URL_ENV).
///
/// Tests should not share a database; they share a server and each
/// [create a database](Self::create_database) of their own. The usual way is the process-wide
/// [`shared`](Self::shared) server, started on first use:
///
/// ```no_run
/// use tenant_guard_testkit::TestPostgres;
///
/// #[tokio::test]
/// async fn notes_start_empty() -> Result<(), Box<dyn std::error::Error>> {
///     let db = TestPostgres::shared()?.create_database()?;
///     let client = db.connect().await?;
///     client.batch_execute("CREATE TABLE notes (id int)").await?;
///     let rows = client.query("SELECT * FROM notes", &[]).await?;
///     assert!(rows.is_empty());
///     Ok(())
/// } // the database is dropped here
/// ```
///
/// # The throwaway server
///
/// `initdb` and `postgres` are taken from the first `PATH` directory holding both, else from the
/// highest version under `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package). PostgreSQL 13
/// or newer is needed. The cluster lives in a fresh temporary directory, with a `postgres`
/// superuser and `trust` authentication, listening on `127.0.0.1` on a free port (and on a Unix
/// socket in that directory), with durability turned off for speed (`fsync`,
/// `synchronous_commit`, `full_page_writes` off; `max_connections = 300`).
///
/// PostgreSQL refuses to run as root: when the tests run as root, the server runs as the `postgres`
/// user (or `nobody`), through `setpriv` or `runuser`.
///
/// The server is stopped and its directory deleted when the value is dropped, and also when the
/// process ends without dropping it (a `static`, a crash, `SIGKILL`): a small watchdog process
/// waits for that and cleans up.
///
/// `trust` authentication means any local user can log in to the server while it runs: fine on a
/// test machine, not on a shared host holding anything sensitive.
///
/// One server is started per test *process*: `cargo test` runs each test binary once, so that is
/// about a second per binary; a runner that starts a process per test (`cargo nextest`) pays it
/// per test.
pub struct TestPostgres {
    // Field order matters: databases' administration handle first, the server process last.
    cluster: Arc<Cluster>,
    local: Option<LocalServer>,
}

static SHARED: OnceLock<Result<TestPostgres, Arc<TestkitError>>> = OnceLock::new();

impl TestPostgres {
    /// The server shared by the whole process, started on first use (thread-safe: concurrent
    /// callers wait for the one start). Uses `TENANT_GUARD_TEST_DATABASE_URL` when it is set,
    /// a throwaway local server otherwise (see [`start`](Self::start)).
    ///
    /// It is never dropped; the watchdog removes it when the process exits. If starting it failed,
    /// every call returns the same error, as [`TestkitError::Shared`].
    ///
    /// Blocks the calling thread during the first start (about a second); later calls return
    /// immediately. Fine to call from a `#[tokio::test]`.
    ///
    /// ```no_run
    /// use tenant_guard_testkit::TestPostgres;
    ///
    /// let server = TestPostgres::shared()?;
    /// let db = server.create_database()?;
    /// println!("connect with {}", db.url());
    /// # Ok::<(), tenant_guard_testkit::TestkitError>(())
    /// ```
    pub fn shared() -> Result<&'static TestPostgres, TestkitError> {
        SHARED
            .get_or_init(|| Self::start().map_err(Arc::new))
            .as_ref()
            .map_err(|error| TestkitError::Shared(Arc::clone(error)))
    }

    /// A server of the caller's own: the one named by `TENANT_GUARD_TEST_DATABASE_URL` when that
    /// is set and not empty ([`from_url`](Self::from_url)), otherwise a new throwaway local server
    /// ([`start_local`](Self::start_local)).
    pub fn start() -> Result<TestPostgres, TestkitError> {
        match std::env::var_os(DATABASE_URL_ENV) {
            Some(url) if !url.is_empty() => Self::from_url(&url.to_string_lossy()),
            _ => Self::start_local(),
        }
    }

    /// Starts a new throwaway server from local binaries, ignoring
    /// `TENANT_GUARD_TEST_DATABASE_URL`. Blocks until it accepts connections.
    ///
    /// Fails with [`TestkitError::BinariesNotFound`] (whose message says what to install) when
    /// there are no binaries, and with the server log's tail when it does not come up.
    ///
    /// ```no_run
    /// use tenant_guard_testkit::TestPostgres;
    ///
    /// let server = TestPostgres::start_local()?;
    /// assert!(server.data_dir().is_some());
    /// drop(server); // stopped, directory deleted
    /// # Ok::<(), tenant_guard_testkit::TestkitError>(())
    /// ```
    pub fn start_local() -> Result<TestPostgres, TestkitError> {
        Self::from_local(LocalServer::start()?)
    }

    fn from_local((local, admin): (LocalServer, Admin)) -> Result<TestPostgres, TestkitError> {
        let url = format!(
            "postgres://{}@127.0.0.1:{}/postgres",
            local::SUPERUSER,
            local.port()
        );
        let file_copy = server_version_num(&admin)? >= 150_000;
        Ok(Self {
            cluster: Arc::new(Cluster {
                admin,
                url,
                file_copy,
            }),
            local: Some(local),
        })
    }

    /// Uses an existing server. `url` must log in as a superuser (tests create databases and
    /// roles) without TLS; it is checked by connecting once. The server is left running on drop;
    /// only the databases created through this value are dropped.
    ///
    /// ```no_run
    /// use tenant_guard_testkit::TestPostgres;
    ///
    /// let server = TestPostgres::from_url("postgres://postgres:secret@127.0.0.1:5432/postgres")?;
    /// let db = server.create_database()?;
    /// # Ok::<(), tenant_guard_testkit::TestkitError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<TestPostgres, TestkitError> {
        let config: Config = url
            .parse()
            .map_err(|source| TestkitError::InvalidUrl { source })?;
        let admin = Admin::start(config)?;
        let probe = admin.config().clone();
        let (superuser, user) = admin.call(async move {
            let context = "connecting to the server of TENANT_GUARD_TEST_DATABASE_URL";
            let client = admin::connect(&probe, context).await?;
            let row = client
                .query_one(
                    "SELECT current_setting('is_superuser') = 'on', current_user::text",
                    &[],
                )
                .await
                .map_err(|e| TestkitError::postgres(context, e))?;
            let superuser: bool = row
                .try_get(0)
                .map_err(|e| TestkitError::postgres(context, e))?;
            let user: String = row
                .try_get(1)
                .map_err(|e| TestkitError::postgres(context, e))?;
            Ok((superuser, user))
        })?;
        if !superuser {
            return Err(TestkitError::NotSuperuser { user });
        }
        let file_copy = server_version_num(&admin)? >= 150_000;
        Ok(Self {
            cluster: Arc::new(Cluster {
                admin,
                url: url.trim().to_owned(),
                file_copy,
            }),
            local: None,
        })
    }

    /// The superuser connection string of the server's maintenance database (`postgres`).
    /// For an external server this is the URL it was given (it may contain a password).
    pub fn url(&self) -> &str {
        &self.cluster.url
    }

    /// The superuser connection configuration of the server's maintenance database.
    pub fn config(&self) -> &Config {
        self.cluster.admin.config()
    }

    /// The data directory of a throwaway server; `None` for an external one.
    pub fn data_dir(&self) -> Option<&Path> {
        self.local.as_ref().map(LocalServer::data_dir)
    }

    /// The server log (stdout and stderr) of a throwaway server; `None` for an external one.
    pub fn log_file(&self) -> Option<&Path> {
        self.local.as_ref().map(LocalServer::log_file)
    }

    /// The unprivileged OS user a throwaway server runs as when the tests run as root; `None`
    /// when it runs as the current user, or for an external server.
    pub fn run_as(&self) -> Option<&str> {
        self.local.as_ref().and_then(LocalServer::run_as)
    }

    /// Stops a throwaway server with a *fast* shutdown (open transactions rolled back, every
    /// client disconnected, committed work kept) and waits until it has exited; its data directory
    /// and port stay reserved for [`start_again`](Self::start_again). Stopping a stopped server
    /// does nothing. Blocks the calling thread (well under a second for a test server).
    ///
    /// For tests of what clients see while the database goes away: use a server of the test's own
    /// ([`start_local`](Self::start_local)), never the [`shared`](Self::shared) one, which other
    /// tests of the process are using. Fails with [`TestkitError::NotLocal`] for an external
    /// server.
    ///
    /// ```no_run
    /// use tenant_guard_testkit::TestPostgres;
    ///
    /// let server = TestPostgres::start_local()?;
    /// let db = server.create_database()?;
    /// server.stop()?; // connections to `db` fail from now on
    /// server.start_again()?; // same port, same data: `db` is back
    /// # Ok::<(), tenant_guard_testkit::TestkitError>(())
    /// ```
    pub fn stop(&self) -> Result<(), TestkitError> {
        self.local()?.stop()
    }

    /// Starts a server stopped with [`stop`](Self::stop) again, on the same port and data
    /// directory, and blocks until it accepts connections. Starting a running server does
    /// nothing. Fails with [`TestkitError::NotLocal`] for an external server.
    pub fn start_again(&self) -> Result<(), TestkitError> {
        self.local()?.start_again(&self.cluster.admin)
    }

    /// [`stop`](Self::stop), then [`start_again`](Self::start_again).
    pub fn restart(&self) -> Result<(), TestkitError> {
        self.stop()?;
        self.start_again()
    }

    fn local(&self) -> Result<&LocalServer, TestkitError> {
        self.local.as_ref().ok_or(TestkitError::NotLocal)
    }

    /// Creates a fresh, empty database (from `template0`) with a unique name, blocking the calling
    /// thread until it exists (tens of milliseconds). Safe to call from inside an async runtime:
    /// the work runs on the testkit's own thread.
    pub fn create_database(&self) -> Result<TestDatabase, TestkitError> {
        self.cluster.create_database("template0")
    }

    /// Like [`create_database`](Self::create_database), without blocking: for async code that
    /// must not stall its runtime (any executor works).
    pub async fn create_database_async(&self) -> Result<TestDatabase, TestkitError> {
        self.cluster.create_database_async("template0").await
    }
}

impl fmt::Debug for TestPostgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("TestPostgres");
        debug.field("config", self.config());
        if let Some(local) = &self.local {
            debug
                .field("data_dir", &local.data_dir())
                .field("run_as", &local.run_as());
        }
        debug.finish_non_exhaustive()
    }
}

fn server_version_num(admin: &Admin) -> Result<i32, TestkitError> {
    let config = admin.config().clone();
    admin.call(async move {
        let context = "reading the server version";
        let client = admin::connect(&config, context).await?;
        let row = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .map_err(|e| TestkitError::postgres(context, e))?;
        row.try_get(0)
            .map_err(|e| TestkitError::postgres(context, e))
    })
}
