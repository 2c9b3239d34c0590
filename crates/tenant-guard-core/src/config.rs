//! Configuration from environment variables: [`Verifier::from_env`] and [`Verifier::from_lookup`].
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `APP_ENV` | `development`, `test` or `production`; anything else or unset is production | `production` |
//! | `JWT_SECRET` | HMAC secret (HS256/384/512), its bytes; at least 32 outside development | unset |
//! | `JWT_SECRET_IS_BASE64` | `true` when `JWT_SECRET` is base64 | `false` |
//! | `JWT_JWKS_FILE` | path to a JWKS JSON file | unset |
//! | `JWT_JWKS` | inline JWKS JSON | unset |
//! | `JWT_PUBLIC_KEY_FILE` | path to a PEM public key (RSA, P-256, P-384, Ed25519) | unset |
//! | `JWT_ALGORITHMS` | comma-separated allowlist, e.g. `ES256,RS256` | every algorithm a key can verify |
//! | `JWT_AUDIENCE` | required `aud`; comma-separated for several | `authenticated` |
//! | `JWT_ISSUER` | required `iss` | not checked |
//! | `ORG_CLAIM` | dotted path of the org claim (never under the user-editable `user_metadata`) | `org_id` |
//! | `ROLE_CLAIM` | dotted path of the role claim | `role` |
//! | `JWT_ALLOWED_ROLES` | comma-separated roles a token may name | `authenticated` |
//! | `JWT_LEEWAY_SECONDS` | clock leeway, at most 300 (a larger one needs `dangerous_allow_large_leeway` in code) | `30` |
//! | `JWT_MAX_TOKEN_BYTES` | longest accepted token | `8192` |
//! | `JWT_CACHE_SIZE` | verified-token cache entries (0 = off) | `1000` |
//! | `JWT_COOKIE_NAME` | also read the token from this cookie (mind CSRF) | unset |
//! | `JWT_JWKS_URL` | remote JWKS, refreshed in the background (feature `jwks-remote`) | unset |
//!
//! Empty values count as unset. With no key at all the build fails with
//! [`AuthError::MissingKey`] naming `JWT_SECRET or JWT_JWKS_FILE`, in every environment: the
//! development-only options ([`crate::dangerous`]) are code, never environment variables.
//!
//! [`Verifier::from_env`]: crate::Verifier::from_env
//! [`Verifier::from_lookup`]: crate::Verifier::from_lookup
//! [`AuthError::MissingKey`]: crate::AuthError::MissingKey

use std::time::Duration;

use crate::algorithm::Algorithm;
use crate::environment::{DEFAULT_ENV_VAR, Environment};
use crate::error::AuthError;
use crate::keys::KeySet;
use crate::verifier::{Verifier, VerifierBuilder};

/// HMAC secret.
pub const JWT_SECRET: &str = "JWT_SECRET";
/// `true` when the HMAC secret is base64.
pub const JWT_SECRET_IS_BASE64: &str = "JWT_SECRET_IS_BASE64";
/// Path to a JWKS file.
pub const JWT_JWKS_FILE: &str = "JWT_JWKS_FILE";
/// Inline JWKS JSON.
pub const JWT_JWKS: &str = "JWT_JWKS";
/// Path to a PEM public key.
pub const JWT_PUBLIC_KEY_FILE: &str = "JWT_PUBLIC_KEY_FILE";
/// Comma-separated algorithm allowlist.
pub const JWT_ALGORITHMS: &str = "JWT_ALGORITHMS";
/// Required audience(s).
pub const JWT_AUDIENCE: &str = "JWT_AUDIENCE";
/// Required issuer.
pub const JWT_ISSUER: &str = "JWT_ISSUER";
/// Dotted org claim path.
pub const ORG_CLAIM: &str = "ORG_CLAIM";
/// Dotted role claim path.
pub const ROLE_CLAIM: &str = "ROLE_CLAIM";
/// Comma-separated allowed roles.
pub const JWT_ALLOWED_ROLES: &str = "JWT_ALLOWED_ROLES";
/// Clock leeway in seconds.
pub const JWT_LEEWAY_SECONDS: &str = "JWT_LEEWAY_SECONDS";
/// Maximum token length in bytes.
pub const JWT_MAX_TOKEN_BYTES: &str = "JWT_MAX_TOKEN_BYTES";
/// Verified-token cache size.
pub const JWT_CACHE_SIZE: &str = "JWT_CACHE_SIZE";
/// Cookie to read the token from.
pub const JWT_COOKIE_NAME: &str = "JWT_COOKIE_NAME";
/// URL of a remote JWKS (feature `jwks-remote`).
pub const JWT_JWKS_URL: &str = "JWT_JWKS_URL";

