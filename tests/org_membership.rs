//! Header-selected orgs checked in the database (`GuardConfig::org_membership`) and anonymous
//! route groups (`GuardConfig::allow_anonymous`), through axum, actix-web and tonic, against a
//! real PostgreSQL: the apps of `tests/adversary/apps.rs` with the guard configured for each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod adversary;

use std::time::Duration;

use adversary::apps::{Answer, AppConfig, Req, actix_app, axum_app, tonic_app};
use adversary::faults::{Caller, Env, LOGIN};
use adversary::tokens::{NOW, SECRET, claims, good, with, without};
use serde_json::{Value, json};
use tenant_guard::core::{Environment, IssuerProfile, Role, Verifier};
use tenant_guard::http::{GuardConfig, OrgMembership, OrgPath, TokenOrg, grpc};
use tenant_guard::postgres::{LoginPolicy, Pooler, TenantPool};
use tenant_guard_testkit::{PgBouncerOptions, TestPgBouncer, TestPostgres};
use uuid::Uuid;

const ISSUER: &str = "https://idp.membership.test/";
const READER: &str = "tg_membership_reader";

/// The membership table: readable by the dedicated lookup role only (not by `authenticated`).
fn schema() -> String {
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
            user_id uuid NOT NULL,
            org_id uuid NOT NULL,
            role text NOT NULL,
            PRIMARY KEY (user_id, org_id)
        );
        GRANT SELECT ON memberships TO {READER};
        GRANT SELECT ON notes TO anon;
        CREATE POLICY notes_public ON notes FOR SELECT TO anon USING (body LIKE '%-public');"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framework {
    Axum,
    Actix,
    Tonic,
}

impl Framework {
    async fn send(self, config: &AppConfig, req: &Req) -> Answer {
        match self {
            Self::Axum => axum_app::send(config, req).await,
            Self::Actix => actix_app::send(config, req).await,
            Self::Tonic => tonic_app::send(config, req).await,
        }
    }
}

const ALL: [Framework; 3] = [Framework::Axum, Framework::Actix, Framework::Tonic];

/// A verifier whose issuer's tokens may name no org.
fn verifier() -> Verifier {
    Verifier::builder(Environment::Production)
        .add_issuer(
            IssuerProfile::new(ISSUER)
                .hmac_secret(SECRET)
                .allowed_roles(["authenticated", "org_admin"])
                .org_from_request(true),
        )
        .clock(|| NOW)
        .build()
        .expect("verifier")
}

/// A token of `user` without an org.
fn token(user: Uuid) -> String {
    good(&with(
        with(without(claims(), "org_id"), "sub", json!(user)),
        "iss",
        json!(ISSUER),
    ))
}

/// A token of `user` naming `org`.
fn org_token(user: Uuid, org: Uuid) -> String {
    good(&with(
        with(with(claims(), "org_id", json!(org)), "sub", json!(user)),
        "iss",
        json!(ISSUER),
    ))
}

fn req(method: &str, path: &str, token: Option<&str>, org: Option<&str>) -> Req {
    let mut req = if method == "GET" {
        Req::get(path)
    } else {
        Req::post(path)
    };
    if let Some(token) = token {
        req = req.bearer(token);
    }
    if let Some(org) = org {
        req = req.header("x-org-id", org);
    }
    req
}

/// Status and (HTTP frameworks) error code.
fn expect(fw: Framework, answer: &Answer, status: u16, code: Option<&str>, what: &str) {
    if fw == Framework::Tonic {
        // Compared through the guard's status mapping (a success is `OK`).
        let want = if status < 300 {
            0
        } else {
            grpc::code(http::StatusCode::from_u16(status).unwrap())
        };
        let got = answer
            .header("grpc-status")
            .map_or(0, |s| s.parse().unwrap());
        assert_eq!(got, want, "{fw:?}: {what}: {answer:?}");
    } else {
        assert_eq!(answer.status, status, "{fw:?}: {what}: {answer:?}");
    }
    if let Some(code) = code
        && fw != Framework::Tonic
    {
        assert_eq!(answer.error_code(), code, "{fw:?}: {what}");
    }
}

