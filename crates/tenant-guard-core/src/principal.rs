//! The verified identity handed on to the guard, and the separate identity of background jobs.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::org_id::{OrgId, OrgIdKind};
use crate::role::Role;

/// A verified identity: produced only by [`crate::Verifier`] from a token that passed every check
/// (or by [`ServiceContext::org_principal`], the named path for jobs acting for one org).
///
/// Cheap to clone (one `Arc`). `Debug` shows the ids and the role but never the claims.
///
/// ```
/// # fn demo(principal: &tenant_guard_core::Principal) {
/// println!("{} of org {} as {}", principal.user_id(), principal.org_id(), principal.role());
/// # }
/// ```
#[derive(Clone)]
pub struct Principal(Arc<Inner>);

struct Inner {
    user_id: Box<str>,
    org_id: OrgId,
    /// The kind of org its issuer is configured with (what a request choosing its org must name).
    org_kind: OrgIdKind,
    role: Role,
    claims_json: Box<str>,
    expires_at: u64,
    /// Whether the claims' top-level `role` and `sub` say what `role` and `user_id` say (see
    /// [`Principal::claims_agree`]); worked out on first use.
    claims_agree: OnceLock<bool>,
}

impl Principal {
    /// Built by the verifier once every check passed. `claims_json` is the verified payload.
    pub(crate) fn from_verified(
        user_id: Box<str>,
        org_id: OrgId,
        org_kind: OrgIdKind,
        role: Role,
        claims_json: Box<str>,
        expires_at: u64,
    ) -> Self {
        Self(Arc::new(Inner {
            user_id,
            org_id,
            org_kind,
            role,
            claims_json,
            expires_at,
            claims_agree: OnceLock::new(),
        }))
    }

    /// The same user, claims and expiry in `org_id` as `role` (for [`crate::PendingOrg`]).
    pub(crate) fn with_org_and_role(&self, org_id: OrgId, role: Role) -> Self {
        Self(Arc::new(Inner {
            user_id: self.0.user_id.clone(),
            org_id,
            org_kind: self.0.org_kind,
            role,
            claims_json: self.0.claims_json.clone(),
            expires_at: self.0.expires_at,
            claims_agree: OnceLock::new(),
        }))
    }

    /// The principal of a request **without a token** on a route group that opted into
    /// anonymous access (tenant-guard-http's `allow_anonymous`): `role` (normally `anon`), no
    /// user (`sub` is empty), no org ([`OrgId::NIL`]: its transaction sets `tenant_guard.org_id`
    /// to `''`, so `tenant_guard.org_id()` is `NULL`), claims `{"role": role}`. Row Level
    /// Security decides what it sees.
    ///
    /// ```
    /// let anon = tenant_guard_core::Principal::anonymous(tenant_guard_core::Role::new("anon")?);
    /// assert_eq!((anon.user_id(), anon.role().as_str()), ("", "anon"));
    /// assert!(anon.org_id().is_nil());
    /// # Ok::<(), tenant_guard_core::InvalidRole>(())
    /// ```
    pub fn anonymous(role: Role) -> Self {
        let claims = serde_json::json!({ "role": role.as_str() });
        Self::from_verified(
            "".into(),
            OrgId::NIL,
            OrgIdKind::default(),
            role,
            claims.to_string().into_boxed_str(),
            u64::MAX,
        )
    }

    /// Whether this principal still needs its org (verified from an issuer whose org is chosen
    /// per request): never true for a principal handed out by [`crate::Verifier::authenticate`].
    pub(crate) fn needs_org(&self) -> bool {
        self.0.org_id.is_nil()
    }

    /// The user id: the token's `sub`.
    pub fn user_id(&self) -> &str {
        &self.0.user_id
    }

    /// The organisation (tenant) id, from the configured org claim (or, for a token that names
    /// none, the org the request chose and the membership check confirmed). Of the kind its
    /// issuer is configured with ([`crate::IssuerProfile::org_id_kind`]).
    ///
    /// ```
    /// use tenant_guard_core::{OrgId, Role, ServiceContext};
    ///
    /// let p = ServiceContext::new("doc").org_principal(42_i64, Role::new("authenticated")?);
    /// assert_eq!(p.org_id(), &OrgId::Int(42));
    /// # Ok::<(), tenant_guard_core::InvalidRole>(())
    /// ```
    pub fn org_id(&self) -> &OrgId {
        &self.0.org_id
    }

