//! Extractors: the verified principal, the request id and the scoped transaction.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use tenant_guard_core::{Principal, RequestId};
use tenant_guard_postgres::{ScopeOptions, TenantTx};

use crate::rejection::TenantGuardRejection;
use crate::service::GuardContext;
use crate::slot::Slot;

fn context(parts: &Parts) -> Result<&GuardContext, TenantGuardRejection> {
    parts
        .extensions
        .get::<GuardContext>()
        .ok_or(TenantGuardRejection::MissingLayer)
}

/// The verified [`Principal`] of the request, put there by [`TenantGuardLayer`](crate::TenantGuardLayer).
///
/// Rejects with a 500 (and an `error` log line) when the route is not behind the layer: that is
/// a server bug, not the caller's fault.
///
/// ```
/// use tenant_guard_axum::Authenticated;
///
/// async fn me(Authenticated(principal): Authenticated) -> String {
///     format!("{} of {}", principal.user_id(), principal.org_id())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl Deref for Authenticated {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = TenantGuardRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        context(parts).map(|c| Self(c.principal.clone()))
    }
}

/// The request id the layer chose (the caller's sane `x-request-id`, else a generated one); the
/// same value is sent back in the response's `x-request-id`.
#[derive(Debug, Clone)]
pub struct CurrentRequestId(pub RequestId);

impl<S: Send + Sync> FromRequestParts<S> for CurrentRequestId {
    type Rejection = TenantGuardRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        context(parts).map(|c| Self(c.request_id.clone()))
    }
}

pub use tenant_guard_postgres::handoff::{Mode, ReadOnly, ReadWrite};

/// A database transaction scoped to the caller's org and role: the only way a handler reaches
/// the database.
///
/// Extracting it begins the transaction on the layer's pool (the role, the verified claims, the
/// org and the request id are set transaction-locally, so Row Level Security applies to every
/// statement). It dereferences to [`TenantTx`] for `query`, `query_one`, `query_opt` and
/// `execute`. There is no `commit`: when the handler has answered, the layer commits if the
/// response is a success (2xx or 3xx) and rolls back otherwise; a failed commit replaces the
/// response with the guard's error. If the request is cancelled or the handler panics, the
/// transaction is dropped and the guard's drop hygiene cleans the connection.
///
/// Take `TenantDb<ReadOnly>` for handlers that only read.
///
/// Rejections: the guard's error (e.g. 503 with `Retry-After` when the pool is exhausted), or a
/// 500 when the layer is missing, has no pool, or the extractor is taken twice.
///
/// ```no_run
/// use axum::http::StatusCode;
/// use tenant_guard_axum::{ReadOnly, TenantDb};
///
/// async fn count_projects(db: TenantDb<ReadOnly>) -> Result<String, StatusCode> {
///     // No `WHERE org_id = …`: RLS only lets the caller's org through.
///     let row = db
///         .query_one("SELECT count(*) FROM projects", &[])
///         .await
///         .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
///     Ok(row.get::<_, i64>(0).to_string())
/// }
/// ```
pub struct TenantDb<M: Mode = ReadWrite> {
    tx: Option<TenantTx>,
    slot: Slot<TenantTx>,
    mode: PhantomData<M>,
}

impl<M: Mode> std::fmt::Debug for TenantDb<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantDb")
            .field("read_only", &M::READ_ONLY)
            .finish_non_exhaustive()
    }
}

impl<M: Mode> TenantDb<M> {
    /// Begins the scoped transaction for the request described by `context`.
    async fn begin(context: &GuardContext) -> Result<Self, TenantGuardRejection> {
        let pool = context
            .pool
            .as_ref()
            .ok_or(TenantGuardRejection::MissingPool)?;
        context
            .slot
            .check_out()
            .map_err(|_| TenantGuardRejection::AlreadyExtracted)?;
        let options = ScopeOptions::default()
            .request_id(&context.request_id)
            .read_only(M::READ_ONLY);
        match pool.begin(&context.principal, options).await {
            Ok(tx) => Ok(Self {
                tx: Some(tx),
                slot: context.slot.clone(),
                mode: PhantomData,
            }),
            Err(error) => {
                context.slot.cancel_check_out();
                Err(TenantGuardRejection::Guard(error))
            }
        }
    }

    fn tx(&self) -> &TenantTx {
        // `tx` is only `None` inside `drop`.
        self.tx
            .as_ref()
            .unwrap_or_else(|| unreachable!("TenantDb used after drop"))
    }
}

