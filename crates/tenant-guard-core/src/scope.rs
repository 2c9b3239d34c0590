//! What a scoped transaction is scoped to, and the one statement that scopes it: shared by every
//! database backend (`tenant-guard-postgres` over tokio-postgres, `tenant-guard-sqlx` over sqlx),
//! so the two cannot drift. Backends run [`SCOPE_SQL`] with [`Scope::values`] as its five text
//! parameters right after `BEGIN` (or `BEGIN READ ONLY` when [`ScopeOptions::is_read_only`]).
//!
//! ```
//! use tenant_guard_core::scope::{SCOPE_SQL, Scope, ScopeOptions};
//! use tenant_guard_core::{Role, ServiceContext};
//!
//! let job = ServiceContext::new("nightly");
//! let scope = Scope::service(&job, Role::new("service_role").unwrap(), None);
//! let mut buf = [0u8; 36];
//! let [role, _claims, sub, org, request_id] = scope.values(&mut buf);
//! assert_eq!((role, sub, org, request_id), ("service_role", "", "", ""));
//! assert!(SCOPE_SQL.contains("set_config('role', $1, true)"));
//! assert!(!ScopeOptions::default().is_read_only());
//! ```

use std::fmt;

use crate::{OrgId, Principal, Role, ServiceContext};

/// The scoping statement: every setting transaction-local (`is_local = true`), every value a
/// parameter. Prepared once per connection and sent pipelined behind `BEGIN`.
///
/// `role` is set first so a failure to switch (the login is not a member) aborts the
/// transaction before anything else runs. `request.jwt.claim.role` mirrors the role, as
/// PostgREST does, so `auth.role()` answers the role in force.
///
/// `set_config` is schema-qualified, so a function of that name earlier on a `search_path`
/// cannot stand in for it. The outer `SELECT` returns no columns: the server does not echo the
/// claims back (the inner, volatile calls are always evaluated; the planner neither flattens nor
/// prunes volatile subquery outputs). Measured with callgrind: 5 000 fewer server instructions per
/// transaction with a 1 KB token (`BENCHMARKS.md`).
pub const SCOPE_SQL: &str = "SELECT FROM (SELECT \
    pg_catalog.set_config('role', $1, true), \
    pg_catalog.set_config('request.jwt.claims', $2, true), \
    pg_catalog.set_config('request.jwt.claim.sub', $3, true), \
    pg_catalog.set_config('request.jwt.claim.role', $1, true), \
    pg_catalog.set_config('tenant_guard.org_id', $4, true), \
    pg_catalog.set_config('tenant_guard.request_id', $5, true)) AS scoped";

/// Whose transaction this is.
#[derive(Debug, Clone)]
enum Identity {
    /// A verified user (or a job acting for one org through [`ServiceContext::org_principal`]).
    Principal(Principal),
    /// The audited cross-org service path.
    Service {
        role: Role,
        claims: Box<str>,
        reason: &'static str,
        job_id: Option<Box<str>>,
    },
}

/// Everything the scoping statement needs, owned by the transaction: whose it is (a verified
/// principal, or the audited service path) and the request id.
#[derive(Debug, Clone)]
pub struct Scope {
    identity: Identity,
    request_id: Option<Box<str>>,
}

impl Scope {
    /// A verified user's scope (or a job acting for one org, from
    /// [`ServiceContext::org_principal`]).
    pub fn principal(principal: &Principal, request_id: Option<Box<str>>) -> Self {
        Self {
            identity: Identity::Principal(principal.clone()),
            request_id,
        }
    }

    /// The service-role identity: claims in Supabase's shape (`role`), plus the reason and job id
    /// so audit triggers can tell who acted. No `sub`, no org.
    pub fn service(context: &ServiceContext, role: Role, request_id: Option<Box<str>>) -> Self {
        let claims = serde_json::json!({
            "role": role.as_str(),
            "service_reason": context.reason(),
            "job_id": context.job_id(),
        });
        Self {
            identity: Identity::Service {
                role,
                claims: claims.to_string().into_boxed_str(),
                reason: context.reason(),
                job_id: context.job_id().map(Box::from),
            },
            request_id,
        }
    }

