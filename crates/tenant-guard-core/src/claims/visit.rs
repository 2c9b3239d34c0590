//! The serde visitors of the one pass over the claims: registered claims, the configured paths,
//! `aud`, NumericDates, all borrowed from the payload text where it holds no escapes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{ClaimRules, RoleFound};
use crate::error::AuthError;

/// A string claim as found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) enum Slot<'a> {
    #[default]
    Absent,
    Str(Cow<'a, str>),
    /// Present but not a string.
    Other,
}

/// The org claim as found: a string, or an integer (for integer org ids).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) enum OrgSlot<'a> {
    #[default]
    Absent,
    Str(Cow<'a, str>),
    /// A JSON integer within `i64`.
    Int(i64),
    /// Present but neither (a fraction, an integer beyond `i64`, an object, ...).
    Other,
}

/// A NumericDate claim as found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value {
    #[default]
    Absent,
    Num(i64),
    /// Present but not a number (CVE-2026-25537: such a claim must fail, never be skipped).
    Other,
}

impl Value {
    pub(super) fn optional(self, name: &'static str) -> Result<Option<i64>, AuthError> {
        match self {
            Self::Absent => Ok(None),
            Self::Num(n) => Ok(Some(n)),
            Self::Other => Err(AuthError::InvalidClaim(name)),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Aud {
    #[default]
    Absent,
    Match,
    NoMatch,
}

#[derive(Debug, Default)]
pub(super) struct Found<'a> {
    pub(super) exp: Value,
    pub(super) nbf: Value,
    pub(super) iat: Value,
    pub(super) aud: Aud,
    pub(super) sub: Slot<'a>,
    pub(super) iss: Slot<'a>,
    pub(super) org: OrgSlot<'a>,
    pub(super) role: RoleFound<'a>,
}

/// What the claim paths lead to.
#[derive(Default)]
struct Outs<'a> {
    org: OrgSlot<'a>,
    role: RoleFound<'a>,
}

pub(super) fn extract<'a>(claims: &'a str, rules: &ClaimRules) -> Result<Found<'a>, AuthError> {
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
        let mut paths = Outs::default();
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
                            lists: self.rules.role_lists(),
                            targets: &targets,
                            step,
                            depth: 0,
                            out: &mut paths,
                        })?;
                    }
                }
            }
        }
        found.org = paths.org;
        found.role = paths.role;
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
    /// Whether the role claim may be an array of names.
    lists: bool,
    targets: &'s [Target<'p>],
    step: Step,
    depth: usize,
    out: &'s mut Outs<'de>,
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
            Some((_, target)) if target.index == 0 => {
                self.out.org = d.deserialize_any(OrgSlotVisitor)?;
                Ok(())
            }
            Some(_) => {
                self.out.role = d.deserialize_any(RoleVisitor { lists: self.lists })?;
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
                lists: self.lists,
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

/// The org claim's value: kept when it is a string or an integer within `i64`.
struct OrgSlotVisitor;

impl<'de> Visitor<'de> for OrgSlotVisitor {
    type Value = OrgSlot<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(OrgSlot::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(OrgSlot::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(OrgSlot::Str(Cow::Owned(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(OrgSlot::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(OrgSlot::Other, OrgSlot::Int))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(OrgSlot::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(OrgSlot::Other)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(OrgSlot::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        StrSlotVisitor.visit_map(map).map(|_| OrgSlot::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        StrSlotVisitor.visit_seq(seq).map(|_| OrgSlot::Other)
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

/// The role claim: a string, or (when `lists`) an array of strings.
struct RoleVisitor {
    lists: bool,
}

impl<'de> Visitor<'de> for RoleVisitor {
    type Value = RoleFound<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a role name or an array of role names")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(RoleFound::Name(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(RoleFound::Name(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(RoleFound::Name(Cow::Owned(v)))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(RoleFound::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(RoleFound::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(RoleFound::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(RoleFound::Other)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(RoleFound::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        StrSlotVisitor.visit_map(map).map(|_| RoleFound::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if !self.lists {
            return StrSlotVisitor.visit_seq(seq).map(|_| RoleFound::Other);
        }
        let mut names = Vec::new();
        let mut all_strings = true;
        while let Some(StrSlot(item)) = seq.next_element()? {
            match item {
                // Bounded by the token size; a role list is a handful of names.
                Slot::Str(name) if all_strings => names.push(name),
                _ => all_strings = false,
            }
        }
        Ok(if all_strings {
            RoleFound::Names(names)
        } else {
            RoleFound::Other
        })
    }
}

/// The top-level `iss` of a claims object (see [`super::peek_issuer`]).
pub(super) fn issuer(claims: &str) -> Result<Option<Cow<'_, str>>, AuthError> {
    let mut de = serde_json::Deserializer::from_str(claims);
    let iss = de
        .deserialize_map(IssuerVisitor)
        .map_err(|_| AuthError::MalformedToken)?;
    de.end().map_err(|_| AuthError::MalformedToken)?;
    Ok(match iss {
        Slot::Str(iss) => Some(iss),
        Slot::Absent | Slot::Other => None,
    })
}

struct IssuerVisitor;

impl<'de> Visitor<'de> for IssuerVisitor {
    type Value = Slot<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut iss = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if key.0 == "iss" {
                if iss.is_some() {
                    return Err(de::Error::custom("duplicate claim iss"));
                }
                iss = Some(map.next_value::<StrSlot<'de>>()?.0);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(iss.unwrap_or(Slot::Absent))
    }
}
