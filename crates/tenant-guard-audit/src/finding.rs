//! One problem found in the database.

use serde::Serialize;

use crate::check::Check;
use crate::severity::Severity;

/// One problem found in the database: what, where, why it matters and how to fix it.
///
/// Serialised as one element of the report's `findings` array:
/// `{"check", "severity", "object", "message", "fix"}` always, plus `"policy"` when the finding
/// is about one policy and `"reference"` when the check follows a splinter lint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Finding {
    /// The check that found it (a stable id in JSON).
    pub check: Check,
    /// How bad it is.
    pub severity: Severity,
    /// The object: `<schema>.<table>` for tables, views and policies (the policy's table),
    /// `<schema>.<function>(<argument types>)` for functions, the role name for logins.
    pub object: String,
    /// Why it matters, in a sentence or two.
    pub message: String,
    /// How to fix it: SQL where possible, otherwise a short instruction.
    pub fix: String,
    /// The policy concerned, for policy findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The splinter lint this check follows, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<&'static str>,
}

impl Finding {
    pub(crate) fn new(
        check: Check,
        severity: Severity,
        object: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            check,
            severity,
            object: object.into(),
            message: message.into(),
            fix: fix.into(),
            policy: None,
            reference: check.reference(),
        }
    }

    pub(crate) fn with_policy(mut self, policy: &str) -> Self {
        self.policy = Some(policy.to_owned());
        self
    }
}
