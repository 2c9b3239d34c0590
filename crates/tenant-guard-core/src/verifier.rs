//! The verifier: built once at startup, shared by every request.
//!
//! Per request it reads the bearer token, picks the [issuer profile](crate::issuer) that may verify
//! it, checks the signature with that profile's keys and the claims with its rules, and maps them
//! to a [`Principal`]. Building (the profiles, their keys, remote fetches) lives in
//! [`crate::issuer`] and `profile`; configuration from the environment in [`crate::config`].

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use crate::algorithm::Algorithm;
use crate::cache::{DEFAULT_CACHE_CAPACITY, TokenCache};
use crate::claims::Times;
use crate::claims::{self, RoleArray};
use crate::dangerous::DemoPrincipal;
use crate::environment::Environment;
use crate::error::AuthError;
use crate::identity::{Identity, PendingOrg};
pub use crate::issuer::DEFAULT_AUDIENCE;
use crate::issuer::{BuildContext, IssuerProfile, MISSING_KEY};
use crate::keys::KeySet;
use crate::principal::Principal;
use crate::profile::{KeyState, Profile, Routes};
use crate::token;

/// Default maximum token length in bytes, checked before any decoding.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

/// Default clock leeway for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Largest clock leeway [`VerifierBuilder::build`] accepts without
/// [`VerifierBuilder::dangerous_allow_large_leeway`]: a larger one keeps expired tokens alive.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

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
    /// At least one; the first is the builder's own profile when it was configured.
    profiles: Box<[Profile]>,
    routes: Routes,
    /// With several profiles: one cache for all, looked up before routing (entries tagged with
    /// the profile and its key generation).
    shared_cache: Option<TokenCache>,
    max_token_len: usize,
    cookie: Option<Box<str>>,
    unverified: bool,
    demo: Option<Principal>,
    clock: Option<Clock>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &*self.0;
        f.debug_struct("Verifier")
            .field("environment", &inner.environment)
            .field("profiles", &inner.profiles)
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

    /// The issuers of the profiles, in configuration order (a single profile without a
    /// configured issuer is left out: it does not check `iss`).
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.0
            .profiles
            .iter()
            .filter_map(|p| p.rules.issuer.as_deref())
    }

    /// Authenticates a request from its headers: exactly one `Authorization: Bearer <token>`
    /// (scheme case-insensitive), or the opted-in cookie when there is no `Authorization` header.
    ///
    /// Nothing else is read: no query string, no `x-user-id`-style header. Rejections are logged
    /// at debug level with their code, never with the token. A token without an org (from an
    /// issuer with [`IssuerProfile::org_from_request`]) is `invalid_org` here: see
    /// [`Verifier::authenticate_identity`].
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        match self.authenticate_any(headers) {
            Ok(p) if p.needs_org() => Err(AuthError::InvalidOrg),
            other => other,
        }
    }

    /// Like [`Verifier::authenticate`], but a token without an org from an issuer whose org is
    /// chosen per request is [`Identity::NeedsOrg`] instead of `invalid_org`: the caller picks
    /// the org from the request and checks membership before it scopes anything.
    pub fn authenticate_identity(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        self.authenticate_any(headers).map(identity)
    }

    /// Like [`Verifier::verify`], with [`Verifier::authenticate_identity`]'s answer.
    pub fn verify_identity(&self, token: &str) -> Result<Identity, AuthError> {
        self.verify_any(token).map(identity)
    }

    fn authenticate_any(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
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

    /// Verifies a bare token (the part after `Bearer `). Like [`Verifier::authenticate`], a
    /// token without an org is `invalid_org` here.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        match self.verify_any(token) {
            Ok(p) if p.needs_org() => Err(AuthError::InvalidOrg),
            other => other,
        }
    }

    fn verify_any(&self, token: &str) -> Result<Principal, AuthError> {
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
        let result = self.0.verify_token(token);
        match result {
            Ok(p) if !self.0.unverified || crate::extract::is_token68(token) => Ok(p),
            Ok(_) => Err(bad_chars),
            Err(AuthError::TokenTooLarge) => Err(AuthError::TokenTooLarge),
            Err(_) if !crate::extract::is_token68(token) => Err(bad_chars),
            Err(e) => Err(e),
        }
    }

    /// Replaces the key set of the first issuer profile (e.g. after a rotation). Requests in
    /// flight finish with the keys they started with; the verified-token cache starts empty with
    /// the new keys. A remote set of that profile stays beside the new keys.
    ///
    /// The new set is checked like one given to the builder (key types, allowed algorithms,
    /// HMAC secret length outside development); on error the old keys stay.
    pub fn set_keys(&self, keys: KeySet) -> Result<(), AuthError> {
        let inner = &*self.0;
        if keys.is_empty() && !inner.unverified && inner.demo.is_none() {
            return Err(AuthError::MissingKey(MISSING_KEY));
        }
        inner.profiles[0].keys.set_local(keys)
    }

    /// Fetches every remote JWKS now (blocking) and installs each that changed. Requests keep
    /// using the current keys meanwhile; on failure they stay (the first error is returned after
    /// every set was tried).
    #[cfg(feature = "jwks-remote")]
    pub fn refresh_jwks(&self) -> Result<(), AuthError> {
        use crate::remote::Refresh as _;
        let mut first_error = None;
        for profile in self.0.profiles.iter() {
            if profile.keys.remote.is_some()
                && let Err(e) = profile.keys.refresh_remote()
            {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The current keys of the first issuer profile (restricted to its allowed algorithms).
    pub fn key_set(&self) -> KeySet {
        self.0.profiles[0].keys.state.load().keys.clone()
    }

    /// Number of tokens in the verified-token cache(s) (0 when off). With several issuers, the
    /// shared cache may still count entries of replaced keys until they are looked up or evicted.
    pub fn cached_tokens(&self) -> usize {
        self.0
            .profiles
            .iter()
            .map(|p| {
                p.keys
                    .state
                    .load()
                    .cache
                    .as_ref()
                    .map_or(0, TokenCache::len)
            })
            .sum::<usize>()
            + self.0.shared_cache.as_ref().map_or(0, TokenCache::len)
    }
}

impl Inner {
    fn verify_token(&self, token: &[u8]) -> Result<Principal, AuthError> {
        if token.len() > self.max_token_len {
            return Err(AuthError::TokenTooLarge);
        }
        let now = self.now();
        match &self.routes {
            Routes::Single => {
                let profile = &self.profiles[0];
                let state = profile.keys.state.load();
                // A hit means these exact bytes passed every check with the current keys.
                if let Some(cache) = &state.cache
                    && let Some((principal, times)) = cache.get(token)
                {
                    return cache_hit(cache, token, principal, times, now, profile.rules.leeway);
                }
                let cache = state.cache.as_ref().map(|c| (c, 0));
                self.verify_with(profile, &state, token, None, cache, now)
            }
            Routes::ByIssuer(map) => {
                // A hit means these exact bytes passed every check of the profile named in the
                // tag, with keys of the generation named there: valid while those are current.
                if let Some(cache) = &self.shared_cache
                    && let Some((principal, times, tag)) = cache.get_tagged(token)
                {
                    let (index, generation) = untag(tag);
                    match self.profiles.get(index) {
                        Some(p) if p.keys.state.load().generation == generation => {
                            return cache_hit(cache, token, principal, times, now, p.rules.leeway);
                        }
                        _ => cache.remove(token),
                    }
                }
                // Routing reads `iss` from the payload before the signature is checked: only to
                // pick whose keys check it; nothing else of the unverified payload is used.
                let text = std::str::from_utf8(token).map_err(|_| AuthError::MalformedToken)?;
                let parts =
                    token::split(text).map_err(|e| token::unsecured_error(text).unwrap_or(e))?;
                let claims_json = token::decode_payload(parts.payload)?;
                let index = claims::peek_issuer(&claims_json)?
                    .and_then(|iss| map.get(&*iss).copied())
                    .ok_or(AuthError::WrongIssuer)?;
                let profile = &self.profiles[index];
                let state = profile.keys.state.load();
                let cache = self
                    .shared_cache
                    .as_ref()
                    .map(|c| (c, tag(index, state.generation)));
                self.verify_with(profile, &state, token, Some(claims_json), cache, now)
            }
        }
    }

    /// Verifies `token` with the keys (`state`) and rules of `profile`. `decoded`: its payload,
    /// when routing already decoded it; `cache`: where to remember it, and with which tag.
    fn verify_with(
        &self,
        profile: &Profile,
        state: &KeyState,
        bytes: &[u8],
        decoded: Option<Box<str>>,
        cache: Option<(&TokenCache, u64)>,
        now: i64,
    ) -> Result<Principal, AuthError> {
        let token = std::str::from_utf8(bytes).map_err(|_| AuthError::MalformedToken)?;
        let parts = token::split(token).map_err(|e| token::unsecured_error(token).unwrap_or(e))?;
        let mut header_buf = [0u8; token::HEADER_BUF];
        let header = token::parse_header(parts.header, &mut header_buf)?;
        if !profile.allowed.contains(header.alg) {
            return Err(AuthError::DisallowedAlgorithm);
        }
        if self.unverified {
            tracing::warn!(
                "accepting a token WITHOUT checking its signature (dangerous_accept_unverified_tokens)"
            );
        } else if let Err(e) = state.keys.verify_signature(
            header.alg,
            header.kid.as_deref(),
            parts.message.as_bytes(),
            parts.signature,
        ) {
            if e == AuthError::UnknownKeyId {
                profile.keys.nudge();
            }
            return Err(e);
        }
        let claims_json = match decoded {
            Some(json) => json,
            None => token::decode_payload(parts.payload)?,
        };
        let checked = claims::check(&claims_json, &profile.rules, now)?;
        let sub: Box<str> = checked.sub.into();
        let times = checked.times;
        let principal = Principal::from_verified(
            sub,
            checked.org,
            profile.rules.org_kind,
            checked.role,
            claims_json,
            u64::try_from(times.exp).unwrap_or(0),
        );
        if !self.unverified
            && (header.alg.is_asymmetric() || profile.keys.caches_hmac())
            && let Some((cache, tag)) = cache
        {
            cache.insert_tagged(bytes, principal.clone(), times, tag);
        }
        Ok(principal)
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

/// Builds a [`Verifier`]; see [`Verifier::builder`].
///
/// The token settings (keys, audiences, issuer, claim mapping, roles) configure the builder's
/// own [issuer profile](IssuerProfile); [`VerifierBuilder::add_issuer`] adds more. Every method
/// takes and returns the builder; problems (an unreadable key, a bad claim path, an insecure
/// option outside development) surface as one error from [`VerifierBuilder::build`].
pub struct VerifierBuilder {
    environment: Environment,
    pub(crate) primary: IssuerProfile,
    extra: Vec<IssuerProfile>,
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
}

impl std::fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("environment", &self.environment)
            .field("profile", &self.primary)
            .field("more_issuers", &self.extra)
            .finish_non_exhaustive()
    }
}

/// Builder methods that set the builder's own issuer profile, each as its [`IssuerProfile`]
/// namesake.
macro_rules! profile_setters {
    ($( $(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),*); )*) => {
        $(
            $(#[$attr])*
            #[must_use]
            pub fn $name(mut self, $($arg: $ty),*) -> Self {
                self.primary = self.primary.$name($($arg),*);
                self
            }
        )*
    };
}

impl VerifierBuilder {
    fn new(environment: Environment) -> Self {
        Self {
            environment,
            primary: IssuerProfile::default(),
            extra: Vec::new(),
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
        }
    }

    profile_setters! {
        /// Accepts HS256/384/512 tokens signed with this shared secret (its raw bytes). Outside
        /// development it must be at least 32 bytes long.
        fn hmac_secret(secret: impl AsRef<[u8]>);
        /// Like [`VerifierBuilder::hmac_secret`] with the secret given in base64 (either alphabet).
        fn hmac_secret_base64(secret: &str);
        /// Adds a PEM public key (RSA, P-256, P-384 or Ed25519); see [`KeySet::add_pem`].
        fn public_key_pem(pem: impl AsRef<[u8]>);
        /// Adds a PEM public key that tokens select with `kid`.
        fn public_key_pem_with_kid(kid: &str, pem: impl AsRef<[u8]>);
        /// Adds the signing keys of a JWK set (or a single JWK); see [`KeySet::add_jwks_json`].
        fn jwks_json(json: &str);
        /// Adds the signing keys of a JWKS file (read now).
        fn jwks_file(path: impl AsRef<Path>);
        /// Adds every key of `keys`.
        fn key_set(keys: KeySet);
        /// Fetches the JWK set at `url` (at build time, then in the background); see
        /// [`crate::remote`]. Feature `jwks-remote`.
        #[cfg(feature = "jwks-remote")]
        fn jwks_url(url: impl Into<String>);
        /// Like [`VerifierBuilder::jwks_url`] with explicit refresh settings, or OIDC discovery
        /// ([`crate::remote::RemoteJwks::oidc`]). Feature `jwks-remote`.
        #[cfg(feature = "jwks-remote")]
        fn remote_jwks(remote: crate::remote::RemoteJwks);
        /// Restricts the accepted algorithms (default: every algorithm a configured key can
        /// verify). Keys left with no allowed algorithm are dropped; if none is left, building
        /// fails.
        fn algorithms(algorithms: impl IntoIterator<Item = Algorithm>);
        /// The required `aud` (default `authenticated`). The claim is always required.
        fn audience(audience: impl Into<String>);
        /// The required `iss` (default: not checked while this is the only issuer).
        fn issuer(issuer: impl Into<String>);
        /// The path of the org claim (default `org_id`): dotted (`app_metadata.org_id`), with
        /// `["quoted"]` keys for names holding dots (`["https://example.com/org_id"]`), or a
        /// JSON Pointer (`/https:~1~1example.com~1org_id`). Its value must be an org id of
        /// [`VerifierBuilder::org_id_kind`] (by default a hyphenated, non-nil UUID).
        ///
        /// A path under `user_metadata` is refused by [`build`](Self::build): on Supabase users
        /// edit their `user_metadata` themselves, so they could pick any org (see
        /// [`dangerous_allow_user_editable_claims`](Self::dangerous_allow_user_editable_claims)).
        fn org_claim(path: impl Into<String>);
        /// The kind of org id the org claim holds (default UUID); see
        /// [`IssuerProfile::org_id_kind`].
        fn org_id_kind(kind: crate::OrgIdKind);
        /// The path of the role claim (default `role`), spelled like
        /// [`VerifierBuilder::org_claim`].
        fn role_claim(path: impl Into<String>);
        /// How a role claim holding an array is read (default [`RoleArray::Refuse`]).
        fn role_array(mode: RoleArray);
        /// The role of a token that names none; see [`IssuerProfile::default_role`].
        fn default_role(role: impl Into<String>);
        /// Maps the IdP role name `from` to the allowed Postgres role `to`; see
        /// [`IssuerProfile::map_role`].
        fn map_role(from: impl Into<String>, to: impl Into<String>);
        /// Tokens may carry no org claim (the org is then chosen per request and checked by a
        /// membership lookup); see [`IssuerProfile::org_from_request`].
        fn org_from_request(allowed: bool);
    }

    /// Trusts the OpenID Connect issuer `issuer`: tokens must carry exactly this `iss`, and the
    /// keys come from the `jwks_uri` its discovery document names (fetched at build; a failure
    /// is a build error naming the URL), refreshed like any remote JWKS. Same as
    /// `.remote_jwks(RemoteJwks::oidc(issuer))`. Feature `jwks-remote`.
    ///
    /// ```no_run
    /// use tenant_guard_core::{Environment, Verifier};
    ///
    /// let verifier = Verifier::builder(Environment::Production)
    ///     .oidc_issuer("https://keycloak.example.com/realms/acme")
    ///     .audience("account")
    ///     .role_claim("realm_access.roles")
    ///     .build()?;
    /// # Ok::<(), tenant_guard_core::AuthError>(())
    /// ```
    #[cfg(feature = "jwks-remote")]
    #[must_use]
    pub fn oidc_issuer(self, issuer: impl Into<String>) -> Self {
        self.remote_jwks(crate::remote::RemoteJwks::oidc(issuer))
    }

    /// Several accepted audiences: a token must name at least one of them.
    #[must_use]
    pub fn audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.primary = self.primary.audiences(audiences);
        self
    }

    /// The roles a token may name (default `["authenticated"]`), each a plain Postgres role name.
    #[must_use]
    pub fn allowed_roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.primary = self.primary.allowed_roles(roles);
        self
    }

    /// Whether any key source (a key, a JWKS URL, OIDC discovery) is configured so far, in any
    /// issuer profile. Apps use it to decide on a development fallback before building.
    pub fn has_key_source(&self) -> bool {
        self.primary.has_key_source() || self.extra.iter().any(IssuerProfile::has_key_source)
    }

    /// Trusts one more issuer, with its own keys and rules; see [`crate::issuer`]. With several
    /// issuers every profile (the builder's own included, when it has keys) must name a distinct
    /// issuer, and tokens are routed by their `iss`.
    #[must_use]
    pub fn add_issuer(mut self, profile: IssuerProfile) -> Self {
        self.extra.push(profile);
        self
    }

    /// Clock leeway for `exp`, `nbf` and `iat` (default 30 s).
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

    /// **Dangerous.** Accepts an org or role claim path under `user_metadata` (in every issuer
    /// profile), which [`build`](Self::build) refuses otherwise: on Supabase, users write their
    /// own `user_metadata` (`supabase.auth.updateUser({ data })`), so whoever holds a token could
    /// name any org. Only for an issuer where that claim is not user-writable. Logs a warning.
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

    /// Checks the configuration and builds the verifier.
    pub fn build(self) -> Result<Verifier, AuthError> {
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
        let mut configs = Vec::with_capacity(1 + self.extra.len());
        if self.extra.is_empty() || self.primary.is_configured() {
            configs.push(self.primary);
        }
        configs.extend(self.extra);
        let ctx = BuildContext {
            environment: self.environment,
            leeway,
            cache_capacity: self.cache_capacity,
            cache_hmac: self.cache_hmac,
            keyless_ok: dev && (self.unverified || self.demo.is_some()),
            user_editable_claims: self.user_editable_claims,
            several: configs.len() > 1,
        };
        // Rules first (cheap, no network), then keys and remote fetches.
        for config in &configs {
            config.rules(leeway, &ctx)?;
        }
        let profiles = configs
            .into_iter()
            .map(|config| config.build(&ctx))
            .collect::<Result<Box<[_]>, _>>()?;
        let routes = Routes::new(&profiles)?;
        let shared_cache = match routes {
            Routes::ByIssuer(_) => TokenCache::new(self.cache_capacity),
            Routes::Single => None,
        };
        let demo = match &self.demo {
            Some(demo) => Some(demo_principal(demo, &profiles[0])?),
            None => None,
        };
        if self.unverified {
            tracing::warn!("development: token signatures will NOT be checked");
        }
        if let Some(cookie) = &self.cookie {
            tracing::info!(cookie = %cookie, "tokens are also read from a cookie (mind CSRF)");
        }
        Ok(Verifier(Arc::new(Inner {
            environment: self.environment,
            profiles,
            routes,
            shared_cache,
            max_token_len: self.max_token_len,
            cookie: self.cookie.map(Into::into),
            unverified: self.unverified,
            demo,
            clock: self.clock,
        })))
    }
}

