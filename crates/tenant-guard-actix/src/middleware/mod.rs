//! The [`TenantGuard`] middleware: actix-web's `Transform` (configuration) and its service, which
//! runs the shared pipeline around the inner service.

mod service;
mod transform;

pub use service::TenantGuardMiddleware;
pub use transform::TenantGuard;