#[actix_web::test]
async fn header_selected_orgs_are_checked_in_the_database() {
    let server = TestPostgres::shared().expect("test server");
    for fw in ALL {
        let env = Env::new(server, 2, |b| b).await;
        env.admin.batch_execute(&schema()).await.expect("schema");
        let membership = OrgMembership::from_header(
            http::HeaderName::from_static("x-org-id"),
            Role::new(READER).unwrap(),
        )
        .cache(2, Duration::from_secs(600));
        let cache = membership.cache_handle();
        let mut config = AppConfig::new(verifier()).pool(env.pool.clone());
        config.nested_guard = Some(GuardConfig::new(verifier()).org_membership(membership.clone()));
        config.shared_guard = Some(config.guard().org_membership(membership));

        let (user, x, y, z, w) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        // In w, a (hostile) row grants a role that is no user role of the pool.
        env.admin
            .execute(
                "INSERT INTO memberships VALUES ($1, $2, 'authenticated'), ($1, $3, 'authenticated'), \
                 ($1, $4, 'service_role')",
                &[&user, &x, &z, &w],
            )
            .await
            .unwrap();
        let t = token(user);
        let (xs, ys, zs) = (x.to_string(), y.to_string(), z.to_string());
        let tag = format!("{fw:?}-m");

        // A member: scoped to the chosen org, with the membership's role.
        let a = fw
            .send(
                &config,
                &req("POST", &format!("/notes/{tag}-x"), Some(&t), Some(&xs)),
            )
            .await;
        expect(fw, &a, 201, None, "member writes");
        let a = fw
            .send(&config, &req("GET", "/notes", Some(&t), Some(&xs)))
            .await;
        expect(fw, &a, 200, None, "member reads");
        assert_eq!(
            a.json(),
            json!([{"org_id": xs, "body": format!("{tag}-x")}]),
            "{fw:?}"
        );
        let me = fw
            .send(&config, &req("GET", "/me", Some(&t), Some(&zs)))
            .await;
        expect(fw, &me, 200, None, "member of z");
        assert_eq!(me.json()["org_id"], Value::String(zs.clone()), "{fw:?}");
        assert_eq!(
            me.json()["role"],
            "authenticated",
            "{fw:?}: the membership's role"
        );
        let a = fw
            .send(&config, &req("GET", "/me", Some(&t), Some(&w.to_string())))
            .await;
        expect(
            fw,
            &a,
            403,
            Some("role_not_allowed"),
            "a membership granting service_role",
        );

        // Not a member; no org; a malformed org.
        let a = fw
            .send(
                &config,
                &req("POST", &format!("/notes/{tag}-y"), Some(&t), Some(&ys)),
            )
            .await;
        expect(fw, &a, 403, Some("not_a_member"), "non-member");
        let a = fw
            .send(&config, &req("GET", "/notes", Some(&t), None))
            .await;
        expect(fw, &a, 400, Some("org_required"), "no org");
        let a = fw
            .send(
                &config,
                &req("GET", "/notes", Some(&t), Some("x'; DROP TABLE notes")),
            )
            .await;
        expect(fw, &a, 400, Some("invalid_org_header"), "malformed org");
        // A bad token is still 401, header or not.
        let a = fw
            .send(
                &config,
                &req("GET", "/notes", Some("not.a.token"), Some(&xs)),
            )
            .await;
        expect(fw, &a, 401, None, "bad token");

        // The cache is bounded (x, z, w, y were looked up; capacity 2).
        assert!(cache.len() <= 2, "{fw:?}: {} cached", cache.len());

        // Revoked: the cached answer holds until invalidated, then 403.
        cache.clear();
        let a = fw
            .send(&config, &req("GET", "/notes", Some(&t), Some(&xs)))
            .await;
        expect(fw, &a, 200, None, "member again (cached now)");
        env.admin
            .execute("DELETE FROM memberships WHERE user_id = $1", &[&user])
            .await
            .unwrap();
        let a = fw
            .send(&config, &req("GET", "/notes", Some(&t), Some(&xs)))
            .await;
        expect(fw, &a, 200, None, "revoked but cached");
        cache.invalidate(&user.to_string(), x);
        let a = fw
            .send(&config, &req("GET", "/notes", Some(&t), Some(&xs)))
            .await;
        expect(
            fw,
            &a,
            403,
            Some("not_a_member"),
            "revoked after invalidation",
        );

        // A token naming its org is authoritative: another org in the header is 403.
        let owned = org_token(user, y);
        let a = fw
            .send(&config, &req("GET", "/me", Some(&owned), Some(&xs)))
            .await;
        expect(
            fw,
            &a,
            403,
            Some("org_mismatch"),
            "header against the token's org",
        );
        let a = fw
            .send(&config, &req("GET", "/me", Some(&owned), Some(&ys)))
            .await;
        expect(fw, &a, 200, None, "header naming the token's org");
        assert_eq!(a.json()["org_id"], Value::String(ys.clone()), "{fw:?}");

        let notes = env.notes().await;
        assert_eq!(
            notes
                .iter()
                .filter(|(_, b)| b.starts_with(&tag))
                .collect::<Vec<_>>(),
            vec![&(x, format!("{tag}-x"))],
            "{fw:?}: only the member's write, in the chosen org"
        );
        env.assert_pool_clean().await;
    }
}

