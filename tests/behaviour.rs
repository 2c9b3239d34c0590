//! The guard's behaviour, one table driven through every framework: axum (in process), actix-web
//! (`actix_web::test`) and tonic (a real gRPC server on a local port, through a tonic client).
//! It replaces the adapters' mirrored test files (observability, rate limit, tenant_db): each
//! row is written once and must hold for all three.
//!
//! Per step the table names the request and the answer; the harness also checks, for every
//! framework and every step, the request's one `request` span (its id, its identity fields only
//! when admitted, its `error_code` when refused, the W3C trace context when sent, the route
//! template for the HTTP frameworks), that no token reaches the logs, and, per row, which writes
//! were committed. gRPC answers are compared through the guard's status mapping (401 →
//! `UNAUTHENTICATED`, 403 → `PERMISSION_DENIED`, 429 → `RESOURCE_EXHAUSTED`, 503 →
//! `UNAVAILABLE`, …; a success is `OK`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod adversary;

use std::time::Duration;

use adversary::apps::{Answer, AppConfig, Req, actix_app, axum_app, tonic_app};
use adversary::faults::{Caller, Env};
use serde_json::Value;
use tenant_guard::core::RateLimiter;
use tenant_guard::http::grpc;
use tenant_guard::postgres::tokio_postgres::Config;
use tenant_guard::postgres::{OnDatabaseError, PgRateLimiter, TenantPool};
use tenant_guard_testkit::TestPostgres;
use tenant_guard_testkit::capture::Capture;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framework {
    Axum,
    Actix,
    Tonic,
}

const ALL: [Framework; 3] = [Framework::Axum, Framework::Actix, Framework::Tonic];

impl Framework {
    async fn send(self, config: &AppConfig, req: &Req) -> Answer {
        match self {
            Self::Axum => axum_app::send(config, req).await,
            Self::Actix => actix_app::send(config, req).await,
            Self::Tonic => tonic_app::send(config, req).await,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Axum => "axum",
            Self::Actix => "actix",
            Self::Tonic => "tonic",
        }
    }
}

/// Who sends a step.
#[derive(Debug, Clone, Copy)]
enum Who {
    Nobody,
    A,
    B,
}

