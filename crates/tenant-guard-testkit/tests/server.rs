//! The throwaway server itself: privileges, ownership of its files, cleanup on drop, external URLs.

mod common;

use std::time::Duration;

use common::{euid, eventually, external_server, is_live_postgres, postmaster_pid, uid_of};
use tenant_guard_testkit::{TestPostgres, TestkitError};

#[test]
fn shared_server_runs_as_an_unprivileged_user() {
    if external_server() {
        return;
    }
    let server = TestPostgres::shared().unwrap();
    let data_dir = server.data_dir().expect("a local server");
    let pid = postmaster_pid(data_dir);
    assert!(is_live_postgres(pid));
    let server_uid = uid_of(&pid.to_string()).unwrap();
    assert_ne!(server_uid, 0, "PostgreSQL runs as root?");
    if euid() == 0 {
        let user = server
            .run_as()
            .expect("root must run the server as another user");
        assert!(["postgres", "nobody"].contains(&user), "{user}");
    } else {
        assert_eq!(server.run_as(), None);
        assert_eq!(server_uid, euid());
    }
    let log = std::fs::read_to_string(server.log_file().unwrap()).unwrap();
    assert!(log.contains("ready to accept connections"), "{log}");
}

#[test]
fn owned_server_is_stopped_and_removed_on_drop() {
    if external_server() {
        return;
    }
    let server = TestPostgres::start_local().unwrap();
    let data_dir = server.data_dir().unwrap().to_owned();
    let dir = data_dir.parent().unwrap().to_owned();
    let pid = postmaster_pid(&data_dir);
    let children = common::postgres_children(pid);
    assert!(!children.is_empty(), "no auxiliary processes?");
    assert!(server.url().starts_with("postgres://postgres@127.0.0.1:"));
    let db = server.create_database().unwrap();

    drop(server);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(!is_live_postgres(pid));
    assert!(eventually(Duration::from_secs(5), || children
        .iter()
        .all(|&c| !is_live_postgres(c))));
    // A database outliving its server: dropping it is best-effort and must not hang or panic.
    drop(db);
}

#[test]
fn external_server_by_url() {
    let shared = TestPostgres::shared().unwrap();
    let external = TestPostgres::from_url(shared.url()).unwrap();
    assert_eq!(external.data_dir(), None);
    assert_eq!(external.run_as(), None);
    let db = external.create_database().unwrap();
    assert!(db.url().ends_with(db.name()));
    drop(external);
    // The server itself is untouched.
    shared.create_database().unwrap();
    drop(db);
}

#[test]
fn external_server_must_be_a_superuser() {
    let shared = TestPostgres::shared().unwrap();
    let role = format!("tg_plain_{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin = runtime.block_on(async {
        let (client, connection) = shared
            .config()
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
            .await
            .unwrap();
        client
    });

    let mut config = shared.config().clone();
    config.user(&role);
    let host = "127.0.0.1";
    let port = config.get_ports()[0];
    let url = format!("postgres://{role}@{host}:{port}/postgres");
    let err = TestPostgres::from_url(&url).unwrap_err();
    assert!(
        matches!(&err, TestkitError::NotSuperuser { user } if *user == role),
        "{err:?}"
    );
    assert!(err.to_string().contains("superuser"));

    runtime.block_on(async {
        admin
            .batch_execute(&format!("DROP ROLE {role}"))
            .await
            .unwrap();
    });
}

#[test]
fn invalid_and_unreachable_urls() {
    let err = TestPostgres::from_url("postgres://[not a url").unwrap_err();
    assert!(matches!(err, TestkitError::InvalidUrl { .. }), "{err:?}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = TestPostgres::from_url(&format!(
        "postgres://postgres:hunter2@127.0.0.1:{port}/postgres"
    ))
    .unwrap_err();
    assert!(matches!(err, TestkitError::Postgres { .. }), "{err:?}");
    assert!(!err.to_string().contains("hunter2"));
}