/// Without `org_membership`, an org header is ignored (the token's org scopes) and a token
/// without an org is refused.
#[actix_web::test]
async fn the_org_header_is_ignored_without_the_feature() {
    let server = TestPostgres::shared().expect("test server");
    for fw in ALL {
        let env = Env::new(server, 2, |b| b).await;
        let caller = Caller::new();
        let other = Uuid::new_v4().to_string();
        let a = fw
            .send(&env.app, &caller.get("/me").header("x-org-id", &other))
            .await;
        expect(fw, &a, 200, None, "header ignored");
        assert_eq!(a.json()["org_id"], Value::String(caller.org.to_string()));
        let config = AppConfig::new(verifier()).pool(env.pool.clone());
        let a = fw
            .send(
                &config,
                &req("GET", "/me", Some(&token(Uuid::new_v4())), Some(&other)),
            )
            .await;
        expect(fw, &a, 403, Some("invalid_org"), "no org, no feature");
    }
}

/// `allow_anonymous`: no token → the `anon` role (RLS decides); a bad token → 401.
#[actix_web::test]
async fn anonymous_route_groups_are_scoped_to_anon() {
    let server = TestPostgres::shared().expect("test server");
    for fw in ALL {
        let env = Env::new(server, 2, |b| b).await;
        env.admin.batch_execute(&schema()).await.expect("schema");
        let caller = Caller::new();
        let tag = format!("{fw:?}-anon");
        for body in ["public", "private"] {
            let a = fw
                .send(&env.app, &caller.post(&format!("/notes/{tag}-{body}")))
                .await;
            expect(fw, &a, 201, None, "setup");
        }
        let mut config = env.app.clone();
        let anon = Role::new("anon").unwrap();
        config.nested_guard =
            Some(GuardConfig::new(config.verifier.clone()).allow_anonymous(anon.clone()));
        config.shared_guard = Some(config.guard().allow_anonymous(anon));
        let a = fw.send(&config, &Req::get("/notes")).await;
        expect(fw, &a, 200, None, "anonymous read");
        assert_eq!(
            a.json(),
            json!([{"org_id": caller.org.to_string(), "body": format!("{tag}-public")}]),
            "{fw:?}: RLS shows anon the public note only"
        );
        let me = fw.send(&config, &Req::get("/me")).await;
        expect(fw, &me, 200, None, "anonymous principal");
        assert_eq!(me.json()["role"], "anon", "{fw:?}");
        assert_eq!(me.json()["user_id"], "", "{fw:?}");
        let a = fw
            .send(&config, &Req::get("/notes").bearer("not.a.token"))
            .await;
        expect(fw, &a, 401, None, "bad token");
        assert!(a.header("www-authenticate").is_some(), "{fw:?}");
        let a = fw
            .send(&config, &Req::post(&format!("/notes/{tag}-w")))
            .await;
        assert!(a.status >= 400, "{fw:?}: anon cannot write: {a:?}");
        let a = fw.send(&config, &caller.get("/me")).await;
        assert_eq!(
            a.json()["role"],
            "authenticated",
            "{fw:?}: tokens still work"
        );
        // Without the opt-in, no token is 401.
        let a = fw.send(&env.app, &Req::get("/notes")).await;
        expect(fw, &a, 401, Some("missing_token"), "no opt-in");
        env.assert_pool_clean().await;
    }
}

