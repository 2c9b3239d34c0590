//! [`TenantTx`]: a pooled connection inside a transaction scoped to one org and role.
//!
//! # How a transaction reaches the server
//!
//! Checking out ([`TenantPool::begin`](crate::TenantPool::begin)) sends nothing. The first
//! statement is sent in one pipeline behind `BEGIN` and the scoping statement (see
//! [`SCOPE_SQL`](crate::scope::SCOPE_SQL)): tokio-postgres writes requests in the order their
//! futures are first polled, so they go out together and cost one round trip. If the scoping
//! fails, the transaction is aborted and the statement behind it fails too: it never runs
//! unscoped.
//!
//! Sending `BEGIN` and the scoping as one simple-protocol message (escaped literals instead of
//! parameters, one `Sync` fewer) was measured and rejected: the server then parses and plans the
//! scoping statement, 1 KB of claims included, on every transaction: +50 % server instructions
//! against the prepared statement (`BENCHMARKS.md`, issue 18).
//!
//! # Hygiene
//!
//! The connection goes back to the pool without a round trip, and never carrying a role, claims or
//! an open transaction:
//! - nothing sent yet (the handler never touched the database): returned as it is;
//! - committed or rolled back: returned behind the `COMMIT`/`ROLLBACK`, which the server runs
//!   before anything the next user sends (one connection is one ordered stream);
//! - dropped unfinished (error, panic, forgotten): a `ROLLBACK` is queued without waiting, then
//!   the connection is returned;
//! - a statement's future was dropped before its answer (cancellation, timeout) and the
//!   transaction is not committed: the statement may still be running, so the connection is
//!   discarded (closed; the server rolls back) and a cancel request is sent for the statement;
//! - the connection broke: discarded.
//!
//! Session-level state the transaction may have created (a `WITH HOLD` cursor, a temporary table,
//! `LISTEN`, `PREPARE`, a session `SET`, a session advisory lock, `currval`) is dealt with as the
//! pool's [`SessionReset`](crate::SessionReset) says: by default the session reset travels in the
//! `COMMIT`'s own message (in one of its own behind a `ROLLBACK`) and a cached check behind it,
//! and a connection that still holds any such state is closed instead of returned (see
//! [`SessionReset::Check`](crate::SessionReset::Check)). A connection is back in the pool only
//! once the check answered; with the check, the `COMMIT` of a read-only transaction is sent by
//! the task that waits for it.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use deadpool_postgres::{ClientWrapper, Object};
use futures_util::future::join;
use tenant_guard_core::{OrgId, Role};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};
use tracing::Span;

use crate::affinity::Home;
use crate::error::GuardError;
use crate::pooler::{self, Pooler};
use crate::redact::Redacted;
use crate::reset::{self, Ending};
use crate::scope::{Scope, ScopeSettings};

/// Nothing sent to the server since checkout.
const IDLE: u8 = 0;
/// `BEGIN` and the scoping were sent: a transaction is (or will be) open.
const OPEN: u8 = 1;
/// `COMMIT` or `ROLLBACK` was sent: the transaction ends before anything sent later.
const ENDING: u8 = 2;
/// The connection broke.
const BROKEN: u8 = 3;

/// A statement [`TenantTx`] can run: SQL text (prepared once per connection and cached) or a
/// [`Statement`] from [`TenantTx::prepare`].
///
/// Sealed: implemented for `str`, `String` and [`Statement`].
pub trait ToStatement: private::Sealed + Sync {}

mod private {
    use tokio_postgres::Statement;

    #[derive(Debug)]
    pub enum Kind<'a> {
        Sql(&'a str),
        Prepared(&'a Statement),
    }

    pub trait Sealed {
        fn kind(&self) -> Kind<'_>;
    }

    impl Sealed for str {
        fn kind(&self) -> Kind<'_> {
            Kind::Sql(self)
        }
    }

    impl Sealed for String {
        fn kind(&self) -> Kind<'_> {
            Kind::Sql(self)
        }
    }

    impl Sealed for Statement {
        fn kind(&self) -> Kind<'_> {
            Kind::Prepared(self)
        }
    }
}

