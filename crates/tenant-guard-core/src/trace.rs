//! Tracing helpers: a request span with the fields every log line of a request should carry.
//!
//! Adapters open the span when a request arrives and record the principal once it is verified;
//! the span never holds a token or claims.
//!
//! ```
//! use tenant_guard_core::{trace, RequestId};
//!
//! let span = trace::request_span(&RequestId::generate());
//! let _entered = span.enter();
//! // ... authenticate, then: trace::record_principal(&span, &principal);
//! ```

use tracing::Span;
use tracing::field::Empty;

use crate::principal::Principal;
use crate::request_id::RequestId;

/// An `info`-level span named `request` with `request_id` set and `org_id`, `user_id` and `role`
/// left empty for [`record_principal`].
pub fn request_span(request_id: &RequestId) -> Span {
    tracing::info_span!(
        "request",
        request_id = %request_id,
        org_id = Empty,
        user_id = Empty,
        role = Empty,
    )
}

/// Records the verified identity on `span` (any span with `org_id`, `user_id` and `role` fields).
pub fn record_principal(span: &Span, principal: &Principal) {
    span.record("org_id", tracing::field::display(principal.org_id()));
    span.record("user_id", principal.user_id());
    span.record("role", principal.role().as_str());
}