/// Behind a transaction-mode PgBouncer (`Pooler::Transaction`, one server connection): the
/// membership lookup sends no named statement (its parameters go as untyped text the server
/// types from the SQL), members are scoped, non-members refused, a `sub` the `uuid` column
/// cannot hold is no member (not a 5xx), and no prepared statement is left on the server
/// connection the next transaction gets.
#[actix_web::test]
async fn header_selected_orgs_work_behind_a_transaction_mode_pooler() {
    let server = TestPostgres::shared().expect("test server");
    let bouncer = TestPgBouncer::start(
        server,
        PgBouncerOptions::default().default_pool_size(1).user(LOGIN),
    )
    .expect("PgBouncer (Debian: apt-get install pgbouncer)");
    for fw in ALL {
        let env = Env::new(server, 2, |b| b).await;
        env.admin.batch_execute(&schema()).await.expect("schema");
        let mut login = bouncer.config(&env.db);
        login.user(LOGIN);
        let pool = TenantPool::builder(login)
            .pooler(Pooler::Transaction)
            .login_policy(LoginPolicy::Refuse)
            .max_size(4)
            .wait_timeout(Duration::from_secs(10))
            .build()
            .expect("pool through PgBouncer");
        let membership = OrgMembership::from_header(
            http::HeaderName::from_static("x-org-id"),
            Role::new(READER).unwrap(),
        )
        // Every request asks the database: the lookup itself is what is tested.
        .cache(0, Duration::from_secs(600));
        membership
            .check(&pool)
            .await
            .expect("the startup check, unnamed");
        let mut config = AppConfig::new(verifier()).pool(pool.clone());
        config.nested_guard = Some(GuardConfig::new(verifier()).org_membership(membership.clone()));
        config.shared_guard = Some(config.guard().org_membership(membership));

        let (user, x, y) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        env.admin
            .execute(
                "INSERT INTO memberships VALUES ($1, $2, 'authenticated')",
                &[&user, &x],
            )
            .await
            .unwrap();
        let t = token(user);
        let (xs, ys) = (x.to_string(), y.to_string());
        let tag = format!("{fw:?}-pooler");
        for round in 0..3 {
            let a = fw
                .send(
                    &config,
                    &req(
                        "POST",
                        &format!("/notes/{tag}-{round}"),
                        Some(&t),
                        Some(&xs),
                    ),
                )
                .await;
            expect(fw, &a, 201, None, "member writes through the pooler");
            let a = fw
                .send(&config, &req("GET", "/me", Some(&t), Some(&ys)))
                .await;
            expect(fw, &a, 403, Some("not_a_member"), "non-member");
        }
        let me = fw
            .send(&config, &req("GET", "/me", Some(&t), Some(&xs)))
            .await;
        expect(fw, &me, 200, None, "member");
        assert_eq!(me.json()["org_id"], Value::String(xs.clone()), "{fw:?}");
        // `sub` is no UUID, the column is: no member (SQLSTATE 22P02 in the lookup), not a 5xx.
        let odd = good(&with(
            with(without(claims(), "org_id"), "sub", json!("not-a-uuid")),
            "iss",
            json!(ISSUER),
        ));
        let a = fw
            .send(&config, &req("GET", "/me", Some(&odd), Some(&xs)))
            .await;
        expect(
            fw,
            &a,
            403,
            Some("not_a_member"),
            "a sub the column cannot hold",
        );

        let notes = env.notes().await;
        let mine: Vec<_> = notes.iter().filter(|(_, b)| b.starts_with(&tag)).collect();
        assert_eq!(mine.len(), 3, "{fw:?}: {notes:?}");
        assert!(mine.iter().all(|(org, _)| *org == x), "{fw:?}: {mine:?}");
        // The one server connection holds no named statement.
        let tx = pool
            .begin_membership_lookup(&Role::new(READER).unwrap())
            .await
            .unwrap();
        let named: i64 = tx
            .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(named, 0, "{fw:?}: a named statement behind the pooler");
        tx.rollback().await.unwrap();
    }
}

