//! Where the org a request names comes from ([`OrgSource`]): a header, or a segment of the path
//! ([`OrgPath`], e.g. `/orgs/{org}/…`). Either way it is a *request*, checked by the membership
//! lookup of [`OrgMembership`](crate::OrgMembership) before anything is scoped.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use http::HeaderName;

/// Where [`OrgMembership`](crate::OrgMembership) reads the org a request names.
///
/// ```
/// use tenant_guard_http::{OrgMembership, OrgPath, OrgSource};
///
/// let reader = tenant_guard_core::Role::new("membership_reader")?;
/// let header = OrgSource::Header(http::HeaderName::from_static("x-org-id"));
/// let by_header = OrgMembership::new(header, reader.clone());
/// let by_path = OrgMembership::new(OrgSource::Path(OrgPath::new("/orgs/{org}")?), reader);
/// # let _ = (by_header, by_path);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OrgSource {
    /// The value of this header (exactly one; a repeated header is malformed).
    Header(HeaderName),
    /// The segment of the request path at the template's `{org}`.
    Path(OrgPath),
}

/// A path template with one `{org}` segment, e.g. `/orgs/{org}`: a request path that starts with
/// the template's literal segments names the org in the segment at `{org}` (any segments may
/// follow: `/orgs/{org}` covers `/orgs/7b1…/projects/42`). A path that does not start that way
/// names no org (a token without one is then 400 `org_required`).
///
/// The path is the one the guard sees (without the query), compared segment by segment, case
/// and bytes exact, **not percent-decoded**: `%35d3c…` is no UUID, so it is refused rather than
/// decoded differently from the router. In axum, a guard layered inside `Router::nest` sees the
/// path without the nest's prefix. Handlers should take the org from the principal
/// (`principal.org_id()`, the checked one), not from their own path parameter.
///
/// ```
/// use tenant_guard_http::OrgPath;
///
/// assert!(OrgPath::new("/orgs/{org}").is_ok());
/// assert!(OrgPath::new("/api/v1/orgs/{org}/admin").is_ok());
/// assert!(OrgPath::new("/orgs").is_err()); // no {org}
/// assert!(OrgPath::new("orgs/{org}").is_err()); // not absolute
/// assert!(OrgPath::new("/{org}/x/{org}").is_err()); // twice
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct OrgPath {
    segments: Arc<[Segment]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Org,
}

/// The placeholder of the org segment in an [`OrgPath`] template.
const ORG: &str = "{org}";

/// A path template [`OrgPath::new`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid org path template {template:?}: {reason}")]
#[non_exhaustive]
pub struct InvalidOrgPath {
    /// The template (at most 100 characters of it).
    pub template: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl OrgPath {
    /// Parses `template`: absolute (`/…`), no empty segment, no query, exactly one segment
    /// `{org}`, no other braces.
    pub fn new(template: &str) -> Result<Self, InvalidOrgPath> {
        let invalid = |reason| InvalidOrgPath {
            template: template.chars().take(100).collect(),
            reason,
        };
        let Some(rest) = template.strip_prefix('/') else {
            return Err(invalid("it must start with `/`"));
        };
        if template.contains(['?', '#']) {
            return Err(invalid("it must be a path, without a query or fragment"));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut segments = Vec::new();
        for segment in rest.split('/') {
            segments.push(match segment {
                "" => return Err(invalid("it has an empty segment")),
                ORG => Segment::Org,
                s if s.contains(['{', '}']) => {
                    return Err(invalid("braces only as the one `{org}` segment"));
                }
                s => Segment::Literal(s.into()),
            });
        }
        match segments.iter().filter(|s| **s == Segment::Org).count() {
            0 => Err(invalid("it has no `{org}` segment")),
            1 => Ok(Self {
                segments: segments.into(),
            }),
            _ => Err(invalid("it has more than one `{org}` segment")),
        }
    }

    /// The raw segment of `path` at `{org}`, when `path` starts with the template's literal
    /// segments (and has a segment at `{org}`, possibly empty).
    pub(crate) fn org_segment<'a>(&self, path: &'a str) -> Option<&'a str> {
        let mut parts = path.strip_prefix('/')?.split('/');
        let mut org = None;
        for segment in self.segments.iter() {
            let part = parts.next()?;
            match segment {
                Segment::Literal(literal) if **literal == *part => {}
                Segment::Literal(_) => return None,
                Segment::Org => org = Some(part),
            }
        }
        org
    }
}

impl FromStr for OrgPath {
    type Err = InvalidOrgPath;

    fn from_str(s: &str) -> Result<Self, InvalidOrgPath> {
        Self::new(s)
    }
}

impl fmt::Display for OrgPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in self.segments.iter() {
            match segment {
                Segment::Literal(literal) => write!(f, "/{literal}")?,
                Segment::Org => write!(f, "/{ORG}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for OrgPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OrgPath").field(&self.to_string()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_org_segment_is_found_after_the_literal_prefix_only() {
        let path = OrgPath::new("/orgs/{org}").unwrap();
        assert_eq!(path.to_string(), "/orgs/{org}");
        assert_eq!(path.org_segment("/orgs/abc"), Some("abc"));
        assert_eq!(path.org_segment("/orgs/abc/projects/1"), Some("abc"));
        assert_eq!(path.org_segment("/orgs/"), Some(""));
        assert_eq!(path.org_segment("/orgs"), None);
        assert_eq!(path.org_segment("/Orgs/abc"), None);
        assert_eq!(path.org_segment("//orgs/abc"), None);
        assert_eq!(path.org_segment("/me"), None);
        assert_eq!(path.org_segment("orgs/abc"), None);
        assert_eq!(path.org_segment(""), None);
        let first = OrgPath::new("/{org}/projects/").unwrap();
        assert_eq!(first.org_segment("/x/projects"), Some("x"));
        assert_eq!(first.org_segment("/x/other"), None);
        assert_eq!(first.org_segment("/x"), None);
    }

    #[test]
    fn bad_templates_are_refused() {
        for (template, reason) in [
            ("", "start with"),
            ("orgs/{org}", "start with"),
            ("/orgs", "no `{org}`"),
            ("/orgs//{org}", "empty segment"),
            ("/orgs/{org}?x=1", "query"),
            ("/orgs/{org}/{org}", "more than one"),
            ("/orgs/{id}", "braces"),
            ("/orgs/x{org}", "braces"),
        ] {
            let err = OrgPath::new(template).unwrap_err();
            assert!(err.to_string().contains(reason), "{template}: {err}");
        }
    }
}
