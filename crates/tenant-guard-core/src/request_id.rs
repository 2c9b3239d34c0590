//! Request ids: accept a sane incoming `x-request-id`, otherwise generate one.

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};

/// The header carrying the request id, in both directions.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming id that is kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A request id: the caller's when it is 1–128 visible ASCII characters, else a fresh UUID v7.
///
/// ```
/// use http::HeaderMap;
/// use tenant_guard_core::RequestId;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-request-id", "abc-123".parse().unwrap());
/// assert_eq!(RequestId::from_headers(&headers).as_str(), "abc-123");
///
/// headers.insert("x-request-id", "has space".parse().unwrap());
/// assert_ne!(RequestId::from_headers(&headers).as_str(), "has space");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The caller's id when exactly one sane `x-request-id` is present, otherwise a new one.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut values = headers.get_all(X_REQUEST_ID).iter();
        match (values.next(), values.next()) {
            (Some(v), None) if is_sane(v.as_bytes()) => Self(v.clone()),
            _ => Self::generate(),
        }
    }

    /// A fresh, time-ordered id (UUID v7).
    pub fn generate() -> Self {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf);
        // One allocation, shared by every clone: a value copied from a slice
        // (`HeaderValue::from_str`) allocates a second time on its first clone, to become shared.
        let bytes = bytes::Bytes::from_owner(buf);
        Self(
            HeaderValue::from_maybe_shared(bytes)
                .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
        )
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only visible ASCII ever gets in, so this cannot fail.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value, for the response.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

fn is_sane(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_REQUEST_ID, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn keeps_sane_ids() {
        let id = "a".repeat(128);
        assert_eq!(
            RequestId::from_headers(&with(&[id.as_bytes()])).as_str(),
            id
        );
    }

    #[test]
    fn replaces_insane_ids() {
        let long = "a".repeat(129);
        for bad in [
            &b""[..],
            b"with space",
            long.as_bytes(),
            b"tab\there",
            &[0xC3, 0xA4],
        ] {
            let got = RequestId::from_headers(&with(&[bad]));
            assert_ne!(got.as_str().as_bytes(), bad);
            assert_eq!(got.as_str().len(), 36);
        }
        let two = RequestId::from_headers(&with(&[b"one", b"two"]));
        assert_eq!(two.as_str().len(), 36);
        assert_eq!(
            RequestId::from_headers(&HeaderMap::new()).as_str().len(),
            36
        );
    }
}
