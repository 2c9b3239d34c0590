//! Where a token may come from: exactly one `Authorization: Bearer` header, or — only when opted
//! in — one named cookie. Never a query string, never an identity header.

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};

use crate::error::AuthError;

/// The token candidate in `headers`: the `Authorization` header when present, else the opted-in
/// cookie.
///
/// Only the framing is checked here; the token's characters are not scanned on the hot path.
/// A candidate that then fails verification and is not [`is_token68`] is reported as
/// [`AuthError::MalformedHeader`] by the verifier.
pub(crate) fn token_from_headers<'h>(
    headers: &'h HeaderMap,
    cookie: Option<&str>,
) -> Result<&'h [u8], AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => parse_bearer(value.as_bytes()),
        (Some(_), Some(_)) => Err(AuthError::MalformedHeader),
        (None, _) => match cookie {
            Some(name) => token_from_cookies(headers, name),
            None => Err(AuthError::MissingToken),
        },
    }
}

/// Parses `Bearer <token>`: the scheme case-insensitive, one or more spaces, then a non-empty
/// token (surrounding spaces or tabs ignored).
pub(crate) fn parse_bearer(value: &[u8]) -> Result<&[u8], AuthError> {
    const SCHEME: &[u8] = b"bearer";
    if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return Err(AuthError::MalformedHeader);
    }
    let rest = &value[SCHEME.len()..];
    if rest[0] != b' ' {
        return Err(AuthError::MalformedHeader);
    }
    non_empty(rest.trim_ascii())
}

fn non_empty(token: &[u8]) -> Result<&[u8], AuthError> {
    if token.is_empty() {
        Err(AuthError::MalformedHeader)
    } else {
        Ok(token)
    }
}

fn token_from_cookies<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h [u8], AuthError> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        for pair in header.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            if &pair[..eq] != name.as_bytes() {
                continue;
            }
            if found.is_some() {
                return Err(AuthError::MalformedHeader);
            }
            let mut value = &pair[eq + 1..];
            if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
                value = &value[1..value.len() - 1];
            }
            found = Some(value);
        }
    }
    match found {
        Some(value) => non_empty(value),
        None => Err(AuthError::MissingToken),
    }
}

/// RFC 7235 token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub(crate) fn is_token68(bytes: &[u8]) -> bool {
    let body_end = bytes.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    body_end > 0 && bytes[..body_end].iter().all(|&b| is_token68_char(b))
}

fn is_token68_char(b: u8) -> bool {
    let alpha = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    let punct = (b == b'-') | (b == b'.') | (b == b'_') | (b == b'~') | (b == b'+') | (b == b'/');
    alpha | digit | punct
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// What the verifier sees: the candidate, refused as malformed unless it is token68.
    fn checked(candidate: Result<&[u8], AuthError>) -> Result<&str, AuthError> {
        let bytes = candidate?;
        if !is_token68(bytes) {
            return Err(AuthError::MalformedHeader);
        }
        Ok(std::str::from_utf8(bytes).unwrap())
    }

    fn full(value: &[u8]) -> Result<&str, AuthError> {
        checked(parse_bearer(value))
    }

    fn from(h: &HeaderMap, cookie: Option<&str>) -> Result<String, AuthError> {
        checked(token_from_headers(h, cookie)).map(str::to_owned)
    }

    fn headers(auth: &[&[u8]], cookies: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in auth {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        for v in cookies {
            h.append(COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_table() {
        let ok: &[(&[u8], &str)] = &[
            (b"Bearer abc.def.ghi", "abc.def.ghi"),
            (b"bearer abc", "abc"),
            (b"BEARER abc", "abc"),
            (b"bEaReR abc", "abc"),
            (b"Bearer    abc  ", "abc"),
            (b"Bearer abc\t", "abc"),
            (b"Bearer a-b_c~d+e/f==", "a-b_c~d+e/f=="),
        ];
        for (input, want) in ok {
            assert_eq!(
                full(input),
                Ok(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let bad: &[&[u8]] = &[
            b"",
            b"Bearer",
            b"Bearer ",
            b"Bearer    ",
            b"Bearerabc",
            b"Bearer\tabc",
            b"Basic dXNlcjpwYXNz",
            b"Token abc",
            b"Bearer abc def",
            b"Bearer abc,def",
            b"Bearer ===",
            b"Bearer a=b",
            b"Bearer \"abc\"",
            b"Bearer abc\xc3\xa4",
            b"Bearer\xc3\xa4 abc",
            b" Bearer abc",
            b"Bear abc",
        ];
        for input in bad {
            assert_eq!(
                full(input),
                Err(AuthError::MalformedHeader),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn token68_alphabet_is_exact() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_token68_char(b), want, "{b}");
        }
    }

    #[test]
    fn exactly_one_authorization_header() {
        assert_eq!(from(&headers(&[], &[]), None), Err(AuthError::MissingToken));
        assert_eq!(from(&headers(&[b"Bearer a"], &[]), None), Ok("a".into()));
        assert_eq!(
            from(&headers(&[b"Bearer a", b"Bearer a"], &[]), None),
            Err(AuthError::MalformedHeader)
        );
    }

    #[test]
    fn identity_headers_and_unrequested_cookies_are_ignored() {
        let mut h = headers(&[], &[b"sb-access-token=abc"]);
        h.insert("x-user-id", HeaderValue::from_static("admin"));
        h.insert(
            "x-org-id",
            HeaderValue::from_static("7d0a3d39-3a4b-4c49-9a41-5bd2f1a1f0aa"),
        );
        assert_eq!(from(&h, None), Err(AuthError::MissingToken));
    }

    #[test]
    fn cookie_only_when_opted_in_and_header_wins() {
        let name = Some("sb-access-token");
        let h = headers(&[], &[b"a=1; sb-access-token=tok.en.x; b=2"]);
        assert_eq!(from(&h, name), Ok("tok.en.x".into()));
        let h = headers(&[], &[b"a=1", b"sb-access-token=\"quoted\""]);
        assert_eq!(from(&h, name), Ok("quoted".into()));
        let h = headers(&[b"Bearer header"], &[b"sb-access-token=cookie"]);
        assert_eq!(from(&h, name), Ok("header".into()));
        for bad in [
            &b"sb-access-token=a; sb-access-token=b"[..],
            b"sb-access-token=",
            b"sb-access-token=a b",
            b"sb-access-token=a,b",
        ] {
            let h = headers(&[], &[bad]);
            assert_eq!(
                from(&h, name),
                Err(AuthError::MalformedHeader),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for missing in [
            &b"other=1"[..],
            b"sb-access-tokenx=1",
            b"xsb-access-token=1",
            b"sb-access-token",
        ] {
            let h = headers(&[], &[missing]);
            assert_eq!(from(&h, name), Err(AuthError::MissingToken));
        }
    }

    #[test]
    fn no_panic_on_random_header_bytes() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: &[u8] = b"Bb eEaArR\t=;.\"-_~+/,abcXYZ019\x80\xff";
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = parse_bearer(&bytes);
            let mut prefixed = b"Bearer ".to_vec();
            prefixed.extend_from_slice(&bytes);
            if let Ok(token) = full(&prefixed) {
                assert!(!token.is_empty());
                assert!(token.bytes().all(|b| b.is_ascii_graphic()));
            }
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let mut h = HeaderMap::new();
                h.insert(COOKIE, value);
                let _ = token_from_headers(&h, Some("b"));
            }
        }
    }
}