/// What a step must get.
#[derive(Debug, Clone)]
enum Expect {
    /// This status (a success: `OK` for gRPC).
    Status(u16),
    /// The guard's (or the handler's) error answer: status and JSON `error` code; for gRPC the
    /// mapped code.
    Error(u16, &'static str),
    /// 200 with this JSON body (`{org_a}`/`{org_b}` stand for the callers' orgs, `{t}` for the
    /// row's tag).
    Json(&'static str),
}

#[derive(Debug, Clone)]
struct Step {
    who: Who,
    method: &'static str,
    /// `{t}` is replaced by the row's tag (framework and row number), so rows never collide.
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    expect: Expect,
    /// `RateLimit-Remaining` the answer must carry.
    remaining: Option<&'static str>,
    /// `trace_id` the request span must carry.
    trace_id: Option<&'static str>,
}

fn step(who: Who, method: &'static str, path: &'static str, expect: Expect) -> Step {
    Step {
        who,
        method,
        path,
        headers: Vec::new(),
        expect,
        remaining: None,
        trace_id: None,
    }
}

/// How a row's app is configured.
#[derive(Debug, Clone, Copy)]
enum Setup {
    /// A pool of two on the row's database.
    Pool,
    /// No pool at all.
    NoPool,
    /// A pool and an in-memory limit of `n` per minute per org.
    Limit(u32),
    /// A pool and a shared (PostgreSQL) limiter whose database is unreachable.
    LimiterDown,
    /// The same, with `OnDatabaseError::Allow`: requests pass without a budget.
    LimiterDownAllow,
    /// A pool of its own, which must still be unopened after the row (nothing reached it).
    FreshPool,
}

impl Setup {
    /// The in-memory limit, if any, for the `RateLimit-*` checks (`None`: not checked, the
    /// shared limiter's own rows).
    fn limit(self) -> Option<Option<u32>> {
        match self {
            Self::Limit(n) => Some(Some(n)),
            Self::LimiterDown | Self::LimiterDownAllow => None,
            Self::Pool | Self::NoPool | Self::FreshPool => Some(None),
        }
    }
}

/// The error codes of the guard's own refusals (before the handler): the span carries them and
/// no identity (429 and the limiter's 503 come after authentication: identity, then the code).
const GUARD_CODES: &[&str] = &[
    "missing_token",
    "malformed_authorization_header",
    "invalid_signature",
    "malformed_token",
    "token_expired",
    "role_not_allowed",
    "rate_limited",
    "rate_limit_unavailable",
];

/// The headers of a 429 from an HTTP framework, but for `x-request-id`, `content-length` and
/// `date` (both adapters and the tower layer answer with exactly these).
const RATE_LIMITED_HEADERS: [&str; 5] = [
    "content-type",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
];

struct Row {
    name: &'static str,
    setup: Setup,
    steps: Vec<Step>,
    /// Suffixes of notes (`{t}-<suffix>`) that must be committed, and that must not be.
    kept: &'static [&'static str],
    gone: &'static [&'static str],
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn rows() -> Vec<Row> {
    use Expect::{Error, Json, Status};
    use Who::{A, B, Nobody};
    vec![
        Row {
            name: "the verified principal reaches the handler",
            setup: Setup::NoPool,
            steps: vec![step(
                A,
                "GET",
                "/me",
                Json(r#"{"user_id":"{sub_a}","org_id":"{org_a}","role":"authenticated"}"#),
            )],
            kept: &[],
            gone: &[],
        },
        Row {
            name: "no token: 401 before anything else; the pool is never opened",
            setup: Setup::FreshPool,
            steps: vec![step(Nobody, "GET", "/notes", Error(401, "missing_token"))],
            kept: &[],
            gone: &[],
        },
        Row {
            name: "a success commits, a refusal rolls back",
            setup: Setup::Pool,
            steps: vec![
                step(A, "POST", "/notes/{t}-kept", Status(201)),
                step(A, "POST", "/notes/{t}-refused/refuse", Status(422)),
            ],
            kept: &["kept"],
            gone: &["refused"],
        },
        Row {
            name: "every 2xx/3xx answer commits, every other status rolls back",
            setup: Setup::Pool,
            steps: vec![
                step(A, "POST", "/notes/{t}-200/status/200", Status(200)),
                step(A, "POST", "/notes/{t}-204/status/204", Status(204)),
                step(A, "POST", "/notes/{t}-303/status/303", Status(303)),
                step(A, "POST", "/notes/{t}-400/status/400", Status(400)),
                step(A, "POST", "/notes/{t}-404/status/404", Status(404)),
                step(A, "POST", "/notes/{t}-500/status/500", Status(500)),
                step(A, "POST", "/notes/{t}-503/status/503", Status(503)),
            ],
            kept: &["200", "204", "303"],
            gone: &["400", "404", "500", "503"],
        },
        Row {
            name: "a read-only transaction refuses writes",
            setup: Setup::Pool,
            steps: vec![step(
                A,
                "POST",
                "/notes/{t}-ro/read-only",
                Error(500, "database_error"),
            )],
            kept: &[],
            gone: &["ro"],
        },
        Row {
            name: "a write for another org is refused by the policy: 403 forbidden_by_policy",
            setup: Setup::Pool,
            steps: vec![step(
                A,
                "POST",
                "/notes/{t}-smuggled/elsewhere",
                Error(403, "forbidden_by_policy"),
            )],
            kept: &[],
            gone: &["smuggled"],
        },
        Row {
            name: "a failed commit replaces the handler's success: 409 conflict, nothing kept",
            setup: Setup::Pool,
            steps: vec![step(
                A,
                "POST",
                "/notes/{t}-dup/conflict",
                Error(409, "conflict"),
            )],
            kept: &[],
            gone: &["dup"],
        },
        Row {
            name: "each org sees only its own rows (read-only transaction)",
            setup: Setup::Pool,
            steps: vec![
                step(A, "POST", "/notes/{t}-a", Status(201)),
                step(B, "POST", "/notes/{t}-b", Status(201)),
                step(
                    A,
                    "GET",
                    "/notes",
                    Json(r#"[{"org_id":"{org_a}","body":"{t}-a"}]"#),
                ),
                step(
                    B,
                    "GET",
                    "/notes",
                    Json(r#"[{"org_id":"{org_b}","body":"{t}-b"}]"#),
                ),
            ],
            kept: &["a", "b"],
            gone: &[],
        },
        Row {
            name: "a nested guard without a pool uses the outer guard's",
            setup: Setup::Pool,
            steps: vec![
                step(A, "POST", "/notes/{t}-n", Status(201)),
                step(
                    A,
                    "GET",
                    "/nested/notes",
                    Json(r#"[{"org_id":"{org_a}","body":"{t}-n"}]"#),
                ),
            ],
            kept: &["n"],
            gone: &[],
        },
        Row {
            name: "a transaction that outlives its handler fails the request and is rolled back",
            setup: Setup::Pool,
            steps: vec![step(
                A,
                "POST",
                "/notes/{t}-escaped/escape",
                Error(500, "internal_error"),
            )],
            kept: &[],
            gone: &["escaped"],
        },
        Row {
            name: "a swallowed statement error cannot be committed",
            setup: Setup::Pool,
            steps: vec![step(
                A,
                "POST",
                "/notes/{t}-swallowed/swallow",
                Error(500, "database_error"),
            )],
            kept: &[],
            gone: &["swallowed"],
        },
        Row {
            name: "two transactions in one handler: a 500, never a second connection",
            setup: Setup::Pool,
            steps: vec![step(
                A,
                "POST",
                "/notes/{t}/twice",
                Error(500, "internal_error"),
            )],
            kept: &[],
            gone: &[],
        },
        Row {
            name: "a transaction behind a guard without a pool: a 500",
            setup: Setup::NoPool,
            steps: vec![step(A, "GET", "/notes", Error(500, "internal_error"))],
            kept: &[],
            gone: &[],
        },
        Row {
            name: "over the rate limit: 429 with Retry-After; other orgs pass; refusals do not count",
            setup: Setup::Limit(2),
            steps: vec![
                step(Nobody, "GET", "/me", Error(401, "missing_token")),
                Step {
                    remaining: Some("1"),
                    ..step(A, "GET", "/me", Status(200))
                },
                Step {
                    remaining: Some("0"),
                    ..step(A, "GET", "/notes", Status(200))
                },
                Step {
                    remaining: Some("0"),
                    ..step(A, "POST", "/notes/{t}-limited", Error(429, "rate_limited"))
                },
                Step {
                    remaining: Some("1"),
                    ..step(B, "GET", "/me", Status(200))
                },
            ],
            kept: &[],
            gone: &["limited"],
        },
        Row {
            name: "a handler's own RateLimit-* header wins; the guard fills in the others",
            setup: Setup::Limit(100),
            steps: vec![Step {
                remaining: Some("7"),
                ..step(A, "GET", "/own-limit", Status(200))
            }],
            kept: &[],
            gone: &[],
        },
        Row {
            name: "a shared limiter without its database fails closed (503), before the pool",
            setup: Setup::LimiterDown,
            steps: vec![step(
                A,
                "POST",
                "/notes/{t}-unlimited",
                Error(503, "rate_limit_unavailable"),
            )],
            kept: &[],
            gone: &["unlimited"],
        },
        Row {
            name: "a shared limiter without its database, told to allow: requests pass",
            setup: Setup::LimiterDownAllow,
            steps: vec![step(A, "POST", "/notes/{t}-allowed", Status(201))],
            kept: &["allowed"],
            gone: &[],
        },
        Row {
            name: "a W3C traceparent is recorded on the request span",
            setup: Setup::NoPool,
            steps: vec![
                Step {
                    headers: vec![("traceparent", TRACEPARENT), ("tracestate", "vendor=1")],
                    trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
                    ..step(A, "GET", "/me", Status(200))
                },
                Step {
                    headers: vec![("traceparent", "00-not-a-trace-01")],
                    ..step(Nobody, "GET", "/me", Error(401, "missing_token"))
                },
            ],
            kept: &[],
            gone: &[],
        },
    ]
}

/// An address where no database listens.
fn unreachable() -> Config {
    let mut config = Config::new();
    config
        .host("127.0.0.1")
        .port(9)
        .user("nobody")
        .dbname("none");
    config
}

fn config_for(setup: Setup, env: &Env) -> AppConfig {
    match setup {
        Setup::Pool => env.app.clone(),
        Setup::FreshPool => {
            let mut login = env.db.config().clone();
            login.user(adversary::faults::LOGIN);
            let pool = TenantPool::builder(login).max_size(1).build().unwrap();
            AppConfig::new(env.app.verifier.clone()).pool(pool)
        }
        Setup::LimiterDownAllow => env.app.clone().rate_limit(
            PgRateLimiter::builder("notes", 3, Duration::from_secs(60))
                .on_database_error(OnDatabaseError::Allow)
                .build(unreachable())
                .unwrap(),
        ),
        Setup::NoPool => AppConfig::new(env.app.verifier.clone()),
        Setup::Limit(n) => env
            .app
            .clone()
            .rate_limit(RateLimiter::per_minute(n).unwrap()),
        Setup::LimiterDown => env.app.clone().rate_limit(
            PgRateLimiter::builder("notes", 3, Duration::from_secs(60))
                .build(unreachable())
                .unwrap(),
        ),
    }
}

/// Checks one answer against its step; a description of what is wrong.
fn check(
    fw: Framework,
    step: &Step,
    limit: Option<Option<u32>>,
    answer: &Answer,
    fill: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let grpc_code = answer
        .header("grpc-status")
        .map(|s| s.parse::<u16>().unwrap_or(u16::MAX));
    let (status, code) = match &step.expect {
        Expect::Status(s) => (*s, None),
        Expect::Error(s, c) => (*s, Some(*c)),
        Expect::Json(_) => (200, None),
    };
    if fw == Framework::Tonic {
        let want = if status < 300 {
            0
        } else {
            grpc::code(http::StatusCode::from_u16(status).unwrap())
        };
        // Successes carry grpc-status in the trailers (metadata), refusals in the headers.
        if grpc_code.unwrap_or(0) != want {
            wrong.push(format!(
                "grpc-status {grpc_code:?}, wanted {want}: {answer:?}"
            ));
        }
    } else {
        if answer.status != status {
            wrong.push(format!(
                "status {}, wanted {status}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
        }
        if let Some(code) = code {
            if answer.header("content-type") != Some("application/json") {
                wrong.push(format!("content-type {:?}", answer.header("content-type")));
            } else if answer.error_code() != code {
                wrong.push(format!("code {}, wanted {code}", answer.error_code()));
            }
        }
    }
    if let Expect::Json(body) = &step.expect {
        let want: Value = serde_json::from_str(&fill(body)).unwrap();
        if answer.json() != want {
            wrong.push(format!("body {}, wanted {want}", answer.json()));
        }
    }
    if status == 401 && answer.header("www-authenticate").is_none() {
        wrong.push("a 401 without WWW-Authenticate".into());
    }
    if code.is_some() && matches!(status, 429 | 503) && answer.header("retry-after").is_none() {
        wrong.push(format!("a {status} without Retry-After"));
    }
    if code == Some("rate_limit_unavailable") && answer.header("retry-after") != Some("1") {
        wrong.push(format!(
            "Retry-After {:?}, wanted 1",
            answer.header("retry-after")
        ));
    }
    if String::from_utf8_lossy(&answer.body).contains("127.0.0.1") {
        wrong.push("connection details in the body".into());
    }
    if let Some(limit) = limit {
        wrong.extend(check_rate_limit(fw, step, limit, answer));
    }
    if answer.header("x-request-id") != Some("behaviour-req") {
        wrong.push(format!("x-request-id {:?}", answer.header("x-request-id")));
    }
    if let Some(remaining) = step.remaining
        && answer.header("ratelimit-remaining") != Some(remaining)
    {
        wrong.push(format!(
            "RateLimit-Remaining {:?}, wanted {remaining}",
            answer.header("ratelimit-remaining")
        ));
    }
    wrong
}

/// The `RateLimit-*` headers: with a limit, on every answer to an admitted caller (`Limit`,
/// `Remaining`, `Reset`), and on a 429 `Retry-After` within the window, `Reset` not before it,
/// and (HTTP) exactly the headers of [`RATE_LIMITED_HEADERS`]; without one, none.
fn check_rate_limit(
    fw: Framework,
    step: &Step,
    limit: Option<u32>,
    answer: &Answer,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let seconds = |name: &str| answer.header(name).and_then(|v| v.parse::<u64>().ok());
    let Some(limit) = limit else {
        if answer.header("ratelimit-limit").is_some() {
            wrong.push("RateLimit-Limit without a limiter".into());
        }
        return wrong;
    };
    if matches!(step.who, Who::Nobody) {
        if answer.header("ratelimit-limit").is_some() {
            wrong.push("RateLimit-* on a request refused before the limiter".into());
        }
        return wrong;
    }
    if answer.header("ratelimit-limit") != Some(limit.to_string().as_str()) {
        wrong.push(format!(
            "RateLimit-Limit {:?}, wanted {limit}",
            answer.header("ratelimit-limit")
        ));
    }
    let Some(reset) = seconds("ratelimit-reset") else {
        wrong.push("no RateLimit-Reset".into());
        return wrong;
    };
    match (&step.expect, seconds("retry-after")) {
        (Expect::Error(429, _), Some(retry)) => {
            if !(1..=60).contains(&retry) || reset < retry {
                wrong.push(format!("Retry-After {retry}, RateLimit-Reset {reset}"));
            }
            if fw != Framework::Tonic {
                let mut names: Vec<String> = answer
                    .comparable_headers()
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect();
                names.dedup();
                if names != RATE_LIMITED_HEADERS {
                    wrong.push(format!("the 429's headers: {names:?}"));
                }
            }
        }
        (Expect::Error(429, _), None) => wrong.push("a 429 without Retry-After".into()),
        (_, Some(_)) => wrong.push("Retry-After on an allowed request".into()),
        (_, None) => {}
    }
    wrong
}

/// Checks the request's span: one `request` span, its id, identity only when admitted, the
/// refusal's code, the trace context, the route template (HTTP frameworks), no token anywhere.
fn check_span(
    fw: Framework,
    step: &Step,
    req: &Req,
    answer_status: u16,
    capture: &Capture,
    token: Option<&str>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let spans = capture.spans_named("request");
    let [span] = spans.as_slice() else {
        return vec![format!("{} request spans: {spans:#?}", spans.len())];
    };
    if span.field("request_id") != Some("behaviour-req") {
        wrong.push(format!("span request_id {:?}", span.field("request_id")));
    }
    let refused_by_guard =
        matches!(step.expect, Expect::Error(_, code) if GUARD_CODES.contains(&code));
    if refused_by_guard {
        if let Expect::Error(_, code) = step.expect
            && span.field("error_code") != Some(code)
        {
            wrong.push(format!(
                "span error_code {:?}, wanted {code}",
                span.field("error_code")
            ));
        }
        if !matches!(step.expect, Expect::Error(429 | 503, _)) && span.field("org_id").is_some() {
            wrong.push("identity on the span of a refused request".into());
        }
    } else if span.field("org_id").is_none()
        || span.field("user_id").is_none()
        || span.field("role") != Some("authenticated")
    {
        wrong.push(format!("no identity on the span: {span:#?}"));
    } else if span.field("error_code").is_some() {
        wrong.push(format!("an error_code on an admitted request: {span:#?}"));
    }
    if span.field("cancelled").is_some() {
        wrong.push("cancelled on a request that was answered".into());
    }
    if !span
        .field("latency_ms")
        .and_then(|l| l.parse::<f64>().ok())
        .is_some_and(|l| l.is_finite() && l >= 0.0)
    {
        wrong.push(format!("latency_ms {:?}", span.field("latency_ms")));
    }
    let finished = capture
        .events()
        .into_iter()
        .filter(|e| e.field("message") == Some("request finished"))
        .collect::<Vec<_>>();
    if finished.len() != 1 || finished[0].spans.first() != Some(&"request") {
        wrong.push(format!("`request finished` events: {finished:#?}"));
    }
    if span.field("trace_id") != step.trace_id {
        wrong.push(format!(
            "span trace_id {:?}, wanted {:?}",
            span.field("trace_id"),
            step.trace_id
        ));
    }
    if fw != Framework::Tonic {
        let route = req.path.clone();
        if span.field("route").is_none() {
            wrong.push(format!("no route on the span of {route}"));
        }
        if span
            .field("route")
            .is_some_and(|r| r.contains("behaviour") || r.contains(fw.name()))
        {
            wrong.push("the raw path, not the template, on the span".into());
        }
        if span.field("status") != Some(answer_status.to_string().as_str()) {
            wrong.push(format!(
                "span status {:?}, answered {answer_status}",
                span.field("status")
            ));
        }
    }
    let logs = capture.all_text();
    if let Some(token) = token
        && logs.contains(token)
    {
        wrong.push("the token is in the logs".into());
    }
    if logs.contains("Bearer") {
        wrong.push("the Authorization header is in the logs".into());
    }
    wrong
}

#[actix_web::test]
async fn every_row_behaves_the_same_through_axum_actix_and_tonic() {
    let server = TestPostgres::shared().expect("test server");
    let mut failures = Vec::new();
    let table = rows();
    for fw in ALL {
        let env = Env::new(server, 2, |b| b).await;
        for (n, row) in table.iter().enumerate() {
            // Rows with HTTP-only routes (`/status/{code}`) are not run through gRPC.
            if fw == Framework::Tonic
                && row.steps.iter().any(|s| {
                    let req = match s.method {
                        "GET" => Req::get(s.path),
                        _ => Req::post(s.path),
                    };
                    adversary::apps::tonic_app::method(&req).is_none()
                })
            {
                continue;
            }
            let tag = format!("{}-row{n}", fw.name());
            let (a, b) = (Caller::new(), Caller::new());
            let config = config_for(row.setup, &env);
            let sub = |c: &Caller| {
                let payload = c.token.split('.').nth(1).unwrap();
                let claims: Value = serde_json::from_slice(
                    &base64::Engine::decode(
                        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                        payload,
                    )
                    .unwrap(),
                )
                .unwrap();
                claims["sub"].as_str().unwrap().to_owned()
            };
            let (sub_a, org_a, org_b) = (sub(&a), a.org.to_string(), b.org.to_string());
            let fill = |s: &str| {
                s.replace("{t}", &tag)
                    .replace("{org_a}", &org_a)
                    .replace("{org_b}", &org_b)
                    .replace("{sub_a}", &sub_a)
            };
            for (i, step) in row.steps.iter().enumerate() {
                let path = fill(step.path);
                let mut req = match step.method {
                    "GET" => Req::get(&path),
                    _ => Req::post(&path),
                };
                req = req.header("x-request-id", "behaviour-req");
                for (name, value) in &step.headers {
                    req = req.header(name, value);
                }
                let token = match step.who {
                    Who::Nobody => None,
                    Who::A => Some(a.token.clone()),
                    Who::B => Some(b.token.clone()),
                };
                if let Some(token) = &token {
                    req = req.bearer(token);
                }
                let capture = Capture::new();
                let answer = {
                    let _trace = capture.set_default();
                    fw.send(&config, &req).await
                };
                for wrong in check(fw, step, row.setup.limit(), &answer, &fill)
                    .into_iter()
                    .chain(check_span(
                        fw,
                        step,
                        &req,
                        answer.status,
                        &capture,
                        token.as_deref(),
                    ))
                {
                    failures.push(format!("{}: {} (step {i}): {wrong}", fw.name(), row.name));
                }
            }
            if let (Setup::FreshPool, Some(pool)) = (row.setup, &config.pool)
                && pool.status().size != 0
            {
                failures.push(format!("{}: {}: the pool was opened", fw.name(), row.name));
            }
            // Escaped transactions end when their task drops them.
            tokio::time::sleep(Duration::from_millis(250)).await;
            let notes = env.notes().await;
            for (suffix, want) in row
                .kept
                .iter()
                .map(|s| (s, true))
                .chain(row.gone.iter().map(|s| (s, false)))
            {
                let body = format!("{tag}-{suffix}");
                let found = notes.iter().any(|(_, b)| *b == body);
                if found != want {
                    failures.push(format!(
                        "{}: {}: note {body} {}",
                        fw.name(),
                        row.name,
                        if want { "not committed" } else { "committed" }
                    ));
                }
            }
        }
        env.assert_pool_clean().await;
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A per-org cap (`max_connections_per_org(1)`) with a pool of two: while org A's request holds a
/// connection, A's next transaction is refused at once (503 `database_busy` with `Retry-After`)
/// and org B still gets the other connection; A's held work commits when it finishes.
#[actix_web::test]
async fn a_per_org_cap_keeps_one_org_from_taking_the_pool() {
    let server = TestPostgres::shared().expect("test server");
    for fw in ALL {
        let env = Env::new(server, 2, |b| b).await;
        let mut config = env.app.clone();
        config.shared_guard = Some(config.guard().max_connections_per_org(1));
        let (a, b) = (Caller::new(), Caller::new());
        let tag = format!("{}-cap", fw.name());
        let held = a.post(&format!("/notes/{tag}-held/hold"));
        let (held, ()) = tokio::join!(fw.send(&config, &held), async {
            env.wait_until_holding(1).await;
            let refused = fw
                .send(&config, &a.post(&format!("/notes/{tag}-over")))
                .await;
            assert_eq!(refused.status, 503, "{fw:?}: {refused:?}");
            assert!(
                refused.header("retry-after").is_some(),
                "{fw:?}: {refused:?}"
            );
            if fw != Framework::Tonic {
                assert_eq!(refused.error_code(), "database_busy");
            }
            let other = fw
                .send(&config, &b.post(&format!("/notes/{tag}-other")))
                .await;
            assert!(other.status < 300, "{fw:?}: org B is unaffected: {other:?}");
            config.gate.open(1);
        });
        assert!(held.status < 300, "{fw:?}: {held:?}");
        let notes: Vec<String> = env.notes().await.into_iter().map(|(_, b)| b).collect();
        for (body, kept) in [("held", true), ("over", false), ("other", true)] {
            assert_eq!(
                notes.contains(&format!("{tag}-{body}")),
                kept,
                "{fw:?}: {body}: {notes:?}"
            );
        }
        env.assert_pool_clean().await;
    }
}

/// A request whose client goes away mid-handler (here: gives up waiting after a moment, so the
/// framework drops the request's future): its span closes with `cancelled = true`, identity and
/// route but no `status`, and its write is rolled back (the pooled connection comes back clean).
#[actix_web::test]
async fn a_request_the_client_abandons_is_cancelled_and_rolled_back() {
    let server = TestPostgres::shared().expect("test server");
    let mut failures = Vec::new();
    for fw in ALL {
        let env = Env::new(server, 2, |b| b).await;
        let a = Caller::new();
        let body = format!("{}-abandoned", fw.name());
        let req = a
            .post(&format!("/notes/{body}/hold"))
            .header("x-request-id", "behaviour-req");
        let capture = Capture::new();
        let _trace = capture.set_default();
        let answered =
            tokio::time::timeout(Duration::from_millis(500), fw.send(&env.app, &req)).await;
        assert!(
            answered.is_err(),
            "{fw:?}: the gate is closed: {answered:?}"
        );
        // The server side notices the client's departure on its own time (tonic: the stream's
        // reset); wait for the span to close.
        let mut span = None;
        for _ in 0..100 {
            span = capture.span("request").filter(|s| s.closed);
            if span.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let Some(span) = span else {
            failures.push(format!(
                "{fw:?}: the span never closed: {:#?}",
                capture.spans()
            ));
            continue;
        };
        let org = a.org.to_string();
        let want = [
            ("cancelled", Some("true")),
            ("status", None),
            ("org_id", Some(org.as_str())),
            ("request_id", Some("behaviour-req")),
            ("error_code", None),
        ];
        for (field, value) in want {
            if span.field(field) != value {
                failures.push(format!(
                    "{fw:?}: {field} {:?}, wanted {value:?}",
                    span.field(field)
                ));
            }
        }
        if fw != Framework::Tonic && span.field("route") != Some("/notes/{body}/hold") {
            failures.push(format!("{fw:?}: route {:?}", span.field("route")));
        }
        if span
            .field("latency_ms")
            .and_then(|l| l.parse::<f64>().ok())
            .is_none()
        {
            failures.push(format!("{fw:?}: no latency_ms on a cancelled request"));
        }
        if capture.all_text().contains(&a.token) {
            failures.push(format!("{fw:?}: the token is in the logs"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if env.notes().await.iter().any(|(_, b)| *b == body) {
            failures.push(format!("{fw:?}: the abandoned write was committed"));
        }
        env.assert_pool_clean().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// With the `metrics` feature, every framework counts requests by status, refusals by code and
/// admitted requests by org, and records one latency per request (into an in-memory recorder).
#[actix_web::test]
async fn metrics_count_requests_rejections_and_orgs() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tenant_guard::core::metrics as names;

    // Orgs of other tests must not push this one's into the `other` label.
    names::set_org_label_limit(1_000_000);
    let verifier = adversary::tokens::verifier();
    let config = AppConfig::new(verifier);
    for fw in ALL {
        let a = Caller::new();
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        {
            let _local = metrics::set_default_local_recorder(&recorder);
            for _ in 0..2 {
                let answer = fw.send(&config, &a.get("/me")).await;
                assert_eq!(answer.status, 200, "{fw:?}: {answer:?}");
            }
            let answer = fw.send(&config, &Req::get("/me")).await;
            assert_eq!(answer.status, 401, "{fw:?}: {answer:?}");
        }
        let mut counters = std::collections::BTreeMap::new();
        let mut latencies = 0;
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            match value {
                DebugValue::Counter(n) => {
                    counters.insert(format!("{}{{{}}}", key.name(), labels.join(",")), n);
                }
                DebugValue::Histogram(values) if key.name() == names::REQUEST_DURATION => {
                    latencies += values.len();
                }
                _ => {}
            }
        }
        let org = a.org;
        for (name, want) in [
            (format!("{}{{status=200}}", names::REQUESTS), 2),
            (format!("{}{{status=401}}", names::REQUESTS), 1),
            (format!("{}{{code=missing_token}}", names::REJECTIONS), 1),
            (format!("{}{{org_id={org}}}", names::ORG_REQUESTS), 2),
        ] {
            assert_eq!(
                counters.get(&name),
                Some(&want),
                "{fw:?}: {name}: {counters:#?}"
            );
        }
        assert_eq!(latencies, 3, "{fw:?}: one latency per request");
    }
}

/// Two instances of the app (each its own pool and its own `PgRateLimiter`) over one database
/// share each org's budget: the `RateLimit-*` figures count down across both, both refuse once
/// it is spent (429 with `Retry-After`), refusals before the limiter do not count, another org
/// has its own budget, and the handler's transaction is scoped while the limiter used its own
/// connection. The database's counters say the same.
#[actix_web::test]
async fn two_instances_share_one_postgres_rate_limit_budget() {
    const DAY: Duration = Duration::from_secs(86_400);
    let server = TestPostgres::shared().expect("test server");
    for fw in ALL {
        let env = Env::new(server, 2, |b| b).await;
        tenant_guard::postgres::support::apply_rate_limit_sql(
            &env.admin,
            Some(adversary::faults::LOGIN),
        )
        .await
        .expect("rate limit SQL");
        let mut login = env.db.config().clone();
        login.user(adversary::faults::LOGIN);
        let instance = || {
            let pool = TenantPool::builder(login.clone())
                .max_size(2)
                .build()
                .unwrap();
            let limiter = PgRateLimiter::builder("notes", 3, DAY)
                .build(login.clone())
                .unwrap();
            AppConfig::new(env.app.verifier.clone())
                .pool(pool)
                .rate_limit(limiter)
        };
        let (one, two) = (instance(), instance());
        let (a, b) = (Caller::new(), Caller::new());
        let tag = format!("{}-shared", fw.name());
        let check = |answer: &Answer, status: u16, remaining: &str| {
            let what = format!("{fw:?}: {answer:?}");
            assert_eq!(answer.status, status, "{what}");
            assert_eq!(answer.header("ratelimit-limit"), Some("3"), "{what}");
            assert_eq!(
                answer.header("ratelimit-remaining"),
                Some(remaining),
                "{what}"
            );
            let reset: u64 = answer.header("ratelimit-reset").unwrap().parse().unwrap();
            assert!(reset <= DAY.as_secs() * 2, "{what}");
            if status == 429 {
                let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=DAY.as_secs() + 1).contains(&retry), "{what}");
                assert!(reset >= retry, "{what}");
            } else {
                assert_eq!(answer.header("retry-after"), None, "{what}");
            }
        };

        let refused = fw.send(&one, &Req::get("/me")).await;
        assert_eq!(refused.status, 401, "{fw:?}");
        assert_eq!(
            refused.header("ratelimit-limit"),
            None,
            "{fw:?}: not counted"
        );
        check(
            &fw.send(&one, &a.post(&format!("/notes/{tag}-a"))).await,
            if fw == Framework::Tonic { 200 } else { 201 },
            "2",
        );
        let listed = fw.send(&two, &a.get("/notes")).await;
        check(&listed, 200, "1");
        let want = serde_json::json!([{"org_id": a.org.to_string(), "body": format!("{tag}-a")}]);
        assert_eq!(
            listed.json(),
            want,
            "{fw:?}: instance two's transaction is scoped to A"
        );
        check(&fw.send(&one, &a.get("/me")).await, 200, "0");
        check(&fw.send(&two, &a.get("/me")).await, 429, "0");
        check(
            &fw.send(&one, &a.post(&format!("/notes/{tag}-over"))).await,
            429,
            "0",
        );
        check(&fw.send(&two, &b.get("/me")).await, 200, "2");

        let hits: Vec<(uuid::Uuid, i32)> = env
            .admin
            .query(
                "SELECT org_id, hits FROM tenant_guard.rate_counters ORDER BY hits DESC",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(hits, [(a.org, 3), (b.org, 1)], "{fw:?}");
        let notes: Vec<String> = env.notes().await.into_iter().map(|(_, b)| b).collect();
        assert_eq!(
            notes,
            [format!("{tag}-a")],
            "{fw:?}: the refused write never ran"
        );
    }
}

/// With the framework's request-tracing middleware around the whole app (the table runs
/// without it), that middleware opens the one `request` span and the guard inside records on
/// it: identity, route template, status, latency for an admitted request; the refusal's code and
/// no identity for a refused one (a forged token is never logged); and routes outside the guard
/// (HTTP apps: `/healthz`, an unknown path) are traced too.
#[actix_web::test]
async fn the_outer_tracing_middleware_opens_the_span_the_guard_records_on() {
    let verifier = adversary::tokens::verifier();
    let mut config = AppConfig::new(verifier);
    config.outer_tracing = true;
    let a = Caller::new();
    let forged = adversary::tokens::hs256_text(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &adversary::tokens::claims().to_string(),
        adversary::tokens::ATTACKER_SECRET.as_bytes(),
    );
    let (org, sub) = (a.org.to_string(), {
        let me = Framework::Axum.send(&config, &a.get("/me")).await;
        me.json()["user_id"].as_str().unwrap().to_owned()
    });
    type Fields<'a> = Vec<(&'static str, Option<&'a str>)>;
    let admitted: Fields<'_> = vec![
        ("org_id", Some(org.as_str())),
        ("user_id", Some(sub.as_str())),
        ("role", Some("authenticated")),
        ("error_code", None),
        ("cancelled", None),
    ];
    let refused = |code| -> Fields<'static> {
        vec![
            ("error_code", Some(code)),
            ("org_id", None),
            ("user_id", None),
            ("role", None),
        ]
    };
    // (request, status, route template, fields, HTTP apps only)
    let cases: Vec<(Req, u16, Option<&str>, Fields<'_>, bool)> = vec![
        (a.get("/me"), 200, Some("/me"), admitted.clone(), false),
        (
            Req::get("/me"),
            401,
            Some("/me"),
            refused("missing_token"),
            false,
        ),
        (
            Req::get("/me").bearer(&forged),
            401,
            Some("/me"),
            refused("invalid_signature"),
            false,
        ),
        (
            Req::get("/healthz"),
            200,
            Some("/healthz"),
            vec![("org_id", None)],
            true,
        ),
        (
            a.get("/nowhere/1"),
            404,
            None,
            vec![("error_code", None)],
            true,
        ),
        // An extractor outside any guard: a wiring bug, a 500, never an unscoped handler.
        (
            a.get("/unguarded"),
            500,
            Some("/unguarded"),
            vec![("org_id", None)],
            true,
        ),
    ];
    let mut failures = Vec::new();
    for fw in ALL {
        for (req, status, route, fields, http_only) in &cases {
            if *http_only && fw == Framework::Tonic {
                continue;
            }
            let req = req.clone().header("x-request-id", "behaviour-req");
            let capture = Capture::new();
            let answer = {
                let _trace = capture.set_default();
                fw.send(&config, &req).await
            };
            let what = format!("{fw:?} {} {}", req.method, req.path);
            let got = if fw == Framework::Tonic && answer.status == 200 {
                200
            } else {
                answer.status
            };
            if got != *status {
                failures.push(format!("{what}: status {got}, wanted {status}"));
            }
            if answer.header("x-request-id") != Some("behaviour-req") {
                failures.push(format!(
                    "{what}: x-request-id {:?}",
                    answer.header("x-request-id")
                ));
            }
            let spans = capture.spans_named("request");
            let [span] = spans.as_slice() else {
                failures.push(format!("{what}: {} request spans", spans.len()));
                continue;
            };
            let mut want = fields.clone();
            want.push(("request_id", Some("behaviour-req")));
            if fw != Framework::Tonic {
                want.push(("route", *route));
                let status = status.to_string();
                if span.field("status") != Some(status.as_str()) {
                    failures.push(format!("{what}: span status {:?}", span.field("status")));
                }
            }
            for (field, value) in want {
                if span.field(field) != value {
                    failures.push(format!(
                        "{what}: span {field} {:?}, wanted {value:?}",
                        span.field(field)
                    ));
                }
            }
            if span
                .field("latency_ms")
                .and_then(|l| l.parse::<f64>().ok())
                .is_none()
            {
                failures.push(format!("{what}: no latency_ms"));
            }
            let logs = capture.all_text();
            if logs.contains(&forged) || logs.contains(&a.token) || logs.contains("Bearer") {
                failures.push(format!("{what}: a token in the logs"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
