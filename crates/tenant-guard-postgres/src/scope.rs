//! What a transaction is scoped to, and the one statement that scopes it.

use tenant_guard_core::{Principal, Role, ServiceContext};
use uuid::Uuid;

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
pub(crate) const SCOPE_SQL: &str = "SELECT FROM (SELECT \
    pg_catalog.set_config('role', $1, true), \
    pg_catalog.set_config('request.jwt.claims', $2, true), \
    pg_catalog.set_config('request.jwt.claim.sub', $3, true), \
    pg_catalog.set_config('request.jwt.claim.role', $1, true), \
    pg_catalog.set_config('tenant_guard.org_id', $4, true), \
    pg_catalog.set_config('tenant_guard.request_id', $5, true)) AS scoped";

/// Whose transaction this is.
#[derive(Debug, Clone)]
pub(crate) enum Identity {
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

/// Everything the scoping statement needs, owned by the transaction.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub(crate) identity: Identity,
    pub(crate) request_id: Option<Box<str>>,
}

impl Scope {
    pub(crate) fn principal(principal: &Principal, request_id: Option<Box<str>>) -> Self {
        Self {
            identity: Identity::Principal(principal.clone()),
            request_id,
        }
    }

    /// The service-role identity: claims in Supabase's shape (`role`), plus the reason and job id
    /// so audit triggers can tell who acted. No `sub`, no org.
    pub(crate) fn service(
        context: &ServiceContext,
        role: Role,
        request_id: Option<Box<str>>,
    ) -> Self {
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

    pub(crate) fn role(&self) -> &Role {
        match &self.identity {
            Identity::Principal(p) => p.role(),
            Identity::Service { role, .. } => role,
        }
    }

    pub(crate) fn org_id(&self) -> Option<Uuid> {
        match &self.identity {
            Identity::Principal(p) => Some(p.org_id()),
            Identity::Service { .. } => None,
        }
    }

    pub(crate) fn service_reason(&self) -> Option<&'static str> {
        match &self.identity {
            Identity::Principal(_) => None,
            Identity::Service { reason, .. } => Some(reason),
        }
    }

    /// The job id of the service-role path, for its audit events.
    pub(crate) fn service_job_id(&self) -> Option<&str> {
        match &self.identity {
            Identity::Principal(_) => None,
            Identity::Service { job_id, .. } => job_id.as_deref(),
        }
    }

    /// The statement's parameter values, as text: role, claims, sub, org id, request id.
    /// Unset values are `''` (what an unset custom setting reads after a transaction anyway).
    pub(crate) fn values<'a>(&'a self, org_buf: &'a mut [u8; 36]) -> [&'a str; 5] {
        let (role, claims, sub) = match &self.identity {
            Identity::Principal(p) => (p.role().as_str(), p.claims_json(), p.user_id()),
            Identity::Service { role, claims, .. } => (role.as_str(), &**claims, ""),
        };
        let org = match self.org_id() {
            Some(org) => &*org.hyphenated().encode_lower(org_buf),
            None => "",
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
        let org = Uuid::from_u128(0x1234);
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
}