    /// The verified principal (a user, or a job acting for one org); `None` on the service-role
    /// path.
    pub fn user(&self) -> Option<&Principal> {
        match &self.identity {
            Identity::Principal(p) => Some(p),
            Identity::Service { .. } => None,
        }
    }

    /// The role the transaction switches to.
    pub fn role(&self) -> &Role {
        match &self.identity {
            Identity::Principal(p) => p.role(),
            Identity::Service { role, .. } => role,
        }
    }

    /// The org, `None` on the service-role path.
    pub fn org_id(&self) -> Option<&OrgId> {
        match &self.identity {
            Identity::Principal(p) => Some(p.org_id()),
            Identity::Service { .. } => None,
        }
    }

    /// The request id, if one was set.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The service-role path's reason, for its audit events.
    pub fn service_reason(&self) -> Option<&'static str> {
        match &self.identity {
            Identity::Principal(_) => None,
            Identity::Service { reason, .. } => Some(reason),
        }
    }

    /// The job id of the service-role path, for its audit events.
    pub fn service_job_id(&self) -> Option<&str> {
        match &self.identity {
            Identity::Principal(_) => None,
            Identity::Service { job_id, .. } => job_id.as_deref(),
        }
    }

    /// The statement's parameter values, as text: role, claims, sub, org id, request id.
    /// Unset values are `''` (what an unset custom setting reads after a transaction anyway).
    pub fn values<'a>(&'a self, org_buf: &'a mut [u8; 36]) -> [&'a str; 5] {
        let (role, claims, sub) = match &self.identity {
            Identity::Principal(p) => (p.role().as_str(), p.claims_json(), p.user_id()),
            Identity::Service { role, claims, .. } => (role.as_str(), &**claims, ""),
        };
        // The org's canonical text; no org (the service path, the anonymous principal's
        // `OrgId::NIL`) is `''`, so `tenant_guard.org_id()` is NULL and matches no row.
        let org = match self.org_id() {
            Some(org) if !org.is_nil() => org.encode(org_buf),
            _ => "",
        };
        [
            role,
            claims,
            sub,
            org,
            self.request_id.as_deref().unwrap_or(""),
        ]
    }
}

/// Longest request id kept in `tenant_guard.request_id` (longer ones are cut at a char boundary).
const MAX_REQUEST_ID_LEN: usize = 128;

/// Options of one scoped transaction: the request id to record and whether it only reads.
///
/// ```
/// use tenant_guard_core::RequestId;
/// use tenant_guard_core::scope::ScopeOptions;
///
/// let options = ScopeOptions::default()
///     .request_id(RequestId::generate())
///     .read_only(true);
/// assert!(options.is_read_only());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeOptions {
    request_id: Option<Box<str>>,
    read_only: bool,
    primary: bool,
}

impl ScopeOptions {
    /// Records `id` (a [`RequestId`](crate::RequestId), or any text) in the
    /// transaction-local setting `tenant_guard.request_id`, for audit triggers and logs.
    #[must_use]
    pub fn request_id(mut self, id: impl fmt::Display) -> Self {
        let mut id = id.to_string();
        if id.len() > MAX_REQUEST_ID_LEN {
            let mut end = MAX_REQUEST_ID_LEN;
            while !id.is_char_boundary(end) {
                end -= 1;
            }
            id.truncate(end);
        }
        self.request_id = Some(id.into_boxed_str());
        self
    }

