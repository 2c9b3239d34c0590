//! Claim paths: where in the claims the org and the role are read.
//!
//! Three spellings, all meaning a list of object keys from the top level down:
//!
//! - dotted, PostgREST-style: `app_metadata.org_id`, `realm_access.roles`, `cognito:groups`;
//! - bracketed JSON strings for keys that hold dots (Auth0's namespaced claims):
//!   `["https://example.com/roles"]`, `app_metadata["org.id"]`, mixed freely with dots;
//! - a JSON Pointer (RFC 6901) when the path starts with `/`: `/https:~1~1example.com~1roles`.

use std::fmt;

use crate::error::AuthError;

/// Longest claim path, in segments.
const MAX_PATH_SEGMENTS: usize = 8;

/// Claims that are read as registered claims and so cannot start an org or role path.
const REGISTERED: [&str; 6] = ["exp", "nbf", "iat", "sub", "aud", "iss"];

/// Top-level claims the token's holder can write: Supabase copies `user_metadata` from what the
/// user sets with `updateUser({ data })`.
const USER_EDITABLE: &[&str] = &["user_metadata"];

/// A claim path such as `app_metadata.org_id` or `["https://example.com/roles"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimPath(Box<[Box<str>]>);

impl ClaimPath {
    /// Parses `path` (see the module docs): 1 to 8 non-empty segments.
    pub(crate) fn parse(path: &str, what: &str) -> Result<Self, AuthError> {
        let segments = if let Some(pointer) = path.strip_prefix('/') {
            Some(
                pointer
                    .split('/')
                    .map(|s| s.replace("~1", "/").replace("~0", "~").into())
                    .collect(),
            )
        } else {
            split_segments(path)
        };
        let bad = || {
            AuthError::InvalidConfig(format!(
                "{what} path {path:?} must be dot-separated non-empty names, [\"quoted\"] keys, or a /json/pointer"
            ))
        };
        Self::from_segments(segments.ok_or_else(bad)?, what).map_err(|e| match e {
            AuthError::InvalidConfig(m) if m.is_empty() => bad(),
            other => other,
        })
    }

    /// A path from its keys, as given (no syntax).
    pub(crate) fn from_segments(segments: Vec<Box<str>>, what: &str) -> Result<Self, AuthError> {
        if segments.is_empty() || segments.iter().any(|s| s.is_empty()) {
            return Err(AuthError::InvalidConfig(String::new()));
        }
        let shown = Self(segments.clone().into());
        if segments.len() > MAX_PATH_SEGMENTS {
            return Err(AuthError::InvalidConfig(format!(
                "{what} path {shown} has more than {MAX_PATH_SEGMENTS} segments"
            )));
        }
        if REGISTERED.contains(&&*segments[0]) {
            return Err(AuthError::InvalidConfig(format!(
                "{what} path {shown} cannot start with the registered claim {:?}",
                segments[0]
            )));
        }
        Ok(shown)
    }

    pub(crate) fn segments(&self) -> &[Box<str>] {
        &self.0
    }

    /// Whether the path is under a claim its user can write ([`USER_EDITABLE`]).
    pub(crate) fn is_user_editable(&self) -> bool {
        USER_EDITABLE.contains(&&*self.0[0])
    }

    pub(crate) fn is_prefix_of(&self, other: &Self) -> bool {
        other.0.starts_with(&self.0)
    }
}

/// Dotted names and `["…"]` JSON strings; `None` on any syntax error or empty segment.
fn split_segments(path: &str) -> Option<Vec<Box<str>>> {
    let mut segments = Vec::new();
    let mut rest = path;
    let mut first = true;
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix("[") {
            let mut stream = serde_json::Deserializer::from_str(quoted).into_iter::<String>();
            let key = stream.next()?.ok()?;
            let after = &quoted[stream.byte_offset()..];
            rest = after.strip_prefix(']')?;
            segments.push(key.into());
        } else {
            if !first {
                rest = rest.strip_prefix('.')?;
            }
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            segments.push(rest[..end].into());
            rest = &rest[end..];
        }
        first = false;
        // After a bracket, a dot introduces a plain name; a bracket may follow directly.
        if rest.starts_with(".[") {
            return None;
        }
    }
    (!segments.is_empty()).then_some(segments)
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            let plain = !segment.is_empty() && !segment.contains(['.', '[', ']', '"', '/']);
            match (plain, i) {
                (true, 0) => f.write_str(segment)?,
                (true, _) => write!(f, ".{segment}")?,
                (false, _) => write!(f, "[{}]", serde_json::Value::String(segment.to_string()))?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        ClaimPath::parse(path, "role")
            .unwrap()
            .segments()
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn three_spellings() {
        assert_eq!(segs("realm_access.roles"), ["realm_access", "roles"]);
        assert_eq!(segs("cognito:groups"), ["cognito:groups"]);
        assert_eq!(
            segs(r#"["https://example.com/roles"]"#),
            ["https://example.com/roles"]
        );
        assert_eq!(
            segs(r#"app_metadata["org.id"].x["y"]"#),
            ["app_metadata", "org.id", "x", "y"]
        );
        assert_eq!(segs(r#"["a\"b"]"#), ["a\"b"]);
        assert_eq!(
            segs("/https:~1~1example.com~1roles"),
            ["https://example.com/roles"]
        );
        assert_eq!(segs("/a/b~0c"), ["a", "b~c"]);
    }

    #[test]
    fn bad_paths() {
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "exp",
            "sub.x",
            "a.b.c.d.e.f.g.h.i",
            "[]",
            "[\"\"]",
            "[\"a\"",
            "[a]",
            "a.[\"b\"]",
            "[\"a\"]b",
            "/",
            "//a",
            "/exp",
            "[\"iss\"]",
        ] {
            assert!(ClaimPath::parse(bad, "org").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for path in [
            "a.b",
            r#"["https://example.com/roles"]"#,
            r#"app_metadata["org.id"]"#,
        ] {
            let parsed = ClaimPath::parse(path, "x").unwrap();
            assert_eq!(parsed.to_string(), path);
            assert_eq!(ClaimPath::parse(&parsed.to_string(), "x").unwrap(), parsed);
        }
    }
}
