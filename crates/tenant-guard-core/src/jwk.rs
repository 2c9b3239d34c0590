//! JWK / JWKS parsing with the checks jsonwebtoken leaves to its callers (`kty`, `crv`, `alg`,
//! `use`, `key_ops`, private parts, key sizes).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use crate::algorithm::{AlgSet, Algorithm, KeyKind};
use crate::error::AuthError;
use crate::keys::{VerifyKey, rsa_key};

/// Most keys read from one JWK set.
const MAX_KEYS: usize = 64;

#[derive(Deserialize)]
#[serde(untagged)]
enum Document {
    Set { keys: Vec<serde_json::Value> },
    Single(serde_json::Value),
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    k: Option<String>,
    d: Option<serde_json::Value>,
    p: Option<serde_json::Value>,
}

/// Every usable signing key of a JWKS (or a single JWK). Keys for other uses are skipped; a
/// malformed or inconsistent signing key is an error, and so is a set with no usable key.
pub(crate) fn parse_jwks(json: &str) -> Result<Vec<VerifyKey>, AuthError> {
    parse(json, false)
}

/// Every usable signing key of a JWKS fetched from a URL: a rotated set the issuer controls, read
/// again on every refresh. One unusable key (malformed, RSA under the minimum size, private
/// material) is skipped with a warning instead of failing the whole set, which would freeze the
/// verifier on the previous keys. A symmetric (`kty: oct`) key is always skipped: a published set
/// is public, and an HMAC secret anyone can read lets anyone sign (RFC 8725, section 3.5). A set
/// with no usable key is still an error.
#[cfg_attr(not(feature = "jwks-remote"), allow(dead_code))] // used by remote sets only
pub(crate) fn parse_remote_jwks(json: &str) -> Result<Vec<VerifyKey>, AuthError> {
    parse(json, true)
}

fn parse(json: &str, remote: bool) -> Result<Vec<VerifyKey>, AuthError> {
    let doc: Document = serde_json::from_str(json)
        .map_err(|e| AuthError::InvalidKey(format!("JWKS is not valid JSON: {e}")))?;
    let values = match doc {
        Document::Set { keys } => keys,
        Document::Single(v) if v.get("kty").is_some() => vec![v],
        Document::Single(_) => {
            return Err(AuthError::InvalidKey(
                "JWKS must be {\"keys\": [...]} or a single JWK".into(),
            ));
        }
    };
    if values.len() > MAX_KEYS {
        return Err(AuthError::InvalidKey(format!(
            "JWKS holds more than {MAX_KEYS} keys"
        )));
    }
    let mut keys = Vec::with_capacity(values.len());
    for (index, value) in values.into_iter().enumerate() {
        let parsed = serde_json::from_value::<RawJwk>(value)
            .map_err(|e| AuthError::InvalidKey(format!("JWK #{index} is malformed: {e}")))
            .and_then(|raw| {
                if remote && raw.kty.as_deref() == Some("oct") {
                    return Err(AuthError::InvalidKey(format!(
                        "JWK #{index}: a symmetric (oct) key in a published JWKS is a secret \
                         anyone can read; never trusted"
                    )));
                }
                parse_jwk(raw, index)
            });
        match parsed {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(error) if remote => {
                tracing::warn!(%error, "skipping an unusable key of the remote JWKS");
            }
            Err(error) => return Err(error),
        }
    }
    if keys.is_empty() {
        return Err(AuthError::InvalidKey(
            "the JWKS contains no usable signing key".into(),
        ));
    }
    Ok(keys)
}

fn parse_jwk(raw: RawJwk, index: usize) -> Result<Option<VerifyKey>, AuthError> {
    let name = match &raw.kid {
        Some(kid) => format!("JWK {kid:?}"),
        None => format!("JWK #{index}"),
    };
    let err = |what: &str| AuthError::InvalidKey(format!("{name}: {what}"));
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        tracing::debug!(key = %name, "skipping JWK not meant for signatures");
        return Ok(None);
    }
    if raw
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        tracing::debug!(key = %name, "skipping JWK whose key_ops exclude verify");
        return Ok(None);
    }
    let alg = match raw.alg.as_deref() {
        None => None,
        Some(a) => match Algorithm::from_header(a) {
            Some(alg) => Some(alg),
            None => {
                tracing::warn!(key = %name, alg = a, "skipping JWK with an unsupported alg");
                return Ok(None);
            }
        },
    };
    let kty = raw.kty.as_deref().ok_or_else(|| err("missing kty"))?;
    if kty != "oct" && (raw.d.is_some() || raw.p.is_some()) {
        return Err(err(
            "contains private key material; publish only the public key",
        ));
    }
    let (kind, key, secret_len) = match kty {
        "RSA" => {
            let n = field(&raw.n, "n", &err)?;
            let e = field(&raw.e, "e", &err)?;
            let key = rsa_key(&n, &e).map_err(|e| err(&e.to_string()))?;
            (KeyKind::Rsa, key, 0)
        }
        "EC" => {
            let (kind, size) = match raw.crv.as_deref() {
                Some("P-256") => (KeyKind::EcP256, 32),
                Some("P-384") => (KeyKind::EcP384, 48),
                other => {
                    tracing::warn!(key = %name, crv = ?other, "skipping EC JWK with an unsupported curve");
                    return Ok(None);
                }
            };
            let x = field(&raw.x, "x", &err)?;
            let y = field(&raw.y, "y", &err)?;
            if x.len() != size || y.len() != size {
                return Err(err("EC coordinates have the wrong length for the curve"));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (kind, DecodingKey::from_ec_der(&point), 0)
        }
        "OKP" => {
            if raw.crv.as_deref() != Some("Ed25519") {
                tracing::warn!(key = %name, crv = ?raw.crv, "skipping OKP JWK that is not Ed25519");
                return Ok(None);
            }
            let x = field(&raw.x, "x", &err)?;
            if x.len() != 32 {
                return Err(err("Ed25519 public key must be 32 bytes"));
            }
            (KeyKind::Ed25519, DecodingKey::from_ed_der(&x), 0)
        }
        "oct" => {
            let k = field(&raw.k, "k", &err)?;
            if k.is_empty() {
                return Err(err("empty HMAC secret"));
            }
            (KeyKind::Hmac, DecodingKey::from_secret(&k), k.len())
        }
        other => {
            tracing::warn!(key = %name, kty = other, "skipping JWK with an unsupported kty");
            return Ok(None);
        }
    };
    let algs = match alg {
        Some(alg) if alg.key_kind() == kind => [alg].into_iter().collect::<AlgSet>(),
        Some(alg) => {
            return Err(err(&format!(
                "alg {alg} does not fit a {} (algorithm confusion refused)",
                kind.as_str()
            )));
        }
        None => kind.algorithms(),
    };
    Ok(Some(VerifyKey {
        kid: raw.kid.map(String::into_boxed_str),
        kind,
        algs,
        key,
        secret_len,
    }))
}

