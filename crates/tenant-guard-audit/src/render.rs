//! The human-readable report: findings grouped by table (most severe table first), and a
//! one-line summary with counts.

use std::fmt::Write as _;

use crate::finding::Finding;
use crate::report::Report;
use crate::severity::Severity;

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";

fn style(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "\x1b[1;31m",
        Severity::High => "\x1b[31m",
        Severity::Medium => "\x1b[33m",
        Severity::Low => "\x1b[36m",
        Severity::Info => "\x1b[2m",
    }
}

/// `text` in `severity`'s colour when `color` is on.
fn paint(text: &str, severity: Severity, color: bool) -> String {
    if color {
        format!("{}{text}{RESET}", style(severity))
    } else {
        text.to_owned()
    }
}

/// The findings grouped by object, most severe group first (then by name); inside a group the
/// report's order (most severe first) is kept.
fn groups(findings: &[Finding]) -> Vec<(&str, Vec<&Finding>)> {
    let mut groups: Vec<(&str, Vec<&Finding>)> = Vec::new();
    for finding in findings {
        match groups
            .iter_mut()
            .find(|(object, _)| *object == finding.object)
        {
            Some((_, members)) => members.push(finding),
            None => groups.push((&finding.object, vec![finding])),
        }
    }
    groups.sort_by(|a, b| {
        let worst = |g: &[&Finding]| g.iter().map(|f| f.severity).max();
        worst(&b.1).cmp(&worst(&a.1)).then_with(|| a.0.cmp(b.0))
    });
    groups
}

impl Report {
    /// The report for people: a header, then one block per table (or function, view, role)
    /// with its findings, most severe table first (each finding: severity, check id, the policy
    /// concerned, the message and the fix), and the [summary line](Self::summary_line) last.
    /// `color` adds ANSI colours to severities (use it only when writing to a terminal).
    ///
    /// ```text
    /// public.docs: 1 high, 1 medium
    ///   HIGH      write_policy_without_tenant_check  policy docs_update
    ///             Policy "docs_update" (UPDATE for authenticated) has no WITH CHECK, …
    ///             fix: ALTER POLICY docs_update ON public.docs WITH CHECK (…);
    /// ```
    pub fn to_text(&self, color: bool) -> String {
        let mut out = String::new();
        let s = &self.summary;
        let _ = writeln!(
            out,
            "tenant-guard audit of database {} (PostgreSQL {}) as {}; schemas: {}; tenant columns: {}",
            s.database,
            s.server_version,
            s.login,
            s.schemas.join(", "),
            s.tenant_columns.join(", ")
        );
        if self.findings.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "No findings.");
        }
        let check_width = self
            .findings
            .iter()
            .map(|f| f.check.id().len())
            .max()
            .unwrap_or(0);
        for (object, findings) in groups(&self.findings) {
            let _ = writeln!(out);
            let counts: Vec<String> = Severity::ALL
                .iter()
                .filter_map(|sev| {
                    let n = findings.iter().filter(|f| f.severity == *sev).count();
                    (n > 0).then(|| paint(&format!("{n} {sev}"), *sev, color))
                })
                .collect();
            let title = if color {
                format!("{BOLD}{object}{RESET}")
            } else {
                object.to_owned()
            };
            let _ = writeln!(out, "{title}: {}", counts.join(", "));
            for finding in findings {
                let label = format!("{:<9}", finding.severity.as_str().to_ascii_uppercase());
                let check = match finding.policy.as_deref() {
                    Some(policy) => {
                        format!("{:<check_width$}  policy {policy}", finding.check.id())
                    }
                    None => finding.check.id().to_owned(),
                };
                let _ = writeln!(out, "  {} {check}", paint(&label, finding.severity, color));
                let _ = writeln!(out, "            {}", finding.message);
                for (i, line) in finding.fix.lines().enumerate() {
                    let lead = if i == 0 { "fix: " } else { "     " };
                    let _ = writeln!(out, "            {lead}{line}");
                }
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", self.summary_line());
        out
    }

    /// One line: tables scanned, with RLS, findings by severity (and the probe's results).
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        let counts: Vec<String> = Severity::ALL
            .iter()
            .map(|sev| format!("{} {}", s.findings.get(*sev), sev.as_str()))
            .collect();
        let mut line = format!(
            "{} tables scanned, {} with RLS ({} forced), {} tenant tables; findings: {}",
            s.tables_scanned,
            s.tables_with_rls,
            s.tables_with_forced_rls,
            s.tenant_tables,
            counts.join(", ")
        );
        if let Some(probe) = &s.probe {
            let _ = write!(
                line,
                "; probe: {} tables, {} passed, {} failed, {} skipped",
                probe.tables, probe.passed, probe.failed, probe.skipped
            );
        }
        line
    }
}
