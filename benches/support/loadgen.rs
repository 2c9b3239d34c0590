//! A minimal HTTP/1.1 keep-alive client over a tokio `TcpStream`, and the helpers the load
//! harness (`benches/http.rs`) and the isolation load test (`tests/load_isolation.rs`) share:
//! starting an example app as a child process, minting HS256 tokens, percentiles.
//!
//! Included with `#[path = "…/benches/support/loadgen.rs"] mod loadgen;` (not a target of its
//! own). It speaks just enough HTTP/1.1 for the reference apps: one request at a time per
//! connection, `Content-Length` or chunked bodies, `Connection: close` honoured.
// Each includer uses a subset.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead as _, BufReader as StdBufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

/// Largest response body accepted (the reference apps' lists stay far below).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One response: status and body (headers are parsed for framing only).
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Why a request failed at the transport level.
#[derive(Debug)]
pub enum ClientError {
    /// Connecting, reading or writing failed (including the server closing the connection).
    Io(std::io::Error),
    /// The response could not be parsed.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "io: {e}"),
            Self::Protocol(m) => write!(f, "protocol: {m}"),
        }
    }
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// A keep-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct Connection {
    stream: BufReader<TcpStream>,
    /// The server announced `Connection: close`: open a new connection for the next request.
    closed: bool,
    buf: Vec<u8>,
    line: String,
}

impl Connection {
    /// Connects to `addr` (TCP_NODELAY on, as load generators do).
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
            closed: false,
            buf: Vec::with_capacity(4096),
            line: String::new(),
        })
    }

    /// Whether the server closed (or announced closing) this connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Serialises a request into `self.buf`.
    fn encode(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        use std::io::Write as _;
        self.buf.clear();
        let _ = write!(self.buf, "{method} {path} HTTP/1.1\r\nhost: localhost\r\n");
        for (name, value) in headers {
            let _ = write!(self.buf, "{name}: {value}\r\n");
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            let _ = write!(self.buf, "content-length: {}\r\n", body.len());
        }
        self.buf.extend_from_slice(b"\r\n");
        self.buf.extend_from_slice(body);
    }

    /// Sends one request and reads its response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, ClientError> {
        self.encode(method, path, headers, body);
        self.stream.get_mut().write_all(&self.buf).await?;
        self.read_response(method == "HEAD").await
    }

    /// Sends the first `fraction` (0.0–1.0) of a request's bytes and returns without reading:
    /// the caller then drops the connection, cancelling the request mid-way.
    pub async fn send_partial(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        fraction: f64,
    ) -> Result<(), ClientError> {
        self.encode(method, path, headers, body);
        let n = ((self.buf.len() as f64) * fraction.clamp(0.0, 1.0)) as usize;
        self.stream.get_mut().write_all(&self.buf[..n]).await?;
        self.stream.get_mut().flush().await?;
        Ok(())
    }

    async fn read_line(&mut self) -> Result<&str, ClientError> {
        self.line.clear();
        let n = self.stream.read_line(&mut self.line).await?;
        if n == 0 {
            self.closed = true;
            return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(self.line.trim_end_matches(['\r', '\n']))
    }

    async fn read_response(&mut self, head: bool) -> Result<Response, ClientError> {
        let status_line = self.read_line().await?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| ClientError::Protocol(format!("bad status line {status_line:?}")))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            let line = self.read_line().await?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(ClientError::Protocol(format!("bad header line {line:?}")));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| ClientError::Protocol("bad content-length".into()))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                self.closed = true;
            }
        }
        let mut body = Vec::new();
        if head || status == 204 || status == 304 || (100..200).contains(&status) {
            // No body.
        } else if chunked {
            loop {
                let size_line = self.read_line().await?;
                let size_hex = size_line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size_hex, 16)
                    .map_err(|_| ClientError::Protocol(format!("bad chunk size {size_hex:?}")))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    while !self.read_line().await?.is_empty() {}
                    break;
                }
                if body.len() + size > MAX_BODY {
                    return Err(ClientError::Protocol("body too large".into()));
                }
                let start = body.len();
                body.resize(start + size, 0);
                self.stream.read_exact(&mut body[start..]).await?;
                let mut crlf = [0u8; 2];
                self.stream.read_exact(&mut crlf).await?;
            }
        } else if let Some(length) = length {
            if length > MAX_BODY {
                return Err(ClientError::Protocol("body too large".into()));
            }
            body.resize(length, 0);
            self.stream.read_exact(&mut body).await?;
        } else {
            // Delimited by the end of the connection.
            self.stream.read_to_end(&mut body).await?;
            self.closed = true;
        }
        Ok(Response { status, body })
    }
}

