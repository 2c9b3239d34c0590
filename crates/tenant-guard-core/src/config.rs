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
//! | `JWT_ORG_ID_KIND` | kind of org id the org claim (and a header-selected org) holds: `uuid`, `integer` or `text` (see [`crate::org_id`]); anything else is a build error | `uuid` |
//! | `ROLE_CLAIM` | dotted path of the role claim | `role` |
//! | `JWT_ALLOWED_ROLES` | comma-separated roles a token may name | `authenticated` |
//! | `JWT_LEEWAY_SECONDS` | clock leeway, at most 300 (a larger one needs `dangerous_allow_large_leeway` in code) | `30` |
//! | `JWT_MAX_TOKEN_BYTES` | longest accepted token | `8192` |
//! | `JWT_CACHE_SIZE` | verified-token cache entries (0 = off) | `1000` |
//! | `JWT_COOKIE_NAME` | also read the token from this cookie (mind CSRF) | unset |
//! | `JWT_JWKS_URL` | remote JWKS, refreshed in the background (feature `jwks-remote`) | unset |
//! | `JWT_OIDC_ISSUER` | OpenID Connect issuer: `iss` must equal it, keys from its discovery document's `jwks_uri` (feature `jwks-remote`) | unset |
//! | `JWT_ROLE_ARRAY` | how an array role claim is read: `refuse`, `first` (first allowed) or `exactly_one` | `refuse` |
//! | `JWT_DEFAULT_ROLE` | the role of a token that names none (must be allowed) | unset: such tokens are refused |
//! | `JWT_ROLE_MAP` | IdP role → Postgres role, e.g. `admin=org_admin,member=authenticated` | unset |
//! | `JWT_ISSUERS` | more issuers, as a JSON array of profiles (see below) | unset |
//!
//! Claim paths (`ORG_CLAIM`, `ROLE_CLAIM`) are dotted (`realm_access.roles`), with `["quoted"]`
//! keys for names holding dots (`["https://example.com/roles"]`), or a JSON Pointer
//! (`/https:~1~1example.com~1roles`).
//!
//! # Several issuers: `JWT_ISSUERS`
//!
//! The variables above configure the first issuer profile (it is left out when it has no key and
//! no issuer); `JWT_ISSUERS` adds one profile per array element. Every profile then needs a
//! distinct `issuer`, and tokens are routed by their `iss`. Members (only `issuer` is required;
//! unknown members are errors):
//!
//! ```json
//! [{"issuer": "https://example.eu.auth0.com/", "oidc": true,
//!   "audience": ["https://api.example.com"],
//!   "org_claim": ["https://example.com/org_id"], "role_claim": ["https://example.com/roles"],
//!   "role_array": "first", "default_role": "authenticated",
//!   "role_map": {"admin": "org_admin"}, "allowed_roles": ["authenticated", "org_admin"]},
//!  {"issuer": "partner-hs256", "secret_env": "PARTNER_JWT_SECRET", "algorithms": ["HS256"]}]
//! ```
//!
//! Keys: `oidc` (discovery from `issuer`), `jwks_url`, `jwks_file`, `public_key_file`, or
//! `secret_env` (the *name* of the variable holding an HMAC secret, so no secret sits in the JSON;
//! `secret_is_base64` as for `JWT_SECRET`). Paths are a string (the syntax above) or an array of
//! keys. `audience` is a string or an array. `"org_from_request": true`: tokens may carry no org
//! claim (see [`IssuerProfile::org_from_request`](crate::IssuerProfile::org_from_request)).
//! `"org_id_kind": "uuid" | "integer" | "text"` as `JWT_ORG_ID_KIND` (default `uuid`; it is not
//! inherited from `JWT_ORG_ID_KIND`).
//!
//! Empty values count as unset. With no key at all the build fails with
//! [`AuthError::MissingKey`] naming `JWT_SECRET, JWT_JWKS_FILE, JWT_JWKS_URL or JWT_OIDC_ISSUER`,
//! in every environment: the development-only options ([`crate::dangerous`]) are code, never
//! environment variables.
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

