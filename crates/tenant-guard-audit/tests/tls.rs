//! The audit over TLS: `sslmode`/`sslrootcert` in the URL, for the library's `connect` and for
//! the CLI, against the testkit's PostgreSQL with `ssl = on` and certificates generated here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::Command;

use tenant_guard_audit::{AuditConfig, AuditError};
use tenant_guard_testkit::{TestCertificates, TestDatabase, TestPostgres};
use tokio_postgres::config::Host;

/// A key/value connection string to `db` on the loopback address, checked against `host`.
fn conninfo(db: &TestDatabase, host: &str, extra: &str) -> String {
    let config = db.config();
    let Host::Tcp(addr) = &config.get_hosts()[0] else {
        panic!("the testkit listens on TCP");
    };
    format!(
        "host={host} hostaddr={addr} port={} user=postgres dbname={} {extra}",
        config.get_ports()[0],
        db.name()
    )
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn cli(url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tenant-guard"))
        .args(["audit", "--format", "json", "--fail-on", "none"])
        .env("DATABASE_URL", url)
        .env_remove("NO_COLOR")
        .output()
        .expect("run tenant-guard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audits_over_verified_tls_and_refuses_untrusted_servers() {
    let certs = TestCertificates::generate(&["localhost"]).expect("certificates");
    let stranger = TestCertificates::generate(&["localhost"]).expect("another CA");
    let server = TestPostgres::start_local_tls(&certs).expect("TLS server");
    let db = server.create_database_async().await.expect("database");
    db.connect()
        .await
        .expect("admin")
        .batch_execute(&format!("{}\n{}", common::ROLES, common::CORRECT))
        .await
        .expect("fixtures");
    let ca = format!("sslrootcert='{}'", certs.ca_file().display());

    // The library: verify-full with the CA connects over TLS and audits.
    let full = conninfo(&db, "localhost", &format!("sslmode=verify-full {ca}"));
    let mut client = tenant_guard_audit::connect(&full)
        .await
        .expect("verify-full");
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
    let report = tenant_guard_audit::audit(&mut client, &AuditConfig::new())
        .await
        .expect("audit over TLS");
    assert!(report.summary.tables_scanned > 0);

    // A wrong host name, an untrusted CA: Connect errors naming the certificate problem.
    let wrong_host = conninfo(&db, "127.0.0.1", &format!("sslmode=verify-full {ca}"));
    let error = tenant_guard_audit::connect(&wrong_host)
        .await
        .expect_err("wrong host name");
    assert!(matches!(error, AuditError::Connect { .. }), "{error:?}");
    assert!(
        chain(&error).contains("not valid for name"),
        "{}",
        chain(&error)
    );
    let untrusted = conninfo(
        &db,
        "localhost",
        &format!(
            "sslmode=verify-full sslrootcert='{}'",
            stranger.ca_file().display()
        ),
    );
    let error = tenant_guard_audit::connect(&untrusted)
        .await
        .expect_err("untrusted CA");
    assert!(chain(&error).contains("UnknownIssuer"), "{}", chain(&error));

    // An unreadable sslrootcert or an unknown sslmode: errors before connecting.
    let missing = conninfo(
        &db,
        "localhost",
        "sslmode=verify-full sslrootcert=/nonexistent.pem",
    );
    assert!(matches!(
        tenant_guard_audit::connect(&missing).await,
        Err(AuditError::Tls { .. })
    ));
    assert!(matches!(
        tenant_guard_audit::connect(&conninfo(&db, "localhost", "sslmode=allow")).await,
        Err(AuditError::Tls { .. })
    ));

    // The CLI: exit 0 over verified TLS (no --fail-on), 2 with the reason when refused.
    let ok = cli(&full);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = cli(&untrusted);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("could not connect") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
}

#[tokio::test]
async fn require_refuses_a_server_without_tls() {
    // The shared testkit server has TLS off.
    let (db, _client) = common::database(&[]).await;
    let error = tenant_guard_audit::connect(&conninfo(&db, "localhost", "sslmode=require"))
        .await
        .expect_err("require without TLS");
    assert!(matches!(error, AuditError::Connect { .. }));
    let refused = cli(&conninfo(&db, "localhost", "sslmode=verify-full"));
    assert_eq!(refused.status.code(), Some(2));
    // The default (prefer) still audits a server without TLS, as libpq would connect.
    let ok = cli(&conninfo(&db, "localhost", ""));
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
