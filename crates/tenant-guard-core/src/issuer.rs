//! Issuer profiles: one per identity provider a verifier trusts, each with its own keys (static,
//! remote JWKS or OIDC discovery), audiences, algorithms, claim mapping and role rules.
//!
//! A verifier with one profile checks tokens exactly as before (`iss` only when configured). With
//! several, every profile names its issuer and a token is routed by its `iss` claim to the one
//! profile whose keys may verify it: the keys of issuer A are never tried on a token claiming
//! issuer B, and an unknown or missing `iss` is refused (`invalid_issuer`) before any signature
//! work.
//!
//! ```
//! use tenant_guard_core::{Environment, IssuerProfile, RoleArray, Verifier};
//!
//! let verifier = Verifier::builder(Environment::Production)
//!     // The first profile: the builder's own settings (here Supabase-style HS256).
//!     .hmac_secret("a-long-random-secret-from-your-vault")
//!     .issuer("https://abc.supabase.co/auth/v1")
//!     // A second identity provider, with its own keys and claim mapping.
//!     .add_issuer(
//!         IssuerProfile::new("https://partner.example.com/")
//!             .hmac_secret("another-long-random-secret-for-the-partner")
//!             .audience("api://tenant-guard")
//!             .org_claim("tid")
//!             .role_claim("roles")
//!             .role_array(RoleArray::FirstAllowed)
//!             .map_role("Admin", "org_admin")
//!             .default_role("authenticated")
//!             .allowed_roles(["authenticated", "org_admin"]),
//!     )
//!     .build()?;
//! assert_eq!(verifier.issuers().count(), 2);
//! # Ok::<(), tenant_guard_core::AuthError>(())
//! ```

use std::path::Path;
use std::sync::Arc;

use crate::algorithm::{AlgSet, Algorithm};
use crate::claims::{ClaimPath, ClaimRules, RoleArray, RoleRule};
use crate::environment::Environment;
use crate::error::AuthError;
use crate::keys::KeySet;
use crate::org_id::OrgIdKind;
use crate::profile::{Profile, ProfileKeys};

/// Default required audience (Supabase's).
pub const DEFAULT_AUDIENCE: &str = "authenticated";

/// What [`AuthError::MissingKey`] asks for when no key is configured.
pub(crate) const MISSING_KEY: &str = "JWT_SECRET, JWT_JWKS_FILE, JWT_JWKS_URL or JWT_OIDC_ISSUER";

/// The settings of one trusted issuer; see the [module docs](self).
///
/// Every method takes and returns the profile; a problem (an unreadable key, a bad path) surfaces
/// from [`crate::VerifierBuilder::build`]. `Debug` never shows key material.
#[derive(Clone)]
pub struct IssuerProfile {
    pub(crate) issuer: Option<String>,
    pub(crate) keys: KeySet,
    pub(crate) error: Option<AuthError>,
    pub(crate) algorithms: Option<AlgSet>,
    pub(crate) audiences: Vec<String>,
    pub(crate) org_claim: String,
    pub(crate) role_claim: String,
    pub(crate) allowed_roles: Vec<String>,
    pub(crate) role_array: RoleArray,
    pub(crate) default_role: Option<String>,
    pub(crate) role_map: Vec<(String, String)>,
    pub(crate) org_from_request: bool,
    pub(crate) org_id_kind: OrgIdKind,
    #[cfg(feature = "jwks-remote")]
    pub(crate) remote: Option<crate::remote::RemoteJwks>,
}

impl std::fmt::Debug for IssuerProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("IssuerProfile");
        d.field("issuer", &self.issuer)
            .field("keys", &self.keys)
            .field("audiences", &self.audiences)
            .field("org_claim", &self.org_claim)
            .field("role_claim", &self.role_claim)
            .field("allowed_roles", &self.allowed_roles)
            .field("role_array", &self.role_array)
            .field("default_role", &self.default_role)
            .field("role_map", &self.role_map)
            .field("org_from_request", &self.org_from_request)
            .field("org_id_kind", &self.org_id_kind);
        #[cfg(feature = "jwks-remote")]
        d.field("remote", &self.remote);
        d.finish_non_exhaustive()
    }
}

