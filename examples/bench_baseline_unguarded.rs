//! **Benchmark baseline only — unauthenticated and unscoped. Never deploy this.**
//!
//! The reference apps' `GET /projects` with the guard taken out: no token, no verification, no
//! scoping transaction, the query on a raw pooled connection (deadpool-postgres, same pool size,
//! logged in as `DATABASE_URL`'s user) with the org taken from an `x-bench-org` header. Everything
//! else is as in `reference_axum` / `reference_actix`: the same framework setup, request tracing
//! layer, body limit, runtime and logging. The HTTP load harness (`benches/http.rs`) measures the
//! reference apps against it in the same run:
//!
//!     TENANT_GUARD_BENCH_BASELINE=unguarded-and-unauthenticated APP_ENV=test \
//!         DATABASE_URL=postgres://… BIND=127.0.0.1:0 \
//!         cargo run --release --features full --example bench_baseline_unguarded -- axum
//!
//! It refuses to start unless `TENANT_GUARD_BENCH_BASELINE` is exactly
//! `unguarded-and-unauthenticated`, `APP_ENV` is `test` or `development` (unset means production),
//! `BIND` is a loopback address and `DATABASE_URL` is set; the first argument picks the framework
//! (`axum` or `actix`).

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime as PoolRuntime};
use serde::Serialize;
use tenant_guard::Environment;
use tenant_guard::postgres::tokio_postgres::{self, NoTls, Row};
use uuid::Uuid;

/// The one value of `TENANT_GUARD_BENCH_BASELINE` that lets this binary start.
const OPT_IN: &str = "unguarded-and-unauthenticated";

/// The reference apps' list query, with the org filter RLS would add (same rows, same order).
const LIST_SQL: &str =
    "SELECT id, org_id, name FROM projects WHERE org_id = $1 ORDER BY created_at, id";

/// The header naming the org (there is no authentication here).
const ORG_HEADER: &str = "x-bench-org";

#[derive(Serialize)]
struct Project {
    id: Uuid,
    org_id: Uuid,
    name: String,
}

impl From<&Row> for Project {
    fn from(row: &Row) -> Self {
        Self {
            id: row.get("id"),
            org_id: row.get("org_id"),
            name: row.get("name"),
        }
    }
}

/// Which framework to serve with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framework {
    Axum,
    Actix,
}

/// Checks every opt-in condition; the error says which one is missing.
fn check_opt_in(config: &common::Config) -> Result<Framework, common::StartError> {
    if std::env::var("TENANT_GUARD_BENCH_BASELINE").as_deref() != Ok(OPT_IN) {
        return Err(format!(
            "this is an unauthenticated benchmark baseline; it starts only with \
             TENANT_GUARD_BENCH_BASELINE={OPT_IN}"
        )
        .into());
    }
    if config.environment == Environment::Production {
        return Err(
            "the benchmark baseline refuses to run in production (set APP_ENV=test)".into(),
        );
    }
    if !config.bind.ip().is_loopback() {
        return Err("the benchmark baseline binds loopback addresses only".into());
    }
    if config.database_url.is_none() {
        return Err("the benchmark baseline needs DATABASE_URL".into());
    }
    match std::env::args().nth(1).as_deref() {
        Some("axum") => Ok(Framework::Axum),
        Some("actix") => Ok(Framework::Actix),
        _ => Err("usage: bench_baseline_unguarded axum|actix".into()),
    }
}

/// The raw pool (same size as the reference apps'), after applying their schema.
async fn raw_pool(config: &common::Config) -> Result<Pool, common::StartError> {
    let url = config
        .database_url
        .as_deref()
        .ok_or("the benchmark baseline needs DATABASE_URL")?;
    let pg_config: tokio_postgres::Config = url.parse()?;
    tenant_guard::postgres::support::apply(&pg_config, common::SCHEMA_SQL).await?;
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(config.db_pool_size)
        .runtime(PoolRuntime::Tokio1)
        .build()?)
}

/// The org named by the request (the `x-bench-org` header's bytes), if any.
fn org_of(value: Option<&[u8]>) -> Option<Uuid> {
    std::str::from_utf8(value?).ok()?.parse().ok()
}