    /// The kind of org id its issuer is configured with: what a request that chooses its org
    /// must name.
    pub fn org_id_kind(&self) -> OrgIdKind {
        self.0.org_kind
    }

    /// The Postgres role the request runs as; always in the verifier's allowlist.
    pub fn role(&self) -> &Role {
        &self.0.role
    }

    /// The full verified claims as a JSON object, as set into `request.jwt.claims`.
    pub fn claims_json(&self) -> &str {
        &self.0.claims_json
    }

    /// Parses the claims into a `serde_json::Value` (allocates; not for the hot path).
    pub fn claims(&self) -> serde_json::Value {
        serde_json::from_str(&self.0.claims_json).unwrap_or(serde_json::Value::Null)
    }

    /// The token's `exp`, in seconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.0.expires_at
    }

    /// Whether the claims' top-level `role` is [`role`](Self::role) and their `sub` is
    /// [`user_id`](Self::user_id) (an absent `sub` counts as the empty user id): then
    /// `auth.role()` and `auth.uid()` read from `request.jwt.claims` alone answer the role in
    /// force and the user, and the guard need not set `request.jwt.claim.role` and
    /// `request.jwt.claim.sub`. `false` when the role came from elsewhere (a default role, a
    /// role rule on another claim, an org membership), when a key is repeated or not a string.
    ///
    /// Parsed once per principal (the token cache keeps principals), not per transaction.
    ///
    /// ```
    /// let anon = tenant_guard_core::Principal::anonymous(tenant_guard_core::Role::new("anon")?);
    /// assert!(anon.claims_agree());
    /// # Ok::<(), tenant_guard_core::InvalidRole>(())
    /// ```
    pub fn claims_agree(&self) -> bool {
        *self.0.claims_agree.get_or_init(|| {
            claims_agree(&self.0.claims_json, self.0.role.as_str(), &self.0.user_id)
        })
    }
}

/// The two top-level claims `auth.role()` and `auth.uid()` read; every other key is skipped.
/// serde refuses a repeated key, so a document whose keys Postgres would read differently (jsonb
/// keeps the last of repeated keys) never agrees.
#[derive(serde::Deserialize)]
struct RoleAndSub<'a> {
    #[serde(default, borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    sub: Option<Cow<'a, str>>,
}

fn claims_agree(claims_json: &str, role: &str, user_id: &str) -> bool {
    match serde_json::from_str::<RoleAndSub<'_>>(claims_json) {
        Ok(top) => top.role.as_deref() == Some(role) && top.sub.as_deref().unwrap_or("") == user_id,
        Err(_) => false,
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("user_id", &self.0.user_id)
            .field("org_id", &self.0.org_id)
            .field("role", &self.0.role)
            .field("expires_at", &self.0.expires_at)
            .field("claims", &"<redacted>")
            .finish()
    }
}

/// The identity of a background job: named in code, never derived from a request.
///
/// There is no conversion from a token, a header or a [`Principal`]: a `ServiceContext` exists only
/// where a developer wrote `ServiceContext::new("reason")` with a `'static` reason. The guard crate
/// uses it for the audited service-role path and for jobs that act for one org under RLS.
///
/// ```
/// use tenant_guard_core::ServiceContext;
///
/// let job = ServiceContext::new("nightly-invoice-run").with_job_id("job-42");
/// assert_eq!(job.reason(), "nightly-invoice-run");
/// assert_eq!(job.job_id(), Some("job-42"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceContext {
    reason: &'static str,
    job_id: Option<Box<str>>,
}

impl ServiceContext {
    /// A job identity with a reason that appears in every audit event.
    pub fn new(reason: &'static str) -> Self {
        Self {
            reason,
            job_id: None,
        }
    }

