//! The machine-readable reports against their committed schemas: `--format sarif` against the
//! SARIF 2.1.0 schema (a hand-written faithful subset, see the file), `--format json` against
//! the report's own versioned schema; and the CLI's exit codes with `--format sarif`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{APP_LOGIN, CORRECT, LEAKY, SEED_002, SUPABASE_AUTH, WRITE_SIDE, audit, database};
use jsonschema::Validator;
use serde_json::Value;
use tenant_guard_audit::{AuditConfig, Check, Report};

const SARIF_SCHEMA: &str = include_str!("../schemas/sarif-2.1.0-subset.schema.json");
const REPORT_SCHEMA: &str = include_str!("../schemas/report-v1.schema.json");

fn validator(schema: &str) -> Validator {
    let schema: Value = serde_json::from_str(schema).expect("schema JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("a valid JSON schema")
}

fn assert_valid(validator: &Validator, document: &str) -> Value {
    let value: Value = serde_json::from_str(document).expect("JSON output");
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{document}");
    value
}

/// Reports with many kinds of finding: seed 002 (references, policies), the write side, the
/// leaky schema with the probe (probe summary and findings), and a clean one (no results).
async fn reports() -> Vec<(&'static str, Report, tenant_guard_testkit::TestDatabase)> {
    let mut out = Vec::new();
    for (name, scripts, probe) in [
        ("seed_002", &[SUPABASE_AUTH, SEED_002][..], false),
        ("write_side", &[SUPABASE_AUTH, WRITE_SIDE][..], false),
        ("leaky", &[LEAKY][..], true),
        ("correct", &[CORRECT][..], false),
    ] {
        let (db, mut client) = database(scripts).await;
        let report = audit(&mut client, AuditConfig::new().probe(probe)).await;
        out.push((name, report, db));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sarif_and_json_outputs_validate_against_their_schemas() {
    let sarif = validator(SARIF_SCHEMA);
    let json = validator(REPORT_SCHEMA);
    for (name, report, _db) in reports().await {
        let value = assert_valid(&json, &report.to_json());
        assert_eq!(value["summary"]["format_version"], 1, "{name}");

        for artifact in [
            None,
            Some("supabase/migrations"),
            Some("./db/schema dump.sql"),
        ] {
            let log = assert_valid(&sarif, &report.to_sarif(artifact));
            assert_eq!(log["version"], "2.1.0");
            let run = &log["runs"][0];
            let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
            let results = run["results"].as_array().unwrap();
            assert_eq!(results.len(), report.findings.len(), "{name}");
            for (result, finding) in results.iter().zip(&report.findings) {
                // ruleIndex points at the rule of the same id.
                let rule = &rules[result["ruleIndex"].as_u64().unwrap() as usize];
                assert_eq!(rule["id"], result["ruleId"]);
                assert_eq!(result["ruleId"], finding.check.id());
                assert_eq!(result["properties"]["severity"], finding.severity.as_str());
                let location = &result["locations"][0];
                assert_eq!(
                    location["logicalLocations"][0]["fullyQualifiedName"],
                    finding.object
                );
                let uri = location["physicalLocation"]["artifactLocation"]["uri"]
                    .as_str()
                    .unwrap();
                match artifact {
                    Some("supabase/migrations") => assert_eq!(uri, "supabase/migrations"),
                    Some(_) => assert_eq!(uri, "db/schema%20dump.sql"),
                    None => assert!(uri.starts_with("database/"), "{uri}"),
                }
            }
            // One rule per check that found something, each used.
            assert_eq!(
                rules.len(),
                report
                    .findings
                    .iter()
                    .map(|f| f.check)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
            );
        }
    }
}

#[test]
fn the_validators_reject_what_the_schemas_forbid() {
    // A test that cannot fail proves nothing: break valid documents and expect errors.
    let sarif = validator(SARIF_SCHEMA);
    let minimal = serde_json::json!({
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": { "name": "t" } },
            "results": [{ "ruleId": "x", "level": "error", "message": { "text": "m" } }]
        }]
    });
    assert!(sarif.is_valid(&minimal));
    let mut bad_level = minimal.clone();
    bad_level["runs"][0]["results"][0]["level"] = "critical".into();
    assert!(!sarif.is_valid(&bad_level));
    let mut no_message = minimal.clone();
    no_message["runs"][0]["results"][0]
        .as_object_mut()
        .unwrap()
        .remove("message");
    assert!(!sarif.is_valid(&no_message));
    let mut wrong_version = minimal.clone();
    wrong_version["version"] = "2.0.0".into();
    assert!(!sarif.is_valid(&wrong_version));
    let mut unknown_property = minimal;
    unknown_property["runs"][0]["tool"]["driver"]["nmae"] = "typo".into();
    assert!(!sarif.is_valid(&unknown_property));

    let report = validator(REPORT_SCHEMA);
    let finding = serde_json::json!({
        "check": "rls_disabled", "severity": "critical", "object": "public.t",
        "message": "m", "fix": "f"
    });
    let mut document = serde_json::json!({
        "summary": {
            "format_version": 1, "database": "d", "login": "l", "server_version": "15",
            "schemas": ["public"], "tenant_columns": ["org_id"], "app_roles": [],
            "auth_helpers": [], "tables_scanned": 1, "tables_with_rls": 0,
            "tables_with_forced_rls": 0, "tenant_tables": 1, "allowed_tables": 0,
            "findings": {"critical": 1, "high": 0, "medium": 0, "low": 0, "info": 0}
        },
        "findings": [finding]
    });
    assert!(report.is_valid(&document));
    document["findings"][0]["check"] = "no_such_check".into();
    assert!(!report.is_valid(&document));
    document["findings"][0]["check"] = "rls_disabled".into();
    document["summary"]["format_version"] = 2.into();
    assert!(!report.is_valid(&document));
}

#[test]
fn the_report_schema_lists_every_check_id() {
    let schema: Value = serde_json::from_str(REPORT_SCHEMA).unwrap();
    let listed: Vec<&str> = schema["definitions"]["finding"]["properties"]["check"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let ids: Vec<&str> = Check::ALL.iter().map(|c| c.id()).collect();
    assert_eq!(listed, ids, "update schemas/report-v1.schema.json");
}

#[tokio::test]
async fn the_cli_writes_sarif_and_exits_by_fail_on() {
    let (db, _client) = database(&[SUPABASE_AUTH, SEED_002]).await;
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tenant-guard"))
            .args([
                "audit",
                "--database-url",
                db.url(),
                "--login-role",
                APP_LOGIN,
            ])
            .args([
                "--format",
                "sarif",
                "--sarif-artifact",
                "supabase/migrations",
            ])
            .args(extra)
            .env_remove("DATABASE_URL")
            .output()
            .expect("run tenant-guard")
    };
    let sarif = validator(SARIF_SCHEMA);
    // 1: findings at or above the default --fail-on high; the SARIF is still written.
    let failing = run(&[]);
    assert_eq!(failing.status.code(), Some(1));
    let log = assert_valid(&sarif, std::str::from_utf8(&failing.stdout).unwrap());
    assert!(!log["runs"][0]["results"].as_array().unwrap().is_empty());
    // 0: nothing at or above the threshold.
    assert_eq!(run(&["--fail-on", "none"]).status.code(), Some(0));
    // 2: could not run (a bad argument; a bad URL is tested in cli.rs).
    let bad = run(&["--fail-on", "severe"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(bad.stdout.is_empty());
}
