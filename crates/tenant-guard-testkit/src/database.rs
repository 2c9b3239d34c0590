//! Per-test databases.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use crate::admin::{self, Admin, quote_ident};
use crate::conninfo;
use crate::error::TestkitError;

/// How long dropping a [`TestDatabase`] may block the dropping thread.
const DROP_TIMEOUT: Duration = Duration::from_secs(30);

/// What databases need from their server: the administration thread, the superuser connection
/// string, and how to create databases quickly there.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) admin: Admin,
    /// Superuser connection string to the maintenance database.
    pub(crate) url: String,
    /// `CREATE DATABASE … STRATEGY = FILE_COPY` (PostgreSQL 15+): much faster for small databases
    /// than the default WAL_LOG, especially when many are created at once.
    pub(crate) file_copy: bool,
}

impl Cluster {
    pub(crate) fn create_database(
        self: &Arc<Self>,
        template: &str,
    ) -> Result<TestDatabase, TestkitError> {
        let name = unique_name();
        let job = self.create_job(name.clone(), template);
        self.admin.call(job)?;
        Ok(TestDatabase::new(Arc::clone(self), name))
    }

    pub(crate) async fn create_database_async(
        self: &Arc<Self>,
        template: &str,
    ) -> Result<TestDatabase, TestkitError> {
        let name = unique_name();
        let job = self.create_job(name.clone(), template);
        self.admin.call_async(job).await?;
        Ok(TestDatabase::new(Arc::clone(self), name))
    }

    fn create_job(
        &self,
        name: String,
        template: &str,
    ) -> impl Future<Output = Result<(), TestkitError>> + Send + 'static {
        let config = self.admin.config().clone();
        let strategy = if self.file_copy {
            " STRATEGY = FILE_COPY"
        } else {
            ""
        };
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE {}{strategy}",
            quote_ident(&name),
            quote_ident(template)
        );
        let context = format!("creating test database {name} from {template}");
        async move {
            let client = admin::connect(&config, &context).await?;
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| TestkitError::postgres(context, e))?;
            tracing::debug!(database = %name, "created test database");
            Ok(())
        }
    }
}

/// A fresh database of its own for one test, dropped (`WITH (FORCE)`) when this handle is dropped.
///
/// Created by [`TestPostgres::create_database`](crate::TestPostgres::create_database) (empty, from
/// `template0`) or [`TestDatabase::create_copy`] (a copy of a prepared database). Connections made
/// with [`url`](Self::url), [`config`](Self::config) or [`connect`](Self::connect) log in as the
/// server's superuser.
///
/// Dropping waits on the calling thread until the database is gone (tens of milliseconds; at most
/// 30 seconds). It never needs the caller's async runtime, so it is fine at the end of a
/// `#[tokio::test]`. Open connections to the database are terminated by the drop. Failures are
/// logged with `tracing` and otherwise ignored.
///
/// ```no_run
/// use tenant_guard_testkit::TestPostgres;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let server = TestPostgres::shared()?;
/// let db = server.create_database_async().await?;
/// let client = db.connect().await?;
/// client.batch_execute("CREATE TABLE notes (id int PRIMARY KEY)").await?;
/// let count: i64 = client.query_one("SELECT count(*) FROM notes", &[]).await?.get(0);
/// assert_eq!(count, 0);
/// # Ok(())
/// # }
/// ```
pub struct TestDatabase {
    cluster: Arc<Cluster>,
    name: String,
    url: String,
    config: Config,
}

impl TestDatabase {
    fn new(cluster: Arc<Cluster>, name: String) -> Self {
        let url = conninfo::with_dbname(&cluster.url, &name);
        let mut config = cluster.admin.config().clone();
        config.dbname(&name);
        Self {
            cluster,
            name,
            url,
            config,
        }
    }

    /// The database's name (unique, `tg_` followed by the test's name and a random suffix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A superuser connection string for this database, in the form of the server's own
    /// (`postgres://postgres@127.0.0.1:PORT/NAME` for a local server).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The superuser connection configuration for this database.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Opens a superuser connection to this database, without TLS.
    ///
    /// The connection is driven by a task spawned with `tokio::spawn`, so this must be called
    /// inside a tokio runtime, and the client only works as long as that runtime lives.
    pub async fn connect(&self) -> Result<Client, TestkitError> {
        let context = format!("connecting to test database {}", self.name);
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| TestkitError::postgres(context, e))?;
        let name = self.name.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, database = %name, "test database connection ended with an error");
            }
        });
        Ok(client)
    }

    /// Creates a new test database as a copy of this one (`CREATE DATABASE … TEMPLATE`), blocking
    /// the calling thread until it exists. Safe to call from inside an async runtime.
    ///
    /// Use it to pay for schema setup once: prepare one database, close **every** connection to it
    /// (PostgreSQL refuses to copy a database in use), then copy it for each test.
    ///
    /// ```no_run
    /// use tenant_guard_testkit::TestPostgres;
    ///
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = TestPostgres::shared()?;
    /// let template = server.create_database()?;
    /// {
    ///     let client = template.connect().await?;
    ///     client.batch_execute("CREATE TABLE notes (org_id uuid, body text)").await?;
    /// } // connection closed here
    /// let db = template.create_copy()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_copy(&self) -> Result<TestDatabase, TestkitError> {
        self.cluster.create_database(&self.name)
    }

    /// Like [`create_copy`](Self::create_copy), without blocking.
    pub async fn create_copy_async(&self) -> Result<TestDatabase, TestkitError> {
        self.cluster.create_database_async(&self.name).await
    }
}

impl fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let config = self.cluster.admin.config().clone();
        let name = self.name.clone();
        let result = self.cluster.admin.call_timeout(
            async move {
                let context = format!("dropping test database {name}");
                let client = admin::connect(&config, &context).await?;
                client
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote_ident(&name)
                    ))
                    .await
                    .map_err(|e| TestkitError::postgres(context, e))
            },
            DROP_TIMEOUT,
        );
        match result {
            Ok(()) => tracing::debug!(database = %self.name, "dropped test database"),
            Err(error) => {
                tracing::warn!(%error, database = %self.name, "could not drop test database");
            }
        }
    }
}

/// `tg_<test name>_<random>`: unique, at most 63 bytes, and readable in `\l` (cargo names each
/// test's thread after the test).
fn unique_name() -> String {
    let thread = std::thread::current();
    let hint = thread
        .name()
        .and_then(|name| name.rsplit("::").next())
        .unwrap_or("");
    unique_name_for(hint)
}

fn unique_name_for(hint: &str) -> String {
    let mut hint: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if hint.is_empty() {
        hint.push_str("db");
    }
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("tg_{hint}_{}", &random[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_valid_identifiers() {
        let long = "x".repeat(100);
        for hint in [
            "",
            "main",
            "tests::two_databases_are_independent",
            "Weird Name-1",
            &long,
        ] {
            let a = unique_name_for(hint);
            let b = unique_name_for(hint);
            assert_ne!(a, b);
            assert!(a.len() <= 63, "{a}");
            assert!(
                a.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{a}"
            );
        }
        assert!(unique_name_for("Weird Name-1").starts_with("tg_weird_name_1_"));
    }

    #[test]
    fn names_carry_the_test_name() {
        assert!(unique_name().starts_with("tg_names_carry_the_test_name_"));
    }
}