/// `GET /projects` without the guard: a pooled connection, one prepared query.
async fn list(pool: &Pool, org: Uuid) -> Result<Vec<Project>, String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let statement = client
        .prepare_cached(LIST_SQL)
        .await
        .map_err(|e| e.to_string())?;
    let rows = client
        .query(&statement, &[&org])
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows.iter().map(Project::from).collect())
}

mod axum_app {
    use axum::Json;
    use axum::extract::{DefaultBodyLimit, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use deadpool_postgres::Pool;
    use tenant_guard::axum::RequestTracingLayer;

    async fn projects(State(pool): State<Pool>, headers: HeaderMap) -> Response {
        let Some(org) = super::org_of(headers.get(super::ORG_HEADER).map(|v| v.as_bytes())) else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        match super::list(&pool, org).await {
            Ok(projects) => Json(projects).into_response(),
            Err(error) => {
                tracing::warn!(%error, "database error");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }

    pub(super) async fn serve(
        listener: std::net::TcpListener,
        pool: Pool,
    ) -> Result<(), super::common::StartError> {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let router = axum::Router::new()
            .route("/projects", get(projects))
            .with_state(pool)
            .route(
                "/healthz",
                get(|| async { Json(serde_json::json!({"status": "ok"})) }),
            )
            .layer(DefaultBodyLimit::max(64 * 1024))
            .layer(RequestTracingLayer::new());
        let addr = listener.local_addr()?;
        super::common::announce(addr);
        axum::serve(listener, router)
            .with_graceful_shutdown(super::common::shutdown_signal())
            .await?;
        Ok(())
    }
}

mod actix_app {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    use deadpool_postgres::Pool;
    use tenant_guard::actix::RequestTracing;

    async fn projects(pool: web::Data<Pool>, req: HttpRequest) -> HttpResponse {
        let Some(org) = super::org_of(req.headers().get(super::ORG_HEADER).map(|v| v.as_bytes()))
        else {
            return HttpResponse::BadRequest().finish();
        };
        match super::list(&pool, org).await {
            Ok(projects) => HttpResponse::Ok().json(projects),
            Err(error) => {
                tracing::warn!(%error, "database error");
                HttpResponse::InternalServerError().finish()
            }
        }
    }

    pub(super) async fn serve(
        listener: std::net::TcpListener,
        pool: Pool,
    ) -> Result<(), super::common::StartError> {
        let addr = listener.local_addr()?;
        let pool = web::Data::new(pool);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(RequestTracing::new())
                .app_data(pool.clone())
                .app_data(web::JsonConfig::default().limit(64 * 1024))
                .route("/projects", web::get().to(projects))
                .route(
                    "/healthz",
                    web::get().to(|| async {
                        HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
                    }),
                )
        })
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(async move {
            super::common::shutdown_signal().await;
            handle.stop(true).await;
        });
        super::common::announce(addr);
        server.await?;
        Ok(())
    }
}

/// Reads the configuration and checks the opt-in, then builds the pool on `runtime`'s executor.
fn prepare() -> Result<(common::Config, Framework, std::net::TcpListener), common::StartError> {
    let config = common::Config::from_env()?;
    common::init_logging(config.log_format);
    let framework = check_opt_in(&config)?;
    tracing::warn!("UNGUARDED BENCHMARK BASELINE: no authentication, no tenant scoping");
    let listener = common::bind(config.bind)?;
    Ok((config, framework, listener))
}

fn main() -> ExitCode {
    let (config, framework, listener) = match prepare() {
        Ok(ready) => ready,
        Err(error) => return common::fail(&error),
    };
    let served = match framework {
        // The same runtimes as `#[tokio::main]` and `#[actix_web::main]` in the reference apps.
        Framework::Axum => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(common::StartError::from)
            .and_then(|rt| {
                rt.block_on(async {
                    let pool = raw_pool(&config).await?;
                    axum_app::serve(listener, pool).await
                })
            }),
        Framework::Actix => actix_web::rt::System::new().block_on(async {
            let pool = raw_pool(&config).await?;
            actix_app::serve(listener, pool).await
        }),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => common::fail(&error),
    }
}
