//! Claims: one pass over the verified payload that picks out the registered claims and the
//! configured org and role paths (PostgREST-style dotted paths), then the checks on them.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use uuid::Uuid;

use crate::error::AuthError;
use crate::role::Role;

/// Longest claim path, in segments.
const MAX_PATH_SEGMENTS: usize = 8;

/// Claims that are read as registered claims and so cannot start an org or role path.
const REGISTERED: [&str; 6] = ["exp", "nbf", "iat", "sub", "aud", "iss"];

/// A dotted claim path such as `app_metadata.org_id`.
/// Top-level claims the token's holder can write: Supabase copies `user_metadata` from what the
/// user sets with `updateUser({ data })`.
const USER_EDITABLE: &[&str] = &["user_metadata"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimPath(Box<[Box<str>]>);

impl ClaimPath {
    /// Parses `path`: 1 to 8 non-empty segments separated by dots.
    pub(crate) fn parse(path: &str, what: &str) -> Result<Self, AuthError> {
        let segments: Vec<Box<str>> = path.split('.').map(Into::into).collect();
        if path.is_empty() || segments.iter().any(|s| s.is_empty()) {
            return Err(AuthError::InvalidConfig(format!(
                "{what} path {path:?} must be dot-separated non-empty names"
            )));
        }
        if segments.len() > MAX_PATH_SEGMENTS {
            return Err(AuthError::InvalidConfig(format!(
                "{what} path {path:?} has more than {MAX_PATH_SEGMENTS} segments"
            )));
        }
        if REGISTERED.contains(&&*segments[0]) {
            return Err(AuthError::InvalidConfig(format!(
                "{what} path {path:?} cannot start with the registered claim {:?}",
                segments[0]
            )));
        }
        Ok(Self(segments.into()))
    }

    pub(crate) fn segments(&self) -> &[Box<str>] {
        &self.0
    }

    /// Whether the path is under a claim its user can write ([`USER_EDITABLE`]).
    pub(crate) fn is_user_editable(&self) -> bool {
        USER_EDITABLE.contains(&&*self.0[0])
    }

    fn is_prefix_of(&self, other: &Self) -> bool {
        other.0.starts_with(&self.0)
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// What the claims must satisfy (besides the signature).
#[derive(Debug, Clone)]
pub(crate) struct ClaimRules {
    pub(crate) audiences: Box<[Box<str>]>,
    pub(crate) issuer: Option<Box<str>>,
    pub(crate) org_path: ClaimPath,
    pub(crate) role_path: ClaimPath,
    pub(crate) allowed_roles: Box<[Role]>,
    pub(crate) leeway: i64,
}

impl ClaimRules {
    /// Checks that the org and role paths can be read in one pass.
    pub(crate) fn validate_paths(&self) -> Result<(), AuthError> {
        if self.org_path.is_prefix_of(&self.role_path)
            || self.role_path.is_prefix_of(&self.org_path)
        {
            return Err(AuthError::InvalidConfig(format!(
                "the org claim path {} and the role claim path {} overlap",
                self.org_path, self.role_path
            )));
        }
        Ok(())
    }
}

/// The time claims, kept with cached results so they are re-checked on every use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub(crate) exp: i64,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: Option<i64>,
}

impl Times {
    /// `exp` must be in the future, `nbf` and `iat` not in the future, each within `leeway` seconds.
    pub(crate) fn check(&self, now: i64, leeway: i64) -> Result<(), AuthError> {
        if now >= self.exp.saturating_add(leeway) {
            return Err(AuthError::Expired);
        }
        let limit = now.saturating_add(leeway);
        if self.nbf.is_some_and(|nbf| nbf > limit) || self.iat.is_some_and(|iat| iat > limit) {
            return Err(AuthError::NotYetValid);
        }
        Ok(())
    }
}

/// The checked claims a principal is made from.
#[derive(Debug)]
pub(crate) struct Checked<'a> {
    pub(crate) sub: Cow<'a, str>,
    pub(crate) org: Uuid,
    pub(crate) role: Role,
    pub(crate) times: Times,
}

/// Parses `claims` (the verified payload) once and applies every claim rule.
pub(crate) fn check<'a>(
    claims: &'a str,
    rules: &ClaimRules,
    now: i64,
) -> Result<Checked<'a>, AuthError> {
    if has_unstorable_escape(claims) {
        return Err(AuthError::MalformedToken);
    }
    let found = extract(claims, rules)?;
    let times = Times {
        exp: match found.exp {
            Value::Num(n) => n,
            Value::Absent => return Err(AuthError::InvalidClaim("exp")),
            Value::Other => return Err(AuthError::InvalidClaim("exp")),
        },
        nbf: found.nbf.optional("nbf")?,
        iat: found.iat.optional("iat")?,
    };
    times.check(now, rules.leeway)?;
    if found.aud != Aud::Match {
        return Err(AuthError::WrongAudience);
    }
    if let Some(issuer) = &rules.issuer {
        match &found.iss {
            Slot::Str(iss) if **iss == **issuer => {}
            _ => return Err(AuthError::WrongIssuer),
        }
    }
    let sub = match found.sub {
        Slot::Str(sub) if !sub.is_empty() => sub,
        _ => return Err(AuthError::InvalidClaim("sub")),
    };
    let role = match &found.role {
        Slot::Str(name) => rules
            .allowed_roles
            .iter()
            .find(|r| r.as_str() == name)
            .cloned()
            .ok_or(AuthError::RoleNotAllowed)?,
        _ => return Err(AuthError::RoleNotAllowed),
    };
    let org = match &found.org {
        Slot::Str(text) => parse_org(text).ok_or(AuthError::InvalidOrg)?,
        _ => return Err(AuthError::InvalidOrg),
    };
    Ok(Checked {
        sub,
        org,
        role,
        times,
    })
}

