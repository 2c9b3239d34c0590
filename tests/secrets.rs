//! No token, secret or non-id claim value in any log line at any level, nor in the `Debug` output
//! of configuration and key types (issue 7, "Secrets").
//!
//! One test (a process-wide subscriber can be installed once): every `tracing` event and span at
//! TRACE, plus every `log` record of the dependencies (tokio-postgres, deadpool; bridged by
//! tracing-subscriber's `LogTracer`), is formatted into a buffer while the whole hostile-input
//! table runs through both adapters and every fault scenario runs against PostgreSQL. The buffer
//! is then scanned for every token used, the HMAC secrets, and the claim values that are not ids
//! (email, name, phone).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod adversary;

use std::io;
use std::sync::{Arc, Mutex};

use adversary::apps::{AppConfig, actix_app, axum_app};
use adversary::faults::{self, Framework};
use adversary::table::{Trap, issuer_rows, rows};
use adversary::tokens::{self, ATTACKER_SECRET, EMAIL, FULL_NAME, PHONE, SECRET};
use tenant_guard::core::{AuthError, Environment, KeySet, RateLimiter, ServiceContext, Verifier};
use tenant_guard::postgres::TenantPool;
use tracing_subscriber::fmt::MakeWriter;

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

/// What must never be printed: the secrets, the non-id claim values, and token material.
/// Every token here has a header starting with `{"`, i.e. base64url `eyJ`: no log line needs
/// those three characters, so their absence rules out any token or token segment, whatever its
/// claims.
fn forbidden(extra: &[String]) -> Vec<String> {
    let mut needles = vec![
        SECRET.to_owned(),
        ATTACKER_SECRET.to_owned(),
        EMAIL.to_owned(),
        FULL_NAME.to_owned(),
        PHONE.to_owned(),
        "eyJ".to_owned(),
        "Bearer ey".to_owned(),
    ];
    needles.extend(extra.iter().filter(|s| s.len() >= 16).cloned());
    needles
}

fn scan(what: &str, text: &str, needles: &[String]) -> Vec<String> {
    needles
        .iter()
        .filter(|needle| text.contains(needle.as_str()))
        .map(|needle| {
            let at = text.find(needle.as_str()).unwrap_or(0);
            let start = text[..at]
                .rfind('\n')
                .map_or(0, |i| i + 1)
                .max(at.saturating_sub(300));
            let end = (at + needle.len() + 200).min(text.len());
            let excerpt: String = text
                .get(start..end)
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control() || *c == ' ')
                .collect();
            format!(
                "{what} contains {:?}: …{excerpt}…",
                &needle[..needle.len().min(40)]
            )
        })
        .collect()
}

/// The `Debug` output of every configuration and key type, built with the secrets above.
fn debug_outputs() -> Vec<(&'static str, String)> {
    let verifier = tokens::verifier();
    let builder = Verifier::builder(Environment::Production)
        .hmac_secret(SECRET)
        .public_key_pem(tokens::fixture("rsa1_public.pem"));
    let mut keys = KeySet::new();
    keys.add_hmac_secret(SECRET.as_bytes(), Some("k1"))
        .expect("hmac key");
    let principal = verifier
        .verify(&tokens::good(&tokens::claims()))
        .expect("principal");
    let url = format!("postgres://app_login:{SECRET}@127.0.0.1:1/app");
    let pool_builder = TenantPool::builder_from_url(&url).expect("url");
    let pool_builder_debug = format!("{pool_builder:?}");
    let pool = pool_builder.build().expect("pool (connects lazily)");
    let axum_layer = tenant_guard::axum::TenantGuardLayer::new(verifier.clone())
        .pool(pool.clone())
        .rate_limit(RateLimiter::per_minute(60).expect("limiter"));
    let actix_guard = tenant_guard::actix::TenantGuard::new(verifier.clone()).pool(pool.clone());
    let remote = tenant_guard::core::remote::RemoteJwks::new(format!(
        "https://jwks:{SECRET}@issuer.example/.well-known/jwks.json"
    ));
    let issuer = tenant_guard_testkit::TestIssuer::new();
    let issuer_secret = String::from_utf8_lossy(issuer.secret()).into_owned();
    let mut out = vec![
        ("Verifier", format!("{verifier:?}")),
        (
            "Verifier (two issuers)",
            format!("{:?}", tokens::two_issuer_verifier()),
        ),
        (
            "IssuerProfile",
            format!(
                "{:?}",
                tenant_guard::core::IssuerProfile::new("https://partner.example.com/")
                    .hmac_secret(tokens::PARTNER_SECRET)
            ),
        ),
        ("VerifierBuilder", format!("{builder:?}")),
        ("KeySet", format!("{keys:?}")),
        ("Principal", format!("{principal:?}")),
        ("TenantPoolBuilder", pool_builder_debug),
        ("TenantPool", format!("{pool:?}")),
        ("axum TenantGuardLayer", format!("{axum_layer:?}")),
        ("actix TenantGuard", format!("{actix_guard:?}")),
        ("RemoteJwks", format!("{remote:?}")),
        ("TestIssuer", format!("{issuer:?}")),
        (
            "ServiceContext",
            format!("{:?}", ServiceContext::new("nightly").with_job_id("j-1")),
        ),
        ("AuthError", format!("{:?}", AuthError::InvalidSignature)),
    ];
    // The issuer's random secret must not show either.
    out.retain(|(_, text)| !text.is_empty());
    for (name, text) in &out {
        assert!(
            !text.contains(&issuer_secret) || issuer_secret.len() < 8,
            "{name}"
        );
    }
    out
}

