//! A throwaway PostgreSQL server: `initdb` into a temporary directory, `postgres` on a free loopback
//! port, everything removed again when it is dropped or when the test process exits.
//!
//! Cleanup does not rely on `Drop` alone: a server kept in a `static` is never dropped, and a test
//! process can be killed. So every temporary directory gets a *watchdog*, a tiny `sh` process that
//! blocks reading a pipe whose only write end this process holds. When the pipe closes (we drop the
//! server, the process exits, or it is killed), the watchdog sends the server `SIGQUIT` (immediate
//! shutdown), waits for it to go, and deletes the directory.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio_postgres::Config;

use super::binaries::Binaries;
use super::user::ServerUser;
use crate::admin::{self, Admin};
use crate::error::TestkitError;

/// The superuser `initdb` creates.
pub(crate) const SUPERUSER: &str = "postgres";

/// Settings for a fast, disposable server. None of them is safe for data anyone wants to keep.
const SETTINGS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("wal_level", "minimal"),
    ("max_wal_senders", "0"),
    ("max_connections", "300"),
    ("shared_buffers", "32MB"),
    ("autovacuum", "off"),
    ("jit", "off"),
];

/// [`SETTINGS`] with what a primary needs for a streaming standby (`pg_basebackup -R`).
const REPLICATION_SETTINGS: &[(&str, &str)] = &[
    ("wal_level", "replica"),
    ("max_wal_senders", "5"),
    ("hot_standby", "on"),
    ("wal_keep_size", "64MB"),
];

/// How often a port race is retried.
const PORT_ATTEMPTS: u32 = 5;
/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dropping waits for the server and the watchdog to finish.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The watchdog. `$1` is the temporary directory, `$2` the data directory; pids to stop arrive on
/// stdin, one a line. It only signals processes that are still ours (`postgres`, or the
/// `setpriv`/`runuser` wrapper) and not zombies, so a recycled pid is never hit.
const WATCHDOG: &str = r#"
trap '' INT HUP
dir=$1
data=$2
pids=
while read -r pid; do pids="$pids $pid"; done
if [ -r "$data/postmaster.pid" ] && read -r pid < "$data/postmaster.pid"; then
  pids="$pids $pid"
fi
ours() {
  case $1 in ''|*[!0-9]*) return 1 ;; esac
  [ -r "/proc/$1/stat" ] || return 1
  read -r _ comm state _ < "/proc/$1/stat" 2>/dev/null || return 1
  [ "$state" != Z ] || return 1
  case $comm in "(postgres)"|"(pgbouncer)"|"(setpriv)"|"(runuser)") return 0 ;; esac
  return 1
}
for pid in $pids; do ours "$pid" && kill -QUIT "$pid" 2>/dev/null; done
i=0
while [ "$i" -lt 100 ]; do
  alive=
  for pid in $pids; do ours "$pid" && alive=1; done
  [ -n "$alive" ] || break
  sleep 0.1
  i=$((i + 1))
done
for pid in $pids; do ours "$pid" && kill -KILL "$pid" 2>/dev/null; done
rm -rf "$dir"
"#;

/// A running throwaway server. Dropping it stops the server and deletes its directory.
///
/// The server process can be stopped and started again on the same port and data directory
/// ([`stop`](Self::stop), [`start_again`](Self::start_again)), for tests of what clients do while
/// the database goes away and comes back.
#[derive(Debug)]
pub(crate) struct LocalServer {
    postgres: Mutex<Child>,
    port: u16,
    data_dir: PathBuf,
    log_file: PathBuf,
    binaries: Binaries,
    user: Option<ServerUser>,
    /// Settings on top of [`SETTINGS`] (later ones win).
    extra: &'static [(&'static str, &'static str)],
    // Dropped last: waits for the watchdog and removes the directory.
    scratch: Mutex<Scratch>,
}

/// What [`LocalServer::start_with`] calls between `initdb` and the first start:
/// `prepare(data_dir, server_user)`.
pub(crate) type Prepare<'a> = dyn Fn(&Path, Option<&ServerUser>) -> Result<(), TestkitError> + 'a;

/// Outcome of one start attempt that did not succeed.
enum Attempt {
    PortTaken,
    Failed(TestkitError),
}

