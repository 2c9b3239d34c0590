//! The verifier: built once at startup, shared by every request.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use http::HeaderMap;

use crate::algorithm::{AlgSet, Algorithm, KeyKind};
use crate::cache::{DEFAULT_CACHE_CAPACITY, TokenCache};
use crate::claims::{self, ClaimPath, ClaimRules};
use crate::dangerous::DemoPrincipal;
use crate::environment::Environment;
use crate::error::AuthError;
use crate::keys::{KeySet, MIN_HMAC_SECRET_LEN};
use crate::principal::Principal;
use crate::role::Role;
use crate::token;

/// Default maximum token length in bytes, checked before any decoding.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

/// Default clock leeway for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Largest clock leeway [`VerifierBuilder::build`] accepts without
/// [`VerifierBuilder::dangerous_allow_large_leeway`]: a larger one keeps expired tokens alive.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Default required audience (Supabase's).
pub const DEFAULT_AUDIENCE: &str = "authenticated";

/// What [`AuthError::MissingKey`] asks for when no key is configured.
const MISSING_KEY: &str = "JWT_SECRET or JWT_JWKS_FILE";

type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Verifies bearer tokens and maps their claims to a [`Principal`].
///
/// Cheap to clone (one `Arc`) and `Send + Sync`: build it once at startup and share it. The key set
/// can be replaced at runtime with [`Verifier::set_keys`]; requests never wait for a lock to read it.
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
    rules: ClaimRules,
    allowed: AlgSet,
    max_token_len: usize,
    cache_capacity: usize,
    cache_hmac: bool,
    cookie: Option<Box<str>>,
    unverified: bool,
    demo: Option<Principal>,
    clock: Option<Clock>,
    state: ArcSwap<KeyState>,
    #[cfg(feature = "jwks-remote")]
    remote: Option<crate::remote::Remote>,
}

/// The swappable part: the keys, and the cache of tokens they verified.
struct KeyState {
    keys: KeySet,
    cache: Option<TokenCache>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &*self.0;
        f.debug_struct("Verifier")
            .field("environment", &inner.environment)
            .field("audiences", &inner.rules.audiences)
            .field("issuer", &inner.rules.issuer)
            .field("org_claim", &inner.rules.org_path.to_string())
            .field("role_claim", &inner.rules.role_path.to_string())
            .field("allowed_roles", &inner.rules.allowed_roles)
            .field("algorithms", &inner.allowed)
            .field("keys", &inner.state.load().keys)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Starts a configuration for `environment`.
    pub fn builder(environment: Environment) -> VerifierBuilder {
        VerifierBuilder::new(environment)
    }

    /// Builds a verifier from the process environment; see [`crate::config`] for the variables.
    ///
    /// Fails closed: an unset `APP_ENV` means production, and production without a key is an
    /// error naming the variable to set.
    pub fn from_env() -> Result<Self, AuthError> {
        VerifierBuilder::from_env()?.build()
    }

    /// Like [`Verifier::from_env`], reading variables through `lookup` (for tests and for
    /// configuration systems other than the process environment).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use tenant_guard_core::Verifier;
    ///
    /// let vars = HashMap::from([("APP_ENV", "production")]);
    /// let err = Verifier::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap_err();
    /// assert!(err.to_string().contains("JWT_SECRET"));
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AuthError> {
        VerifierBuilder::from_lookup(lookup)?.build()
    }

    /// The environment this verifier was built for.
    pub fn environment(&self) -> Environment {
        self.0.environment
    }

    /// Authenticates a request from its headers: exactly one `Authorization: Bearer <token>`
    /// (scheme case-insensitive), or the opted-in cookie when there is no `Authorization` header.
    ///
    /// Nothing else is read: no query string, no `x-user-id`-style header. Rejections are logged
    /// at debug level with their code, never with the token.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let inner = &*self.0;
        let result = match crate::extract::token_from_headers(headers, inner.cookie.as_deref()) {
            Ok(token) => self.verify_candidate(token, AuthError::MalformedHeader),
            Err(AuthError::MissingToken) if inner.demo.is_some() => {
                tracing::warn!(
                    "no token sent: using the development demo principal (dangerous_demo_principal)"
                );
                return inner.demo.clone().ok_or(AuthError::MissingToken);
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            tracing::debug!(error = e.code(), "request rejected");
        }
        result
    }

