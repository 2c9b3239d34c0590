//! The table of hostile requests: each row a name, the request's headers and the one answer the
//! principles demand (fail closed: nothing unverified gets through, 401 for failed
//! authentication, 403 for a valid token that is not allowed, never a 5xx).

use std::net::TcpListener;

use serde_json::{Value, json};

use super::apps::Req;
use super::tokens::*;

/// What a row must get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// 200 with the caller's principal.
    Ok,
    /// 200 with the caller's principal, in this org (not necessarily [`ORG`]).
    OkIn(&'static str),
    /// 200 from `/notes`: a non-empty list whose every note belongs to this org (the database's
    /// view, so the transaction was scoped to it).
    NotesOf(&'static str),
    /// The status and error code of the JSON body.
    Refused(u16, &'static str),
}

#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub req: Req,
    pub expect: Expect,
    /// Secrets of this row that must never be echoed or logged (tokens, mostly).
    pub secrets: Vec<String>,
}

const MALFORMED_HEADER: Expect = Expect::Refused(401, "malformed_authorization_header");
const MALFORMED: Expect = Expect::Refused(401, "malformed_token");
const BAD_SIG: Expect = Expect::Refused(401, "invalid_signature");
const ALG: Expect = Expect::Refused(401, "disallowed_algorithm");
const KID: Expect = Expect::Refused(401, "unknown_key_id");
const CLAIM: Expect = Expect::Refused(401, "invalid_claim");
const EXPIRED: Expect = Expect::Refused(401, "token_expired");
const TOO_LARGE: Expect = Expect::Refused(401, "token_too_large");
const MISSING: Expect = Expect::Refused(401, "missing_token");
const BAD_ORG: Expect = Expect::Refused(403, "invalid_org");
const ROLE: Expect = Expect::Refused(403, "role_not_allowed");

/// A local listener the `jku`/`x5u` headers point at: nothing may ever connect to it.
#[derive(Debug)]
pub struct Trap {
    pub listener: TcpListener,
    pub url: String,
}

impl Trap {
    pub fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("addr")
        );
        Self { listener, url }
    }

    /// Whether anything connected (the verifier followed a URL from a token).
    pub fn was_contacted(&self) -> bool {
        self.listener.accept().is_ok()
    }
}

impl Default for Trap {
    fn default() -> Self {
        Self::new()
    }
}

struct Table {
    rows: Vec<Row>,
}

impl Table {
    fn bearer(&mut self, name: impl Into<String>, token: String, expect: Expect) {
        let req = Req::get("/me").bearer(&token);
        self.rows.push(Row {
            name: name.into(),
            req,
            expect,
            secrets: vec![token],
        });
    }

    fn raw(&mut self, name: impl Into<String>, req: Req, expect: Expect, secrets: Vec<String>) {
        self.rows.push(Row {
            name: name.into(),
            req,
            expect,
            secrets,
        });
    }
}

/// Claims as text with one member's value replaced by raw JSON text (for values serde_json
/// cannot produce: duplicates, out-of-range numbers).
fn claims_with_raw(key: &str, raw_value: &str) -> String {
    let mut text = without(claims(), key).to_string();
    text.pop(); // the closing brace
    format!("{text},\"{key}\":{raw_value}}}")
}

