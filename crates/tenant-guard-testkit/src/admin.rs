//! Administrative statements (`CREATE DATABASE`, `DROP DATABASE`, probes) run on a dedicated thread
//! with its own single-threaded tokio runtime.
//!
//! Why a thread of our own: callers may be plain synchronous code, a `#[tokio::test]`
//! (current-thread runtime, which dies with the test), or a multi-threaded runtime. A connection task
//! spawned on a test's runtime would die with that test, and `block_on` inside a runtime panics. So
//! every administrative operation is shipped to this thread; synchronous callers wait on a std
//! channel (safe even inside a runtime, since the work never needs the caller's runtime), async
//! callers await a oneshot. Each operation opens its own short-lived connection, so operations run
//! concurrently on the server.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, Config, NoTls};

use crate::error::TestkitError;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How long a synchronous caller waits for one administrative operation.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A handle to the administration thread, with the superuser configuration it connects with.
#[derive(Debug)]
pub(crate) struct Admin {
    tasks: mpsc::UnboundedSender<Task>,
    config: Config,
}

impl Admin {
    /// Starts the administration thread. It ends when the last `Admin` handle is dropped, after
    /// finishing the operations already queued.
    pub(crate) fn start(mut config: Config) -> Result<Self, TestkitError> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TestkitError::io("building the testkit's administration runtime", e))?;
        let (tasks, mut queue) = mpsc::unbounded_channel::<Task>();
        std::thread::Builder::new()
            .name("tenant-guard-testkit-admin".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut running = tokio::task::JoinSet::new();
                    loop {
                        tokio::select! {
                            task = queue.recv() => match task {
                                Some(task) => {
                                    running.spawn(task);
                                }
                                None => break,
                            },
                            Some(_) = running.join_next(), if !running.is_empty() => {}
                        }
                    }
                    while running.join_next().await.is_some() {}
                });
            })
            .map_err(|e| TestkitError::io("spawning the testkit's administration thread", e))?;
        Ok(Self { tasks, config })
    }

    /// The superuser configuration (connected to the maintenance database).
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Runs `fut` on the administration thread and blocks the calling thread until it is done.
    ///
    /// Safe to call from inside any async runtime (the work never needs the caller's runtime), but
    /// it does block the calling thread.
    pub(crate) fn call<T, F>(&self, fut: F) -> Result<T, TestkitError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, TestkitError>> + Send + 'static,
    {
        self.call_timeout(fut, CALL_TIMEOUT)
    }

    /// [`call`](Self::call), waiting at most `timeout` (the operation itself is not cancelled).
    pub(crate) fn call_timeout<T, F>(&self, fut: F, timeout: Duration) -> Result<T, TestkitError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, TestkitError>> + Send + 'static,
    {
        let (reply, answer) = std_mpsc::sync_channel(1);
        self.submit(async move {
            // The caller may have timed out and gone: nothing to do then.
            let _ = reply.send(fut.await);
        })?;
        match answer.recv_timeout(timeout) {
            Ok(result) => result,
            Err(std_mpsc::RecvTimeoutError::Timeout) => Err(TestkitError::Timeout {
                context: "waiting for an administrative statement".to_owned(),
                seconds: timeout.as_secs(),
            }),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(TestkitError::AdminUnavailable),
        }
    }

    /// Runs `fut` on the administration thread and waits for it without blocking.
    pub(crate) async fn call_async<T, F>(&self, fut: F) -> Result<T, TestkitError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, TestkitError>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.submit(async move {
            let _ = reply.send(fut.await);
        })?;
        answer.await.map_err(|_| TestkitError::AdminUnavailable)?
    }

    fn submit(&self, task: impl Future<Output = ()> + Send + 'static) -> Result<(), TestkitError> {
        self.tasks
            .send(Box::pin(task))
            .map_err(|_| TestkitError::AdminUnavailable)
    }
}

/// Connects with `config`, driving the connection on the current (administration) runtime.
/// The connection closes when the returned client is dropped.
pub(crate) async fn connect(config: &Config, context: &str) -> Result<Client, TestkitError> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| TestkitError::postgres(context, e))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "testkit administration connection ended with an error");
        }
    });
    Ok(client)
}

/// Quotes an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn runs_work_from_sync_and_async_callers() {
        let admin = Admin::start(Config::new()).unwrap();
        assert_eq!(admin.call(async { Ok(1 + 1) }).unwrap(), 2);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            // Blocking call inside a runtime: works, as the work runs elsewhere.
            assert_eq!(admin.call(async { Ok(3) }).unwrap(), 3);
            assert_eq!(admin.call_async(async { Ok(4) }).await.unwrap(), 4);
        });
    }

    #[test]
    fn errors_pass_through() {
        let admin = Admin::start(Config::new()).unwrap();
        let err = admin
            .call(async { Err::<(), _>(TestkitError::AdminUnavailable) })
            .unwrap_err();
        assert!(matches!(err, TestkitError::AdminUnavailable));
    }
}
