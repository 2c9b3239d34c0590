//! Scoping a transaction to an org and role exactly as the guard does.
//!
//! The guard (`tenant-guard-postgres`) scopes every request's transaction with transaction-local
//! settings, in their own statement before any query (a statement is evaluated with the settings
//! in force before it starts): by default `role`, `request.jwt.claims` and `tenant_guard.org_id`
//! (the per-claim settings and the request id only when the app opts in). The isolation probe must
//! see the database exactly as a request does, so it runs the same statement, the default shape:
//! a policy that reads `request.jwt.claim.sub` directly sees it unset, as a default-configured
//! request would (a policy treating an unset setting as "allow" is then caught).

use tokio_postgres::Transaction;

/// The guard's own scoping statement (role, claims, org id), so the probe cannot drift from what a
/// request sees.
pub(crate) const SCOPE_SQL: &str = tenant_guard_postgres::SCOPE_STATEMENT;

/// Back to the login, with no claims: what a connection is between requests.
pub(crate) const UNSCOPE_SQL: &str = "SELECT pg_catalog.set_config('role', 'none', true), \
     pg_catalog.set_config('request.jwt.claims', '', true), \
     pg_catalog.set_config('request.jwt.claim.sub', '', true), \
     pg_catalog.set_config('request.jwt.claim.role', '', true), \
     pg_catalog.set_config('tenant_guard.org_id', '', true)";

/// Who a probe step acts as.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) role: String,
    pub(crate) sub: String,
    pub(crate) org: String,
    pub(crate) claims: String,
}

impl Identity {
    /// A synthetic user of `org`. The claims carry the org under the usual claim names (and the
    /// tenant column's), top-level and in `app_metadata`, so policies written against any of
    /// them see this org.
    pub(crate) fn synthetic(role: &str, org: &str, tenant_column: &str) -> Self {
        let sub = uuid::Uuid::new_v4().to_string();
        let mut orgs = serde_json::Map::new();
        for key in [
            "org_id",
            "organization_id",
            "tenant_id",
            "workspace_id",
            tenant_column,
        ] {
            orgs.insert(key.to_owned(), serde_json::Value::from(org));
        }
        let mut claims = orgs.clone();
        claims.insert("sub".to_owned(), sub.clone().into());
        claims.insert("role".to_owned(), role.into());
        claims.insert("aud".to_owned(), "authenticated".into());
        claims.insert("app_metadata".to_owned(), serde_json::Value::Object(orgs));
        Self {
            role: role.to_owned(),
            sub,
            org: org.to_owned(),
            claims: serde_json::Value::Object(claims).to_string(),
        }
    }
}

/// Scopes the rest of `tx` (until the next scoping or the end of the transaction or savepoint).
pub(crate) async fn scope(
    tx: &Transaction<'_>,
    identity: &Identity,
) -> Result<(), tokio_postgres::Error> {
    crate::unnamed::execute(
        tx,
        SCOPE_SQL,
        &[&identity.role, &identity.claims, &identity.org],
    )
    .await
    .map(drop)
}

/// Returns `tx` to the login's own role with no claims.
pub(crate) async fn unscope(tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    crate::unnamed::execute(tx, UNSCOPE_SQL, &[])
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_claims_carry_the_org_everywhere() {
        let id = Identity::synthetic("authenticated", "o-1", "workspace_ref");
        let claims: serde_json::Value = serde_json::from_str(&id.claims).unwrap();
        assert_eq!(claims["role"], "authenticated");
        assert_eq!(claims["sub"], id.sub.as_str());
        for key in ["org_id", "organization_id", "workspace_ref"] {
            assert_eq!(claims[key], "o-1");
            assert_eq!(claims["app_metadata"][key], "o-1");
        }
    }
}
