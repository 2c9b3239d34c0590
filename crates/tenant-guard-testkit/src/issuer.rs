//! Minting tokens and verified [`Principal`]s for synthetic orgs and users.
//!
//! A [`TestIssuer`] holds a random HS256 secret and a real [`Verifier`] built for
//! [`Environment::Test`] (as strict as production): every principal it hands out went through the
//! same verification as a request's token, so tests exercise the real path.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use tenant_guard_core::{AuthError, Environment, OrgId, OrgIdKind, Principal, Verifier};
use uuid::Uuid;

/// The `aud` of minted tokens and of the issuer's verifier (Supabase's).
pub const TEST_AUDIENCE: &str = "authenticated";

/// How long minted tokens are valid.
const TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Mints HS256 tokens and verified principals for tests.
///
/// ```
/// use tenant_guard_testkit::issuer::TestIssuer;
///
/// let issuer = TestIssuer::new();
/// let org = uuid::Uuid::new_v4();
/// let alice = issuer.user(org);
/// assert_eq!(alice.org_id(), org);
/// assert_eq!(alice.role().as_str(), "authenticated");
///
/// // Tokens are real: the issuer's verifier (or any verifier with its secret) accepts them.
/// let token = issuer.token(org, "bob", "authenticated");
/// assert_eq!(issuer.verifier().verify(&token).unwrap().user_id(), "bob");
/// ```
#[derive(Clone)]
pub struct TestIssuer {
    secret: Vec<u8>,
    key: EncodingKey,
    verifier: Verifier,
    org_claim: String,
}

impl fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestIssuer")
            .field("verifier", &self.verifier)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Default for TestIssuer {
    fn default() -> Self {
        Self::new()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TestIssuer {
    /// An issuer with a fresh random secret whose verifier accepts the roles `authenticated` and
    /// `anon`, with the org in the `org_id` claim.
    pub fn new() -> Self {
        Self::with_allowed_roles(["authenticated", "anon"])
    }

    /// Like [`new`](Self::new), with the verifier's role allowlist set to `roles`.
    ///
    /// # Panics
    /// When a role is not a plain Postgres role name (a bug in the test).
    pub fn with_allowed_roles<I, S>(roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::build(roles, OrgIdKind::Uuid)
    }

    /// Like [`new`](Self::new), for orgs of `kind` (the verifier's
    /// [`org_id_kind`](tenant_guard_core::IssuerProfile::org_id_kind)): integer orgs are minted as
    /// JSON numbers, UUID and text orgs as strings.
    ///
    /// ```
    /// use tenant_guard_core::{OrgId, OrgIdKind};
    /// let issuer = tenant_guard_testkit::TestIssuer::with_org_id_kind(OrgIdKind::Integer);
    /// assert_eq!(issuer.user(42_i64).org_id(), &OrgId::Int(42));
    /// ```
    pub fn with_org_id_kind(kind: OrgIdKind) -> Self {
        Self::build(["authenticated", "anon"], kind)
    }

    fn build<I, S>(roles: I, kind: OrgIdKind) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut secret = Vec::with_capacity(32);
        secret.extend_from_slice(Uuid::new_v4().as_bytes());
        secret.extend_from_slice(Uuid::new_v4().as_bytes());
        let verifier = Verifier::builder(Environment::Test)
            .hmac_secret(&secret)
            .audience(TEST_AUDIENCE)
            .allowed_roles(roles)
            .org_id_kind(kind)
            .build();
        let verifier = match verifier {
            Ok(v) => v,
            Err(e) => panic!("TestIssuer: the verifier configuration was refused: {e}"),
        };
        Self {
            key: EncodingKey::from_secret(&secret),
            secret,
            verifier,
            org_claim: "org_id".to_owned(),
        }
    }

    /// The HS256 secret, e.g. for `JWT_SECRET` of an app under test.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// The verifier that checks this issuer's tokens ([`Environment::Test`]).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Signs `claims` as they are (HS256), adding `aud`, `iat` and `exp` when missing.
    pub fn sign(&self, mut claims: serde_json::Value) -> String {
        if let Some(map) = claims.as_object_mut() {
            let now = now();
            map.entry("aud").or_insert_with(|| TEST_AUDIENCE.into());
            map.entry("iat").or_insert_with(|| now.into());
            map.entry("exp")
                .or_insert_with(|| (now + TOKEN_LIFETIME.as_secs()).into());
        }
        match jsonwebtoken::encode(&Header::default(), &claims, &self.key) {
            Ok(token) => token,
            Err(e) => panic!("TestIssuer: signing failed: {e}"),
        }
    }

    /// A Supabase-shaped token for `user_id` of `org` with `role`.
    pub fn token(&self, org: impl Into<OrgId>, user_id: &str, role: &str) -> String {
        self.sign(serde_json::json!({
            "sub": user_id,
            "role": role,
            &self.org_claim: org.into(),
            "email": format!("{user_id}@example.test"),
            "app_metadata": { "provider": "email" },
        }))
    }

    /// Mints a token and verifies it: a principal exactly as a request would produce.
    pub fn principal(
        &self,
        org: impl Into<OrgId>,
        user_id: &str,
        role: &str,
    ) -> Result<Principal, AuthError> {
        self.verifier.verify(&self.token(org, user_id, role))
    }

    /// A new user (a random UUID `sub`, so `auth.uid()` works) of `org`, role `authenticated`.
    ///
    /// # Panics
    /// When the verifier refuses `authenticated` (an issuer built without that role).
    pub fn user(&self, org: impl Into<OrgId>) -> Principal {
        self.user_with_role(org, "authenticated")
    }

    /// A new user of `org` with `role`.
    ///
    /// # Panics
    /// When the verifier refuses the token (e.g. `role` is not in the allowlist).
    pub fn user_with_role(&self, org: impl Into<OrgId>, role: &str) -> Principal {
        let user = Uuid::new_v4().to_string();
        match self.principal(org, &user, role) {
            Ok(p) => p,
            Err(e) => panic!("TestIssuer: the verifier refused a minted token: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_principals_carry_the_claims() {
        let issuer = TestIssuer::new();
        let org = Uuid::new_v4();
        let p = issuer.principal(org, "user-1", "anon").unwrap();
        assert_eq!(p.org_id(), org);
        assert_eq!(p.user_id(), "user-1");
        assert_eq!(p.role().as_str(), "anon");
        assert_eq!(p.claims()["email"], "user-1@example.test");
    }

    #[test]
    fn roles_outside_the_allowlist_are_refused() {
        let issuer = TestIssuer::new();
        let err = issuer
            .principal(Uuid::new_v4(), "u", "service_role")
            .unwrap_err();
        assert_eq!(err.code(), AuthError::RoleNotAllowed.code());
    }

    #[test]
    fn another_issuers_tokens_are_refused() {
        let a = TestIssuer::new();
        let b = TestIssuer::new();
        let token = a.token(Uuid::new_v4(), "u", "authenticated");
        assert!(b.verifier().verify(&token).is_err());
    }
}