    /// Verifies a bare token (the part after `Bearer `).
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let result = self.verify_candidate(token.as_bytes(), AuthError::MalformedToken);
        if let Err(e) = &result {
            tracing::debug!(error = e.code(), "bearer token rejected");
        }
        result
    }

    /// Verifies a token candidate. Its characters are only scanned when it fails (or in the
    /// unverified development mode): a candidate outside the token68 alphabet is then reported as
    /// `bad_chars`, whatever step refused it.
    fn verify_candidate(&self, token: &[u8], bad_chars: AuthError) -> Result<Principal, AuthError> {
        let result = self.verify_token(token);
        #[cfg(feature = "jwks-remote")]
        if let (Err(AuthError::UnknownKeyId), Some(remote)) = (&result, &self.0.remote) {
            remote.nudge();
        }
        match result {
            Ok(p) if !self.0.unverified || crate::extract::is_token68(token) => Ok(p),
            Ok(_) => Err(bad_chars),
            Err(AuthError::TokenTooLarge) => Err(AuthError::TokenTooLarge),
            Err(_) if !crate::extract::is_token68(token) => Err(bad_chars),
            Err(e) => Err(e),
        }
    }

    fn verify_token(&self, token: &[u8]) -> Result<Principal, AuthError> {
        let inner = &*self.0;
        if token.len() > inner.max_token_len {
            return Err(AuthError::TokenTooLarge);
        }
        let state = inner.state.load();
        let now = inner.now();
        // A hit means these exact bytes passed every check with the current keys.
        if let Some(cache) = &state.cache
            && let Some((principal, times)) = cache.get(token)
        {
            return match times.check(now, inner.rules.leeway) {
                Ok(()) => Ok(principal),
                Err(e) => {
                    cache.remove(token);
                    Err(e)
                }
            };
        }
        let bytes = token;
        let token = std::str::from_utf8(bytes).map_err(|_| AuthError::MalformedToken)?;
        let parts = token::split(token).map_err(|e| token::unsecured_error(token).unwrap_or(e))?;
        let mut header_buf = [0u8; token::HEADER_BUF];
        let header = token::parse_header(parts.header, &mut header_buf)?;
        if !inner.allowed.contains(header.alg) {
            return Err(AuthError::DisallowedAlgorithm);
        }
        if inner.unverified {
            tracing::warn!(
                "accepting a token WITHOUT checking its signature (dangerous_accept_unverified_tokens)"
            );
        } else {
            state.keys.verify_signature(
                header.alg,
                header.kid.as_deref(),
                parts.message.as_bytes(),
                parts.signature,
            )?;
        }
        let claims_json = token::decode_payload(parts.payload)?;
        let checked = claims::check(&claims_json, &inner.rules, now)?;
        let sub: Box<str> = checked.sub.into();
        let times = checked.times;
        let principal = Principal::from_verified(
            sub,
            checked.org,
            checked.role,
            claims_json,
            u64::try_from(times.exp).unwrap_or(0),
        );
        if !inner.unverified
            && (header.alg.is_asymmetric() || inner.cache_hmac)
            && let Some(cache) = &state.cache
        {
            cache.insert(bytes, principal.clone(), times);
        }
        Ok(principal)
    }

    /// Replaces the key set (e.g. after a rotation). Requests in flight finish with the keys they
    /// started with; the verified-token cache starts empty with the new keys.
    ///
    /// The new set is checked like one given to the builder (key types, allowed algorithms,
    /// HMAC secret length outside development); on error the old keys stay.
    pub fn set_keys(&self, keys: KeySet) -> Result<(), AuthError> {
        let inner = &*self.0;
        if keys.is_empty() && !inner.unverified && inner.demo.is_none() {
            return Err(AuthError::MissingKey(MISSING_KEY));
        }
        #[cfg(feature = "jwks-remote")]
        if let Some(remote) = &inner.remote {
            let mut sources = remote
                .sources
                .lock()
                .map_err(|_| AuthError::InvalidConfig("key sources lock poisoned".into()))?;
            let mut combined = keys.clone();
            combined.extend(sources.remote.clone());
            inner.install(&combined)?;
            sources.local = keys;
            return Ok(());
        }
        inner.install(&keys)
    }

    /// Fetches the remote JWKS now (blocking) and installs it when it changed. Requests keep
    /// using the current keys meanwhile; on failure they stay.
    #[cfg(feature = "jwks-remote")]
    pub fn refresh_jwks(&self) -> Result<(), AuthError> {
        use crate::remote::Refresh as _;
        self.0.refresh_remote().map(|_| ())
    }

    /// The current keys (restricted to the allowed algorithms).
    pub fn key_set(&self) -> KeySet {
        self.0.state.load().keys.clone()
    }

    /// Number of tokens in the verified-token cache (0 when it is off).
    pub fn cached_tokens(&self) -> usize {
        self.0
            .state
            .load()
            .cache
            .as_ref()
            .map_or(0, TokenCache::len)
    }
}