impl ToStatement for str {}
impl ToStatement for String {}
impl ToStatement for Statement {}

async fn resolve<S: ?Sized + ToStatement>(
    client: &ClientWrapper,
    statement: &S,
) -> Result<Statement, tokio_postgres::Error> {
    match statement.kind() {
        private::Kind::Sql(sql) => client.prepare_cached(sql).await,
        private::Kind::Prepared(statement) => Ok(statement.clone()),
    }
}

/// What a statement needs in pooler mode: its SQL and typed parameters (`None` for a
/// [`Statement`], which runs as it is). Nothing is sent when a parameter's type is unknown.
#[allow(clippy::type_complexity)]
fn unnamed<'a, S: ?Sized + ToStatement>(
    statement: &'a S,
    params: &[&'a (dyn ToSql + Sync)],
) -> Result<Option<(&'a str, Vec<(&'a (dyn ToSql + Sync), Type)>)>, GuardError> {
    match statement.kind() {
        private::Kind::Sql(sql) => Ok(Some((sql, pooler::typed(params)?))),
        private::Kind::Prepared(_) => Ok(None),
    }
}

/// Per-pool settings every transaction of the pool shares.
#[derive(Debug)]
pub(crate) struct TxSettings {
    /// Named (cached) or unnamed statements.
    pub(crate) pooler: Pooler,
    /// `BEGIN` and `BEGIN READ ONLY` (with a `SET LOCAL statement_timeout` in pooler mode).
    pub(crate) begin: [Box<str>; 2],
    /// Which settings the scoping sets beyond role, claims and org.
    pub(crate) scope_settings: ScopeSettings,
}

impl TxSettings {
    pub(crate) fn new(
        pooler: Pooler,
        statement_timeout_ms: Option<u128>,
        scope_settings: ScopeSettings,
    ) -> Self {
        let local_timeout = statement_timeout_ms.filter(|_| pooler.is_transaction());
        Self {
            pooler,
            begin: pooler::begin_statements(local_timeout),
            scope_settings,
        }
    }
}

