//! The result of an audit: a summary and the findings.

use serde::Serialize;

use crate::finding::Finding;
use crate::severity::Severity;

/// The version of the JSON report's shape, in `summary.format_version`. It changes only when a
/// field is removed or changes meaning; new fields may appear within a version.
pub const FORMAT_VERSION: u32 = 1;

/// The result of an audit. Its JSON form ([`Report::to_json`]) is a stable interface:
///
/// ```json
/// {"summary": {"format_version": 1, "tables_scanned": 3, "tables_with_rls": 2, "…": "…",
///              "findings": {"critical": 1, "high": 0, "medium": 2, "low": 0, "info": 0}},
///  "findings": [{"check": "rls_disabled", "severity": "critical", "object": "public.notes",
///                "message": "…", "fix": "ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY; …"}]}
/// ```
///
/// Findings are sorted most severe first, then by object and check.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// What was scanned and how many findings of each severity.
    pub summary: Summary,
    /// Every finding, most severe first.
    pub findings: Vec<Finding>,
}

/// What an audit scanned, and the number of findings by severity.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Summary {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The database audited (`current_database()`).
    pub database: String,
    /// The login whose powers were checked (`session_user`, or the configured login role).
    pub login: String,
    /// The server's version (`server_version`).
    pub server_version: String,
    /// The schemas audited.
    pub schemas: Vec<String>,
    /// The tenant column names looked for.
    pub tenant_columns: Vec<String>,
    /// Which of the guard's roles (`anon`, `authenticated`, `service_role`) exist.
    pub app_roles: Vec<String>,
    /// Which of the `auth` helper functions (`uid`, `jwt`, `role`) exist.
    pub auth_helpers: Vec<String>,
    /// Tables (plain and partitioned) in the audited schemas.
    pub tables_scanned: usize,
    /// Of those, tables with RLS enabled.
    pub tables_with_rls: usize,
    /// Of those, tables with RLS forced.
    pub tables_with_forced_rls: usize,
    /// Tables holding a tenant column.
    pub tenant_tables: usize,
    /// Tables skipped because they were allowed (`--allow`).
    pub allowed_tables: usize,
    /// Findings by severity.
    pub findings: SeverityCounts,
    /// The isolation probe's results, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeSummary>,
}

/// Number of findings of each severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SeverityCounts {
    /// Critical findings.
    pub critical: usize,
    /// High findings.
    pub high: usize,
    /// Medium findings.
    pub medium: usize,
    /// Low findings.
    pub low: usize,
    /// Info findings.
    pub info: usize,
}

impl SeverityCounts {
    pub(crate) fn of(findings: &[Finding]) -> Self {
        let mut counts = Self::default();
        for finding in findings {
            *counts.slot(finding.severity) += 1;
        }
        counts
    }

    fn slot(&mut self, severity: Severity) -> &mut usize {
        match severity {
            Severity::Critical => &mut self.critical,
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
            Severity::Info => &mut self.info,
        }
    }

    /// The number of findings of `severity`.
    pub fn get(&self, severity: Severity) -> usize {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Info => self.info,
        }
    }
}

/// What the isolation probe did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ProbeSummary {
    /// Tenant tables the probe tried.
    pub tables: usize,
    /// Tables where org B could neither read, update, delete nor insert org A's rows.
    pub passed: usize,
    /// Tables where at least one cross-org step succeeded.
    pub failed: usize,
    /// Tables that could not be probed, or whose steps proved nothing.
    pub skipped: usize,
}

impl Report {
    pub(crate) fn new(mut summary: Summary, mut findings: Vec<Finding>) -> Self {
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.object.cmp(&b.object))
                .then_with(|| a.check.cmp(&b.check))
                .then_with(|| a.policy.cmp(&b.policy))
        });
        summary.findings = SeverityCounts::of(&findings);
        Self { summary, findings }
    }

    /// `true` when some finding is at least as severe as `threshold`.
    pub fn has_findings_at_or_above(&self, threshold: Severity) -> bool {
        self.findings.iter().any(|f| f.severity >= threshold)
    }

    /// The most severe finding's severity, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// The report as pretty-printed JSON (the stable interface described on [`Report`]).
    pub fn to_json(&self) -> String {
        // Serialising plain strings, numbers and enums cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| String::from("{}"))
    }
}