/// Whether the JSON text holds an escape PostgreSQL's `text` and `jsonb` cannot store: an escaped
/// NUL (`\u0000`) or a lone UTF-16 surrogate (`\ud800` not followed by a low surrogate `\udc00`–
/// `\udfff`, or a low surrogate on its own). Such claims could never scope a transaction: every
/// `::jsonb` cast of them (`auth.jwt()`, `auth.email()`) fails, a 500 for the token's holder. So
/// they are refused here, as malformed.
fn has_unstorable_escape(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut at = 0;
    while let Some(pos) = bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\\'))
    {
        let escape = at + pos;
        // Skip the escaped character by default, so `\\u0000` (a backslash, then text) is text.
        at = escape + 2;
        if bytes.get(escape + 1) != Some(&b'u') {
            continue;
        }
        let Some(unit) = hex4(bytes, escape + 2) else {
            continue; // not JSON: the parser refuses it
        };
        at = escape + 6;
        match unit {
            0 => return true,
            0xD800..=0xDBFF => {
                let low = (bytes.get(at..at + 2) == Some(b"\\u".as_slice()))
                    .then(|| hex4(bytes, at + 2))
                    .flatten();
                match low {
                    Some(0xDC00..=0xDFFF) => at += 6,
                    _ => return true,
                }
            }
            0xDC00..=0xDFFF => return true,
            _ => {}
        }
    }
    false
}

/// The four hex digits at `at`, if there are four.
fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(digits, 16).ok()
}

/// Only the canonical hyphenated form, and never the nil UUID.
fn parse_org(text: &str) -> Option<Uuid> {
    if text.len() != 36 {
        return None;
    }
    Uuid::try_parse(text).ok().filter(|u| !u.is_nil())
}

/// A string claim as found.
#[derive(Debug, Default, PartialEq, Eq)]
enum Slot<'a> {
    #[default]
    Absent,
    Str(Cow<'a, str>),
    /// Present but not a string.
    Other,
}

/// A NumericDate claim as found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Value {
    #[default]
    Absent,
    Num(i64),
    /// Present but not a number (CVE-2026-25537: such a claim must fail, never be skipped).
    Other,
}