/// A database transaction scoped to one org and role: the only way the guard lets code reach the
/// database.
///
/// Get one from [`TenantPool::begin`](crate::TenantPool::begin) (adapters do this in their
/// extractors) or let [`with_tenant_guard`](crate::with_tenant_guard) manage it. Every statement
/// runs with the principal's role, `request.jwt.claims` and the org id set transaction-locally,
/// so Row Level Security applies to all of them.
///
/// It owns its pooled connection (`Send + Sync + 'static`); its methods take `&self`, so several
/// statements may be in flight at once (they run in the order they were first polled). End it
/// with [`commit`](Self::commit) or [`rollback`](Self::rollback); dropping it rolls back.
///
/// ```no_run
/// # use tenant_guard_postgres::{TenantPool, ScopeOptions, GuardError};
/// # async fn demo(pool: &TenantPool, principal: &tenant_guard_core::Principal) -> Result<(), GuardError> {
/// let tx = pool.begin(principal, ScopeOptions::default()).await?;
/// // No `WHERE org_id = …`: the database only lets the principal's org through.
/// let rows = tx.query("SELECT id, name FROM projects ORDER BY name LIMIT 10", &[]).await?;
/// tx.execute("UPDATE projects SET name = $1 WHERE id = $2", &[&"renamed", &rows[0].get::<_, uuid::Uuid>(0)]).await?;
/// tx.commit().await?;
/// # Ok(())
/// # }
/// ```
///
/// # Tracing
///
/// Every transaction has an `info` span `tenant_tx` (a child of the request's span when there is
/// one) opened at checkout, with `role`, `org_id` (empty on the service-role path), `read_only`,
/// and, as they become known, `pool_wait_ms` (time to check a connection out of the pool),
/// `affine` (with [role affinity](crate::TenantPoolBuilder::role_affinity) on: whether the
/// connection's last transaction ran as the same role),
/// `scope_ms` (time from sending `BEGIN` and the scoping statement to their answer, which arrives
/// with the first statement's; pipelined, so it is not a round trip of its own), `outcome`
/// (`committed`, `rolled_back`, `dropped`, `discarded` or `commit_failed`; `checkout_failed` when
/// no connection could be had) and `duration_ms` (checkout to end). The service-role path adds
/// `service_reason` and `job_id`, and logs `info` events on the `tenant_guard::audit` target at
/// the start and the end (with `reason`, `job_id`, `role` and, at the end, `outcome`). Timing
/// costs a few `Instant::now()` calls and nothing is allocated for it. With the `metrics` feature
/// the same figures feed the histograms and counters of `tenant_guard_core::metrics`.
pub struct TenantTx {
    conn: Option<Object>,
    /// The prepared scoping statement of this transaction's [`Shape`]; `None` in pooler mode
    /// (sent unnamed).
    scope_statement: Option<Statement>,
    settings: Arc<TxSettings>,
    /// Which server served the transaction (`primary`, `replica`), for the span.
    node: &'static str,
    /// Where the connection goes back to, with its role (see [`crate::affinity`]).
    home: Home,
    /// Called once when a read-write transaction commits (read-your-writes bookkeeping).
    on_commit: Option<Box<dyn FnOnce() + Send + Sync>>,
    /// What to do about session state on the way back to the pool, with the cached check
    /// statement of [`SessionReset::Check`](crate::SessionReset::Check).
    reset: Reset,
    /// The session check already ran (behind an awaited `COMMIT`): `CHECKED_CLEAN` or
    /// `CHECKED_DIRTY`; `UNCHECKED` otherwise.
    checked: AtomicU8,
    scope: Scope,
    read_only: bool,
    phase: AtomicU8,
    /// A statement failed on the server: the transaction is aborted.
    failed: AtomicBool,
    /// A statement's future was dropped before its answer arrived.
    cancelled: AtomicBool,
    /// Held while a statement (and the prelude, the first time) is first polled, so concurrent
    /// statements cannot overtake the prelude.
    send_lock: Mutex<()>,
    /// The `tenant_tx` span (see the module docs).
    span: Span,
    /// When the checkout began.
    started: Instant,
    /// The outcome was recorded (it is recorded once).
    ended: AtomicBool,
}

impl fmt::Debug for TenantTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantTx")
            .field("role", self.scope.role())
            .field("org_id", &self.scope.org_id())
            .field("read_only", &self.read_only)
            .field("node", &self.node)
            .field("phase", &self.phase.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Marks the transaction as having a statement whose answer was never seen, unless completed.
struct InFlight<'a> {
    cancelled: &'a AtomicBool,
    done: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.cancelled.store(true, Ordering::Release);
        }
    }
}

/// Sends `sql` as a simple query without waiting for the answer. `false` when the connection is
/// closed.
///
/// tokio-postgres queues a request when its future is first polled; the answer is discarded when
/// the future is dropped. The server runs it before anything sent later on the connection.
pub(crate) fn send_without_waiting(client: &ClientWrapper, sql: &str) -> bool {
    let mut future = pin!(client.batch_execute(sql));
    let mut cx = Context::from_waker(Waker::noop());
    !matches!(future.as_mut().poll(&mut cx), Poll::Ready(Err(_)))
}

/// Takes the connection out of the pool and closes it; the server rolls back whatever was open.
/// A cancel request stops a statement that may still be running.
pub(crate) fn discard(conn: Object) {
    let client = Object::take(conn);
    let token = client.cancel_token();
    drop(client);
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            // Best effort: the backend exits anyway once it notices the closed socket. Over TLS
            // when the connection's sslmode requires it (a plain-text cancel would be refused).
            match crate::tls::cancel_connector() {
                Some(tls) => {
                    let _ = token.cancel_query(tls).await;
                }
                None => {
                    let _ = token.cancel_query(tokio_postgres::NoTls).await;
                }
            }
        });
    }
}

/// The pool's [`SessionReset`](crate::SessionReset), with the check statement in `Check` mode.
#[derive(Clone, Debug)]
pub(crate) enum Reset {
    Check(Statement),
    DiscardAll,
    /// Behind a transaction-mode pooler: the reset rides in the `COMMIT`'s message (one message
    /// runs on one server connection), without the check (a message of its own could reach
    /// another server connection).
    Folded,
    None,
}

