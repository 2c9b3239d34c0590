//! The `tenant-guard audit` command: exit codes, the JSON interface, the text table, errors.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Output};

use common::{APP_LOGIN, CORRECT, SEED_002, SUPABASE_AUTH, database};
use serde_json::Value;
use tenant_guard_testkit::TestDatabase;
use tokio_postgres::config::Host;

fn tenant_guard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenant-guard"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("NO_COLOR")
        .output()
        .expect("run tenant-guard")
}

/// A key/value connection string for `db` as `user` (the testkit server trusts local logins).
fn conninfo_as(db: &TestDatabase, user: &str) -> String {
    let config = db.config();
    let host = match &config.get_hosts()[0] {
        Host::Tcp(host) => host.clone(),
        Host::Unix(path) => path.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("host={host} port={port} user={user} dbname={}", db.name())
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[tokio::test]
async fn json_report_is_the_documented_shape_and_exit_codes_follow_fail_on() {
    let (db, _client) = database(&[SUPABASE_AUTH, SEED_002]).await;
    let base = [
        "audit",
        "--database-url",
        db.url(),
        "--login-role",
        APP_LOGIN,
    ];
    let json = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(&["--format", "json"]);
        args.extend_from_slice(extra);
        tenant_guard(&args)
    };

    let output = json(&[]);
    // Default --fail-on high: seed 002 has a critical finding.
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(keys(&report), BTreeSet::from(["summary", "findings"]));

    let findings = report["findings"].as_array().expect("findings array");
    assert!(!findings.is_empty());
    let severities = ["critical", "high", "medium", "low", "info"];
    for finding in findings {
        let present = keys(finding);
        for key in ["check", "severity", "object", "message", "fix"] {
            assert!(present.contains(key), "{key} missing in {finding}");
            assert!(
                finding[key].as_str().is_some_and(|s| !s.is_empty()),
                "{finding}"
            );
        }
        let optional: BTreeSet<&str> = present
            .difference(&BTreeSet::from([
                "check", "severity", "object", "message", "fix",
            ]))
            .copied()
            .collect();
        assert!(
            optional.is_subset(&BTreeSet::from(["policy", "reference"])),
            "{finding}"
        );
        assert!(severities.contains(&finding["severity"].as_str().unwrap()));
    }
    // Most severe first.
    let ranks: Vec<usize> = findings
        .iter()
        .map(|f| severities.iter().position(|s| *s == f["severity"]).unwrap())
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");

    let summary = &report["summary"];
    assert_eq!(summary["format_version"], 1);
    assert_eq!(summary["tables_scanned"], 4);
    assert_eq!(summary["tables_with_rls"], 4);
    assert_eq!(summary["login"], APP_LOGIN);
    for severity in severities {
        let counted = findings
            .iter()
            .filter(|f| f["severity"] == severity)
            .count();
        assert_eq!(summary["findings"][severity], counted, "{severity}");
    }
    let first = &findings[0];
    assert_eq!(first["check"], "rls_policy_always_true");
    assert_eq!(first["object"], "public.organizations");
    assert_eq!(first["policy"], "organizations_all_access");
    assert_eq!(first["reference"], "splinter 0024 rls_policy_always_true");

    assert_eq!(json(&["--fail-on", "none"]).status.code(), Some(0));
    assert_eq!(json(&["--fail-on", "critical"]).status.code(), Some(1));
    assert_eq!(json(&["--fail-on", "low"]).status.code(), Some(1));
}

#[tokio::test]
async fn text_output_is_a_table_with_a_summary_line() {
    let (db, _client) = database(&[SUPABASE_AUTH, SEED_002]).await;
    let output = tenant_guard(&[
        "audit",
        "--database-url",
        db.url(),
        "--login-role",
        APP_LOGIN,
        "--fail-on",
        "none",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    // Grouped by table, the most severe table first, with its counts.
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert!(
        blocks[1].starts_with("public.organizations: 1 critical, 2 medium\n"),
        "{text}"
    );
    assert!(
        blocks[1].contains("\n  CRITICAL  rls_policy_always_true"),
        "{text}"
    );
    assert!(
        blocks[1].contains("policy organizations_all_access"),
        "{text}"
    );
    assert!(text.contains("fix: ALTER TABLE public.organizations FORCE ROW LEVEL SECURITY;"));
    for table in [
        "public.sms_confirmation_logs",
        "public.appointment_bookings",
        "public.cold_call_logs",
    ] {
        assert_eq!(
            blocks
                .iter()
                .filter(|b| b.starts_with(&format!("{table}: ")))
                .count(),
            1,
            "{table} has one block: {text}"
        );
    }
    assert!(
        text.trim_end().ends_with(
            "4 tables scanned, 4 with RLS (1 forced), 3 tenant tables; findings: 1 critical, 4 high, 8 medium, 2 low, 0 info"
        ),
        "{text}"
    );
    // Not a terminal: no colour unless asked for; no trailing spaces.
    assert!(!text.contains('\x1b'));
    assert!(text.lines().all(|line| !line.ends_with(' ')), "{text}");
    let coloured = tenant_guard(&[
        "audit",
        "--database-url",
        db.url(),
        "--fail-on",
        "none",
        "--color",
        "always",
    ]);
    assert!(
        String::from_utf8(coloured.stdout)
            .unwrap()
            .contains("\x1b[1;31mCRITICAL")
    );
}

#[tokio::test]
async fn a_clean_database_exits_zero_and_database_url_comes_from_the_environment() {
    let (db, _client) = database(&[CORRECT]).await;
    let output = Command::new(env!("CARGO_BIN_EXE_tenant-guard"))
        .args([
            "audit",
            "--allow",
            "plans",
            "--login-role",
            APP_LOGIN,
            "--fail-on",
            "info",
        ])
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("No findings."), "{text}");
    assert!(
        text.contains("6 tables scanned, 4 with RLS (4 forced), 4 tenant tables"),
        "{text}"
    );
}

#[tokio::test]
async fn connecting_as_the_app_login_needs_no_privileges() {
    let (db, _client) = database(&[SUPABASE_AUTH, SEED_002]).await;
    let output = tenant_guard(&[
        "audit",
        "--database-url",
        &conninfo_as(&db, APP_LOGIN),
        "--format",
        "json",
        "--fail-on",
        "none",
    ]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let pairs: BTreeSet<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_owned(),
                f["object"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // The login cannot read cold_call_logs, so the orphan count says so instead of guessing.
    assert!(pairs.contains(&(
        "orphan_rows_unchecked".to_owned(),
        "public.cold_call_logs".to_owned()
    )));
    assert!(!pairs.contains(&("orphan_rows".to_owned(), "public.cold_call_logs".to_owned())));
    assert!(
        !pairs.iter().any(|(check, _)| check.starts_with("login_")),
        "{pairs:?}"
    );
    assert_eq!(report["summary"]["login"], APP_LOGIN);
}

#[test]
fn errors_exit_with_two_and_a_clear_message() {
    let unreachable = tenant_guard(&[
        "audit",
        "--database-url",
        "postgres://nobody:secret-password@127.0.0.1:1/none?connect_timeout=5",
    ]);
    assert_eq!(unreachable.status.code(), Some(2));
    let stderr = String::from_utf8(unreachable.stderr).unwrap();
    assert!(
        stderr.starts_with("tenant-guard: error: could not connect"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret-password"), "{stderr}");

    let no_url = tenant_guard(&["audit"]);
    assert_eq!(no_url.status.code(), Some(2));
    assert!(
        String::from_utf8(no_url.stderr)
            .unwrap()
            .contains("--database-url")
    );

    let bad_threshold = tenant_guard(&["audit", "--database-url", "x", "--fail-on", "severe"]);
    assert_eq!(bad_threshold.status.code(), Some(2));

    let help = tenant_guard(&["audit", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--database-url",
        "--schema",
        "--tenant-column",
        "--allow",
        "--format",
        "--fail-on",
        "--probe",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}
