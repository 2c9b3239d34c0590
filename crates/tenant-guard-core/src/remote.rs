//! Remote JWKS (feature `jwks-remote`): fetch a JWK set over HTTP(S), refresh it in the background
//! as its `Cache-Control: max-age` says (within bounds), refetch early when a token names an
//! unknown `kid` (at most once per cooldown), and keep the last good set when a refresh fails.
//!
//! The URL must be `https://` outside [`Environment::Development`] (plain `http://` only to a
//! literal loopback address, e.g. a sidecar on `127.0.0.1`); redirects are never followed (a 3xx
//! answer is a failed fetch). A key of the fetched set that cannot be used (malformed, an RSA key
//! under the minimum size) is skipped and logged, so one bad key in a rotated set does not freeze
//! the verifier on stale keys; a symmetric (`kty: oct`) key is never accepted from a remote set
//! (RFC 8725: a published HMAC secret lets anyone sign).
//!
//! Requests never wait for the network: the refresh runs on one background thread per verifier
//! (it ends when the verifier is dropped), and a token with an unknown `kid` is refused at once
//! (`unknown_key_id`) while the refetch it triggered runs.
//!
//! ```no_run
//! use std::time::Duration;
//! use tenant_guard_core::{Environment, Verifier, remote::RemoteJwks};
//!
//! let verifier = Verifier::builder(Environment::Production)
//!     .remote_jwks(
//!         RemoteJwks::new("https://<project>.supabase.co/auth/v1/.well-known/jwks.json")
//!             .ttl_bounds(Duration::from_secs(60), Duration::from_secs(3600)),
//!     )
//!     .build()?; // fetches once now; a failure here is a build error
//! # Ok::<(), tenant_guard_core::AuthError>(())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use crate::environment::Environment;
use crate::error::AuthError;
use crate::keys::KeySet;

/// Largest JWKS body read.
const MAX_BODY: u64 = 1024 * 1024;

/// Most redirects followed while fetching an OIDC discovery document (the JWKS itself: none).
pub(crate) const MAX_REDIRECTS: u32 = 3;

/// Where and how often to fetch a remote JWK set.
///
/// Its `Debug` shows the URL without credentials (`user:password@`), like error messages do.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub(crate) url: String,
    pub(crate) min_ttl: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) default_ttl: Duration,
    pub(crate) cooldown: Duration,
    pub(crate) timeout: Duration,
    /// Set by [`RemoteJwks::oidc`]: `url` is then the discovery document's until the verifier is
    /// built, and the JWKS URL (its `jwks_uri`) after.
    pub(crate) oidc_issuer: Option<String>,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("url", &self.display_url())
            .field("min_ttl", &self.min_ttl)
            .field("max_ttl", &self.max_ttl)
            .field("default_ttl", &self.default_ttl)
            .field("cooldown", &self.cooldown)
            .field("timeout", &self.timeout)
            .field("oidc_issuer", &self.oidc_issuer)
            .finish()
    }
}

