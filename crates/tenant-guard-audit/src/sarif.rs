//! The report as SARIF 2.1.0, for code scanning (GitHub's `upload-sarif`, and any SARIF viewer).

use serde_json::{Value, json};

use crate::check::Check;
use crate::finding::Finding;
use crate::report::Report;
use crate::severity::Severity;

/// The `$schema` the log names (the SARIF 2.1.0 schema as published on schemastore.org).
pub const SARIF_SCHEMA_URI: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// SARIF's `level` for a severity: critical and high are errors, medium a warning, the rest
/// notes.
fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub's `security-severity` (a CVSS-like score: 9+ critical, 7+ high, 4+ medium, else low).
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

/// Percent-encodes what may not appear in a relative URI reference (spaces, quotes, …).
fn uri_path(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/()!$&'*+,;=:@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn first_sentence(text: &str) -> &str {
    match text.find(": ").into_iter().chain(text.find(". ")).min() {
        Some(end) => &text[..end],
        None => text.trim_end_matches('.'),
    }
}

fn rule(check: Check, worst: Severity) -> Value {
    let mut rule = json!({
        "id": check.id(),
        "shortDescription": { "text": first_sentence(check.description()) },
        "fullDescription": { "text": check.description() },
        "help": { "text": check.description() },
        "defaultConfiguration": { "level": level(worst) },
        "properties": {
            "tags": ["security", "postgresql", "row-level-security"],
            "security-severity": security_severity(worst),
        },
    });
    if let (Some(reference), Some(properties)) =
        (check.reference(), rule["properties"].as_object_mut())
    {
        properties.insert("reference".into(), reference.into());
    }
    rule
}

fn result(finding: &Finding, rule_index: usize, artifact: &str) -> Value {
    let kind = if finding.object.contains('(') {
        "function"
    } else {
        "resource"
    };
    let mut properties = json!({
        "severity": finding.severity.as_str(),
        "object": finding.object,
        "fix": finding.fix,
    });
    if let Some(map) = properties.as_object_mut() {
        if let Some(policy) = &finding.policy {
            map.insert("policy".into(), policy.clone().into());
        }
        if let Some(reference) = finding.reference {
            map.insert("reference".into(), reference.into());
        }
    }
    let policy = finding
        .policy
        .as_deref()
        .map(|p| format!(" (policy {p})"))
        .unwrap_or_default();
    json!({
        "ruleId": finding.check.id(),
        "ruleIndex": rule_index,
        "level": level(finding.severity),
        "message": {
            "text": format!("{}{policy}: {} Fix: {}", finding.object, finding.message, finding.fix),
            "markdown": format!(
                "**{}**{policy}: {}\n\nFix:\n\n```sql\n{}\n```",
                finding.object, finding.message, finding.fix
            ),
        },
        "locations": [{
            "physicalLocation": {
                "artifactLocation": { "uri": artifact },
                "region": { "startLine": 1 },
            },
            "logicalLocations": [{
                "name": finding.object.rsplit_once('.').map_or(finding.object.as_str(), |(_, n)| n),
                "fullyQualifiedName": finding.object,
                "kind": kind,
            }],
        }],
        "partialFingerprints": {
            "tenantGuardFinding/v1": format!(
                "{}:{}:{}",
                finding.check.id(),
                finding.object,
                finding.policy.as_deref().unwrap_or("")
            ),
        },
        "properties": properties,
    })
}

impl Report {
    /// The report as a SARIF 2.1.0 log (pretty-printed JSON): one run of the tool
    /// `tenant-guard`, one rule per check that found something (with GitHub's
    /// `security-severity`), one result per finding.
    ///
    /// SARIF results point at files, and a database has none: every result is attached to line
    /// 1 of `artifact` when given (a path relative to the repository root, such as your
    /// migrations directory or schema dump, so code scanning shows the findings next to it),
    /// otherwise to `database/<object>` (shown as the alert's location, without a snippet).
    /// The database object is always in `logicalLocations`, the severity, fix and policy in
    /// the result's `properties`; `partialFingerprints` keep alerts stable across runs.
    ///
    /// ```no_run
    /// # async fn run(report: tenant_guard_audit::Report) {
    /// std::fs::write("audit.sarif", report.to_sarif(Some("supabase/migrations"))).unwrap();
    /// # }
    /// ```
    pub fn to_sarif(&self, artifact: Option<&str>) -> String {
        let checks: Vec<Check> = Check::ALL
            .iter()
            .copied()
            .filter(|c| self.findings.iter().any(|f| f.check == *c))
            .collect();
        let rules: Vec<Value> = checks
            .iter()
            .map(|check| {
                let worst = self
                    .findings
                    .iter()
                    .filter(|f| f.check == *check)
                    .map(|f| f.severity)
                    .max()
                    .unwrap_or(Severity::Info);
                rule(*check, worst)
            })
            .collect();
        let results: Vec<Value> = self
            .findings
            .iter()
            .map(|finding| {
                let index = checks.iter().position(|c| *c == finding.check).unwrap_or(0);
                let uri = match artifact {
                    Some(path) => uri_path(path.trim_start_matches("./")),
                    None => format!("database/{}", uri_path(&finding.object)),
                };
                result(finding, index, &uri)
            })
            .collect();
        let log = json!({
            "$schema": SARIF_SCHEMA_URI,
            "version": "2.1.0",
            "runs": [{
                "tool": {
                    "driver": {
                        "name": "tenant-guard",
                        "fullName": "tenant-guard audit",
                        "version": env!("CARGO_PKG_VERSION"),
                        "semanticVersion": env!("CARGO_PKG_VERSION"),
                        "informationUri": env!("CARGO_PKG_REPOSITORY"),
                        "rules": rules,
                    },
                },
                "invocations": [{ "executionSuccessful": true }],
                "results": results,
                "properties": { "summary": self.summary },
            }],
        });
        // Serialising plain strings, numbers and enums cannot fail.
        serde_json::to_string_pretty(&log).unwrap_or_else(|_| String::from("{}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_escape_what_a_uri_cannot_hold() {
        assert_eq!(uri_path("public.notes"), "public.notes");
        assert_eq!(uri_path("public.f(uuid, text)"), "public.f(uuid,%20text)");
        assert_eq!(uri_path("a\"b#c"), "a%22b%23c");
    }

    #[test]
    fn levels_follow_severity() {
        assert_eq!(level(Severity::Critical), "error");
        assert_eq!(level(Severity::Medium), "warning");
        assert_eq!(level(Severity::Info), "note");
    }

    #[test]
    fn every_check_has_a_description() {
        for check in Check::ALL {
            assert!(!check.description().is_empty(), "{check}");
            assert!(!first_sentence(check.description()).is_empty(), "{check}");
        }
    }
}