impl<M: Mode> Deref for TenantDb<M> {
    type Target = TenantTx;
    fn deref(&self) -> &TenantTx {
        self.tx()
    }
}

impl<M: Mode> DerefMut for TenantDb<M> {
    fn deref_mut(&mut self) -> &mut TenantTx {
        self.tx
            .as_mut()
            .unwrap_or_else(|| unreachable!("TenantDb used after drop"))
    }
}

impl<M: Mode> Drop for TenantDb<M> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            // Hand the transaction to the layer; if the layer already finished (the extractor
            // escaped the handler), dropping it here lets the guard roll it back.
            drop(self.slot.give_back(tx));
        }
    }
}

impl<S: Send + Sync, M: Mode> FromRequestParts<S> for TenantDb<M> {
    type Rejection = TenantGuardRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let context = context(parts)?.clone();
        Self::begin(&context).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use axum::Router;
    use axum::body::Body;
    use axum::extract::Path;
    use axum::routing::{get, post};
    use http::StatusCode;
    use tenant_guard_core::{Environment, Verifier};
    use tenant_guard_postgres::{TenantPool, support};
    use tenant_guard_testkit::{TestDatabase, TestPostgres};
    use tokio::sync::{mpsc, oneshot};
    use tower::ServiceExt;

    use super::*;
    use crate::TenantGuardLayer;

    const SECRET: &str = "unit-test-secret-unit-test-secret";
    const ORG_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
    const ORG_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";

    const SCHEMA: &str = "
        CREATE TABLE notes (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            org_id uuid NOT NULL DEFAULT tenant_guard.org_id(),
            body text NOT NULL
        );
        ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
        ALTER TABLE notes FORCE ROW LEVEL SECURITY;
        GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO authenticated;
        CREATE POLICY notes_org ON notes FOR ALL TO authenticated
            USING (org_id = (SELECT tenant_guard.org_id()))
            WITH CHECK (org_id = (SELECT tenant_guard.org_id()));
    ";

    struct Fixture {
        pool: TenantPool,
        database: TestDatabase,
    }

    async fn fixture(max_size: usize) -> Fixture {
        let database = TestPostgres::shared()
            .unwrap()
            .create_database_async()
            .await
            .unwrap();
        support::apply(database.config(), SCHEMA).await.unwrap();
        let pool = TenantPool::builder(database.config().clone())
            .max_size(max_size)
            .wait_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        Fixture { pool, database }
    }

    impl Fixture {
        /// Every note, read as the superuser; `row_security = off` makes the read fail rather
        /// than silently filter should any policy apply to it.
        async fn all_notes(&self) -> Vec<(String, String)> {
            let client = self.database.connect().await.unwrap();
            client
                .batch_execute("SET row_security = off")
                .await
                .unwrap();
            client
                .query("SELECT org_id::text, body FROM notes ORDER BY id", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        }

        /// `current_user` and the claims setting of a fresh checkout: the connection is clean.
        async fn assert_connections_clean(&self) {
            let app = Router::new()
                .route(
                    "/state",
                    get(|db: TenantDb<ReadOnly>| async move {
                        let row = db
                            .query_one(
                                "SELECT current_user::text, tenant_guard.org_id()::text, \
                                 (SELECT count(*) FROM notes)",
                                &[],
                            )
                            .await
                            .unwrap();
                        format!(
                            "{} {} {}",
                            row.get::<_, String>(0),
                            row.get::<_, String>(1),
                            row.get::<_, i64>(2)
                        )
                    }),
                )
                .route_layer(layer(&self.pool));
            let (status, body) = call(app, "GET", "/state", ORG_B).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body, format!("authenticated {ORG_B} 0"));
        }
    }

    fn layer(pool: &TenantPool) -> TenantGuardLayer {
        let verifier = Verifier::builder(Environment::Test)
            .hmac_secret(SECRET)
            .build()
            .unwrap();
        TenantGuardLayer::new(verifier).pool(pool.clone())
    }

    fn token(org: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = serde_json::json!({
            "sub": "user", "role": "authenticated", "aud": "authenticated", "org_id": org,
            "iat": now, "exp": now + 600,
        });
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    }

    fn request(method: &str, path: &str, org: &str) -> http::Request<Body> {
        http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", token(org)))
            .body(Body::empty())
            .unwrap()
    }

