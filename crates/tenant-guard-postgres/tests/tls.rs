//! TLS from a URL (`sslmode`, `sslrootcert`) for `TenantPool` and `PgRateLimiter`, against the
//! testkit's PostgreSQL with `ssl = on` and a CA and server certificate generated here: the
//! connection is encrypted when asked, a certificate from an unknown CA or for another host is
//! refused, and `require` refuses a server without TLS.

// Test helpers: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use tenant_guard_postgres::{
    GuardError, LoginPolicy, PgRateLimiter, TenantPool, support, tokio_postgres::config::Host,
};
use tenant_guard_testkit::{TestCertificates, TestDatabase, TestIssuer, TestPostgres};
use uuid::Uuid;

/// A key/value connection string to `db` on the loopback address, as `host` (the name the
/// certificate is checked against), with `extra` TLS parameters.
fn conninfo(db: &TestDatabase, host: &str, extra: &str) -> String {
    let config = db.config();
    let port = config.get_ports()[0];
    let Host::Tcp(addr) = &config.get_hosts()[0] else {
        panic!("the testkit listens on TCP");
    };
    format!(
        "host={host} hostaddr={addr} port={port} user=postgres dbname={} {extra}",
        db.name()
    )
}

fn pool(url: &str) -> Result<TenantPool, GuardError> {
    TenantPool::builder_from_url(url)?
        .login_policy(LoginPolicy::Skip)
        .max_size(1)
        .connect_timeout(Duration::from_secs(5))
        .build()
}

/// Whether the pool's connection is encrypted, or why it could not connect.
async fn pool_ssl(url: &str) -> Result<bool, GuardError> {
    let pool = pool(url)?;
    let conn = pool.dangerous_unscoped_connection("TLS test").await?;
    let row = conn
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(GuardError::Unavailable)?;
    Ok(row.get(0))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_and_limiter_honour_sslmode_against_a_tls_server() {
    let certs = TestCertificates::generate(&["localhost"]).expect("certificates");
    let stranger = TestCertificates::generate(&["localhost"]).expect("another CA");
    let server = TestPostgres::start_local_tls(&certs).expect("TLS server");
    let db = server.create_database_async().await.expect("database");
    let ca = format!("sslrootcert='{}'", certs.ca_file().display());
    let wrong_ca = format!("sslrootcert='{}'", stranger.ca_file().display());

    // verify-full with the CA and the certificate's host name: encrypted.
    let full = conninfo(&db, "localhost", &format!("sslmode=verify-full {ca}"));
    assert!(pool_ssl(&full).await.expect("verify-full connects"));
    // The URL form works the same way.
    let url = format!(
        "postgres://postgres@localhost:{}/{}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
        db.config().get_ports()[0],
        db.name(),
        certs.ca_file().display()
    );
    assert!(pool_ssl(&url).await.expect("verify-full URL connects"));

    // The certificate names localhost, not 127.0.0.1: verify-full refuses, verify-ca accepts.
    let wrong_host = conninfo(&db, "127.0.0.1", &format!("sslmode=verify-full {ca}"));
    let error = pool_ssl(&wrong_host).await.expect_err("wrong host name");
    assert!(
        error_chain(&error).contains("not valid for name"),
        "{}",
        error_chain(&error)
    );
    let ca_only = conninfo(&db, "127.0.0.1", &format!("sslmode=verify-ca {ca}"));
    assert!(
        pool_ssl(&ca_only)
            .await
            .expect("verify-ca ignores the name")
    );

    // A CA that did not sign the server's certificate: refused, also by require + sslrootcert.
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = conninfo(&db, "localhost", &format!("sslmode={mode} {wrong_ca}"));
        let error = pool_ssl(&url).await.expect_err("untrusted CA");
        assert!(
            error_chain(&error).contains("invalid peer certificate: UnknownIssuer"),
            "{mode}: {}",
            error_chain(&error)
        );
    }

    // require without a root file: encrypted, certificate unchecked (libpq's meaning).
    let require = conninfo(&db, "127.0.0.1", "sslmode=require");
    assert!(pool_ssl(&require).await.expect("require connects"));
    let disable = conninfo(&db, "localhost", "sslmode=disable");
    assert!(
        !pool_ssl(&disable)
            .await
            .expect("disable connects in plain text")
    );

    // No host name (hostaddr only): verify-full has no name to check, so it refuses.
    let port = db.config().get_ports()[0];
    let no_name = format!(
        "hostaddr=127.0.0.1 port={port} user=postgres dbname={} sslmode=verify-full {ca}",
        db.name()
    );
    let error = pool_ssl(&no_name)
        .await
        .expect_err("verify-full without a host name");
    assert!(
        error_chain(&error).contains("hostname"),
        "{}",
        error_chain(&error)
    );
    // A Unix socket (PostgreSQL never offers TLS there): prefer connects in plain text.
    let socket_dir = server
        .data_dir()
        .unwrap()
        .parent()
        .unwrap()
        .display()
        .to_string();
    let socket = format!(
        "host={socket_dir} port={port} user=postgres dbname={}",
        db.name()
    );
    assert!(!pool_ssl(&socket).await.expect("prefer over a Unix socket"));

    // The same options on a builder from a Config.
    let (config, _) = conninfo(&db, "localhost", "")
        .parse::<tenant_guard_postgres::tls::DatabaseUrl>()
        .unwrap()
        .into_parts();
    let from_config = TenantPool::builder(config)
        .tls(
            tenant_guard_postgres::tls::TlsOptions::new(
                tenant_guard_postgres::tls::SslMode::VerifyFull,
            )
            .root_cert_file(stranger.ca_file()),
        )
        .login_policy(LoginPolicy::Skip)
        .build()
        .unwrap();
    let error = from_config
        .dangerous_unscoped_connection("TLS test")
        .await
        .expect_err("untrusted CA via .tls()");
    assert!(
        error_chain(&error).contains("UnknownIssuer"),
        "{}",
        error_chain(&error)
    );

    // A missing root file fails when the pool is built, not at the first request.
    let missing = conninfo(
        &db,
        "localhost",
        "sslmode=verify-full sslrootcert=/nonexistent.pem",
    );
    assert!(matches!(pool(&missing), Err(GuardError::Config(_))));

    // The rate limiter takes the same options.
    let admin = db.connect().await.expect("admin");
    support::apply_rate_limit_sql(&admin, None)
        .await
        .expect("rate limit SQL");
    let issuer = TestIssuer::new();
    let principal = issuer
        .principal(Uuid::new_v4(), "user-1", "authenticated")
        .expect("principal");
    let limiter = PgRateLimiter::builder("tls", 10, Duration::from_secs(60))
        .build_from_url(&full)
        .expect("limiter");
    limiter.check(&principal).await.expect("check over TLS");
    let ssl_sessions: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
              WHERE s.ssl AND a.application_name = 'tenant-guard-limiter'",
            &[],
        )
        .await
        .expect("limiter sessions")
        .get(0);
    assert_eq!(ssl_sessions, 1);
    let untrusted = PgRateLimiter::builder("tls", 10, Duration::from_secs(60))
        .build_from_url(&conninfo(
            &db,
            "localhost",
            &format!("sslmode=verify-full {wrong_ca}"),
        ))
        .expect("limiter");
    assert!(untrusted.check(&principal).await.is_err());
}