/// `TokenOrg::Default`: the token's org is where a request lands without a header (with the
/// token's role, no lookup); a header naming another org overrides it only after the membership
/// check (403 `not_a_member` otherwise), with the membership's role; a malformed header is still
/// 400. The default (`Authoritative`) refuses the same header with `org_mismatch`.
#[actix_web::test]
async fn a_default_token_org_yields_to_a_checked_header() {
    let server = TestPostgres::shared().expect("test server");
    for fw in ALL {
        let env = Env::new(server, 2, |b| b).await;
        env.admin.batch_execute(&schema()).await.expect("schema");
        let membership = OrgMembership::from_header(
            http::HeaderName::from_static("x-org-id"),
            Role::new(READER).unwrap(),
        )
        .token_org(TokenOrg::Default)
        .cache(100, Duration::from_secs(600));
        let cache = membership.cache_handle();
        let mut config = AppConfig::new(verifier()).pool(env.pool.clone());
        config.nested_guard = Some(GuardConfig::new(verifier()).org_membership(membership.clone()));
        config.shared_guard = Some(config.guard().org_membership(membership));
        let mut strict = AppConfig::new(verifier()).pool(env.pool.clone());
        let authoritative = OrgMembership::from_header(
            http::HeaderName::from_static("x-org-id"),
            Role::new(READER).unwrap(),
        );
        strict.nested_guard =
            Some(GuardConfig::new(verifier()).org_membership(authoritative.clone()));
        strict.shared_guard = Some(strict.guard().org_membership(authoritative));

        // The token names y (no membership row needed there: the token says so); the user is a
        // member of x, and of w with the role anon; of nothing else.
        let (user, x, y, z, w) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        env.admin
            .execute(
                "INSERT INTO memberships VALUES ($1, $2, 'authenticated'), ($1, $3, 'anon')",
                &[&user, &x, &w],
            )
            .await
            .unwrap();
        let t = org_token(user, y);
        let (xs, ys, zs) = (x.to_string(), y.to_string(), z.to_string());
        let tag = format!("{fw:?}-default");

        for (header, what) in [(None, "no header"), (Some(ys.as_str()), "the token's org")] {
            let me = fw.send(&config, &req("GET", "/me", Some(&t), header)).await;
            expect(fw, &me, 200, None, what);
            assert_eq!(
                me.json()["org_id"],
                Value::String(ys.clone()),
                "{fw:?}: {what}"
            );
            assert_eq!(
                me.json()["role"],
                "authenticated",
                "{fw:?}: the token's role"
            );
        }
        let me = fw
            .send(&config, &req("GET", "/me", Some(&t), Some(&xs)))
            .await;
        expect(fw, &me, 200, None, "a checked header overrides");
        assert_eq!(me.json()["org_id"], Value::String(xs.clone()), "{fw:?}");
        let me = fw
            .send(&config, &req("GET", "/me", Some(&t), Some(&w.to_string())))
            .await;
        expect(fw, &me, 200, None, "another checked header");
        assert_eq!(me.json()["role"], "anon", "{fw:?}: the membership's role");
        let a = fw
            .send(
                &config,
                &req("POST", &format!("/notes/{tag}-x"), Some(&t), Some(&xs)),
            )
            .await;
        expect(fw, &a, 201, None, "writes in the overriding org");
        let a = fw
            .send(
                &config,
                &req("POST", &format!("/notes/{tag}-z"), Some(&t), Some(&zs)),
            )
            .await;
        expect(
            fw,
            &a,
            403,
            Some("not_a_member"),
            "a header org without membership",
        );
        let a = fw
            .send(&config, &req("GET", "/me", Some(&t), Some("' OR 1=1 --")))
            .await;
        expect(fw, &a, 400, Some("invalid_org_header"), "malformed header");
        // Authoritative (the default) refuses the same override.
        let a = fw
            .send(&strict, &req("GET", "/me", Some(&t), Some(&xs)))
            .await;
        expect(fw, &a, 403, Some("org_mismatch"), "authoritative token org");

        // Revoked and invalidated: the override is refused, the token's own org still works.
        env.admin
            .execute("DELETE FROM memberships WHERE user_id = $1", &[&user])
            .await
            .unwrap();
        cache.invalidate_user(&user.to_string());
        let a = fw
            .send(&config, &req("GET", "/me", Some(&t), Some(&xs)))
            .await;
        expect(fw, &a, 403, Some("not_a_member"), "revoked override");
        let a = fw.send(&config, &req("GET", "/me", Some(&t), None)).await;
        expect(fw, &a, 200, None, "the token's org after the revocation");
        let notes = env.notes().await;
        let mine: Vec<_> = notes.iter().filter(|(_, b)| b.starts_with(&tag)).collect();
        assert_eq!(
            mine,
            vec![&(x, format!("{tag}-x"))],
            "{fw:?}: written in x only"
        );
        env.assert_pool_clean().await;
    }
}