    /// Opens the transaction `READ ONLY` (the database refuses writes in it). Its commit is sent
    /// without waiting for the answer: the connection's next user queues behind it, in order.
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Runs a read-only transaction on the primary even when the pool has read replicas (the
    /// tokio-postgres guard's `replica` module; the sqlx backend has one pool and ignores it): for
    /// a read that must see a write the replicas may not have replayed yet.
    #[must_use]
    pub fn primary(mut self, primary: bool) -> Self {
        self.primary = primary;
        self
    }

    /// Whether the transaction must run on the primary.
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// Whether the transaction is opened `READ ONLY`.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The request id, if one was set.
    pub fn get_request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The request id and the read-only flag, taken out (for the backend's [`Scope`]).
    pub fn into_parts(self) -> (Option<Box<str>>, bool) {
        (self.request_id, self.read_only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_transaction_local_and_parameterised() {
        assert_eq!(SCOPE_SQL.matches("set_config(").count(), 6);
        assert_eq!(SCOPE_SQL.matches(", true)").count(), 6);
        assert!(!SCOPE_SQL.to_lowercase().contains("set role"));
        // Role goes first.
        assert!(SCOPE_SQL.find("'role'") < SCOPE_SQL.find("'request.jwt.claims'"));
    }

    #[test]
    fn org_job_values_carry_the_org_and_service_values_do_not() {
        let org = uuid::Uuid::from_u128(0x1234);
        let job = ServiceContext::new("nightly").with_job_id("j-1");
        let scope = Scope::principal(
            &job.org_principal(org, Role::new("authenticated").unwrap()),
            Some("req-1".into()),
        );
        let mut buf = [0u8; 36];
        let [role, claims, sub, org_text, rid] = scope.values(&mut buf);
        assert_eq!(role, "authenticated");
        assert_eq!(sub, "service:nightly");
        assert_eq!(org_text, org.to_string());
        assert_eq!(rid, "req-1");
        assert!(claims.contains("nightly"));

        let service = Scope::service(&job, Role::new("service_role").unwrap(), None);
        let mut buf = [0u8; 36];
        let [role, claims, sub, org_text, rid] = service.values(&mut buf);
        assert_eq!(role, "service_role");
        assert_eq!((sub, org_text, rid), ("", "", ""));
        let claims: serde_json::Value = serde_json::from_str(claims).unwrap();
        assert_eq!(claims["role"], "service_role");
        assert_eq!(claims["service_reason"], "nightly");
        assert_eq!(claims["job_id"], "j-1");
        assert_eq!(service.service_reason(), Some("nightly"));
        assert_eq!(service.service_job_id(), Some("j-1"));
    }

    #[test]
    fn orgs_of_every_kind_render_canonically_and_no_org_renders_empty() {
        let job = ServiceContext::new("nightly");
        let role = || Role::new("authenticated").unwrap();
        for (org, text) in [
            (OrgId::Int(-42), "-42"),
            (OrgId::Int(i64::MIN), "-9223372036854775808"),
            (OrgId::text("acme-corp").unwrap(), "acme-corp"),
            (OrgId::NIL, ""),
        ] {
            let scope = Scope::principal(&job.org_principal(org, role()), None);
            let mut buf = [0u8; 36];
            assert_eq!(scope.values(&mut buf)[3], text);
        }
        let anon = Scope::principal(&Principal::anonymous(Role::new("anon").unwrap()), None);
        let mut buf = [0u8; 36];
        assert_eq!(anon.values(&mut buf)[3], "");
    }

    #[test]
    fn long_request_ids_are_cut_at_a_char_boundary() {
        let id = format!("{}é", "a".repeat(MAX_REQUEST_ID_LEN - 1));
        let o = ScopeOptions::default().request_id(&id);
        assert_eq!(
            o.get_request_id(),
            Some(&*"a".repeat(MAX_REQUEST_ID_LEN - 1))
        );
    }

    #[test]
    fn defaults_are_read_write_without_id() {
        let o = ScopeOptions::default();
        assert!(!o.is_read_only());
        assert_eq!(o.get_request_id(), None);
    }
}
