//! Claims: one pass over the verified payload that picks out the registered claims and the
//! configured org and role paths, then the checks on them.
//!
//! - `path`: how a claim path is spelled (dotted, `["quoted"]` keys, JSON Pointer);
//! - `visit`: the serde visitors of the one pass (borrowing from the payload);
//! - `role`: from the role claim as found (a name, an array, nothing) to the Postgres role.

mod path;
mod role;
mod visit;

use std::borrow::Cow;

use crate::error::AuthError;
use crate::org_id::{OrgId, OrgIdKind};
use crate::role::Role;

pub(crate) use path::ClaimPath;
pub use role::RoleArray;
pub(crate) use role::{RoleFound, RoleRule};
use visit::{Aud, OrgSlot, Slot, Value, extract};

/// What the claims must satisfy (besides the signature).
#[derive(Debug, Clone)]
pub(crate) struct ClaimRules {
    pub(crate) audiences: Box<[Box<str>]>,
    pub(crate) issuer: Option<Box<str>>,
    pub(crate) org_path: ClaimPath,
    pub(crate) role_path: ClaimPath,
    pub(crate) role: RoleRule,
    pub(crate) leeway: i64,
    /// `false` when the org may be chosen per request instead (no org claim is then allowed).
    pub(crate) org_required: bool,
    /// The kind of org id the org claim must hold.
    pub(crate) org_kind: OrgIdKind,
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

    /// Whether the role claim may be an array (read as a list rather than refused).
    pub(crate) fn role_lists(&self) -> bool {
        self.role.array != RoleArray::Refuse
    }
}

/// The top-level `iss` of an unverified payload, to pick the issuer profile whose keys then
/// verify it: `None` when absent or not a string. Malformed JSON and a repeated `iss` are
/// malformed tokens (the checks after the signature would refuse them too).
pub(crate) fn peek_issuer(claims: &str) -> Result<Option<Cow<'_, str>>, AuthError> {
    visit::issuer(claims)
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
    pub(crate) org: OrgId,
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
    let role = rules.role.resolve(&found.role)?;
    let org = match &found.org {
        OrgSlot::Str(text) => rules.org_kind.parse(text),
        OrgSlot::Int(n) => rules.org_kind.parse_json_int(*n),
        // No org claim at all, where the org is chosen per request: the nil UUID, which no token
        // can name (`OrgIdKind::parse` refuses it), marks a principal that still needs its org.
        OrgSlot::Absent if !rules.org_required => Ok(OrgId::NIL),
        _ => return Err(AuthError::InvalidOrg),
    }
    .map_err(|_| AuthError::InvalidOrg)?;
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
            role: RoleRule::new(&["authenticated".into()], RoleArray::Refuse, None, &[]).unwrap(),
            org_required: true,
            leeway: 30,
            org_kind: OrgIdKind::Uuid,
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
    ) -> Result<(String, OrgId, String), AuthError> {
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
                OrgIdKind::Uuid.parse(ORG).unwrap(),
                "authenticated".into()
            )
        );
    }

    #[test]
    fn org_claims_of_each_kind() {
        use serde_json::json;
        let kind = |kind| ClaimRules {
            org_kind: kind,
            ..rules("org_id", "role")
        };
        let ok =
            |k: OrgIdKind, v: serde_json::Value| run(&with("org_id", v), &kind(k)).map(|g| g.1);
        // Accepted, in their canonical form.
        assert_eq!(ok(OrgIdKind::Integer, json!(42)), Ok(OrgId::Int(42)));
        assert_eq!(ok(OrgIdKind::Integer, json!("42")), Ok(OrgId::Int(42)));
        assert_eq!(ok(OrgIdKind::Integer, json!(-3)), Ok(OrgId::Int(-3)));
        assert_eq!(
            ok(OrgIdKind::Integer, json!(i64::MAX)),
            Ok(OrgId::Int(i64::MAX))
        );
        assert_eq!(
            ok(OrgIdKind::Text, json!("acme-corp")),
            Ok(OrgId::text("acme-corp").unwrap())
        );
        assert_eq!(
            ok(OrgIdKind::Text, json!("Team_7.eu:west")),
            Ok(OrgId::text("Team_7.eu:west").unwrap())
        );
        // Refused, each with the usual `invalid_org` (403), never a panic.
        let refused: Vec<(OrgIdKind, serde_json::Value)> = vec![
            (OrgIdKind::Integer, json!(ORG)),
            (OrgIdKind::Integer, json!("+42")),
            (OrgIdKind::Integer, json!("042")),
            (OrgIdKind::Integer, json!(" 42")),
            (OrgIdKind::Integer, json!("42 ")),
            (OrgIdKind::Integer, json!("")),
            (OrgIdKind::Integer, json!("4 2")),
            (OrgIdKind::Integer, json!("9223372036854775808")),
            (OrgIdKind::Integer, json!(9_223_372_036_854_775_808_u64)),
            (OrgIdKind::Integer, json!(42.0)),
            (OrgIdKind::Integer, json!(4.2)),
            (OrgIdKind::Integer, json!(1e30)),
            (OrgIdKind::Integer, json!(true)),
            (OrgIdKind::Integer, json!(null)),
            (OrgIdKind::Integer, json!([42])),
            (OrgIdKind::Integer, json!({"id": 42})),
            (OrgIdKind::Text, json!("")),
            (OrgIdKind::Text, json!("acme corp")),
            (OrgIdKind::Text, json!("acme\u{1}")),
            (OrgIdKind::Text, json!("acme\\x")),
            (OrgIdKind::Text, json!("acme\n")),
            (OrgIdKind::Text, json!("acme\t")),
            (OrgIdKind::Text, json!("acmé")),
            (OrgIdKind::Text, json!("a'; DROP TABLE t; --")),
            (OrgIdKind::Text, json!("x".repeat(129))),
            (OrgIdKind::Text, json!(42)),
            (OrgIdKind::Text, json!(["acme"])),
            (OrgIdKind::Text, json!(null)),
            (OrgIdKind::Uuid, json!(42)),
            (OrgIdKind::Uuid, json!("42")),
            (OrgIdKind::Uuid, json!("acme")),
        ];
        for (k, value) in refused {
            assert_eq!(
                ok(k, value.clone()),
                Err(AuthError::InvalidOrg),
                "{k}: {value}"
            );
        }
        // Real control characters (not just escaped-looking text) are refused too.
        let control = r#"{"sub":"u","aud":"authenticated","iss":"https://issuer.example","exp":NOW,"role":"authenticated","org_id":"ac\u0007me"}"#
            .replace("NOW", &(NOW + 60).to_string());
        assert_eq!(
            check(&control, &kind(OrgIdKind::Text), NOW).map(|_| ()),
            Err(AuthError::InvalidOrg)
        );
        // No org claim: the per-request sentinel only where allowed, whatever the kind.
        for k in [OrgIdKind::Uuid, OrgIdKind::Integer, OrgIdKind::Text] {
            assert_eq!(
                run(&without("org_id"), &kind(k)).map(|g| g.1),
                Err(AuthError::InvalidOrg)
            );
            let per_request = ClaimRules {
                org_required: false,
                ..kind(k)
            };
            assert_eq!(
                run(&without("org_id"), &per_request).map(|g| g.1),
                Ok(OrgId::NIL)
            );
        }
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
