//! Black-box test of the reference apps: starts an example binary as a process against a fresh
//! testkit database and checks the HTTP contract of `reference-app.md` over loopback.
//!
//! The same [`check_contract`] runs against every framework, so they are proven to behave alike.
//! The example binaries are built by `cargo test --features full` (they are `[[example]]` targets
//! of this package) next to this test's executable.

// Test helpers: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stderr)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tenant_guard_testkit::{PgBouncerOptions, TestDatabase, TestPgBouncer, TestPostgres};

const SECRET: &str = "reference-app-test-secret-0123456789abcdef";
const ORG_A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const ORG_B: &str = "bbbbbbbb-0000-4000-8000-000000000002";

/// Variables the apps read; cleared so the caller's environment cannot change the test.
const APP_VARS: &[&str] = &[
    "APP_ENV",
    "DATABASE_URL",
    "JWT_SECRET",
    "JWT_SECRET_IS_BASE64",
    "JWT_JWKS_FILE",
    "JWT_JWKS",
    "JWT_PUBLIC_KEY_FILE",
    "JWT_ALGORITHMS",
    "JWT_AUDIENCE",
    "JWT_ISSUER",
    "ORG_CLAIM",
    "ROLE_CLAIM",
    "JWT_ALLOWED_ROLES",
    "JWT_COOKIE_NAME",
    "JWT_JWKS_URL",
    "JWT_OIDC_ISSUER",
    "JWT_ISSUERS",
    "JWT_ROLE_ARRAY",
    "JWT_DEFAULT_ROLE",
    "JWT_ROLE_MAP",
    "BIND",
    "DB_POOL_SIZE",
    "DB_POOLER",
    "DATABASE_REPLICA_URLS",
    "DB_BACKEND",
    "RATE_LIMIT_PER_MINUTE",
    "LOG_FORMAT",
    "BODY_TIMEOUT_SECONDS",
    "ORG_SOURCE",
    "ORG_HEADER",
    "MEMBERSHIP_SQL",
    "MEMBERSHIP_ROLE",
    "MEMBERSHIP_CACHE_TTL_SECONDS",
    "MEMBERSHIP_CACHE_SIZE",
    "TOKEN_ORG",
    "JWT_ORG_ID_KIND",
    "SESSION_RESET",
];

/// The example binary `name`, built next to this test executable.
/// `name` may carry a backend: `reference_axum+sqlx` is the axum app with `DB_BACKEND=sqlx`.
fn example_binary(name: &str) -> PathBuf {
    let name = name.split('+').next().unwrap_or(name);
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/reference_app-HASH → target/<profile>/examples/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "example binary {} not found: run the tests with `cargo test --features full` \
         (which builds the examples), or build it with `cargo build --features full --example {name}`",
        path.display()
    );
    path
}

/// The process's PgBouncer (`pool_mode = transaction`, two server connections per database).
fn pgbouncer() -> &'static TestPgBouncer {
    static BOUNCER: std::sync::OnceLock<TestPgBouncer> = std::sync::OnceLock::new();
    BOUNCER.get_or_init(|| {
        let server = TestPostgres::shared().expect("test PostgreSQL");
        TestPgBouncer::start(server, PgBouncerOptions::default().default_pool_size(2))
            .expect("PgBouncer (Debian: apt-get install pgbouncer)")
    })
}

/// A running app process; killed (and its log shown if the test failed) on drop.
struct RunningApp {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _database: Option<TestDatabase>,
}

impl RunningApp {
    /// Starts `example` with `APP_ENV=test`, a known secret and a fresh database, and waits for its
    /// `listening on` line.
    fn start(example: &str) -> Self {
        let database = TestPostgres::shared()
            .expect("test PostgreSQL")
            .create_database()
            .expect("test database");
        let url = database.url().to_owned();
        Self::start_with(
            example,
            &[
                ("APP_ENV", "test"),
                ("JWT_SECRET", SECRET),
                ("DATABASE_URL", &url),
            ],
            Some(database),
        )
    }

    /// Like [`start`](Self::start), with `DATABASE_URL` pointing at the process's PgBouncer
    /// (`pool_mode = transaction`, two server connections per database) and `DB_POOLER=transaction`.
    fn start_through_pgbouncer(example: &str) -> Self {
        let server = TestPostgres::shared().expect("test PostgreSQL");
        let database = server.create_database().expect("test database");
        let url = pgbouncer().url(&database);
        Self::start_with(
            example,
            &[
                ("APP_ENV", "test"),
                ("JWT_SECRET", SECRET),
                ("DATABASE_URL", &url),
                ("DB_POOLER", "transaction"),
                // Many more client connections than PgBouncer's two server connections.
                ("DB_POOL_SIZE", "12"),
            ],
            Some(database),
        )
    }

    /// Starts `example` on a free port with `vars` (and none of the caller's app variables), and
    /// waits for its `listening on` line. `database` is kept until the app is dropped.
    fn start_with(example: &str, vars: &[(&str, &str)], database: Option<TestDatabase>) -> Self {
        let log = std::env::temp_dir().join(format!(
            "tenant-guard-{example}-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(example_binary(example));
        for var in APP_VARS {
            command.env_remove(var);
        }
        if let Some((_, backend)) = example.split_once('+') {
            command.env("DB_BACKEND", backend);
        }
        let mut child = command
            .env("BIND", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn the example");
        let stdout = child.stdout.take().expect("stdout");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut app = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            _database: database,
        };
        // Not a timing assertion: only a bound so a broken app fails the test instead of hanging.
        let line = received
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("{example} printed no `listening on` line"));
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first stdout line {line:?}"));
        app.addr = addr.parse().expect("a socket address");
        // Exactly one line on stdout: anything more would arrive later; check nothing else is
        // there yet.
        assert!(received.try_recv().is_err(), "more than one line on stdout");
        app
    }

    /// What the app wrote to stderr so far.
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).expect("log file")
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        http(self.addr, method, path, headers, body)
    }

    fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| vec![("authorization", b)])
            .unwrap_or_default();
        self.request("GET", path, &headers, "")
    }

    fn send_json(&self, method: &str, path: &str, token: &str, body: &str) -> Reply {
        let bearer = format!("Bearer {token}");
        self.request(
            method,
            path,
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            body,
        )
    }

    /// Sends SIGTERM and returns whether the app exited successfully.
    fn terminate(&mut self) -> bool {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        self.child.wait().expect("wait").success()
    }
}

