//! Verification keys: HMAC secrets, PEM public keys and JWK sets, each bound to the algorithms its
//! type allows, so a token can never pick a key of another kind (no algorithm confusion).

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use jsonwebtoken::DecodingKey;

use crate::algorithm::{AlgSet, Algorithm, KeyKind};
use crate::error::AuthError;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Smallest HMAC secret accepted outside development, in bytes (as PostgREST requires).
pub const MIN_HMAC_SECRET_LEN: usize = 32;

/// A set of verification keys, each with an optional key id (`kid`) and the algorithms it may verify.
///
/// Keys of several kinds can live side by side (rotation, or HS256 and ES256 during a migration).
/// A token is checked only against keys whose kind fits its `alg`; when it carries a `kid`, only
/// keys with that id (or without any id) are tried.
///
/// ```
/// use tenant_guard_core::KeySet;
///
/// let mut keys = KeySet::new();
/// keys.add_hmac_secret(b"a-long-random-secret-from-your-vault!", None).unwrap();
/// keys.add_jwks_json(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"ed-1","use":"sig",
///     "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#).unwrap();
/// assert_eq!(keys.len(), 2);
/// assert_eq!(keys.key_ids().collect::<Vec<_>>(), ["ed-1"]);
/// ```
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
}

/// One key, ready to verify.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    pub(crate) kid: Option<Box<str>>,
    pub(crate) kind: KeyKind,
    pub(crate) algs: AlgSet,
    pub(crate) key: DecodingKey,
    /// Secret length for HMAC keys (checked against the environment's minimum).
    pub(crate) secret_len: usize,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// `true` when the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids in the set (keys without an id are skipped).
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref())
    }

    /// `true` when some key can verify an asymmetric algorithm.
    pub fn has_asymmetric_keys(&self) -> bool {
        self.keys.iter().any(|k| k.kind != KeyKind::Hmac)
    }

    /// Adds an HMAC secret (its raw bytes) for HS256/384/512.
    pub fn add_hmac_secret(&mut self, secret: &[u8], kid: Option<&str>) -> Result<(), AuthError> {
        if secret.is_empty() {
            return Err(AuthError::InvalidKey("the HMAC secret is empty".into()));
        }
        self.push(VerifyKey {
            kid: kid.map(Into::into),
            kind: KeyKind::Hmac,
            algs: KeyKind::Hmac.algorithms(),
            key: DecodingKey::from_secret(secret),
            secret_len: secret.len(),
        });
        Ok(())
    }

    /// Adds an HMAC secret given in base64 (standard or URL-safe alphabet, padding optional), like
    /// PostgREST's `jwt-secret-is-base64`.
    pub fn add_hmac_secret_base64(
        &mut self,
        secret: &str,
        kid: Option<&str>,
    ) -> Result<(), AuthError> {
        let bytes = decode_base64_any(secret.trim())
            .ok_or_else(|| AuthError::InvalidKey("the HMAC secret is not valid base64".into()))?;
        self.add_hmac_secret(&bytes, kid)
    }

    /// Adds a PEM public key: `PUBLIC KEY` (RSA, P-256, P-384 or Ed25519) or `RSA PUBLIC KEY`.
    ///
    /// The key's type decides the algorithms it verifies: RSA keys RS256/384/512 and PS256/384/512,
    /// P-256 ES256, P-384 ES384, Ed25519 EdDSA. RSA keys shorter than [`MIN_RSA_BITS`] and private
    /// keys are refused.
    pub fn add_pem(&mut self, pem: &[u8], kid: Option<&str>) -> Result<(), AuthError> {
        if contains(pem, b"PRIVATE KEY") {
            return Err(AuthError::InvalidKey(
                "a private key was given where a public key is expected".into(),
            ));
        }
        let (kind, key) = if let Ok(rsa) = DecodingKey::from_rsa_pem(pem) {
            let der = rsa
                .try_get_as_bytes()
                .map_err(|_| AuthError::InvalidKey("unreadable RSA public key".into()))?;
            let (n, e) = parse_rsa_public_key_der(der)
                .ok_or_else(|| AuthError::InvalidKey("unreadable RSA public key".into()))?;
            (KeyKind::Rsa, rsa_key(n, e)?)
        } else if let Ok(ec) = DecodingKey::from_ec_pem(pem) {
            let point = ec
                .try_get_as_bytes()
                .map_err(|_| AuthError::InvalidKey("unreadable EC public key".into()))?;
            let kind = match point.len() {
                65 => KeyKind::EcP256,
                97 => KeyKind::EcP384,
                _ => {
                    return Err(AuthError::InvalidKey(
                        "unsupported EC curve (expected P-256 or P-384)".into(),
                    ));
                }
            };
            if point.first() != Some(&4) {
                return Err(AuthError::InvalidKey(
                    "EC public key is not an uncompressed point".into(),
                ));
            }
            (kind, ec)
        } else if let Ok(ed) = DecodingKey::from_ed_pem(pem) {
            let raw = ed
                .try_get_as_bytes()
                .map_err(|_| AuthError::InvalidKey("unreadable Ed25519 public key".into()))?;
            if raw.len() != 32 {
                return Err(AuthError::InvalidKey(
                    "Ed25519 public key must be 32 bytes".into(),
                ));
            }
            (KeyKind::Ed25519, ed)
        } else {
            return Err(AuthError::InvalidKey(
                "not a PEM public key (expected RSA, P-256, P-384 or Ed25519)".into(),
            ));
        };
        self.push(VerifyKey {
            kid: kid.map(Into::into),
            kind,
            algs: kind.algorithms(),
            key,
            secret_len: 0,
        });
        Ok(())
    }

    /// Adds every usable signing key of a JWK set (`{"keys": [...]}`) or of a single JWK.
    ///
    /// The JWK's `kty`, `crv`, `alg`, `use` and `key_ops` are checked here (jsonwebtoken's
    /// `DecodingKey::from_jwk` ignores them): keys for encryption are skipped, a key whose `alg`
    /// does not fit its type, a private key, or an RSA key under [`MIN_RSA_BITS`] is an error.
    pub fn add_jwks_json(&mut self, json: &str) -> Result<(), AuthError> {
        for key in crate::jwk::parse_jwks(json)? {
            self.push(key);
        }
        Ok(())
    }

    /// A set from JWKS JSON; see [`KeySet::add_jwks_json`].
    pub fn from_jwks_json(json: &str) -> Result<Self, AuthError> {
        let mut set = Self::new();
        set.add_jwks_json(json)?;
        Ok(set)
    }

    /// A set from the JWKS JSON of a remote URL: unusable keys are skipped (logged) and symmetric
    /// keys never accepted; see [`crate::remote`].
    #[cfg_attr(not(feature = "jwks-remote"), allow(dead_code))] // used by remote sets only
    pub(crate) fn from_remote_jwks_json(json: &str) -> Result<Self, AuthError> {
        let mut set = Self::new();
        for key in crate::jwk::parse_remote_jwks(json)? {
            set.push(key);
        }
        Ok(set)
    }

    /// A set from a JWKS file; see [`KeySet::add_jwks_json`].
    pub fn from_jwks_file(path: impl AsRef<Path>) -> Result<Self, AuthError> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path).map_err(|e| {
            AuthError::InvalidConfig(format!("cannot read JWKS file {}: {e}", path.display()))
        })?;
        Self::from_jwks_json(&json)
    }

    /// Adds every key of `other`.
    pub fn extend(&mut self, other: KeySet) {
        self.keys.extend(other.keys);
    }

    pub(crate) fn push(&mut self, key: VerifyKey) {
        self.keys.push(key);
    }

    pub(crate) fn keys(&self) -> &[VerifyKey] {
        &self.keys
    }

    /// Keeps only what `allowed` permits; keys left with no algorithm are dropped.
    pub(crate) fn restricted_to(&self, allowed: AlgSet) -> Self {
        Self {
            keys: self
                .keys
                .iter()
                .filter_map(|k| {
                    let algs = k.algs.intersect(allowed);
                    (!algs.is_empty()).then(|| VerifyKey { algs, ..k.clone() })
                })
                .collect(),
        }
    }

    /// Checks `signature` over `message` with the keys fit for `alg` and `kid`.
    ///
    /// A token with a `kid` is tried against keys with that id, then keys without an id; a token
    /// without one against every key fit for its algorithm. Nothing tried: a `kid` that names a
    /// key of another type is [`AuthError::DisallowedAlgorithm`], an unknown `kid`
    /// [`AuthError::UnknownKeyId`], no key of the algorithm's type [`AuthError::DisallowedAlgorithm`].
    pub(crate) fn verify_signature(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        message: &[u8],
        signature: &str,
    ) -> Result<(), AuthError> {
        let mut tried = false;
        let fits = |k: &&VerifyKey| k.algs.contains(alg);
        if let Some(kid) = kid {
            for key in self.keys.iter().filter(fits) {
                if key.kid.as_deref() == Some(kid) {
                    tried = true;
                    if check(key, alg, message, signature)? {
                        return Ok(());
                    }
                }
            }
        }
        for key in self.keys.iter().filter(fits) {
            if kid.is_none() || key.kid.is_none() {
                tried = true;
                if check(key, alg, message, signature)? {
                    return Ok(());
                }
            }
        }
        match kid {
            _ if tried => Err(AuthError::InvalidSignature),
            // A key with this id exists but is of another type: algorithm confusion.
            Some(kid) if self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)) => {
                Err(AuthError::DisallowedAlgorithm)
            }
            // No key with this id: a key we have not seen yet (a remote JWKS refetches).
            Some(_) => Err(AuthError::UnknownKeyId),
            None => Err(AuthError::DisallowedAlgorithm),
        }
    }
}

