//! What a scoped transaction is scoped to, and the one statement that scopes it: shared by every
//! database backend (`tenant-guard-postgres` over tokio-postgres, `tenant-guard-sqlx` over sqlx),
//! so the two cannot drift.
//!
//! By default a transaction sets three transaction-local settings: `role`, `request.jwt.claims`
//! and `tenant_guard.org_id` ([`SCOPE_SQL`]). `auth.uid()`, `auth.role()` and `auth.jwt()`
//! (Supabase's definitions, and the support SQL's) read the claims when the per-claim settings are
//! unset. [`ScopeSettings`] opts into the legacy per-claim settings `request.jwt.claim.sub` and
//! `request.jwt.claim.role` (for policies and triggers that read them directly) and into
//! `tenant_guard.request_id` (for audit triggers). [`Scope::shape`] picks the statement of one
//! transaction and [`Shape::params`] its parameters.
//!
//! ```
//! use tenant_guard_core::scope::{SCOPE_SQL, Scope, ScopeOptions, ScopeSettings};
//! use tenant_guard_core::{Role, ServiceContext};
//!
//! let job = ServiceContext::new("nightly");
//! let scope = Scope::service(&job, Role::new("service_role").unwrap(), None);
//! let mut buf = [0u8; 36];
//! let [role, _claims, sub, org, request_id] = scope.values(&mut buf);
//! assert_eq!((role, sub, org, request_id), ("service_role", "", "", ""));
//!
//! let shape = scope.shape(ScopeSettings::default());
//! assert_eq!(shape.sql(), SCOPE_SQL);
//! assert_eq!(shape.params(scope.values(&mut buf)).len(), 3);
//! assert!(SCOPE_SQL.contains("set_config('role', $1, true)"));
//! assert!(!ScopeOptions::default().is_read_only());
//! ```

use std::fmt;

use crate::{OrgId, Principal, Role, ServiceContext};

/// The default scoping statement: `role`, `request.jwt.claims`, `tenant_guard.org_id`, every
/// setting transaction-local (`is_local = true`), every value a parameter (`$1` role, `$2` the
/// claims JSON, `$3` the org id). Prepared once per connection.
///
/// `role` is set first so a failure to switch (the login is not a member) aborts the
/// transaction before anything else runs.
///
/// `set_config` is schema-qualified, so a function of that name earlier on a `search_path`
/// cannot stand in for it. The outer `SELECT` returns no columns: the server does not echo the
/// claims back (the inner, volatile calls are always evaluated; the planner neither flattens nor
/// prunes volatile subquery outputs). Measured with callgrind: 5 000 fewer server instructions per
/// transaction with a 1 KB token (`BENCHMARKS.md`).
pub const SCOPE_SQL: &str = SQL[0];

/// The statements of the four [`Shape`]s, indexed by [`Shape::index`]. The parameters of the
/// opt-in settings follow the three of [`SCOPE_SQL`]: `$4` the user id (`sub`) when the per-claim
/// settings are set, then the request id. `request.jwt.claim.role` mirrors the role, as
/// PostgREST did, so `auth.role()` answers the role in force.
const SQL: [&str; 4] = [
    "SELECT FROM (SELECT \
     pg_catalog.set_config('role', $1, true), \
     pg_catalog.set_config('request.jwt.claims', $2, true), \
     pg_catalog.set_config('tenant_guard.org_id', $3, true)) AS scoped",
    "SELECT FROM (SELECT \
     pg_catalog.set_config('role', $1, true), \
     pg_catalog.set_config('request.jwt.claims', $2, true), \
     pg_catalog.set_config('tenant_guard.org_id', $3, true), \
     pg_catalog.set_config('request.jwt.claim.sub', $4, true), \
     pg_catalog.set_config('request.jwt.claim.role', $1, true)) AS scoped",
    "SELECT FROM (SELECT \
     pg_catalog.set_config('role', $1, true), \
     pg_catalog.set_config('request.jwt.claims', $2, true), \
     pg_catalog.set_config('tenant_guard.org_id', $3, true), \
     pg_catalog.set_config('tenant_guard.request_id', $4, true)) AS scoped",
    "SELECT FROM (SELECT \
     pg_catalog.set_config('role', $1, true), \
     pg_catalog.set_config('request.jwt.claims', $2, true), \
     pg_catalog.set_config('tenant_guard.org_id', $3, true), \
     pg_catalog.set_config('request.jwt.claim.sub', $4, true), \
     pg_catalog.set_config('request.jwt.claim.role', $1, true), \
     pg_catalog.set_config('tenant_guard.request_id', $5, true)) AS scoped",
];