/// A cache hit: the principal, once its time claims still hold (else the entry goes).
fn cache_hit(
    cache: &TokenCache,
    token: &[u8],
    principal: Principal,
    times: Times,
    now: i64,
    leeway: i64,
) -> Result<Principal, AuthError> {
    match times.check(now, leeway) {
        Ok(()) => Ok(principal),
        Err(e) => {
            cache.remove(token);
            Err(e)
        }
    }
}

/// Bits of a shared-cache tag that hold the key generation (the profile index is above them).
const GENERATION_BITS: u32 = 48;

fn tag(index: usize, generation: u64) -> u64 {
    ((index as u64) << GENERATION_BITS) | (generation & ((1 << GENERATION_BITS) - 1))
}

fn untag(tag: u64) -> (usize, u64) {
    (
        usize::try_from(tag >> GENERATION_BITS).unwrap_or(usize::MAX),
        tag & ((1 << GENERATION_BITS) - 1),
    )
}

/// A verified principal as an [`Identity`].
fn identity(principal: Principal) -> Identity {
    if principal.needs_org() {
        Identity::NeedsOrg(PendingOrg(principal))
    } else {
        Identity::Org(principal)
    }
}

/// The development demo principal, shaped by the first profile's rules.
fn demo_principal(demo: &DemoPrincipal, profile: &Profile) -> Result<Principal, AuthError> {
    let rules = &profile.rules;
    let role = match &demo.role {
        Some(name) => rules
            .role
            .allowed
            .iter()
            .find(|r| r.as_str() == name)
            .cloned()
            .ok_or_else(|| {
                AuthError::InvalidConfig(format!(
                    "the demo principal's role {name:?} is not an allowed role"
                ))
            })?,
        None => rules.role.allowed[0].clone(),
    };
    if demo.org_id.kind() != rules.org_kind {
        return Err(AuthError::InvalidConfig(format!(
            "the demo principal's org is a {} id, but the org claim is configured as {}",
            demo.org_id.kind(),
            rules.org_kind
        )));
    }
    let audience = rules.audiences.first().map_or(DEFAULT_AUDIENCE, |a| &**a);
    tracing::warn!(
        user_id = %demo.user_id,
        org_id = %demo.org_id,
        "development demo principal enabled: requests without a token are treated as this user"
    );
    Ok(demo.to_principal(role, &rules.org_path, &rules.role_path, audience))
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
