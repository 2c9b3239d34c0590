//! Typed organisation (tenant) ids: [`OrgId`] is a UUID, a 64-bit integer or a short text (a
//! slug), and [`OrgIdKind`] says which one an issuer's tokens (and the requests choosing an org)
//! must carry.
//!
//! The kind is configuration, never guessed from the value: an issuer configured for integer orgs
//! refuses a UUID org claim (and the other way round) with `invalid_org`. The default is
//! [`OrgIdKind::Uuid`], the behaviour before kinds existed.
//!
//! | kind | accepted | canonical text (`tenant_guard.org_id`) |
//! |------|----------|------------------------------------------|
//! | `uuid` | hyphenated UUID string (36 chars, any case), never the nil UUID | lower-case hyphenated |
//! | `integer` | JSON integer, or a decimal string: optional `-`, no `+`, no leading zeros, no whitespace, within `i64` | decimal (`42`, `-7`) |
//! | `text` | JSON string of 1 to [`MAX_TEXT_ORG_LEN`] bytes of `A-Z a-z 0-9 . _ : -` | as given (case-sensitive) |
//!
//! ```
//! use tenant_guard_core::{OrgId, OrgIdKind};
//!
//! let org = OrgIdKind::Integer.parse("42")?;
//! assert_eq!(org, OrgId::Int(42));
//! assert!(OrgIdKind::Integer.parse("+42").is_err());
//! assert!(OrgIdKind::Integer.parse("042").is_err());
//! assert!(OrgIdKind::Integer.parse("9223372036854775808").is_err()); // > i64::MAX
//!
//! let slug = OrgIdKind::Text.parse("acme-corp")?;
//! assert_eq!(slug.to_string(), "acme-corp");
//! assert!(OrgIdKind::Text.parse("acme corp").is_err());
//! assert!(OrgIdKind::Text.parse("").is_err());
//!
//! // The text the scoping statement writes into `tenant_guard.org_id`, without allocating:
//! let mut buf = [0u8; 36];
//! assert_eq!(org.encode(&mut buf), "42");
//! # Ok::<(), tenant_guard_core::InvalidOrgId>(())
//! ```

use std::fmt;
use std::io::Write as _;
use std::str::FromStr;
use std::sync::Arc;

use uuid::Uuid;

/// Longest text org id, in bytes.
pub const MAX_TEXT_ORG_LEN: usize = 128;

/// A validated organisation id: what [`crate::Principal::org_id`] returns and what the guard
/// scopes to.
///
/// Equality, ordering and hashing are by kind and value (`Int(7)` is not `Text("7")`). The
/// `Display` form is the canonical text (see the [module docs](self)). Cloning is cheap: a copy,
/// or one reference count for text.
///
/// ```
/// use tenant_guard_core::OrgId;
///
/// let org = OrgId::from(uuid::Uuid::from_u128(7));
/// assert_eq!(org.as_uuid(), Some(uuid::Uuid::from_u128(7)));
/// assert_eq!(org, uuid::Uuid::from_u128(7));
/// assert_eq!(OrgId::from(5_i64).as_i64(), Some(5));
/// assert_eq!(OrgId::text("team.blue")?.as_text(), Some("team.blue"));
/// # Ok::<(), tenant_guard_core::InvalidOrgId>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum OrgId {
    /// A UUID (the default kind).
    Uuid(Uuid),
    /// A 64-bit integer (`bigint` keys).
    Int(i64),
    /// A validated short text (a slug); build one with [`OrgId::text`].
    Text(OrgText),
}

/// The text of an [`OrgId::Text`]: validated (see [`OrgId::text`]), so it is never empty, never
/// longer than [`MAX_TEXT_ORG_LEN`] and only holds `A-Z a-z 0-9 . _ : -`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgText(Arc<str>);

impl OrgText {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OrgText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl OrgId {
    /// The nil UUID: the org of a principal that has none (the anonymous principal). It is never
    /// accepted from a token or a request, and scopes as no org (`tenant_guard.org_id` = `''`).
    pub const NIL: OrgId = OrgId::Uuid(Uuid::nil());

    /// A text org id, validated: 1 to [`MAX_TEXT_ORG_LEN`] bytes of `A-Z a-z 0-9 . _ : -`.
    pub fn text(text: &str) -> Result<Self, InvalidOrgId> {
        let valid = !text.is_empty()
            && text.len() <= MAX_TEXT_ORG_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if valid {
            Ok(Self::Text(OrgText(Arc::from(text))))
        } else {
            Err(InvalidOrgId(OrgIdKind::Text))
        }
    }

    /// The kind of this id.
    pub fn kind(&self) -> OrgIdKind {
        match self {
            Self::Uuid(_) => OrgIdKind::Uuid,
            Self::Int(_) => OrgIdKind::Integer,
            Self::Text(_) => OrgIdKind::Text,
        }
    }