impl RemoteJwks {
    /// A JWKS at `url` (e.g. Supabase's `https://<project>.supabase.co/auth/v1/.well-known/jwks.json`).
    ///
    /// Defaults: `max-age` honoured within 1 minute to 1 day, 5 minutes without one, unknown-`kid`
    /// refetch at most every 30 seconds, 10 seconds per fetch.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            default_ttl: Duration::from_secs(300),
            cooldown: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            oidc_issuer: None,
        }
    }

    /// The JWKS of an OpenID Connect issuer, found through OIDC discovery: when the verifier is
    /// built, `<issuer>/.well-known/openid-configuration` is fetched (a trailing `/` of the issuer
    /// is dropped first, as OpenID Connect Discovery 1.0 section 4 says), its `issuer` must equal
    /// `issuer` exactly, and its `jwks_uri` is then fetched and refreshed like any remote JWKS.
    /// Tokens must carry exactly this `iss`.
    ///
    /// Outside development both URLs must be `https`, and at most 3 redirects are followed (all
    /// `https`). A failure is a build error naming the URL. Discovery runs once, at build: a
    /// `jwks_uri` that changes later needs a restart (rare; key rotation within it does not).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tenant_guard_core::{Environment, Verifier, remote::RemoteJwks};
    ///
    /// let verifier = Verifier::builder(Environment::Production)
    ///     .remote_jwks(
    ///         RemoteJwks::oidc("https://example.eu.auth0.com/")
    ///             .unknown_kid_cooldown(Duration::from_secs(10)),
    ///     )
    ///     .audience("https://api.example.com")
    ///     .build()?;
    /// # Ok::<(), tenant_guard_core::AuthError>(())
    /// ```
    pub fn oidc(issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        let mut remote = Self::new(crate::oidc::discovery_url(&issuer));
        remote.oidc_issuer = Some(issuer);
        remote
    }

    /// Bounds for the refresh interval taken from `Cache-Control: max-age`.
    #[must_use]
    pub fn ttl_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_ttl = min;
        self.max_ttl = max.max(min);
        self
    }

    /// Refresh interval when the response has no usable `max-age` (still within the bounds).
    #[must_use]
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Least time between two refetches triggered by tokens with an unknown `kid`.
    #[must_use]
    pub fn unknown_kid_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Time limit for one fetch (connect, send, receive).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Refuses a plain `http://` URL outside development, unless it names a literal loopback
    /// address (a man in the middle could otherwise serve their own keys). Any other scheme is
    /// refused everywhere.
    pub(crate) fn check_scheme(&self, environment: Environment) -> Result<(), AuthError> {
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("", &self.url));
        if scheme.eq_ignore_ascii_case("https") {
            return Ok(());
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(AuthError::InvalidConfig(format!(
                "the JWKS URL {} must be https://",
                self.display_url()
            )));
        }
        if environment.is_development() || is_loopback_authority(rest) {
            return Ok(());
        }
        Err(AuthError::InvalidConfig(format!(
            "the JWKS URL {} is plain http:// (outside development only https://, or http:// to \
             a loopback address)",
            self.display_url()
        )))
    }

    /// The URL for messages and logs, without any `user:password@` part.
    pub(crate) fn display_url(&self) -> String {
        match self.url.split_once("://") {
            Some((scheme, rest)) => {
                let authority_end = rest.find('/').unwrap_or(rest.len());
                match rest[..authority_end].rfind('@') {
                    Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                    None => self.url.clone(),
                }
            }
            None => self.url.clone(),
        }
    }

    /// The refresh interval for a response's `Cache-Control` value.
    pub(crate) fn ttl_for(&self, cache_control: Option<&str>) -> Duration {
        cache_control
            .and_then(max_age)
            .unwrap_or(self.default_ttl)
            .clamp(self.min_ttl, self.max_ttl)
    }
}

/// Whether the authority of `rest` (what follows `scheme://`) is a literal loopback IP address,
/// with or without a port (`127.0.0.1:8080`, `[::1]:8080`). Names (`localhost`) are not: they
/// depend on name resolution.
fn is_loopback_authority(rest: &str) -> bool {
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split_once(']').map_or(v6, |(h, _)| h)
    } else {
        host_port.split_once(':').map_or(host_port, |(h, _)| h)
    };
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// `max-age=N` from a `Cache-Control` value (`no-store`/`no-cache` mean "as soon as allowed").
fn max_age(value: &str) -> Option<Duration> {
    let mut age = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") {
            age = arg
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

/// One fetch: the body and the refresh interval it asks for.
pub(crate) fn fetch(config: &RemoteJwks) -> Result<(String, Duration), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(config.timeout))
        .http_status_as_error(true)
        // Never followed: a redirect could lead from the configured https:// origin anywhere.
        .max_redirects(0)
        .build()
        .into();
    let mut response = agent.get(&config.url).call().map_err(|e| e.to_string())?;
    if response.status().is_redirection() {
        return Err(format!(
            "the JWKS URL answered with a redirect ({}); redirects are not followed",
            response.status().as_u16()
        ));
    }
    let ttl = config.ttl_for(
        response
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
    );
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((body, ttl))
}

/// The keys a remote-backed verifier combines: its own, and the last good remote set.
pub(crate) struct Sources {
    pub(crate) local: KeySet,
    pub(crate) remote: KeySet,
    pub(crate) body: String,
}

/// The part of a verifier that drives the refreshes.
pub(crate) struct Remote {
    pub(crate) config: RemoteJwks,
    pub(crate) sources: Mutex<Sources>,
    wake: SyncSender<()>,
    started: Instant,
    /// Milliseconds after `started` of the last unknown-`kid` refetch request (+1; 0 = never).
    last_nudge: AtomicU64,
}