impl LocalServer {
    /// Finds the binaries, initialises a cluster and starts a server, returning it with an
    /// administration handle connected to it as the superuser.
    pub(crate) fn start() -> Result<(Self, Admin), TestkitError> {
        Self::start_full(&|_, _| Ok(()), &[], None)
    }

    /// [`start`](Self::start), calling `prepare(data_dir, server_user)` after `initdb` and before
    /// the server first starts (to add files and settings to the cluster).
    pub(crate) fn start_with(prepare: &Prepare<'_>) -> Result<(Self, Admin), TestkitError> {
        Self::start_full(prepare, &[], None)
    }

    /// A server ready to feed streaming standbys (`wal_level = replica`, WAL senders).
    pub(crate) fn start_replicated() -> Result<(Self, Admin), TestkitError> {
        Self::start_full(&|_, _| Ok(()), REPLICATION_SETTINGS, None)
    }

    /// A hot standby of `self` (which must have been started with
    /// [`start_replicated`](Self::start_replicated)): `pg_basebackup -R` into a new directory,
    /// then a server on a port of its own, streaming from this one.
    pub(crate) fn start_standby(&self) -> Result<(Self, Admin), TestkitError> {
        Self::start_full(&|_, _| Ok(()), REPLICATION_SETTINGS, Some(self.port))
    }

    fn start_full(
        prepare: &Prepare<'_>,
        extra: &'static [(&'static str, &'static str)],
        standby_of: Option<u16>,
    ) -> Result<(Self, Admin), TestkitError> {
        let started = Instant::now();
        let binaries = Binaries::find()?;
        let user = ServerUser::for_current_process()?;
        let mut scratch = Scratch::create(user.as_ref())?;
        let data_dir = scratch.dir.join("data");
        let log_file = scratch.dir.join("server.log");

        match standby_of {
            None => {
                initdb(&binaries, user.as_ref(), &scratch.dir, &data_dir)?;
                prepare(&data_dir, user.as_ref())?;
            }
            Some(primary) => {
                basebackup(&binaries, user.as_ref(), &scratch.dir, &data_dir, primary)?
            }
        }
        let initialised = started.elapsed();

        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port()?;
            let admin = Admin::start(superuser_config(port))?;
            let log = File::create(&log_file)
                .map_err(|e| TestkitError::io(format!("creating {}", log_file.display()), e))?;
            let mut postgres = spawn_postgres(
                &binaries,
                user.as_ref(),
                &scratch.dir,
                &data_dir,
                port,
                extra,
                log,
            )?;
            scratch.watch(postgres.id());
            match wait_ready(&mut postgres, &admin, &data_dir, &log_file) {
                Ok(()) => {
                    tracing::info!(
                        port,
                        data_dir = %data_dir.display(),
                        run_as = user.as_ref().map(|u| u.name.as_str()),
                        initdb_ms = initialised.as_millis() as u64,
                        total_ms = started.elapsed().as_millis() as u64,
                        "started throwaway PostgreSQL server"
                    );
                    let server = Self {
                        postgres: Mutex::new(postgres),
                        port,
                        data_dir,
                        log_file,
                        binaries,
                        user,
                        extra,
                        scratch: Mutex::new(scratch),
                    };
                    return Ok((server, admin));
                }
                Err(Attempt::PortTaken) => {
                    let _ = postgres.wait();
                    tracing::debug!(port, attempt, "port taken by someone else, retrying");
                }
                Err(Attempt::Failed(error)) => {
                    let _ = postgres.kill();
                    let _ = postgres.wait();
                    return Err(error);
                }
            }
        }
        Err(TestkitError::ServerStart {
            reason: format!("no free port after {PORT_ATTEMPTS} attempts"),
            log_tail: log_tail(&log_file),
        })
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub(crate) fn log_file(&self) -> &Path {
        &self.log_file
    }