/// The example binary `name`, built next to the running executable (a test or bench binary in
/// `target/<profile>/deps/`, examples in `target/<profile>/examples/`).
pub fn example_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("the executable does not live in target/<profile>/deps")?;
    let path = profile_dir.join("examples").join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "example binary {} not found: build it first with the same profile, e.g. \
             `cargo build --features full --examples` (add `--release` for `cargo bench`)",
            path.display()
        ))
    }
}

/// Variables the reference apps read; cleared so the caller's environment cannot change a run.
pub const APP_VARS: &[&str] = &[
    "APP_ENV",
    "DATABASE_URL",
    "JWT_SECRET",
    "JWT_SECRET_IS_BASE64",
    "JWT_JWKS_FILE",
    "JWT_JWKS",
    "JWT_JWKS_URL",
    "JWT_PUBLIC_KEY_FILE",
    "JWT_ALGORITHMS",
    "JWT_AUDIENCE",
    "JWT_ISSUER",
    "ORG_CLAIM",
    "ROLE_CLAIM",
    "JWT_ALLOWED_ROLES",
    "JWT_COOKIE_NAME",
    "BIND",
    "DB_POOL_SIZE",
    "RATE_LIMIT_PER_MINUTE",
    "LOG_FORMAT",
    "SESSION_RESET",
    "TENANT_GUARD_BENCH_BASELINE",
];

/// An app running as a child process on a free loopback port; killed on drop.
#[derive(Debug)]
pub struct AppProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: PathBuf,
}

impl AppProcess {
    /// Starts `binary` with `args` and `vars` (none of the caller's app variables, `BIND` on a
    /// free loopback port) and waits for its `listening on http://…` line (bounded, so a broken
    /// app fails the caller instead of hanging it).
    pub fn start(binary: &Path, args: &[&str], vars: &[(&str, &str)]) -> Result<Self, String> {
        let log = std::env::temp_dir().join(format!(
            "tenant-guard-load-{}-{}.log",
            binary
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            uuid::Uuid::new_v4().simple()
        ));
        let stderr = std::fs::File::create(&log).map_err(|e| format!("log file: {e}"))?;
        let mut command = Command::new(binary);
        for var in APP_VARS {
            command.env_remove(var);
        }
        let mut child = command
            .args(args)
            .env("BIND", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in StdBufReader::new(stdout).lines() {
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
        };
        let line = received
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| {
                format!(
                    "{} printed no `listening on` line:\n{}",
                    binary.display(),
                    app.stderr()
                )
            })?;
        let addr = line
            .strip_prefix("listening on http://")
            .ok_or_else(|| format!("unexpected first stdout line {line:?}"))?;
        app.addr = addr
            .parse()
            .map_err(|e| format!("bad address {addr:?}: {e}"))?;
        Ok(app)
    }

    /// What the app wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An HS256 token the reference apps accept with `JWT_SECRET=secret` (default audience, org
/// claim `org_id`, role `authenticated`), valid for a day. `pad` adds a filler claim of that many
/// bytes (to study token size).
pub fn hs256_token(secret: &str, org: uuid::Uuid, user: &str, pad: usize) -> String {
    let now = now_secs();
    let mut claims = serde_json::json!({
        "sub": user,
        "role": "authenticated",
        "aud": "authenticated",
        "iat": now - 5,
        "exp": now + 24 * 3600,
        "org_id": org.to_string(),
    });
    if pad > 0 {
        claims["pad"] = serde_json::Value::from("x".repeat(pad));
    }
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&header, &claims, &key).unwrap_or_default()
}

/// The value at fraction `p` (0.0–1.0) of sorted samples (nearest rank); zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A small deterministic PRNG (xorshift64*), so runs are reproducible without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator (a zero seed is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}
