//! Hostile tokens and headers through both adapters (issue 7, "Bad input").
//!
//! One table (`tests/adversary/table.rs`): each row a request and the one answer it must get.
//! Every row is sent to the same app built with axum (in process, `tower::oneshot`) and with
//! actix-web (`actix_web::test`), and each answer is checked: the expected status and error
//! code, never a 5xx, an RFC 6750 `WWW-Authenticate` challenge, a JSON body `{error, message}`,
//! no token echoed anywhere, and the same status, headers and body from both frameworks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod adversary;

use adversary::apps::{Answer, AppConfig, actix_app, axum_app};
use adversary::table::{Expect, Row, Trap, issuer_rows, rows};
use adversary::tokens::{self, NOW, ORG, SUB};
use tenant_guard::core::{Environment, Verifier};

/// Checks one framework's answer to `row`; returns a description of what is wrong.
fn check(row: &Row, framework: &str, answer: &Answer) -> Result<(), String> {
    let fail = |what: String| Err(format!("{framework}: {}: {what}", row.name));
    if answer.status >= 500 {
        return fail(format!("a 5xx: {answer:?}"));
    }
    for secret in &row.secrets {
        let needle = secret.as_bytes();
        let echoed = answer.body.windows(needle.len()).any(|w| w == needle)
            || answer
                .headers
                .iter()
                .any(|(_, v)| v.windows(needle.len()).any(|w| w == needle));
        if needle.len() >= 16 && echoed {
            return fail("the token is echoed in the response".into());
        }
    }
    match row.expect {
        Expect::Ok => {
            if answer.status != 200 {
                return fail(format!(
                    "expected 200, got {} {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                ));
            }
            let v = answer.json();
            if v["user_id"] != SUB || v["org_id"] != ORG || v["role"] != "authenticated" {
                return fail(format!("wrong principal {v}"));
            }
            if answer.header("www-authenticate").is_some() {
                return fail("a challenge on success".into());
            }
        }
        Expect::Refused(status, code) => {
            if answer.status != status {
                return fail(format!(
                    "expected {status} {code}, got {} {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                ));
            }
            if answer.header("content-type") != Some("application/json") {
                return fail(format!("content-type {:?}", answer.header("content-type")));
            }
            let got = answer.error_code();
            if got != code {
                return fail(format!("expected code {code}, got {got}"));
            }
            let Some(www) = answer.header("www-authenticate") else {
                return fail("no WWW-Authenticate".into());
            };
            let want = match (status, code) {
                (401, "missing_token") => "Bearer",
                (401, "malformed_authorization_header") => "error=\"invalid_request\"",
                (401, _) => "error=\"invalid_token\"",
                (403, _) => "error=\"insufficient_scope\"",
                _ => return fail(format!("unexpected status {status}")),
            };
            let ok = if want == "Bearer" {
                www == "Bearer"
            } else {
                www.starts_with("Bearer ") && www.contains(want)
            };
            if !ok {
                return fail(format!("WWW-Authenticate {www:?}, wanted {want}"));
            }
        }
    }
    Ok(())
}

#[actix_web::test]
async fn every_hostile_request_gets_its_answer_from_both_adapters() {
    let trap = Trap::new();
    let table = rows(&trap);
    assert!(table.len() > 130, "{} rows", table.len());
    let config = AppConfig::new(tokens::verifier());
    let mut failures = Vec::new();
    for row in &table {
        let axum = axum_app::send(&config, &row.req).await;
        let actix = actix_app::send(&config, &row.req).await;
        for (framework, answer) in [("axum", &axum), ("actix", &actix)] {
            if let Err(e) = check(row, framework, answer) {
                failures.push(e);
            }
        }
        if (axum.status, axum.comparable_headers(), &axum.body)
            != (actix.status, actix.comparable_headers(), &actix.body)
        {
            failures.push(format!(
                "{}: axum and actix differ:\n  axum  {} {:?} {}\n  actix {} {:?} {}",
                row.name,
                axum.status,
                axum.comparable_headers(),
                String::from_utf8_lossy(&axum.body),
                actix.status,
                actix.comparable_headers(),
                String::from_utf8_lossy(&actix.body)
            ));
        }
        for answer in [&axum, &actix] {
            assert!(
                answer.header("x-request-id").is_some(),
                "{}: no x-request-id",
                row.name
            );
        }
    }
    assert!(
        !trap.was_contacted(),
        "a jku/x5u URL from a token was fetched"
    );
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}

/// The 1 MB rows are refused by length alone, before anything is decoded: the same signed token
/// verifies once the limit allows it, and garbage of the same size gets the same answer as it.
#[test]
fn oversized_tokens_are_refused_before_decoding() {
    let mut big = tokens::claims();
    big["user_metadata"]["bio"] = serde_json::json!("b".repeat(1 << 20));
    let token = tokens::good(&big);
    let garbage = "!".repeat(token.len());
    let default = tokens::verifier();
    assert_eq!(
        default.verify(&token).unwrap_err().code(),
        "token_too_large"
    );
    assert_eq!(
        default.verify(&garbage).unwrap_err().code(),
        "token_too_large"
    );
    let roomy = Verifier::builder(Environment::Production)
        .hmac_secret(tokens::SECRET)
        .max_token_len(2 << 20)
        .clock(|| NOW)
        .build()
        .unwrap();
    assert_eq!(roomy.verify(&token).unwrap().user_id(), SUB);
    // Just over the default limit is already refused; at the limit the token is looked at.
    let limit = tenant_guard::core::verifier::DEFAULT_MAX_TOKEN_LEN;
    assert_eq!(
        default.verify(&"a".repeat(limit + 1)).unwrap_err().code(),
        "token_too_large"
    );
    assert_eq!(
        default.verify(&"a".repeat(limit)).unwrap_err().code(),
        "malformed_token"
    );
}

/// Issuer confusion through both adapters: two issuers behind one verifier, tokens routed by
/// `iss`; every row gets its one answer from axum and actix alike.
#[actix_web::test]
async fn issuer_confusion_gets_its_answer_from_both_adapters() {
    let trap = Trap::new();
    let table = issuer_rows(&trap);
    let config = AppConfig::new(tokens::two_issuer_verifier());
    let mut failures = Vec::new();
    for row in &table {
        let axum = axum_app::send(&config, &row.req).await;
        let actix = actix_app::send(&config, &row.req).await;
        for (framework, answer) in [("axum", &axum), ("actix", &actix)] {
            if let Err(e) = check(row, framework, answer) {
                failures.push(e);
            }
        }
        if (axum.status, &axum.body) != (actix.status, &actix.body) {
            failures.push(format!("{}: axum and actix differ", row.name));
        }
    }
    assert!(!trap.was_contacted(), "a jku URL from a token was fetched");
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}
