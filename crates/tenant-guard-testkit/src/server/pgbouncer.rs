//! A throwaway PgBouncer in front of a test server, for tests of the guard behind a
//! transaction-mode pooler.

use std::fmt;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_postgres::Config;

use super::TestPostgres;
use super::local::{self, Scratch};
use super::user::ServerUser;
use crate::admin;
use crate::database::TestDatabase;
use crate::error::TestkitError;

/// The environment variable naming the `pgbouncer` binary (default: `pgbouncer` on `PATH`, then
/// `/usr/sbin/pgbouncer`, Debian's place for it).
pub const PGBOUNCER_ENV: &str = "TENANT_GUARD_PGBOUNCER";

/// Where Debian's `pgbouncer` package installs the binary.
const DEBIAN_PGBOUNCER: &str = "/usr/sbin/pgbouncer";
/// How long PgBouncer may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a port race is retried.
const PORT_ATTEMPTS: u32 = 5;

/// How a [`TestPgBouncer`] pools: `pool_mode`, `default_pool_size` and `max_client_conn`.
///
/// ```
/// use tenant_guard_testkit::PgBouncerOptions;
///
/// let options = PgBouncerOptions::default().default_pool_size(2).max_client_conn(400);
/// assert_eq!(options.get_pool_mode(), "transaction");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBouncerOptions {
    pool_mode: &'static str,
    default_pool_size: u32,
    max_client_conn: u32,
    users: Vec<String>,
}

impl Default for PgBouncerOptions {
    /// `pool_mode = transaction`, `default_pool_size = 4` (server connections per database and
    /// user: small, so clients really share them), `max_client_conn = 500`, logins `postgres`
    /// and `authenticator`.
    fn default() -> Self {
        Self {
            pool_mode: "transaction",
            default_pool_size: 4,
            max_client_conn: 500,
            users: vec!["postgres".into(), "authenticator".into()],
        }
    }
}

impl PgBouncerOptions {
    /// `session`, `transaction` or `statement`.
    #[must_use]
    pub fn pool_mode(mut self, mode: &'static str) -> Self {
        self.pool_mode = mode;
        self
    }

    /// Server connections per database and user.
    #[must_use]
    pub fn default_pool_size(mut self, size: u32) -> Self {
        self.default_pool_size = size;
        self
    }

    /// Client connections PgBouncer accepts in all.
    #[must_use]
    pub fn max_client_conn(mut self, max: u32) -> Self {
        self.max_client_conn = max;
        self
    }

    /// Adds a login PgBouncer lets through (`auth_type = trust` still needs the name in its
    /// `auth_file`).
    #[must_use]
    pub fn user(mut self, name: impl Into<String>) -> Self {
        self.users.push(name.into());
        self
    }

    /// The configured `pool_mode`.
    pub fn get_pool_mode(&self) -> &'static str {
        self.pool_mode
    }

    /// The configured `default_pool_size`.
    pub fn get_default_pool_size(&self) -> u32 {
        self.default_pool_size
    }
}

/// A PgBouncer started from local binaries in front of a [`TestPostgres`], as the same
/// unprivileged user as the server when the tests run as root (PgBouncer refuses root too).
/// Stopped, and its directory removed, when dropped or when the process ends (the testkit's
/// watchdog).
///
/// Every database of the server is reachable through it under its own name (`* =` entry),
/// `auth_type = trust`, on `127.0.0.1` and a free port. With PgBouncer 1.21 or newer,
/// `max_prepared_statements = 0`, so named statements behave as behind Supavisor or an older
/// PgBouncer: they do not survive a transaction.
///
/// ```no_run
/// use tenant_guard_testkit::{PgBouncerOptions, TestPgBouncer, TestPostgres};
///
/// let server = TestPostgres::shared()?;
/// let bouncer = TestPgBouncer::start(server, PgBouncerOptions::default().default_pool_size(2))?;
/// let db = server.create_database()?;
/// println!("pooled: {}", bouncer.url(&db));
/// # Ok::<(), tenant_guard_testkit::TestkitError>(())
/// ```
pub struct TestPgBouncer {
    child: Mutex<Child>,
    port: u16,
    options: PgBouncerOptions,
    log_file: PathBuf,
    version: (u32, u32),
    // Dropped last: waits for the watchdog and removes the directory.
    _scratch: Scratch,
}