mod issuers;

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
/// Kind of org id: `uuid`, `integer` or `text`.
pub const JWT_ORG_ID_KIND: &str = "JWT_ORG_ID_KIND";
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
/// OpenID Connect issuer, for discovery (feature `jwks-remote`).
pub const JWT_OIDC_ISSUER: &str = "JWT_OIDC_ISSUER";
/// How an array role claim is read (`refuse`, `first`, `exactly_one`).
pub const JWT_ROLE_ARRAY: &str = "JWT_ROLE_ARRAY";
/// The role of a token that names none.
pub const JWT_DEFAULT_ROLE: &str = "JWT_DEFAULT_ROLE";
/// IdP role names mapped to Postgres roles (`from=to,…`).
pub const JWT_ROLE_MAP: &str = "JWT_ROLE_MAP";
/// More issuer profiles, as a JSON array.
pub const JWT_ISSUERS: &str = "JWT_ISSUERS";

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
        if let Some(kind) = get(JWT_ORG_ID_KIND) {
            builder = builder.org_id_kind(parse_org_id_kind(JWT_ORG_ID_KIND, &kind)?);
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
            return Err(no_remote_feature(JWT_JWKS_URL, &url));
        }
        if let Some(issuer) = get(JWT_OIDC_ISSUER) {
            let issuer = issuer.trim();
            if let Some(other) = get(JWT_ISSUER).filter(|o| o.trim() != issuer) {
                return Err(AuthError::InvalidConfig(format!(
                    "{JWT_ISSUER} ({other}) and {JWT_OIDC_ISSUER} ({issuer}) differ"
                )));
            }
            if get(JWT_JWKS_URL).is_some() {
                return Err(AuthError::InvalidConfig(format!(
                    "set either {JWT_JWKS_URL} or {JWT_OIDC_ISSUER}, not both"
                )));
            }
            #[cfg(feature = "jwks-remote")]
            {
                builder = builder.oidc_issuer(issuer);
            }
            #[cfg(not(feature = "jwks-remote"))]
            return Err(no_remote_feature(JWT_OIDC_ISSUER, issuer));
        }
        if let Some(mode) = get(JWT_ROLE_ARRAY) {
            builder = builder.role_array(mode.parse().map_err(|e| name_it(JWT_ROLE_ARRAY, e))?);
        }
        if let Some(role) = get(JWT_DEFAULT_ROLE) {
            builder = builder.default_role(role.trim());
        }
        if let Some(map) = get(JWT_ROLE_MAP) {
            for (from, to) in parse_role_map(&map)? {
                builder = builder.map_role(from, to);
            }
        }
        if let Some(json) = get(JWT_ISSUERS) {
            for profile in issuers::parse(&json, &get)? {
                builder = builder.add_issuer(profile);
            }
        }
        Ok(builder)
    }
}

#[cfg(not(feature = "jwks-remote"))]
fn no_remote_feature(var: &str, value: &str) -> AuthError {
    AuthError::InvalidConfig(format!(
        "{var} is set ({value}) but tenant-guard-core was built without the `jwks-remote` feature"
    ))
}

/// `from=to,from=to`: IdP role names (any text without `=` or `,`) to Postgres roles.
fn parse_role_map(list: &str) -> Result<Vec<(&str, &str)>, AuthError> {
    split_list(list)
        .map(|pair| match pair.split_once('=') {
            Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                Ok((from.trim(), to.trim()))
            }
            _ => Err(AuthError::InvalidConfig(format!(
                "{JWT_ROLE_MAP}: {pair:?} is not idp_role=postgres_role"
            ))),
        })
        .collect()
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

/// An org id kind name (`uuid`, `integer`, `text`); anything else is an error naming `what`.
pub(crate) fn parse_org_id_kind(what: &str, value: &str) -> Result<crate::OrgIdKind, AuthError> {
    value.parse().map_err(|_| {
        AuthError::InvalidConfig(format!(
            "{what} must be uuid, integer or text, not {value:?}"
        ))
    })
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
        assert_eq!(
            parse_role_map("admin=org_admin, Task.Write = authenticated"),
            Ok(vec![
                ("admin", "org_admin"),
                ("Task.Write", "authenticated")
            ])
        );
        assert!(parse_role_map("admin").is_err());
        assert!(parse_role_map("=x").is_err());
    }

    #[test]
    fn org_id_kinds_fail_closed() {
        use crate::OrgIdKind;
        let build = |kind: &'static str| {
            VerifierBuilder::from_lookup(move |name| match name {
                JWT_SECRET => Some("s".repeat(40)),
                JWT_ORG_ID_KIND => Some(kind.to_owned()),
                _ => None,
            })
            .map(|b| b.primary.org_id_kind)
        };
        assert_eq!(build("integer"), Ok(OrgIdKind::Integer));
        assert_eq!(build(" TEXT "), Ok(OrgIdKind::Text));
        assert_eq!(build("uuid"), Ok(OrgIdKind::Uuid));
        assert_eq!(build(""), Ok(OrgIdKind::Uuid), "empty is unset");
        for bad in ["int", "bigint", "uuid,text", "slug"] {
            let err = build(bad).unwrap_err().to_string();
            assert!(err.contains(JWT_ORG_ID_KIND), "{bad}: {err}");
        }
    }
}
