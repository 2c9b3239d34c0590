//! Development-only conveniences, each behind a `dangerous_` builder method.
//!
//! Two things exist only for a developer's machine:
//!
//! - [`VerifierBuilder::dangerous_accept_unverified_tokens`]: tokens are decoded **without checking
//!   their signature** (every claim rule still applies). For a local identity provider whose key
//!   you do not have.
//! - [`VerifierBuilder::dangerous_demo_principal`]: a request that sends **no token at all** is
//!   treated as a fixed demo user. A request that sends a bad token is still rejected.
//!
//! Both are refused with [`AuthError::InsecureConfig`] when the verifier is built for any
//! environment but [`Environment::Development`] — a build error, not a warning — and each use
//! logs a warning. Nothing here reads an identity from a header.
//!
//! ```
//! use tenant_guard_core::{AuthError, DemoPrincipal, Environment, Verifier};
//!
//! let demo = DemoPrincipal::new("demo-user", "7d0a3d39-3a4b-4c49-9a41-5bd2f1a1f0aa".parse::<uuid::Uuid>().unwrap());
//! let dev = Verifier::builder(Environment::Development)
//!     .dangerous_demo_principal(demo.clone())
//!     .build()
//!     .unwrap();
//! let p = dev.authenticate(&http::HeaderMap::new()).unwrap();
//! assert_eq!(p.user_id(), "demo-user");
//!
//! let prod = Verifier::builder(Environment::Production)
//!     .hmac_secret("a-long-random-secret-from-your-vault")
//!     .dangerous_demo_principal(demo)
//!     .build();
//! assert!(matches!(prod, Err(AuthError::InsecureConfig(_))));
//! ```
//!
//! [`VerifierBuilder::dangerous_accept_unverified_tokens`]: crate::VerifierBuilder::dangerous_accept_unverified_tokens
//! [`VerifierBuilder::dangerous_demo_principal`]: crate::VerifierBuilder::dangerous_demo_principal
//! [`AuthError::InsecureConfig`]: crate::AuthError::InsecureConfig
//! [`Environment::Development`]: crate::Environment::Development

use crate::claims::ClaimPath;
use crate::org_id::OrgId;
use crate::principal::Principal;
use crate::role::Role;

/// The fixed identity used in development when a request sends no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoPrincipal {
    pub(crate) user_id: String,
    pub(crate) org_id: OrgId,
    pub(crate) role: Option<String>,
}

impl DemoPrincipal {
    /// A demo user of `org_id`, with the verifier's first allowed role.
    pub fn new(user_id: impl Into<String>, org_id: impl Into<OrgId>) -> Self {
        Self {
            user_id: user_id.into(),
            org_id: org_id.into(),
            role: None,
        }
    }

    /// Uses `role` (which must be in the verifier's allowlist) instead of the first allowed role.
    #[must_use]
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// The principal, with claims shaped like a real token's (org and role at their paths).
    pub(crate) fn to_principal(
        &self,
        role: Role,
        org_path: &ClaimPath,
        role_path: &ClaimPath,
        audience: &str,
    ) -> Principal {
        let mut claims = serde_json::json!({
            "sub": self.user_id,
            "aud": audience,
            "exp": DEMO_EXP,
            "tenant_guard_demo": true,
        });
        set_path(
            &mut claims,
            org_path.segments(),
            serde_json::json!(self.org_id),
        );
        set_path(&mut claims, role_path.segments(), role.as_str().into());
        Principal::from_verified(
            self.user_id.clone().into_boxed_str(),
            self.org_id.clone(),
            self.org_id.kind(),
            role,
            claims.to_string().into_boxed_str(),
            DEMO_EXP,
        )
    }
}

/// The demo principal never expires (year 2100).
const DEMO_EXP: u64 = 4_102_444_800;

/// Sets `value` at `path` in the object `root`, creating objects on the way.
fn set_path(root: &mut serde_json::Value, path: &[Box<str>], value: serde_json::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = root;
    for seg in parents {
        if !at.get(&**seg).is_some_and(serde_json::Value::is_object) {
            at[&**seg] = serde_json::json!({});
        }
        at = &mut at[&**seg];
    }
    at[&**last] = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_claims_put_org_and_role_at_their_paths() {
        let org = uuid::Uuid::from_u128(42);
        let p = DemoPrincipal::new("demo", org).to_principal(
            Role::new("authenticated").unwrap(),
            &ClaimPath::parse("app_metadata.org_id", "org").unwrap(),
            &ClaimPath::parse("app_metadata.role", "role").unwrap(),
            "authenticated",
        );
        let claims = p.claims();
        assert_eq!(claims["app_metadata"]["org_id"], org.to_string());
        assert_eq!(claims["app_metadata"]["role"], "authenticated");
        assert_eq!(claims["sub"], "demo");
        assert_eq!(claims["tenant_guard_demo"], true);
        assert_eq!(p.org_id(), org);
        assert_eq!(p.expires_at(), DEMO_EXP);
    }
}
