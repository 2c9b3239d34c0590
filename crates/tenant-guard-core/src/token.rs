//! The JWS compact serialisation: splitting, the protected header, the payload bytes.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::algorithm::Algorithm;
use crate::error::AuthError;

/// Longest base64url header segment read; real headers are well under 200 bytes.
pub(crate) const MAX_HEADER_SEGMENT: usize = 1024;

/// Buffer size for a decoded header of at most [`MAX_HEADER_SEGMENT`] characters.
pub(crate) const HEADER_BUF: usize = MAX_HEADER_SEGMENT / 4 * 3;

/// The three segments of a compact JWS, and the signed message (`header.payload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parts<'a> {
    pub(crate) header: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) signature: &'a str,
    pub(crate) message: &'a str,
}

/// Splits `token` at its first and last dot into three non-empty segments.
///
/// Only the short header and signature segments are scanned here. A dot left inside the payload
/// segment (a token of four or more segments) is not base64url, so decoding the payload refuses it;
/// the signature, computed over everything before the last dot, is checked before that.
pub(crate) fn split(token: &str) -> Result<Parts<'_>, AuthError> {
    let bytes = token.as_bytes();
    let first = bytes
        .iter()
        .position(|&b| b == b'.')
        .ok_or(AuthError::MalformedToken)?;
    let last = bytes
        .iter()
        .rposition(|&b| b == b'.')
        .ok_or(AuthError::MalformedToken)?;
    if first == 0 || last <= first + 1 || last + 1 == bytes.len() {
        return Err(AuthError::MalformedToken);
    }
    Ok(Parts {
        header: &token[..first],
        payload: &token[first + 1..last],
        signature: &token[last + 1..],
        message: &token[..last],
    })
}

/// The parts of the protected header the verifier uses.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
    /// Present in JWE headers only: an encrypted token is not a JWS.
    #[serde(default)]
    enc: Option<IgnoredAny>,
    /// `JWT` announces a nested token as the payload, which is never claims.
    #[serde(borrow, default)]
    cty: Option<Cow<'a, str>>,
}

/// Decodes and parses the header segment into `buf`, without allocating.
///
/// An unknown `alg` (including `none` in any capitalisation) is [`AuthError::DisallowedAlgorithm`];
/// a `crit` header (an extension we cannot honour), an `enc` header (a JWE), `cty: JWT` (a nested
/// token) or anything unparsable is malformed.
pub(crate) fn parse_header<'b>(
    segment: &str,
    buf: &'b mut [u8; HEADER_BUF],
) -> Result<Header<'b>, AuthError> {
    if segment.len() > MAX_HEADER_SEGMENT {
        return Err(AuthError::MalformedToken);
    }
    let len = URL_SAFE_NO_PAD
        .decode_slice(segment, buf)
        .map_err(|_| AuthError::MalformedToken)?;
    let json = &buf[..len];
    // serde would also read a struct from a JSON array; a header is an object.
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(AuthError::MalformedToken);
    }
    let raw: RawHeader<'b> = serde_json::from_slice(json).map_err(|_| AuthError::MalformedToken)?;
    let nested = raw
        .cty
        .as_deref()
        .is_some_and(|cty| cty.eq_ignore_ascii_case("JWT"));
    if raw.crit.is_some() || raw.enc.is_some() || nested {
        return Err(AuthError::MalformedToken);
    }
    let alg = Algorithm::from_header(&raw.alg).ok_or(AuthError::DisallowedAlgorithm)?;
    Ok(Header { alg, kid: raw.kid })
}

/// The error for an unsecured JWS (`header.payload.`, RFC 7519 section 6) whose header names a
/// refused algorithm (`none`): [`AuthError::DisallowedAlgorithm`] rather than a bare "malformed",
/// so the log says what was tried. `None` for anything else (the caller keeps its own error).
/// Only called once [`split`] refused the token.
pub(crate) fn unsecured_error(token: &str) -> Option<AuthError> {
    let (header, payload) = token.strip_suffix('.')?.split_once('.')?;
    if header.is_empty() || payload.is_empty() || payload.contains('.') {
        return None;
    }
    let mut buf = [0u8; HEADER_BUF];
    match parse_header(header, &mut buf) {
        Err(AuthError::DisallowedAlgorithm) => Some(AuthError::DisallowedAlgorithm),
        _ => None,
    }
}

