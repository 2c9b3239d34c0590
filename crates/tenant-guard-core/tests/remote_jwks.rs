//! Remote JWKS against a local HTTP server on 127.0.0.1: initial fetch, unknown-`kid` refetch at
//! most once per cooldown, last good set kept on failure, `Cache-Control` honoured.
#![cfg(feature = "jwks-remote")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::Algorithm as J;
use tenant_guard_core::remote::RemoteJwks;
use tenant_guard_core::{AuthError, Environment, Verifier};

/// What the server answers: status, Cache-Control, body.
#[derive(Clone)]
struct Reply {
    status: u16,
    cache_control: Option<&'static str>,
    body: String,
}

struct Server {
    url: String,
    reply: Arc<Mutex<Reply>>,
    hits: Arc<AtomicUsize>,
}

impl Server {
    fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/auth/v1/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let reply = Arc::new(Mutex::new(reply));
        let hits = Arc::new(AtomicUsize::new(0));
        let (r, h) = (reply.clone(), hits.clone());
        // The thread ends with the test process; it only ever serves 127.0.0.1.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                h.fetch_add(1, Ordering::SeqCst);
                let reply = r.lock().unwrap().clone();
                let cc = reply
                    .cache_control
                    .map(|v| format!("Cache-Control: {v}\r\n"))
                    .unwrap_or_default();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {} X\r\nContent-Type: application/json\r\n{cc}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                    reply.status,
                    reply.body.len(),
                    reply.body
                );
            }
        });
        Self { url, reply, hits }
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A JWKS with only the keys whose kid is listed (from the fixture set).
fn jwks_with(kids: &[&str]) -> String {
    let all: serde_json::Value = serde_json::from_str(&jwks()).unwrap();
    let keys: Vec<_> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| kids.contains(&k["kid"].as_str().unwrap()))
        .cloned()
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

fn ok(kids: &[&str]) -> Reply {
    Reply {
        status: 200,
        cache_control: Some("public, max-age=3600"),
        body: jwks_with(kids),
    }
}

fn verifier(remote: RemoteJwks) -> Verifier {
    Verifier::builder(Environment::Production)
        .remote_jwks(remote)
        .clock(|| NOW)
        .build()
        .unwrap()
}

/// Polls `f` until it holds (the refresh runs on another thread); fails after a generous deadline.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn initial_fetch_and_kid_selection() {
    let server = Server::start(ok(&["ec-1", "ed-1"]));
    let v = verifier(RemoteJwks::new(&server.url));
    assert_eq!(server.hits(), 1);
    assert!(
        v.verify(&mint(J::ES256, Signer::Ec256, Some("ec-1"), &claims()))
            .is_ok()
    );
    assert!(
        v.verify(&mint(J::EdDSA, Signer::Ed, Some("ed-1"), &claims()))
            .is_ok()
    );
    assert_eq!(
        v.verify(&mint(J::RS256, Signer::Rsa1, Some("rsa-1"), &claims()))
            .unwrap_err(),
        AuthError::UnknownKeyId
    );
}

#[test]
fn build_fails_when_the_first_fetch_fails() {
    let server = Server::start(Reply {
        status: 500,
        cache_control: None,
        body: "oops".into(),
    });
    let err = Verifier::builder(Environment::Production)
        .jwks_url(&server.url)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("JWKS"), "{err}");
    server.set(Reply {
        status: 200,
        cache_control: None,
        body: "{\"keys\": []}".into(),
    });
    assert!(
        Verifier::builder(Environment::Production)
            .jwks_url(&server.url)
            .build()
            .is_err()
    );
    let err = Verifier::builder(Environment::Production)
        .jwks_url("http://127.0.0.1:9/nothing-listens-here")
        .build()
        .unwrap_err();
    assert!(err.is_config_error());
}

#[test]
fn unknown_kid_refetches_at_most_once_per_cooldown() {
    let server = Server::start(ok(&["ec-1"]));
    let v = verifier(RemoteJwks::new(&server.url).unknown_kid_cooldown(Duration::from_secs(3600)));
    assert_eq!(server.hits(), 1);
    // A flood of tokens naming an unknown kid: each is refused at once...
    let unknown = mint(J::ES256, Signer::Ec256, Some("nope"), &claims());
    for _ in 0..200 {
        assert_eq!(v.verify(&unknown).unwrap_err(), AuthError::UnknownKeyId);
    }
    // ...and together they cause exactly one refetch within the cooldown.
    eventually("one refetch", || server.hits() == 2);
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..200 {
        assert_eq!(v.verify(&unknown).unwrap_err(), AuthError::UnknownKeyId);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.hits(), 2);
}