    pub(crate) fn run_as(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.name.as_str())
    }

    /// Stops the server with a *fast* shutdown (`SIGINT`: open transactions are rolled back,
    /// clients disconnected, committed work checkpointed) and waits for it to exit. Stopping a
    /// stopped server does nothing.
    pub(crate) fn stop(&self) -> Result<(), TestkitError> {
        let mut postgres = lock(&self.postgres);
        if exited_already(&mut postgres)? {
            return Ok(());
        }
        // The postmaster's own pid: the child may be a `runuser` wrapper around it.
        let pid = postmaster_pid(&self.data_dir).unwrap_or(postgres.id());
        let status = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| TestkitError::io("running `kill -INT` on the test server", e))?;
        if !status.success() {
            return Err(TestkitError::io(
                "stopping the test server",
                std::io::Error::other(format!("`kill -INT {pid}` failed ({status})")),
            ));
        }
        if wait_timeout(&mut postgres, STOP_TIMEOUT).is_none() {
            return Err(TestkitError::Timeout {
                context: "waiting for the test server to shut down".to_owned(),
                seconds: STOP_TIMEOUT.as_secs(),
            });
        }
        tracing::info!(port = self.port, "stopped throwaway PostgreSQL server");
        Ok(())
    }

    /// Starts a stopped server again on the same port and data directory, and waits until it
    /// accepts connections. Starting a running server does nothing.
    pub(crate) fn start_again(&self, admin: &Admin) -> Result<(), TestkitError> {
        let mut postgres = lock(&self.postgres);
        if !exited_already(&mut postgres)? {
            return Ok(());
        }
        let log = OpenOptions::new()
            .append(true)
            .open(&self.log_file)
            .map_err(|e| TestkitError::io(format!("opening {}", self.log_file.display()), e))?;
        let mut scratch = lock(&self.scratch);
        *postgres = spawn_postgres(
            &self.binaries,
            self.user.as_ref(),
            &scratch.dir,
            &self.data_dir,
            self.port,
            self.extra,
            log,
        )?;
        scratch.watch(postgres.id());
        drop(scratch);
        match wait_ready(&mut postgres, admin, &self.data_dir, &self.log_file) {
            Ok(()) => {
                tracing::info!(
                    port = self.port,
                    "started throwaway PostgreSQL server again"
                );
                Ok(())
            }
            Err(Attempt::PortTaken) => Err(TestkitError::ServerStart {
                reason: format!("port {} was taken while the server was stopped", self.port),
                log_tail: log_tail(&self.log_file),
            }),
            Err(Attempt::Failed(error)) => {
                let _ = postgres.kill();
                let _ = postgres.wait();
                Err(error)
            }
        }
    }
}

/// Locks `mutex`; the values behind the server's mutexes stay consistent whatever panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the server process has exited.
fn exited_already(postgres: &mut Child) -> Result<bool, TestkitError> {
    postgres
        .try_wait()
        .map(|status| status.is_some())
        .map_err(|e| TestkitError::io("checking the server process", e))
}

/// The postmaster's pid, from the first line of `postmaster.pid`.
fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let postgres = self
            .postgres
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let watchdog_alive = self
            .scratch
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .release();
        if !watchdog_alive {
            let _ = postgres.kill();
        }
        if wait_timeout(postgres, STOP_TIMEOUT).is_none() {
            tracing::warn!(
                pid = postgres.id(),
                "throwaway PostgreSQL did not stop; killing it"
            );
            let _ = postgres.kill();
            let _ = postgres.wait();
        }
        // `scratch` is dropped next: it waits for the watchdog and removes the directory.
    }
}

/// The superuser configuration of a local server on `port`.
pub(crate) fn superuser_config(port: u16) -> Config {
    let mut config = Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(SUPERUSER)
        .dbname("postgres")
        .application_name("tenant-guard-testkit");
    config
}

/// The temporary directory and its watchdog.
#[derive(Debug)]
pub(crate) struct Scratch {
    pub(crate) dir: PathBuf,
    watchdog: Child,
    pipe: Option<ChildStdin>,
}