impl Drop for RunningApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("---- app log ({}) ----\n{log}", self.log.display());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// One HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// Asserts an error reply: `status`, a JSON body `{"error", "message"}`, `x-request-id`.
    fn assert_error(&self, status: u16, what: &str) -> String {
        assert_eq!(self.status, status, "{what}: {self:?}");
        assert!(
            self.header("content-type")
                .is_some_and(|v| v.starts_with("application/json")),
            "{what}: {self:?}"
        );
        let body = self.json();
        assert!(body["message"].is_string(), "{what}: {self:?}");
        assert!(self.header("x-request-id").is_some(), "{what}");
        body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no error code: {self:?}"))
            .to_owned()
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("receive");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        rest = dechunk(&rest);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8(rest).expect("UTF-8 body"),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn claims(sub: &str, org: &str) -> serde_json::Value {
    serde_json::json!({
        "sub": sub, "role": "authenticated", "aud": "authenticated", "org_id": org,
        "iat": now(), "exp": now() + 600,
    })
}

fn sign(claims: &serde_json::Value, secret: &str) -> String {
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

/// An unsigned token (`alg: none`), which must never be accepted.
fn unsigned(claims: &serde_json::Value) -> String {
    fn b64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

/// The whole contract, against the example binary `example`.
fn check_contract(example: &str) {
    check_contract_of(RunningApp::start(example), example);
}

/// The contract, through a transaction-mode PgBouncer with the app's `DB_POOLER=transaction`.
fn check_contract_through_pgbouncer(example: &str) {
    check_contract_of(RunningApp::start_through_pgbouncer(example), example);
}

fn check_contract_of(mut app: RunningApp, example: &str) {
    let alice = sign(&claims("alice", ORG_A), SECRET);
    let bob = sign(&claims("bob", ORG_B), SECRET);

    // Health check: no token needed, request id generated.
    let health = app.get("/healthz", None);
    assert_eq!(health.status, 200, "{health:?}");
    assert!(health.header("x-request-id").is_some());

    // /me: the identity comes from the token.
    let me = app.get("/me", Some(&alice));
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(
        me.json(),
        serde_json::json!({"user_id": "alice", "org_id": ORG_A, "role": "authenticated"})
    );

    check_authentication_errors(&app, &alice);
    check_request_ids(&app, &alice);
    check_isolation(&app, &alice, &bob);
    check_validation(&app, &alice);

    assert!(app.terminate(), "SIGTERM must shut {example} down cleanly");
}

fn check_authentication_errors(app: &RunningApp, valid: &str) {
    // No token: a bare challenge.
    let reply = app.get("/projects", None);
    assert_eq!(reply.assert_error(401, "no token"), "missing_token");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));

    let mut expired = claims("alice", ORG_A);
    expired["exp"] = (now() - 3600).into();
    expired["iat"] = (now() - 7200).into();
    let mut wrong_aud = claims("alice", ORG_A);
    wrong_aud["aud"] = "someone-else".into();
    // (token, what, acceptable codes): the codes are the core's, identical in both apps.
    let presented = [
        (
            sign(
                &claims("alice", ORG_A),
                "another-secret-another-secret-0123",
            ),
            "bad signature",
            &["invalid_signature"][..],
        ),
        (sign(&expired, SECRET), "expired", &["token_expired"][..]),
        (
            sign(&wrong_aud, SECRET),
            "wrong audience",
            &["invalid_audience"][..],
        ),
        (
            unsigned(&claims("alice", ORG_A)),
            "alg none",
            &["disallowed_algorithm", "malformed_token"][..],
        ),
        ("not-a-jwt".to_owned(), "garbage", &["malformed_token"][..]),
        ("a".repeat(20_000), "oversized", &["token_too_large"][..]),
    ];
    for (token, what, codes) in &presented {
        let reply = app.get("/projects", Some(token));
        let code = reply.assert_error(401, what);
        assert!(codes.contains(&code.as_str()), "{what}: {code}");
        let www = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            www.starts_with("Bearer") && www.contains("invalid_token"),
            "{what}: {www}"
        );
        assert!(!reply.body.contains(token.as_str()), "{what}: token echoed");
    }

    // Malformed headers.
    for value in [
        format!("Basic {valid}"),
        "Bearer".to_owned(),
        format!("Token {valid}"),
    ] {
        let reply = app.request("GET", "/projects", &[("authorization", &value)], "");
        reply.assert_error(401, &value);
        assert!(
            reply
                .header("www-authenticate")
                .unwrap_or_default()
                .starts_with("Bearer")
        );
        assert!(!reply.body.contains(valid));
    }

    // A token anywhere but the Authorization header is ignored.
    let reply = app.request(
        "GET",
        &format!("/me?access_token={valid}"),
        &[
            ("x-user-id", "alice"),
            ("cookie", &format!("token={valid}")),
        ],
        "",
    );
    reply.assert_error(401, "token in query / cookie / x-user-id");

    // Valid signature but not allowed: a role outside the allowlist, or no usable org.
    let mut service = claims("job", ORG_A);
    service["role"] = "service_role".into();
    let mut superuser = claims("eve", ORG_A);
    superuser["role"] = "postgres".into();
    let mut no_org = claims("alice", ORG_A);
    no_org.as_object_mut().expect("object").remove("org_id");
    let mut bad_org = claims("alice", ORG_A);
    bad_org["org_id"] = "not-a-uuid".into();
    let mut anon = claims("visitor", ORG_A);
    anon["role"] = "anon".into();
    for (claims, what, code) in [
        (service, "service_role", "role_not_allowed"),
        (superuser, "postgres role", "role_not_allowed"),
        (anon, "anon role", "role_not_allowed"),
        (no_org, "missing org", "invalid_org"),
        (bad_org, "non-UUID org", "invalid_org"),
    ] {
        let token = sign(&claims, SECRET);
        for path in ["/me", "/projects"] {
            let reply = app.get(path, Some(&token));
            assert_eq!(reply.assert_error(403, what), code, "{what}");
            assert!(!reply.body.contains(&token));
        }
    }
}

fn check_request_ids(app: &RunningApp, token: &str) {
    let bearer = format!("Bearer {token}");
    for path in ["/healthz", "/me", "/projects"] {
        // Echoed when sane, on success and on rejection alike.
        let ok = app.request(
            "GET",
            path,
            &[("authorization", &bearer), ("x-request-id", "trace-42")],
            "",
        );
        assert_eq!(ok.header("x-request-id"), Some("trace-42"), "{path}");
        let rejected = app.request("GET", path, &[("x-request-id", "trace-43")], "");
        assert_eq!(rejected.header("x-request-id"), Some("trace-43"), "{path}");
        // Replaced when not.
        let long = "x".repeat(129);
        for insane in ["has space", long.as_str()] {
            let reply = app.request("GET", path, &[("x-request-id", insane)], "");
            let got = reply.header("x-request-id").expect("generated id");
            assert_ne!(got, insane);
            assert!(
                !got.is_empty() && got.len() <= 128 && got.bytes().all(|b| b.is_ascii_graphic())
            );
        }
    }
    let first = app.get("/healthz", None);
    let second = app.get("/healthz", None);
    assert_ne!(first.header("x-request-id"), second.header("x-request-id"));
}

