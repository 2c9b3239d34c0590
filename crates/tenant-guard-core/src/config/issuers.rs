//! `JWT_ISSUERS`: more issuer profiles as a JSON array (see [the table](crate::config)).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{JWT_ISSUERS, name_it};
use crate::algorithm::Algorithm;
use crate::error::AuthError;
use crate::issuer::IssuerProfile;
use crate::keys::KeySet;

/// One element of the array.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    issuer: String,
    #[serde(default)]
    oidc: bool,
    jwks_url: Option<String>,
    jwks_file: Option<String>,
    public_key_file: Option<String>,
    secret_env: Option<String>,
    #[serde(default)]
    secret_is_base64: bool,
    algorithms: Option<Vec<String>>,
    audience: Option<OneOrMany>,
    org_claim: Option<PathSpec>,
    role_claim: Option<PathSpec>,
    allowed_roles: Option<Vec<String>>,
    role_array: Option<String>,
    default_role: Option<String>,
    #[serde(default)]
    role_map: BTreeMap<String, String>,
    #[serde(default)]
    org_from_request: bool,
    org_id_kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A path in the string syntax, or its keys as an array.
#[derive(Deserialize)]
#[serde(untagged)]
enum PathSpec {
    Text(String),
    Keys(Vec<String>),
}

impl PathSpec {
    /// The string syntax (keys as `["…"]` JSON strings).
    fn into_text(self) -> String {
        match self {
            Self::Text(text) => text,
            Self::Keys(keys) => keys
                .into_iter()
                .map(|k| format!("[{}]", serde_json::Value::String(k)))
                .collect(),
        }
    }
}

/// Parses the array; `get` reads the variables named by `secret_env`.
pub(super) fn parse(
    json: &str,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<IssuerProfile>, AuthError> {
    let entries: Vec<serde_json::Value> = serde_json::from_str(json).map_err(|e| {
        AuthError::InvalidConfig(format!(
            "{JWT_ISSUERS} must be a JSON array of issuer profiles: {e}"
        ))
    })?;
    entries
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let issuer = value["issuer"].as_str().unwrap_or("?").to_owned();
            let name = format!("{JWT_ISSUERS}[{i}] ({issuer})");
            let entry = Entry::deserialize(value)
                .map_err(|e| AuthError::InvalidConfig(format!("{name}: {e}")))?;
            entry.into_profile(get).map_err(|e| name_it(&name, e))
        })
        .collect()
}

impl Entry {
    fn into_profile(
        self,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<IssuerProfile, AuthError> {
        let mut profile = IssuerProfile::new(self.issuer.trim());
        if self.oidc {
            if self.jwks_url.is_some() {
                return Err(AuthError::InvalidConfig(
                    "set either \"oidc\" or \"jwks_url\", not both".into(),
                ));
            }
            #[cfg(feature = "jwks-remote")]
            {
                profile = profile.remote_jwks(crate::remote::RemoteJwks::oidc(self.issuer.trim()));
            }
            #[cfg(not(feature = "jwks-remote"))]
            return Err(AuthError::InvalidConfig(
                "\"oidc\" needs the `jwks-remote` feature".into(),
            ));
        }
        if let Some(url) = self.jwks_url {
            #[cfg(feature = "jwks-remote")]
            {
                profile = profile.jwks_url(url.trim());
            }
            #[cfg(not(feature = "jwks-remote"))]
            return Err(AuthError::InvalidConfig(format!(
                "\"jwks_url\" ({url}) needs the `jwks-remote` feature"
            )));
        }
        if let Some(path) = self.jwks_file {
            profile = profile.key_set(KeySet::from_jwks_file(path.trim())?);
        }
        if let Some(path) = self.public_key_file {
            let pem = std::fs::read(path.trim()).map_err(|e| {
                AuthError::InvalidConfig(format!("cannot read the public key file {path}: {e}"))
            })?;
            profile = profile.public_key_pem(pem);
        }
        if let Some(var) = self.secret_env {
            let secret = get(var.trim()).ok_or_else(|| {
                AuthError::InvalidConfig(format!("\"secret_env\" names {var}, which is not set"))
            })?;
            profile = if self.secret_is_base64 {
                profile.hmac_secret_base64(&secret)
            } else {
                profile.hmac_secret(secret)
            };
        }
        if let Some(algs) = self.algorithms {
            let algs = algs
                .iter()
                .map(|a| {
                    a.parse::<Algorithm>()
                        .map_err(|e| AuthError::InvalidConfig(format!("algorithm {a:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            profile = profile.algorithms(algs);
        }
        match self.audience {
            Some(OneOrMany::One(aud)) => profile = profile.audience(aud),
            Some(OneOrMany::Many(auds)) => profile = profile.audiences(auds),
            None => {}
        }
        if let Some(path) = self.org_claim {
            profile = profile.org_claim(path.into_text());
        }
        if let Some(path) = self.role_claim {
            profile = profile.role_claim(path.into_text());
        }
        if let Some(roles) = self.allowed_roles {
            profile = profile.allowed_roles(roles);
        }
        if let Some(mode) = self.role_array {
            profile = profile.role_array(mode.parse()?);
        }
        if let Some(role) = self.default_role {
            profile = profile.default_role(role);
        }
        profile = profile.org_from_request(self.org_from_request);
        if let Some(kind) = self.org_id_kind {
            profile = profile.org_id_kind(super::parse_org_id_kind("\"org_id_kind\"", &kind)?);
        }
        for (from, to) in self.role_map {
            profile = profile.map_role(from, to);
        }
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_errors() {
        let none = |_: &str| None;
        let profiles = parse(
            r#"[{"issuer":"https://a/","role_claim":["https://example.com/roles"],
                 "audience":["x","y"],"role_map":{"admin":"org_admin"},
                 "allowed_roles":["authenticated","org_admin"],"role_array":"first"}]"#,
            &none,
        )
        .unwrap();
        assert_eq!(profiles.len(), 1);
        assert_eq!(profiles[0].role_claim, r#"["https://example.com/roles"]"#);
        assert_eq!(profiles[0].audiences, ["x", "y"]);
        for (bad, want) in [
            ("{}", "JSON array"),
            (r#"[{"issuer":"a","colour":"red"}]"#, "colour"),
            (r#"[{"issuer":"a","secret_env":"NOPE"}]"#, "NOPE"),
            (r#"[{"issuer":"a","role_array":"all"}]"#, "role array"),
            (r#"[{"issuer":"a","algorithms":["none"]}]"#, "algorithm"),
            (r#"[{"issuer":"a","org_id_kind":"bigint"}]"#, "org_id_kind"),
            (r#"[{"issuer":"a","org_id_kind":""}]"#, "org_id_kind"),
            (r#"[{"issuer":"a","org_id_kind":7}]"#, "expected a string"),
        ] {
            let err = parse(bad, &none).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
        let secret = |k: &str| (k == "PARTNER").then(|| "p".repeat(40));
        let profiles = parse(r#"[{"issuer":"a","secret_env":"PARTNER"}]"#, &secret).unwrap();
        assert_eq!(profiles[0].keys.len(), 1);
        let profiles = parse(
            r#"[{"issuer":"a","org_id_kind":"integer"},{"issuer":"b","org_id_kind":"text"},{"issuer":"c"}]"#,
            &none,
        )
        .unwrap();
        let kinds: Vec<_> = profiles.iter().map(|p| p.org_id_kind).collect();
        assert_eq!(
            kinds,
            [
                crate::OrgIdKind::Integer,
                crate::OrgIdKind::Text,
                crate::OrgIdKind::Uuid
            ]
        );
    }
}