#[test]
fn no_secret_in_any_log_line_or_debug_output() {
    let buffer = Buffer::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(buffer.clone())
        .try_init()
        .expect("the only subscriber of this process");

    let trap = Trap::new();
    let table = rows(&trap);
    let issuer_table = issuer_rows(&trap);
    let mut row_secrets: Vec<String> = table
        .iter()
        .chain(&issuer_table)
        .flat_map(|r| r.secrets.clone())
        .collect();
    row_secrets.push(tokens::PARTNER_SECRET.to_owned());
    actix_web::rt::System::new().block_on(async {
        let config = AppConfig::new(tokens::verifier());
        for row in &table {
            axum_app::send(&config, &row.req).await;
            actix_app::send(&config, &row.req).await;
        }
        let two_issuers = AppConfig::new(tokens::two_issuer_verifier());
        for row in &issuer_table {
            axum_app::send(&two_issuers, &row.req).await;
            actix_app::send(&two_issuers, &row.req).await;
        }
        for fw in Framework::BOTH {
            faults::commit_and_rollback(fw).await;
            faults::panic_in_handler(fw).await;
            faults::client_disconnect(fw).await;
            faults::handler_timeout(fw).await;
            faults::statement_timeout(fw).await;
            faults::pool_exhaustion(fw).await;
            faults::terminated_backend(fw).await;
            faults::accepted_hostile_tokens_reach_the_database(fw).await;
        }
        faults::restart_under_load().await;
    });

    let debug = debug_outputs();
    row_secrets.push(format!("app_login:{SECRET}"));
    let needles = forbidden(&row_secrets);
    let log = String::from_utf8_lossy(&buffer.0.lock().expect("buffer")).into_owned();

    // The capture is real: every level, our events and the dependencies' log records.
    for expected in [
        " TRACE ",
        " DEBUG ",
        " INFO ",
        " WARN ",
        "request rejected",
        "executing statement",
        "tenant_guard::audit",
        // The claims parameter of the scoping statement is in the driver's log, redacted.
        "<redacted>",
    ] {
        assert!(
            log.contains(expected),
            "the capture misses {expected:?} ({} bytes)",
            log.len()
        );
    }

    let mut leaks = scan("the log", &log, &needles);
    for (name, text) in &debug {
        leaks.extend(scan(&format!("Debug of {name}"), text, &needles));
    }
    assert!(
        leaks.is_empty(),
        "{} leak(s) in {} bytes of log:\n{}",
        leaks.len(),
        log.len(),
        leaks.join("\n")
    );
    eprintln!(
        "scanned {} bytes of TRACE log and {} Debug outputs for {} secrets: clean",
        log.len(),
        debug.len(),
        needles.len()
    );
}