impl Remote {
    pub(crate) fn new(config: RemoteJwks, sources: Sources) -> (Self, Receiver<()>) {
        let (wake, receiver) = std::sync::mpsc::sync_channel(1);
        (
            Self {
                config,
                sources: Mutex::new(sources),
                wake,
                started: Instant::now(),
                last_nudge: AtomicU64::new(0),
            },
            receiver,
        )
    }

    /// Asks for a refetch because a token named an unknown `kid`; at most once per cooldown,
    /// lock-free, never blocking.
    pub(crate) fn nudge(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let cooldown = u64::try_from(self.config.cooldown.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_nudge.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < cooldown {
            return;
        }
        if self
            .last_nudge
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::debug!("unknown kid: asking for a JWKS refetch");
            match self.wake.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
            }
        }
    }
}

/// What the refresh thread needs from the verifier.
pub(crate) trait Refresh: Send + Sync + 'static {
    /// Fetches now and installs the result; returns when to refresh next.
    fn refresh_remote(&self) -> Result<Duration, AuthError>;
}

/// Starts the background refresher; it ends when `target` is dropped.
pub(crate) fn spawn<T: Refresh>(
    target: Weak<T>,
    wake: Receiver<()>,
    first_wait: Duration,
    retry: Duration,
) -> Result<(), AuthError> {
    std::thread::Builder::new()
        .name("tenant-guard-jwks".into())
        .spawn(move || {
            let mut wait = first_wait;
            loop {
                match wake.recv_timeout(wait) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                let Some(target) = target.upgrade() else {
                    return;
                };
                wait = match target.refresh_remote() {
                    Ok(next) => next,
                    Err(e) => {
                        tracing::warn!(error = %e, "JWKS refresh failed; keeping the last good key set");
                        retry
                    }
                };
            }
        })
        .map(|_| ())
        .map_err(|e| AuthError::InvalidConfig(format!("cannot start the JWKS refresh thread: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_parsing_and_bounds() {
        let c = RemoteJwks::new("http://x")
            .ttl_bounds(Duration::from_secs(60), Duration::from_secs(3600));
        let s = Duration::from_secs;
        for (header, want) in [
            (None, s(300)),
            (Some("max-age=600"), s(600)),
            (Some("public, max-age=120, must-revalidate"), s(120)),
            (Some("MAX-AGE=\"900\""), s(900)),
            (Some("max-age=5"), s(60)),
            (Some("max-age=999999"), s(3600)),
            (Some("max-age=abc"), s(300)),
            (Some("no-store"), s(60)),
            (Some("private"), s(300)),
        ] {
            assert_eq!(c.ttl_for(header), want, "{header:?}");
        }
        let url = RemoteJwks::new("https://user:secret@example.com/a@b/jwks.json").display_url();
        assert_eq!(url, "https://example.com/a@b/jwks.json");
        assert_eq!(RemoteJwks::new("http://h/x").display_url(), "http://h/x");
        let debug = format!(
            "{:?}",
            RemoteJwks::new("https://user:secret@example.com/jwks.json")
        );
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("https://example.com/jwks.json"), "{debug}");
        let inverted = RemoteJwks::new("x").ttl_bounds(s(100), s(10));
        assert_eq!(inverted.ttl_for(Some("max-age=1")), s(100));
    }

    #[test]
    fn plain_http_only_in_development_or_to_a_loopback_address() {
        let check = |url: &str, env| RemoteJwks::new(url).check_scheme(env);
        for env in [Environment::Production, Environment::Test] {
            for url in [
                "http://example.com/jwks.json",
                "HTTP://example.com/jwks.json",
                "http://localhost/jwks.json",
                "http://127.0.0.1.evil.example/jwks.json",
                "http://user:pw@example.com/jwks.json",
                "http://10.0.0.1:8080/jwks.json",
            ] {
                let err = check(url, env).unwrap_err();
                assert!(err.to_string().contains("http://"), "{url}: {err}");
                assert!(!err.to_string().contains("pw@"), "{err}");
            }
            for url in [
                "https://example.com/jwks.json",
                "HTTPS://example.com/jwks.json",
                "http://127.0.0.1:9/jwks.json",
                "http://127.0.0.2/jwks.json",
                "http://[::1]:8080/jwks.json",
            ] {
                assert!(check(url, env).is_ok(), "{url}");
            }
        }
        assert!(check("http://example.com/jwks.json", Environment::Development).is_ok());
        for env in [Environment::Production, Environment::Development] {
            assert!(check("ftp://example.com/jwks.json", env).is_err());
            assert!(check("file:///etc/jwks.json", env).is_err());
        }
    }
}