impl Scratch {
    pub(crate) fn create(user: Option<&ServerUser>) -> Result<Self, TestkitError> {
        // Under root, the server user must be able to reach the directory: /tmp is world-searchable,
        // while $TMPDIR could be anywhere.
        let base = if user.is_some() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = create_unique_dir(&base)?;
        match Self::watch_dir(dir.clone(), user) {
            Ok(scratch) => Ok(scratch),
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(error)
            }
        }
    }

    fn watch_dir(dir: PathBuf, user: Option<&ServerUser>) -> Result<Self, TestkitError> {
        if let Some(user) = user {
            std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid)).map_err(|e| {
                TestkitError::io(format!("giving {} to user {}", dir.display(), user.name), e)
            })?;
        }
        let mut watchdog = Command::new("/bin/sh");
        watchdog
            .arg("-c")
            .arg(WATCHDOG)
            .arg("tenant-guard-testkit-watchdog")
            .arg(&dir)
            .arg(dir.join("data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            // Out of the terminal's process group: Ctrl-C must not kill it before it cleans up.
            .process_group(0);
        let mut watchdog = watchdog
            .spawn()
            .map_err(|e| TestkitError::io("spawning the cleanup watchdog (/bin/sh)", e))?;
        let pipe = watchdog.stdin.take();
        Ok(Self {
            dir,
            watchdog,
            pipe,
        })
    }

    /// Tells the watchdog to stop `pid` too when it fires.
    pub(crate) fn watch(&mut self, pid: u32) {
        if let Some(pipe) = &mut self.pipe
            && let Err(error) = writeln!(pipe, "{pid}")
        {
            tracing::warn!(%error, pid, "could not hand a pid to the cleanup watchdog");
        }
    }

    /// Fires the watchdog. Returns whether it was still there to fire.
    fn release(&mut self) -> bool {
        self.pipe = None;
        matches!(self.watchdog.try_wait(), Ok(None))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.release();
        if wait_timeout(&mut self.watchdog, STOP_TIMEOUT).is_none() {
            let _ = self.watchdog.kill();
            let _ = self.watchdog.wait();
        }
        if self.dir.exists()
            && let Err(error) = std::fs::remove_dir_all(&self.dir)
        {
            tracing::warn!(%error, dir = %self.dir.display(), "could not remove throwaway PostgreSQL directory");
        }
    }
}

fn create_unique_dir(base: &Path) -> Result<PathBuf, TestkitError> {
    let mut last_error = None;
    for _ in 0..16 {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let dir = base.join(format!(
            "tenant-guard-pg-{}-{}",
            std::process::id(),
            &suffix[..10]
        ));
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => {
                return Err(TestkitError::io(
                    format!("creating a temporary directory under {}", base.display()),
                    e,
                ));
            }
        }
    }
    Err(TestkitError::io(
        format!("creating a temporary directory under {}", base.display()),
        last_error.unwrap_or_else(|| std::io::Error::other("no unique name found")),
    ))
}

pub(crate) fn command(user: Option<&ServerUser>, program: &Path, cwd: &Path) -> Command {
    let mut command = match user {
        Some(user) => user.command(program),
        None => Command::new(program),
    };
    // English messages (the port-race detection reads the log) and a directory the server user can
    // enter (the caller's may be private to root).
    command
        .env("LC_ALL", "C")
        .env_remove("PGDATA")
        .current_dir(cwd);
    command
}

fn initdb(
    binaries: &Binaries,
    user: Option<&ServerUser>,
    dir: &Path,
    data_dir: &Path,
) -> Result<(), TestkitError> {
    let output = command(user, &binaries.initdb, dir)
        .arg("-D")
        .arg(data_dir)
        .args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TestkitError::io(format!("running {}", binaries.initdb.display()), e))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(TestkitError::Initdb {
        status: output.status.to_string(),
        data_dir: data_dir.to_owned(),
        output: text,
    })
}