/// The org named in the path (`OrgMembership::from_path("/orgs/{org}")`), through axum and
/// actix: checked by the same membership lookup; a malformed or percent-encoded segment is 400
/// `invalid_org_path`; a path outside the template names no org (and the header is not read);
/// a token's own org is authoritative against the path.
#[actix_web::test]
async fn orgs_named_in_the_path_are_checked_in_the_database() {
    let server = TestPostgres::shared().expect("test server");
    for fw in [Framework::Axum, Framework::Actix] {
        let env = Env::new(server, 2, |b| b).await;
        env.admin.batch_execute(&schema()).await.expect("schema");
        let membership = OrgMembership::from_path(
            OrgPath::new("/orgs/{org}").unwrap(),
            Role::new(READER).unwrap(),
        )
        .cache(100, Duration::from_secs(600));
        let cache = membership.cache_handle();
        let mut config = AppConfig::new(verifier()).pool(env.pool.clone());
        config.shared_guard = Some(config.guard().org_membership(membership));

        let (user, x, y) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        env.admin
            .execute(
                "INSERT INTO memberships VALUES ($1, $2, 'authenticated')",
                &[&user, &x],
            )
            .await
            .unwrap();
        // Notes in x and y, written directly.
        env.admin
            .execute(
                "INSERT INTO notes (org_id, body) VALUES ($1, 'in-x'), ($2, 'in-y')",
                &[&x, &y],
            )
            .await
            .unwrap();
        let t = token(user);
        let (xs, ys) = (x.to_string(), y.to_string());

        let me = fw
            .send(
                &config,
                &req("GET", &format!("/orgs/{xs}/me"), Some(&t), None),
            )
            .await;
        expect(fw, &me, 200, None, "member, org in the path");
        assert_eq!(me.json()["org_id"], Value::String(xs.clone()), "{fw:?}");
        let notes = fw
            .send(
                &config,
                &req("GET", &format!("/orgs/{xs}/notes"), Some(&t), None),
            )
            .await;
        expect(fw, &notes, 200, None, "member lists");
        assert_eq!(
            notes.json(),
            json!([{"org_id": xs, "body": "in-x"}]),
            "{fw:?}: the path's org only"
        );
        let a = fw
            .send(
                &config,
                &req("GET", &format!("/orgs/{ys}/notes"), Some(&t), None),
            )
            .await;
        expect(fw, &a, 403, Some("not_a_member"), "non-member");
        for bad in [
            "not-a-uuid".to_owned(),
            format!("%35{}", &xs[1..]),
            format!("{xs}%00"),
            "1".repeat(4096),
        ] {
            let a = fw
                .send(
                    &config,
                    &req("GET", &format!("/orgs/{bad}/me"), Some(&t), None),
                )
                .await;
            expect(
                fw,
                &a,
                400,
                Some("invalid_org_path"),
                &format!("segment {bad:.40}"),
            );
        }
        // Outside the template no org is named; the header is not the source here.
        let a = fw
            .send(&config, &req("GET", "/me", Some(&t), Some(&xs)))
            .await;
        expect(fw, &a, 400, Some("org_required"), "no org in the path");
        // A token naming its org: the path may name the same org, not another.
        let owned = org_token(user, y);
        let a = fw
            .send(
                &config,
                &req("GET", &format!("/orgs/{xs}/me"), Some(&owned), None),
            )
            .await;
        expect(
            fw,
            &a,
            403,
            Some("org_mismatch"),
            "path against the token's org",
        );
        let a = fw
            .send(
                &config,
                &req("GET", &format!("/orgs/{ys}/me"), Some(&owned), None),
            )
            .await;
        expect(fw, &a, 200, None, "the token's org in the path");
        let a = fw
            .send(&config, &req("GET", "/me", Some(&owned), None))
            .await;
        expect(fw, &a, 200, None, "the token's org, no org in the path");
        // Revoked and invalidated: refused.
        env.admin
            .execute("DELETE FROM memberships WHERE user_id = $1", &[&user])
            .await
            .unwrap();
        cache.invalidate_org(x);
        let a = fw
            .send(
                &config,
                &req("GET", &format!("/orgs/{xs}/me"), Some(&t), None),
            )
            .await;
        expect(fw, &a, 403, Some("not_a_member"), "revoked");
        env.assert_pool_clean().await;
    }
}

