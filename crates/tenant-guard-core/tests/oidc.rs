//! OIDC discovery against a local HTTP server on 127.0.0.1 (so in development: outside it only
//! https is fetched): the discovery document leads to the JWKS, the issuer must match exactly,
//! rotation through the remote-JWKS refresh, discovery down at startup and at runtime, several
//! OIDC issuers side by side.
#![cfg(feature = "jwks-remote")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::Algorithm as J;
use serde_json::{Value, json};
use tenant_guard_core::remote::RemoteJwks;
use tenant_guard_core::{AuthError, Environment, IssuerProfile, Verifier, VerifierBuilder};

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: String,
    body: String,
}

fn json_reply(body: String) -> Reply {
    Reply {
        status: 200,
        headers: "Content-Type: application/json\r\nCache-Control: max-age=3600\r\n".into(),
        body,
    }
}

/// Serves a path → reply table (404 for anything else); `down` answers 503 to everything.
struct Idp {
    base: String,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    down: Arc<Mutex<bool>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
}

impl Idp {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let down = Arc::new(Mutex::new(false));
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let total = Arc::new(AtomicUsize::new(0));
        let (r, d, h, t) = (routes.clone(), down.clone(), hits.clone(), total.clone());
        // The thread ends with the test process; it only ever serves 127.0.0.1.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let path = request.split(' ').nth(1).unwrap_or("").to_owned();
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                t.fetch_add(1, Ordering::SeqCst);
                *h.lock().unwrap().entry(path.clone()).or_default() += 1;
                let reply = if *d.lock().unwrap() {
                    Reply {
                        status: 503,
                        headers: String::new(),
                        body: "down".into(),
                    }
                } else {
                    r.lock().unwrap().get(&path).cloned().unwrap_or(Reply {
                        status: 404,
                        headers: String::new(),
                        body: "not found".into(),
                    })
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {} X\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                    reply.status,
                    reply.headers,
                    reply.body.len(),
                    reply.body
                );
            }
        });
        Self {
            base,
            routes,
            down,
            hits,
            total,
        }
    }

    /// A Keycloak-style realm: its issuer, discovery document and JWKS with `kids`.
    fn realm(&self, name: &str, kids: &[&str]) -> String {
        let issuer = format!("{}/realms/{name}", self.base);
        let certs = format!("/realms/{name}/protocol/openid-connect/certs");
        self.set_document(name, &issuer);
        self.route(&certs, json_reply(jwks_with(kids)));
        issuer
    }

    fn set_document(&self, realm: &str, issuer_in_document: &str) {
        let doc = json!({
            "issuer": issuer_in_document,
            "authorization_endpoint": format!("{issuer_in_document}/protocol/openid-connect/auth"),
            "token_endpoint": format!("{issuer_in_document}/protocol/openid-connect/token"),
            "jwks_uri": format!("{}/realms/{realm}/protocol/openid-connect/certs", self.base),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        });
        self.route(
            &format!("/realms/{realm}/.well-known/openid-configuration"),
            json_reply(doc.to_string()),
        );
    }

    fn set_keys(&self, realm: &str, kids: &[&str]) {
        self.route(
            &format!("/realms/{realm}/protocol/openid-connect/certs"),
            json_reply(jwks_with(kids)),
        );
    }

    fn route(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_owned(), reply);
    }

    fn set_down(&self, down: bool) {
        *self.down.lock().unwrap() = down;
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// A JWKS with only the listed kids of the fixture set.
fn jwks_with(kids: &[&str]) -> String {
    let all: Value = serde_json::from_str(&jwks()).unwrap();
    let keys: Vec<_> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| kids.contains(&k["kid"].as_str().unwrap()))
        .cloned()
        .collect();
    json!({ "keys": keys }).to_string()
}

