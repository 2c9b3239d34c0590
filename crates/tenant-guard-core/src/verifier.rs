//! The verifier: built once at startup, shared by every request.
//!
//! NOTE: first cut (HS256 shared secrets only); the full key/algorithm support, JWKS, cache and
//! development opt-ins land with the rest of the core crate.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::environment::Environment;
use crate::error::AuthError;
use crate::principal::Principal;
use crate::role::Role;

/// Default maximum token length in bytes, checked before any decoding.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

/// Verifies bearer tokens and maps their claims to a [`Principal`].
///
/// Cheap to clone and `Send + Sync`: build it once at startup and share it.
///
/// ```
/// use tenant_guard_core::{Environment, Verifier};
///
/// let verifier = Verifier::builder(Environment::Production)
///     .hmac_secret("a-long-random-secret-from-your-vault")
///     .build()
///     .unwrap();
/// let err = verifier.authenticate(&http::HeaderMap::new()).unwrap_err();
/// assert_eq!(err.code(), "missing_token");
/// ```
#[derive(Clone)]
pub struct Verifier(Arc<Inner>);

struct Inner {
    environment: Environment,
    key: DecodingKey,
    validation: Validation,
    org_claim: Box<str>,
    allowed_roles: Vec<Role>,
    max_token_len: usize,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("environment", &self.0.environment)
            .field("org_claim", &self.0.org_claim)
            .field("allowed_roles", &self.0.allowed_roles)
            .field("keys", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Builds a [`Verifier`]; see [`Verifier::builder`].
pub struct VerifierBuilder {
    environment: Environment,
    hmac_secret: Option<Vec<u8>>,
    audience: String,
    issuer: Option<String>,
    org_claim: String,
    allowed_roles: Vec<String>,
    leeway: Duration,
    max_token_len: usize,
}

impl std::fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("environment", &self.environment)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("org_claim", &self.org_claim)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Starts a configuration for `environment`.
    pub fn builder(environment: Environment) -> VerifierBuilder {
        VerifierBuilder {
            environment,
            hmac_secret: None,
            audience: "authenticated".to_owned(),
            issuer: None,
            org_claim: "org_id".to_owned(),
            allowed_roles: vec!["authenticated".to_owned()],
            leeway: Duration::from_secs(30),
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }

    /// The environment this verifier was built for.
    pub fn environment(&self) -> Environment {
        self.0.environment
    }

    /// Authenticates a request from its headers: exactly one `Authorization: Bearer <token>`.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let value = match (values.next(), values.next()) {
            (None, _) => return Err(AuthError::MissingToken),
            (Some(v), None) => v,
            (Some(_), Some(_)) => return Err(AuthError::MalformedHeader),
        };
        let bytes = value.as_bytes();
        if bytes.len() < 7 || !bytes[..7].eq_ignore_ascii_case(b"bearer ") {
            return Err(AuthError::MalformedHeader);
        }
        let token = std::str::from_utf8(&bytes[7..]).map_err(|_| AuthError::MalformedHeader)?;
        self.verify(token.trim_matches(' '))
    }

    /// Verifies a bare token.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let inner = &*self.0;
        if token.len() > inner.max_token_len {
            return Err(AuthError::TokenTooLarge);
        }
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &inner.key, &inner.validation)
            .map_err(map_jwt_error)?;
        let claims = data.claims;
        let sub = claims
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .ok_or(AuthError::InvalidClaim("sub"))?;
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .ok_or(AuthError::InvalidClaim("exp"))?;
        let role = claims
            .get("role")
            .and_then(serde_json::Value::as_str)
            .ok_or(AuthError::RoleNotAllowed)?;
        let role = inner
            .allowed_roles
            .iter()
            .find(|r| r.as_str() == role)
            .ok_or(AuthError::RoleNotAllowed)?
            .clone();
        let org = inner
            .org_claim
            .split('.')
            .try_fold(&claims, |v, seg| v.get(seg))
            .and_then(serde_json::Value::as_str)
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .ok_or(AuthError::InvalidOrg)?;
        Ok(Principal::from_verified(
            sub.into(),
            org,
            role,
            claims.to_string().into_boxed_str(),
            exp,
        ))
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => AuthError::InvalidSignature,
        K::ExpiredSignature => AuthError::Expired,
        K::ImmatureSignature => AuthError::NotYetValid,
        K::InvalidAudience => AuthError::WrongAudience,
        K::InvalidIssuer => AuthError::WrongIssuer,
        K::InvalidAlgorithm | K::InvalidAlgorithmName => AuthError::DisallowedAlgorithm,
        K::MissingRequiredClaim(c) if c == "aud" => AuthError::WrongAudience,
        K::MissingRequiredClaim(c) if c == "iss" => AuthError::WrongIssuer,
        K::MissingRequiredClaim(c) if c == "sub" => AuthError::InvalidClaim("sub"),
        K::MissingRequiredClaim(_) => AuthError::InvalidClaim("exp"),
        _ => AuthError::MalformedToken,
    }
}

impl VerifierBuilder {
    /// Accepts HS256/384/512 tokens signed with this shared secret (its raw bytes).
    #[must_use]
    pub fn hmac_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.hmac_secret = Some(secret.as_ref().to_vec());
        self
    }

    /// The required `aud` (default `authenticated`).
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// The required `iss` (default: not checked).
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The dotted path of the org claim (default `org_id`), e.g. `app_metadata.org_id`.
    #[must_use]
    pub fn org_claim(mut self, path: impl Into<String>) -> Self {
        self.org_claim = path.into();
        self
    }

    /// The roles a token may name (default `["authenticated"]`).
    #[must_use]
    pub fn allowed_roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Clock leeway for `exp`, `nbf` and `iat` (default 30 s).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Maximum token length in bytes (default [`DEFAULT_MAX_TOKEN_LEN`]).
    #[must_use]
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// Checks the configuration and builds the verifier.
    pub fn build(self) -> Result<Verifier, AuthError> {
        let secret = self
            .hmac_secret
            .ok_or(AuthError::MissingKey("JWT_SECRET or JWT_JWKS_FILE"))?;
        if secret.is_empty() {
            return Err(AuthError::InvalidKey("the HMAC secret is empty".into()));
        }
        let allowed_roles = self
            .allowed_roles
            .iter()
            .map(|r| Role::new(r).map_err(|e| AuthError::InvalidConfig(format!("role {r:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_audience(&[self.audience]);
        let mut required = vec!["exp", "aud", "sub"];
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Verifier(Arc::new(Inner {
            environment: self.environment,
            key: DecodingKey::from_secret(&secret),
            validation,
            org_claim: self.org_claim.into_boxed_str(),
            allowed_roles,
            max_token_len: self.max_token_len,
        })))
    }
}
