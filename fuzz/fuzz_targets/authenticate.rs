//! Arbitrary `Authorization` / `Cookie` header bytes through `Verifier::authenticate`: never a
//! panic, never a configuration error from a request, never a principal from garbage.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tenant_guard_core::{Environment, Verifier};

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        Verifier::builder(Environment::Production)
            .hmac_secret("fuzz-secret-that-is-at-least-32-bytes-long")
            .cookie_token("tok")
            .build()
            .expect("valid configuration")
    })
}

fuzz_target!(|data: &[u8]| {
    let (auth, cookie) = data.split_at(data.len() / 2);
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(auth) {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    if let Ok(v) = http::HeaderValue::from_bytes(cookie) {
        headers.insert(http::header::COOKIE, v);
    }
    if let Err(e) = verifier().authenticate(&headers) {
        assert!(!e.is_config_error());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(
            verifier().verify(text).is_err(),
            "an unsigned input verified"
        );
    }
});