impl Default for IssuerProfile {
    fn default() -> Self {
        Self {
            issuer: None,
            keys: KeySet::new(),
            error: None,
            algorithms: None,
            audiences: vec![DEFAULT_AUDIENCE.to_owned()],
            org_claim: "org_id".to_owned(),
            role_claim: "role".to_owned(),
            allowed_roles: vec!["authenticated".to_owned()],
            role_array: RoleArray::Refuse,
            default_role: None,
            role_map: Vec::new(),
            org_from_request: false,
            org_id_kind: OrgIdKind::Uuid,
            #[cfg(feature = "jwks-remote")]
            remote: None,
        }
    }
}

impl IssuerProfile {
    /// A profile for tokens whose `iss` is exactly `issuer`, with the defaults of a verifier
    /// (audience `authenticated`, org claim `org_id`, role claim `role`, role `authenticated`)
    /// and no key yet.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: Some(issuer.into()),
            ..Self::default()
        }
    }

    /// A profile for an OpenID Connect issuer: its keys come from the `jwks_uri` of
    /// `<issuer>/.well-known/openid-configuration` (fetched when the verifier is built, whose
    /// `issuer` must equal `issuer` exactly), then refresh like any remote JWKS. Feature
    /// `jwks-remote`; see [`crate::remote::RemoteJwks::oidc`].
    #[cfg(feature = "jwks-remote")]
    pub fn oidc(issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        Self::new(issuer.clone()).remote_jwks(crate::remote::RemoteJwks::oidc(issuer))
    }

    fn keep(mut self, result: Result<(), AuthError>) -> Self {
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
        self
    }

    /// Whether a key, a remote JWKS or OIDC discovery is configured.
    pub(crate) fn has_key_source(&self) -> bool {
        #[cfg(feature = "jwks-remote")]
        let remote = self.remote.is_some();
        #[cfg(not(feature = "jwks-remote"))]
        let remote = false;
        !self.keys.is_empty() || remote
    }

    /// Whether anything was configured (the builder's own profile is dropped when it is empty
    /// and other profiles exist).
    pub(crate) fn is_configured(&self) -> bool {
        #[cfg(feature = "jwks-remote")]
        let remote = self.remote.is_some();
        #[cfg(not(feature = "jwks-remote"))]
        let remote = false;
        self.issuer.is_some() || !self.keys.is_empty() || self.error.is_some() || remote
    }

    /// The required `iss` (for the builder's own profile: default not checked when it is the
    /// only one).
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Accepts HS256/384/512 tokens signed with this shared secret (its raw bytes); at least 32
    /// bytes outside development.
    #[must_use]
    pub fn hmac_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        let result = self.keys.add_hmac_secret(secret.as_ref(), None);
        self.keep(result)
    }

    /// Like [`IssuerProfile::hmac_secret`] with the secret in base64 (either alphabet).
    #[must_use]
    pub fn hmac_secret_base64(mut self, secret: &str) -> Self {
        let result = self.keys.add_hmac_secret_base64(secret, None);
        self.keep(result)
    }

    /// Adds a PEM public key; see [`KeySet::add_pem`].
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

    /// Adds the signing keys of a JWK set; see [`KeySet::add_jwks_json`].
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

    /// Fetches the JWK set at `url` (at build time, then in the background). Feature
    /// `jwks-remote`.
    #[cfg(feature = "jwks-remote")]
    #[must_use]
    pub fn jwks_url(self, url: impl Into<String>) -> Self {
        self.remote_jwks(crate::remote::RemoteJwks::new(url))
    }

    /// A remote JWKS (or OIDC discovery) with explicit refresh settings. Feature `jwks-remote`.
    #[cfg(feature = "jwks-remote")]
    #[must_use]
    pub fn remote_jwks(mut self, remote: crate::remote::RemoteJwks) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Restricts the accepted algorithms (default: every algorithm a configured key can verify).
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

    /// The path of the org claim (default `org_id`): dotted (`app_metadata.org_id`), with
    /// `["quoted"]` keys for names holding dots (`["https://example.com/org_id"]`), or a JSON
    /// Pointer (`/https:~1~1example.com~1org_id`). Its value must be an org id of
    /// [`IssuerProfile::org_id_kind`] (by default a hyphenated, non-nil UUID).
    #[must_use]
    pub fn org_claim(mut self, path: impl Into<String>) -> Self {
        self.org_claim = path.into();
        self
    }

    /// The path of the role claim (default `role`), spelled like [`IssuerProfile::org_claim`].
    #[must_use]
    pub fn role_claim(mut self, path: impl Into<String>) -> Self {
        self.role_claim = path.into();
        self
    }

    /// How a role claim holding an array is read (default [`RoleArray::Refuse`]).
    #[must_use]
    pub fn role_array(mut self, mode: RoleArray) -> Self {
        self.role_array = mode;
        self
    }

    /// The role of a token that names none (no role claim, an empty array, or an array of names
    /// none of which is allowed). It must be an allowed role. A token naming a single role that
    /// is not allowed is still refused.
    #[must_use]
    pub fn default_role(mut self, role: impl Into<String>) -> Self {
        self.default_role = Some(role.into());
        self
    }

    /// Maps the IdP role name `from` (exactly, case-sensitive) to the Postgres role `to`, which
    /// must be an allowed role: the allowlist stays the last word.
    #[must_use]
    pub fn map_role(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.role_map.push((from.into(), to.into()));
        self
    }

    /// Tokens of this issuer may carry **no** org claim (default `false`): the org is then chosen
    /// per request, by a pipeline that checks membership before scoping. Such tokens verify only
    /// through [`crate::Verifier::authenticate_identity`], as [`crate::Identity::NeedsOrg`];
    /// [`crate::Verifier::authenticate`] still refuses them (`invalid_org`), so code that scopes
    /// by [`crate::Principal::org_id`] never sees one. An org claim that is present must still be
    /// a valid org id of [`IssuerProfile::org_id_kind`].
    #[must_use]
    pub fn org_from_request(mut self, allowed: bool) -> Self {
        self.org_from_request = allowed;
        self
    }

    /// The kind of org id this issuer's org claim holds (default [`OrgIdKind::Uuid`]); a request
    /// that chooses its org ([`IssuerProfile::org_from_request`]) must name one of this kind too.
    /// A claim of another kind is `invalid_org`. See [`crate::org_id`] for what each kind accepts.
    ///
    /// ```
    /// use tenant_guard_core::{IssuerProfile, OrgIdKind};
    ///
    /// // Orgs keyed by `bigint`: `"org_id": 42` (or `"42"`) in the token.
    /// let profile = IssuerProfile::new("https://idp.example/")
    ///     .hmac_secret("a-long-random-secret-from-your-vault")
    ///     .org_id_kind(OrgIdKind::Integer);
    /// # let _ = profile;
    /// ```
    #[must_use]
    pub fn org_id_kind(mut self, kind: OrgIdKind) -> Self {
        self.org_id_kind = kind;
        self
    }

    /// The Postgres roles a token may end up with (default `["authenticated"]`).
    #[must_use]
    pub fn allowed_roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// The checked claim rules of this profile.
    pub(crate) fn rules(&self, leeway: i64, ctx: &BuildContext) -> Result<ClaimRules, AuthError> {
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
        let rules = ClaimRules {
            audiences: self.audiences.iter().map(|a| a.as_str().into()).collect(),
            issuer: self.issuer.as_deref().map(Into::into),
            org_path: ClaimPath::parse(&self.org_claim, "org claim")?,
            role_path: ClaimPath::parse(&self.role_claim, "role claim")?,
            role: RoleRule::new(
                &self.allowed_roles,
                self.role_array,
                self.default_role.as_deref(),
                &self.role_map,
            )?,
            leeway,
            org_required: !self.org_from_request,
            org_kind: self.org_id_kind,
        };
        rules.validate_paths()?;
        for (what, path) in [("org", &rules.org_path), ("role", &rules.role_path)] {
            if path.is_user_editable() {
                if !ctx.user_editable_claims {
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
        Ok(rules)
    }

    /// Checks the profile, fetches its remote keys (discovery first, for OIDC) and makes it
    /// ready to verify. `keyless_ok`: development without signature checks (no key needed).
    pub(crate) fn build(mut self, ctx: &BuildContext) -> Result<Profile, AuthError> {
        if let Some(e) = self.error.take() {
            return Err(self.name_error(e));
        }
        #[cfg(feature = "jwks-remote")]
        if let Some(remote) = &mut self.remote {
            crate::oidc::resolve(remote, &mut self.issuer, ctx.environment)?;
        }
        let rules = self
            .rules(ctx.leeway, ctx)
            .map_err(|e| self.name_error(e))?;
        let allowed = self.algorithms.unwrap_or_else(AlgSet::all);
        if allowed.is_empty() {
            return Err(AuthError::InvalidConfig("no allowed algorithm".into()));
        }
        #[cfg(feature = "jwks-remote")]
        let has_remote = self.remote.is_some();
        #[cfg(not(feature = "jwks-remote"))]
        let has_remote = false;
        if self.keys.is_empty() && !has_remote && !ctx.keyless_ok {
            return Err(match (&self.issuer, ctx.several) {
                (Some(issuer), true) => AuthError::InvalidConfig(format!(
                    "issuer {issuer:?} has no verification key (set keys, a JWKS URL or OIDC discovery)"
                )),
                _ => AuthError::MissingKey(MISSING_KEY),
            });
        }
        #[cfg(feature = "jwks-remote")]
        let (keys, refresh) = match self.remote.take() {
            Some(config) => {
                config.check_scheme(ctx.environment)?;
                let (body, ttl) = crate::remote::fetch(&config).map_err(|e| {
                    AuthError::InvalidConfig(format!(
                        "cannot fetch the JWKS from {}: {e}",
                        config.display_url()
                    ))
                })?;
                let fetched =
                    KeySet::from_remote_jwks_json(&body).map_err(|e| self.name_error(e))?;
                let local = std::mem::take(&mut self.keys);
                let mut combined = local.clone();
                combined.extend(fetched.clone());
                let mut keys = ProfileKeys::new(ctx, allowed, &combined)?;
                let sources = crate::remote::Sources {
                    local,
                    remote: fetched,
                    body,
                };
                let (remote, wake) = crate::remote::Remote::new(config, sources);
                let retry = remote.config.cooldown.min(remote.config.min_ttl);
                keys.remote = Some(remote);
                (keys, Some((wake, ttl, retry)))
            }
            None => (ProfileKeys::new(ctx, allowed, &self.keys)?, None),
        };
        #[cfg(not(feature = "jwks-remote"))]
        let keys = ProfileKeys::new(ctx, allowed, &self.keys)?;
        let keys = Arc::new(keys);
        #[cfg(feature = "jwks-remote")]
        if let Some((wake, first_wait, retry)) = refresh {
            crate::remote::spawn(Arc::downgrade(&keys), wake, first_wait, retry)?;
        }
        Ok(Profile {
            rules,
            allowed,
            keys,
        })
    }

    /// Prefixes configuration errors of a named issuer with its name.
    fn name_error(&self, e: AuthError) -> AuthError {
        match (&self.issuer, e) {
            (Some(issuer), AuthError::InvalidConfig(m)) => {
                AuthError::InvalidConfig(format!("issuer {issuer:?}: {m}"))
            }
            (Some(issuer), AuthError::InvalidKey(m)) => {
                AuthError::InvalidKey(format!("issuer {issuer:?}: {m}"))
            }
            (_, e) => e,
        }
    }
}

/// What every profile of one verifier shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BuildContext {
    pub(crate) environment: Environment,
    pub(crate) leeway: i64,
    pub(crate) cache_capacity: usize,
    pub(crate) cache_hmac: bool,
    /// Development without signature checks (or with a demo principal): no key needed.
    pub(crate) keyless_ok: bool,
    /// `dangerous_allow_user_editable_claims`.
    pub(crate) user_editable_claims: bool,
    /// More than one profile (errors then name the issuer).
    pub(crate) several: bool,
}