/// Which settings the scoping statement sets beyond `role`, `request.jwt.claims` and
/// `tenant_guard.org_id` (a pool-wide option of both backends).
///
/// The default sets none: three `set_config` calls per transaction, the cheapest shape that keeps
/// `auth.uid()`, `auth.role()`, `auth.jwt()`, `tenant_guard.org_id()` and
/// `tenant_guard.user_id()` answering (they read the claims). When a principal's claims do not
/// name its role and user at the top level (a default role, a role rule on another claim, an org
/// membership role; see [`Principal::claims_agree`]), its transactions set the per-claim settings
/// anyway, so `auth.role()` always answers the role in force.
///
/// ```
/// use tenant_guard_core::scope::ScopeSettings;
///
/// // Policies or triggers that read `current_setting('request.jwt.claim.sub')` directly, and
/// // audit triggers that record `tenant_guard.request_id()`:
/// let legacy = ScopeSettings::default().claim_settings(true).request_id(true);
/// assert_eq!(legacy, ScopeSettings::LEGACY);
/// assert_eq!("claim_settings,request_id".parse::<ScopeSettings>(), Ok(legacy));
/// assert_eq!("minimal".parse::<ScopeSettings>(), Ok(ScopeSettings::default()));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScopeSettings {
    claim_settings: bool,
    request_id: bool,
}

impl ScopeSettings {
    /// Role, claims and org only (the default).
    pub const MINIMAL: Self = Self {
        claim_settings: false,
        request_id: false,
    };

    /// Everything the guard set before the default became minimal: also `request.jwt.claim.sub`,
    /// `request.jwt.claim.role` and `tenant_guard.request_id`.
    pub const LEGACY: Self = Self {
        claim_settings: true,
        request_id: true,
    };

    /// Also sets `request.jwt.claim.sub` (the user id) and `request.jwt.claim.role` (the role in
    /// force) in every transaction, for SQL that reads them directly rather than through
    /// `auth.uid()`/`auth.role()`.
    #[must_use]
    pub fn claim_settings(mut self, on: bool) -> Self {
        self.claim_settings = on;
        self
    }

    /// Also sets `tenant_guard.request_id` (read by `tenant_guard.request_id()`, e.g. in audit
    /// triggers) in every transaction; `''` when the transaction has no request id.
    #[must_use]
    pub fn request_id(mut self, on: bool) -> Self {
        self.request_id = on;
        self
    }

    /// The statement of a transaction whose principal's claims name its role and user (see
    /// [`Scope::shape`]); with `claim_settings(true)`, the one of every other (a backend prepares
    /// both).
    pub fn sql(self) -> &'static str {
        Shape {
            claim_settings: self.claim_settings,
            request_id: self.request_id,
        }
        .sql()
    }

    /// Whether every transaction sets the per-claim settings.
    pub fn sets_claim_settings(self) -> bool {
        self.claim_settings
    }

    /// Whether every transaction sets `tenant_guard.request_id`.
    pub fn sets_request_id(self) -> bool {
        self.request_id
    }
}

/// The value of [`ScopeSettings`]' `FromStr` was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scope setting {0:?}: expected a comma-separated list of `claim_settings`, \
     `request_id`, or one of `minimal`, `legacy`"
)]
#[non_exhaustive]
pub struct InvalidScopeSettings(pub String);

impl std::str::FromStr for ScopeSettings {
    type Err = InvalidScopeSettings;

    /// `minimal` (or empty), `legacy`, or a comma-separated list of `claim_settings` and
    /// `request_id` (the form of an environment variable such as the reference apps'
    /// `TENANT_GUARD_SCOPE_SETTINGS`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut settings = Self::MINIMAL;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "minimal" => {}
                "legacy" => settings = Self::LEGACY,
                "claim_settings" => settings.claim_settings = true,
                "request_id" => settings.request_id = true,
                other => return Err(InvalidScopeSettings(other.to_owned())),
            }
        }
        Ok(settings)
    }
}

/// The scoping statement of one transaction: which settings it sets. From [`Scope::shape`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    claim_settings: bool,
    request_id: bool,
}

impl Shape {
    /// Which of the four statements, `0..4` (for a backend's per-connection cache).
    pub fn index(self) -> usize {
        usize::from(self.claim_settings) | usize::from(self.request_id) << 1
    }

    /// The statement, with numbered text parameters.
    pub fn sql(self) -> &'static str {
        SQL[self.index()]
    }

    /// Whether it sets the per-claim settings.
    pub fn sets_claim_settings(self) -> bool {
        self.claim_settings
    }

    /// Whether it sets `tenant_guard.request_id`.
    pub fn sets_request_id(self) -> bool {
        self.request_id
    }

    /// The parameters of [`sql`](Self::sql), in order, picked from [`Scope::values`].
    pub fn params(self, values: [&str; 5]) -> Params<'_> {
        let [role, claims, sub, org, request_id] = values;
        let mut params = Params {
            values: [role, claims, org, "", ""],
            len: 3,
        };
        if self.claim_settings {
            params.values[params.len] = sub;
            params.len += 1;
        }
        if self.request_id {
            params.values[params.len] = request_id;
            params.len += 1;
        }
        params
    }
}

