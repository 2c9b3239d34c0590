//! The org chosen per request and checked in the database: [`OrgMembership`] (where the org comes
//! from, the membership SQL, the lookup role) and [`MembershipCache`] (its answers, briefly).
//!
//! Only tokens of an issuer configured with
//! [`IssuerProfile::org_from_request`](tenant_guard_core::IssuerProfile::org_from_request) (no org
//! claim) are scoped to the org a request names; the header is a *request*, never identity: the
//! guard runs the membership SQL for (token `sub`, header org) and scopes the transaction to that
//! org with the role the membership grants, or refuses with 403 `not_a_member`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, StatusCode};
use tenant_guard_core::{ErrorResponse, OrgId, OrgIdKind, Role, ToErrorResponse};
use tenant_guard_postgres::tokio_postgres::error::SqlState;
use tenant_guard_postgres::tokio_postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};
use tenant_guard_postgres::{GuardError, TenantPool};
use uuid::Uuid;

use crate::org_source::{OrgPath, OrgSource};

/// The default membership SQL: `$1` is the token's `sub`, `$2` the requested org; the first
/// column of the row (if any) is the member's role.
pub const DEFAULT_MEMBERSHIP_SQL: &str =
    "SELECT role FROM memberships WHERE user_id = $1 AND org_id = $2";

/// Default number of cached (user, org) answers.
pub const DEFAULT_MEMBERSHIP_CACHE_CAPACITY: usize = 10_000;

/// Default time an answer is cached.
pub const DEFAULT_MEMBERSHIP_CACHE_TTL: Duration = Duration::from_secs(30);

/// Header-selected orgs, checked in the database: the opt-in of
/// [`GuardConfig::org_membership`](crate::GuardConfig::org_membership).
///
/// For a token that names no org (its issuer has `org_from_request(true)`), the org comes from
/// `header` (an org id of the issuer's [`org_id_kind`](tenant_guard_core::IssuerProfile::org_id_kind),
/// a UUID by default; anything else is 400 `invalid_org_header`, no header 400 `org_required`);
/// the guard runs [`sql`](Self::sql) as the lookup role (named at construction: a dedicated
/// role, there is no default) over its pool (through
/// [`TenantPool::begin_membership_lookup`], read-only, never as the request's role) and scopes
/// the request to that org with the role in the answer (which must pass
/// [`allow_roles`](crate::GuardConfig::allow_roles) and the pool's user roles). No row: 403
/// `not_a_member`.
///
/// A token that names its org is authoritative by default: its org wins, and a header naming
/// another org is 403 `org_mismatch` (the same org is accepted; no lookup is made). With
/// [`token_org(TokenOrg::Default)`](Self::token_org) the header overrides it instead, after the
/// membership check.
///
/// ```
/// use std::time::Duration;
/// use tenant_guard_core::Role;
/// use tenant_guard_http::OrgMembership;
///
/// let membership = OrgMembership::from_header(
///     http::HeaderName::from_static("x-org-id"),
///     Role::new("membership_reader")?, // the lookup role: NOLOGIN, SELECT on memberships only
/// )
/// .sql("SELECT role FROM app.memberships WHERE user_id = $1 AND org_id = $2")
/// .cache(10_000, Duration::from_secs(30));
/// let cache = membership.cache_handle(); // keep it to invalidate on membership changes
/// # let _ = cache;
/// # Ok::<(), tenant_guard_core::InvalidRole>(())
/// ```
#[derive(Debug, Clone)]
pub struct OrgMembership {
    source: OrgSource,
    sql: Arc<str>,
    role: Role,
    cache: MembershipCache,
    token_org: TokenOrg,
}

/// What the org a token names counts for when the request names one too
/// ([`OrgMembership::token_org`]). A token that names no org always needs the request's org and
/// the membership check.
///
/// ```
/// use tenant_guard_http::{OrgMembership, TokenOrg};
///
/// // Users switch orgs with the header; the token's org is where they land without one.
/// let reader = tenant_guard_core::Role::new("membership_reader")?;
/// let membership = OrgMembership::from_header(http::HeaderName::from_static("x-org-id"), reader)
///     .token_org(TokenOrg::Default);
/// # let _ = membership;
/// assert_eq!(TokenOrg::default(), TokenOrg::Authoritative);
/// # Ok::<(), tenant_guard_core::InvalidRole>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenOrg {
    /// The token's org is the request's org (the default): a header naming the same org is
    /// accepted (no lookup), a header naming another is 403 `org_mismatch`.
    #[default]
    Authoritative,
    /// The token's org is only the default: without a header (or with one naming the same org)
    /// the request is scoped to it with the token's role, as usual; a header naming another org
    /// overrides it **after the membership check**, exactly as for a token without an org (403
    /// `not_a_member` otherwise, the membership's role on success). The claims stay the
    /// token's, its org claim included: with this mode, policies must read the org from
    /// `tenant_guard.org_id()`, never from `request.jwt.claims`.
    Default,
}