fn signed_payload(payload: &str) -> String {
    hs256_text(r#"{"alg":"HS256","typ":"JWT"}"#, payload, SECRET.as_bytes())
}

fn signed_header(header: &Value) -> String {
    hs256_text(
        &header.to_string(),
        &claims().to_string(),
        SECRET.as_bytes(),
    )
}

/// Every row; `trap` is where `jku`/`x5u` point.
pub fn rows(trap: &Trap) -> Vec<Row> {
    let mut t = Table { rows: Vec::new() };
    let claims_text = claims().to_string();

    // The baseline: a valid token passes (so every refusal below is about its one defect).
    t.bearer("valid token", good(&claims()), Expect::Ok);

    // alg: none in every capitalisation, with and without a signature segment.
    for alg in ["none", "None", "NONE", "nOnE", "NoNe", "nONE"] {
        for sig in ["", "AAAA", "c2lnbmF0dXJl"] {
            let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
            t.bearer(
                format!("alg {alg} signature {sig:?}"),
                assemble(&header, &claims_text, sig),
                ALG,
            );
        }
    }
    t.bearer(
        "alg HS256 then none (duplicate header key)",
        hs256_text(
            r#"{"alg":"HS256","alg":"none"}"#,
            &claims_text,
            SECRET.as_bytes(),
        ),
        MALFORMED,
    );
    t.bearer(
        "alg missing",
        hs256_text(r#"{"typ":"JWT"}"#, &claims_text, SECRET.as_bytes()),
        MALFORMED,
    );
    t.bearer(
        "alg lower-case hs256",
        hs256_text(r#"{"alg":"hs256"}"#, &claims_text, SECRET.as_bytes()),
        ALG,
    );

    // Algorithm confusion: HS256 "signed" with a public key as the HMAC secret.
    for (pem, kid) in [("rsa1_public.pem", "rsa-1"), ("ec256_public.pem", "ec-1")] {
        let public = fixture(pem);
        t.bearer(
            format!("HS256 signed with {pem}, no kid"),
            hs256_text(r#"{"alg":"HS256"}"#, &claims_text, &public),
            BAD_SIG,
        );
        // The kid names a public key, which never verifies HS256; the kid-less HMAC secret is
        // tried instead and the forged signature fails against it.
        t.bearer(
            format!("HS256 signed with {pem}, kid {kid}"),
            hs256_text(
                &json!({"alg": "HS256", "kid": kid}).to_string(),
                &claims_text,
                &public,
            ),
            BAD_SIG,
        );
    }

    // kid: path traversal, SQL, 10 KB. The kid only ever selects among configured keys.
    let hostile_kids = [
        "../../../../../../etc/passwd",
        "/dev/zero",
        "' OR '1'='1' --",
        "x'; DROP TABLE notes; --",
        "rsa-1\u{0}",
    ];
    for kid in hostile_kids {
        let header = json!({"alg": "HS256", "kid": kid}).to_string();
        t.bearer(
            format!("kid {kid:?}, attacker secret"),
            hs256_text(&header, &claims_text, ATTACKER_SECRET.as_bytes()),
            BAD_SIG,
        );
        t.bearer(
            format!("kid {kid:?}, RS256 by the attacker's key"),
            rs256(
                &json!({"alg": "RS256", "kid": kid}).to_string(),
                &claims(),
                "rsa2_private_pkcs1.pem",
            ),
            KID,
        );
    }
    // The HMAC secret has no kid, so it is tried whatever the kid says: the kid is a label, never
    // a path or a query.
    t.bearer(
        "kid path traversal, signed with the real secret",
        hs256_text(
            &json!({"alg": "HS256", "kid": "../../../../etc/passwd"}).to_string(),
            &claims_text,
            SECRET.as_bytes(),
        ),
        Expect::Ok,
    );
    t.bearer(
        "kid of 10 KB",
        hs256_text(
            &json!({"alg": "HS256", "kid": "k".repeat(10 * 1024)}).to_string(),
            &claims_text,
            ATTACKER_SECRET.as_bytes(),
        ),
        TOO_LARGE,
    );
    t.bearer(
        "kid of 700 bytes (header parsed)",
        hs256_text(
            &json!({"alg": "HS256", "kid": "k".repeat(700)}).to_string(),
            &claims_text,
            ATTACKER_SECRET.as_bytes(),
        ),
        BAD_SIG,
    );
    t.bearer(
        "header over 1 KB",
        hs256_text(
            &json!({"alg": "HS256", "kid": "k".repeat(1200)}).to_string(),
            &claims_text,
            SECRET.as_bytes(),
        ),
        MALFORMED,
    );

    // jku / x5u / jwk / x5c: never followed, never trusted.
    let attacker = attacker_jwk();
    for (what, header) in [
        ("jku", json!({"alg": "RS256", "jku": trap.url})),
        ("x5u", json!({"alg": "RS256", "x5u": trap.url})),
        ("jwk", json!({"alg": "RS256", "jwk": attacker})),
        (
            "x5c",
            json!({"alg": "RS256", "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
        ),
        (
            "jku+jwk",
            json!({"alg": "RS256", "jku": trap.url, "jwk": attacker}),
        ),
    ] {
        t.bearer(
            format!("{what} header, signed by the attacker's key"),
            rs256(&header.to_string(), &claims(), "rsa2_private_pkcs1.pem"),
            BAD_SIG,
        );
        let mut with_kid = header.clone();
        with_kid["kid"] = json!("rsa-2");
        t.bearer(
            format!("{what} header with the attacker's kid"),
            rs256(&with_kid.to_string(), &claims(), "rsa2_private_pkcs1.pem"),
            KID,
        );
    }

    // crit: extensions we cannot honour are refused even with a good signature.
    for crit in [
        json!(["exp"]),
        json!(["b64"]),
        json!(["urn:example:unknown"]),
        json!([]),
    ] {
        t.bearer(
            format!("crit {crit}"),
            signed_header(&json!({"alg": "HS256", "crit": crit, "b64": false})),
            MALFORMED,
        );
    }

    // Duplicate keys in the claims: the verifier and PostgreSQL must never read different values.
    for (key, first, second) in [
        ("role", "\"authenticated\"", "\"service_role\""),
        (
            "org_id",
            "\"5d3c1b2a-4e6f-4a8b-9c0d-1e2f3a4b5c6d\"",
            "\"00000000-0000-4000-8000-000000000001\"",
        ),
        ("sub", "\"a\"", "\"b\""),
        ("exp", "1900000000", "1"),
        ("aud", "\"authenticated\"", "\"other\""),
    ] {
        let text = claims_with_raw(key, first);
        let text = format!("{},\"{key}\":{second}}}", &text[..text.len() - 1]);
        t.bearer(
            format!("duplicate claim {key}"),
            signed_payload(&text),
            MALFORMED,
        );
    }

    // Numeric claims as strings (CVE-2026-25537: never skipped), and odd NumericDates.
    let exp = NOW + 3600;
    for key in ["exp", "nbf", "iat"] {
        t.bearer(
            format!("{key} as a string"),
            good(&with(claims(), key, json!(exp.to_string()))),
            CLAIM,
        );
    }
    for (what, raw, expect) in [
        ("exp as a float", format!("{exp}.75"), Expect::Ok),
        ("exp as an exponent", "1.8000036e9".to_owned(), Expect::Ok),
        ("exp huge (1e300)", "1e300".to_owned(), Expect::Ok),
        (
            "exp beyond u64",
            "123456789012345678901234567890".to_owned(),
            Expect::Ok,
        ),
        ("exp out of range (1e400)", "1e400".to_owned(), MALFORMED),
        ("exp negative", "-1".to_owned(), EXPIRED),
        ("exp very negative", "-1e300".to_owned(), EXPIRED),
        ("exp zero", "0".to_owned(), EXPIRED),
        ("exp null", "null".to_owned(), CLAIM),
        ("exp true", "true".to_owned(), CLAIM),
        ("exp object", "{\"v\":1}".to_owned(), CLAIM),
        ("exp array", format!("[{exp}]"), CLAIM),
    ] {
        t.bearer(what, signed_payload(&claims_with_raw("exp", &raw)), expect);
    }
    t.bearer("exp missing", good(&without(claims(), "exp")), CLAIM);

    // Non-UTF-8 and control characters: in the header value, in the token, in the claims.
    t.raw(
        "non-UTF-8 bytes after Bearer",
        Req::get("/me").header("authorization", b"Bearer \xff\xfe\xfd.e30.e30"),
        MALFORMED_HEADER,
        Vec::new(),
    );
    let valid = good(&claims());
    let mut latin1 = format!("Bearer {valid}").into_bytes();
    latin1.push(0xe9);
    t.raw(
        "a valid token followed by a Latin-1 byte",
        Req::get("/me").header("authorization", &latin1),
        MALFORMED_HEADER,
        vec![valid.clone()],
    );
    t.raw(
        "a tab inside the token",
        Req::get("/me").header(
            "authorization",
            format!("Bearer {}\t{}", &valid[..20], &valid[20..]),
        ),
        MALFORMED_HEADER,
        vec![valid.clone()],
    );
    // Other control characters (NUL, CR, LF, DEL) cannot be carried by a header value at all:
    // both frameworks' `http` types refuse them before any app code runs.
    t.bearer(
        "claims with a raw control character (invalid JSON)",
        signed_payload(&claims_text.replacen("authenticated", "authen\u{1}ticated", 1)),
        MALFORMED,
    );
    t.bearer(
        "claims that are not UTF-8",
        {
            let header = b64(r#"{"alg":"HS256"}"#);
            let mut payload = claims_text.clone().into_bytes();
            payload.insert(2, 0xff);
            let message = format!("{header}.{}", b64(payload));
            let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
            let sig = jsonwebtoken::crypto::sign(
                message.as_bytes(),
                &key,
                jsonwebtoken::Algorithm::HS256,
            )
            .expect("sign");
            format!("{message}.{sig}")
        },
        MALFORMED,
    );
    // PostgreSQL text and jsonb cannot hold NUL: such claims could never be scoped.
    t.bearer(
        "sub with an escaped NUL",
        good(&with(claims(), "sub", json!("user\u{0}admin"))),
        MALFORMED,
    );
    t.bearer(
        "another claim with an escaped NUL",
        good(&with(claims(), "nickname", json!("a\u{0}b"))),
        MALFORMED,
    );
    t.bearer(
        "an escaped backslash before u0000 is not a NUL",
        good(&with(claims(), "path", json!("C:\\u0000"))),
        Expect::Ok,
    );
    // Nor a lone UTF-16 surrogate: every `::jsonb` cast of such claims fails (issue 17).
    t.bearer(
        "a claim with a lone high surrogate escape",
        signed_payload(&claims_with_raw("nickname", r#""\ud800""#)),
        MALFORMED,
    );
    t.bearer(
        "a claim with a lone low surrogate escape (upper-case hex)",
        signed_payload(&claims_with_raw("nickname", r#""x\uDC00y""#)),
        MALFORMED,
    );
    t.bearer(
        "a high surrogate followed by a non-surrogate escape",
        signed_payload(&claims_with_raw("nickname", r#""\ud800\u0041""#)),
        MALFORMED,
    );
    t.bearer(
        "a lone surrogate in a nested claim",
        signed_payload(&claims_with_raw(
            "user_metadata",
            r#"{"name":["ok","\udbff"]}"#,
        )),
        MALFORMED,
    );
    t.bearer(
        "a lone surrogate in a claim's name",
        signed_payload(&claims_with_raw("x\\ud800", "1")),
        MALFORMED,
    );
    t.bearer(
        "a surrogate pair (an emoji) is text",
        signed_payload(&claims_with_raw("nickname", r#""\ud83d\ude00""#)),
        Expect::Ok,
    );
    t.bearer(
        "an escaped backslash before ud800 is not a surrogate",
        signed_payload(&claims_with_raw("path", r#""C:\\ud800""#)),
        Expect::Ok,
    );
    t.bearer(
        "sub with other control characters (legal JSON, legal text)",
        good(&with(claims(), "nickname", json!("tab\there\u{1}"))),
        Expect::Ok,
    );

    // Base64 variants: padding and the standard alphabet are not base64url.
    let parts: Vec<&str> = valid.split('.').collect();
    t.bearer(
        "standard base64 alphabet with padding",
        standard_alphabet(&valid),
        MALFORMED_HEADER,
    );
    t.bearer(
        "padding on the header segment",
        format!("{}==.{}.{}", parts[0], parts[1], parts[2]),
        MALFORMED_HEADER,
    );
    t.bearer("padding on the signature", format!("{valid}="), MALFORMED);
    t.bearer(
        "'+' and '/' in the payload",
        format!("{}.{}+/.{}", parts[0], parts[1], parts[2]),
        BAD_SIG,
    );
    t.bearer(
        "'+' in the header",
        format!("{}+.{}.{}", parts[0], parts[1], parts[2]),
        MALFORMED,
    );

    // Empty segments, 2 and 4 segments.
    for (what, token, expect) in [
        ("two dots only", "..".to_owned(), MALFORMED),
        ("three dots only", "...".to_owned(), MALFORMED),
        (
            "empty header",
            format!(".{}.{}", parts[1], parts[2]),
            MALFORMED,
        ),
        (
            "empty payload",
            format!("{}..{}", parts[0], parts[2]),
            MALFORMED,
        ),
        (
            "empty signature",
            format!("{}.{}.", parts[0], parts[1]),
            MALFORMED,
        ),
        (
            "two segments",
            format!("{}.{}", parts[0], parts[1]),
            MALFORMED,
        ),
        ("one segment", parts[0].to_owned(), MALFORMED),
        (
            "four segments (valid token + one)",
            format!("{valid}.{}", parts[2]),
            BAD_SIG,
        ),
        (
            "four segments (extra in the middle)",
            format!("{}.{}.{}.{}", parts[0], parts[1], parts[1], parts[2]),
            BAD_SIG,
        ),
        ("a trailing dot", format!("{valid}."), MALFORMED),
        (
            "header {} (empty JSON object)",
            format!("{}.{}.{}", b64("{}"), parts[1], parts[2]),
            MALFORMED,
        ),
        (
            "header a JSON array",
            format!("{}.{}.{}", b64("[\"HS256\"]"), parts[1], parts[2]),
            MALFORMED,
        ),
    ] {
        t.bearer(what, token, expect);
    }

    // Nested JWT and JWE.
    let inner = good(&claims());
    t.bearer(
        "cty JWT with a nested token as payload",
        hs256_text(r#"{"alg":"HS256","cty":"JWT"}"#, &inner, SECRET.as_bytes()),
        MALFORMED,
    );
    t.bearer(
        "cty JWT with plain claims",
        hs256_text(
            r#"{"alg":"HS256","cty":"jwt"}"#,
            &claims_text,
            SECRET.as_bytes(),
        ),
        MALFORMED,
    );
    t.bearer(
        "enc header on an HS256 token (a JWE header)",
        hs256_text(
            r#"{"alg":"HS256","enc":"A256GCM"}"#,
            &claims_text,
            SECRET.as_bytes(),
        ),
        MALFORMED,
    );
    t.bearer(
        "JWE compact serialisation (RSA-OAEP, five segments)",
        format!(
            "{}.{}.{}.{}.{}",
            b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#),
            b64("encrypted-key"),
            b64("iv-iv-iv-iv"),
            b64("ciphertext"),
            b64("tag")
        ),
        MALFORMED,
    );
    t.bearer(
        "JWE with alg dir (five segments)",
        format!(
            "{}..{}.{}.{}",
            b64(r#"{"alg":"dir","enc":"A128GCM"}"#),
            b64("iv"),
            b64("ciphertext"),
            b64("tag")
        ),
        MALFORMED,
    );

    // Whitespace around the token, and the scheme.
    for (what, value, expect) in [
        (
            "spaces after Bearer and after the token",
            format!("Bearer    {valid}   "),
            Expect::Ok,
        ),
        ("a trailing tab", format!("Bearer {valid}\t"), Expect::Ok),
        ("lower-case scheme", format!("bearer {valid}"), Expect::Ok),
        ("upper-case scheme", format!("BEARER {valid}"), Expect::Ok),
        (
            "a tab after Bearer",
            format!("Bearer\t{valid}"),
            MALFORMED_HEADER,
        ),
        (
            "a space before Bearer",
            format!(" Bearer {valid}"),
            MALFORMED_HEADER,
        ),
        (
            "no space after Bearer",
            format!("Bearer{valid}"),
            MALFORMED_HEADER,
        ),
        ("Bearer only", "Bearer".to_owned(), MALFORMED_HEADER),
        (
            "Bearer and spaces only",
            "Bearer    ".to_owned(),
            MALFORMED_HEADER,
        ),
        (
            "two tokens",
            format!("Bearer {valid} {valid}"),
            MALFORMED_HEADER,
        ),
        (
            "token in quotes",
            format!("Bearer \"{valid}\""),
            MALFORMED_HEADER,
        ),
        (
            "Basic scheme",
            "Basic dXNlcjpwYXNzd29yZA==".to_owned(),
            MALFORMED_HEADER,
        ),
        ("Token scheme", format!("Token {valid}"), MALFORMED_HEADER),
        (
            "comma-joined values",
            format!("Bearer {valid}, Bearer {valid}"),
            MALFORMED_HEADER,
        ),
    ] {
        t.raw(
            what,
            Req::get("/me").header("authorization", value),
            expect,
            vec![valid.clone()],
        );
    }

    // Several Authorization headers.
    t.raw(
        "two identical Authorization headers",
        Req::get("/me").bearer(&valid).bearer(&valid),
        MALFORMED_HEADER,
        vec![valid.clone()],
    );
    t.raw(
        "a valid and a forged Authorization header",
        Req::get("/me")
            .bearer(&valid)
            .bearer(&good(&with(claims(), "role", json!("org_admin")))),
        MALFORMED_HEADER,
        vec![valid.clone()],
    );
    t.raw(
        "an empty Authorization header",
        Req::get("/me").header("authorization", ""),
        MALFORMED_HEADER,
        Vec::new(),
    );

    // 1 MB headers: refused by length before anything is decoded.
    let megabyte = "a".repeat(1 << 20);
    t.raw(
        "1 MB of garbage as the token",
        Req::get("/me").header("authorization", format!("Bearer {megabyte}")),
        TOO_LARGE,
        Vec::new(),
    );
    let mut huge_claims = claims();
    huge_claims["user_metadata"]["bio"] = json!("b".repeat(1 << 20));
    t.bearer(
        "a correctly signed 1 MB token (length checked before the signature)",
        good(&huge_claims),
        TOO_LARGE,
    );
    t.raw(
        "a valid token with a 1 MB unrelated header",
        Req::get("/me")
            .bearer(&valid)
            .header("x-padding", &megabyte),
        Expect::Ok,
        vec![valid.clone()],
    );
    t.raw(
        "a 1 MB cookie and no Authorization header",
        Req::get("/me").header("cookie", format!("session={megabyte}")),
        MISSING,
        Vec::new(),
    );

    // Identity from anywhere but a verified token is ignored.
    t.raw(
        "identity headers without a token",
        Req::get("/me")
            .header("x-user-id", SUB)
            .header("x-org-id", ORG)
            .header("x-role", "service_role"),
        MISSING,
        Vec::new(),
    );
    t.raw(
        "a token in the query string",
        Req::get(&format!("/me?access_token={valid}")),
        MISSING,
        vec![valid.clone()],
    );

    // Valid signature, claims not allowed: 403.
    t.bearer(
        "role service_role",
        good(&with(claims(), "role", json!("service_role"))),
        ROLE,
    );
    t.bearer(
        "role postgres",
        good(&with(claims(), "role", json!("postgres"))),
        ROLE,
    );
    t.bearer("role missing", good(&without(claims(), "role")), ROLE);
    t.bearer("org missing", good(&without(claims(), "org_id")), BAD_ORG);
    for org in [
        "00000000-0000-0000-0000-000000000000",
        "../../../etc/passwd",
        "5d3c1b2a4e6f4a8b9c0d1e2f3a4b5c6d",
        "' OR 1=1 --",
    ] {
        t.bearer(
            format!("org {org:?}"),
            good(&with(claims(), "org_id", json!(org))),
            BAD_ORG,
        );
    }
    t.bearer(
        "org as a number",
        good(&with(claims(), "org_id", json!(12345))),
        BAD_ORG,
    );

    // Other claim failures, for completeness of the mapping.
    t.bearer(
        "wrong audience",
        good(&with(claims(), "aud", json!("someone-else"))),
        Expect::Refused(401, "invalid_audience"),
    );
    t.bearer(
        "not yet valid",
        good(&with(claims(), "nbf", json!(NOW + 3600))),
        Expect::Refused(401, "token_not_yet_valid"),
    );
    t.bearer(
        "signed with another secret",
        hs256_text(
            r#"{"alg":"HS256"}"#,
            &claims_text,
            ATTACKER_SECRET.as_bytes(),
        ),
        BAD_SIG,
    );
    t.raw(
        "no Authorization header",
        Req::get("/me"),
        MISSING,
        Vec::new(),
    );

    // A body announced and never sent (issue 17, Medium 1): the guard decides from the headers
    // alone and never waits on the client.
    t.raw(
        "a 100-byte body announced and never sent, no token",
        Req::get("/me").header("content-length", "100"),
        MISSING,
        Vec::new(),
    );
    t.raw(
        "a 100-byte body announced and never sent, a valid token",
        Req::get("/me")
            .bearer(&valid)
            .header("content-length", "100"),
        Expect::Ok,
        vec![valid.clone()],
    );

    // W3C trace context (recorded on the span when valid, ignored otherwise): never a refusal,
    // never a 5xx.
    for (name, traceparent) in [
        ("a malformed traceparent", "00-zz-yy-01".to_owned()),
        (
            "an all-zero trace id",
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
        ),
        ("a 64 KB traceparent", "0".repeat(64 << 10)),
    ] {
        t.raw(
            format!("{name} with a valid token"),
            Req::get("/me")
                .bearer(&valid)
                .header("traceparent", &traceparent),
            Expect::Ok,
            vec![valid.clone()],
        );
    }
    t.raw(
        "two traceparent headers and a 64 KB tracestate with a valid token",
        Req::get("/me")
            .bearer(&valid)
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01",
            )
            .header("tracestate", "v=".repeat(32 << 10)),
        Expect::Ok,
        vec![valid.clone()],
    );
    t.rows
}

const ISSUER: Expect = Expect::Refused(401, "invalid_issuer");

/// Issuer confusion, for [`two_issuer_verifier`]: tokens are routed by `iss` to one issuer's
/// keys and rules, so no key of one issuer ever verifies a token claiming the other, and an
/// unknown, missing or disguised `iss` is refused before any key is tried.
pub fn issuer_rows(trap: &Trap) -> Vec<Row> {
    let mut t = Table { rows: Vec::new() };
    let a = claims_a();
    let b = claims_b();
    let hs = |claims: &Value, secret: &str| {
        hs256_text(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &claims.to_string(),
            secret.as_bytes(),
        )
    };
    let ed =
        |claims: &Value| partner_ed(r#"{"alg":"EdDSA","kid":"partner-1"}"#, &claims.to_string());

    t.bearer("issuer A, A's secret", hs(&a, SECRET), Expect::Ok);
    t.bearer("issuer B, B's Ed25519 key", ed(&b), Expect::Ok);
    t.bearer("issuer B, B's secret", hs(&b, PARTNER_SECRET), Expect::Ok);

    // One issuer's key, the other's name.
    t.bearer("A's secret on a token claiming B", hs(&b, SECRET), BAD_SIG);
    t.bearer(
        "B's secret on a token claiming A",
        hs(&a, PARTNER_SECRET),
        BAD_SIG,
    );
    t.bearer(
        "A's RSA key (kid rsa-1) on a token claiming B",
        rs256(
            r#"{"alg":"RS256","kid":"rsa-1"}"#,
            &b,
            "rsa1_private_pkcs1.pem",
        ),
        KID,
    );
    t.bearer(
        "A's RSA key without kid on a token claiming B",
        rs256(r#"{"alg":"RS256"}"#, &b, "rsa1_private_pkcs1.pem"),
        ALG,
    );
    t.bearer(
        "B's Ed25519 key (kid partner-1) on a token claiming A",
        ed(&a),
        KID,
    );
    t.bearer(
        "B's Ed25519 key without kid on a token claiming A",
        partner_ed(r#"{"alg":"EdDSA"}"#, &a.to_string()),
        ALG,
    );
    t.bearer(
        "B's key named by A's kid on a token claiming A",
        partner_ed(r#"{"alg":"EdDSA","kid":"rsa-1"}"#, &a.to_string()),
        ALG,
    );
    t.bearer(
        "B's key, token claiming B, jku pointing at an attacker's JWKS",
        partner_ed(
            &json!({"alg":"EdDSA","kid":"attacker","jku": trap.url}).to_string(),
            &b.to_string(),
        ),
        KID,
    );

    // Disguised, unknown or missing issuers: refused before any key is tried.
    for (name, iss) in [
        ("unknown issuer", json!("https://evil.example/")),
        (
            "issuer B without its trailing slash",
            json!("https://partner.example.com"),
        ),
        (
            "issuer B in upper case",
            json!("HTTPS://PARTNER.EXAMPLE.COM/"),
        ),
        (
            "issuer B with a trailing space",
            json!("https://partner.example.com/ "),
        ),
        (
            "issuer B with a NUL appended",
            json!("https://partner.example.com/\u{0}"),
        ),
        ("issuer as an array of both", json!([ISSUER_A, ISSUER_B])),
        ("issuer as an object", json!({"iss": ISSUER_B})),
        ("issuer null", json!(null)),
        ("issuer a number", json!(1)),
        ("issuer empty", json!("")),
        ("issuer 4 000 characters", json!("x".repeat(4_000))),
    ] {
        t.bearer(
            format!("{name}, A's secret"),
            hs(&with(a.clone(), "iss", iss.clone()), SECRET),
            ISSUER,
        );
        t.bearer(
            format!("{name}, B's key"),
            ed(&with(b.clone(), "iss", iss)),
            ISSUER,
        );
    }
    t.bearer(
        "issuer missing, A's secret",
        hs(&without(a.clone(), "iss"), SECRET),
        ISSUER,
    );
    t.bearer(
        "issuer missing, B's key",
        ed(&without(b.clone(), "iss")),
        ISSUER,
    );
    let dup = |first: &str, then: &str| {
        let text = without(b.clone(), "iss").to_string();
        format!("{{\"iss\":\"{first}\",\"iss\":\"{then}\",{}", &text[1..])
    };
    t.bearer(
        "issuer twice (B then A), B's key",
        partner_ed(
            r#"{"alg":"EdDSA","kid":"partner-1"}"#,
            &dup(ISSUER_B, ISSUER_A),
        ),
        MALFORMED,
    );
    t.bearer(
        "issuer twice (A then B), A's secret",
        signed_payload(&dup(ISSUER_A, ISSUER_B)),
        MALFORMED,
    );
    let escaped = b
        .to_string()
        .replace("https://partner", "https:\\/\\/p\\u0061rtner");
    t.bearer(
        "issuer B spelled with escapes, A's secret",
        signed_payload(&escaped),
        BAD_SIG,
    );
    t.bearer(
        "issuer B spelled with escapes, B's key",
        partner_ed(r#"{"alg":"EdDSA","kid":"partner-1"}"#, &escaped),
        Expect::Ok,
    );
    t.bearer(
        "issuer only in a nested object",
        hs(
            &with(
                without(a.clone(), "iss"),
                "app_metadata",
                json!({"iss": ISSUER_A}),
            ),
            SECRET,
        ),
        ISSUER,
    );

    // Each issuer's own rules: A's shape is not B's.
    t.bearer(
        "issuer B, A's audience",
        ed(&with(b.clone(), "aud", json!("authenticated"))),
        Expect::Refused(401, "invalid_audience"),
    );
    t.bearer(
        "issuer B, A's claim shape (string role, org_id)",
        ed(&with(
            with(a.clone(), "iss", json!(ISSUER_B)),
            "aud",
            json!("partner-api"),
        )),
        ROLE,
    );
    t.bearer(
        "issuer B, only roles that are not allowed",
        ed(&with(
            b.clone(),
            "roles",
            json!(["postgres", "service_role", "org_admin"]),
        )),
        ROLE,
    );
    t.bearer(
        "issuer B, role array with a non-string",
        ed(&with(
            b.clone(),
            "roles",
            json!(["member", {"role": "postgres"}]),
        )),
        ROLE,
    );
    t.bearer(
        "issuer B, org in A's claim",
        ed(&with(
            without(b.clone(), "https://partner.example.com/org"),
            "org_id",
            json!(ORG),
        )),
        BAD_ORG,
    );
    t.bearer(
        "issuer A, B's role array",
        hs(
            &with(without(a.clone(), "role"), "roles", json!(["member"])),
            SECRET,
        ),
        ROLE,
    );
    t.bearer(
        "issuer B, expired",
        ed(&with(b, "exp", json!(NOW - 3600))),
        EXPIRED,
    );
    t.rows
}

const ORG_REQUIRED: Expect = Expect::Refused(400, "org_required");
const BAD_ORG_HEADER: Expect = Expect::Refused(400, "invalid_org_header");
const NOT_A_MEMBER: Expect = Expect::Refused(403, "not_a_member");
const ORG_MISMATCH: Expect = Expect::Refused(403, "org_mismatch");

/// Malformed `x-org-id` values: each must be 400 `invalid_org_header` where the header is read,
/// and ignored where it is not.
fn malformed_org_headers() -> Vec<(String, Vec<u8>)> {
    let mut values: Vec<(String, Vec<u8>)> = [
        ("empty", String::new()),
        ("not a uuid", "not-a-uuid".to_owned()),
        ("SQL", "' OR 1=1 --".to_owned()),
        (
            "SQL after a member org",
            format!("{ORG}'; DROP TABLE notes; --"),
        ),
        ("a path", "../../../etc/passwd".to_owned()),
        ("two orgs in one value", format!("{ORG},{OTHER_ORG}")),
        ("two orgs, space-separated", format!("{ORG} {OTHER_ORG}")),
        ("a JSON array", format!("[\"{ORG}\"]")),
        ("overlong: 8 KB of digits", "1".repeat(8 * 1024)),
        (
            "overlong: a member org then 8 KB",
            format!("{ORG}{}", "a".repeat(8 * 1024)),
        ),
        (
            "a member org, one character short",
            ORG[..ORG.len() - 1].to_owned(),
        ),
        (
            "a uuid with a non-hex character",
            format!("{}g", &ORG[..ORG.len() - 1]),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.into_bytes()))
    .collect();
    let mut latin1 = ORG.as_bytes().to_vec();
    latin1.push(0xE9); // a trailing Latin-1 é: not UTF-8
    values.push(("non-UTF-8 after a member org".to_owned(), latin1));
    values.push(("non-UTF-8 only".to_owned(), vec![0xFF, 0xFE, 0x80, 0x81]));
    let mut overlong_utf8 = ORG.as_bytes().to_vec();
    overlong_utf8.extend_from_slice(&[0xC0, 0xAF]); // an overlong `/`
    values.push((
        "overlong UTF-8 after a member org".to_owned(),
        overlong_utf8,
    ));
    values
}

/// Rows for a guard with `org_membership` (header `x-org-id`) and
/// [`org_request_verifier`]: [`SUB`] is a member of [`ORG`] (role `authenticated`) and of nothing
/// else. The header is a request, never identity: without the membership check nothing passes.
pub fn org_header_rows() -> Vec<Row> {
    let mut t = Table { rows: Vec::new() };
    let no_org = good(&without(claims(), "org_id"));
    let member = |value: &[u8]| Req::get("/me").bearer(&no_org).header("x-org-id", value);

    t.raw(
        "no org in the token, a member org in the header",
        member(ORG.as_bytes()),
        Expect::Ok,
        vec![no_org.clone()],
    );
    t.raw(
        "the header name in capitals",
        Req::get("/me").bearer(&no_org).header("X-ORG-ID", ORG),
        Expect::Ok,
        vec![no_org.clone()],
    );
    t.raw(
        "header org without membership",
        member(OTHER_ORG.as_bytes()),
        NOT_A_MEMBER,
        vec![no_org.clone()],
    );
    t.raw(
        "header org without membership, identity headers claiming membership",
        member(OTHER_ORG.as_bytes())
            .header("x-user-id", SUB)
            .header("x-role", "org_admin")
            .header("x-membership", "owner"),
        NOT_A_MEMBER,
        vec![no_org.clone()],
    );
    t.raw(
        "no org anywhere",
        Req::get("/me").bearer(&no_org),
        ORG_REQUIRED,
        vec![no_org.clone()],
    );
    t.raw(
        "the org in another header",
        Req::get("/me")
            .bearer(&no_org)
            .header("x-org", ORG)
            .header("x-tenant-id", ORG)
            .header("org_id", ORG),
        ORG_REQUIRED,
        vec![no_org.clone()],
    );
    t.raw(
        "the org in the query string",
        Req::get(&format!("/me?org_id={ORG}&x-org-id={ORG}")).bearer(&no_org),
        ORG_REQUIRED,
        vec![no_org.clone()],
    );
    for (name, value) in malformed_org_headers() {
        t.raw(
            format!("x-org-id {name}"),
            member(&value),
            BAD_ORG_HEADER,
            vec![no_org.clone()],
        );
    }
    // Duplicated: never "the first one", never "the last one".
    for (name, first, second) in [
        ("a member org twice", ORG, ORG),
        ("a member org, then another", ORG, OTHER_ORG),
        ("another org, then a member org", OTHER_ORG, ORG),
    ] {
        t.raw(
            format!("x-org-id duplicated: {name}"),
            member(first.as_bytes()).header("x-org-id", second),
            BAD_ORG_HEADER,
            vec![no_org.clone()],
        );
    }
    t.raw(
        "x-org-id duplicated, different spelling of the name",
        member(ORG.as_bytes()).header("X-Org-Id", OTHER_ORG),
        BAD_ORG_HEADER,
        vec![no_org.clone()],
    );

    // A token that names its org is authoritative.
    let with_org = good(&claims());
    t.raw(
        "the token's org, the same org in the header",
        Req::get("/me").bearer(&with_org).header("x-org-id", ORG),
        Expect::Ok,
        vec![with_org.clone()],
    );
    t.raw(
        "the token's org, another org in the header",
        Req::get("/me")
            .bearer(&with_org)
            .header("x-org-id", OTHER_ORG),
        ORG_MISMATCH,
        vec![with_org.clone()],
    );
    t.raw(
        "the token's org, a malformed header",
        Req::get("/me")
            .bearer(&with_org)
            .header("x-org-id", "' OR 1=1 --"),
        BAD_ORG_HEADER,
        vec![with_org.clone()],
    );

    // The header never stands in for authentication.
    t.raw(
        "a member org in the header, no token",
        Req::get("/me").header("x-org-id", ORG),
        MISSING,
        Vec::new(),
    );
    let forged = hs256_text(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &without(claims(), "org_id").to_string(),
        ATTACKER_SECRET.as_bytes(),
    );
    t.raw(
        "a member org in the header, a forged token without org",
        Req::get("/me").bearer(&forged).header("x-org-id", ORG),
        BAD_SIG,
        vec![forged],
    );
    let expired = good(&with(without(claims(), "org_id"), "exp", json!(NOW - 3600)));
    t.raw(
        "a member org in the header, an expired token without org",
        Req::get("/me").bearer(&expired).header("x-org-id", ORG),
        EXPIRED,
        vec![expired],
    );
    let other_user = good(&with(
        without(claims(), "org_id"),
        "sub",
        json!("someone-else"),
    ));
    t.raw(
        "a member org in the header, another user's token",
        Req::get("/me").bearer(&other_user).header("x-org-id", ORG),
        NOT_A_MEMBER,
        vec![other_user],
    );
    let service = good(&with(
        without(claims(), "org_id"),
        "role",
        json!("service_role"),
    ));
    t.raw(
        "a member org in the header, a token with a role not allowed",
        Req::get("/me").bearer(&service).header("x-org-id", ORG),
        ROLE,
        vec![service],
    );
    t.rows
}

/// Rows for a guard **without** `org_membership` (same [`org_request_verifier`]): the org header
/// is ignored, never trusted; a token without an org is refused.
pub fn unchecked_org_header_rows() -> Vec<Row> {
    let mut t = Table { rows: Vec::new() };
    let with_org = good(&claims());
    let no_org = good(&without(claims(), "org_id"));
    t.raw(
        "no org_membership: the token's org, another org in the header (ignored)",
        Req::get("/me")
            .bearer(&with_org)
            .header("x-org-id", OTHER_ORG),
        Expect::Ok,
        vec![with_org.clone()],
    );
    t.raw(
        "no org_membership: the token's org, the header twice (ignored)",
        Req::get("/me")
            .bearer(&with_org)
            .header("x-org-id", OTHER_ORG)
            .header("x-org-id", ORG),
        Expect::Ok,
        vec![with_org.clone()],
    );
    for (name, value) in malformed_org_headers() {
        t.raw(
            format!("no org_membership: the token's org, x-org-id {name} (ignored)"),
            Req::get("/me").bearer(&with_org).header("x-org-id", &value),
            Expect::Ok,
            vec![with_org.clone()],
        );
    }
    t.raw(
        "no org_membership: no org in the token, a member org in the header",
        Req::get("/me").bearer(&no_org).header("x-org-id", ORG),
        BAD_ORG,
        vec![no_org.clone()],
    );
    t.raw(
        "no org_membership: no org in the token, nothing in the header",
        Req::get("/me").bearer(&no_org),
        BAD_ORG,
        vec![no_org],
    );
    t.rows
}

/// Rows for a guard with `org_membership` reading the org from the path (`/orgs/{org}`), same
/// members as [`org_header_rows`]: the segment is checked like the header, never decoded, and a
/// header is not read at all.
pub fn org_path_rows() -> Vec<Row> {
    let mut t = Table { rows: Vec::new() };
    let no_org = good(&without(claims(), "org_id"));
    let at = |segment: &str| Req::get(&format!("/orgs/{segment}/me")).bearer(&no_org);
    t.raw(
        "path: a member org",
        at(ORG),
        Expect::Ok,
        vec![no_org.clone()],
    );
    t.raw(
        "path: an org without membership",
        at(OTHER_ORG),
        NOT_A_MEMBER,
        vec![no_org.clone()],
    );
    for (name, segment) in [
        ("not a uuid", "not-a-uuid".to_owned()),
        ("percent-encoded member org", format!("%35{}", &ORG[1..])),
        ("member org and an encoded NUL", format!("{ORG}%00")),
        ("encoded traversal", "..%2F..%2Fetc%2Fpasswd".to_owned()),
        ("encoded SQL", "%27%20OR%201%3D1%20--".to_owned()),
        ("member org, then a semicolon", format!("{ORG};{OTHER_ORG}")),
        ("overlong", "1".repeat(4096)),
    ] {
        t.raw(
            format!("path: {name}"),
            at(&segment),
            Expect::Refused(400, "invalid_org_path"),
            vec![no_org.clone()],
        );
    }
    t.raw(
        "path: no org in the path, a member org in the header (not the source)",
        Req::get("/me").bearer(&no_org).header("x-org-id", ORG),
        ORG_REQUIRED,
        vec![no_org.clone()],
    );
    t.raw(
        "path: a member org, no token",
        Req::get(&format!("/orgs/{ORG}/me")),
        MISSING,
        Vec::new(),
    );
    let with_org = good(&with(claims(), "org_id", json!(OTHER_ORG)));
    t.raw(
        "path: the token names another org",
        Req::get(&format!("/orgs/{ORG}/me")).bearer(&with_org),
        ORG_MISMATCH,
        vec![with_org],
    );
    t.rows
}

/// Rows for a guard with `org_membership` and [`TokenOrg::Default`] (header `x-org-id`,
/// [`org_request_verifier`]): [`SUB`] is a member of [`ORG`] and [`SECOND_ORG`], not of
/// [`OTHER_ORG`]. The token's org is only the default: a header naming another org overrides it
/// after the membership check, never without it. The test plants one note in each of the three
/// orgs, so the `/notes` rows show which org the database scoped the transaction to.
///
/// [`TokenOrg::Default`]: tenant_guard::http::TokenOrg::Default
pub fn token_org_default_rows() -> Vec<Row> {
    let mut t = Table { rows: Vec::new() };
    let with_org = good(&claims());
    let at =
        |path: &str, token: &str, org: &str| Req::get(path).bearer(token).header("x-org-id", org);

    t.raw(
        "default token org: a member org other than the token's in the header",
        at("/me", &with_org, SECOND_ORG),
        Expect::OkIn(SECOND_ORG),
        vec![with_org.clone()],
    );
    t.raw(
        "default token org: a member org other than the token's, the database's view",
        at("/notes", &with_org, SECOND_ORG),
        Expect::NotesOf(SECOND_ORG),
        vec![with_org.clone()],
    );
    t.raw(
        "default token org: a non-member org in the header",
        at("/me", &with_org, OTHER_ORG),
        NOT_A_MEMBER,
        vec![with_org.clone()],
    );
    t.raw(
        "default token org: a non-member org in the header, on a database route",
        at("/notes", &with_org, OTHER_ORG),
        NOT_A_MEMBER,
        vec![with_org.clone()],
    );
    t.raw(
        "default token org: a non-member org, identity headers claiming membership",
        at("/me", &with_org, OTHER_ORG)
            .header("x-user-id", SUB)
            .header("x-role", "org_admin")
            .header("x-membership", "owner"),
        NOT_A_MEMBER,
        vec![with_org.clone()],
    );
    t.raw(
        "default token org: no header, the token's org",
        Req::get("/me").bearer(&with_org),
        Expect::OkIn(ORG),
        vec![with_org.clone()],
    );
    t.raw(
        "default token org: no header, the database's view",
        Req::get("/notes").bearer(&with_org),
        Expect::NotesOf(ORG),
        vec![with_org.clone()],
    );
    t.raw(
        "default token org: the header names the token's org",
        at("/me", &with_org, ORG),
        Expect::OkIn(ORG),
        vec![with_org.clone()],
    );
    t.raw(
        "default token org: the header names the token's org, the database's view",
        at("/notes", &with_org, ORG),
        Expect::NotesOf(ORG),
        vec![with_org.clone()],
    );
    // The token's org, when it is no member org, is still its default (the token is trusted
    // for its own org, as without `org_membership`); the header cannot reach further.
    let non_member_token = good(&with(claims(), "org_id", json!(OTHER_ORG)));
    t.raw(
        "default token org: a non-member token org, no header",
        Req::get("/me").bearer(&non_member_token),
        Expect::OkIn(OTHER_ORG),
        vec![non_member_token.clone()],
    );
    t.raw(
        "default token org: a non-member token org, a member org in the header",
        at("/notes", &non_member_token, SECOND_ORG),
        Expect::NotesOf(SECOND_ORG),
        vec![non_member_token.clone()],
    );
    let no_org = good(&without(claims(), "org_id"));
    t.raw(
        "default token org: no org in the token, a member org in the header",
        at("/me", &no_org, SECOND_ORG),
        Expect::OkIn(SECOND_ORG),
        vec![no_org.clone()],
    );
    t.raw(
        "default token org: no org in the token, a non-member org in the header",
        at("/me", &no_org, OTHER_ORG),
        NOT_A_MEMBER,
        vec![no_org.clone()],
    );
    t.raw(
        "default token org: no org anywhere",
        Req::get("/me").bearer(&no_org),
        ORG_REQUIRED,
        vec![no_org],
    );
    for (name, value) in malformed_org_headers() {
        t.raw(
            format!("default token org: the token's org, x-org-id {name}"),
            Req::get("/me").bearer(&with_org).header("x-org-id", &value),
            BAD_ORG_HEADER,
            vec![with_org.clone()],
        );
    }
    t.raw(
        "default token org: the token's org, the header twice",
        at("/me", &with_org, ORG).header("x-org-id", SECOND_ORG),
        BAD_ORG_HEADER,
        vec![with_org.clone()],
    );

    // The header never stands in for authentication.
    t.raw(
        "default token org: a member org in the header, no token",
        Req::get("/me").header("x-org-id", SECOND_ORG),
        MISSING,
        Vec::new(),
    );
    let forged = hs256_text(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims().to_string(),
        ATTACKER_SECRET.as_bytes(),
    );
    t.raw(
        "default token org: a member org in the header, a forged token",
        at("/me", &forged, SECOND_ORG),
        BAD_SIG,
        vec![forged],
    );
    let expired = good(&with(claims(), "exp", json!(NOW - 3600)));
    t.raw(
        "default token org: a member org in the header, an expired token",
        at("/notes", &expired, SECOND_ORG),
        EXPIRED,
        vec![expired],
    );
    let unsigned = assemble(r#"{"alg":"none","typ":"JWT"}"#, &claims().to_string(), "");
    t.raw(
        "default token org: a member org in the header, an unsigned token",
        at("/me", &unsigned, SECOND_ORG),
        ALG,
        vec![unsigned],
    );
    let other_user = good(&with(claims(), "sub", json!("someone-else")));
    t.raw(
        "default token org: another user's token, a member org of the caller in the header",
        at("/me", &other_user, SECOND_ORG),
        NOT_A_MEMBER,
        vec![other_user],
    );
    let service = good(&with(claims(), "role", json!("service_role")));
    t.raw(
        "default token org: a member org in the header, a token with a role not allowed",
        at("/me", &service, SECOND_ORG),
        ROLE,
        vec![service],
    );
    t.rows
}