/// The parameters of one scoping statement ([`Shape::params`]).
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    values: [&'a str; 5],
    len: usize,
}

impl<'a> Params<'a> {
    /// The values, `$1` first.
    pub fn as_slice(&self) -> &[&'a str] {
        &self.values[..self.len]
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never: the role, claims and org are always there.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

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

    /// The statement this transaction is scoped with under the pool's `settings`: the per-claim
    /// settings also when the principal's claims do not name its role and user
    /// ([`Principal::claims_agree`]), so `auth.role()` and `auth.uid()` answer the role in force
    /// and the user in every mode.
    pub fn shape(&self, settings: ScopeSettings) -> Shape {
        let agree = match &self.identity {
            Identity::Principal(p) => p.claims_agree(),
            // `{"role": role, …}` without `sub`, and the user id is empty.
            Identity::Service { .. } => true,
        };
        Shape {
            claim_settings: settings.claim_settings || !agree,
            request_id: settings.request_id,
        }
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
        for (i, sql) in SQL.iter().enumerate() {
            let n = sql.matches("set_config(").count();
            assert_eq!(n, [3, 5, 4, 6][i], "{sql}");
            assert_eq!(sql.matches(", true)").count(), n);
            assert_eq!(sql.matches("pg_catalog.set_config(").count(), n);
            assert!(!sql.to_lowercase().contains("set role"));
            // Role goes first.
            assert!(sql.find("'role'") < sql.find("'request.jwt.claims'"));
        }
        assert_eq!(SCOPE_SQL, SQL[0]);
        assert!(!SCOPE_SQL.contains("claim.sub") && !SCOPE_SQL.contains("request_id"));
    }

    fn user(claims: &str, role: &str, sub: &str) -> Principal {
        Principal::from_verified(
            sub.into(),
            OrgId::from(uuid::Uuid::from_u128(7)),
            crate::OrgIdKind::Uuid,
            Role::new(role).unwrap(),
            claims.into(),
            0,
        )
    }

    #[test]
    fn shapes_follow_the_settings_and_the_claims() {
        let agreeing = user(
            r#"{"sub":"u1","role":"authenticated"}"#,
            "authenticated",
            "u1",
        );
        let scope = Scope::principal(&agreeing, Some("req-1".into()));
        let mut buf = [0u8; 36];
        let cases = [
            (
                ScopeSettings::MINIMAL,
                0,
                vec![
                    "authenticated",
                    r#"{"sub":"u1","role":"authenticated"}"#,
                    "00000000-0000-0000-0000-000000000007",
                ],
            ),
            (
                ScopeSettings::MINIMAL.claim_settings(true),
                1,
                vec![
                    "authenticated",
                    r#"{"sub":"u1","role":"authenticated"}"#,
                    "00000000-0000-0000-0000-000000000007",
                    "u1",
                ],
            ),
            (
                ScopeSettings::MINIMAL.request_id(true),
                2,
                vec![
                    "authenticated",
                    r#"{"sub":"u1","role":"authenticated"}"#,
                    "00000000-0000-0000-0000-000000000007",
                    "req-1",
                ],
            ),
            (
                ScopeSettings::LEGACY,
                3,
                vec![
                    "authenticated",
                    r#"{"sub":"u1","role":"authenticated"}"#,
                    "00000000-0000-0000-0000-000000000007",
                    "u1",
                    "req-1",
                ],
            ),
        ];
        for (settings, index, params) in cases {
            let shape = scope.shape(settings);
            assert_eq!(shape.index(), index);
            assert_eq!(shape.params(scope.values(&mut buf)).as_slice(), &params[..]);
            // Every parameter of the statement is given, and no more.
            let highest = (1..=5)
                .rev()
                .find(|n| shape.sql().contains(&format!("${n}")));
            assert_eq!(highest, Some(params.len()));
        }
        // A role that is not the claims' (a default role, a membership) sets the per-claim
        // settings whatever the pool says.
        let defaulted = user(r#"{"sub":"u1"}"#, "authenticated", "u1");
        let scope = Scope::principal(&defaulted, None);
        assert!(scope.shape(ScopeSettings::MINIMAL).sets_claim_settings());
        assert!(!scope.shape(ScopeSettings::MINIMAL).sets_request_id());
    }

    #[test]
    fn settings_parse_from_text() {
        assert_eq!("".parse(), Ok(ScopeSettings::MINIMAL));
        assert_eq!(" legacy ".parse(), Ok(ScopeSettings::LEGACY));
        assert_eq!(
            "request_id".parse(),
            Ok(ScopeSettings::MINIMAL.request_id(true))
        );
        assert!("claims".parse::<ScopeSettings>().is_err());
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