#[test]
fn unknown_kid_picks_up_a_rotated_key() {
    let server = Server::start(ok(&["ec-1"]));
    let v = verifier(RemoteJwks::new(&server.url).unknown_kid_cooldown(Duration::ZERO));
    let rotated = mint(J::EdDSA, Signer::Ed, Some("ed-1"), &claims());
    let old = mint(J::ES256, Signer::Ec256, Some("ec-1"), &claims());
    assert!(v.verify(&old).is_ok());
    assert_eq!(v.cached_tokens(), 1);
    server.set(ok(&["ed-1"]));
    eventually("the rotated key is fetched", || v.verify(&rotated).is_ok());
    // The old key is gone, and so is its cached token.
    assert_eq!(v.verify(&old).unwrap_err(), AuthError::UnknownKeyId);
}

#[test]
fn a_failed_refresh_keeps_the_last_good_set() {
    let server = Server::start(ok(&["ec-1"]));
    let v = verifier(RemoteJwks::new(&server.url));
    let token = mint(J::ES256, Signer::Ec256, Some("ec-1"), &claims());
    assert!(v.verify(&token).is_ok());
    for bad in [
        Reply {
            status: 503,
            cache_control: None,
            body: "down".into(),
        },
        Reply {
            status: 200,
            cache_control: None,
            body: "not json".into(),
        },
        Reply {
            status: 200,
            cache_control: None,
            body: "{\"keys\":[]}".into(),
        },
        Reply {
            status: 200,
            cache_control: None,
            body: jwks_with(&[]).replace("[]", "[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]"),
        },
    ] {
        server.set(bad);
        assert!(v.refresh_jwks().is_err());
        assert!(v.verify(&token).is_ok(), "the last good set still verifies");
    }
    // A good refresh with the same body changes nothing (the cache survives).
    server.set(ok(&["ec-1"]));
    assert!(v.refresh_jwks().is_ok());
    assert_eq!(v.cached_tokens(), 1);
}

#[test]
fn local_keys_stay_beside_the_remote_set() {
    let server = Server::start(ok(&["ec-1"]));
    let v = Verifier::builder(Environment::Production)
        .hmac_secret(SECRET)
        .jwks_url(&server.url)
        .clock(|| NOW)
        .build()
        .unwrap();
    assert!(v.verify(&hs256(&claims())).is_ok());
    server.set(ok(&["ed-1"]));
    v.refresh_jwks().unwrap();
    assert!(v.verify(&hs256(&claims())).is_ok());
    assert!(
        v.verify(&mint(J::EdDSA, Signer::Ed, Some("ed-1"), &claims()))
            .is_ok()
    );
    // Replacing the local keys keeps the remote ones.
    let mut local = tenant_guard_core::KeySet::new();
    local
        .add_pem(&fixture("rsa1_public.pem"), Some("pem"))
        .unwrap();
    v.set_keys(local).unwrap();
    assert_eq!(
        v.verify(&hs256(&claims())).unwrap_err(),
        AuthError::DisallowedAlgorithm
    );
    assert!(
        v.verify(&mint(J::EdDSA, Signer::Ed, Some("ed-1"), &claims()))
            .is_ok()
    );
    assert!(
        v.verify(&mint(J::RS256, Signer::Rsa1, Some("pem"), &claims()))
            .is_ok()
    );
}

#[test]
fn url_from_the_environment() {
    let server = Server::start(ok(&["ed-1"]));
    let url = server.url.clone();
    let v = tenant_guard_core::VerifierBuilder::from_lookup(move |k| {
        (k == "JWT_JWKS_URL").then(|| url.clone())
    })
    .unwrap()
    .clock(|| NOW)
    .build()
    .unwrap();
    assert!(
        v.verify(&mint(J::EdDSA, Signer::Ed, Some("ed-1"), &claims()))
            .is_ok()
    );
}

/// A JWKS body: the fixture keys whose kid is listed, plus `extra` keys as given.
fn jwks_plus(kids: &[&str], extra: &[serde_json::Value]) -> Reply {
    let mut set: serde_json::Value = serde_json::from_str(&jwks_with(kids)).unwrap();
    set["keys"]
        .as_array_mut()
        .unwrap()
        .extend(extra.iter().cloned());
    Reply {
        status: 200,
        cache_control: Some("public, max-age=3600"),
        body: set.to_string(),
    }
}