impl Value {
    fn optional(self, name: &'static str) -> Result<Option<i64>, AuthError> {
        match self {
            Self::Absent => Ok(None),
            Self::Num(n) => Ok(Some(n)),
            Self::Other => Err(AuthError::InvalidClaim(name)),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Aud {
    #[default]
    Absent,
    Match,
    NoMatch,
}

#[derive(Debug, Default)]
struct Found<'a> {
    exp: Value,
    nbf: Value,
    iat: Value,
    aud: Aud,
    sub: Slot<'a>,
    iss: Slot<'a>,
    org: Slot<'a>,
    role: Slot<'a>,
}

fn extract<'a>(claims: &'a str, rules: &ClaimRules) -> Result<Found<'a>, AuthError> {
    let mut de = serde_json::Deserializer::from_str(claims);
    let found = ClaimsSeed { rules }.deserialize(&mut de).map_err(|e| {
        tracing::debug!(reason = %e, "claims are not a well-formed JSON object");
        AuthError::MalformedToken
    })?;
    de.end().map_err(|_| AuthError::MalformedToken)?;
    Ok(found)
}

/// Bit positions for duplicate detection at the top level.
const SEEN_EXP: u8 = 1;
const SEEN_NBF: u8 = 2;
const SEEN_IAT: u8 = 4;
const SEEN_AUD: u8 = 8;
const SEEN_SUB: u8 = 16;
const SEEN_ISS: u8 = 32;

struct ClaimsSeed<'r> {
    rules: &'r ClaimRules,
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Found<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Found::default();
        let mut seen = 0u8;
        let mut once = |bit: u8, name: &str| {
            if seen & bit != 0 {
                return Err(de::Error::custom(format_args!("duplicate claim {name}")));
            }
            seen |= bit;
            Ok(())
        };
        let targets = [
            Target {
                path: self.rules.org_path.segments(),
                index: 0,
            },
            Target {
                path: self.rules.role_path.segments(),
                index: 1,
            },
        ];
        let mut paths = [Slot::Absent, Slot::Absent];
        let mut path_seen = 0u8;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "exp" => {
                    once(SEEN_EXP, "exp")?;
                    found.exp = map.next_value::<NumericDate>()?.0;
                }
                "nbf" => {
                    once(SEEN_NBF, "nbf")?;
                    found.nbf = map.next_value::<NumericDate>()?.0;
                }
                "iat" => {
                    once(SEEN_IAT, "iat")?;
                    found.iat = map.next_value::<NumericDate>()?.0;
                }
                "aud" => {
                    once(SEEN_AUD, "aud")?;
                    found.aud = map.next_value_seed(AudSeed {
                        audiences: &self.rules.audiences,
                    })?;
                }
                "sub" => {
                    once(SEEN_SUB, "sub")?;
                    found.sub = map.next_value::<StrSlot<'de>>()?.0;
                }
                "iss" => {
                    once(SEEN_ISS, "iss")?;
                    found.iss = map.next_value::<StrSlot<'de>>()?.0;
                }
                name => {
                    let step = Step::new(&targets, 0, name);
                    if step.is_empty() {
                        map.next_value::<IgnoredAny>()?;
                    } else {
                        // A member on a claim path appears once at most.
                        if path_seen & step.0 != 0 {
                            return Err(de::Error::custom("duplicate claim on a claim path"));
                        }
                        path_seen |= step.0;
                        map.next_value_seed(PathSeed {
                            targets: &targets,
                            step,
                            depth: 0,
                            out: &mut paths,
                        })?;
                    }
                }
            }
        }
        let [org, role] = paths;
        found.org = org;
        found.role = role;
        Ok(found)
    }
}

/// A configured path and the output slot it fills.
struct Target<'p> {
    path: &'p [Box<str>],
    index: usize,
}

/// Which targets continue through one object member (a bit per target).
#[derive(Clone, Copy)]
struct Step(u8);

impl Step {
    fn new(targets: &[Target<'_>], depth: usize, name: &str) -> Self {
        let mut bits = 0;
        for (i, t) in targets.iter().enumerate() {
            if t.path.get(depth).is_some_and(|seg| **seg == *name) {
                bits |= 1 << i;
            }
        }
        Self(bits)
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn has(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }
}

/// Walks one member's value along the targets that go through it.
struct PathSeed<'s, 'p, 'de> {
    targets: &'s [Target<'p>],
    step: Step,
    depth: usize,
    out: &'s mut [Slot<'de>; 2],
}

