//! A hot standby streaming from a throwaway primary, for tests of reads served by a replica.

use std::fmt;
use std::time::{Duration, Instant};

use tokio_postgres::Config;

use super::TestPostgres;
use super::local::{self, LocalServer};
use crate::admin::{self, Admin};
use crate::database::TestDatabase;
use crate::error::TestkitError;

/// How long [`TestStandby::wait_for_replay`] waits by default.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);

/// A read-only hot standby of a [`TestPostgres`] started with
/// [`start_local_replicated`](TestPostgres::start_local_replicated): a copy made with
/// `pg_basebackup -R` (physical streaming replication), on a port of its own. Every database of
/// the primary, including the ones created after the standby started, appears on it once
/// replayed.
///
/// Stopped, and its directory removed, when dropped (or when the process ends).
///
/// ```no_run
/// use tenant_guard_testkit::TestPostgres;
///
/// let primary = TestPostgres::start_local_replicated()?;
/// let standby = primary.start_standby()?;
/// let db = primary.create_database()?;
/// standby.wait_for_replay(&primary)?;
/// println!("read-only copy of {}: {}", db.name(), standby.url(&db));
/// # Ok::<(), tenant_guard_testkit::TestkitError>(())
/// ```
pub struct TestStandby {
    // Field order: administration handle first, the server process last.
    admin: Admin,
    local: LocalServer,
}

impl fmt::Debug for TestStandby {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestStandby")
            .field("port", &self.local.port())
            .field("data_dir", &self.local.data_dir())
            .finish_non_exhaustive()
    }
}

impl TestPostgres {
    /// Like [`start_local`](Self::start_local), with what streaming standbys need
    /// (`wal_level = replica`, WAL senders; `initdb`'s default `pg_hba.conf` already trusts
    /// local replication connections): a primary for [`start_standby`](Self::start_standby).
    pub fn start_local_replicated() -> Result<TestPostgres, TestkitError> {
        Self::from_local(LocalServer::start_replicated()?)
    }

    /// Starts a hot standby of this server (which must come from
    /// [`start_local_replicated`](Self::start_local_replicated)) and waits until it accepts
    /// connections. Blocks the calling thread (a second or two).
    pub fn start_standby(&self) -> Result<TestStandby, TestkitError> {
        let (local, admin) = self.local()?.start_standby()?;
        Ok(TestStandby { admin, local })
    }
}

impl TestStandby {
    /// The standby's port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.local.port()
    }

    /// The superuser URL of the copy of `db` on the standby.
    pub fn url(&self, db: &TestDatabase) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            local::SUPERUSER,
            self.port(),
            db.name()
        )
    }

    /// The superuser configuration of the copy of `db` on the standby.
    pub fn config(&self, db: &TestDatabase) -> Config {
        let mut config = self.admin.config().clone();
        config.dbname(db.name());
        config
    }

    /// Blocks until the standby has replayed everything the primary had written when this was
    /// called (at most 30 s).
    pub fn wait_for_replay(&self, primary: &TestPostgres) -> Result<(), TestkitError> {
        let config = primary.config().clone();
        let lsn: String = primary.cluster.admin.call(async move {
            let context = "reading the primary's WAL position";
            let client = admin::connect(&config, context).await?;
            let row = client
                .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
                .await
                .map_err(|e| TestkitError::postgres(context, e))?;
            row.try_get(0)
                .map_err(|e| TestkitError::postgres(context, e))
        })?;
        let deadline = Instant::now() + REPLAY_TIMEOUT;
        loop {
            let config = self.admin.config().clone();
            let lsn = lsn.clone();
            let caught_up: bool = self.admin.call(async move {
                let context = "reading the standby's replay position";
                let client = admin::connect(&config, context).await?;
                let row = client
                    .query_one(
                        "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                        &[&lsn],
                    )
                    .await
                    .map_err(|e| TestkitError::postgres(context, e))?;
                row.try_get(0)
                    .map_err(|e| TestkitError::postgres(context, e))
            })?;
            if caught_up {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(TestkitError::Timeout {
                    context: "waiting for the standby to replay the primary's WAL".into(),
                    seconds: REPLAY_TIMEOUT.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Pauses WAL replay (`pg_wal_replay_pause()`): the standby keeps answering, with data as of
    /// now, while the primary moves on. For tests of replication lag.
    pub fn pause_replay(&self) -> Result<(), TestkitError> {
        self.run("SELECT pg_wal_replay_pause()")
    }

    /// Resumes WAL replay after [`pause_replay`](Self::pause_replay).
    pub fn resume_replay(&self) -> Result<(), TestkitError> {
        self.run("SELECT pg_wal_replay_resume()")
    }

    /// Stops the standby (fast shutdown); [`start_again`](Self::start_again) brings it back on
    /// the same port. For tests of a replica going away.
    pub fn stop(&self) -> Result<(), TestkitError> {
        self.local.stop()
    }

    /// Starts a stopped standby again and waits until it accepts connections.
    pub fn start_again(&self) -> Result<(), TestkitError> {
        self.local.start_again(&self.admin)
    }

    fn run(&self, sql: &'static str) -> Result<(), TestkitError> {
        let config = self.admin.config().clone();
        self.admin.call(async move {
            let client = admin::connect(&config, sql).await?;
            client
                .batch_execute(sql)
                .await
                .map_err(|e| TestkitError::postgres(sql, e))
        })
    }
}
