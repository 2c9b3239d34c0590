//! The guard in front of a tonic gRPC server: the same tower layer, the same verification and
//! scoped transactions, refusals as gRPC statuses (401 → `UNAUTHENTICATED`, 403 →
//! `PERMISSION_DENIED`, 429 → `RESOURCE_EXHAUSTED`, 503 → `UNAVAILABLE`).
//!
//!     APP_ENV=development cargo run --example grpc_tonic
//!
//! starts a throwaway PostgreSQL (as the reference apps do, same variables), prints demo tokens,
//! and serves `projects.Projects/Me` and `projects.Projects/List` over HTTP/2 (`grpcurl
//! -plaintext -H "authorization: Bearer $TOKEN" 127.0.0.1:3000 projects.Projects/List` works
//! with the message shapes below).
//!
//! A real service would generate the service glue with `tonic-build` from a `.proto`; this one
//! writes the few lines it would generate (the messages with prost's derive, the dispatch on the
//! method name), so it builds without `protoc`.

#[path = "common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};

use tenant_guard::ToErrorResponse;
use tenant_guard::http::{ReadOnly, RequestContext, RequestTracingLayer, TenantGuardLayer, grpc};
use tonic::body::Body;
use tonic::server::{Grpc, NamedService};
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;

/// `projects.Empty`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

/// `projects.Me`: the caller as the verified token names it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Me {
    #[prost(string, tag = "1")]
    pub user_id: String,
    #[prost(string, tag = "2")]
    pub org_id: String,
    #[prost(string, tag = "3")]
    pub role: String,
}

/// `projects.Project`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Project {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub name: String,
}

/// `projects.ProjectList`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProjectList {
    #[prost(message, repeated, tag = "1")]
    pub projects: Vec<Project>,
}

/// Any error of the guard (a refused statement, an exhausted pool) as a gRPC status, with the
/// code the tower layer uses for its own refusals.
fn status(error: &impl ToErrorResponse) -> Status {
    let response = error.to_error_response();
    Status::new(
        Code::from(i32::from(grpc::code(response.status()))),
        response.message(),
    )
}

/// The request's context, put there by the guard.
fn context<T>(request: &Request<T>) -> Result<&RequestContext, Status> {
    RequestContext::from_extensions(request.extensions()).map_err(|e| status(&e))
}

async fn me(request: Request<Empty>) -> Result<Response<Me>, Status> {
    let principal = context(&request)?.principal();
    Ok(Response::new(Me {
        user_id: principal.user_id().to_owned(),
        org_id: principal.org_id().to_string(),
        role: principal.role().as_str().to_owned(),
    }))
}

async fn list(request: Request<Empty>) -> Result<Response<ProjectList>, Status> {
    let db = context(&request)?
        .db::<ReadOnly>()
        .map_err(|e| status(&e))?;
    // No `WHERE org_id = …`: Row Level Security lets only the caller's org through.
    let rows = db
        .query(
            "SELECT id::text, name FROM projects ORDER BY created_at, id",
            &[],
        )
        .await
        .map_err(|e| status(&e))?;
    let projects = rows
        .iter()
        .map(|r| Project {
            id: r.get(0),
            name: r.get(1),
        })
        .collect();
    Ok(Response::new(ProjectList { projects }))
}

/// The service `projects.Projects` (what `tonic-build` would generate).
#[derive(Clone, Default)]
struct Projects;

impl NamedService for Projects {
    const NAME: &'static str = "projects.Projects";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<Body>> for Projects {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            let response = match request.uri().path() {
                "/projects.Projects/Me" => {
                    let mut grpc = Grpc::new(ProstCodec::<Me, Empty>::default());
                    grpc.unary(tower::service_fn(me), request).await
                }
                "/projects.Projects/List" => {
                    let mut grpc = Grpc::new(ProstCodec::<ProjectList, Empty>::default());
                    grpc.unary(tower::service_fn(list), request).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(response)
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut app = match common::App::start().await {
        Ok(app) => app,
        Err(error) => return common::fail(&error),
    };
    let listener = match app.take_listener().map(tokio::net::TcpListener::from_std) {
        Some(Ok(listener)) => listener,
        Some(Err(error)) => return common::fail(&error.into()),
        None => return common::fail(&"the listener was already taken".into()),
    };
    let mut guard = TenantGuardLayer::new(app.verifier.clone()).pool(app.pool.clone());
    match common::rate_limiter(&app.config) {
        Ok(Some(limiter)) => guard = guard.rate_limit(limiter),
        Ok(None) => {}
        Err(error) => return common::fail(&error),
    }
    app.announce();
    let served = tonic::transport::Server::builder()
        .layer(RequestTracingLayer::new())
        .layer(guard)
        .add_service(Projects)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            common::shutdown_signal(),
        )
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => common::fail(&error.to_string().into()),
    }
}