const UNCHECKED: u8 = 0;
const CHECKED_CLEAN: u8 = 1;
const CHECKED_DIRTY: u8 = 2;
/// A read-only `commit()` returned without sending `COMMIT`: `release` sends it, folded into the
/// reset (phase `ENDING`).
const COMMIT_DEFERRED: u8 = 3;

/// How a transaction ended, for the log line.
#[derive(Clone, Copy)]
enum End {
    RolledBack,
    Dropped,
}

/// The `outcome` of a transaction, as recorded on its span, in the audit event and as a metric
/// label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Committed,
    CommitFailed,
    RolledBack,
    Dropped,
    Discarded,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Committed => "committed",
            Self::CommitFailed => "commit_failed",
            Self::RolledBack => "rolled_back",
            Self::Dropped => "dropped",
            Self::Discarded => "discarded",
        }
    }
}

/// The `tenant_tx` span of a transaction about to be checked out for `scope`.
pub(crate) fn tx_span(scope: &Scope, read_only: bool) -> Span {
    let span = tracing::info_span!(
        "tenant_tx",
        role = scope.role().as_str(),
        org_id = tracing::field::Empty,
        read_only,
        node = tracing::field::Empty,
        affine = tracing::field::Empty,
        service_reason = tracing::field::Empty,
        job_id = tracing::field::Empty,
        pool_wait_ms = tracing::field::Empty,
        scope_ms = tracing::field::Empty,
        outcome = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    if !span.is_disabled() {
        if let Some(org) = scope.org_id() {
            span.record("org_id", tracing::field::display(org));
        }
        if let Some(reason) = scope.service_reason() {
            span.record("service_reason", reason);
        }
        if let Some(job_id) = scope.service_job_id() {
            span.record("job_id", job_id);
        }
    }
    span
}

impl TenantTx {
    /// `span` is the transaction's `tenant_tx` span (see [`tx_span`]), `started` when the
    /// checkout began.
    #[allow(clippy::too_many_arguments)] // internal: one call site, each argument distinct
    pub(crate) fn new(
        conn: Object,
        scope_statement: Option<Statement>,
        settings: Arc<TxSettings>,
        reset: Reset,
        scope: Scope,
        read_only: bool,
        span: Span,
        started: Instant,
    ) -> Self {
        Self {
            conn: Some(conn),
            scope_statement,
            reset,
            checked: AtomicU8::new(UNCHECKED),
            settings,
            node: "primary",
            home: Home::default(),
            on_commit: None,
            scope,
            read_only,
            phase: AtomicU8::new(IDLE),
            failed: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            send_lock: Mutex::new(()),
            span,
            started,
            ended: AtomicBool::new(false),
        }
    }

    /// Records which server serves the transaction (`primary` or `replica`).
    pub(crate) fn served_by(mut self, node: &'static str) -> Self {
        self.node = node;
        self.span.record("node", node);
        self
    }

    /// Where the connection goes back to when the transaction ends clean.
    pub(crate) fn returning_to(mut self, home: Home) -> Self {
        self.home = home;
        self
    }

    /// Runs `f` once if this transaction commits.
    pub(crate) fn on_commit(mut self, f: impl FnOnce() + Send + Sync + 'static) -> Self {
        self.on_commit = Some(Box::new(f));
        self
    }

    /// Which server serves the transaction: `"primary"`, or `"replica"` for a `READ ONLY`
    /// transaction routed to a read replica (see
    /// [`TenantPoolBuilder::replicas`](crate::TenantPoolBuilder::replicas)).
    pub fn node(&self) -> &'static str {
        self.node
    }

    /// The pool's [`Pooler`] mode.
    pub fn pooler(&self) -> Pooler {
        self.settings.pooler
    }

    fn unnamed(&self) -> bool {
        self.settings.pooler.is_transaction()
    }

    /// The transaction's `tenant_tx` span (see [Tracing](TenantTx#tracing)): to instrument work
    /// that belongs to it.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The org this transaction is scoped to (`None` on the service-role path).
    pub fn org_id(&self) -> Option<&OrgId> {
        self.scope.org_id()
    }

    /// The Postgres role the statements run as.
    pub fn role(&self) -> &Role {
        self.scope.role()
    }

    /// Whether the transaction was opened `READ ONLY`.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The request id recorded in `tenant_guard.request_id`, if any.
    pub fn request_id(&self) -> Option<&str> {
        self.scope.request_id()
    }

    fn client(&self) -> &ClientWrapper {
        match &self.conn {
            Some(conn) => conn,
            // `conn` is only taken by `release`, which consumes or drops the transaction.
            None => unreachable!("TenantTx used after it ended"),
        }
    }

    fn begin_sql(&self) -> &str {
        &self.settings.begin[usize::from(self.read_only)]
    }

    fn note_error(&self, error: &tokio_postgres::Error) {
        if error.as_db_error().is_some() {
            self.failed.store(true, Ordering::Release);
        }
        // Not only a connection already seen closed: a FATAL (the backend terminated, the server
        // shutting down) or an I/O error means the socket is about to close, and the connection
        // must not go back to the pool for the next request to fail on.
        if crate::error::is_connection_failure(error) {
            self.phase.store(BROKEN, Ordering::Release);
        }
    }

    /// Runs `op` (a statement on this transaction's connection), sending `BEGIN` and the scoping
    /// in front of it when it is the first.
    async fn run<T>(
        &self,
        op: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, GuardError> {
        let client = self.client();
        let mut in_flight = InFlight {
            cancelled: &self.cancelled,
            done: false,
        };
        let prelude = async {
            if self
                .phase
                .compare_exchange(IDLE, OPEN, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return Ok(());
            }
            let mut org = [0u8; 36];
            let values = self.scope.values(&mut org);
            let shape = self.scope.shape(self.settings.scope_settings);
            let sent = Instant::now();
            let params = shape.params(values);
            // The claims are redacted from the driver's debug log of statement parameters.
            let claims = Redacted(params.as_slice()[1]);
            let mut refs: [&(dyn ToSql + Sync); 5] = [&""; 5];
            for (i, (slot, value)) in refs.iter_mut().zip(params.as_slice()).enumerate() {
                *slot = if i == 1 { &claims } else { value };
            }
            let refs = &refs[..params.len()];
            let scoping = async {
                match &self.scope_statement {
                    Some(statement) => client.execute(statement, refs).await,
                    None => {
                        let typed: Vec<_> = refs.iter().map(|p| (*p, Type::TEXT)).collect();
                        client.execute_typed(shape.sql(), &typed).await
                    }
                }
            };
            let (begin, scope) = join(client.batch_execute(self.begin_sql()), scoping).await;
            let result = begin.and(scope.map(drop));
            let scoped = sent.elapsed();
            self.span
                .record("scope_ms", tenant_guard_core::trace::millis(scoped));
            #[cfg(feature = "metrics")]
            tenant_guard_core::metrics::record_scope(scoped);
            result
        };
        let mut both = pin!(join(prelude, op));
        let mut first_poll = true;
        let (prelude, result) = poll_fn(|cx| {
            if first_poll {
                // The first poll sends the prelude (if this is the first statement) and then the
                // statement; no other statement may be sent in between.
                first_poll = false;
                let _sending = self
                    .send_lock
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                both.as_mut().poll(cx)
            } else {
                both.as_mut().poll(cx)
            }
        })
        .await;
        in_flight.done = true;
        if let Err(error) = prelude {
            self.note_error(&error);
            tracing::warn!(%error, role = %self.scope.role(), "scoping the transaction failed");
            return Err(GuardError::from_scope(error));
        }
        result.map_err(|error| {
            self.note_error(&error);
            GuardError::from_statement(error)
        })
    }

    /// Runs a statement and returns its rows.
    ///
    /// `statement` is SQL text (prepared on first use and cached per connection) or a
    /// [`Statement`] from [`prepare`](Self::prepare).
    pub async fn query<S>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, GuardError>
    where
        S: ?Sized + ToStatement,
    {
        let client = self.client();
        if self.unnamed()
            && let Some((sql, typed)) = unnamed(statement, params)?
        {
            return self.run(client.query_typed(sql, &typed)).await;
        }
        self.run(async move {
            let statement = resolve(client, statement).await?;
            client.query(&statement, params).await
        })
        .await
    }

    /// Runs a statement that returns exactly one row (an error otherwise).
    pub async fn query_one<S>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, GuardError>
    where
        S: ?Sized + ToStatement,
    {
        let client = self.client();
        if self.unnamed()
            && let Some((sql, typed)) = unnamed(statement, params)?
        {
            return self.run(client.query_typed_one(sql, &typed)).await;
        }
        self.run(async move {
            let statement = resolve(client, statement).await?;
            client.query_one(&statement, params).await
        })
        .await
    }

    /// Runs a statement that returns at most one row (an error if more).
    pub async fn query_opt<S>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, GuardError>
    where
        S: ?Sized + ToStatement,
    {
        let client = self.client();
        if self.unnamed()
            && let Some((sql, typed)) = unnamed(statement, params)?
        {
            return self.run(client.query_typed_opt(sql, &typed)).await;
        }
        self.run(async move {
            let statement = resolve(client, statement).await?;
            client.query_opt(&statement, params).await
        })
        .await
    }

    /// Runs a statement and returns the number of rows it affected.
    pub async fn execute<S>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, GuardError>
    where
        S: ?Sized + ToStatement,
    {
        let client = self.client();
        if self.unnamed()
            && let Some((sql, typed)) = unnamed(statement, params)?
        {
            return self.run(client.execute_typed(sql, &typed)).await;
        }
        self.run(async move {
            let statement = resolve(client, statement).await?;
            client.execute(&statement, params).await
        })
        .await
    }

    /// Runs SQL with explicitly typed parameters, without preparing it: one round trip even for a
    /// statement this connection has never seen (nothing is cached).
    pub async fn query_typed(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, GuardError> {
        let client = self.client();
        self.run(client.query_typed(sql, params)).await
    }

    /// Like [`execute`](Self::execute) with explicitly typed parameters, without preparing.
    pub async fn execute_typed(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<u64, GuardError> {
        let client = self.client();
        self.run(client.execute_typed(sql, params)).await
    }

    /// Prepares `sql` on this connection (cached per connection), e.g. to learn its column types
    /// or to run it several times.
    ///
    /// Refused with [`GuardError::NeedsSession`] in [`Pooler::Transaction`] mode (a named
    /// statement would outlive the transaction on a server connection the next one may not get).
    pub async fn prepare(&self, sql: &str) -> Result<Statement, GuardError> {
        if self.unnamed() {
            return Err(GuardError::NeedsSession(
                "TenantTx::prepare (a named statement)",
            ));
        }
        let client = self.client();
        self.run(client.prepare_cached(sql)).await
    }

    /// Commits the transaction.
    ///
    /// A read-write transaction waits for the server's answer. A `READ ONLY` one does not: its
    /// `COMMIT` is queued and the connection returned, and the next user's statements run after
    /// it. A transaction that never sent a statement commits without any round trip. If a
    /// statement failed earlier, the database already aborted the transaction: this rolls back
    /// and returns [`GuardError::RolledBack`].
    pub async fn commit(mut self) -> Result<(), GuardError> {
        match self.phase.load(Ordering::Acquire) {
            IDLE => {
                self.phase.store(ENDING, Ordering::Release);
                // Nothing was sent: the session is as clean as it was at checkout.
                self.checked.store(CHECKED_CLEAN, Ordering::Release);
                self.home.untouched();
                self.end(Outcome::Committed);
                return Ok(());
            }
            OPEN => {}
            BROKEN => return Err(GuardError::ConnectionLost),
            _ => return Err(GuardError::RolledBack),
        }
        if self.failed.load(Ordering::Acquire) {
            self.end_now(End::RolledBack);
            return Err(GuardError::RolledBack);
        }
        let client = self.client();
        let cancelled = self.cancelled.load(Ordering::Acquire);
        if self.read_only && !cancelled {
            if client.is_closed() {
                self.phase.store(BROKEN, Ordering::Release);
                return Err(GuardError::ConnectionLost);
            }
            if matches!(self.reset, Reset::Check(_)) {
                // Not awaited: the COMMIT goes out folded into the reset's message, on the task
                // that returns the connection once the check answered (see `release`).
                self.checked.store(COMMIT_DEFERRED, Ordering::Release);
                self.phase.store(ENDING, Ordering::Release);
                self.end(Outcome::Committed);
                return Ok(());
            }
            let commit = match self.reset {
                Reset::Folded => reset::folded_commit_sql(true),
                _ => "COMMIT",
            };
            if send_without_waiting(client, commit) {
                self.phase.store(ENDING, Ordering::Release);
                self.end(Outcome::Committed);
                return Ok(());
            }
            self.phase.store(BROKEN, Ordering::Release);
            return Err(GuardError::ConnectionLost);
        }
        // With the session check, the reset rides in the COMMIT's message and the check behind
        // it, in the same round trip.
        let commit = async {
            match &self.reset {
                Reset::Check(statement) => {
                    let (committed, clean) =
                        reset::end_and_check(client, statement, Ending::Commit, self.read_only)
                            .await;
                    self.checked.store(
                        if clean { CHECKED_CLEAN } else { CHECKED_DIRTY },
                        Ordering::Release,
                    );
                    committed
                }
                Reset::Folded => {
                    let (committed, clean) = reset::end_folded(client, self.read_only).await;
                    if !clean {
                        self.checked.store(CHECKED_DIRTY, Ordering::Release);
                    }
                    committed
                }
                _ => client.batch_execute("COMMIT").await,
            }
        };
        let result = if cancelled {
            // A statement whose answer was never seen may have failed and aborted the
            // transaction; COMMIT would then quietly roll back. Probe first, in the same pipeline.
            let both = join(client.batch_execute("SELECT"), commit);
            self.phase.store(ENDING, Ordering::Release);
            match both.await {
                (Err(probe), _) if probe.as_db_error().is_some() => Err(GuardError::RolledBack),
                (_, commit) => commit.map_err(GuardError::from_statement),
            }
        } else {
            // Set before the first poll, which sends it: no suspension point in between.
            self.phase.store(ENDING, Ordering::Release);
            commit.await.map_err(GuardError::from_statement)
        };
        match &result {
            Ok(()) => {
                if let Some(f) = self.on_commit.take() {
                    f();
                }
                self.end(Outcome::Committed);
            }
            Err(error) => {
                if error
                    .postgres()
                    .is_some_and(tokio_postgres::Error::is_closed)
                {
                    self.phase.store(BROKEN, Ordering::Release);
                }
                self.end(Outcome::CommitFailed);
            }
        }
        result
    }

    /// Rolls the transaction back, without waiting: the `ROLLBACK` is queued and the connection
    /// returned (or discarded when a statement may still be running). Never fails today; the
    /// `Result` leaves room for reporting.
    pub async fn rollback(self) -> Result<(), GuardError> {
        self.end_now(End::RolledBack);
        Ok(())
    }

    fn end_now(mut self, end: End) {
        self.release(end);
    }

    /// Returns the connection to the pool clean, or discards it (see the module docs).
    fn release(&mut self, end: End) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let phase = self.phase.load(Ordering::Acquire);
        let cancelled = self.cancelled.load(Ordering::Acquire);
        let discarded = match phase {
            IDLE => {
                self.home.put(conn);
                false
            }
            // COMMIT was sent (awaited, or queued by a read-only commit).
            ENDING => match self.checked.load(Ordering::Acquire) {
                CHECKED_CLEAN => {
                    self.home.ran().put(conn);
                    false
                }
                CHECKED_DIRTY => {
                    reset::close(conn);
                    true
                }
                COMMIT_DEFERRED => self.end_and_return(conn, Ending::Commit),
                _ => self.return_reset(conn),
            },
            // The ROLLBACK goes out at once (a dropped read-write transaction may hold row locks);
            // the reset and check follow on the task.
            OPEN if !cancelled => {
                if send_without_waiting(&conn, "ROLLBACK") {
                    self.return_reset(conn)
                } else {
                    discard(conn);
                    true
                }
            }
            _ => {
                self.span.in_scope(|| {
                    tracing::debug!(
                        cancelled,
                        broken = phase == BROKEN,
                        "discarding the connection: a statement may still be running or it broke"
                    );
                });
                discard(conn);
                true
            }
        };
        if phase != ENDING {
            let outcome = match end {
                _ if discarded => Outcome::Discarded,
                End::RolledBack => Outcome::RolledBack,
                End::Dropped => {
                    if phase != IDLE {
                        self.span.in_scope(|| {
                            tracing::debug!(
                                "transaction dropped without commit or rollback; rolled back"
                            );
                        });
                    }
                    Outcome::Dropped
                }
            };
            self.end(outcome);
        }
    }

    /// Ends the open transaction without waiting and returns the connection through the pool's
    /// [`SessionReset`](crate::SessionReset): with the check, `ending` goes out folded into the
    /// reset's message; otherwise it is queued on its own first. `true` when the connection was
    /// closed instead.
    fn end_and_return(&self, conn: Object, ending: Ending) -> bool {
        if let Reset::Check(statement) = &self.reset {
            reset::return_when_clean(
                conn,
                statement.clone(),
                Some(ending),
                self.read_only,
                self.home.ran(),
            );
            return false;
        }
        let sql = match ending {
            Ending::Commit => "COMMIT",
        };
        if send_without_waiting(&conn, sql) {
            self.return_reset(conn)
        } else {
            discard(conn);
            true
        }
    }

    /// Returns a connection whose `COMMIT`/`ROLLBACK` was sent to the pool through the pool's
    /// [`SessionReset`](crate::SessionReset). `true` when it was closed instead.
    fn return_reset(&self, conn: Object) -> bool {
        match &self.reset {
            Reset::Check(statement) => {
                reset::return_when_clean(
                    conn,
                    statement.clone(),
                    None,
                    self.read_only,
                    self.home.ran(),
                );
                false
            }
            Reset::DiscardAll => {
                if reset::discard_all(&conn) {
                    drop(conn);
                    false
                } else {
                    discard(conn);
                    true
                }
            }
            // Folded: the reset went out with the `COMMIT` (a `ROLLBACK` undoes the session
            // `SET`s of its transaction itself).
            Reset::Folded | Reset::None => {
                self.home.ran().put(conn);
                false
            }
        }
    }

    /// Records how the transaction ended (once): on its span, as metrics, and in the audit log
    /// for the service-role path.
    fn end(&self, outcome: Outcome) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        let total = self.started.elapsed();
        self.span.record("outcome", outcome.as_str());
        self.span
            .record("duration_ms", tenant_guard_core::trace::millis(total));
        #[cfg(feature = "metrics")]
        tenant_guard_core::metrics::record_tx_end(outcome.as_str(), total);
        if let Some(reason) = self.scope.service_reason() {
            self.span.in_scope(|| {
                tracing::info!(
                    target: "tenant_guard::audit",
                    reason,
                    job_id = self.scope.service_job_id(),
                    role = %self.scope.role(),
                    outcome = outcome.as_str(),
                    "service-role transaction ended"
                );
            });
        }
    }
}

impl Drop for TenantTx {
    fn drop(&mut self) {
        self.release(End::Dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_static<T: Send + Sync + 'static>() {}

    #[test]
    fn tenant_tx_is_send_sync_static() {
        assert_send_sync_static::<TenantTx>();
    }

    #[test]
    fn in_flight_marks_cancellation_only_when_unfinished() {
        let cancelled = AtomicBool::new(false);
        drop(InFlight {
            cancelled: &cancelled,
            done: true,
        });
        assert!(!cancelled.load(Ordering::Relaxed));
        drop(InFlight {
            cancelled: &cancelled,
            done: false,
        });
        assert!(cancelled.load(Ordering::Relaxed));
    }
}