fn field(
    value: &Option<String>,
    name: &str,
    err: &dyn Fn(&str) -> AuthError,
) -> Result<Vec<u8>, AuthError> {
    let value = value
        .as_deref()
        .ok_or_else(|| err(&format!("missing {name}")))?;
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|_| err(&format!("{name} is not base64url")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn one(jwk: serde_json::Value) -> Result<Vec<VerifyKey>, AuthError> {
        parse_jwks(&serde_json::json!({ "keys": [jwk] }).to_string())
    }

    #[test]
    fn accepts_a_single_jwk_or_a_set() {
        let single = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "a"});
        let keys = parse_jwks(&single.to_string()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kind, KeyKind::Ed25519);
        assert_eq!(keys[0].kid.as_deref(), Some("a"));
        assert!(keys[0].algs.contains(Algorithm::EdDSA));
        assert!(parse_jwks("{\"nope\": 1}").is_err());
        assert!(parse_jwks("not json").is_err());
    }

    #[test]
    fn skips_keys_not_for_signing_but_errors_when_none_is_left() {
        let enc = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X, "use": "enc"});
        assert!(one(enc.clone()).is_err());
        let ops =
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X, "key_ops": ["sign"]});
        let sig = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X, "use": "sig", "key_ops": ["verify"]});
        let set = serde_json::json!({"keys": [enc, ops, sig, {"kty": "OKP", "crv": "X25519", "x": ED_X},
            {"kty": "XYZ"}, {"kty": "RSA", "alg": "RSA-OAEP"}]});
        assert_eq!(parse_jwks(&set.to_string()).unwrap().len(), 1);
    }

    #[test]
    fn alg_must_fit_the_key_type() {
        for alg in ["HS256", "RS256", "ES256", "ES384"] {
            let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X, "alg": alg});
            let err = one(jwk).unwrap_err();
            assert!(
                err.to_string().contains("algorithm confusion"),
                "{alg}: {err}"
            );
        }
        let oct = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "alg": "RS256"});
        assert!(one(oct).is_err());
        let oct = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS384"});
        let key = &one(oct).unwrap()[0];
        assert_eq!(key.algs.iter().collect::<Vec<_>>(), [Algorithm::HS384]);
        assert_eq!(key.secret_len, 6);
    }

    #[test]
    fn curve_and_coordinates_are_checked() {
        let x32 = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let x48 = URL_SAFE_NO_PAD.encode([1u8; 48]);
        let p256 = serde_json::json!({"kty": "EC", "crv": "P-256", "x": x32, "y": x32});
        assert_eq!(one(p256).unwrap()[0].kind, KeyKind::EcP256);
        let wrong = serde_json::json!({"kty": "EC", "crv": "P-384", "x": x32, "y": x32});
        assert!(one(wrong).is_err());
        let p384_as_es256 =
            serde_json::json!({"kty": "EC", "crv": "P-384", "x": x48, "y": x48, "alg": "ES256"});
        assert!(one(p384_as_es256).is_err());
        let secp = serde_json::json!({"kty": "EC", "crv": "secp256k1", "x": x32, "y": x32});
        assert!(
            one(secp).is_err(),
            "unsupported curve skipped, leaving nothing"
        );
        let short_ed = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"});
        assert!(one(short_ed).is_err());
        let bad_b64 = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "!!"});
        assert!(one(bad_b64).is_err());
    }

    #[test]
    fn private_material_and_missing_fields_are_errors() {
        let private = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X, "d": ED_X});
        assert!(one(private).unwrap_err().to_string().contains("private"));
        assert!(one(serde_json::json!({"kty": "RSA", "e": "AQAB"})).is_err());
        assert!(one(serde_json::json!({"crv": "Ed25519", "x": ED_X})).is_err());
        let messages = one(serde_json::json!({"kty": "oct", "k": ""}))
            .unwrap_err()
            .to_string();
        assert!(messages.contains("empty"));
    }

    #[test]
    fn too_many_keys_are_refused() {
        let key = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X});
        let set = serde_json::json!({"keys": vec![key; MAX_KEYS + 1]});
        assert!(parse_jwks(&set.to_string()).is_err());
    }
}