impl OrgMembership {
    /// The org comes from `header`, the lookup runs as `lookup_role`; the default SQL
    /// ([`DEFAULT_MEMBERSHIP_SQL`]) and cache. See [`new`](Self::new).
    pub fn from_header(header: HeaderName, lookup_role: Role) -> Self {
        Self::new(OrgSource::Header(header), lookup_role)
    }

    /// The org comes from the path segment at `path`'s `{org}` (e.g. `/orgs/{org}`); otherwise
    /// as [`from_header`](Self::from_header). A path that does not match names no org; a matching
    /// one whose segment is not one UUID is 400 `invalid_org_path`.
    ///
    /// ```
    /// use tenant_guard_http::{OrgMembership, OrgPath};
    ///
    /// let reader = tenant_guard_core::Role::new("membership_reader")?;
    /// let membership = OrgMembership::from_path(OrgPath::new("/orgs/{org}")?, reader);
    /// # let _ = membership;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_path(path: OrgPath, lookup_role: Role) -> Self {
        Self::new(OrgSource::Path(path), lookup_role)
    }

    /// The org comes from `source`; the lookup runs as `lookup_role` (granted to the pool's
    /// login; never the request's role): a dedicated `NOLOGIN` role that can read the
    /// membership table and nothing else, not `service_role` or an owner (there is no default,
    /// so that nobody gets a powerful one by accident). The default SQL
    /// ([`DEFAULT_MEMBERSHIP_SQL`]) and cache.
    pub fn new(source: OrgSource, lookup_role: Role) -> Self {
        Self {
            source,
            sql: DEFAULT_MEMBERSHIP_SQL.into(),
            role: lookup_role,
            cache: MembershipCache::new(
                DEFAULT_MEMBERSHIP_CACHE_CAPACITY,
                DEFAULT_MEMBERSHIP_CACHE_TTL,
            ),
            token_org: TokenOrg::Authoritative,
        }
    }

    /// What the org a token names counts for against the request's (default
    /// [`TokenOrg::Authoritative`]: it wins, another org in the header is 403 `org_mismatch`);
    /// see [`TokenOrg`].
    #[must_use]
    pub fn token_org(mut self, mode: TokenOrg) -> Self {
        self.token_org = mode;
        self
    }

    /// Whether a header naming another org than the token's is refused (403 `org_mismatch`)
    /// rather than checked.
    pub(crate) fn token_org_wins(&self) -> bool {
        self.token_org == TokenOrg::Authoritative
    }

    /// The membership SQL: parameters `$1` (user id: bound as `uuid` or text, whichever the
    /// statement's parameter type is) and `$2` (org id: `uuid` or text); the first column of the
    /// first row (`text`, `NULL` = no membership) is the role. Write it so it returns at most
    /// one row (more is an error).
    ///
    /// Behind a transaction-mode pooler (the pool's
    /// [`Pooler::Transaction`](tenant_guard_postgres::Pooler::Transaction)) nothing is prepared:
    /// both parameters go as text of type `unknown`, which the server types from the SQL and
    /// parses (any column type with a text form works: `uuid`, `text`, `bigint`; a value the
    /// type cannot parse is no membership). Give a bare parameter whose type the SQL does not
    /// fix a cast (`$1::text`); cast a role column of an enum type to `text`.
    #[must_use]
    pub fn sql(mut self, sql: impl Into<Arc<str>>) -> Self {
        self.sql = sql.into();
        self
    }

    /// The role the lookup runs as (see [`new`](Self::new)).
    pub fn lookup_role(&self) -> &Role {
        &self.role
    }

    /// At most `capacity` cached answers (0 disables the cache), each for `ttl`.
    #[must_use]
    pub fn cache(mut self, capacity: usize, ttl: Duration) -> Self {
        self.cache = MembershipCache::new(capacity, ttl);
        self
    }

    /// The cache (a handle: clones share it), to invalidate answers when memberships change.
    pub fn cache_handle(&self) -> MembershipCache {
        self.cache.clone()
    }

    /// Where the org comes from.
    pub fn source(&self) -> &OrgSource {
        &self.source
    }

    /// The header the org comes from (`None` when it comes from the path).
    pub fn header_name(&self) -> Option<&HeaderName> {
        match &self.source {
            OrgSource::Header(name) => Some(name),
            OrgSource::Path(_) => None,
        }
    }

    /// Runs the membership SQL once, as the lookup role, for a user and an org that belong to no
    /// one, and discards the answer (nothing is cached): for a service's startup, so that a typo
    /// in the SQL, a missing table or grant, or a lookup role the pool's login cannot switch to is
    /// an error then, not a 5xx on the first request that names an org.
    ///
    /// ```no_run
    /// # async fn run(pool: tenant_guard_postgres::TenantPool) -> Result<(), tenant_guard_postgres::GuardError> {
    /// # let reader = tenant_guard_core::Role::new("membership_reader").unwrap();
    /// let membership =
    ///     tenant_guard_http::OrgMembership::from_header(http::HeaderName::from_static("x-org-id"), reader);
    /// membership.check(&pool).await?; // refuse to start on a broken lookup
    /// # Ok(()) }
    /// ```
    pub async fn check(&self, pool: &TenantPool) -> Result<(), GuardError> {
        // The nil UUID is a valid value for a text or a uuid `user_id` column alike.
        const NOBODY: &str = "00000000-0000-0000-0000-000000000000";
        self.query(pool, NOBODY, &OrgId::NIL).await.map(drop)
    }

    /// The org the request names (in its headers or its `path`), if any, parsed as `kind` (the
    /// issuer's org id kind); 400 when it is not one valid id of that kind.
    pub(crate) fn requested_org(
        &self,
        headers: &HeaderMap,
        path: &str,
        kind: OrgIdKind,
    ) -> Result<Option<OrgId>, OrgError> {
        let header = match &self.source {
            OrgSource::Header(header) => header,
            OrgSource::Path(template) => {
                return match template.org_segment(path) {
                    None => Ok(None),
                    Some(segment) => parse_org(kind, segment)
                        .map(Some)
                        .ok_or(OrgError::MalformedPath),
                };
            }
        };
        let mut values = headers.get_all(header).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(OrgError::Malformed);
        }
        let text = value.to_str().map_err(|_| OrgError::Malformed)?;
        parse_org(kind, text.trim())
            .map(Some)
            .ok_or(OrgError::Malformed)
    }

    /// The cached answer for (user, org), if fresh.
    pub(crate) fn cached(&self, user: &str, org: &OrgId) -> Option<Option<Role>> {
        self.cache.get(user, org)
    }

    /// Asks the database (and caches the answer): the member's role, or `None`.
    pub(crate) async fn lookup(
        &self,
        pool: &TenantPool,
        user: &str,
        org: &OrgId,
    ) -> Result<Option<Role>, OrgError> {
        let answer = self
            .query(pool, user, org)
            .await
            .map_err(OrgError::Lookup)?;
        let role = match answer {
            None => None,
            Some(name) => match Role::new(&name) {
                Ok(role) => Some(role),
                Err(_) => {
                    tracing::warn!(%org, "the membership lookup returned an invalid role name");
                    return Err(OrgError::RoleNotAllowed);
                }
            },
        };
        self.cache.insert(user, org.clone(), role.clone());
        Ok(role)
    }

    async fn query(
        &self,
        pool: &TenantPool,
        user: &str,
        org: &OrgId,
    ) -> Result<Option<String>, GuardError> {
        let tx = pool.begin_membership_lookup(&self.role).await?;
        if tx.pooler().is_transaction() {
            return Self::query_unnamed(tx, &self.sql, user, org).await;
        }
        let statement = tx.prepare(&self.sql).await?;
        let org_text = org.to_string();
        let user_uuid = match statement.params().first() {
            Some(&Type::UUID) => match Uuid::try_parse(user) {
                Ok(uuid) => Some(uuid),
                // A `sub` that is not a UUID is no member of a UUID-keyed table.
                Err(_) => {
                    tx.rollback().await?;
                    return Ok(None);
                }
            },
            _ => None,
        };
        let user_param: &(dyn ToSql + Sync) = match &user_uuid {
            Some(uuid) => uuid,
            None => &user,
        };
        // `$2` as the statement's type when it is a UUID or integer one and the org of that kind;
        // an org of another kind is no member of such a table. Anything else is text.
        let org_int4 = org.as_i64().and_then(|n| i32::try_from(n).ok());
        let org_param: &(dyn ToSql + Sync) = match (statement.params().get(1), org, &org_int4) {
            (Some(&Type::UUID), OrgId::Uuid(uuid), _) => uuid,
            (Some(&Type::INT8), OrgId::Int(n), _) => n,
            (Some(&Type::INT4), _, Some(n)) => n,
            (Some(&Type::UUID | &Type::INT8 | &Type::INT4), _, _) => {
                tx.rollback().await?;
                return Ok(None);
            }
            _ => &org_text,
        };
        let row = tx.query_opt(&statement, &[user_param, org_param]).await?;
        tx.rollback().await?;
        match row {
            None => Ok(None),
            Some(row) => row
                .try_get::<_, Option<String>>(0)
                .map_err(GuardError::Database),
        }
    }
}