impl fmt::Debug for TestPgBouncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPgBouncer")
            .field("port", &self.port)
            .field("options", &self.options)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl TestPgBouncer {
    /// Starts PgBouncer in front of `server` and waits until it answers a query. Fails with
    /// [`TestkitError::PgBouncerNotFound`] when there is no binary.
    pub fn start(server: &TestPostgres, options: PgBouncerOptions) -> Result<Self, TestkitError> {
        let binary = find_binary()?;
        let version = binary_version(&binary);
        let (target_host, target_port) = target(server.config())?;
        let user = ServerUser::for_current_process()?;
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let mut scratch = Scratch::create(user.as_ref())?;
            let port = local::free_port()?;
            let ini = write_config(
                &scratch.dir,
                &options,
                &target_host,
                target_port,
                port,
                version,
            )?;
            if let Some(user) = &user {
                for file in ["pgbouncer.ini", "userlist.txt"] {
                    let path = scratch.dir.join(file);
                    std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))
                        .map_err(|e| TestkitError::io(format!("chown {}", path.display()), e))?;
                }
            }
            let log_file = scratch.dir.join("pgbouncer.log");
            let log = File::create(&log_file)
                .map_err(|e| TestkitError::io(format!("creating {}", log_file.display()), e))?;
            if let Some(user) = &user {
                std::os::unix::fs::chown(&log_file, Some(user.uid), Some(user.gid))
                    .map_err(|e| TestkitError::io(format!("chown {}", log_file.display()), e))?;
            }
            let stderr = log
                .try_clone()
                .map_err(|e| TestkitError::io("duplicating the PgBouncer log handle", e))?;
            let mut command: Command = local::command(user.as_ref(), &binary, &scratch.dir);
            let mut child = command
                .arg(&ini)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(stderr)
                .process_group(0)
                .spawn()
                .map_err(|e| TestkitError::io(format!("spawning {}", binary.display()), e))?;
            scratch.watch(child.id());
            match wait_ready(server, &mut child, port, &log_file) {
                Ok(()) => {
                    tracing::info!(port, ?version, "started throwaway PgBouncer");
                    return Ok(Self {
                        child: Mutex::new(child),
                        port,
                        options,
                        log_file,
                        version,
                        _scratch: scratch,
                    });
                }
                Err(error) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
                    if !log.contains("Address already in use") {
                        return Err(error);
                    }
                    last = Some(error);
                }
            }
        }
        Err(last.unwrap_or_else(|| TestkitError::PgBouncerStart {
            reason: "no free port".into(),
            log_tail: String::new(),
        }))
    }

    /// The port PgBouncer listens on (`127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The options it was started with.
    pub fn options(&self) -> &PgBouncerOptions {
        &self.options
    }

    /// PgBouncer's version, `(major, minor)` (`(0, 0)` when unknown).
    pub fn version(&self) -> (u32, u32) {
        self.version
    }

    /// PgBouncer's log file.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The URL of `db` through PgBouncer, as the `postgres` superuser.
    pub fn url(&self, db: &TestDatabase) -> String {
        self.url_for(db.name(), "postgres")
    }

    /// The URL of database `dbname` through PgBouncer, as `user` (who must be one of the
    /// options' users).
    pub fn url_for(&self, dbname: &str, user: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{dbname}", self.port)
    }

    /// The configuration of `db` through PgBouncer, as the `postgres` superuser.
    pub fn config(&self, db: &TestDatabase) -> Config {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname(db.name())
            .application_name("tenant-guard-testkit");
        config
    }

    /// Whether PgBouncer is still running.
    pub fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        matches!(child.try_wait(), Ok(None))
    }
}