/// `pg_basebackup -R` of the server on `primary_port` into `data_dir`: a standby's data directory,
/// with `standby.signal` and the `primary_conninfo` to stream from it.
fn basebackup(
    binaries: &Binaries,
    user: Option<&ServerUser>,
    dir: &Path,
    data_dir: &Path,
    primary_port: u16,
) -> Result<(), TestkitError> {
    let tool = binaries.tool("pg_basebackup");
    let output = command(user, &tool, dir)
        .arg("-D")
        .arg(data_dir)
        .args(["-h", "127.0.0.1", "-p", &primary_port.to_string()])
        .args([
            "-U",
            SUPERUSER,
            "-R",
            "-X",
            "stream",
            "--no-sync",
            "-c",
            "fast",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TestkitError::io(format!("running {}", tool.display()), e))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(TestkitError::Standby {
        reason: format!("pg_basebackup exited ({}): {text}", output.status),
    })
}

fn spawn_postgres(
    binaries: &Binaries,
    user: Option<&ServerUser>,
    dir: &Path,
    data_dir: &Path,
    port: u16,
    extra: &[(&str, &str)],
    log: File,
) -> Result<Child, TestkitError> {
    let stderr = log
        .try_clone()
        .map_err(|e| TestkitError::io("duplicating the server log handle", e))?;
    let mut postgres = command(user, &binaries.postgres, dir);
    postgres
        .arg("-D")
        .arg(data_dir)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
        .arg(dir);
    for (name, value) in SETTINGS.iter().chain(extra) {
        postgres.arg("-c").arg(format!("{name}={value}"));
    }
    postgres
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        // Ctrl-C in a terminal reaches the test process only; the watchdog then stops the server.
        .process_group(0);
    postgres
        .spawn()
        .map_err(|e| TestkitError::io(format!("spawning {}", binaries.postgres.display()), e))
}

pub(crate) fn free_port() -> Result<u16, TestkitError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| TestkitError::io("finding a free port on 127.0.0.1", e))
}

/// Waits until the server accepts connections as the superuser and reports *our* data directory
/// (so another server that won a port race is not mistaken for ours).
fn wait_ready(
    postgres: &mut Child,
    admin: &Admin,
    data_dir: &Path,
    log_file: &Path,
) -> Result<(), Attempt> {
    let deadline = Instant::now() + START_TIMEOUT;
    let expected = data_dir.to_string_lossy().into_owned();
    loop {
        match postgres.try_wait() {
            Ok(None) => {}
            Ok(Some(status)) => return Err(exited(status, log_file)),
            Err(e) => {
                return Err(Attempt::Failed(TestkitError::io(
                    "checking the server process",
                    e,
                )));
            }
        }
        let mut probe = admin.config().clone();
        probe.connect_timeout(Duration::from_secs(2));
        let answer = admin.call(async move {
            let client = admin::connect(&probe, "probing the new server").await?;
            let row = client
                .query_one("SELECT current_setting('data_directory')", &[])
                .await
                .map_err(|e| TestkitError::postgres("probing the new server", e))?;
            row.try_get::<_, String>(0)
                .map_err(|e| TestkitError::postgres("probing the new server", e))
        });
        if answer.as_deref().is_ok_and(|dir| dir == expected) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Attempt::Failed(TestkitError::ServerStart {
                reason: format!(
                    "it did not accept connections within {}s (last probe: {})",
                    START_TIMEOUT.as_secs(),
                    match answer {
                        Ok(other) => format!("a server with data directory {other} answered"),
                        Err(error) => error.to_string(),
                    }
                ),
                log_tail: log_tail(log_file),
            }));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn exited(status: ExitStatus, log_file: &Path) -> Attempt {
    let log = std::fs::read_to_string(log_file).unwrap_or_default();
    if log.contains("Address already in use") || log.contains("could not create any TCP/IP sockets")
    {
        return Attempt::PortTaken;
    }
    Attempt::Failed(TestkitError::ServerStart {
        reason: format!("the server process exited ({status})"),
        log_tail: tail(&log, 30),
    })
}

pub(crate) fn log_tail(log_file: &Path) -> String {
    match std::fs::read_to_string(log_file) {
        Ok(log) => tail(&log, 30),
        Err(error) => format!("(could not read {}: {error})", log_file.display()),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits up to `timeout` for `child` to exit.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn watchdog_removes_the_directory_when_released() {
        let mut scratch = Scratch::create(None).unwrap();
        let dir = scratch.dir.clone();
        std::fs::write(dir.join("file"), "x").unwrap();
        assert!(dir.exists());
        assert!(scratch.release());
        assert!(wait_timeout(&mut scratch.watchdog, Duration::from_secs(10)).is_some());
        assert!(!dir.exists());
    }

    #[test]
    fn watchdog_leaves_foreign_processes_alone() {
        let mut bystander = Command::new("sleep").arg("30").spawn().unwrap();
        let mut scratch = Scratch::create(None).unwrap();
        scratch.watch(bystander.id());
        drop(scratch);
        assert!(bystander.try_wait().unwrap().is_none(), "sleep was killed");
        bystander.kill().unwrap();
        bystander.wait().unwrap();
    }
}