fn check(
    key: &VerifyKey,
    alg: Algorithm,
    message: &[u8],
    signature: &str,
) -> Result<bool, AuthError> {
    match jsonwebtoken::crypto::verify(signature, message, &key.key, alg.to_jwt()) {
        Ok(valid) => Ok(valid),
        Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::Base64(_)) => {
            Err(AuthError::MalformedToken)
        }
        Err(e) => {
            tracing::debug!(kind = ?e.kind(), alg = alg.as_str(), "signature check failed");
            Ok(false)
        }
    }
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind.as_str())
            .field("algs", &self.algs)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.keys
                    .iter()
                    .map(|k| (k.kid.as_deref(), k.kind.as_str(), k.algs)),
            )
            .finish()
    }
}

/// An RSA key from its big-endian modulus and exponent, refusing weak moduli.
pub(crate) fn rsa_key(n: &[u8], e: &[u8]) -> Result<DecodingKey, AuthError> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let bits = match n.first() {
        Some(&first) => (n.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    };
    if bits < MIN_RSA_BITS {
        return Err(AuthError::InvalidKey(format!(
            "RSA modulus of {bits} bits is too short (at least {MIN_RSA_BITS} required)"
        )));
    }
    if e.is_empty() || e.len() > 8 || e.last().is_some_and(|b| b & 1 == 0) {
        return Err(AuthError::InvalidKey("invalid RSA public exponent".into()));
    }
    Ok(DecodingKey::from_rsa_raw_components(n, e))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Parses a DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn parse_rsa_public_key_der(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (seq, rest) = der_element(der, 0x30)?;
    if !rest.is_empty() {
        return None;
    }
    let (n, rest) = der_element(seq, 0x02)?;
    let (e, rest) = der_element(rest, 0x02)?;
    rest.is_empty().then_some((n, e))
}

/// One DER element with `tag`: its content and what follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, input) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || input.len() < count {
            return None;
        }
        let (len_bytes, rest) = input.split_at(count);
        input = rest;
        len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    (input.len() >= len).then(|| input.split_at(len))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Decodes base64 in either alphabet, with or without padding.