/// Integer org ids (`OrgIdKind::Integer`): the notes and memberships tables keyed by `bigint`.
fn integer_schema() -> String {
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
        DROP POLICY notes_org ON notes;
        ALTER TABLE notes ALTER COLUMN org_id DROP DEFAULT;
        ALTER TABLE notes ALTER COLUMN org_id TYPE bigint USING 0;
        ALTER TABLE notes ALTER COLUMN org_id SET DEFAULT tenant_guard.org_id_bigint();
        CREATE POLICY notes_org ON notes FOR ALL TO authenticated
            USING (org_id = (SELECT tenant_guard.org_id_bigint()))
            WITH CHECK (org_id = (SELECT tenant_guard.org_id_bigint()));
        CREATE TABLE memberships (
            user_id uuid NOT NULL,
            org_id bigint NOT NULL,
            role text NOT NULL,
            PRIMARY KEY (user_id, org_id)
        );
        GRANT SELECT ON memberships TO {READER};"
    )
}

/// Header-selected **integer** orgs: the header is parsed as the issuer's kind (a decimal
/// `i64`), the lookup binds it as `bigint`, and the request is scoped to that org under RLS.
#[actix_web::test]
async fn header_selected_integer_orgs_are_checked_in_the_database() {
    use tenant_guard::core::OrgIdKind;
    let server = TestPostgres::shared().expect("test server");
    let verifier = || {
        Verifier::builder(Environment::Production)
            .add_issuer(
                IssuerProfile::new(ISSUER)
                    .hmac_secret(SECRET)
                    .org_id_kind(OrgIdKind::Integer)
                    .org_from_request(true),
            )
            .clock(|| NOW)
            .build()
            .expect("verifier")
    };
    for fw in ALL {
        let env = Env::new(server, 2, |b| b).await;
        env.admin
            .batch_execute(&integer_schema())
            .await
            .expect("schema");
        let membership = OrgMembership::from_header(
            http::HeaderName::from_static("x-org-id"),
            Role::new(READER).unwrap(),
        );
        let cache = membership.cache_handle();
        let mut config = AppConfig::new(verifier()).pool(env.pool.clone());
        config.nested_guard = Some(GuardConfig::new(verifier()).org_membership(membership.clone()));
        config.shared_guard = Some(config.guard().org_membership(membership));

        let user = Uuid::new_v4();
        env.admin
            .execute(
                "INSERT INTO memberships VALUES ($1, 101, 'authenticated'), ($1, -5, 'authenticated')",
                &[&user],
            )
            .await
            .unwrap();
        let t = token(user);
        let tag = format!("{fw:?}-int");

        // A member of 101: writes and reads there, as an integer org.
        let a = fw
            .send(
                &config,
                &req("POST", &format!("/notes/{tag}-101"), Some(&t), Some("101")),
            )
            .await;
        expect(fw, &a, 201, None, "member of 101 writes");
        let a = fw
            .send(&config, &req("GET", "/notes", Some(&t), Some("101")))
            .await;
        expect(fw, &a, 200, None, "member of 101 reads");
        assert_eq!(
            a.json(),
            json!([{"org_id": "101", "body": format!("{tag}-101")}]),
            "{fw:?}"
        );
        let me = fw
            .send(&config, &req("GET", "/me", Some(&t), Some("-5")))
            .await;
        expect(fw, &me, 200, None, "member of -5");
        assert_eq!(me.json()["org_id"], json!(-5), "{fw:?}: an integer org");
        let a = fw
            .send(&config, &req("GET", "/notes", Some(&t), Some("-5")))
            .await;
        expect(fw, &a, 200, None, "member of -5 reads");
        assert_eq!(a.json(), json!([]), "{fw:?}: nothing of 101 in -5");

        // Not a member; malformed integers and other kinds are 400, never a lookup.
        let a = fw
            .send(&config, &req("GET", "/notes", Some(&t), Some("102")))
            .await;
        expect(fw, &a, 403, Some("not_a_member"), "non-member of 102");
        for bad in [
            "0101",
            "+101",
            "101.0",
            "1e2",
            "9223372036854775808",
            "acme",
            "7d0a3d39-3a4b-4c49-9a41-5bd2f1a1f0aa",
        ] {
            let a = fw
                .send(&config, &req("GET", "/notes", Some(&t), Some(bad)))
                .await;
            expect(fw, &a, 400, Some("invalid_org_header"), bad);
        }
        assert_eq!(cache.len(), 3, "{fw:?}: 101, -5 and 102 were looked up");

        // Revocation through the typed cache key.
        env.admin
            .execute("DELETE FROM memberships WHERE org_id = 101", &[])
            .await
            .unwrap();
        cache.invalidate_org(101_i64);
        let a = fw
            .send(&config, &req("GET", "/notes", Some(&t), Some("101")))
            .await;
        expect(fw, &a, 403, Some("not_a_member"), "revoked");

        // A token naming its integer org is authoritative.
        let owned = good(&with(
            with(with(claims(), "org_id", json!(102)), "sub", json!(user)),
            "iss",
            json!(ISSUER),
        ));
        let a = fw
            .send(&config, &req("GET", "/me", Some(&owned), Some("101")))
            .await;
        expect(
            fw,
            &a,
            403,
            Some("org_mismatch"),
            "header against the token's org",
        );
        let a = fw
            .send(&config, &req("GET", "/me", Some(&owned), Some("102")))
            .await;
        expect(fw, &a, 200, None, "header naming the token's org");
        assert_eq!(a.json()["org_id"], json!(102), "{fw:?}");
        env.assert_pool_clean().await;
    }
}