fn claims_for(issuer: &str) -> Value {
    with(claims(), "iss", json!(issuer))
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn dev() -> VerifierBuilder {
    Verifier::builder(Environment::Development).clock(|| NOW)
}

#[test]
fn discovery_leads_to_the_jwks_and_pins_the_issuer() {
    let idp = Idp::start();
    let issuer = idp.realm("acme", &["ec-1"]);
    let v = dev().oidc_issuer(&issuer).build().unwrap();
    assert_eq!(v.issuers().collect::<Vec<_>>(), [issuer.as_str()]);
    assert_eq!(idp.hits("/realms/acme/.well-known/openid-configuration"), 1);
    assert_eq!(idp.hits("/realms/acme/protocol/openid-connect/certs"), 1);
    let token = mint(J::ES256, Signer::Ec256, Some("ec-1"), &claims_for(&issuer));
    assert_eq!(v.verify(&token).unwrap().org_id().to_string(), ORG);
    // The token's iss must be the discovered issuer exactly.
    for other in [format!("{issuer}/"), format!("{}/realms/other", idp.base)] {
        let token = mint(J::ES256, Signer::Ec256, Some("ec-1"), &claims_for(&other));
        assert_eq!(
            v.verify(&token).unwrap_err(),
            AuthError::WrongIssuer,
            "{other}"
        );
    }
    // A trailing slash on the configured issuer is kept for `iss` but not doubled in the URL.
    idp.set_document("slash", &format!("{}/realms/slash/", idp.base));
    idp.set_keys("slash", &["ec-1"]);
    let slash = format!("{}/realms/slash/", idp.base);
    let v = dev().oidc_issuer(&slash).build().unwrap();
    let token = mint(J::ES256, Signer::Ec256, Some("ec-1"), &claims_for(&slash));
    assert!(v.verify(&token).is_ok());
}

#[test]
fn an_issuer_mismatch_is_a_build_error_naming_the_url() {
    let idp = Idp::start();
    let issuer = idp.realm("acme", &["ec-1"]);
    for wrong in [
        format!("{issuer}/"),
        issuer.to_uppercase(),
        "https://evil.example/realms/acme".to_owned(),
    ] {
        idp.set_document("acme", &wrong);
        let err = dev().oidc_issuer(&issuer).build().unwrap_err();
        let text = err.to_string();
        assert!(err.is_config_error(), "{text}");
        assert!(
            text.contains(&format!("{issuer}/.well-known/openid-configuration")),
            "{text}"
        );
        assert!(text.contains("not exactly the configured one"), "{text}");
    }
    assert_eq!(idp.hits("/realms/acme/protocol/openid-connect/certs"), 0);
}

#[test]
fn discovery_down_at_startup_is_a_build_error_naming_the_url() {
    let idp = Idp::start();
    let issuer = idp.realm("acme", &["ec-1"]);
    idp.set_down(true);
    let err = dev().oidc_issuer(&issuer).build().unwrap_err();
    assert!(
        err.to_string()
            .contains("/.well-known/openid-configuration"),
        "{err}"
    );
    idp.set_down(false);
    // A document that is not one, a missing jwks_uri, a non-http jwks_uri, an unreachable host.
    for body in [
        "not json".to_owned(),
        json!({"issuer": issuer}).to_string(),
        json!({"issuer": issuer, "jwks_uri": "file:///etc/passwd"}).to_string(),
        json!({"issuer": issuer, "jwks_uri": 7}).to_string(),
    ] {
        idp.route(
            "/realms/acme/.well-known/openid-configuration",
            json_reply(body.clone()),
        );
        let err = dev().oidc_issuer(&issuer).build().unwrap_err();
        assert!(err.is_config_error(), "{body}: {err}");
    }
    let err = dev()
        .oidc_issuer("http://127.0.0.1:9/realms/nothing-listens")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
}

#[test]
fn outside_development_only_https_is_fetched() {
    let idp = Idp::start();
    let issuer = idp.realm("acme", &["ec-1"]);
    for env in [Environment::Production, Environment::Test] {
        let err = Verifier::builder(env)
            .oidc_issuer(&issuer)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
    }
    assert_eq!(idp.total.load(Ordering::SeqCst), 0, "nothing was fetched");
}

#[test]
fn rotation_reaches_the_verifier_through_the_remote_jwks() {
    let idp = Idp::start();
    let issuer = idp.realm("acme", &["ec-1"]);
    let v = dev()
        .remote_jwks(RemoteJwks::oidc(&issuer).unknown_kid_cooldown(Duration::ZERO))
        .build()
        .unwrap();
    let old = mint(J::ES256, Signer::Ec256, Some("ec-1"), &claims_for(&issuer));
    let new = mint(J::EdDSA, Signer::Ed, Some("ed-1"), &claims_for(&issuer));
    assert!(v.verify(&old).is_ok());
    idp.set_keys("acme", &["ed-1"]);
    // The unknown kid is refused at once and triggers the refetch of the discovered jwks_uri.
    eventually("the rotated key is fetched", || v.verify(&new).is_ok());
    assert_eq!(v.verify(&old).unwrap_err(), AuthError::UnknownKeyId);
    // Discovery itself ran once: rotation goes to the jwks_uri only.
    assert_eq!(idp.hits("/realms/acme/.well-known/openid-configuration"), 1);
}

#[test]
fn discovery_down_at_runtime_keeps_the_last_good_keys() {
    let idp = Idp::start();
    let issuer = idp.realm("acme", &["ec-1"]);
    let v = dev().oidc_issuer(&issuer).build().unwrap();
    let token = mint(J::ES256, Signer::Ec256, Some("ec-1"), &claims_for(&issuer));
    assert!(v.verify(&token).is_ok());
    idp.set_down(true);
    let err = v.refresh_jwks().unwrap_err();
    assert!(
        err.to_string().contains("/protocol/openid-connect/certs"),
        "{err}"
    );
    assert!(v.verify(&token).is_ok(), "stale keys still verify");
    let unknown = mint(J::EdDSA, Signer::Ed, Some("ed-1"), &claims_for(&issuer));
    assert_eq!(v.verify(&unknown).unwrap_err(), AuthError::UnknownKeyId);
    idp.set_down(false);
    idp.set_keys("acme", &["ec-1", "ed-1"]);
    v.refresh_jwks().unwrap();
    assert!(v.verify(&unknown).is_ok());
    assert!(v.verify(&token).is_ok());
}

#[test]
fn several_oidc_issuers_never_share_keys() {
    let idp = Idp::start();
    let acme = idp.realm("acme", &["ec-1"]);
    let partner = idp.realm("partner", &["ed-1"]);
    let v = dev()
        .oidc_issuer(&acme)
        .add_issuer(IssuerProfile::oidc(&partner).audience("partner-api"))
        .build()
        .unwrap();
    let acme_token = mint(J::ES256, Signer::Ec256, Some("ec-1"), &claims_for(&acme));
    let partner_claims = with(claims_for(&partner), "aud", json!("partner-api"));
    let partner_token = mint(J::EdDSA, Signer::Ed, Some("ed-1"), &partner_claims);
    assert!(v.verify(&acme_token).is_ok());
    assert!(v.verify(&partner_token).is_ok());
    // acme's key on a token claiming partner, and the reverse: that issuer has no such key.
    let forged = mint(J::ES256, Signer::Ec256, Some("ec-1"), &partner_claims);
    assert_eq!(v.verify(&forged).unwrap_err(), AuthError::UnknownKeyId);
    let forged = mint(J::EdDSA, Signer::Ed, Some("ed-1"), &claims_for(&acme));
    assert_eq!(v.verify(&forged).unwrap_err(), AuthError::UnknownKeyId);
    // Even without a kid, only the claimed issuer's keys are tried.
    let forged = mint(J::ES256, Signer::Ec256, None, &partner_claims);
    assert_eq!(
        v.verify(&forged).unwrap_err(),
        AuthError::DisallowedAlgorithm
    );
}

#[test]
fn the_issuer_from_the_environment() {
    let idp = Idp::start();
    let issuer = idp.realm("acme", &["ed-1"]);
    let vars = HashMap::from([
        ("APP_ENV", "development".to_owned()),
        ("JWT_OIDC_ISSUER", issuer.clone()),
        ("JWT_AUDIENCE", "authenticated".to_owned()),
    ]);
    let builder = VerifierBuilder::from_lookup(|k| vars.get(k).cloned()).unwrap();
    assert!(builder.has_key_source());
    let v = builder.clock(|| NOW).build().unwrap();
    let token = mint(J::EdDSA, Signer::Ed, Some("ed-1"), &claims_for(&issuer));
    assert!(v.verify(&token).is_ok());
    // JWT_ISSUER may repeat it but never contradict it; JWT_JWKS_URL cannot sit beside it.
    let mut vars = vars;
    vars.insert("JWT_ISSUER", "https://other.example/".to_owned());
    let err = VerifierBuilder::from_lookup(|k| vars.get(k).cloned()).unwrap_err();
    assert!(err.to_string().contains("differ"), "{err}");
    vars.insert("JWT_ISSUER", issuer.clone());
    assert!(VerifierBuilder::from_lookup(|k| vars.get(k).cloned()).is_ok());
    vars.insert("JWT_JWKS_URL", format!("{}/jwks.json", idp.base));
    assert!(VerifierBuilder::from_lookup(|k| vars.get(k).cloned()).is_err());
    // In JWT_ISSUERS: "oidc": true.
    let vars = HashMap::from([
        ("APP_ENV", "development".to_owned()),
        (
            "JWT_ISSUERS",
            json!([{"issuer": issuer, "oidc": true}]).to_string(),
        ),
    ]);
    let v = VerifierBuilder::from_lookup(|k| vars.get(k).cloned())
        .unwrap()
        .clock(|| NOW)
        .build()
        .unwrap();
    assert!(v.verify(&token).is_ok());
}

#[test]
fn redirects_are_followed_a_few_times_only() {
    let idp = Idp::start();
    let issuer = idp.realm("acme", &["ec-1"]);
    let moved = |to: &str| Reply {
        status: 302,
        headers: format!("Location: {to}\r\n"),
        body: String::new(),
    };
    let doc = idp
        .routes
        .lock()
        .unwrap()
        .get("/realms/acme/.well-known/openid-configuration")
        .cloned()
        .unwrap();
    idp.route("/moved/openid-configuration", doc);
    idp.route(
        "/realms/acme/.well-known/openid-configuration",
        moved("/moved/openid-configuration"),
    );
    assert!(dev().oidc_issuer(&issuer).build().is_ok());
    // A loop is cut off (and reported), not followed forever.
    idp.route(
        "/realms/acme/.well-known/openid-configuration",
        moved("/realms/acme/.well-known/openid-configuration"),
    );
    let before = idp.total.load(Ordering::SeqCst);
    assert!(dev().oidc_issuer(&issuer).build().is_err());
    assert!(idp.total.load(Ordering::SeqCst) - before <= 4);
}