    async fn call(app: Router, method: &str, path: &str, org: &str) -> (StatusCode, String) {
        let response = app.oneshot(request(method, path, org)).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Inserts a note, then answers with the status named in the path.
    async fn insert_then(db: TenantDb, Path(status): Path<u16>) -> StatusCode {
        db.execute(
            "INSERT INTO notes (body) VALUES ($1)",
            &[&status.to_string()],
        )
        .await
        .unwrap();
        StatusCode::from_u16(status).unwrap()
    }

    fn notes_app(pool: &TenantPool) -> Router {
        Router::new()
            .route("/notes/{status}", post(insert_then))
            .route_layer(layer(pool))
    }

    #[tokio::test]
    async fn success_commits_and_failure_rolls_back() {
        let f = fixture(2).await;
        for status in [200, 201, 204, 303] {
            let (got, _) = call(
                notes_app(&f.pool),
                "POST",
                &format!("/notes/{status}"),
                ORG_A,
            )
            .await;
            assert_eq!(got.as_u16(), status);
        }
        for status in [400, 404, 422, 500, 503] {
            let (got, _) = call(
                notes_app(&f.pool),
                "POST",
                &format!("/notes/{status}"),
                ORG_A,
            )
            .await;
            assert_eq!(got.as_u16(), status);
        }
        let kept: Vec<_> = f.all_notes().await.into_iter().map(|(_, b)| b).collect();
        assert_eq!(kept, ["200", "201", "204", "303"]);
        assert!(f.all_notes().await.iter().all(|(org, _)| org == ORG_A));
        f.assert_connections_clean().await;
    }

    #[tokio::test]
    async fn each_org_sees_only_its_rows() {
        let f = fixture(2).await;
        call(notes_app(&f.pool), "POST", "/notes/201", ORG_A).await;
        call(notes_app(&f.pool), "POST", "/notes/201", ORG_A).await;
        call(notes_app(&f.pool), "POST", "/notes/201", ORG_B).await;
        let count = Router::new()
            .route(
                "/count",
                get(|db: TenantDb<ReadOnly>| async move {
                    // No WHERE: RLS scopes it.
                    let row = db
                        .query_one("SELECT count(*) FROM notes", &[])
                        .await
                        .unwrap();
                    row.get::<_, i64>(0).to_string()
                }),
            )
            .route_layer(layer(&f.pool));
        assert_eq!(call(count.clone(), "GET", "/count", ORG_A).await.1, "2");
        assert_eq!(call(count, "GET", "/count", ORG_B).await.1, "1");
    }

    #[tokio::test]
    async fn read_only_transactions_refuse_writes() {
        let f = fixture(1).await;
        let app = Router::new()
            .route(
                "/",
                post(|db: TenantDb<ReadOnly>| async move {
                    match db
                        .execute("INSERT INTO notes (body) VALUES ('x')", &[])
                        .await
                    {
                        Ok(_) => StatusCode::OK,
                        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    }
                }),
            )
            .route_layer(layer(&f.pool));
        let (status, _) = call(app, "POST", "/", ORG_A).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(f.all_notes().await.is_empty());
        f.assert_connections_clean().await;
    }

    #[tokio::test]
    async fn an_exhausted_pool_answers_503_with_retry_after() {
        let f = fixture(1).await;
        let (entered_tx, mut entered) = mpsc::channel::<()>(1);
        let (release, released) = oneshot::channel::<()>();
        let released = std::sync::Mutex::new(Some(released));
        let released = std::sync::Arc::new(released);
        let holder = Router::new()
            .route(
                "/hold",
                get(move |_db: TenantDb| {
                    let entered_tx = entered_tx.clone();
                    let released = released.lock().unwrap().take();
                    async move {
                        entered_tx.send(()).await.unwrap();
                        if let Some(released) = released {
                            let _ = released.await;
                        }
                        "held"
                    }
                }),
            )
            .route_layer(layer(&f.pool));
        let held = tokio::spawn(call(holder, "GET", "/hold", ORG_A));
        entered.recv().await.unwrap();

        let response = notes_app(&f.pool)
            .oneshot(request("POST", "/notes/201", ORG_B))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
        assert!(response.headers().contains_key("x-request-id"));

        release.send(()).unwrap();
        assert_eq!(held.await.unwrap().0, StatusCode::OK);
        assert!(f.all_notes().await.is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_request_leaves_nothing_behind() {
        let f = fixture(1).await;
        let (entered_tx, mut entered) = mpsc::channel::<()>(1);
        let app = Router::new()
            .route(
                "/",
                post(move |db: TenantDb| {
                    let entered_tx = entered_tx.clone();
                    async move {
                        db.execute("INSERT INTO notes (body) VALUES ('cancelled')", &[])
                            .await
                            .unwrap();
                        entered_tx.send(()).await.unwrap();
                        std::future::pending::<()>().await;
                        StatusCode::OK
                    }
                }),
            )
            .route_layer(layer(&f.pool));
        let request = tokio::spawn(call(app, "POST", "/", ORG_A));
        entered.recv().await.unwrap();
        request.abort(); // the client went away mid-handler
        assert!(request.await.unwrap_err().is_cancelled());
        // The same (only) connection serves the next request, clean and without the row.
        f.assert_connections_clean().await;
        assert!(f.all_notes().await.is_empty());
    }

    #[tokio::test]
    async fn a_transaction_that_escapes_its_handler_fails_the_request() {
        let f = fixture(1).await;
        let (escape, mut escaped) = mpsc::unbounded_channel::<TenantDb>();
        let app = Router::new()
            .route(
                "/",
                post(move |db: TenantDb| {
                    let escape = escape.clone();
                    async move {
                        db.execute("INSERT INTO notes (body) VALUES ('escaped')", &[])
                            .await
                            .unwrap();
                        escape.send(db).unwrap();
                        StatusCode::CREATED
                    }
                }),
            )
            .route_layer(layer(&f.pool));
        let (status, _) = call(app, "POST", "/", ORG_A).await;
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "its work cannot be committed"
        );
        drop(escaped.recv().await.unwrap()); // dropped late: rolled back by the guard
        f.assert_connections_clean().await;
        assert!(f.all_notes().await.is_empty());
    }

    #[tokio::test]
    async fn a_failed_commit_replaces_the_handlers_success() {
        let f = fixture(1).await;
        let client = f.database.connect().await.unwrap();
        // Checked at COMMIT, not at the INSERT: the handler sees success, the commit fails.
        client
            .batch_execute(
                "ALTER TABLE notes ADD CONSTRAINT notes_body_unique UNIQUE (body) \
                 DEFERRABLE INITIALLY DEFERRED",
            )
            .await
            .unwrap();
        let app = Router::new()
            .route(
                "/",
                post(|db: TenantDb| async move {
                    for _ in 0..2 {
                        db.execute("INSERT INTO notes (body) VALUES ('same')", &[])
                            .await
                            .unwrap();
                    }
                    StatusCode::CREATED
                }),
            )
            .route_layer(layer(&f.pool));
        let (status, body) = call(app, "POST", "/", ORG_A).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body.contains("\"error\""), "{body}");
        assert!(f.all_notes().await.is_empty());
        f.assert_connections_clean().await;
    }

    #[tokio::test]
    async fn a_swallowed_statement_error_cannot_be_committed() {
        let f = fixture(1).await;
        let app = Router::new()
            .route(
                "/",
                post(|db: TenantDb| async move {
                    db.execute("INSERT INTO notes (body) VALUES ('before')", &[])
                        .await
                        .unwrap();
                    // Another org's row: refused by the policy's WITH CHECK; the handler ignores
                    // the error and claims success.
                    let refused = db
                        .execute(
                            "INSERT INTO notes (org_id, body) VALUES ($1::text::uuid, 'x')",
                            &[&ORG_B],
                        )
                        .await;
                    assert!(refused.is_err());
                    StatusCode::OK
                }),
            )
            .route_layer(layer(&f.pool));
        let (status, _) = call(app, "POST", "/", ORG_A).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(f.all_notes().await.is_empty());
        f.assert_connections_clean().await;
    }

    #[tokio::test]
    async fn misuse_is_a_500_not_a_panic() {
        let f = fixture(1).await;
        let twice = Router::new()
            .route("/", get(|_a: TenantDb, _b: TenantDb| async { "two" }))
            .route_layer(layer(&f.pool));
        assert_eq!(
            call(twice, "GET", "/", ORG_A).await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );

        let verifier = Verifier::builder(Environment::Test)
            .hmac_secret(SECRET)
            .build()
            .unwrap();
        let no_pool = Router::new()
            .route("/", get(|_db: TenantDb| async { "db" }))
            .route_layer(TenantGuardLayer::new(verifier));
        let (status, body) = call(no_pool, "GET", "/", ORG_A).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("internal_error"));

        let no_layer = Router::new().route("/", get(|_db: TenantDb| async { "db" }));
        assert_eq!(
            call(no_layer, "GET", "/", ORG_A).await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        f.assert_connections_clean().await;
    }
}
