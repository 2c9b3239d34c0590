//! Stopping and starting a throwaway server again: same port, same data, clients see it go.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use common::{external_server, is_live_postgres, postmaster_pid};
use tenant_guard_testkit::{TestPostgres, TestkitError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_starts_again_with_its_data() {
    if external_server() {
        return;
    }
    let server = TestPostgres::start_local().unwrap();
    let data_dir = server.data_dir().unwrap().to_owned();
    let db = server.create_database_async().await.unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before')")
        .await
        .unwrap();
    let first_pid = postmaster_pid(&data_dir);

    server.stop().unwrap();
    assert!(!is_live_postgres(first_pid), "the postmaster is gone");
    server.stop().unwrap(); // stopping twice is harmless
    assert!(
        client.query_one("SELECT 1", &[]).await.is_err(),
        "a client of the stopped server fails"
    );
    assert!(db.connect().await.is_err(), "nobody can connect meanwhile");

    server.start_again().unwrap();
    server.start_again().unwrap(); // starting a running server is harmless
    let second_pid = postmaster_pid(&data_dir);
    assert_ne!(first_pid, second_pid);
    let client = db.connect().await.unwrap();
    let v: String = client
        .query_one("SELECT v FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "before", "committed data survives a fast shutdown");

    server.restart().unwrap();
    assert!(db.connect().await.is_ok());
    let dir = data_dir.parent().unwrap().to_owned();
    drop(client);
    drop(db);
    drop(server);
    assert!(!dir.exists(), "removed on drop after restarts");
}

#[test]
fn an_external_server_cannot_be_stopped() {
    let shared = TestPostgres::shared().unwrap();
    let external = TestPostgres::from_url(shared.url()).unwrap();
    assert!(matches!(external.stop(), Err(TestkitError::NotLocal)));
    assert!(matches!(
        external.start_again(),
        Err(TestkitError::NotLocal)
    ));
}