impl<'de> DeserializeSeed<'de> for PathSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // The paths never nest (checked at build), so the member is a leaf for all its targets
        // or for none of them.
        let leaf = self
            .targets
            .iter()
            .enumerate()
            .find(|(i, t)| self.step.has(*i) && t.path.len() == self.depth + 1);
        match leaf {
            Some((_, target)) => {
                self.out[target.index] = <StrSlot<'de> as de::Deserialize>::deserialize(d)?.0;
                Ok(())
            }
            None => d.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for PathSeed<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self.depth + 1;
        let mut seen = 0u8;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let mut step = Step::new(self.targets, depth, &key.0);
            step.0 &= self.step.0;
            if step.is_empty() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if seen & step.0 != 0 {
                return Err(de::Error::custom("duplicate claim on a claim path"));
            }
            seen |= step.0;
            map.next_value_seed(PathSeed {
                targets: self.targets,
                step,
                depth,
                out: &mut *self.out,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// An object key, unescaped (so `"s\u0075b"` is `sub`, as Postgres will read it).
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match <StrSlot<'de> as de::Deserialize>::deserialize(d)?.0 {
            Slot::Str(s) => Ok(Key(s)),
            _ => Err(de::Error::custom("object key is not a string")),
        }
    }
}

/// Any JSON value, kept when it is a string.
struct StrSlot<'de>(Slot<'de>);

impl<'de> de::Deserialize<'de> for StrSlot<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrSlotVisitor).map(StrSlot)
    }
}

struct StrSlotVisitor;

impl<'de> Visitor<'de> for StrSlotVisitor {
    type Value = Slot<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Slot::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Slot::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Slot::Str(Cow::Owned(v)))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Slot::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Slot::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Slot::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Slot::Other)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Slot::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Slot::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Slot::Other)
    }
}

/// A NumericDate: any JSON number (fractions truncated toward the past), else [`Value::Other`].
struct NumericDate(Value);

impl<'de> de::Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumericDateVisitor).map(NumericDate)
    }
}

struct NumericDateVisitor;

impl<'de> Visitor<'de> for NumericDateVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a NumericDate")
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Num(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Num(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    #[allow(clippy::cast_possible_truncation)]
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // `as` saturates; JSON has no NaN or infinity.
        Ok(Value::Num(v.floor() as i64))
    }
    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Other)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        StrSlotVisitor.visit_map(map).map(|_| Value::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        StrSlotVisitor.visit_seq(seq).map(|_| Value::Other)
    }
}

/// `aud`: a string or an array of strings; matches when one of them is an accepted audience.
struct AudSeed<'r> {
    audiences: &'r [Box<str>],
}

