//! The one error type of the core crate, and its HTTP mapping.

use http::{HeaderValue, StatusCode};

use crate::response::{ErrorResponse, ToErrorResponse};

/// Everything that can go wrong building a verifier or authenticating a request.
///
/// Request errors map to HTTP in one place, [`ToErrorResponse`]: 401 when authentication failed
/// (with an RFC 6750 `WWW-Authenticate` challenge), 403 when a valid token is not allowed.
/// Messages never contain the token, a claim value or a secret.
///
/// ```
/// use http::StatusCode;
/// use tenant_guard_core::{AuthError, ToErrorResponse};
///
/// let r = AuthError::Expired.to_error_response();
/// assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(r.code(), "token_expired");
/// assert!(r.www_authenticate().unwrap().to_str().unwrap().contains("invalid_token"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header (and no opted-in cookie) was sent.
    #[error("no bearer token was presented")]
    MissingToken,
    /// The `Authorization` header is not exactly one `Bearer <token>` value.
    #[error("the authorization header is malformed")]
    MalformedHeader,
    /// The token is not a well-formed JWS compact serialisation with a JSON header and claims.
    #[error("the token is malformed")]
    MalformedToken,
    /// The signature does not verify against the selected key.
    #[error("the token signature is invalid")]
    InvalidSignature,
    /// The token's `alg` is not in the allowlist (or is `none`), or does not fit the key type.
    #[error("the token algorithm is not allowed")]
    DisallowedAlgorithm,
    /// No configured key has the token's `kid` (or several keys fit and none was selected).
    #[error("the token key id is unknown")]
    UnknownKeyId,
    /// `exp` is in the past (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `aud` is missing or does not match.
    #[error("the token audience is not accepted")]
    WrongAudience,
    /// `iss` is missing or does not match.
    #[error("the token issuer is not accepted")]
    WrongIssuer,
    /// The token is longer than the configured maximum; nothing of it was decoded.
    #[error("the token is too large")]
    TokenTooLarge,
    /// A required claim (`sub`, `exp`, …) is missing or has the wrong type.
    #[error("a required claim is missing or invalid: {0}")]
    InvalidClaim(&'static str),
    /// The org claim is missing or not a UUID.
    #[error("the token carries no valid organisation id")]
    InvalidOrg,
    /// The token's role is not in the allowlist (for the verifier or for this route).
    #[error("the token role is not allowed here")]
    RoleNotAllowed,
    /// The configuration has no verification key outside development.
    #[error("no verification key configured: set {0}")]
    MissingKey(&'static str),
    /// The configuration asks for something insecure that its environment forbids.
    #[error("insecure configuration refused: {0}")]
    InsecureConfig(&'static str),
    /// A key could not be parsed or does not fit its algorithm. Never contains key material.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// Any other configuration problem (bad claim path, bad environment value, …).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

impl AuthError {
    /// The stable machine-readable code, used as the JSON body's `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::MalformedHeader => "malformed_authorization_header",
            Self::MalformedToken => "malformed_token",
            Self::InvalidSignature => "invalid_signature",
            Self::DisallowedAlgorithm => "disallowed_algorithm",
            Self::UnknownKeyId => "unknown_key_id",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongAudience => "invalid_audience",
            Self::WrongIssuer => "invalid_issuer",
            Self::TokenTooLarge => "token_too_large",
            Self::InvalidClaim(_) => "invalid_claim",
            Self::InvalidOrg => "invalid_org",
            Self::RoleNotAllowed => "role_not_allowed",
            Self::MissingKey(_)
            | Self::InsecureConfig(_)
            | Self::InvalidKey(_)
            | Self::InvalidConfig(_) => "server_misconfigured",
        }
    }

    /// The HTTP status: 401 for failed authentication, 403 for a valid token that is not allowed,
    /// 500 for configuration errors (which should never reach a request).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidOrg | Self::RoleNotAllowed => StatusCode::FORBIDDEN,
            Self::MissingKey(_)
            | Self::InsecureConfig(_)
            | Self::InvalidKey(_)
            | Self::InvalidConfig(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// `true` for errors raised while building a configuration rather than by a request.
    pub fn is_config_error(&self) -> bool {
        self.status() == StatusCode::INTERNAL_SERVER_ERROR
    }

    /// The RFC 6750 challenge: bare `Bearer` when no token was presented, `error="invalid_request"`
    /// for a malformed header, `error="invalid_token"` for a presented token that failed,
    /// `error="insufficient_scope"` for a valid token that is not allowed.
    pub fn www_authenticate(&self) -> Option<HeaderValue> {
        let value = match self {
            Self::MissingToken => "Bearer",
            Self::MalformedHeader => {
                "Bearer error=\"invalid_request\", error_description=\"malformed authorization header\""
            }
            Self::InvalidOrg | Self::RoleNotAllowed => {
                "Bearer error=\"insufficient_scope\", error_description=\"the token is not allowed here\""
            }
            e if e.is_config_error() => return None,
            _ => "Bearer error=\"invalid_token\"",
        };
        Some(HeaderValue::from_static(value))
    }

    /// A human message safe for a response body (no token, claim value or secret).
    pub fn public_message(&self) -> &'static str {
        match self {
            Self::MissingToken => "a bearer token is required",
            Self::MalformedHeader => {
                "the Authorization header must be exactly one 'Bearer <token>' value"
            }
            Self::MalformedToken => "the token is malformed",
            Self::InvalidSignature => "the token signature is invalid",
            Self::DisallowedAlgorithm => "the token algorithm is not allowed",
            Self::UnknownKeyId => "the token was signed by an unknown key",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::WrongAudience => "the token audience is not accepted",
            Self::WrongIssuer => "the token issuer is not accepted",
            Self::TokenTooLarge => "the token is too large",
            Self::InvalidClaim(_) => "a required claim is missing or invalid",
            Self::InvalidOrg => "the token carries no valid organisation id",
            Self::RoleNotAllowed => "the token role is not allowed here",
            _ => "the server is misconfigured",
        }
    }
}

impl ToErrorResponse for AuthError {
    fn to_error_response(&self) -> ErrorResponse {
        let response = ErrorResponse::new(self.status(), self.code(), self.public_message());
        match self.www_authenticate() {
            Some(v) => response.with_www_authenticate(v),
            None => response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_errors() -> Vec<AuthError> {
        vec![
            AuthError::MissingToken,
            AuthError::MalformedHeader,
            AuthError::MalformedToken,
            AuthError::InvalidSignature,
            AuthError::DisallowedAlgorithm,
            AuthError::UnknownKeyId,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::WrongAudience,
            AuthError::WrongIssuer,
            AuthError::TokenTooLarge,
            AuthError::InvalidClaim("sub"),
            AuthError::InvalidOrg,
            AuthError::RoleNotAllowed,
        ]
    }

    #[test]
    fn authentication_failures_are_401_with_a_challenge() {
        for e in request_errors() {
            let r = e.to_error_response();
            let www = r.www_authenticate().expect("challenge").to_str().unwrap();
            assert!(www.starts_with("Bearer"), "{e:?}");
            match e {
                AuthError::InvalidOrg | AuthError::RoleNotAllowed => {
                    assert_eq!(r.status(), StatusCode::FORBIDDEN);
                    assert!(www.contains("insufficient_scope"));
                }
                AuthError::MissingToken => {
                    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
                    assert_eq!(www, "Bearer");
                }
                AuthError::MalformedHeader => assert!(www.contains("invalid_request")),
                _ => {
                    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{e:?}");
                    assert!(www.contains("error=\"invalid_token\""), "{e:?}");
                }
            }
        }
    }

    #[test]
    fn codes_are_distinct_and_bodies_are_json() {
        let errors = request_errors();
        let mut codes: Vec<_> = errors.iter().map(AuthError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), errors.len());
        for e in errors {
            let v: serde_json::Value = serde_json::from_str(&e.to_error_response().body()).unwrap();
            assert_eq!(v["error"], e.code());
            assert_eq!(v["message"], e.public_message());
        }
    }

    #[test]
    fn config_errors_are_500_without_challenge() {
        let e = AuthError::MissingKey("JWT_SECRET or JWT_JWKS_FILE");
        assert!(e.is_config_error());
        assert_eq!(
            e.to_error_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert!(e.www_authenticate().is_none());
    }
}
