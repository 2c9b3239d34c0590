//! The signature algorithms a verifier can accept. `none` is not one of them.

use std::fmt;
use std::str::FromStr;

/// A JWS signature algorithm (RFC 7518 names, plus `EdDSA` for Ed25519).
///
/// There is deliberately no `none`: an unsigned token can never verify. Parsing is exact and
/// case-sensitive, as RFC 7515 requires, so `"none"`, `"NONE"` or `"hs256"` are all refused.
///
/// ```
/// use tenant_guard_core::Algorithm;
///
/// assert_eq!("ES256".parse::<Algorithm>().unwrap(), Algorithm::ES256);
/// assert!("none".parse::<Algorithm>().is_err());
/// assert!("None".parse::<Algorithm>().is_err());
/// assert!(Algorithm::RS256.is_asymmetric());
/// ```
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

/// The kind of key an algorithm needs. A key only ever verifies algorithms of its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum KeyKind {
    Hmac,
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 12] = [
        Self::HS256,
        Self::HS384,
        Self::HS512,
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];

    /// The RFC 7518 name, as it appears in a token header's `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    /// `true` for the public-key algorithms (everything but HMAC).
    pub fn is_asymmetric(self) -> bool {
        self.key_kind() != KeyKind::Hmac
    }

    pub(crate) fn key_kind(self) -> KeyKind {
        match self {
            Self::HS256 | Self::HS384 | Self::HS512 => KeyKind::Hmac,
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => {
                KeyKind::Rsa
            }
            Self::ES256 => KeyKind::EcP256,
            Self::ES384 => KeyKind::EcP384,
            Self::EdDSA => KeyKind::Ed25519,
        }
    }

    pub(crate) fn to_jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as J;
        match self {
            Self::HS256 => J::HS256,
            Self::HS384 => J::HS384,
            Self::HS512 => J::HS512,
            Self::RS256 => J::RS256,
            Self::RS384 => J::RS384,
            Self::RS512 => J::RS512,
            Self::PS256 => J::PS256,
            Self::PS384 => J::PS384,
            Self::PS512 => J::PS512,
            Self::ES256 => J::ES256,
            Self::ES384 => J::ES384,
            Self::EdDSA => J::EdDSA,
        }
    }

    /// Parses a header's `alg` value; `None` for anything unsupported (including `none`).
    pub(crate) fn from_header(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl KeyKind {
    /// The algorithms a key of this kind can verify.
    pub(crate) fn algorithms(self) -> AlgSet {
        let algs: &[Algorithm] = match self {
            Self::Hmac => &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            Self::Rsa => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            Self::EcP256 => &[Algorithm::ES256],
            Self::EcP384 => &[Algorithm::ES384],
            Self::Ed25519 => &[Algorithm::EdDSA],
        };
        algs.iter().copied().collect()
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hmac => "HMAC secret",
            Self::Rsa => "RSA public key",
            Self::EcP256 => "P-256 public key",
            Self::EcP384 => "P-384 public key",
            Self::Ed25519 => "Ed25519 public key",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text given to [`Algorithm::from_str`] names no supported algorithm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported JWS algorithm (expected one of HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)"
)]
pub struct UnsupportedAlgorithm;

impl FromStr for Algorithm {
    type Err = UnsupportedAlgorithm;

    /// Exact, case-sensitive RFC 7518 names; `none` is never accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_header(s).ok_or(UnsupportedAlgorithm)
    }
}

/// A small set of algorithms (a bit mask).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct AlgSet(u16);

impl AlgSet {
    pub(crate) const EMPTY: Self = Self(0);

    pub(crate) fn all() -> Self {
        Algorithm::ALL.into_iter().collect()
    }

    pub(crate) fn contains(self, alg: Algorithm) -> bool {
        self.0 & alg.bit() != 0
    }

    pub(crate) fn insert(&mut self, alg: Algorithm) {
        self.0 |= alg.bit();
    }

    pub(crate) fn intersect(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(move |a| self.contains(*a))
    }
}

impl FromIterator<Algorithm> for AlgSet {
    fn from_iter<I: IntoIterator<Item = Algorithm>>(iter: I) -> Self {
        let mut set = Self::EMPTY;
        for alg in iter {
            set.insert(alg);
        }
        set
    }
}

impl fmt::Debug for AlgSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_none_never_parses() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
            assert_eq!(alg.to_string(), alg.as_str());
        }
        for bad in [
            "none", "None", "NONE", "nOnE", "", "hs256", "HS256 ", "ES512", "Ed25519",
        ] {
            assert_eq!(
                bad.parse::<Algorithm>(),
                Err(UnsupportedAlgorithm),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn each_key_kind_verifies_only_its_family() {
        assert!(KeyKind::Hmac.algorithms().contains(Algorithm::HS512));
        assert!(!KeyKind::Hmac.algorithms().contains(Algorithm::RS256));
        assert!(!KeyKind::Rsa.algorithms().contains(Algorithm::HS256));
        assert!(KeyKind::Rsa.algorithms().contains(Algorithm::PS384));
        assert!(!KeyKind::EcP256.algorithms().contains(Algorithm::ES384));
        assert!(!KeyKind::EcP384.algorithms().contains(Algorithm::ES256));
        for alg in Algorithm::ALL {
            assert!(alg.key_kind().algorithms().contains(alg));
            assert_eq!(alg.is_asymmetric(), alg.key_kind() != KeyKind::Hmac);
        }
    }

    #[test]
    fn alg_set_operations() {
        let set: AlgSet = [Algorithm::ES256, Algorithm::HS256].into_iter().collect();
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [Algorithm::HS256, Algorithm::ES256]
        );
        assert!(set.intersect(KeyKind::Rsa.algorithms()).is_empty());
        assert_eq!(AlgSet::all().iter().count(), 12);
    }
}