/// An RSA key far under the minimum size (and a malformed one): unusable.
fn unusable_keys() -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({"kty": "RSA", "kid": "rsa-tiny", "alg": "RS256", "n": "AQAB", "e": "AQAB"}),
        serde_json::json!({"kty": "EC", "kid": "ec-broken", "crv": "P-256", "x": "!!", "y": 7}),
    ]
}

/// Issue 17: one unusable key in a rotated set is skipped (and logged), not a reason to refuse the
/// whole set: the good keys are used, at build and on every refresh.
#[test]
fn an_unusable_key_in_the_set_is_skipped_not_fatal() {
    let server = Server::start(jwks_plus(&["ec-1"], &unusable_keys()));
    let v = verifier(RemoteJwks::new(&server.url));
    assert!(
        v.verify(&mint(J::ES256, Signer::Ec256, Some("ec-1"), &claims()))
            .is_ok()
    );
    // Rotation to a new key, the bad ones still listed: the new key is picked up.
    server.set(jwks_plus(&["ed-1"], &unusable_keys()));
    v.refresh_jwks().unwrap();
    assert!(
        v.verify(&mint(J::EdDSA, Signer::Ed, Some("ed-1"), &claims()))
            .is_ok()
    );
    assert_eq!(
        v.verify(&mint(J::ES256, Signer::Ec256, Some("ec-1"), &claims()))
            .unwrap_err(),
        AuthError::UnknownKeyId
    );
    // A set with nothing usable is still refused, and the last good keys stay.
    server.set(jwks_plus(&[], &unusable_keys()));
    assert!(v.refresh_jwks().is_err());
    assert!(
        v.verify(&mint(J::EdDSA, Signer::Ed, Some("ed-1"), &claims()))
            .is_ok()
    );
}

/// Issue 17 (RFC 8725): a symmetric key in a published set is a secret anyone can read; it is
/// never accepted from a remote set, so a token signed with it fails.
#[test]
fn a_symmetric_key_from_a_remote_set_is_never_trusted() {
    use base64::Engine as _;
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
    let oct = serde_json::json!({"kty": "oct", "kid": "hs-1", "alg": "HS256", "k": k});
    let server = Server::start(jwks_plus(&["ec-1"], std::slice::from_ref(&oct)));
    let v = verifier(RemoteJwks::new(&server.url));
    let forged = mint(J::HS256, Signer::Hmac, Some("hs-1"), &claims());
    assert!(v.verify(&forged).is_err());
    assert!(
        v.verify(&mint(J::ES256, Signer::Ec256, Some("ec-1"), &claims()))
            .is_ok()
    );
    // Only the symmetric key: no usable key, a build error.
    server.set(jwks_plus(&[], &[oct]));
    assert!(
        Verifier::builder(Environment::Production)
            .jwks_url(&server.url)
            .build()
            .is_err()
    );
}

/// Issue 17: redirects are not followed (a 3xx is a failed fetch), even to a server with a good
/// key set.
#[test]
fn a_redirect_is_a_failed_fetch() {
    let target = Server::start(ok(&["ec-1"]));
    // The reply's header line smuggles a Location header in (the test server writes it as is).
    let location: &'static str =
        Box::leak(format!("no-store\r\nLocation: {}", target.url).into_boxed_str());
    for status in [301, 302, 307, 308] {
        let server = Server::start(Reply {
            status,
            cache_control: Some(location),
            body: String::new(),
        });
        let err = Verifier::builder(Environment::Production)
            .jwks_url(&server.url)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("redirect"), "{status}: {err}");
    }
    assert_eq!(target.hits(), 0);
}

/// Issue 17: outside development the JWKS URL must be https:// (plain http:// only to a literal
/// loopback address); refused before anything is fetched.
#[test]
fn plain_http_is_refused_outside_development() {
    for env in [Environment::Production, Environment::Test] {
        let err = Verifier::builder(env)
            .jwks_url("http://jwks.example.invalid/.well-known/jwks.json")
            .build()
            .unwrap_err();
        assert!(err.is_config_error());
        assert!(err.to_string().contains("http://"), "{env}: {err}");
        assert!(!err.to_string().contains("cannot fetch"), "{env}: {err}");
    }
    // In development it is tried (and fails here: nothing resolves).
    let err = Verifier::builder(Environment::Development)
        .jwks_url("http://jwks.example.invalid/.well-known/jwks.json")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("cannot fetch"), "{err}");
}