impl Drop for TestPgBouncer {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        // SIGINT: "safe shutdown" would wait for clients; the watchdog's SIGQUIT is immediate.
        let _ = child.kill();
        let _ = local::wait_timeout(child, Duration::from_secs(10));
    }
}

fn find_binary() -> Result<PathBuf, TestkitError> {
    if let Some(path) = std::env::var_os(PGBOUNCER_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("pgbouncer"))
        .chain([PathBuf::from(DEBIAN_PGBOUNCER)])
        .find(|p| p.is_file())
        .ok_or(TestkitError::PgBouncerNotFound)
}

/// `pgbouncer --version` → `(1, 18)`; `(0, 0)` when it cannot be read.
fn binary_version(binary: &Path) -> (u32, u32) {
    let output = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    let text = output
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    parse_version(&text).unwrap_or((0, 0))
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let word = text.lines().next()?.split_whitespace().nth(1)?;
    let mut parts = word.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Host (address or socket directory) and port of the server PgBouncer forwards to.
fn target(config: &Config) -> Result<(String, u16), TestkitError> {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Ok((host, port))
}

fn write_config(
    dir: &Path,
    options: &PgBouncerOptions,
    target_host: &str,
    target_port: u16,
    port: u16,
    version: (u32, u32),
) -> Result<PathBuf, TestkitError> {
    let users: String = options
        .users
        .iter()
        .map(|u| format!("\"{}\" \"\"\n", u.replace('"', "")))
        .collect();
    let userlist = dir.join("userlist.txt");
    std::fs::write(&userlist, users)
        .map_err(|e| TestkitError::io(format!("writing {}", userlist.display()), e))?;
    // PgBouncer 1.21 added protocol-level prepared statements (on by default from 1.22): off, so
    // a test sees what Supavisor and older PgBouncers do.
    let prepared = if version >= (1, 21) {
        "max_prepared_statements = 0\n"
    } else {
        ""
    };
    let ini = format!(
        "[databases]\n\
         * = host={target_host} port={target_port}\n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = trust\n\
         auth_file = {userlist}\n\
         admin_users = postgres\n\
         pool_mode = {mode}\n\
         default_pool_size = {size}\n\
         min_pool_size = 0\n\
         reserve_pool_size = 0\n\
         max_client_conn = {clients}\n\
         max_db_connections = 0\n\
         server_reset_query =\n\
         ignore_startup_parameters = extra_float_digits\n\
         {prepared}",
        userlist = userlist.display(),
        mode = options.pool_mode,
        size = options.default_pool_size,
        clients = options.max_client_conn,
    );
    let path = dir.join("pgbouncer.ini");
    std::fs::write(&path, ini)
        .map_err(|e| TestkitError::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}

fn wait_ready(
    server: &TestPostgres,
    child: &mut Child,
    port: u16,
    log_file: &Path,
) -> Result<(), TestkitError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut config = Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(2));
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(TestkitError::PgBouncerStart {
                reason: format!("pgbouncer exited ({status})"),
                log_tail: local::log_tail(log_file),
            });
        }
        let probe = config.clone();
        let answer = server.cluster.admin.call(async move {
            let client = admin::connect(&probe, "probing PgBouncer").await?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| TestkitError::postgres("probing PgBouncer", e))
        });
        match answer {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() >= deadline => {
                return Err(TestkitError::PgBouncerStart {
                    reason: format!("no answer within {}s ({error})", START_TIMEOUT.as_secs()),
                    log_tail: local::log_tail(log_file),
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_first_line() {
        assert_eq!(
            parse_version("PgBouncer 1.18.0\nlibevent 2.1.12"),
            Some((1, 18))
        );
        assert_eq!(parse_version("PgBouncer 1.24.1"), Some((1, 24)));
        assert_eq!(parse_version(""), None);
    }
}
