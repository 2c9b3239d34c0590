//! Per-test databases on the shared server.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use tenant_guard_testkit::{TestPostgres, TestkitError};

async fn database_exists(name: &str) -> bool {
    let server = TestPostgres::shared().unwrap();
    let (client, connection) = server
        .config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn two_databases_are_independent() {
    let server = TestPostgres::shared().unwrap();
    let a = server.create_database().unwrap();
    let b = server.create_database_async().await.unwrap();
    assert_ne!(a.name(), b.name());

    let client_a = a.connect().await.unwrap();
    client_a
        .batch_execute("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('only in a')")
        .await
        .unwrap();
    let client_b = b.connect().await.unwrap();
    let err = client_b
        .query("SELECT * FROM notes", &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
    );
    client_b
        .batch_execute("CREATE TABLE notes (body text)")
        .await
        .unwrap();
    let in_b: i64 = client_b
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_b, 0);
    let current: String = client_a
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, a.name());
}

#[tokio::test]
async fn drop_removes_the_database_even_with_open_connections() {
    let server = TestPostgres::shared().unwrap();
    let db = server.create_database_async().await.unwrap();
    let name = db.name().to_owned();
    let client = db.connect().await.unwrap();
    assert!(database_exists(&name).await);

    // Dropped inside a current-thread runtime, with a connection still open: WITH (FORCE).
    drop(db);
    assert!(!database_exists(&name).await);
    assert!(client.simple_query("SELECT 1").await.is_err());
}

#[test]
fn works_from_plain_sync_code() {
    let server = TestPostgres::shared().unwrap();
    let db = server.create_database().unwrap();
    let name = db.name().to_owned();
    assert!(name.starts_with("tg_works_from_plain_sync_code_"), "{name}");
    assert!(db.url().ends_with(&format!("/{name}")), "{}", db.url());
    assert_eq!(db.config().get_dbname(), Some(name.as_str()));

    // A connection on a short-lived runtime of the test's own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = db.connect().await.unwrap();
        client
            .batch_execute("CREATE TABLE t (id int)")
            .await
            .unwrap();
    });
    drop(runtime);

    let copy = db.create_copy().unwrap();
    drop(db);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert!(!database_exists(&name).await);
        let client = copy.connect().await.unwrap();
        client.query("SELECT * FROM t", &[]).await.unwrap();
    });
}

#[test]
fn parallel_creation_from_threads() {
    let server = TestPostgres::shared().unwrap();
    let names: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                scope.spawn(move || {
                    let db = server.create_database().unwrap();
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        let client = db.connect().await.unwrap();
                        client
                            .execute("CREATE TABLE t AS SELECT $1::int AS i", &[&i])
                            .await
                            .unwrap();
                        let got: i32 = client
                            .query_one("SELECT i FROM t", &[])
                            .await
                            .unwrap()
                            .get(0);
                        assert_eq!(got, i);
                    });
                    db.name().to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(names.iter().collect::<HashSet<_>>().len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creation_from_tasks() {
    let server = TestPostgres::shared().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        tasks.spawn(async move {
            let db = server.create_database_async().await.unwrap();
            let client = db.connect().await.unwrap();
            client
                .batch_execute("CREATE TABLE t (id int)")
                .await
                .unwrap();
            db.name().to_owned()
        });
    }
    let mut names = HashSet::new();
    while let Some(name) = tasks.join_next().await {
        names.insert(name.unwrap());
    }
    assert_eq!(names.len(), 12);
    for name in &names {
        assert!(!database_exists(name).await, "{name} was not dropped");
    }
}

#[tokio::test]
async fn copies_a_prepared_database() {
    let server = TestPostgres::shared().unwrap();
    let template = server.create_database_async().await.unwrap();
    {
        let client = template.connect().await.unwrap();
        client
            .batch_execute("CREATE TABLE orgs (name text); INSERT INTO orgs VALUES ('acme')")
            .await
            .unwrap();
    }
    // The connection task notices the dropped client asynchronously; wait until it is gone.
    let copy = loop {
        match template.create_copy_async().await {
            Ok(copy) => break copy,
            Err(TestkitError::Postgres { source, .. })
                if source.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(other) => panic!("{other}"),
        }
    };
    let client = copy.connect().await.unwrap();
    let name: String = client
        .query_one("SELECT name FROM orgs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "acme");
    client
        .batch_execute("INSERT INTO orgs VALUES ('globex')")
        .await
        .unwrap();
    drop(client);
    let again = template.create_copy().unwrap();
    let count: i64 = again
        .connect()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM orgs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1, "copies do not share rows");
}

#[test]
fn copying_a_database_in_use_fails_clearly() {
    let server = TestPostgres::shared().unwrap();
    let template = server.create_database().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let _client = template.connect().await.unwrap();
        let err = template.create_copy().unwrap_err();
        let message = err.to_string();
        assert!(message.contains(template.name()), "{message}");
        assert!(matches!(err, TestkitError::Postgres { .. }), "{err:?}");
    });
}
