//! Tokens shaped like each identity provider's, minted here with realistic claims, each mapped
//! to a principal by the configuration the README's "Identity providers" section shows (the
//! same variables, with a key file in place of `JWT_OIDC_ISSUER`). Each is checked alone, then
//! all seven behind one verifier (`JWT_ISSUERS`), routed by `iss`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use std::collections::HashMap;

use common::*;
use jsonwebtoken::Algorithm as J;
use serde_json::{Value, json};
use tenant_guard_core::{AuthError, VerifierBuilder};

/// An Entra ID tenant id (the org, for apps with one Postgres org per Entra tenant).
const TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

struct Shape {
    name: &'static str,
    /// The README's variables for this IdP, without the key source.
    env: &'static [(&'static str, &'static str)],
    alg: J,
    signer: Signer,
    kid: Option<&'static str>,
    claims: fn() -> Value,
    /// The expected principal: user id, org, role.
    want: (&'static str, &'static str, &'static str),
}

const IAT: u64 = NOW - 30;
const EXP: u64 = NOW + 3600;

fn shapes() -> Vec<Shape> {
    vec![
        Shape {
            name: "Auth0 (access token, namespaced claims from an Action)",
            env: &[
                ("JWT_ISSUER", "https://acme.eu.auth0.com/"),
                ("JWT_AUDIENCE", "https://api.acme.example"),
                ("ORG_CLAIM", r#"["https://acme.example/org_id"]"#),
                ("ROLE_CLAIM", r#"["https://acme.example/roles"]"#),
                ("JWT_ROLE_ARRAY", "first"),
                ("JWT_ROLE_MAP", "admin=org_admin"),
                ("JWT_DEFAULT_ROLE", "authenticated"),
                ("JWT_ALLOWED_ROLES", "authenticated,org_admin"),
            ],
            alg: J::RS256,
            signer: Signer::Rsa1,
            kid: Some("auth0-kid-1"),
            claims: || {
                json!({
                    "https://acme.example/org_id": ORG,
                    "https://acme.example/roles": ["billing", "admin"],
                    "iss": "https://acme.eu.auth0.com/",
                    "sub": "auth0|64f1c0d2e4b0a1b2c3d4e5f6",
                    "aud": ["https://api.acme.example", "https://acme.eu.auth0.com/userinfo"],
                    "iat": IAT, "exp": EXP,
                    "scope": "openid profile email read:projects",
                    "azp": "q0Ht2XbKLZ3Bz8vN5cM1wYpR7sTu4VeA",
                    "permissions": ["read:projects", "write:projects"]
                })
            },
            want: ("auth0|64f1c0d2e4b0a1b2c3d4e5f6", ORG, "org_admin"),
        },
        Shape {
            name: "Keycloak (realm roles, org_id from a user-attribute mapper)",
            env: &[
                ("JWT_ISSUER", "https://sso.acme.example/realms/acme"),
                ("JWT_AUDIENCE", "tenant-guard-api"),
                ("ORG_CLAIM", "org_id"),
                ("ROLE_CLAIM", "realm_access.roles"),
                ("JWT_ROLE_ARRAY", "exactly_one"),
                ("JWT_ROLE_MAP", "app-admin=org_admin,app-user=authenticated"),
                ("JWT_ALLOWED_ROLES", "authenticated,org_admin"),
            ],
            alg: J::RS256,
            signer: Signer::Rsa2,
            kid: Some("Xq3fG1t9zJcNw0pL8mV2bR5sK7yH4uE6dA"),
            claims: || {
                json!({
                    "exp": EXP, "iat": IAT, "auth_time": IAT,
                    "jti": "onrtac:4c8e6a2b-1f3d-4e5a-9b7c-8d6e5f4a3b2c",
                    "iss": "https://sso.acme.example/realms/acme",
                    "aud": ["tenant-guard-api", "account"],
                    "sub": "f3b8c2d1-7e6a-4b5c-9d8e-1a2b3c4d5e6f",
                    "typ": "Bearer", "azp": "web-app",
                    "sid": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", "acr": "1",
                    "allowed-origins": ["https://app.acme.example"],
                    "realm_access": {"roles": [
                        "default-roles-acme", "offline_access", "uma_authorization", "app-user"
                    ]},
                    "resource_access": {"account": {"roles": ["manage-account", "view-profile"]}},
                    "scope": "openid email profile",
                    "email_verified": true, "preferred_username": "ada",
                    "org_id": ORG
                })
            },
            want: ("f3b8c2d1-7e6a-4b5c-9d8e-1a2b3c4d5e6f", ORG, "authenticated"),
        },
        Shape {
            name: "Clerk (session token v2, org uuid and aud from session-token customisation)",
            env: &[
                ("JWT_ISSUER", "https://clerk.acme.example"),
                ("JWT_AUDIENCE", "tenant-guard"),
                ("ORG_CLAIM", "org_uuid"),
                ("ROLE_CLAIM", "o.rol"),
                ("JWT_ROLE_MAP", "admin=org_admin,member=authenticated"),
                ("JWT_ALLOWED_ROLES", "authenticated,org_admin"),
            ],
            alg: J::RS256,
            signer: Signer::Rsa1,
            kid: Some("ins_2Xb7f0qYk9LmN3pQ"),
            claims: || {
                json!({
                    "azp": "https://app.acme.example", "exp": EXP, "fva": [0, -1],
                    "iat": IAT, "nbf": IAT - 5,
                    "iss": "https://clerk.acme.example",
                    "sid": "sess_2Xb7f0qYk9LmN3pQrS5tU7vW",
                    "sub": "user_2NNEqL2nrIRdJ194ndJqAHwEfxC",
                    "v": 2,
                    "o": {"id": "org_2Zk8Yb3Rm1QpL0sT", "rol": "member", "slg": "acme"},
                    "aud": "tenant-guard",
                    "org_uuid": ORG
                })
            },
            want: ("user_2NNEqL2nrIRdJ194ndJqAHwEfxC", ORG, "authenticated"),
        },
        Shape {
            name: "Firebase Auth (ID token, org_id custom claim, no role: the default)",
            env: &[
                ("JWT_ISSUER", "https://securetoken.google.com/acme-prod"),
                ("JWT_AUDIENCE", "acme-prod"),
                ("ORG_CLAIM", "org_id"),
                ("ROLE_CLAIM", "role"),
                ("JWT_DEFAULT_ROLE", "authenticated"),
                ("JWT_ROLE_MAP", "admin=org_admin"),
                ("JWT_ALLOWED_ROLES", "authenticated,org_admin"),
            ],
            alg: J::RS256,
            signer: Signer::Rsa2,
            kid: Some("a8b3c1d2e4f5061728394a5b6c7d8e9f0a1b2c3d"),
            claims: || {
                json!({
                    "org_id": ORG,
                    "iss": "https://securetoken.google.com/acme-prod",
                    "aud": "acme-prod", "auth_time": IAT,
                    "user_id": "kZ3mP8qR2sT5uV7wX9yA1bC4dE6f",
                    "sub": "kZ3mP8qR2sT5uV7wX9yA1bC4dE6f",
                    "iat": IAT, "exp": EXP,
                    "email": "ada@acme.example", "email_verified": false,
                    "firebase": {
                        "identities": {"email": ["ada@acme.example"]},
                        "sign_in_provider": "password"
                    }
                })
            },
            want: ("kZ3mP8qR2sT5uV7wX9yA1bC4dE6f", ORG, "authenticated"),
        },
        Shape {
            name: "Amazon Cognito (ID token, custom:org_id, cognito:groups)",
            env: &[
                (
                    "JWT_ISSUER",
                    "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEfGhI",
                ),
                ("JWT_AUDIENCE", "3n4b5urk1ft4fl3mg5e62d9ado"),
                ("ORG_CLAIM", "custom:org_id"),
                ("ROLE_CLAIM", "cognito:groups"),
                ("JWT_ROLE_ARRAY", "first"),
                ("JWT_ROLE_MAP", "acme-admins=org_admin"),
                ("JWT_DEFAULT_ROLE", "authenticated"),
                ("JWT_ALLOWED_ROLES", "authenticated,org_admin"),
            ],
            alg: J::RS256,
            signer: Signer::Rsa1,
            kid: Some("0TWbGnQ3Xb7f+QYk9LmN3pQrS5tU7vWxYz1A2B3C4D="),
            claims: || {
                json!({
                    "sub": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
                    "cognito:groups": ["acme-admins", "eu-west-1_AbCdEfGhI_Google"],
                    "email_verified": true,
                    "iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEfGhI",
                    "cognito:username": "ada",
                    "origin_jti": "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e",
                    "aud": "3n4b5urk1ft4fl3mg5e62d9ado",
                    "event_id": "c2d3e4f5-a6b7-4c8d-9e0f-1a2b3c4d5e6f",
                    "token_use": "id", "auth_time": IAT, "exp": EXP, "iat": IAT,
                    "jti": "d3e4f5a6-b7c8-4d9e-0f1a-2b3c4d5e6f7a",
                    "email": "ada@acme.example",
                    "custom:org_id": ORG
                })
            },
            want: ("7c9e6679-7425-40de-944b-e07fc1f90ae7", ORG, "org_admin"),
        },
        Shape {
            name: "Microsoft Entra ID (v2 access token, org = tenant id, app roles)",
            env: &[
                (
                    "JWT_ISSUER",
                    "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
                ),
                ("JWT_AUDIENCE", "api://tenant-guard"),
                ("ORG_CLAIM", "tid"),
                ("ROLE_CLAIM", "roles"),
                ("JWT_ROLE_ARRAY", "exactly_one"),
                (
                    "JWT_ROLE_MAP",
                    "Projects.Admin=org_admin,Projects.User=authenticated",
                ),
                ("JWT_DEFAULT_ROLE", "authenticated"),
                ("JWT_ALLOWED_ROLES", "authenticated,org_admin"),
            ],
            alg: J::RS256,
            signer: Signer::Rsa2,
            kid: Some("L1KfKFI_jnXbwWc9ZxNg5Zv8SYo"),
            claims: || {
                json!({
                    "aud": "api://tenant-guard",
                    "iss": "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
                    "iat": IAT, "nbf": IAT, "exp": EXP,
                    "aio": "AWQAm/8UAAAA3bGz0Xb7f0qYk9LmN3pQ==",
                    "azp": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "azpacr": "0",
                    "name": "Ada Lovelace",
                    "oid": "00000000-0000-0000-66f3-3332eca7ea81",
                    "preferred_username": "ada@acme.onmicrosoft.com",
                    "rh": "0.AVQAQ7Y8W2K3FkChb3_x8G4rFQ.",
                    "roles": ["Projects.Admin"],
                    "scp": "access_as_user",
                    "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
                    "tid": TENANT,
                    "uti": "fqiBqXLPj0eQa82S-IYFAA", "ver": "2.0"
                })
            },
            want: (
                "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
                TENANT,
                "org_admin",
            ),
        },
        Shape {
            name: "Supabase (access token, org in app_metadata)",
            env: &[
                ("JWT_ISSUER", "https://abcdefghijklmnop.supabase.co/auth/v1"),
                ("ORG_CLAIM", "app_metadata.org_id"),
            ],
            alg: J::HS256,
            signer: Signer::Hmac,
            kid: None,
            claims,
            want: ("2b4f8c1e-9d3a-4e5f-8a7b-6c5d4e3f2a1b", ORG, "authenticated"),
        },
    ]
}

impl Shape {
    fn token(&self) -> String {
        mint(self.alg, self.signer, self.kid, &(self.claims)())
    }

    /// The key, as the README's key variables would give it.
    fn key_vars(&self) -> Vec<(&'static str, String)> {
        match self.signer {
            Signer::Hmac => vec![("JWT_SECRET", SECRET.to_owned())],
            Signer::Rsa1 => vec![("JWT_PUBLIC_KEY_FILE", fixture_path("rsa1_public.pem"))],
            Signer::Rsa2 => vec![("JWT_PUBLIC_KEY_FILE", fixture_path("rsa2_public.pem"))],
            other => panic!("no key file for {other:?}"),
        }
    }

    fn builder(&self) -> VerifierBuilder {
        let mut vars: HashMap<&str, String> = self
            .env
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect();
        vars.insert("APP_ENV", "production".into());
        vars.extend(self.key_vars());
        VerifierBuilder::from_lookup(|k| vars.get(k).cloned())
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
            .clock(|| NOW)
    }

    /// The same profile as one `JWT_ISSUERS` entry.
    fn json_entry(&self, index: usize) -> (Value, Option<(String, String)>) {
        let mut entry = json!({});
        for (k, v) in self.env {
            let (member, value) = match *k {
                "JWT_ISSUER" => ("issuer", json!(v)),
                "JWT_AUDIENCE" => ("audience", json!(v.split(',').collect::<Vec<_>>())),
                "ORG_CLAIM" => ("org_claim", json!(v)),
                "ROLE_CLAIM" => ("role_claim", json!(v)),
                "JWT_ROLE_ARRAY" => ("role_array", json!(v)),
                "JWT_DEFAULT_ROLE" => ("default_role", json!(v)),
                "JWT_ALLOWED_ROLES" => ("allowed_roles", json!(v.split(',').collect::<Vec<_>>())),
                "JWT_ROLE_MAP" => {
                    let map: serde_json::Map<String, Value> = v
                        .split(',')
                        .map(|pair| {
                            let (from, to) = pair.split_once('=').unwrap();
                            (from.to_owned(), json!(to))
                        })
                        .collect();
                    ("role_map", Value::Object(map))
                }
                other => panic!("unmapped {other}"),
            };
            entry[member] = value;
        }
        let mut secret = None;
        for (k, v) in self.key_vars() {
            match k {
                "JWT_PUBLIC_KEY_FILE" => entry["public_key_file"] = json!(v),
                "JWT_SECRET" => {
                    let var = format!("IDP_{index}_SECRET");
                    entry["secret_env"] = json!(var);
                    secret = Some((var, v));
                }
                other => panic!("unmapped {other}"),
            }
        }
        (entry, secret)
    }
}

fn principal_of(p: &tenant_guard_core::Principal) -> (String, String, String) {
    (
        p.user_id().to_owned(),
        p.org_id().to_string(),
        p.role().as_str().to_owned(),
    )
}

fn want(shape: &Shape) -> (String, String, String) {
    let (sub, org, role) = shape.want;
    (sub.into(), org.into(), role.into())
}

#[test]
fn each_idp_token_maps_to_its_principal() {
    for shape in shapes() {
        let v = shape
            .builder()
            .build()
            .unwrap_or_else(|e| panic!("{}: {e}", shape.name));
        let p = v
            .verify(&shape.token())
            .unwrap_or_else(|e| panic!("{}: {e}", shape.name));
        assert_eq!(principal_of(&p), want(&shape), "{}", shape.name);
        // The verified claims are kept whole (for request.jwt.claims), not re-shaped.
        assert_eq!(p.claims(), (shape.claims)(), "{}", shape.name);
    }
}

#[test]
fn each_idp_config_refuses_the_usual_mistakes() {
    for shape in shapes() {
        let v = shape.builder().build().unwrap();
        let claims = (shape.claims)();
        let resign = |c: &Value| mint(shape.alg, shape.signer, shape.kid, c);
        let issuer = claims["iss"].as_str().unwrap();
        let cases = [
            (
                with(claims.clone(), "iss", json!(format!("{issuer}x"))),
                AuthError::WrongIssuer,
            ),
            (
                with(claims.clone(), "aud", json!("someone-else")),
                AuthError::WrongAudience,
            ),
            (
                with(claims.clone(), "exp", json!(NOW - 120)),
                AuthError::Expired,
            ),
        ];
        for (bad, err) in cases {
            assert_eq!(v.verify(&resign(&bad)).unwrap_err(), err, "{}", shape.name);
        }
        // Signed by a key the IdP does not hold.
        let foreign = match shape.signer {
            Signer::Rsa1 => mint(J::RS256, Signer::Rsa2, shape.kid, &claims),
            Signer::Rsa2 => mint(J::RS256, Signer::Rsa1, shape.kid, &claims),
            _ => hmac_signed(
                r#"{"alg":"HS256"}"#,
                &claims,
                b"not-the-secret-not-the-secret-not-the",
            ),
        };
        assert_eq!(
            v.verify(&foreign).unwrap_err(),
            AuthError::InvalidSignature,
            "{}",
            shape.name
        );
    }
}

#[test]
fn all_seven_behind_one_verifier_routed_by_iss() {
    let shapes = shapes();
    let mut entries = Vec::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    for (i, shape) in shapes.iter().enumerate() {
        let (entry, secret) = shape.json_entry(i);
        entries.push(entry);
        vars.extend(secret);
    }
    vars.insert("APP_ENV".into(), "production".into());
    vars.insert("JWT_ISSUERS".into(), Value::Array(entries).to_string());
    let v = VerifierBuilder::from_lookup(|k| vars.get(k).cloned())
        .unwrap()
        .clock(|| NOW)
        .build()
        .unwrap();
    assert_eq!(v.issuers().count(), 7);
    for shape in &shapes {
        let p = v
            .verify(&shape.token())
            .unwrap_or_else(|e| panic!("{}: {e}", shape.name));
        assert_eq!(principal_of(&p), want(shape), "{}", shape.name);
    }
    // Every token re-labelled with every other IdP's issuer fails: signature (another key),
    // algorithm (HS256 where only RSA is held, or the reverse), or that IdP's own rules.
    for (i, a) in shapes.iter().enumerate() {
        for (j, b) in shapes.iter().enumerate() {
            if i == j {
                continue;
            }
            let iss = (b.claims)()["iss"].clone();
            let token = mint(a.alg, a.signer, a.kid, &with((a.claims)(), "iss", iss));
            assert!(
                v.verify(&token).is_err(),
                "{} re-labelled as {} was accepted",
                a.name,
                b.name
            );
        }
    }
}