impl OrgMembership {
    /// The lookup behind a transaction-mode pooler ([`Pooler::Transaction`]): no named statement
    /// (which would outlive the transaction on a server connection the next one may not get), so
    /// no parameter types learned from the server either. The SQL goes as the extended
    /// protocol's unnamed statement with both parameters as text of type `unknown`: the server
    /// types them from the SQL (`user_id = $1` against a `uuid` or a `text` column) and parses
    /// the text, as it would a quoted literal. A value the column's type cannot parse (a `sub`
    /// that is not a UUID, for a `uuid` column: SQLSTATE 22P02) is no member, as in the
    /// prepared path.
    ///
    /// [`Pooler::Transaction`]: tenant_guard_postgres::Pooler::Transaction
    async fn query_unnamed(
        tx: tenant_guard_postgres::TenantTx,
        sql: &str,
        user: &str,
        org: &OrgId,
    ) -> Result<Option<String>, GuardError> {
        let mut org_text = [0u8; 36];
        let org_text = org.encode(&mut org_text);
        let (user, org) = (UntypedText(user), UntypedText(org_text));
        let params: [(&(dyn ToSql + Sync), Type); 2] =
            [(&user, Type::UNKNOWN), (&org, Type::UNKNOWN)];
        let rows = match tx.query_typed(sql, &params).await {
            Ok(rows) => rows,
            Err(error) if error.sqlstate() == Some(&SqlState::INVALID_TEXT_REPRESENTATION) => {
                tx.rollback().await.ok();
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        tx.rollback().await?;
        match rows.as_slice() {
            [] => Ok(None),
            [row] => row
                .try_get::<_, Option<String>>(0)
                .map_err(GuardError::Database),
            // As `query_opt` refuses in the prepared path.
            _ => Err(GuardError::Config(
                "the membership SQL returned more than one row".into(),
            )),
        }
    }
}

/// The org a request names, parsed as the issuer's kind (the one parser of header and path
/// values).
fn parse_org(kind: OrgIdKind, text: &str) -> Option<OrgId> {
    kind.parse(text).ok()
}

/// A parameter sent as text of type `unknown` (the server infers its type from the SQL and
/// parses the text with that type's input function): what a quoted literal in the SQL would be,
/// without the quoting.
#[derive(Debug)]
struct UntypedText<'a>(&'a str);

impl ToSql for UntypedText<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// The cached membership answers of one [`OrgMembership`]: bounded, each for a TTL, negative
/// answers too (so a flood of requests for foreign orgs costs one lookup each per TTL). Clones
/// share the cache.
///
/// Call [`invalidate`](Self::invalidate) (or [`invalidate_user`](Self::invalidate_user),
/// [`invalidate_org`](Self::invalidate_org), [`clear`](Self::clear)) when a membership is granted,
/// changed or revoked; otherwise a revoked member keeps access for at most the TTL.
///
/// ```
/// use std::time::Duration;
/// let cache = tenant_guard_http::MembershipCache::new(100, Duration::from_secs(30));
/// cache.invalidate("user-1", uuid::Uuid::from_u128(7));
/// cache.invalidate_org(42_i64); // integer org ids (an issuer with `OrgIdKind::Integer`)
/// assert_eq!(cache.len(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct MembershipCache(Arc<Mutex<CacheInner>>);

#[derive(Debug)]
struct CacheInner {
    capacity: usize,
    ttl: Duration,
    entries: HashMap<(Box<str>, OrgId), (Option<Role>, Instant)>,
}

impl MembershipCache {
    /// A cache of at most `capacity` answers (0: nothing is cached), each for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self(Arc::new(Mutex::new(CacheInner {
            capacity,
            ttl,
            entries: HashMap::new(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, user: &str, org: &OrgId) -> Option<Option<Role>> {
        let mut inner = self.lock();
        let ttl = inner.ttl;
        let key = (Box::<str>::from(user), org.clone());
        match inner.entries.get(&key) {
            Some((role, at)) if at.elapsed() < ttl => Some(role.clone()),
            Some(_) => {
                inner.entries.remove(&key);
                None
            }
            None => None,
        }
    }