#[tokio::test]
async fn require_refuses_a_server_without_tls() {
    // The shared server has TLS off.
    let db = TestPostgres::shared()
        .expect("server")
        .create_database_async()
        .await
        .expect("database");
    for mode in ["require", "verify-ca", "verify-full"] {
        let url = conninfo(&db, "localhost", &format!("sslmode={mode}"));
        let Err(error) = pool_ssl(&url).await else {
            panic!("{mode} connected to a server without TLS");
        };
        assert!(
            error_chain(&error).contains("TLS") || error_chain(&error).contains("SSL"),
            "{mode}: {}",
            error_chain(&error)
        );
    }
    // prefer (the default) falls back to plain text, as libpq does.
    let prefer = conninfo(&db, "localhost", "");
    assert!(!pool_ssl(&prefer).await.expect("prefer connects"));
}

/// A statement abandoned mid-flight on a verify-full connection is cancelled over TLS (the
/// connection's sslmode requires it; a plain-text cancel request would be refused by the driver),
/// so the backend stops instead of sleeping on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_statements_are_cancelled_over_tls() {
    let certs = TestCertificates::generate(&["localhost"]).expect("certificates");
    let server = TestPostgres::start_local_tls(&certs).expect("TLS server");
    let db = server.create_database_async().await.expect("database");
    support::apply(db.config(), "").await.expect("support SQL");
    let admin = db.connect().await.expect("admin");
    let url = conninfo(
        &db,
        "localhost",
        &format!(
            "sslmode=verify-full sslrootcert='{}'",
            certs.ca_file().display()
        ),
    );
    let pool = pool(&url).expect("pool");
    let principal = TestIssuer::new()
        .principal(Uuid::new_v4(), "user-1", "authenticated")
        .expect("principal");
    let tx = pool
        .begin(&principal, tenant_guard_postgres::ScopeOptions::default())
        .await
        .expect("begin");
    let pid: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let running = async |pid: i32| -> bool {
        admin
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active' \
                  AND query LIKE '%tls-cancel-me%')",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0)
    };
    {
        let slow = tx.execute("SELECT pg_sleep(60) -- tls-cancel-me", &[]);
        tokio::select! {
            _ = slow => panic!("the sleep finished"),
            () = async { while !running(pid).await { tokio::time::sleep(Duration::from_millis(5)).await } } => {}
        }
    }
    drop(tx);
    for _ in 0..500 {
        if !running(pid).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("backend {pid} still sleeping 5 s after its statement was abandoned");
}