/// Decodes the payload segment into the exact claims text (valid UTF-8, no spare capacity).
pub(crate) fn decode_payload(segment: &str) -> Result<Box<str>, AuthError> {
    let len = segment.len();
    let exact = len / 4 * 3
        + match len % 4 {
            0 => 0,
            2 => 1,
            3 => 2,
            _ => return Err(AuthError::MalformedToken),
        };
    let mut bytes = vec![0u8; exact];
    let written = URL_SAFE_NO_PAD
        .decode_slice(segment, &mut bytes)
        .map_err(|_| AuthError::MalformedToken)?;
    bytes.truncate(written);
    let text = String::from_utf8(bytes).map_err(|_| AuthError::MalformedToken)?;
    Ok(text.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn header(json: &str) -> Result<(Algorithm, Option<String>), AuthError> {
        let mut buf = [0u8; HEADER_BUF];
        parse_header(&b64(json), &mut buf).map(|h| (h.alg, h.kid.map(Cow::into_owned)))
    }

    #[test]
    fn splits_exactly_three_non_empty_segments() {
        let p = split("a.b.c").unwrap();
        assert_eq!(
            (p.header, p.payload, p.signature, p.message),
            ("a", "b", "c", "a.b")
        );
        for bad in [
            "", "a", "a.b", ".b.c", "a..c", "a.b.", "..", "a.b.c.", "...",
        ] {
            assert_eq!(split(bad), Err(AuthError::MalformedToken), "{bad:?}");
        }
        // Extra dots stay in the payload segment, which then cannot decode.
        let p = split("a.b.c.d").unwrap();
        assert_eq!((p.header, p.payload, p.signature), ("a", "b.c", "d"));
        assert_eq!(decode_payload(p.payload), Err(AuthError::MalformedToken));
    }

    #[test]
    fn header_alg_table() {
        assert_eq!(
            header(r#"{"alg":"HS256","typ":"JWT"}"#),
            Ok((Algorithm::HS256, None))
        );
        assert_eq!(
            header(r#"{"kid":"k\u0031","alg":"EdDSA"}"#),
            Ok((Algorithm::EdDSA, Some("k1".into())))
        );
        for none in ["none", "None", "NONE", "nOnE"] {
            let json = format!(r#"{{"alg":"{none}"}}"#);
            assert_eq!(header(&json), Err(AuthError::DisallowedAlgorithm), "{none}");
        }
        for (json, want) in [
            (r#"{"alg":"hs256"}"#, AuthError::DisallowedAlgorithm),
            (r#"{"alg":"ES512"}"#, AuthError::DisallowedAlgorithm),
            (r#"{"alg":""}"#, AuthError::DisallowedAlgorithm),
            (r#"{"typ":"JWT"}"#, AuthError::MalformedToken),
            (r#"{"alg":256}"#, AuthError::MalformedToken),
            (r#"{"alg":"HS256","alg":"none"}"#, AuthError::MalformedToken),
            (
                r#"{"alg":"HS256","crit":["exp"]}"#,
                AuthError::MalformedToken,
            ),
            (r#"["alg","HS256"]"#, AuthError::MalformedToken),
            (r#"{"alg":"HS256"} x"#, AuthError::MalformedToken),
            (r#"{"alg":"HS256","kid":5}"#, AuthError::MalformedToken),
            (
                r#"{"alg":"HS256","enc":"A256GCM"}"#,
                AuthError::MalformedToken,
            ),
            (
                r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#,
                AuthError::MalformedToken,
            ),
            (r#"{"alg":"HS256","cty":"JWT"}"#, AuthError::MalformedToken),
            (r#"{"alg":"HS256","cty":"jwt"}"#, AuthError::MalformedToken),
        ] {
            assert_eq!(header(json), Err(want), "{json}");
        }
        let mut buf = [0u8; HEADER_BUF];
        assert_eq!(
            parse_header("e30=", &mut buf),
            Err(AuthError::MalformedToken)
        );
        assert_eq!(
            parse_header("!!!!", &mut buf),
            Err(AuthError::MalformedToken)
        );
        let long = b64(&format!(r#"{{"alg":"HS256","x":"{}"}}"#, "a".repeat(800)));
        assert_eq!(
            parse_header(&long, &mut buf),
            Err(AuthError::MalformedToken)
        );
    }

    #[test]
    fn header_content_types_other_than_jwt_pass() {
        assert_eq!(
            header(r#"{"alg":"HS256","cty":"application/json"}"#),
            Ok((Algorithm::HS256, None))
        );
    }

    #[test]
    fn unsecured_none_tokens_are_named_as_such() {
        for alg in ["none", "NONE", "nOnE"] {
            let token = format!("{}.{}.", b64(&format!(r#"{{"alg":"{alg}"}}"#)), b64("{}"));
            assert_eq!(split(&token), Err(AuthError::MalformedToken));
            assert_eq!(
                unsecured_error(&token),
                Some(AuthError::DisallowedAlgorithm),
                "{alg}"
            );
        }
        let hs = format!("{}.{}.", b64(r#"{"alg":"HS256"}"#), b64("{}"));
        for other in [hs.as_str(), "", ".", "..", "a..", ".b.", "a.b.c.", "a.b"] {
            assert_eq!(unsecured_error(other), None, "{other:?}");
        }
    }

    #[test]
    fn payload_is_exact_utf8() {
        for text in ["", "{}", "{\"a\":1}", "{\"ä\":\"ö\"}", "ab", "abc", "abcd"] {
            let decoded = decode_payload(&b64(text));
            if text.is_empty() {
                assert_eq!(decoded.as_deref(), Ok(""));
            } else {
                assert_eq!(decoded.as_deref(), Ok(text));
            }
        }
        assert_eq!(decode_payload("a"), Err(AuthError::MalformedToken));
        assert_eq!(decode_payload("e30="), Err(AuthError::MalformedToken));
        assert_eq!(decode_payload("e3+"), Err(AuthError::MalformedToken));
        assert_eq!(
            decode_payload(&URL_SAFE_NO_PAD.encode([0xff, 0xfe])),
            Err(AuthError::MalformedToken)
        );
        // Non-canonical trailing bits are refused (no signature-preserving variants).
        assert_eq!(decode_payload("e31"), Err(AuthError::MalformedToken));
    }
}