    /// The UUID, for a UUID id.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            Self::Uuid(u) => Some(*u),
            _ => None,
        }
    }

    /// The integer, for an integer id.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The text, for a text id.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t.as_str()),
            _ => None,
        }
    }

    /// Whether this is [`OrgId::NIL`] (no org).
    pub fn is_nil(&self) -> bool {
        matches!(self, Self::Uuid(u) if u.is_nil())
    }

    /// The canonical text (see the [module docs](self)), written into `buf` for UUIDs and
    /// integers (at most 36 and 20 bytes) and borrowed for text: no allocation. This is what the
    /// scoping statement sets `tenant_guard.org_id` to.
    pub fn encode<'a>(&'a self, buf: &'a mut [u8; 36]) -> &'a str {
        match self {
            Self::Uuid(u) => u.hyphenated().encode_lower(buf),
            Self::Int(n) => {
                let mut out = &mut buf[..];
                // An i64 takes at most 20 bytes: the 36-byte buffer cannot be too short.
                let _ = write!(out, "{n}");
                let len = 36 - out.len();
                std::str::from_utf8(&buf[..len]).unwrap_or_default()
            }
            Self::Text(t) => t.as_str(),
        }
    }
}

impl From<Uuid> for OrgId {
    fn from(uuid: Uuid) -> Self {
        Self::Uuid(uuid)
    }
}

impl From<i64> for OrgId {
    fn from(n: i64) -> Self {
        Self::Int(n)
    }
}

/// A clone: so `pool.begin_org_job(&job, principal.org_id(), …)` reads as it did with UUIDs.
impl From<&OrgId> for OrgId {
    fn from(org: &OrgId) -> Self {
        org.clone()
    }
}

impl PartialEq<Uuid> for OrgId {
    fn eq(&self, other: &Uuid) -> bool {
        self.as_uuid() == Some(*other)
    }
}

impl PartialEq<Uuid> for &OrgId {
    fn eq(&self, other: &Uuid) -> bool {
        self.as_uuid() == Some(*other)
    }
}

impl PartialEq<OrgId> for Uuid {
    fn eq(&self, other: &OrgId) -> bool {
        other == self
    }
}

impl PartialEq<&OrgId> for Uuid {
    fn eq(&self, other: &&OrgId) -> bool {
        *other == self
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 36];
        f.write_str(self.encode(&mut buf))
    }
}

impl fmt::Debug for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uuid(u) => write!(f, "Uuid({u})"),
            Self::Int(n) => write!(f, "Int({n})"),
            Self::Text(t) => write!(f, "Text({t:?})"),
        }
    }
}

/// Serialized as it sits in a claim: a UUID or text as a JSON string, an integer as a number.
impl serde::Serialize for OrgId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Uuid(u) => u.serialize(s),
            Self::Int(n) => s.serialize_i64(*n),
            Self::Text(t) => s.serialize_str(t.as_str()),
        }
    }
}

/// Which kind of org id an issuer's tokens carry (and a request choosing its org must name):
/// see [`crate::IssuerProfile::org_id_kind`], `JWT_ORG_ID_KIND` and the
/// [module docs](self) for what each accepts.
///
/// ```
/// use tenant_guard_core::OrgIdKind;
///
/// assert_eq!(OrgIdKind::default(), OrgIdKind::Uuid);
/// assert_eq!("integer".parse::<OrgIdKind>(), Ok(OrgIdKind::Integer));
/// assert!("number".parse::<OrgIdKind>().is_err()); // unknown: refused, never a default
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OrgIdKind {
    /// Hyphenated UUIDs (the default).
    #[default]
    Uuid,
    /// 64-bit signed integers.
    Integer,
    /// Short texts (slugs).
    Text,
}

impl OrgIdKind {
    /// The name used in configuration: `uuid`, `integer` or `text`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uuid => "uuid",
            Self::Integer => "integer",
            Self::Text => "text",
        }
    }

    /// Parses `text` as an org id of this kind (a header value, a path segment, a claim string).
    /// Nothing is trimmed.
    pub fn parse(self, text: &str) -> Result<OrgId, InvalidOrgId> {
        let invalid = InvalidOrgId(self);
        match self {
            Self::Uuid => {
                // Only the hyphenated form, and never the nil UUID.
                if text.len() != 36 {
                    return Err(invalid);
                }
                match Uuid::try_parse(text) {
                    Ok(u) if !u.is_nil() => Ok(OrgId::Uuid(u)),
                    _ => Err(invalid),
                }
            }
            Self::Integer => {
                let digits = text.strip_prefix('-').unwrap_or(text);
                let canonical = match digits.as_bytes() {
                    [] => false,
                    [b'0'] => digits.len() == text.len(), // "0", not "-0"
                    [b'0', ..] => false,
                    bytes => bytes.iter().all(u8::is_ascii_digit),
                };
                if !canonical {
                    return Err(invalid);
                }
                text.parse::<i64>().map(OrgId::Int).map_err(|_| invalid)
            }
            Self::Text => OrgId::text(text),
        }
    }

    /// An org id of this kind from a JSON integer claim: only [`OrgIdKind::Integer`] takes one.
    pub(crate) fn parse_json_int(self, n: i64) -> Result<OrgId, InvalidOrgId> {
        match self {
            Self::Integer => Ok(OrgId::Int(n)),
            _ => Err(InvalidOrgId(self)),
        }
    }
}