    fn insert(&self, user: &str, org: OrgId, role: Option<Role>) {
        let mut inner = self.lock();
        if inner.capacity == 0 {
            return;
        }
        if inner.entries.len() >= inner.capacity {
            let ttl = inner.ttl;
            inner.entries.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        if inner.entries.len() >= inner.capacity {
            // Still full of fresh answers: drop the oldest.
            if let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
            {
                inner.entries.remove(&oldest);
            }
        }
        inner
            .entries
            .insert((user.into(), org), (role, Instant::now()));
    }

    /// Forgets the answer for `user` in `org` (a [`Uuid`], an `i64` or an [`OrgId`]).
    pub fn invalidate(&self, user: &str, org: impl Into<OrgId>) {
        self.lock()
            .entries
            .remove(&(Box::<str>::from(user), org.into()));
    }

    /// Forgets every answer for `user`.
    pub fn invalidate_user(&self, user: &str) {
        self.lock().entries.retain(|(u, _), _| &**u != user);
    }

    /// Forgets every answer for `org` (a [`Uuid`], an `i64` or an [`OrgId`]).
    pub fn invalidate_org(&self, org: impl Into<OrgId>) {
        let org = org.into();
        self.lock().entries.retain(|(_, o), _| *o != org);
    }

    /// Forgets every answer.
    pub fn clear(&self) {
        self.lock().entries.clear();
    }

    /// The number of cached answers (at most the capacity).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why the org of a request could not be chosen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum OrgError {
    /// The token names no org and the request did not either.
    #[error("the request names no organisation")]
    Missing,
    /// The org header is not exactly one UUID.
    #[error("the organisation header is malformed")]
    Malformed,
    /// The org segment of the path is not one UUID.
    #[error("the organisation in the path is malformed")]
    MalformedPath,
    /// The token's org differs from the requested one.
    #[error("the requested organisation is not the token's")]
    Mismatch,
    /// No membership of the user in the org.
    #[error("not a member of the organisation")]
    NotAMember,
    /// The membership's role is not allowed here.
    #[error("the membership's role is not allowed here")]
    RoleNotAllowed,
    /// The lookup failed (database).
    #[error("the membership lookup failed")]
    Lookup(#[source] GuardError),
    /// No pool to run the lookup on.
    #[error("org membership configured on a guard without a pool")]
    NoPool,
}

impl ToErrorResponse for OrgError {
    fn to_error_response(&self) -> ErrorResponse {
        let (status, code, message, challenge) = match self {
            Self::Missing => (
                StatusCode::BAD_REQUEST,
                "org_required",
                "the request must name its organisation",
                "Bearer error=\"invalid_request\", error_description=\"organisation required\"",
            ),
            Self::Malformed => (
                StatusCode::BAD_REQUEST,
                "invalid_org_header",
                "the organisation header must be one UUID",
                "Bearer error=\"invalid_request\", error_description=\"malformed organisation\"",
            ),
            Self::MalformedPath => (
                StatusCode::BAD_REQUEST,
                "invalid_org_path",
                "the organisation in the path must be one UUID",
                "Bearer error=\"invalid_request\", error_description=\"malformed organisation\"",
            ),
            Self::Mismatch => (
                StatusCode::FORBIDDEN,
                "org_mismatch",
                "the requested organisation is not the token's",
                "Bearer error=\"insufficient_scope\", error_description=\"organisation mismatch\"",
            ),
            Self::NotAMember => (
                StatusCode::FORBIDDEN,
                "not_a_member",
                "not a member of the requested organisation",
                "Bearer error=\"insufficient_scope\", error_description=\"not a member\"",
            ),
            Self::RoleNotAllowed => (
                StatusCode::FORBIDDEN,
                "role_not_allowed",
                "the role is not allowed here",
                "Bearer error=\"insufficient_scope\", error_description=\"the token is not allowed here\"",
            ),
            Self::Lookup(error) => return error.to_error_response(),
            Self::NoPool => return ErrorResponse::internal(),
        };
        ErrorResponse::new(status, code, message)
            .with_www_authenticate(http::HeaderValue::from_static(challenge))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role() -> Role {
        Role::new("authenticated").unwrap()
    }

    #[test]
    fn the_cache_is_bounded_and_invalidates() {
        let cache = MembershipCache::new(3, Duration::from_secs(60));
        let orgs: Vec<OrgId> = (1..=5).map(OrgId::Int).collect();
        for org in &orgs {
            cache.insert("u", org.clone(), Some(role()));
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("u", &orgs[4]), Some(Some(role())));
        assert_eq!(
            cache.get("u", &OrgId::text("5").unwrap()),
            None,
            "kinds differ"
        );
        cache.invalidate("u", 5_i64);
        assert_eq!(cache.get("u", &orgs[4]), None);
        cache.insert("v", orgs[0].clone(), None);
        assert_eq!(
            cache.get("v", &orgs[0]),
            Some(None),
            "negative answers are cached"
        );
        cache.invalidate_user("u");
        assert_eq!(cache.len(), 1);
        cache.invalidate_org(orgs[0].clone());
        assert!(cache.is_empty());
    }

    #[test]
    fn answers_expire() {
        let cache = MembershipCache::new(3, Duration::ZERO);
        cache.insert("u", OrgId::NIL, Some(role()));
        assert_eq!(cache.get("u", &OrgId::NIL), None);
        let off = MembershipCache::new(0, Duration::from_secs(60));
        off.insert("u", OrgId::NIL, Some(role()));
        assert!(off.is_empty());
    }

    #[test]
    fn the_org_header_must_be_one_id_of_the_kind() {
        let m = OrgMembership::from_header(HeaderName::from_static("x-org-id"), role());
        let uuid = OrgIdKind::Uuid;
        let mut headers = HeaderMap::new();
        assert!(matches!(m.requested_org(&headers, "/", uuid), Ok(None)));
        headers.insert("x-org-id", "not-a-uuid".parse().unwrap());
        assert!(matches!(
            m.requested_org(&headers, "/", uuid),
            Err(OrgError::Malformed)
        ));
        let org = Uuid::from_u128(9);
        headers.insert("x-org-id", org.to_string().parse().unwrap());
        assert_eq!(
            m.requested_org(&headers, "/", uuid).unwrap(),
            Some(OrgId::Uuid(org))
        );
        assert!(
            matches!(
                m.requested_org(&headers, "/", OrgIdKind::Integer),
                Err(OrgError::Malformed)
            ),
            "a UUID is no integer org"
        );
        headers.append("x-org-id", org.to_string().parse().unwrap());
        assert!(matches!(
            m.requested_org(&headers, "/", uuid),
            Err(OrgError::Malformed)
        ));
        for (kind, good, bad) in [
            (
                OrgIdKind::Integer,
                "42",
                ["+42", "042", "4 2", "4.2", "9223372036854775808"],
            ),
            (
                OrgIdKind::Text,
                "acme-corp",
                ["acme corp", "acme/x", "a'b", "", "acmé"],
            ),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("x-org-id", good.parse().unwrap());
            assert_eq!(
                m.requested_org(&headers, "/", kind).unwrap(),
                Some(kind.parse(good).unwrap())
            );
            for bad in bad {
                let Ok(value) = http::HeaderValue::from_bytes(bad.as_bytes()) else {
                    continue;
                };
                headers.insert("x-org-id", value);
                assert!(
                    matches!(
                        m.requested_org(&headers, "/", kind),
                        Err(OrgError::Malformed)
                    ),
                    "{kind}: {bad:?}"
                );
            }
        }
        let r = OrgError::NotAMember.to_error_response();
        assert_eq!((r.status().as_u16(), r.code()), (403, "not_a_member"));
    }
}
