//! Hostile tokens and headers through both adapters (issue 7, "Bad input").
//!
//! One table (`tests/adversary/table.rs`): each row a request and the one answer it must get.
//! Every row is sent to the same app built with axum (in process, `tower::oneshot`) and with
//! actix-web (`actix_web::test`), and each answer is checked: the expected status and error
//! code, never a 5xx, an RFC 6750 `WWW-Authenticate` challenge, a JSON body `{error, message}`,
//! no token echoed anywhere, and the same status, headers and body from both frameworks.
//!
//! The org chosen per request (issue 14) has its own tables against a real PostgreSQL (the
//! membership lookup needs one): `org_header_rows` on a guard with `org_membership`,
//! `unchecked_org_header_rows` on one without (the header ignored, never trusted), and a
//! dedicated test of the membership cache after revocation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod adversary;

use std::time::Duration;

use adversary::apps::{Answer, AppConfig, Req, actix_app, axum_app};
use adversary::faults::{Env, Framework, LOGIN, assert_error};
use adversary::table::{
    Expect, Row, Trap, issuer_rows, org_header_rows, org_path_rows, rows, token_org_default_rows,
    unchecked_org_header_rows,
};
use adversary::tokens::{self, NOW, ORG, OTHER_ORG, SECOND_ORG, SUB, claims, good, with, without};
use serde_json::json;
use tenant_guard::core::{Environment, Role, Verifier};
use tenant_guard::http::{MembershipCache, OrgMembership, OrgPath, TokenOrg};
use tenant_guard_testkit::TestPostgres;
use uuid::Uuid;

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
        Expect::Ok | Expect::OkIn(_) | Expect::NotesOf(_) => {
            if answer.status != 200 {
                return fail(format!(
                    "expected 200, got {} {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                ));
            }
            let v = answer.json();
            match row.expect {
                Expect::NotesOf(org) => {
                    let notes = v.as_array().cloned().unwrap_or_default();
                    if notes.is_empty() || notes.iter().any(|n| n["org_id"] != org) {
                        return fail(format!("expected the notes of {org} only, got {v}"));
                    }
                }
                _ => {
                    let org = match row.expect {
                        Expect::OkIn(org) => org,
                        _ => ORG,
                    };
                    if v["user_id"] != SUB || v["org_id"] != org || v["role"] != "authenticated" {
                        return fail(format!("wrong principal {v} (expected org {org})"));
                    }
                }
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
                (400, _) => "error=\"invalid_request\"",
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

/// Sends every row through both adapters and checks each answer ([`check`]) and that both
/// frameworks answer alike; returns the failures.
async fn run_rows(table: &[Row], config: &AppConfig) -> Vec<String> {
    let mut failures = Vec::new();
    for row in table {
        let axum = axum_app::send(config, &row.req).await;
        let actix = actix_app::send(config, &row.req).await;
        for (framework, answer) in [("axum", &axum), ("actix", &actix)] {
            if let Err(e) = check(row, framework, answer) {
                failures.push(e);
            }
        }
        if (axum.status, axum.comparable_headers(), &axum.body)
            != (actix.status, actix.comparable_headers(), &actix.body)
        {
            failures.push(format!(
                "{}: axum and actix differ:\n  axum  {} {}\n  actix {} {}",
                row.name,
                axum.status,
                String::from_utf8_lossy(&axum.body),
                actix.status,
                String::from_utf8_lossy(&actix.body)
            ));
        }
    }
    failures
}

/// The dedicated lookup role of these tests: reads `memberships`, nothing else.
const READER: &str = "tg_hostile_membership_reader";

/// The membership table (user ids are text: `sub` need not be a UUID), readable by [`READER`]
/// only, with [`SUB`] a member of [`ORG`].
fn membership_schema() -> String {
    format!(
        "DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER}') THEN
                BEGIN
                    CREATE ROLE {READER} NOLOGIN;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                END;
            END IF;
        END $$;
        GRANT {READER} TO {LOGIN};
        CREATE TABLE memberships (
            user_id text NOT NULL,
            org_id uuid NOT NULL,
            role text NOT NULL,
            PRIMARY KEY (user_id, org_id)
        );
        GRANT SELECT ON memberships TO {READER};
        INSERT INTO memberships VALUES ('{SUB}', '{ORG}', 'authenticated');"
    )
}

fn membership(capacity: usize, ttl: Duration) -> OrgMembership {
    OrgMembership::from_header(
        http::HeaderName::from_static("x-org-id"),
        Role::new(READER).unwrap(),
    )
    .cache(capacity, ttl)
}

/// Header-selected orgs (issue 14) through both adapters against a real PostgreSQL: the rows of
/// `org_header_rows` on a guard with `org_membership` (no membership, malformed, overlong,
/// duplicated and non-UTF-8 `x-org-id`, the token's org against the header), the rows of
/// `unchecked_org_header_rows` on a guard without it, where the header is ignored, never trusted,
/// and the rows of `org_path_rows` on a guard reading the org from `/orgs/{org}`.
#[actix_web::test]
async fn header_selected_orgs_get_their_answer_from_both_adapters() {
    let env = Env::new(TestPostgres::shared().expect("test server"), 2, |b| b).await;
    env.admin
        .batch_execute(&membership_schema())
        .await
        .expect("schema");
    let mut checked = AppConfig::new(tokens::org_request_verifier()).pool(env.pool.clone());
    checked.shared_guard = Some(
        checked
            .guard()
            .org_membership(membership(100, Duration::from_secs(600))),
    );
    let unchecked = AppConfig::new(tokens::org_request_verifier()).pool(env.pool.clone());
    let mut by_path = AppConfig::new(tokens::org_request_verifier()).pool(env.pool.clone());
    by_path.shared_guard = Some(by_path.guard().org_membership(OrgMembership::from_path(
        OrgPath::new("/orgs/{org}").unwrap(),
        Role::new(READER).unwrap(),
    )));
    let (with_feature, without_feature, path) = (
        org_header_rows(),
        unchecked_org_header_rows(),
        org_path_rows(),
    );
    assert!(with_feature.len() > 25, "{} rows", with_feature.len());
    let mut failures = run_rows(&with_feature, &checked).await;
    failures.extend(run_rows(&without_feature, &unchecked).await);
    failures.extend(run_rows(&path, &by_path).await);
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        with_feature.len() + without_feature.len() + path.len(),
        failures.join("\n")
    );
    env.assert_pool_clean().await;
}

/// `TokenOrg::Default` (issue 14) through both adapters against a real PostgreSQL: the rows of
/// `token_org_default_rows`, where the token's org is only the default and a header naming
/// another org overrides it after the membership check ([`SUB`] is a member of [`ORG`] and
/// [`SECOND_ORG`]); one note planted per org shows which org the database scoped to.
#[actix_web::test]
async fn token_org_default_rows_get_their_answer_from_both_adapters() {
    let env = Env::new(TestPostgres::shared().expect("test server"), 2, |b| b).await;
    env.admin
        .batch_execute(&format!(
            "{}
            INSERT INTO memberships VALUES ('{SUB}', '{SECOND_ORG}', 'authenticated');
            INSERT INTO notes (org_id, body) VALUES
                ('{ORG}', 'note of the token org'),
                ('{SECOND_ORG}', 'note of the second member org'),
                ('{OTHER_ORG}', 'note of a non-member org');",
            membership_schema()
        ))
        .await
        .expect("schema");
    let mut config = AppConfig::new(tokens::org_request_verifier()).pool(env.pool.clone());
    config.shared_guard =
        Some(config.guard().org_membership(
            membership(100, Duration::from_secs(600)).token_org(TokenOrg::Default),
        ));
    let table = token_org_default_rows();
    assert!(table.len() > 25, "{} rows", table.len());
    let failures = run_rows(&table, &config).await;
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
    env.assert_pool_clean().await;
}

/// The membership cache after a revocation (issue 14), through both adapters: a cached answer
/// is bounded by its TTL and dropped by every invalidation; a negative answer is cached too (a
/// new member waits for the TTL or an invalidation); an answer is only ever reused for its own
/// (user, org); with capacity 0 a revocation counts at once.
#[actix_web::test]
async fn the_membership_cache_after_revocation() {
    let server = TestPostgres::shared().expect("test server");
    let org = Uuid::parse_str(ORG).unwrap();
    let no_org = good(&without(claims(), "org_id"));
    let stranger = good(&with(without(claims(), "org_id"), "sub", json!("stranger")));
    let me = |token: &str, org: &str| Req::get("/me").bearer(token).header("x-org-id", org);
    for fw in Framework::BOTH {
        let env = Env::new(server, 2, |b| b).await;
        env.admin
            .batch_execute(&membership_schema())
            .await
            .expect("schema");
        let revoke = || async {
            env.admin
                .batch_execute("DELETE FROM memberships")
                .await
                .expect("revoke");
        };
        let grant = || async {
            env.admin
                .batch_execute(&format!(
                    "INSERT INTO memberships VALUES ('{SUB}', '{ORG}', 'authenticated')"
                ))
                .await
                .expect("grant");
        };
        let config = |membership: OrgMembership| {
            let mut config = AppConfig::new(tokens::org_request_verifier()).pool(env.pool.clone());
            config.shared_guard = Some(config.guard().org_membership(membership));
            config
        };
        let send = |config: &AppConfig, req: Req| {
            let config = config.clone();
            async move { fw.send(&config, &req).await }
        };
        let ok = |answer: &Answer, what: &str| {
            assert_eq!(answer.status, 200, "{fw:?}: {what}: {answer:?}");
            assert_eq!(answer.json()["org_id"], ORG, "{fw:?}: {what}");
        };

        let long = membership(100, Duration::from_secs(600));
        let cache: MembershipCache = long.cache_handle();
        let app = config(long);
        ok(&send(&app, me(&no_org, ORG)).await, "member");
        // The cache answers for its own (user, org) only.
        let a = send(&app, me(&stranger, ORG)).await;
        assert_error(fw, &a, 403, "not_a_member");
        let a = send(&app, me(&no_org, OTHER_ORG)).await;
        assert_error(fw, &a, 403, "not_a_member");

        // Revoked: the cached answer holds (at most its TTL) until invalidated, then 403.
        revoke().await;
        ok(&send(&app, me(&no_org, ORG)).await, "revoked, cached");
        cache.invalidate(SUB, org);
        let a = send(&app, me(&no_org, ORG)).await;
        assert_error(fw, &a, 403, "not_a_member");
        // The refusal is cached as well: granted again, it holds until invalidated.
        grant().await;
        let a = send(&app, me(&no_org, ORG)).await;
        assert_error(fw, &a, 403, "not_a_member");
        cache.invalidate_user(SUB);
        ok(&send(&app, me(&no_org, ORG)).await, "granted, invalidated");
        // invalidate_org and clear drop the answer too.
        revoke().await;
        cache.invalidate_org(org);
        let a = send(&app, me(&no_org, ORG)).await;
        assert_error(fw, &a, 403, "not_a_member");
        grant().await;
        cache.clear();
        ok(&send(&app, me(&no_org, ORG)).await, "granted, cleared");

        // A short TTL: the revocation counts once the answer expires, without invalidation.
        let app = config(membership(100, Duration::from_millis(300)));
        ok(&send(&app, me(&no_org, ORG)).await, "member (short TTL)");
        revoke().await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let a = send(&app, me(&no_org, ORG)).await;
        assert_error(fw, &a, 403, "not_a_member");

        // Capacity 0: nothing cached, every request asks the database.
        grant().await;
        let app = config(membership(0, Duration::from_secs(600)));
        ok(&send(&app, me(&no_org, ORG)).await, "member (no cache)");
        revoke().await;
        let a = send(&app, me(&no_org, ORG)).await;
        assert_error(fw, &a, 403, "not_a_member");
        env.assert_pool_clean().await;
    }
}
