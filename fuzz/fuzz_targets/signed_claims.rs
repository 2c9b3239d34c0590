//! Arbitrary claims bytes, correctly HS256-signed, so every input reaches the claims parser:
//! never a panic; whatever is accepted has a UUID org, an allowed role and a non-empty `sub`, and
//! its `claims_json` is exactly the signed payload.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use tenant_guard_core::{Environment, Verifier};

const SECRET: &[u8] = b"fuzz-secret-that-is-at-least-32-bytes-long";

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        Verifier::builder(Environment::Production)
            .hmac_secret(SECRET)
            .org_claim("app_metadata.org_id")
            .clock(|| 1_800_000_000)
            .build()
            .expect("valid configuration")
    })
}

fuzz_target!(|payload: &[u8]| {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
            .expect("HMAC signing cannot fail");
    match verifier().verify(&format!("{message}.{signature}")) {
        Ok(p) => {
            assert_eq!(p.claims_json().as_bytes(), payload);
            assert!(!p.user_id().is_empty());
            assert!(!p.org_id().is_nil());
            assert_eq!(p.role().as_str(), "authenticated");
        }
        Err(e) => assert!(!e.is_config_error()),
    }
});