/// Header-selected **text** orgs (slugs): the lookup binds `$2` as text, the request is scoped to
/// the slug under RLS, malformed slugs are 400 before any lookup.
#[actix_web::test]
async fn header_selected_text_orgs_are_checked_in_the_database() {
    use tenant_guard::core::OrgIdKind;
    let server = TestPostgres::shared().expect("test server");
    let verifier = || {
        Verifier::builder(Environment::Production)
            .add_issuer(
                IssuerProfile::new(ISSUER)
                    .hmac_secret(SECRET)
                    .org_id_kind(OrgIdKind::Text)
                    .org_from_request(true),
            )
            .clock(|| NOW)
            .build()
            .expect("verifier")
    };
    let fw = Framework::Axum;
    let env = Env::new(server, 2, |b| b).await;
    let schema = integer_schema()
        .replace("TYPE bigint USING 0", "TYPE text USING ''")
        .replace("org_id_bigint()", "org_id_text()")
        .replace("org_id bigint NOT NULL", "org_id text NOT NULL");
    env.admin.batch_execute(&schema).await.expect("schema");
    let membership = OrgMembership::from_header(
        http::HeaderName::from_static("x-org-id"),
        Role::new(READER).unwrap(),
    );
    let mut config = AppConfig::new(verifier()).pool(env.pool.clone());
    config.nested_guard = Some(GuardConfig::new(verifier()).org_membership(membership.clone()));
    config.shared_guard = Some(config.guard().org_membership(membership));
    let user = Uuid::new_v4();
    env.admin
        .execute(
            "INSERT INTO memberships VALUES ($1, 'acme', 'authenticated')",
            &[&user],
        )
        .await
        .unwrap();
    let t = token(user);
    let a = fw
        .send(
            &config,
            &req("POST", "/notes/text-acme", Some(&t), Some("acme")),
        )
        .await;
    expect(fw, &a, 201, None, "member of acme writes");
    let a = fw
        .send(&config, &req("GET", "/notes", Some(&t), Some("acme")))
        .await;
    expect(fw, &a, 200, None, "member of acme reads");
    assert_eq!(a.json(), json!([{"org_id": "acme", "body": "text-acme"}]));
    let me = fw
        .send(&config, &req("GET", "/me", Some(&t), Some("acme")))
        .await;
    assert_eq!(me.json()["org_id"], "acme");
    for (org, status, code) in [
        ("ACME", 403, "not_a_member"),
        ("globex", 403, "not_a_member"),
        ("acme/x", 400, "invalid_org_header"),
        ("acme'--", 400, "invalid_org_header"),
        ("ac%20me", 400, "invalid_org_header"),
    ] {
        let a = fw
            .send(&config, &req("GET", "/notes", Some(&t), Some(org)))
            .await;
        expect(fw, &a, status, Some(code), org);
    }
    env.assert_pool_clean().await;
}