impl<'de> DeserializeSeed<'de> for AudSeed<'_> {
    type Value = Aud;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Aud, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AudSeed<'_> {
    type Value = Aud;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }
    fn visit_str<E>(self, v: &str) -> Result<Aud, E> {
        Ok(if self.audiences.iter().any(|a| **a == *v) {
            Aud::Match
        } else {
            Aud::NoMatch
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Aud, A::Error> {
        let mut result = Aud::NoMatch;
        let mut all_strings = true;
        while let Some(StrSlot(item)) = seq.next_element()? {
            match item {
                Slot::Str(s) if self.audiences.iter().any(|a| **a == *s) => result = Aud::Match,
                Slot::Str(_) => {}
                _ => all_strings = false,
            }
        }
        Ok(if all_strings { result } else { Aud::NoMatch })
    }
    fn visit_bool<E>(self, _: bool) -> Result<Aud, E> {
        Ok(Aud::NoMatch)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Aud, E> {
        Ok(Aud::NoMatch)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Aud, E> {
        Ok(Aud::NoMatch)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Aud, E> {
        Ok(Aud::NoMatch)
    }
    fn visit_unit<E>(self) -> Result<Aud, E> {
        Ok(Aud::NoMatch)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Aud, A::Error> {
        StrSlotVisitor.visit_map(map).map(|_| Aud::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: &str = "7d0a3d39-3a4b-4c49-9a41-5bd2f1a1f0aa";
    const NOW: i64 = 1_700_000_000;

    fn rules(org: &str, role: &str) -> ClaimRules {
        ClaimRules {
            audiences: vec!["authenticated".into()].into(),
            issuer: Some("https://issuer.example".into()),
            org_path: ClaimPath::parse(org, "org").unwrap(),
            role_path: ClaimPath::parse(role, "role").unwrap(),
            allowed_roles: vec![Role::new("authenticated").unwrap()].into(),
            leeway: 30,
        }
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "sub": "user-1", "aud": "authenticated", "iss": "https://issuer.example",
            "exp": NOW + 60, "iat": NOW, "role": "authenticated", "org_id": ORG,
        })
    }

    fn run(
        claims: &serde_json::Value,
        rules: &ClaimRules,
    ) -> Result<(String, Uuid, String), AuthError> {
        let text = claims.to_string();
        check(&text, rules, NOW).map(|c| (c.sub.into_owned(), c.org, c.role.as_str().to_owned()))
    }

    fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
        let mut claims = base();
        claims[key] = value;
        claims
    }

    fn without(key: &str) -> serde_json::Value {
        let mut claims = base();
        claims.as_object_mut().unwrap().remove(key);
        claims
    }

    #[test]
    fn escaped_nul_anywhere_is_refused_and_escaped_backslashes_are_not_nul() {
        let rules = rules("org_id", "role");
        for (key, value) in [
            ("sub", "a\u{0}b"),
            ("nickname", "\u{0}"),
            ("x", "tail\u{0}"),
        ] {
            assert_eq!(
                run(&with(key, value.into()), &rules),
                Err(AuthError::MalformedToken),
                "{key}"
            );
        }
        assert!(run(&with("path", r"C:\u0000".into()), &rules).is_ok());
        assert!(run(&with("nick", "tab\there\u{1}".into()), &rules).is_ok());
        for (text, nul) in [
            (r"\u0000", true),
            (r"\\u0000", false),
            (r"\\\u0000", true),
            (r"\u000", false),
            (r"\u00001", true),
            ("\\", false),
            ("\\u", false),
            ("", false),
        ] {
            assert_eq!(has_unstorable_escape(text), nul, "{text}");
        }
    }

    #[test]
    fn lone_surrogates_are_refused_and_pairs_are_not() {
        for (text, bad) in [
            (r"\ud800", true),
            (r"\uD800", true),
            (r"\udbff", true),
            (r"\udc00", true),
            (r"\uDFFF", true),
            (r"\ud800x", true),
            (r"\ud800\u0041", true),
            (r"\ud800\ud800\udc00", true),
            (r"\ud83d\ude00", false),
            (r"\uD83D\uDE00", false),
            (r"\ud83d\ude00\udc00", true),
            (r"\\ud800", false),
            (r"\u00e9", false),
            (r"\ud7ff\ue000", false),
            (r"\ud800\", true),
        ] {
            assert_eq!(has_unstorable_escape(text), bad, "{text}");
        }
        let rules = rules("org_id", "role");
        let mut claims = base().to_string();
        claims.pop();
        let lone = format!(r#"{claims},"nickname":"\ud800"}}"#);
        assert_eq!(
            check(&lone, &rules, NOW).map(drop),
            Err(AuthError::MalformedToken)
        );
        let pair = format!(r#"{claims},"nickname":"\ud83d\ude00"}}"#);
        assert!(check(&pair, &rules, NOW).is_ok());
    }

    #[test]
    fn accepts_a_good_token() {
        let got = run(&base(), &rules("org_id", "role")).unwrap();
        assert_eq!(
            got,
            (
                "user-1".into(),
                ORG.parse().unwrap(),
                "authenticated".into()
            )
        );
    }

    #[test]
    fn table_of_claim_failures() {
        use serde_json::json;
        let r = rules("org_id", "role");
        let cases: Vec<(serde_json::Value, AuthError)> = vec![
            (without("exp"), AuthError::InvalidClaim("exp")),
            (
                with("exp", json!("9999999999")),
                AuthError::InvalidClaim("exp"),
            ),
            (with("exp", json!(null)), AuthError::InvalidClaim("exp")),
            (with("exp", json!({"a": 1})), AuthError::InvalidClaim("exp")),
            (with("exp", json!(NOW - 31)), AuthError::Expired),
            (with("exp", json!(NOW - 30)), AuthError::Expired),
            (with("exp", json!(-5)), AuthError::Expired),
            (with("nbf", json!("0")), AuthError::InvalidClaim("nbf")),
            (with("nbf", json!(NOW + 31)), AuthError::NotYetValid),
            (with("iat", json!(NOW + 31)), AuthError::NotYetValid),
            (with("iat", json!([1])), AuthError::InvalidClaim("iat")),
            (without("aud"), AuthError::WrongAudience),
            (with("aud", json!("anon")), AuthError::WrongAudience),
            (with("aud", json!(["anon", "x"])), AuthError::WrongAudience),
            (
                with("aud", json!(["authenticated", 5])),
                AuthError::WrongAudience,
            ),
            (with("aud", json!([])), AuthError::WrongAudience),
            (with("aud", json!(null)), AuthError::WrongAudience),
            (
                with("aud", json!({"authenticated": true})),
                AuthError::WrongAudience,
            ),
            (without("iss"), AuthError::WrongIssuer),
            (
                with("iss", json!("https://evil.example")),
                AuthError::WrongIssuer,
            ),
            (with("iss", json!(1)), AuthError::WrongIssuer),
            (without("sub"), AuthError::InvalidClaim("sub")),
            (with("sub", json!("")), AuthError::InvalidClaim("sub")),
            (with("sub", json!(42)), AuthError::InvalidClaim("sub")),
            (without("role"), AuthError::RoleNotAllowed),
            (with("role", json!("postgres")), AuthError::RoleNotAllowed),
            (
                with("role", json!("service_role")),
                AuthError::RoleNotAllowed,
            ),
            (
                with("role", json!("authenticated ")),
                AuthError::RoleNotAllowed,
            ),
            (
                with("role", json!(["authenticated"])),
                AuthError::RoleNotAllowed,
            ),
            (without("org_id"), AuthError::InvalidOrg),
            (with("org_id", json!("not-a-uuid")), AuthError::InvalidOrg),
            (
                with("org_id", json!(ORG.replace('-', ""))),
                AuthError::InvalidOrg,
            ),
            (
                with("org_id", json!(format!("{{{ORG}}}"))),
                AuthError::InvalidOrg,
            ),
            (
                with("org_id", json!("00000000-0000-0000-0000-000000000000")),
                AuthError::InvalidOrg,
            ),
            (with("org_id", json!(7)), AuthError::InvalidOrg),
        ];
        for (claims, want) in cases {
            assert_eq!(run(&claims, &r), Err(want.clone()), "{claims} -> {want:?}");
        }
    }

    #[test]
    fn leeway_edges_and_fractional_dates() {
        let r = rules("org_id", "role");
        use serde_json::json;
        assert!(run(&with("exp", json!(NOW - 29)), &r).is_ok());
        assert!(run(&with("nbf", json!(NOW + 30)), &r).is_ok());
        assert!(run(&with("iat", json!(NOW + 30)), &r).is_ok());
        assert!(run(&with("exp", json!((NOW + 60) as f64 + 0.5)), &r).is_ok());
        assert_eq!(run(&with("exp", json!(u64::MAX)), &r).map(|_| ()), Ok(()));
        assert!(run(&with("exp", json!(1e300)), &r).is_ok());
        assert_eq!(run(&with("nbf", json!(-1e300)), &r).map(|_| ()), Ok(()));
    }

    #[test]
    fn audience_arrays_and_escaped_names() {
        let r = rules("org_id", "role");
        assert!(run(&with("aud", serde_json::json!(["x", "authenticated"])), &r).is_ok());
        // Escaped keys and values are compared unescaped, as Postgres reads them.
        let text = base()
            .to_string()
            .replace("\"sub\"", "\"s\\u0075b\"")
            .replace("\"authenticated\"", "\"authentic\\u0061ted\"");
        let got = check(&text, &r, NOW).unwrap();
        assert_eq!(got.sub, "user-1");
        assert_eq!(got.role.as_str(), "authenticated");
    }

    #[test]
    fn duplicates_of_read_claims_are_malformed() {
        let r = rules("app_metadata.org_id", "app_metadata.role");
        let good = format!(
            r#"{{"sub":"u","aud":"authenticated","iss":"https://issuer.example","exp":{},"app_metadata":{{"org_id":"{ORG}","role":"authenticated","x":1,"x":2}},"y":1,"y":2}}"#,
            NOW + 60
        );
        assert!(check(&good, &r, NOW).is_ok());
        for (from, to) in [
            (r#""sub":"u","#, r#""sub":"u","sub":"v","#),
            (r#""exp":"#, r#""exp":1,"exp":"#),
            (
                r#""aud":"authenticated","#,
                r#""aud":"authenticated","aud":"x","#,
            ),
            (
                r#""role":"authenticated""#,
                r#""role":"authenticated","role":"postgres""#,
            ),
            (
                r#""app_metadata":{"#,
                r#""app_metadata":{},"app_metadata":{"#,
            ),
            (r#""org_id":"#, r#""org_id":"x","org_id":"#),
        ] {
            let bad = good.replacen(from, to, 1);
            assert_ne!(bad, good);
            assert_eq!(
                check(&bad, &r, NOW).map(|_| ()),
                Err(AuthError::MalformedToken),
                "{bad}"
            );
        }
    }

    #[test]
    fn nested_paths_share_a_prefix_and_ignore_everything_else() {
        let r = rules("app_metadata.org_id", "app_metadata.role");
        let mut claims = without("org_id");
        claims.as_object_mut().unwrap().remove("role");
        claims["role"] = "postgres".into(); // top-level role is not the configured path
        claims["app_metadata"] = serde_json::json!({
            "provider": "email", "org_id": ORG, "nested": {"org_id": "x"}, "role": "authenticated"
        });
        claims["user_metadata"] = serde_json::json!({"org_id": "other", "list": [1, {"a": null}]});
        assert!(run(&claims, &r).is_ok());
        claims["app_metadata"] = serde_json::json!("a string, not an object");
        assert_eq!(run(&claims, &r), Err(AuthError::RoleNotAllowed));
        claims["app_metadata"] =
            serde_json::json!({"org_id": {"id": ORG}, "role": "authenticated"});
        assert_eq!(run(&claims, &r), Err(AuthError::InvalidOrg));
        let deep = rules("a.b.c.org", "role");
        let mut claims = without("org_id");
        claims["a"] = serde_json::json!({"b": {"c": {"org": ORG}}, "z": [1]});
        assert!(run(&claims, &deep).is_ok());
    }

    #[test]
    fn non_objects_and_trailing_garbage_are_malformed() {
        let r = rules("org_id", "role");
        for bad in [
            "",
            "[]",
            "null",
            "\"x\"",
            "{",
            "{} {}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{1:2}",
        ] {
            assert_eq!(
                check(bad, &r, NOW).map(|_| ()),
                Err(AuthError::MalformedToken),
                "{bad}"
            );
        }
    }

    #[test]
    fn path_configuration_rules() {
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "exp",
            "sub.x",
            "a.b.c.d.e.f.g.h.i",
        ] {
            assert!(ClaimPath::parse(bad, "org").is_err(), "{bad:?}");
        }
        assert!(
            rules("app_metadata", "app_metadata.role")
                .validate_paths()
                .is_err()
        );
        assert!(rules("org", "org").validate_paths().is_err());
        assert!(
            rules("app_metadata.org", "app_metadata.role")
                .validate_paths()
                .is_ok()
        );
        assert_eq!(ClaimPath::parse("a.b", "org").unwrap().to_string(), "a.b");
    }

    #[test]
    fn times_recheck() {
        let t = Times {
            exp: 100,
            nbf: Some(50),
            iat: None,
        };
        assert_eq!(t.check(99, 0), Ok(()));
        assert_eq!(t.check(100, 0), Err(AuthError::Expired));
        assert_eq!(t.check(49, 0), Err(AuthError::NotYetValid));
        assert_eq!(t.check(45, 5), Ok(()));
        assert_eq!(
            Times {
                exp: i64::MAX,
                nbf: None,
                iat: None
            }
            .check(i64::MAX - 1, 60),
            Ok(())
        );
    }
}