pub(crate) fn decode_base64_any(input: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let trimmed = input.trim_end_matches('=');
    STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_parser_reads_lengths_and_rejects_garbage() {
        // SEQUENCE { INTEGER 0x00 0xC1, INTEGER 3 }
        let der = [0x30, 0x07, 0x02, 0x02, 0x00, 0xC1, 0x02, 0x01, 0x03];
        assert_eq!(
            parse_rsa_public_key_der(&der),
            Some((&[0x00, 0xC1][..], &[0x03][..]))
        );
        assert_eq!(parse_rsa_public_key_der(&der[..8]), None);
        assert_eq!(
            parse_rsa_public_key_der(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(parse_rsa_public_key_der(&[]), None);
        let mut long = vec![0x30, 0x81, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03];
        assert_eq!(parse_rsa_public_key_der(&long), Some((&[5][..], &[3][..])));
        long.push(0);
        assert_eq!(parse_rsa_public_key_der(&long), None);
    }

    #[test]
    fn weak_rsa_moduli_and_bad_exponents_are_refused() {
        let mut n = vec![0u8; 256];
        n[0] = 0x80;
        assert!(rsa_key(&n, &[1, 0, 1]).is_ok());
        n[0] = 0x40; // 2047 bits
        assert!(matches!(
            rsa_key(&n, &[1, 0, 1]),
            Err(AuthError::InvalidKey(_))
        ));
        n[0] = 0x80;
        assert!(rsa_key(&n, &[2]).is_err());
        assert!(rsa_key(&n, &[]).is_err());
        assert!(rsa_key(&n, &[0, 0, 3]).is_ok());
    }

    #[test]
    fn base64_secrets_in_any_alphabet() {
        assert_eq!(decode_base64_any("+/8=").unwrap(), [0xfb, 0xff]);
        assert_eq!(decode_base64_any("-_8").unwrap(), [0xfb, 0xff]);
        assert!(decode_base64_any("not base64!").is_none());
        let mut set = KeySet::new();
        assert!(set.add_hmac_secret_base64("%%%", None).is_err());
        assert!(set.add_hmac_secret(b"", None).is_err());
        assert!(set.is_empty());
    }

    #[test]
    fn private_keys_and_junk_are_not_public_keys() {
        let mut set = KeySet::new();
        let err = set
            .add_pem(
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                None,
            )
            .unwrap_err();
        assert!(err.to_string().contains("private key"));
        assert!(set.add_pem(b"hello", None).is_err());
    }

    #[test]
    fn debug_shows_ids_and_kinds_only() {
        let mut set = KeySet::new();
        set.add_hmac_secret(b"super-secret-value", Some("k1"))
            .unwrap();
        let dbg = format!("{set:?}");
        assert!(dbg.contains("k1") && dbg.contains("HMAC"));
        assert!(!dbg.contains("super-secret-value"));
    }
}