impl fmt::Display for OrgIdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrgIdKind {
    type Err = UnknownOrgIdKind;

    /// `uuid`, `integer` or `text` (ASCII case-insensitive, surrounding whitespace ignored);
    /// anything else is an error, never a default.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        [Self::Uuid, Self::Integer, Self::Text]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or(UnknownOrgIdKind)
    }
}

/// A value that is not a valid org id of the expected kind. The value itself is never part of
/// the message (it came from a request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {0} org id")]
pub struct InvalidOrgId(OrgIdKind);

impl InvalidOrgId {
    /// The kind that was expected.
    pub fn expected(&self) -> OrgIdKind {
        self.0
    }
}

/// An org id kind name other than `uuid`, `integer` or `text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown org id kind (expected uuid, integer or text)")]
pub struct UnknownOrgIdKind;

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "7d0a3d39-3a4b-4c49-9a41-5bd2f1a1f0aa";

    #[test]
    fn uuid_kind_is_the_hyphenated_non_nil_form() {
        let org = OrgIdKind::Uuid.parse(UUID).unwrap();
        assert_eq!(org.to_string(), UUID);
        assert_eq!(
            OrgIdKind::Uuid.parse(&UUID.to_uppercase()).unwrap(),
            org,
            "any case, one id"
        );
        for bad in [
            "",
            "not-a-uuid",
            &UUID.replace('-', ""),
            &format!("{{{UUID}}}"),
            &format!("urn:uuid:{UUID}"),
            &format!(" {UUID}"),
            "00000000-0000-0000-0000-000000000000",
            "42",
        ] {
            assert_eq!(
                OrgIdKind::Uuid.parse(bad),
                Err(InvalidOrgId(OrgIdKind::Uuid)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn integer_kind_is_canonical_decimal_within_i64() {
        for (text, n) in [
            ("0", 0),
            ("7", 7),
            ("-7", -7),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ] {
            let org = OrgIdKind::Integer.parse(text).unwrap();
            assert_eq!(org, OrgId::Int(n));
            let mut buf = [0u8; 36];
            assert_eq!(org.encode(&mut buf), text, "canonical text round-trips");
        }
        for bad in [
            "",
            "-",
            "+7",
            "07",
            "-0",
            "-07",
            " 7",
            "7 ",
            "7\n",
            "1_000",
            "1e3",
            "7.0",
            "0x10",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999999",
            "٣", // a non-ASCII digit
            UUID,
        ] {
            assert!(OrgIdKind::Integer.parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_kind_is_short_and_of_a_safe_charset() {
        for good in [
            "acme",
            "Acme-Corp_2.eu:west",
            UUID,
            "7",
            &"a".repeat(MAX_TEXT_ORG_LEN),
        ] {
            let org = OrgIdKind::Text.parse(good).unwrap();
            assert_eq!(org.as_text(), Some(good));
            let mut buf = [0u8; 36];
            assert_eq!(org.encode(&mut buf), good);
        }
        for bad in [
            "",
            " acme",
            "acme ",
            "ac me",
            "acme\0",
            "acme\n",
            "acme\u{7f}",
            "acmé",
            "acme/../x",
            "a'b",
            "a\"b",
            "a\\b",
            "a;b",
            "a%b",
            "a,b",
            &"a".repeat(MAX_TEXT_ORG_LEN + 1),
        ] {
            assert_eq!(
                OrgIdKind::Text.parse(bad),
                Err(InvalidOrgId(OrgIdKind::Text)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn kinds_differ_and_parse_from_config_names() {
        assert_ne!(OrgId::Int(7), OrgId::text("7").unwrap());
        assert_eq!(" Text ".parse::<OrgIdKind>(), Ok(OrgIdKind::Text));
        assert_eq!("uuid".parse::<OrgIdKind>(), Ok(OrgIdKind::Uuid));
        for bad in ["", "int", "bigint", "string", "uuid,text"] {
            assert_eq!(bad.parse::<OrgIdKind>(), Err(UnknownOrgIdKind), "{bad:?}");
        }
        assert!(OrgId::NIL.is_nil());
        assert!(!OrgId::Int(0).is_nil());
    }

    #[test]
    fn errors_never_echo_the_value() {
        let err = OrgIdKind::Text.parse("secret value").unwrap_err();
        assert_eq!(err.to_string(), "not a valid text org id");
        assert_eq!(err.expected(), OrgIdKind::Text);
    }

    #[test]
    fn serializes_as_a_claim_would_carry_it() {
        let json = serde_json::json!([
            OrgId::Int(-3),
            OrgId::text("acme").unwrap(),
            OrgId::from(Uuid::from_u128(1))
        ]);
        assert_eq!(
            json.to_string(),
            r#"[-3,"acme","00000000-0000-0000-0000-000000000001"]"#
        );
    }
}
