//! The human-readable report: a table of findings and a summary line.

use std::fmt::Write as _;

use crate::report::Report;
use crate::severity::Severity;

const RESET: &str = "\x1b[0m";

fn style(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "\x1b[1;31m",
        Severity::High => "\x1b[31m",
        Severity::Medium => "\x1b[33m",
        Severity::Low => "\x1b[36m",
        Severity::Info => "\x1b[2m",
    }
}

impl Report {
    /// The report as a table for people: one block per finding (severity, check, object, then
    /// the message and the fix indented), and the summary line last. `color` adds ANSI colours
    /// to severities (use it only when writing to a terminal).
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
        } else {
            let check_width = self
                .findings
                .iter()
                .map(|f| f.check.id().len())
                .max()
                .unwrap_or(5)
                .max(5);
            let _ = writeln!(out);
            let _ = writeln!(out, "{:<9} {:<check_width$} OBJECT", "SEVERITY", "CHECK");
            for finding in &self.findings {
                let label = finding.severity.as_str().to_ascii_uppercase();
                let label = if color {
                    format!("{}{label:<9}{RESET}", style(finding.severity))
                } else {
                    format!("{label:<9}")
                };
                let policy = finding
                    .policy
                    .as_deref()
                    .map(|p| format!("  (policy {p})"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{label} {:<check_width$} {}{policy}",
                    finding.check.id(),
                    finding.object
                );
                let _ = writeln!(out, "          {}", finding.message);
                for (i, line) in finding.fix.lines().enumerate() {
                    let lead = if i == 0 { "fix: " } else { "     " };
                    let _ = writeln!(out, "          {lead}{line}");
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