impl VerifierBuilder {
    /// A builder configured from the process environment (see [the table](crate::config)), to
    /// which code can add more (for instance a development-only option) before building.
    pub fn from_env() -> Result<Self, AuthError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// A builder configured from variables read through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AuthError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let environment =
            get(DEFAULT_ENV_VAR).map_or(Environment::Production, |v| Environment::parse(&v));
        let mut builder = Verifier::builder(environment);
        if let Some(secret) = get(JWT_SECRET) {
            builder = if parse_bool(JWT_SECRET_IS_BASE64, get(JWT_SECRET_IS_BASE64))? {
                builder.hmac_secret_base64(&secret)
            } else {
                builder.hmac_secret(secret)
            };
        }
        if let Some(path) = get(JWT_JWKS_FILE) {
            let keys =
                KeySet::from_jwks_file(path.trim()).map_err(|e| name_it(JWT_JWKS_FILE, e))?;
            builder = builder.key_set(keys);
        }
        if let Some(json) = get(JWT_JWKS) {
            let keys = KeySet::from_jwks_json(&json).map_err(|e| name_it(JWT_JWKS, e))?;
            builder = builder.key_set(keys);
        }
        if let Some(path) = get(JWT_PUBLIC_KEY_FILE) {
            let pem = std::fs::read(path.trim()).map_err(|e| {
                AuthError::InvalidConfig(format!("{JWT_PUBLIC_KEY_FILE}: cannot read {path}: {e}"))
            })?;
            let mut keys = KeySet::new();
            keys.add_pem(&pem, None)
                .map_err(|e| name_it(JWT_PUBLIC_KEY_FILE, e))?;
            builder = builder.key_set(keys);
        }
        if let Some(list) = get(JWT_ALGORITHMS) {
            let algs = split_list(&list)
                .map(|a| {
                    a.parse::<Algorithm>().map_err(|e| {
                        AuthError::InvalidConfig(format!("{JWT_ALGORITHMS}: {a:?}: {e}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            builder = builder.algorithms(algs);
        }
        if let Some(aud) = get(JWT_AUDIENCE) {
            builder = builder.audiences(split_list(&aud).map(str::to_owned));
        }
        if let Some(iss) = get(JWT_ISSUER) {
            builder = builder.issuer(iss.trim());
        }
        if let Some(path) = get(ORG_CLAIM) {
            builder = builder.org_claim(path.trim());
        }
        if let Some(path) = get(ROLE_CLAIM) {
            builder = builder.role_claim(path.trim());
        }
        if let Some(roles) = get(JWT_ALLOWED_ROLES) {
            builder = builder.allowed_roles(split_list(&roles).map(str::to_owned));
        }
        if let Some(n) = parse_number(JWT_LEEWAY_SECONDS, get(JWT_LEEWAY_SECONDS))? {
            builder = builder.leeway(Duration::from_secs(n));
        }
        if let Some(n) = parse_number(JWT_MAX_TOKEN_BYTES, get(JWT_MAX_TOKEN_BYTES))? {
            builder = builder.max_token_len(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(n) = parse_number(JWT_CACHE_SIZE, get(JWT_CACHE_SIZE))? {
            builder = builder.cache_capacity(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(name) = get(JWT_COOKIE_NAME) {
            builder = builder.cookie_token(name.trim());
        }
        if let Some(url) = get(JWT_JWKS_URL) {
            #[cfg(feature = "jwks-remote")]
            {
                builder = builder.jwks_url(url.trim());
            }
            #[cfg(not(feature = "jwks-remote"))]
            return Err(AuthError::InvalidConfig(format!(
                "{JWT_JWKS_URL} is set ({url}) but tenant-guard-core was built without the `jwks-remote` feature"
            )));
        }
        Ok(builder)
    }
}

fn name_it(var: &str, e: AuthError) -> AuthError {
    match e {
        AuthError::InvalidKey(m) => AuthError::InvalidKey(format!("{var}: {m}")),
        AuthError::InvalidConfig(m) => AuthError::InvalidConfig(format!("{var}: {m}")),
        other => other,
    }
}

fn split_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_bool(name: &str, value: Option<String>) -> Result<bool, AuthError> {
    match value.as_deref().map(str::trim) {
        None => Ok(false),
        Some(v)
            if ["true", "1", "yes", "on"]
                .iter()
                .any(|t| v.eq_ignore_ascii_case(t)) =>
        {
            Ok(true)
        }
        Some(v)
            if ["false", "0", "no", "off"]
                .iter()
                .any(|t| v.eq_ignore_ascii_case(t)) =>
        {
            Ok(false)
        }
        Some(v) => Err(AuthError::InvalidConfig(format!(
            "{name} must be true or false, not {v:?}"
        ))),
    }
}

fn parse_number(name: &str, value: Option<String>) -> Result<Option<u64>, AuthError> {
    value
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                AuthError::InvalidConfig(format!(
                    "{name} must be a non-negative integer, not {v:?}"
                ))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_and_numbers() {
        assert_eq!(parse_bool("X", None), Ok(false));
        assert_eq!(parse_bool("X", Some("TRUE".into())), Ok(true));
        assert_eq!(parse_bool("X", Some(" 0 ".into())), Ok(false));
        assert!(
            parse_bool("X", Some("maybe".into()))
                .unwrap_err()
                .to_string()
                .contains("X")
        );
        assert_eq!(parse_number("N", Some("30".into())), Ok(Some(30)));
        assert_eq!(parse_number("N", None), Ok(None));
        assert!(parse_number("N", Some("-1".into())).is_err());
        assert_eq!(split_list(" a, ,b ,").collect::<Vec<_>>(), ["a", "b"]);
    }
}
