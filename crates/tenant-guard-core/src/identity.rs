//! A verified identity whose org may still have to be chosen: the hand-off to a request pipeline
//! that picks the active org per request (a header, a path segment) and checks membership before
//! it scopes anything.
//!
//! Only issuer profiles configured with [`crate::IssuerProfile::org_from_request`] produce
//! [`Identity::NeedsOrg`]; everything else is [`Identity::Org`], exactly what
//! [`crate::Verifier::authenticate`] returns.

use std::fmt;

use crate::org_id::{InvalidOrgId, OrgId, OrgIdKind};
use crate::principal::Principal;
use crate::role::Role;

/// What [`crate::Verifier::authenticate_identity`] found in a verified token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Identity {
    /// The token names its org: a principal ready to scope.
    Org(Principal),
    /// A verified user whose token names no org: the org must come from the request and be
    /// checked (membership) before [`PendingOrg::into_member`] makes a principal of it.
    NeedsOrg(PendingOrg),
}

/// A verified user without an org yet. It cannot scope anything: it has no `org_id`.
///
/// ```
/// use tenant_guard_core::{Environment, Identity, IssuerProfile, Role, Verifier};
///
/// let verifier = Verifier::builder(Environment::Production)
///     .add_issuer(
///         IssuerProfile::new("https://idp.example/")
///             .hmac_secret("a-long-random-secret-from-your-vault")
///             .org_from_request(true),
///     )
///     .build()?;
/// # let headers = http::HeaderMap::new();
/// match verifier.authenticate_identity(&headers) {
///     Ok(Identity::Org(principal)) => { /* scope to principal.org_id() */ }
///     Ok(Identity::NeedsOrg(pending)) => {
///         // The org from `x-org-id`, then a membership lookup for (pending.user_id(), org)...
///         # let role = Role::new("authenticated").unwrap();
///         // Parsed with the issuer's org id kind (UUID here, the default):
///         let org = pending.parse_org("7d0a3d39-3a4b-4c49-9a41-5bd2f1a1f0aa")?;
///         let principal = pending.into_member(org, role);
///     }
///     Ok(_) => {}
///     Err(e) => { /* 401/403 as usual */ }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct PendingOrg(pub(crate) Principal);

impl PendingOrg {
    /// The user of a principal whose token named its org, that org set aside: for a pipeline in
    /// which the token's org is only a default and the request may name another one (checked by
    /// membership before [`PendingOrg::into_member`], like a token that names no org). The
    /// claims stay the token's, its org claim included: policies must read the chosen org from
    /// the scoping (`tenant_guard.org_id()`), not from the claims.
    ///
    /// ```
    /// # fn demo(principal: tenant_guard_core::Principal) {
    /// let pending = tenant_guard_core::PendingOrg::from_principal(principal);
    /// # let _ = pending; }
    /// ```
    pub fn from_principal(principal: Principal) -> Self {
        Self(principal)
    }

    /// The user id: the token's `sub`.
    pub fn user_id(&self) -> &str {
        self.0.user_id()
    }

    /// The role the token's role rules gave (a default role, when configured and the token named
    /// none); a membership lookup may replace it in [`PendingOrg::into_member`].
    pub fn token_role(&self) -> &Role {
        self.0.role()
    }

    /// The full verified claims as a JSON object.
    pub fn claims_json(&self) -> &str {
        self.0.claims_json()
    }

    /// The token's `exp`, in seconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.0.expires_at()
    }

    /// The kind of org id its issuer is configured with
    /// ([`crate::IssuerProfile::org_id_kind`]): what the request must name.
    pub fn org_id_kind(&self) -> OrgIdKind {
        self.0.org_id_kind()
    }

    /// Parses an org the request names (a header value, a path segment) with
    /// [`PendingOrg::org_id_kind`]: a value of another kind is an error.
    pub fn parse_org(&self, text: &str) -> Result<OrgId, InvalidOrgId> {
        self.org_id_kind().parse(text)
    }

    /// The principal of this user acting in `org_id` as `role`.
    ///
    /// **Call it only after checking that the user is a member of `org_id`** (the org came from
    /// the request, which is not identity) and that `role` is what that membership grants. The
    /// claims stay the token's (they name no org).
    pub fn into_member(self, org_id: impl Into<OrgId>, role: Role) -> Principal {
        self.0.with_org_and_role(org_id.into(), role)
    }
}

impl fmt::Debug for PendingOrg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingOrg")
            .field("user_id", &self.user_id())
            .field("token_role", self.token_role())
            .field("org_id_kind", &self.org_id_kind())
            .field("expires_at", &self.expires_at())
            .field("claims", &"<redacted>")
            .finish()
    }
}
