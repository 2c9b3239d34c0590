//! OpenID Connect discovery (feature `jwks-remote`): from an issuer to its `jwks_uri`, once, when
//! the verifier is built; the keys then come through the remote-JWKS machinery
//! ([`crate::remote`]). See [`crate::remote::RemoteJwks::oidc`].

use serde::Deserialize;

use crate::environment::Environment;
use crate::error::AuthError;
use crate::remote::{MAX_REDIRECTS, RemoteJwks};

/// Largest discovery document read (real ones are a few KiB).
const MAX_DISCOVERY_BODY: u64 = 256 * 1024;

/// `<issuer>/.well-known/openid-configuration`, without a doubled slash.
pub(crate) fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// The two members of the discovery document the verifier uses.
#[derive(Deserialize)]
struct Document {
    issuer: String,
    jwks_uri: String,
}

/// For a remote set made by [`RemoteJwks::oidc`]: checks the configured issuer, runs discovery
/// and points `remote` at the `jwks_uri`. The profile's issuer becomes the OIDC issuer (a
/// different one configured beside it is an error). Other remote sets pass unchanged.
pub(crate) fn resolve(
    remote: &mut RemoteJwks,
    issuer: &mut Option<String>,
    environment: Environment,
) -> Result<(), AuthError> {
    let Some(oidc_issuer) = remote.oidc_issuer.clone() else {
        return Ok(());
    };
    match issuer {
        Some(configured) if *configured != oidc_issuer => {
            return Err(AuthError::InvalidConfig(format!(
                "the issuer {configured:?} differs from the OIDC issuer {oidc_issuer:?}"
            )));
        }
        _ => *issuer = Some(oidc_issuer.clone()),
    }
    let jwks_uri = discover(remote, &oidc_issuer, environment)?;
    remote.url = jwks_uri;
    Ok(())
}

/// Fetches and checks the discovery document at `remote.url`; returns its `jwks_uri`.
fn discover(
    remote: &RemoteJwks,
    issuer: &str,
    environment: Environment,
) -> Result<String, AuthError> {
    let shown = remote.display_url();
    let fail = |why: String| {
        AuthError::InvalidConfig(format!(
            "OIDC discovery for issuer {issuer:?} failed at {shown}: {why}"
        ))
    };
    let https_only = !environment.is_development();
    require_https(&remote.url, https_only).map_err(fail)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(remote.timeout))
        .http_status_as_error(true)
        .https_only(https_only)
        .max_redirects(MAX_REDIRECTS)
        .build()
        .into();
    let mut response = agent
        .get(&remote.url)
        .call()
        .map_err(|e| fail(e.to_string()))?;
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_DISCOVERY_BODY)
        .read_to_string()
        .map_err(|e| fail(e.to_string()))?;
    let doc: Document = serde_json::from_str(&body).map_err(|e| {
        fail(format!(
            "not a discovery document with string `issuer` and `jwks_uri` ({e})"
        ))
    })?;
    if doc.issuer != issuer {
        return Err(fail(format!(
            "the document names the issuer {:?}, not exactly the configured one",
            doc.issuer
        )));
    }
    require_https(&doc.jwks_uri, https_only).map_err(|why| fail(format!("jwks_uri: {why}")))?;
    tracing::info!(issuer, jwks_uri = %RemoteJwks::new(&*doc.jwks_uri).display_url(), "OIDC discovery done");
    Ok(doc.jwks_uri)
}

/// `https://…` (or, in development only, `http://…`), with a host.
fn require_https(url: &str, https_only: bool) -> Result<(), String> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if !https_only && lower.starts_with("http://") {
        &url[7..]
    } else if https_only {
        return Err("must be an https:// URL outside development".into());
    } else {
        return Err("must be an http(s):// URL".into());
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err("has no host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_urls() {
        assert_eq!(
            discovery_url("https://example.eu.auth0.com/"),
            "https://example.eu.auth0.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://kc.example.com/realms/acme"),
            "https://kc.example.com/realms/acme/.well-known/openid-configuration"
        );
    }

    #[test]
    fn schemes() {
        assert!(require_https("https://a/x", true).is_ok());
        assert!(require_https("HTTPS://a/x", true).is_ok());
        assert!(require_https("http://a/x", true).is_err());
        assert!(require_https("http://a/x", false).is_ok());
        assert!(require_https("file:///etc/passwd", false).is_err());
        assert!(require_https("https:///x", true).is_err());
        assert!(require_https("", true).is_err());
    }

    #[test]
    fn a_configured_issuer_must_match_the_oidc_one() {
        let mut remote = RemoteJwks::oidc("https://a.example/");
        let mut issuer = Some("https://b.example/".to_owned());
        let err = resolve(&mut remote, &mut issuer, Environment::Production).unwrap_err();
        assert!(err.to_string().contains("differs"), "{err}");
        // Plain remote sets are left alone (no network).
        let mut plain = RemoteJwks::new("https://a.example/jwks.json");
        let mut none = None;
        assert!(resolve(&mut plain, &mut none, Environment::Production).is_ok());
        assert_eq!(none, None);
    }
}