fn check_isolation(app: &RunningApp, alice: &str, bob: &str) {
    // Alice creates a project; an org_id in the body is ignored.
    let body = format!(r#"{{"name": "alpha", "org_id": "{ORG_B}"}}"#);
    let created = app.send_json("POST", "/projects", alice, &body);
    assert_eq!(created.status, 201, "{created:?}");
    let project = created.json();
    assert_eq!(project["org_id"], ORG_A, "the org comes from the token");
    assert_eq!(project["name"], "alpha");
    let id = project["id"].as_str().expect("id").to_owned();
    let path = format!("/projects/{id}");

    // Alice sees it; Bob does not, by any route.
    let listed = app.get("/projects", Some(alice));
    assert_eq!(listed.status, 200);
    assert!(
        listed
            .json()
            .as_array()
            .expect("array")
            .iter()
            .any(|p| p["id"] == id.as_str())
    );
    let bobs = app.get("/projects", Some(bob));
    assert_eq!(bobs.status, 200);
    assert!(
        bobs.json()
            .as_array()
            .expect("array")
            .iter()
            .all(|p| p["org_id"] == ORG_B),
        "{bobs:?}"
    );
    app.get(&path, Some(bob))
        .assert_error(404, "Bob reads Alice's project");
    app.request(
        "DELETE",
        &path,
        &[("authorization", &format!("Bearer {bob}"))],
        "",
    )
    .assert_error(404, "Bob deletes Alice's project");
    let still = app.get(&path, Some(alice));
    assert_eq!(still.status, 200, "Bob's delete must not delete: {still:?}");
    assert_eq!(still.json(), project);

    // Bob's own project is his alone.
    let bobs_project = app.send_json("POST", "/projects", bob, r#"{"name": "beta"}"#);
    assert_eq!(bobs_project.status, 201);
    assert_eq!(bobs_project.json()["org_id"], ORG_B);
    let alices = app.get("/projects", Some(alice)).json();
    assert!(
        alices
            .as_array()
            .expect("array")
            .iter()
            .all(|p| p["org_id"] == ORG_A)
    );

    // Malformed and unknown ids.
    let reply = app.get("/projects/not-a-uuid", Some(alice));
    assert!(matches!(reply.status, 400 | 404), "{reply:?}");
    reply.assert_error(reply.status, "malformed id");
    app.get(&format!("/projects/{}", uuid::Uuid::new_v4()), Some(alice))
        .assert_error(404, "unknown id");

    // Alice deletes her project.
    let deleted = app.request(
        "DELETE",
        &path,
        &[("authorization", &format!("Bearer {alice}"))],
        "",
    );
    assert_eq!(deleted.status, 204, "{deleted:?}");
    app.get(&path, Some(alice))
        .assert_error(404, "deleted project");
}

fn check_validation(app: &RunningApp, alice: &str) {
    let long = format!(r#"{{"name": "{}"}}"#, "n".repeat(201));
    for (body, what) in [
        (r#"{"name": ""}"#.to_owned(), "empty name"),
        (long, "201-character name"),
        (r#"{"title": "x"}"#.to_owned(), "missing name"),
        (r#"{"name": 5}"#.to_owned(), "number as name"),
        ("{not json".to_owned(), "bad JSON"),
    ] {
        let reply = app.send_json("POST", "/projects", alice, &body);
        assert!(matches!(reply.status, 400 | 422), "{what}: {reply:?}");
        reply.assert_error(reply.status, what);
    }
    let max = format!(r#"{{"name": "{}"}}"#, "m".repeat(200));
    assert_eq!(app.send_json("POST", "/projects", alice, &max).status, 201);
    // Nothing of the rejected requests was written.
    let names: Vec<String> = app
        .get("/projects", Some(alice))
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, vec!["m".repeat(200)]);
}

/// The quickstart: `APP_ENV=development` with nothing else starts a throwaway database, prints
/// working demo tokens for two orgs, and removes the database on SIGTERM.
fn check_quickstart(example: &str) {
    check_quickstart_with(example, &[]);
}

/// [`check_quickstart`] with more variables (e.g. `JWT_ORG_ID_KIND`: the demo orgs follow it).
fn check_quickstart_with(example: &str, vars: &[(&str, &str)]) {
    let vars = [&[("APP_ENV", "development")], vars].concat();
    let mut app = RunningApp::start_with(example, &vars, None);
    let stderr = app.stderr();
    let token = |name: &str| -> String {
        let prefix = format!("export TOKEN_{name}=");
        stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no demo token for {name} in:\n{stderr}"))
            .to_owned()
    };
    let (alice, bob) = (token("ALICE"), token("BOB"));
    assert!(stderr.contains("curl"), "curl lines: {stderr}");
    let port = stderr
        .split("postgres://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ' ', '"']).next())
        .and_then(|host| host.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("the throwaway database's URL is logged: {stderr}"));

    let me = app.get("/me", Some(&alice));
    assert_eq!(me.status, 200, "{me:?}");
    let alice_org = me.json()["org_id"].clone();
    assert_eq!(app.get("/me", Some(&bob)).json()["role"], "authenticated");
    assert_ne!(app.get("/me", Some(&bob)).json()["org_id"], alice_org);
    let created = app.send_json("POST", "/projects", &alice, r#"{"name": "first project"}"#);
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(
        app.get("/projects", Some(&alice))
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        app.get("/projects", Some(&bob)).json(),
        serde_json::json!([])
    );

    assert!(app.terminate(), "SIGTERM must shut {example} down cleanly");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the throwaway PostgreSQL on port {port} must be gone after exit"
    );
}

/// Outside development, no key means no start, with a message naming the variable.
fn check_refuses_to_start_without_a_key(example: &str) {
    for app_env in [None, Some("production"), Some("test"), Some("staging")] {
        let mut command = Command::new(example_binary(example));
        for var in APP_VARS {
            command.env_remove(var);
        }
        if let Some(value) = app_env {
            command.env("APP_ENV", value);
        }
        let output = command
            .env("BIND", "127.0.0.1:0")
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .stdin(Stdio::null())
            .output()
            .expect("run the example");
        assert!(
            !output.status.success(),
            "{app_env:?}: it must refuse to start"
        );
        assert!(output.stdout.is_empty(), "{app_env:?}: no listening line");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("JWT_SECRET"), "{app_env:?}: {stderr}");
    }
}

/// Outside development, no `DATABASE_URL` means no start (issue 17): not a throwaway database that
/// accepts writes and loses them on exit. The message names the variable; no PostgreSQL is started.
fn check_refuses_to_start_without_a_database(example: &str) {
    for app_env in [None, Some("production"), Some("test"), Some("staging")] {
        let mut command = Command::new(example_binary(example));
        for var in APP_VARS {
            command.env_remove(var);
        }
        if let Some(value) = app_env {
            command.env("APP_ENV", value);
        }
        let mut child = command
            .env("BIND", "127.0.0.1:0")
            .env("JWT_SECRET", SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the example");
        // An app that starts instead (the old fail-open behaviour) would never exit by itself.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait for the example").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let output = child
                    .wait_with_output()
                    .expect("collect the example's output");
                panic!(
                    "{app_env:?}: it started without DATABASE_URL: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child
            .wait_with_output()
            .expect("collect the example's output");
        assert!(
            !output.status.success(),
            "{app_env:?}: it must refuse to start"
        );
        assert!(output.stdout.is_empty(), "{app_env:?}: no listening line");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("DATABASE_URL"), "{app_env:?}: {stderr}");
        assert!(
            !stderr.contains("throwaway PostgreSQL database (removed on exit)"),
            "{app_env:?}: no throwaway database: {stderr}"
        );
    }
}

/// `RATE_LIMIT_PER_MINUTE`: one org over its limit gets 429 with `Retry-After`, the
/// `RateLimit-*` headers and a JSON body, on every guarded route (one budget per org); another org
/// and the unguarded health check still get 200.
fn check_rate_limit(example: &str) {
    let database = TestPostgres::shared()
        .expect("test PostgreSQL")
        .create_database()
        .expect("test database");
    let url = database.url().to_owned();
    let mut app = RunningApp::start_with(
        example,
        &[
            ("APP_ENV", "test"),
            ("JWT_SECRET", SECRET),
            ("DATABASE_URL", &url),
            ("RATE_LIMIT_PER_MINUTE", "3"),
        ],
        Some(database),
    );
    let alice = sign(&claims("alice", ORG_A), SECRET);
    let bob = sign(&claims("bob", ORG_B), SECRET);
    // Refused before the limiter: does not count.
    app.get("/me", None).assert_error(401, "no token");
    for i in 0..3 {
        let ok = app.get("/me", Some(&alice));
        assert_eq!(ok.status, 200, "request {i} within the limit: {ok:?}");
    }
    let limited = app.get("/projects", Some(&alice));
    assert_eq!(limited.assert_error(429, "over the limit"), "rate_limited");
    let retry: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    // One request comes back every 60 s / 3 = 20 s.
    assert!((1..=20).contains(&retry), "{limited:?}");
    assert_eq!(limited.header("ratelimit-limit"), Some("3"));
    assert_eq!(limited.header("ratelimit-remaining"), Some("0"));
    assert!(limited.header("ratelimit-reset").is_some(), "{limited:?}");

    let other = app.get("/me", Some(&bob));
    assert_eq!(other.status, 200, "another org is unaffected: {other:?}");
    assert_eq!(app.get("/healthz", None).status, 200);
    assert!(app.terminate(), "SIGTERM must shut {example} down cleanly");
}

/// Issue 17, Medium 1: a request whose body never arrives holds no pool connection. With a pool
/// of two, two POSTs from org A send their headers and then nothing; org B's GET is answered 200
/// (before the fix it waited for the pool and got 503 `database_busy`). The stalled requests are
/// then cut off by the app's body-read bound (408).
fn check_stalled_bodies_hold_no_connection(example: &str) {
    const POOL: usize = 2;
    let database = TestPostgres::shared()
        .expect("test PostgreSQL")
        .create_database()
        .expect("test database");
    let url = database.url().to_owned();
    let mut app = RunningApp::start_with(
        example,
        &[
            ("APP_ENV", "test"),
            ("JWT_SECRET", SECRET),
            ("DATABASE_URL", &url),
            ("DB_POOL_SIZE", &POOL.to_string()),
            ("BODY_TIMEOUT_SECONDS", "3"),
        ],
        Some(database),
    );
    let alice = sign(&claims("alice", ORG_A), SECRET);
    let bob = sign(&claims("bob", ORG_B), SECRET);
    let stalled: Vec<TcpStream> = (0..POOL)
        .map(|_| {
            let mut stream = TcpStream::connect(app.addr).expect("connect");
            let head = format!(
                "POST /projects HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {alice}\r\n\
                 content-type: application/json\r\ncontent-length: 100\r\n\r\n",
                app.addr
            );
            stream.write_all(head.as_bytes()).expect("send the head");
            stream
        })
        .collect();
    // Not a timing assertion: gives the app time to route both and run their extractors.
    std::thread::sleep(Duration::from_millis(500));
    let listed = app.get("/projects", Some(&bob));
    assert_eq!(
        listed.status, 200,
        "org B while A's bodies stall: {listed:?}"
    );
    assert_eq!(listed.json(), serde_json::json!([]));
    for mut stream in stalled {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        let head = String::from_utf8_lossy(&raw);
        assert!(
            head.starts_with("HTTP/1.1 408"),
            "a stalled body is cut off with 408: {head}"
        );
    }
    assert!(app.terminate(), "SIGTERM must shut {example} down cleanly");
}

#[test]
fn axum_reference_app_stalled_bodies_hold_no_connection() {
    check_stalled_bodies_hold_no_connection("reference_axum");
}

#[test]
fn actix_reference_app_stalled_bodies_hold_no_connection() {
    check_stalled_bodies_hold_no_connection("reference_actix");
}

#[test]
fn axum_reference_app_on_sqlx_keeps_the_contract() {
    check_contract("reference_axum+sqlx");
}

#[test]
fn actix_reference_app_on_sqlx_keeps_the_contract() {
    check_contract("reference_actix+sqlx");
}

#[test]
fn axum_reference_app_on_sqlx_stalled_bodies_hold_no_connection() {
    check_stalled_bodies_hold_no_connection("reference_axum+sqlx");
}

#[test]
fn actix_reference_app_on_sqlx_stalled_bodies_hold_no_connection() {
    check_stalled_bodies_hold_no_connection("reference_actix+sqlx");
}

#[test]
fn axum_reference_app_keeps_the_contract() {
    check_contract("reference_axum");
}

/// The app with `DATABASE_REPLICA_URLS` pointing at a real streaming standby: `GET` routes
/// (`ReadOnly` transactions) are served by the standby, isolated, and a writer reads its own
/// writes at once (from the primary, the read-your-writes rule).
fn check_reads_from_a_standby(example: &str) {
    let primary = TestPostgres::start_local_replicated().expect("a replicated primary");
    let standby = primary.start_standby().expect("a streaming standby");
    let database = primary.create_database().expect("test database");
    let url = database.url().to_owned();
    let replica = standby.url(&database);
    let mut app = RunningApp::start_with(
        example,
        &[
            ("APP_ENV", "test"),
            ("JWT_SECRET", SECRET),
            ("DATABASE_URL", &url),
            ("DATABASE_REPLICA_URLS", &replica),
        ],
        None,
    );
    // The app applied its schema on the primary before listening.
    standby.wait_for_replay(&primary).expect("replay");
    let alice = sign(&claims("alice", ORG_A), SECRET);
    let carol = sign(&claims("carol", ORG_A), SECRET);
    let bob = sign(&claims("bob", ORG_B), SECRET);
    let created = app.send_json("POST", "/projects", &alice, r#"{"name": "on-primary"}"#);
    assert_eq!(created.status, 201, "{created:?}");
    let names = |reply: &Reply| -> Vec<String> {
        reply
            .json()
            .as_array()
            .expect("array")
            .iter()
            .map(|p| p["name"].as_str().expect("name").to_owned())
            .collect()
    };
    // Alice reads her write at once.
    let listed = app.get("/projects", Some(&alice));
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(names(&listed), vec!["on-primary".to_owned()]);
    standby.wait_for_replay(&primary).expect("replay");
    // Carol (same org) reads from the standby once it has replayed; Bob sees nothing.
    let listed = app.get("/projects", Some(&carol));
    assert_eq!(names(&listed), vec!["on-primary".to_owned()]);
    let listed = app.get("/projects", Some(&bob));
    assert_eq!(listed.status, 200, "{listed:?}");
    assert!(names(&listed).is_empty(), "{listed:?}");
    assert!(app.terminate(), "SIGTERM must shut {example} down cleanly");
    let log = std::fs::read_to_string(&app.log).expect("app log");
    assert!(
        log.contains(r#"node="replica""#),
        "reads served by the standby:\n{log}"
    );
    assert!(
        log.contains(r#"node="primary""#),
        "writes served by the primary:\n{log}"
    );
}

#[test]
fn axum_reference_app_serves_reads_from_a_standby() {
    check_reads_from_a_standby("reference_axum");
}

#[test]
fn actix_reference_app_serves_reads_from_a_standby() {
    check_reads_from_a_standby("reference_actix");
}

#[test]
fn axum_reference_app_keeps_the_contract_through_pgbouncer() {
    check_contract_through_pgbouncer("reference_axum");
}

#[test]
fn actix_reference_app_keeps_the_contract_through_pgbouncer() {
    check_contract_through_pgbouncer("reference_actix");
}

#[test]
fn axum_reference_app_quickstart_works() {
    check_quickstart("reference_axum");
}

#[test]
fn axum_reference_app_refuses_to_start_without_a_key() {
    check_refuses_to_start_without_a_key("reference_axum");
}

#[test]
fn actix_reference_app_keeps_the_contract() {
    check_contract("reference_actix");
}

#[test]
fn actix_reference_app_quickstart_works() {
    check_quickstart("reference_actix");
}

#[test]
fn actix_reference_app_refuses_to_start_without_a_key() {
    check_refuses_to_start_without_a_key("reference_actix");
}

#[test]
fn axum_reference_app_refuses_to_start_without_a_database() {
    check_refuses_to_start_without_a_database("reference_axum");
}

#[test]
fn actix_reference_app_refuses_to_start_without_a_database() {
    check_refuses_to_start_without_a_database("reference_actix");
}

#[test]
fn axum_reference_app_rate_limits_per_org() {
    check_rate_limit("reference_axum");
}

#[test]
fn actix_reference_app_rate_limits_per_org() {
    check_rate_limit("reference_actix");
}

/// The same requests to both apps get the same answers: status, body and the headers that carry
/// meaning (everything but `date`, `x-request-id` and connection handling). The one difference
/// allowed is the message of `invalid_body`, which is the framework's deserializer text.
#[test]
fn actix_and_axum_answer_alike() {
    let actix = RunningApp::start("reference_actix");
    let axum = RunningApp::start("reference_axum");
    let alice = sign(&claims("alice", ORG_A), SECRET);
    let bearer = format!("Bearer {alice}");
    let mut service = claims("job", ORG_A);
    service["role"] = "service_role".into();
    let service = format!("Bearer {}", sign(&service, SECRET));
    let mut expired = claims("alice", ORG_A);
    expired["exp"] = (now() - 3600).into();
    let expired = format!("Bearer {}", sign(&expired, SECRET));
    let json = ("content-type", "application/json");
    let huge = format!(r#"{{"name": "{}"}}"#, "h".repeat(70_000));
    let long_token = format!("Bearer {}", "a".repeat(20_000));
    let unknown = format!("/projects/{}", uuid::Uuid::new_v4());
    // (method, path, headers, body)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("GET", "/healthz", vec![], ""),
        ("GET", "/me", vec![], ""),
        (
            "GET",
            "/me",
            vec![("authorization", "Bearer not-a-jwt")],
            "",
        ),
        ("GET", "/me", vec![("authorization", "Basic abc")], ""),
        ("GET", "/me", vec![("authorization", &expired)], ""),
        ("GET", "/me", vec![("authorization", &service)], ""),
        ("GET", "/me", vec![("authorization", &bearer)], ""),
        ("GET", "/projects", vec![("authorization", &bearer)], ""),
        ("GET", "/nowhere", vec![], ""),
        ("PUT", "/projects", vec![], ""),
        ("PATCH", "/me", vec![], ""),
        ("PUT", &unknown, vec![("authorization", &bearer)], ""),
        ("HEAD", "/healthz", vec![], ""),
        ("GET", "/me", vec![("authorization", &long_token)], ""),
        (
            "POST",
            "/projects",
            vec![("authorization", &bearer), json],
            r#"{"name": 5}"#,
        ),
        (
            "POST",
            "/projects",
            vec![("authorization", &bearer), json],
            r#"{"title": "x"}"#,
        ),
        (
            "POST",
            "/projects",
            vec![("authorization", &bearer), json],
            &huge,
        ),
        (
            "POST",
            "/projects",
            vec![("authorization", &bearer), json],
            "",
        ),
        ("HEAD", "/me", vec![], ""),
        ("HEAD", "/me", vec![("authorization", &bearer)], ""),
        (
            "GET",
            "/projects/not-a-uuid",
            vec![("authorization", &bearer)],
            "",
        ),
        ("GET", &unknown, vec![("authorization", &bearer)], ""),
        ("DELETE", &unknown, vec![("authorization", &bearer)], ""),
        (
            "POST",
            "/projects",
            vec![("authorization", &bearer), json],
            "{not json",
        ),
        (
            "POST",
            "/projects",
            vec![("authorization", &bearer), json],
            r#"{"name": ""}"#,
        ),
        (
            "POST",
            "/projects",
            vec![("authorization", &bearer)],
            r#"{"name": "x"}"#,
        ),
    ];
    let meaningful = |reply: &Reply| -> Vec<(String, String)> {
        let mut headers: Vec<_> = reply
            .headers
            .iter()
            .filter(|(n, _)| {
                !matches!(
                    n.as_str(),
                    "date" | "x-request-id" | "connection" | "content-length" | "transfer-encoding"
                )
            })
            .cloned()
            .collect();
        headers.sort();
        headers
    };
    for (method, path, headers, body) in &cases {
        let a = actix.request(method, path, headers, body);
        let b = axum.request(method, path, headers, body);
        let what = format!("{method} {path} {headers:?}");
        assert_eq!(a.status, b.status, "{what}\nactix: {a:?}\naxum: {b:?}");
        if a.status == 422 && a.json()["error"] == "invalid_body" {
            // The message is each framework's own deserializer text (axum adds the field path).
            assert_eq!(b.json()["error"], "invalid_body", "{what}");
        } else {
            assert_eq!(a.body, b.body, "{what}");
        }
        assert_eq!(meaningful(&a), meaningful(&b), "{what}");
    }
}

/// `LOG_FORMAT=json`: every line the app writes to stderr is one JSON object; the `request` span
/// of an accepted and of a refused request carries the identity, the route template, the status
/// and the latency; no token appears anywhere.
fn check_json_logs(example: &str) {
    let database = TestPostgres::shared()
        .expect("test PostgreSQL")
        .create_database()
        .expect("test database");
    let url = database.url().to_owned();
    let mut app = RunningApp::start_with(
        example,
        &[
            ("APP_ENV", "test"),
            ("JWT_SECRET", SECRET),
            ("DATABASE_URL", &url),
            ("LOG_FORMAT", "json"),
        ],
        Some(database),
    );
    let alice = sign(&claims("alice", ORG_A), SECRET);
    let bearer = format!("Bearer {alice}");
    let ok = app.request(
        "GET",
        "/projects",
        &[("authorization", &bearer), ("x-request-id", "json-log-ok")],
        "",
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    let refused = app.request("GET", "/me", &[("x-request-id", "json-log-401")], "");
    refused.assert_error(401, "no token");
    let forged = sign(
        &claims("alice", ORG_A),
        "another-secret-another-secret-0123456789",
    );
    let forged_reply = app.get("/me", Some(&forged));
    forged_reply.assert_error(401, "forged token");
    // Span close lines are written when the request ends; stop the app so everything is flushed.
    assert!(app.terminate(), "SIGTERM must shut {example} down cleanly");

    let log = app.stderr();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{example}: a log line is not JSON ({e}): {line}"))
        })
        .collect();
    assert!(!lines.is_empty(), "{example} logged nothing");
    assert!(!log.contains(&alice), "{example}: the token is in the logs");
    assert!(
        !log.contains(&forged),
        "{example}: the forged token is in the logs"
    );
    assert!(
        !log.contains(SECRET),
        "{example}: the secret is in the logs"
    );

    // The close line of a request's span (the access log line).
    let request_span = |request_id: &str| -> serde_json::Value {
        lines
            .iter()
            .filter(|line| line["fields"]["message"] == "close")
            .map(|line| &line["span"])
            .find(|span| span["name"] == "request" && span["request_id"] == request_id)
            .unwrap_or_else(|| panic!("{example}: no closed request span {request_id} in:\n{log}"))
            .clone()
    };
    let accepted = request_span("json-log-ok");
    assert_eq!(accepted["route"], "/projects", "{accepted}");
    assert_eq!(accepted["org_id"], ORG_A, "{accepted}");
    assert_eq!(accepted["user_id"], "alice", "{accepted}");
    assert_eq!(accepted["role"], "authenticated", "{accepted}");
    assert_eq!(accepted["status"], 200, "{accepted}");
    assert!(
        accepted["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{accepted}"
    );
    let rejected = request_span("json-log-401");
    assert_eq!(rejected["route"], "/me", "{rejected}");
    assert_eq!(rejected["status"], 401, "{rejected}");
    assert_eq!(rejected["error_code"], "missing_token", "{rejected}");
    assert!(rejected.get("org_id").is_none(), "{rejected}");
    assert!(rejected["latency_ms"].as_f64().is_some(), "{rejected}");

    // The guard's transaction span of the accepted request, nested in its request span.
    let tx = lines
        .iter()
        .filter(|line| line["fields"]["message"] == "close" && line["span"]["name"] == "tenant_tx")
        .find(|line| {
            line["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|s| s["request_id"] == "json-log-ok"))
        })
        .unwrap_or_else(|| panic!("{example}: no tenant_tx span inside json-log-ok:\n{log}"));
    assert_eq!(tx["span"]["org_id"], ORG_A, "{tx}");
    assert_eq!(tx["span"]["outcome"], "committed", "{tx}");
    for field in ["pool_wait_ms", "scope_ms", "duration_ms"] {
        assert!(tx["span"][field].as_f64().is_some(), "{field}: {tx}");
    }
}

#[test]
fn axum_reference_app_logs_json() {
    check_json_logs("reference_axum");
}

#[test]
fn actix_reference_app_logs_json() {
    check_json_logs("reference_actix");
}

/// A minimal OIDC issuer on loopback: its discovery document and its JWKS (the core's test key
/// `ec-1`), served until the test process ends. Returns the issuer URL.
fn local_oidc_issuer() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let issuer = format!("{base}/realms/acme");
    let jwks = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/tenant-guard-core/tests/fixtures/jwks.json"
    ))
    .expect("jwks fixture");
    let doc = serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/protocol/openid-connect/certs"),
    })
    .to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let body = if request.contains("/.well-known/openid-configuration ") {
                &doc
            } else {
                &jwks
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    issuer
}

/// Started against an OIDC issuer from the environment alone (`JWT_OIDC_ISSUER`; development,
/// since the local issuer speaks http): its tokens work, another issuer's do not, and no demo
/// secret is made up.
fn check_oidc_issuer_from_env(example: &str) {
    let issuer = local_oidc_issuer();
    let database = TestPostgres::shared()
        .expect("test PostgreSQL")
        .create_database()
        .expect("test database");
    let url = database.url().to_owned();
    let mut app = RunningApp::start_with(
        example,
        &[
            ("APP_ENV", "development"),
            ("DATABASE_URL", &url),
            ("JWT_OIDC_ISSUER", &issuer),
        ],
        Some(database),
    );
    let key = jsonwebtoken::EncodingKey::from_ec_pem(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crates/tenant-guard-core/tests/fixtures/ec256_private.pem"
        ))
        .expect("ec key"),
    )
    .expect("ec key");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("ec-1".into());
    let mut good = claims("alice", ORG_A);
    good["iss"] = serde_json::json!(issuer);
    let token = jsonwebtoken::encode(&header, &good, &key).expect("sign");
    let me = app.get("/me", Some(&token));
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.json()["org_id"], ORG_A);
    let mut other = good.clone();
    other["iss"] = serde_json::json!("https://other.example/");
    let token = jsonwebtoken::encode(&header, &other, &key).expect("sign");
    let code = app
        .get("/me", Some(&token))
        .assert_error(401, "another issuer");
    assert_eq!(code, "invalid_issuer");
    assert!(
        !app.stderr().contains("export TOKEN_ALICE="),
        "no demo tokens beside a real issuer"
    );
    assert!(app.terminate(), "SIGTERM must shut {example} down cleanly");
}

#[test]
fn axum_reference_app_starts_against_an_oidc_issuer_from_env() {
    check_oidc_issuer_from_env("reference_axum");
}

#[test]
fn actix_reference_app_starts_against_an_oidc_issuer_from_env() {
    check_oidc_issuer_from_env("reference_actix");
}

/// Runs `sql` on `database` as its superuser (a fresh connection on a throwaway runtime).
fn admin_sql(database: &TestDatabase, sql: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = database.connect().await.expect("connect");
        client.batch_execute(sql).await.expect("admin SQL");
    });
}

/// A token of `sub` that names no org.
fn token_without_org(sub: &str) -> String {
    let mut claims = claims(sub, ORG_A);
    claims.as_object_mut().expect("object").remove("org_id");
    sign(&claims, SECRET)
}

/// `GET path` with a bearer token and an org header.
fn get_in_org(app: &RunningApp, path: &str, token: &str, header: &str, org: &str) -> Reply {
    let bearer = format!("Bearer {token}");
    app.request(
        "GET",
        path,
        &[("authorization", &bearer), (header, org)],
        "",
    )
}

/// `ORG_SOURCE=header` (issue 14): tokens without an org name it in `x-org-id` (or `ORG_HEADER`),
/// the membership lookup in the reference schema's `memberships` table decides. A member gets 200
/// scoped to the chosen org (RLS shows that org's rows only, writes land there); a non-member 403
/// `not_a_member`; a token naming its org with another org in the header 403 `org_mismatch`; a
/// revoked membership is 403 once the cached answer expires (`MEMBERSHIP_CACHE_TTL_SECONDS`).
///
/// `through_pgbouncer`: `DATABASE_URL` is the process's transaction-mode PgBouncer, with
/// `DB_POOLER=transaction` (the lookup then uses no named statement).
fn check_header_selected_orgs(example: &str, header: Option<&str>, through_pgbouncer: bool) {
    let database = TestPostgres::shared()
        .expect("test PostgreSQL")
        .create_database()
        .expect("test database");
    let url = if through_pgbouncer {
        pgbouncer().url(&database)
    } else {
        database.url().to_owned()
    };
    let mut vars = vec![
        ("APP_ENV", "test"),
        ("JWT_SECRET", SECRET),
        ("DATABASE_URL", url.as_str()),
        ("ORG_SOURCE", "header"),
        ("MEMBERSHIP_CACHE_TTL_SECONDS", "1"),
    ];
    if through_pgbouncer {
        vars.extend([("DB_POOLER", "transaction"), ("DB_POOL_SIZE", "6")]);
    }
    if let Some(header) = header {
        vars.push(("ORG_HEADER", header));
    }
    // Declared after the database: the app stops before its database is dropped.
    let mut app = RunningApp::start_with(example, &vars, None);
    let header = header.unwrap_or("x-org-id");
    // The app applied the schema: memberships and one project in each org, written directly.
    admin_sql(
        &database,
        &format!(
            "INSERT INTO memberships (user_id, org_id) VALUES ('carol', '{ORG_A}');
             INSERT INTO projects (org_id, name) VALUES ('{ORG_A}', 'a-row'), ('{ORG_B}', 'b-row');"
        ),
    );
    let carol = token_without_org("carol");

    // A member, no org in the token: scoped to the org the header names.
    let me = get_in_org(&app, "/me", &carol, header, ORG_A);
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(
        me.json(),
        serde_json::json!({"user_id": "carol", "org_id": ORG_A, "role": "authenticated"})
    );
    let listed = get_in_org(&app, "/projects", &carol, header, ORG_A);
    assert_eq!(listed.status, 200, "{listed:?}");
    let names: Vec<(String, String)> = listed
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|p| {
            (
                p["org_id"].as_str().unwrap().to_owned(),
                p["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![(ORG_A.to_owned(), "a-row".to_owned())],
        "only the chosen org's rows"
    );
    let bearer = format!("Bearer {carol}");
    let created = app.request(
        "POST",
        "/projects",
        &[
            ("authorization", &bearer),
            (header, ORG_A),
            ("content-type", "application/json"),
        ],
        &format!(r#"{{"name": "by-carol", "org_id": "{ORG_B}"}}"#),
    );
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.json()["org_id"], ORG_A, "written in the chosen org");

    // Not a member of B: 403 with a JSON body and an RFC 6750 challenge, like the other 403s.
    for path in ["/me", "/projects"] {
        let reply = get_in_org(&app, path, &carol, header, ORG_B);
        assert_eq!(reply.assert_error(403, "non-member"), "not_a_member");
        let www = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            www.starts_with("Bearer") && www.contains("insufficient_scope"),
            "{www}"
        );
        assert!(!reply.body.contains(&carol), "token echoed");
    }
    // Nobody's member at all, and no org named: refused, never scoped.
    let dave = token_without_org("dave");
    get_in_org(&app, "/projects", &dave, header, ORG_A).assert_error(403, "dave");
    let code = app
        .get("/projects", Some(&carol))
        .assert_error(400, "no org named");
    assert_eq!(code, "org_required");
    let code = get_in_org(&app, "/projects", &carol, header, "not-a-uuid")
        .assert_error(400, "malformed org");
    assert_eq!(code, "invalid_org_header");

    // A token that names its org wins: another org in the header is 403, the same one is fine.
    let alice = sign(&claims("alice", ORG_A), SECRET);
    let code = get_in_org(&app, "/me", &alice, header, ORG_B).assert_error(403, "mismatch");
    assert_eq!(code, "org_mismatch");
    let same = get_in_org(&app, "/me", &alice, header, ORG_A);
    assert_eq!(same.status, 200, "{same:?}");
    assert_eq!(app.get("/me", Some(&alice)).status, 200, "no header needed");

    // Revoked in the database: refused once the cached answer (1 s) has expired.
    admin_sql(&database, "DELETE FROM memberships WHERE user_id = 'carol'");
    std::thread::sleep(Duration::from_millis(1_500));
    let reply = get_in_org(&app, "/projects", &carol, header, ORG_A);
    assert_eq!(reply.assert_error(403, "revoked"), "not_a_member");

    // Nothing was written outside org A, and only carol's one project.
    let carols = get_in_org(&app, "/projects", &alice, header, ORG_A).json();
    assert_eq!(
        carols.as_array().expect("array").len(),
        2,
        "a-row and by-carol: {carols}"
    );
    assert!(app.terminate(), "SIGTERM must shut {example} down cleanly");
}

/// Runs `example` with `vars` (no database needed: it must refuse before or at the lookup check)
/// and returns its stderr, asserting it exited non-zero without a `listening on` line.
fn start_refused(example: &str, vars: &[(&str, &str)]) -> String {
    let mut command = Command::new(example_binary(example));
    for var in APP_VARS {
        command.env_remove(var);
    }
    let output = command
        .env("BIND", "127.0.0.1:0")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run the example");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "{vars:?}: it must refuse to start: {stderr}"
    );
    assert!(output.stdout.is_empty(), "{vars:?}: no listening line");
    stderr
}

/// Fail closed: every bad value of the org-source variables refuses to start, naming the variable
/// (a membership variable without `ORG_SOURCE=header` too: it would be silently ignored).
fn check_org_source_misconfiguration(example: &str) {
    let database = TestPostgres::shared()
        .expect("test PostgreSQL")
        .create_database()
        .expect("test database");
    let url = database.url().to_owned();
    let base = [
        ("APP_ENV", "test"),
        ("JWT_SECRET", SECRET),
        ("DATABASE_URL", url.as_str()),
    ];
    for (extra, named) in [
        (&[("ORG_SOURCE", "headers")][..], "ORG_SOURCE"),
        (
            &[("ORG_SOURCE", "header"), ("ORG_HEADER", "x org")][..],
            "ORG_HEADER",
        ),
        (
            &[("ORG_SOURCE", "header"), ("ORG_HEADER", "Authorization")][..],
            "ORG_HEADER",
        ),
        (
            &[("ORG_SOURCE", "header"), ("MEMBERSHIP_ROLE", "bad role;")][..],
            "MEMBERSHIP_ROLE",
        ),
        (
            &[
                ("ORG_SOURCE", "header"),
                ("MEMBERSHIP_CACHE_TTL_SECONDS", "-1"),
            ][..],
            "MEMBERSHIP_CACHE_TTL_SECONDS",
        ),
        (
            &[("ORG_SOURCE", "header"), ("MEMBERSHIP_CACHE_SIZE", "many")][..],
            "MEMBERSHIP_CACHE_SIZE",
        ),
        (
            &[
                ("ORG_SOURCE", "header"),
                ("MEMBERSHIP_SQL", "SELECT 'authenticated'"),
            ][..],
            "MEMBERSHIP_SQL",
        ),
        (
            &[(
                "MEMBERSHIP_SQL",
                "SELECT role FROM m WHERE u = $1 AND o = $2",
            )][..],
            "MEMBERSHIP_SQL",
        ),
        (&[("ORG_HEADER", "x-tenant")][..], "ORG_HEADER"),
        (&[("TOKEN_ORG", "default")][..], "TOKEN_ORG"),
        (
            &[("ORG_SOURCE", "header"), ("TOKEN_ORG", "header")][..],
            "TOKEN_ORG",
        ),
        // Checked against the database at start: a missing table, a role that does not exist.
        (
            &[
                ("ORG_SOURCE", "header"),
                (
                    "MEMBERSHIP_SQL",
                    "SELECT role FROM no_such_table WHERE u = $1 AND o = $2",
                ),
            ][..],
            "MEMBERSHIP_SQL",
        ),
        (
            &[
                ("ORG_SOURCE", "header"),
                ("MEMBERSHIP_ROLE", "no_such_role"),
            ][..],
            "MEMBERSHIP_ROLE",
        ),
    ] {
        let vars: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
        let stderr = start_refused(example, &vars);
        assert!(stderr.contains(named), "{extra:?}: {stderr}");
        assert!(
            !stderr.contains(SECRET),
            "{extra:?}: the secret in the message"
        );
    }
}

#[test]
fn axum_reference_app_checks_header_selected_orgs() {
    check_header_selected_orgs("reference_axum", None, false);
}

#[test]
fn actix_reference_app_checks_header_selected_orgs() {
    check_header_selected_orgs("reference_actix", Some("x-tenant"), false);
}

#[test]
fn axum_reference_app_on_sqlx_checks_header_selected_orgs() {
    check_header_selected_orgs("reference_axum+sqlx", Some("x-tenant"), false);
}

#[test]
fn actix_reference_app_on_sqlx_checks_header_selected_orgs() {
    check_header_selected_orgs("reference_actix+sqlx", None, false);
}

#[test]
fn axum_reference_app_checks_header_selected_orgs_through_pgbouncer() {
    check_header_selected_orgs("reference_axum", None, true);
}

#[test]
fn actix_reference_app_checks_header_selected_orgs_through_pgbouncer() {
    check_header_selected_orgs("reference_actix", Some("x-tenant"), true);
}

/// `TOKEN_ORG=default`: a token's org is where a request lands without a header; a header naming
/// another org overrides it only for a member of that org.
fn check_token_org_default(example: &str) {
    let database = TestPostgres::shared()
        .expect("test PostgreSQL")
        .create_database()
        .expect("test database");
    let url = database.url().to_owned();
    let mut app = RunningApp::start_with(
        example,
        &[
            ("APP_ENV", "test"),
            ("JWT_SECRET", SECRET),
            ("DATABASE_URL", &url),
            ("ORG_SOURCE", "header"),
            ("TOKEN_ORG", "default"),
        ],
        None,
    );
    admin_sql(
        &database,
        &format!("INSERT INTO memberships (user_id, org_id) VALUES ('alice', '{ORG_B}')"),
    );
    let alice = sign(&claims("alice", ORG_A), SECRET);
    assert_eq!(
        app.get("/me", Some(&alice)).json()["org_id"],
        ORG_A,
        "no header"
    );
    let me = get_in_org(&app, "/me", &alice, "x-org-id", ORG_B);
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.json()["org_id"], ORG_B, "a member's header overrides");
    let other = "cccccccc-0000-4000-8000-000000000003";
    let code = get_in_org(&app, "/me", &alice, "x-org-id", other).assert_error(403, "no member");
    assert_eq!(code, "not_a_member");
    assert!(app.terminate(), "SIGTERM must shut {example} down cleanly");
}

#[test]
fn axum_reference_app_lets_a_checked_header_override_a_default_token_org() {
    check_token_org_default("reference_axum");
}

#[test]
fn actix_reference_app_lets_a_checked_header_override_a_default_token_org() {
    check_token_org_default("reference_actix");
}

#[test]
fn axum_reference_app_refuses_a_bad_org_source() {
    check_org_source_misconfiguration("reference_axum");
}

#[test]
fn actix_reference_app_refuses_a_bad_org_source() {
    check_org_source_misconfiguration("reference_actix");
}

/// `JWT_ORG_ID_KIND` other than `uuid` end to end: the app's schema types `org_id` for the kind
/// (`bigint`, `text`), the handlers bind and read it for every kind, and isolation holds as with
/// UUIDs (create, list, read and delete across two orgs, a row a superuser wrote for one org
/// seen by that org only). The JSON shows the org as `/me` does: `org_a`/`org_b` as they appear
/// in the responses (a number for integer orgs), `claim_a`/`claim_b` as they sit in the tokens.
/// Then the same database refuses to start an app of another kind, naming the column and
/// `JWT_ORG_ID_KIND`, instead of failing at the first request.
fn check_org_id_kind(
    example: &str,
    kind: &str,
    claims_and_json: [(serde_json::Value, serde_json::Value); 2],
    literal_b: &str,
) {
    let [(claim_a, org_a), (claim_b, org_b)] = claims_and_json;
    let database = TestPostgres::shared()
        .expect("test PostgreSQL")
        .create_database()
        .expect("test database");
    let url = database.url().to_owned();
    let mut app = RunningApp::start_with(
        example,
        &[
            ("APP_ENV", "test"),
            ("JWT_SECRET", SECRET),
            ("DATABASE_URL", &url),
            ("JWT_ORG_ID_KIND", kind),
        ],
        None,
    );
    let token = |sub: &str, org: &serde_json::Value| {
        let mut claims = claims(sub, ORG_A);
        claims["org_id"] = org.clone();
        sign(&claims, SECRET)
    };
    let (alice, bob) = (token("alice", &claim_a), token("bob", &claim_b));

    let me = app.get("/me", Some(&alice));
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(
        me.json(),
        serde_json::json!({"user_id": "alice", "org_id": org_a, "role": "authenticated"})
    );
    // An org claim that is no org of this kind: refused, never scoped.
    let code = app
        .get(
            "/me",
            Some(&token("alice", &serde_json::json!("acme corp"))),
        )
        .assert_error(403, "an org claim of no kind");
    assert_eq!(code, "invalid_org");
    if kind == "integer" {
        app.get("/me", Some(&sign(&claims("alice", ORG_A), SECRET)))
            .assert_error(403, "a UUID org claim for integer orgs");
    }

    let body = format!(r#"{{"name": "alpha", "org_id": {org_b}}}"#);
    let created = app.send_json("POST", "/projects", &alice, &body);
    assert_eq!(created.status, 201, "{created:?}");
    let project = created.json();
    assert_eq!(project["org_id"], org_a, "the org comes from the token");
    let id = project["id"].as_str().expect("id").to_owned();
    let path = format!("/projects/{id}");
    let listed = app.get("/projects", Some(&alice)).json();
    assert_eq!(
        listed,
        serde_json::json!([project]),
        "Alice lists her project"
    );
    assert_eq!(app.get(&path, Some(&alice)).json(), project);

    // Bob sees none of it, by any route; a row a superuser wrote for his org is his alone.
    admin_sql(
        &database,
        &format!("INSERT INTO projects (org_id, name) VALUES ('{literal_b}', 'planted')"),
    );
    let bobs = app.get("/projects", Some(&bob));
    assert_eq!(bobs.status, 200, "{bobs:?}");
    let bobs = bobs.json();
    let bobs = bobs.as_array().expect("array");
    assert_eq!(bobs.len(), 1, "{bobs:?}");
    assert_eq!(bobs[0]["org_id"], org_b);
    assert_eq!(bobs[0]["name"], "planted");
    app.get(&path, Some(&bob))
        .assert_error(404, "Bob reads Alice's project");
    let bearer = format!("Bearer {bob}");
    app.request("DELETE", &path, &[("authorization", &bearer)], "")
        .assert_error(404, "Bob deletes Alice's project");
    assert_eq!(app.get(&path, Some(&alice)).status, 200, "still there");
    let bobs_project = app.send_json("POST", "/projects", &bob, r#"{"name": "beta"}"#);
    assert_eq!(bobs_project.status, 201, "{bobs_project:?}");
    assert_eq!(bobs_project.json()["org_id"], org_b);
    let alices = app.get("/projects", Some(&alice)).json();
    assert_eq!(
        alices,
        serde_json::json!([project]),
        "Alice still sees hers only"
    );
    let bearer = format!("Bearer {alice}");
    let deleted = app.request("DELETE", &path, &[("authorization", &bearer)], "");
    assert_eq!(deleted.status, 204, "{deleted:?}");
    app.get(&path, Some(&alice)).assert_error(404, "deleted");
    assert!(app.terminate(), "SIGTERM must shut {example} down cleanly");

    // The same database with another kind: refused at start, naming what disagrees.
    let other = if kind == "uuid" { "integer" } else { "uuid" };
    let stderr = start_refused(
        example,
        &[
            ("APP_ENV", "test"),
            ("JWT_SECRET", SECRET),
            ("DATABASE_URL", &url),
            ("JWT_ORG_ID_KIND", other),
        ],
    );
    assert!(
        stderr.contains("public.projects.org_id")
            && stderr.contains(&format!("JWT_ORG_ID_KIND={other}")),
        "{stderr}"
    );
}

fn integer_orgs() -> [(serde_json::Value, serde_json::Value); 2] {
    // Alice's org as a JSON number, Bob's as a decimal string (both accepted); shown as numbers.
    [
        (serde_json::json!(101), serde_json::json!(101)),
        (serde_json::json!("202"), serde_json::json!(202)),
    ]
}

fn text_orgs() -> [(serde_json::Value, serde_json::Value); 2] {
    [
        (
            serde_json::json!("acme-corp"),
            serde_json::json!("acme-corp"),
        ),
        (
            serde_json::json!("team.blue"),
            serde_json::json!("team.blue"),
        ),
    ]
}

#[test]
fn axum_reference_app_works_with_integer_org_ids() {
    check_org_id_kind("reference_axum", "integer", integer_orgs(), "202");
}

#[test]
fn actix_reference_app_works_with_integer_org_ids() {
    check_org_id_kind("reference_actix", "integer", integer_orgs(), "202");
}

#[test]
fn axum_reference_app_on_sqlx_works_with_integer_org_ids() {
    check_org_id_kind("reference_axum+sqlx", "integer", integer_orgs(), "202");
}

#[test]
fn actix_reference_app_on_sqlx_works_with_integer_org_ids() {
    check_org_id_kind("reference_actix+sqlx", "integer", integer_orgs(), "202");
}

#[test]
fn axum_reference_app_works_with_text_org_ids() {
    check_org_id_kind("reference_axum", "text", text_orgs(), "team.blue");
}

#[test]
fn actix_reference_app_on_sqlx_works_with_text_org_ids() {
    check_org_id_kind("reference_actix+sqlx", "text", text_orgs(), "team.blue");
}

/// The default kind through the same check (and a UUID database refuses an integer app).
#[test]
fn actix_reference_app_works_with_explicit_uuid_org_ids() {
    check_org_id_kind(
        "reference_actix",
        "uuid",
        [
            (serde_json::json!(ORG_A), serde_json::json!(ORG_A)),
            (serde_json::json!(ORG_B), serde_json::json!(ORG_B)),
        ],
        ORG_B,
    );
}

/// `ORG_SOURCE=header` with `JWT_ORG_ID_KIND=integer`: the reference schema's `memberships.org_id`
/// is `bigint` too, the lookup binds the header's org as one, and a member lands in the chosen
/// org (RLS shows that org's rows only, writes land there); a non-member is 403, a header that is
/// no integer 400.
fn check_header_selected_integer_orgs(example: &str) {
    let database = TestPostgres::shared()
        .expect("test PostgreSQL")
        .create_database()
        .expect("test database");
    let url = database.url().to_owned();
    let mut app = RunningApp::start_with(
        example,
        &[
            ("APP_ENV", "test"),
            ("JWT_SECRET", SECRET),
            ("DATABASE_URL", &url),
            ("JWT_ORG_ID_KIND", "integer"),
            ("ORG_SOURCE", "header"),
            ("TOKEN_ORG", "default"),
        ],
        None,
    );
    admin_sql(
        &database,
        "INSERT INTO memberships (user_id, org_id) VALUES ('alice', 202);
         INSERT INTO projects (org_id, name) VALUES (202, 'of 202'), (303, 'of 303');",
    );
    let mut claims = claims("alice", ORG_A);
    claims["org_id"] = serde_json::json!(101);
    let alice = sign(&claims, SECRET);
    let listed = get_in_org(&app, "/projects", &alice, "x-org-id", "202");
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(
        listed.json()[0]["name"],
        "of 202",
        "the header's org: {listed:?}"
    );
    assert_eq!(listed.json().as_array().map(Vec::len), Some(1));
    let bearer = format!("Bearer {alice}");
    let created = app.request(
        "POST",
        "/projects",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
            ("x-org-id", "202"),
        ],
        r#"{"name": "new in 202"}"#,
    );
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.json()["org_id"], 202);
    let own = app.get("/projects", Some(&alice));
    assert_eq!(
        own.json(),
        serde_json::json!([]),
        "no header: the token's org 101"
    );
    let code = get_in_org(&app, "/projects", &alice, "x-org-id", "303")
        .assert_error(403, "no member of 303");
    assert_eq!(code, "not_a_member");
    let code = get_in_org(&app, "/projects", &alice, "x-org-id", ORG_B)
        .assert_error(400, "a UUID header for integer orgs");
    assert_eq!(code, "invalid_org_header");
    assert!(app.terminate(), "SIGTERM must shut {example} down cleanly");
}

#[test]
fn axum_reference_app_checks_header_selected_integer_orgs() {
    check_header_selected_integer_orgs("reference_axum");
}

#[test]
fn actix_reference_app_on_sqlx_checks_header_selected_integer_orgs() {
    check_header_selected_integer_orgs("reference_actix+sqlx");
}

/// A bad `JWT_ORG_ID_KIND`, or `JWT_ISSUERS` issuers of another kind (the reference schema holds
/// one), refuse to start, naming the variable.
fn check_org_id_kind_misconfiguration(example: &str) {
    let database = TestPostgres::shared()
        .expect("test PostgreSQL")
        .create_database()
        .expect("test database");
    let url = database.url().to_owned();
    let base = [
        ("APP_ENV", "test"),
        ("JWT_SECRET", SECRET),
        ("DATABASE_URL", url.as_str()),
    ];
    let stderr = start_refused(
        example,
        &[&base[..], &[("JWT_ORG_ID_KIND", "bigint")]].concat(),
    );
    assert!(stderr.contains("JWT_ORG_ID_KIND"), "{stderr}");
    let issuers = r#"[{"issuer": "https://partner.example/", "secret_env": "PARTNER_SECRET"}]"#;
    let vars = [
        ("JWT_ORG_ID_KIND", "integer"),
        ("JWT_ISSUERS", issuers),
        (
            "PARTNER_SECRET",
            "partner-secret-0123456789abcdef0123456789",
        ),
    ];
    let stderr = start_refused(example, &[&base[..], &vars[..]].concat());
    assert!(
        stderr.contains("JWT_ISSUERS")
            && stderr.contains("https://partner.example/")
            && stderr.contains("org_id_kind uuid"),
        "{stderr}"
    );
}

#[test]
fn axum_reference_app_refuses_a_bad_org_id_kind() {
    check_org_id_kind_misconfiguration("reference_axum");
}

#[test]
fn actix_reference_app_refuses_a_bad_org_id_kind() {
    check_org_id_kind_misconfiguration("reference_actix");
}

#[test]
fn actix_reference_app_quickstart_works_with_integer_org_ids() {
    check_quickstart_with("reference_actix", &[("JWT_ORG_ID_KIND", "integer")]);
}

/// `SESSION_RESET` (issue 18, for measuring the reset's share end to end): a bad value, and a
/// reset other than `check` with `DB_BACKEND=sqlx`, refuse to start naming the variable;
/// `dangerous_none` starts, serves a guarded request and warns at start that the reset is off.
fn check_session_reset_switch(example: &str) {
    let database = TestPostgres::shared()
        .expect("test PostgreSQL")
        .create_database()
        .expect("test database");
    let url = database.url().to_owned();
    let base = [
        ("APP_ENV", "test"),
        ("JWT_SECRET", SECRET),
        ("DATABASE_URL", url.as_str()),
    ];
    for extra in [
        &[("SESSION_RESET", "sometimes")][..],
        &[("SESSION_RESET", "DangerousNone")][..],
        &[("SESSION_RESET", "dangerous_none"), ("DB_BACKEND", "sqlx")][..],
    ] {
        let vars: Vec<_> = base.iter().chain(extra).copied().collect();
        let stderr = start_refused(example, &vars);
        assert!(stderr.contains("SESSION_RESET"), "{extra:?}: {stderr}");
    }
    let mut vars = base.to_vec();
    vars.push(("SESSION_RESET", "dangerous_none"));
    let mut app = RunningApp::start_with(example, &vars, Some(database));
    let alice = sign(&claims("alice", ORG_A), SECRET);
    let me = app.get("/me", Some(&alice));
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.json()["org_id"], ORG_A);
    assert!(
        app.stderr().contains("session reset turned off"),
        "{}",
        app.stderr()
    );
    assert!(app.terminate(), "SIGTERM must shut {example} down cleanly");
}

#[test]
fn axum_reference_app_takes_the_session_reset_switch() {
    check_session_reset_switch("reference_axum");
}

#[test]
fn actix_reference_app_takes_the_session_reset_switch() {
    check_session_reset_switch("reference_actix");
}
