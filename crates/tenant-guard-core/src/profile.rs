//! The built form of an issuer profile: its claim rules, its allowed algorithms and its keys
//! (swappable at runtime, with the cache of tokens they verified and the remote refresh state),
//! and the routing of tokens to profiles by `iss`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::algorithm::{AlgSet, KeyKind};
use crate::cache::TokenCache;
use crate::claims::ClaimRules;
use crate::environment::Environment;
use crate::error::AuthError;
use crate::issuer::BuildContext;
use crate::keys::{KeySet, MIN_HMAC_SECRET_LEN};

/// One trusted issuer, ready to verify.
pub(crate) struct Profile {
    pub(crate) rules: ClaimRules,
    pub(crate) allowed: AlgSet,
    pub(crate) keys: Arc<ProfileKeys>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("issuer", &self.rules.issuer)
            .field("audiences", &self.rules.audiences)
            .field("org_claim", &self.rules.org_path.to_string())
            .field("role_claim", &self.rules.role_path.to_string())
            .field("allowed_roles", &self.rules.role.allowed)
            .field("algorithms", &self.allowed)
            .field("keys", &self.keys.state.load().keys)
            .finish_non_exhaustive()
    }
}

/// The keys of one profile: swapped whole (keys and cache together), read without a lock.
pub(crate) struct ProfileKeys {
    environment: Environment,
    allowed: AlgSet,
    cache_capacity: usize,
    cache_hmac: bool,
    /// The generation of the last installed key state.
    generations: AtomicU64,
    pub(crate) state: ArcSwap<KeyState>,
    #[cfg(feature = "jwks-remote")]
    pub(crate) remote: Option<crate::remote::Remote>,
}

/// The swappable part: the keys, and the cache of tokens they verified.
pub(crate) struct KeyState {
    pub(crate) keys: KeySet,
    /// This profile's own cache (a single profile); with several, the verifier's shared cache is
    /// used instead and this is `None`.
    pub(crate) cache: Option<TokenCache>,
    /// Which installation of keys this is: tokens in a shared cache verified by an older one
    /// are stale.
    pub(crate) generation: u64,
}

impl ProfileKeys {
    pub(crate) fn new(
        ctx: &BuildContext,
        allowed: AlgSet,
        keys: &KeySet,
    ) -> Result<Self, AuthError> {
        // With several profiles the verifier keeps one shared cache (looked up before routing).
        let cache_capacity = if ctx.several { 0 } else { ctx.cache_capacity };
        let state = prepare_keys(
            ctx.environment,
            keys,
            allowed,
            cache_capacity,
            ctx.cache_hmac,
            0,
        )?;
        Ok(Self {
            environment: ctx.environment,
            allowed,
            cache_capacity,
            cache_hmac: ctx.cache_hmac,
            generations: AtomicU64::new(0),
            state: ArcSwap::from_pointee(state),
            #[cfg(feature = "jwks-remote")]
            remote: None,
        })
    }

    /// Checks `keys` and makes them current, with an empty cache.
    pub(crate) fn install(&self, keys: &KeySet) -> Result<(), AuthError> {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let state = prepare_keys(
            self.environment,
            keys,
            self.allowed,
            self.cache_capacity,
            self.cache_hmac,
            generation,
        )?;
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// Replaces the local (non-remote) keys; the remote set, if any, stays beside them.
    pub(crate) fn set_local(&self, keys: KeySet) -> Result<(), AuthError> {
        #[cfg(feature = "jwks-remote")]
        if let Some(remote) = &self.remote {
            let mut sources = remote
                .sources
                .lock()
                .map_err(|_| AuthError::InvalidConfig("key sources lock poisoned".into()))?;
            let mut combined = keys.clone();
            combined.extend(sources.remote.clone());
            self.install(&combined)?;
            sources.local = keys;
            return Ok(());
        }
        self.install(&keys)
    }

    /// Whether HMAC-verified tokens are cached too.
    pub(crate) fn caches_hmac(&self) -> bool {
        self.cache_hmac
    }

    /// Asks the refresher for a refetch (a token named an unknown `kid`).
    #[cfg_attr(not(feature = "jwks-remote"), allow(clippy::unused_self))]
    pub(crate) fn nudge(&self) {
        #[cfg(feature = "jwks-remote")]
        if let Some(remote) = &self.remote {
            remote.nudge();
        }
    }
}

#[cfg(feature = "jwks-remote")]
impl crate::remote::Refresh for ProfileKeys {
    fn refresh_remote(&self) -> Result<std::time::Duration, AuthError> {
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
    generation: u64,
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
            "no configured key can verify any allowed algorithm ({allowed:?})"
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
        generation,
    })
}

/// Which profile verifies a token.
pub(crate) enum Routes {
    /// One profile: every token goes to it (its `iss` is checked with the other claims, when
    /// configured), exactly as a single-issuer verifier always did.
    Single,
    /// Several: by exact `iss`, before any signature work.
    ByIssuer(HashMap<Box<str>, usize>),
}

impl Routes {
    /// The routing for `profiles`: every one of several must name a distinct issuer.
    pub(crate) fn new(profiles: &[Profile]) -> Result<Self, AuthError> {
        if profiles.len() == 1 {
            return Ok(Self::Single);
        }
        let mut map = HashMap::with_capacity(profiles.len());
        for (i, p) in profiles.iter().enumerate() {
            let Some(issuer) = &p.rules.issuer else {
                return Err(AuthError::InvalidConfig(
                    "with several issuers, every issuer profile must name its issuer (`iss`)"
                        .into(),
                ));
            };
            if map.insert(issuer.clone(), i).is_some() {
                return Err(AuthError::InvalidConfig(format!(
                    "the issuer {issuer:?} is configured twice"
                )));
            }
        }
        Ok(Self::ByIssuer(map))
    }
}