impl Inner {
    /// Checks `keys` and makes them current, with an empty cache.
    fn install(&self, keys: &KeySet) -> Result<(), AuthError> {
        let state = prepare_keys(
            self.environment,
            keys,
            self.allowed,
            self.cache_capacity,
            self.cache_hmac,
        )?;
        self.state.store(Arc::new(state));
        Ok(())
    }

    fn now(&self) -> i64 {
        let secs = match &self.clock {
            Some(clock) => clock(),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        i64::try_from(secs).unwrap_or(i64::MAX)
    }
}

#[cfg(feature = "jwks-remote")]
impl crate::remote::Refresh for Inner {
    fn refresh_remote(&self) -> Result<Duration, AuthError> {
        let Some(remote) = &self.remote else {
            return Err(AuthError::InvalidConfig("no remote JWKS configured".into()));
        };
        let (body, ttl) = crate::remote::fetch(&remote.config).map_err(|e| {
            AuthError::InvalidConfig(format!(
                "cannot fetch the JWKS from {}: {e}",
                remote.config.display_url()
            ))
        })?;
        let mut sources = remote
            .sources
            .lock()
            .map_err(|_| AuthError::InvalidConfig("key sources lock poisoned".into()))?;
        if body == sources.body {
            return Ok(ttl);
        }
        let fetched = KeySet::from_remote_jwks_json(&body)?;
        let mut combined = sources.local.clone();
        combined.extend(fetched.clone());
        self.install(&combined)?;
        tracing::info!(keys = fetched.len(), "installed a new remote JWKS");
        sources.remote = fetched;
        sources.body = body;
        Ok(ttl)
    }
}

fn prepare_keys(
    environment: Environment,
    keys: &KeySet,
    allowed: AlgSet,
    cache_capacity: usize,
    cache_hmac: bool,
) -> Result<KeyState, AuthError> {
    for key in keys.keys() {
        if key.kind == KeyKind::Hmac && key.secret_len < MIN_HMAC_SECRET_LEN {
            if environment.is_development() {
                tracing::warn!(
                    "the HMAC secret is shorter than {MIN_HMAC_SECRET_LEN} bytes (refused outside development)"
                );
            } else {
                return Err(AuthError::InvalidKey(format!(
                    "the HMAC secret must be at least {MIN_HMAC_SECRET_LEN} bytes"
                )));
            }
        }
    }
    let restricted = keys.restricted_to(allowed);
    if restricted.is_empty() && !keys.is_empty() {
        return Err(AuthError::InvalidConfig(format!(
            "no configured key can verify any allowed algorithm ({:?})",
            allowed
        )));
    }
    let cache = if restricted.has_asymmetric_keys() || cache_hmac {
        TokenCache::new(cache_capacity)
    } else {
        None
    };
    Ok(KeyState {
        keys: restricted,
        cache,
    })
}

/// Builds a [`Verifier`]; see [`Verifier::builder`].
///
/// Every method takes and returns the builder; problems (an unreadable key, a bad claim path, an
/// insecure option outside development) surface as one error from [`VerifierBuilder::build`].
pub struct VerifierBuilder {
    environment: Environment,
    keys: KeySet,
    error: Option<AuthError>,
    algorithms: Option<AlgSet>,
    audiences: Vec<String>,
    issuer: Option<String>,
    org_claim: String,
    role_claim: String,
    allowed_roles: Vec<String>,
    leeway: Duration,
    max_token_len: usize,
    cache_capacity: usize,
    cache_hmac: bool,
    cookie: Option<String>,
    unverified: bool,
    demo: Option<DemoPrincipal>,
    clock: Option<Clock>,
    user_editable_claims: bool,
    large_leeway: bool,
    #[cfg(feature = "jwks-remote")]
    remote: Option<crate::remote::RemoteJwks>,
}

impl std::fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("environment", &self.environment)
            .field("keys", &self.keys)
            .field("audiences", &self.audiences)
            .field("issuer", &self.issuer)
            .field("org_claim", &self.org_claim)
            .field("role_claim", &self.role_claim)
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    fn new(environment: Environment) -> Self {
        Self {
            environment,
            keys: KeySet::new(),
            error: None,
            algorithms: None,
            audiences: vec![DEFAULT_AUDIENCE.to_owned()],
            issuer: None,
            org_claim: "org_id".to_owned(),
            role_claim: "role".to_owned(),
            allowed_roles: vec!["authenticated".to_owned()],
            leeway: DEFAULT_LEEWAY,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            cache_hmac: false,
            cookie: None,
            unverified: false,
            demo: None,
            clock: None,
            user_editable_claims: false,
            large_leeway: false,
            #[cfg(feature = "jwks-remote")]
            remote: None,
        }
    }

