//! Extractors: the verified principal and the request id.

use std::ops::Deref;

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use tenant_guard_core::{Principal, RequestId};

use crate::rejection::TenantGuardRejection;
use crate::service::GuardContext;

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