    /// Attaches a job id for the audit trail.
    #[must_use]
    pub fn with_job_id(mut self, job_id: impl Into<String>) -> Self {
        self.job_id = Some(job_id.into().into_boxed_str());
        self
    }

    /// Why the job runs.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The job id, if one was attached.
    pub fn job_id(&self) -> Option<&str> {
        self.job_id.as_deref()
    }

    /// A principal that acts for `org_id` with `role`, exactly as a user of that org would (under
    /// RLS). Its `sub` is `service:<reason>` and its claims say so, so audit triggers can tell.
    pub fn org_principal(&self, org_id: impl Into<OrgId>, role: Role) -> Principal {
        let org_id = org_id.into();
        let sub = format!("service:{}", self.reason);
        let claims = serde_json::json!({
            "sub": sub,
            "role": role.as_str(),
            "org_id": org_id,
            "service_reason": self.reason,
            "job_id": self.job_id.as_deref(),
        });
        let org_kind = org_id.kind();
        Principal::from_verified(
            sub.into_boxed_str(),
            org_id,
            org_kind,
            role,
            claims.to_string().into_boxed_str(),
            u64::MAX,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn debug_never_shows_claims() {
        let p = Principal::from_verified(
            "user-1".into(),
            OrgId::NIL,
            OrgIdKind::Uuid,
            Role::new("authenticated").unwrap(),
            r#"{"email":"secret@example.com"}"#.into(),
            1,
        );
        let dbg = format!("{p:?}");
        assert!(dbg.contains("user-1"));
        assert!(!dbg.contains("secret@example.com"));
    }

    #[test]
    fn claims_agree_only_when_role_and_sub_match_at_the_top_level() {
        let role = Role::new("authenticated").unwrap();
        let p = |claims: &str, role: &Role, sub: &str| {
            Principal::from_verified(
                sub.into(),
                OrgId::NIL,
                OrgIdKind::Uuid,
                role.clone(),
                claims.into(),
                0,
            )
        };
        let agree = [
            r#"{"sub":"u1","role":"authenticated","email":"a@b"}"#,
            r#"{"role":"auth\u0065nticated","sub":"u1"}"#,
        ];
        for claims in agree {
            assert!(p(claims, &role, "u1").claims_agree(), "{claims}");
        }
        let disagree = [
            r#"{"sub":"u1"}"#,
            r#"{"sub":"u1","role":"anon"}"#,
            r#"{"sub":"u2","role":"authenticated"}"#,
            r#"{"role":"authenticated"}"#,
            r#"{"sub":"u1","role":"anon","role":"authenticated"}"#,
            r#"{"sub":"u1","role":["authenticated"]}"#,
            r#"{"sub":"u1","app_metadata":{"role":"authenticated"}}"#,
            "not json",
        ];
        for claims in disagree {
            assert!(!p(claims, &role, "u1").claims_agree(), "{claims}");
        }
        // A membership role differs from the token's.
        let member =
            p(agree[0], &role, "u1").with_org_and_role(OrgId::NIL, Role::new("org_admin").unwrap());
        assert!(!member.claims_agree());
        let job = ServiceContext::new("nightly").org_principal(Uuid::nil(), role);
        assert!(job.claims_agree());
    }

    #[test]
    fn org_principal_is_scoped_to_its_org() {
        let org = Uuid::from_u128(7);
        let p = ServiceContext::new("reindex")
            .with_job_id("j1")
            .org_principal(org, Role::new("authenticated").unwrap());
        assert_eq!(p.org_id(), org);
        assert_eq!(p.org_id_kind(), OrgIdKind::Uuid);
        assert_eq!(p.user_id(), "service:reindex");
        assert_eq!(p.claims()["org_id"], org.to_string());
        assert_eq!(p.claims()["job_id"], "j1");
        let p = ServiceContext::new("reindex").org_principal(
            OrgId::text("acme").unwrap(),
            Role::new("authenticated").unwrap(),
        );
        assert_eq!(p.claims()["org_id"], "acme");
        assert_eq!(p.org_id_kind(), OrgIdKind::Text);
    }
}