    fn keep(mut self, result: Result<(), AuthError>) -> Self {
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
        self
    }

    /// Accepts HS256/384/512 tokens signed with this shared secret (its raw bytes). Outside
    /// development it must be at least 32 bytes long.
    #[must_use]
    pub fn hmac_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        let result = self.keys.add_hmac_secret(secret.as_ref(), None);
        self.keep(result)
    }

    /// Like [`VerifierBuilder::hmac_secret`] with the secret given in base64 (either alphabet).
    #[must_use]
    pub fn hmac_secret_base64(mut self, secret: &str) -> Self {
        let result = self.keys.add_hmac_secret_base64(secret, None);
        self.keep(result)
    }

    /// Adds a PEM public key (RSA, P-256, P-384 or Ed25519); see [`KeySet::add_pem`].
    #[must_use]
    pub fn public_key_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        let result = self.keys.add_pem(pem.as_ref(), None);
        self.keep(result)
    }

    /// Adds a PEM public key that tokens select with `kid`.
    #[must_use]
    pub fn public_key_pem_with_kid(mut self, kid: &str, pem: impl AsRef<[u8]>) -> Self {
        let result = self.keys.add_pem(pem.as_ref(), Some(kid));
        self.keep(result)
    }

    /// Adds the signing keys of a JWK set (or a single JWK); see [`KeySet::add_jwks_json`].
    #[must_use]
    pub fn jwks_json(mut self, json: &str) -> Self {
        let result = self.keys.add_jwks_json(json);
        self.keep(result)
    }

    /// Adds the signing keys of a JWKS file (read now).
    #[must_use]
    pub fn jwks_file(mut self, path: impl AsRef<Path>) -> Self {
        let result = KeySet::from_jwks_file(path).map(|set| self.keys.extend(set));
        self.keep(result)
    }

    /// Adds every key of `keys`.
    #[must_use]
    pub fn key_set(mut self, keys: KeySet) -> Self {
        self.keys.extend(keys);
        self
    }

    /// Fetches the JWK set at `url` (at build time, then in the background); see
    /// [`crate::remote`]. Feature `jwks-remote`.
    #[cfg(feature = "jwks-remote")]
    #[must_use]
    pub fn jwks_url(self, url: impl Into<String>) -> Self {
        self.remote_jwks(crate::remote::RemoteJwks::new(url))
    }

    /// Like [`VerifierBuilder::jwks_url`] with explicit refresh settings. Feature `jwks-remote`.
    #[cfg(feature = "jwks-remote")]
    #[must_use]
    pub fn remote_jwks(mut self, remote: crate::remote::RemoteJwks) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Restricts the accepted algorithms (default: every algorithm a configured key can verify).
    /// Keys left with no allowed algorithm are dropped; if none is left, building fails.
    #[must_use]
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// The required `aud` (default `authenticated`). The claim is always required.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences = vec![audience.into()];
        self
    }

    /// Several accepted audiences: a token must name at least one of them.
    #[must_use]
    pub fn audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// The required `iss` (default: not checked).
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The dotted path of the org claim (default `org_id`), e.g. `app_metadata.org_id`. Its value
    /// must be a hyphenated, non-nil UUID.
    ///
    /// A path under `user_metadata` is refused by [`build`](Self::build): on Supabase users edit
    /// their `user_metadata` themselves, so they could pick any org (see
    /// [`dangerous_allow_user_editable_claims`](Self::dangerous_allow_user_editable_claims)).
    #[must_use]
    pub fn org_claim(mut self, path: impl Into<String>) -> Self {
        self.org_claim = path.into();
        self
    }

    /// The dotted path of the role claim (default `role`).
    #[must_use]
    pub fn role_claim(mut self, path: impl Into<String>) -> Self {
        self.role_claim = path.into();
        self
    }

    /// The roles a token may name (default `["authenticated"]`), each a plain Postgres role name.
    #[must_use]
    pub fn allowed_roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Clock leeway for `exp`, `nbf` and `iat` (default 30 s, at most [`MAX_LEEWAY`] unless
    /// [`dangerous_allow_large_leeway`](Self::dangerous_allow_large_leeway)).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Maximum token length in bytes (default [`DEFAULT_MAX_TOKEN_LEN`]), checked before decoding.
    #[must_use]
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// Size of the verified-token cache (default 1000 tokens; 0 turns it off). The cache is used
    /// for asymmetric algorithms, and for HMAC only with [`VerifierBuilder::cache_hmac_tokens`].
    ///
    /// Size it with headroom, about twice the tokens live at once: the cache is sharded, shards
    /// fill unevenly, and a cache of exactly the live set keeps evicting (measured in
    /// `benches/scale.rs`: lookups then cost about a fresh verification).
    #[must_use]
    pub fn cache_capacity(mut self, tokens: usize) -> Self {
        self.cache_capacity = tokens;
        self
    }

    /// Also caches HMAC-verified tokens (off by default: HMAC is about as fast as a lookup).
    #[must_use]
    pub fn cache_hmac_tokens(mut self, on: bool) -> Self {
        self.cache_hmac = on;
        self
    }

    /// Also reads the token from the cookie `name` when no `Authorization` header is sent.
    ///
    /// **CSRF caveat:** browsers attach cookies to cross-site requests by themselves, so a cookie
    /// token authenticates requests the user never meant to make. Use it only with
    /// `SameSite=Strict` (or `Lax` plus no state change on `GET`) cookies, and add CSRF
    /// protection (a custom header or a double-submit token) to every state-changing route.
    #[must_use]
    pub fn cookie_token(mut self, name: impl Into<String>) -> Self {
        self.cookie = Some(name.into());
        self
    }

    /// The source of the current Unix time in seconds (default: the system clock). For tests of
    /// expiry; the cache re-checks time claims with it on every hit.
    #[must_use]
    pub fn clock(mut self, now: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(now));
        self
    }

    /// **Dangerous.** Accepts an org or role claim path under `user_metadata`, which
    /// [`build`](Self::build) refuses otherwise: on Supabase, users write their own
    /// `user_metadata` (`supabase.auth.updateUser({ data })`), so whoever holds a token could name
    /// any org. Only for an issuer where that claim is not user-writable. Logs a warning.
    #[must_use]
    pub fn dangerous_allow_user_editable_claims(mut self) -> Self {
        self.user_editable_claims = true;
        self
    }

    /// **Dangerous.** Accepts a [`leeway`](Self::leeway) over [`MAX_LEEWAY`] (a token then stays
    /// valid that long after it expired). Logs a warning.
    #[must_use]
    pub fn dangerous_allow_large_leeway(mut self) -> Self {
        self.large_leeway = true;
        self
    }

    /// **Development only.** Accepts tokens without checking their signature (claims are still
    /// checked; `none` is still refused). Each use logs a warning; in any other environment
    /// [`VerifierBuilder::build`] fails with [`AuthError::InsecureConfig`]. See [`crate::dangerous`].
    #[must_use]
    pub fn dangerous_accept_unverified_tokens(mut self) -> Self {
        self.unverified = true;
        self
    }

    /// **Development only.** A request with no token at all gets this fixed principal (a request
    /// with a bad token is still rejected). Each use logs a warning; in any other environment
    /// [`VerifierBuilder::build`] fails with [`AuthError::InsecureConfig`]. See [`crate::dangerous`].
    #[must_use]
    pub fn dangerous_demo_principal(mut self, demo: DemoPrincipal) -> Self {
        self.demo = Some(demo);
        self
    }

    /// Checks the configuration and builds the verifier.
    pub fn build(#[allow(unused_mut)] mut self) -> Result<Verifier, AuthError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let dev = self.environment.is_development();
        if self.unverified && !dev {
            return Err(AuthError::InsecureConfig(
                "dangerous_accept_unverified_tokens is only allowed in development",
            ));
        }
        if self.demo.is_some() && !dev {
            return Err(AuthError::InsecureConfig(
                "dangerous_demo_principal is only allowed in development",
            ));
        }
        let allowed_roles = self
            .allowed_roles
            .iter()
            .map(|r| Role::new(r).map_err(|e| AuthError::InvalidConfig(format!("role {r:?}: {e}"))))
            .collect::<Result<Box<[_]>, _>>()?;
        if allowed_roles.is_empty() {
            return Err(AuthError::InvalidConfig("no allowed role".into()));
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(AuthError::InvalidConfig(
                "the audience must be a non-empty string".into(),
            ));
        }
        if self.issuer.as_deref() == Some("") {
            return Err(AuthError::InvalidConfig(
                "the issuer must be a non-empty string".into(),
            ));
        }
        if self.max_token_len == 0 {
            return Err(AuthError::InvalidConfig(
                "the maximum token length must be positive".into(),
            ));
        }
        if self.leeway > MAX_LEEWAY {
            if !self.large_leeway {
                return Err(AuthError::InvalidConfig(format!(
                    "the clock leeway (JWT_LEEWAY_SECONDS) is {} s, over the maximum of {} s; \
                     a larger one needs dangerous_allow_large_leeway",
                    self.leeway.as_secs(),
                    MAX_LEEWAY.as_secs()
                )));
            }
            tracing::warn!(
                leeway_secs = self.leeway.as_secs(),
                "a clock leeway over the maximum keeps expired tokens valid"
            );
        }
        let leeway = i64::try_from(self.leeway.as_secs())
            .map_err(|_| AuthError::InvalidConfig("the leeway is too large".into()))?;
        let rules = ClaimRules {
            audiences: self.audiences.into_iter().map(Into::into).collect(),
            issuer: self.issuer.map(Into::into),
            org_path: ClaimPath::parse(&self.org_claim, "org claim")?,
            role_path: ClaimPath::parse(&self.role_claim, "role claim")?,
            allowed_roles,
            leeway,
        };
        rules.validate_paths()?;
        for (what, path) in [("org", &rules.org_path), ("role", &rules.role_path)] {
            if path.is_user_editable() {
                if !self.user_editable_claims {
                    return Err(AuthError::InvalidConfig(format!(
                        "the {what} claim path is under user_metadata, which users can edit \
                         themselves (Supabase); use app_metadata, or \
                         dangerous_allow_user_editable_claims"
                    )));
                }
                tracing::warn!(
                    claim = what,
                    "the claim is read from user_metadata, which users may be able to edit"
                );
            }
        }
        let allowed = self.algorithms.unwrap_or_else(AlgSet::all);
        if allowed.is_empty() {
            return Err(AuthError::InvalidConfig("no allowed algorithm".into()));
        }
        #[cfg(feature = "jwks-remote")]
        let has_remote = self.remote.is_some();
        #[cfg(not(feature = "jwks-remote"))]
        let has_remote = false;
        if self.keys.is_empty() && !has_remote && !(dev && (self.unverified || self.demo.is_some()))
        {
            return Err(AuthError::MissingKey(MISSING_KEY));
        }
        #[cfg(feature = "jwks-remote")]
        let (remote, first_wait) = match self.remote {
            Some(config) => {
                config.check_scheme(self.environment)?;
                let (body, ttl) = crate::remote::fetch(&config).map_err(|e| {
                    AuthError::InvalidConfig(format!(
                        "cannot fetch the JWKS from {}: {e}",
                        config.display_url()
                    ))
                })?;
                let fetched = KeySet::from_remote_jwks_json(&body)?;
                let local = std::mem::take(&mut self.keys);
                self.keys = local.clone();
                self.keys.extend(fetched.clone());
                let sources = crate::remote::Sources {
                    local,
                    remote: fetched,
                    body,
                };
                let (remote, wake) = crate::remote::Remote::new(config, sources);
                (Some((remote, wake)), ttl)
            }
            None => (None, Duration::ZERO),
        };
        let state = prepare_keys(
            self.environment,
            &self.keys,
            allowed,
            self.cache_capacity,
            self.cache_hmac,
        )?;
        let demo = match &self.demo {
            Some(demo) => {
                let role = match &demo.role {
                    Some(name) => rules
                        .allowed_roles
                        .iter()
                        .find(|r| r.as_str() == name)
                        .cloned()
                        .ok_or_else(|| {
                            AuthError::InvalidConfig(format!(
                                "the demo principal's role {name:?} is not an allowed role"
                            ))
                        })?,
                    None => rules.allowed_roles[0].clone(),
                };
                let audience = rules.audiences.first().map_or(DEFAULT_AUDIENCE, |a| &**a);
                tracing::warn!(
                    user_id = %demo.user_id,
                    org_id = %demo.org_id,
                    "development demo principal enabled: requests without a token are treated as this user"
                );
                Some(demo.to_principal(role, &rules.org_path, &rules.role_path, audience))
            }
            None => None,
        };
        if self.unverified {
            tracing::warn!("development: token signatures will NOT be checked");
        }
        if let Some(cookie) = &self.cookie {
            tracing::info!(cookie = %cookie, "tokens are also read from a cookie (mind CSRF)");
        }
        #[cfg(feature = "jwks-remote")]
        let (remote, wake) = match remote {
            Some((remote, wake)) => {
                let retry = remote.config.cooldown.min(remote.config.min_ttl);
                (Some(remote), Some((wake, retry)))
            }
            None => (None, None),
        };
        let inner = Arc::new(Inner {
            environment: self.environment,
            rules,
            allowed,
            max_token_len: self.max_token_len,
            cache_capacity: self.cache_capacity,
            cache_hmac: self.cache_hmac,
            cookie: self.cookie.map(Into::into),
            unverified: self.unverified,
            demo,
            clock: self.clock,
            state: ArcSwap::from_pointee(state),
            #[cfg(feature = "jwks-remote")]
            remote,
        });
        #[cfg(feature = "jwks-remote")]
        if let Some((wake, retry)) = wake {
            crate::remote::spawn(Arc::downgrade(&inner), wake, first_wait, retry)?;
        }
        Ok(Verifier(inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn verifier_is_shareable() {
        assert_send_sync::<Verifier>();
    }

    #[test]
    fn debug_redacts_keys() {
        let v = Verifier::builder(Environment::Test)
            .hmac_secret("0123456789abcdef0123456789abcdef-secret")
            .build()
            .unwrap();
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("0123456789abcdef"));
        assert!(dbg.contains("HMAC"));
    }
}
