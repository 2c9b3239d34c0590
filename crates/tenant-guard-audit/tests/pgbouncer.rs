//! The audit through a transaction-mode PgBouncer (testkit; three server connections per database,
//! shared): its statements are unnamed and every phase runs inside one transaction of its own, so
//! nothing outlives a server connection, and the report is the same as on a direct connection.

mod common;

use common::{APP_LOGIN, LEAKY, database, pairs};
use tenant_guard_audit::AuditConfig;
use tenant_guard_testkit::{PgBouncerOptions, TestPgBouncer, TestPostgres};

#[tokio::test]
async fn the_audit_and_its_probe_work_behind_a_transaction_mode_pooler() {
    let (db, mut direct) = database(&[LEAKY]).await;
    let config = AuditConfig::new().probe(true).login_role(APP_LOGIN);
    let expected = tenant_guard_audit::audit(&mut direct, &config)
        .await
        .expect("direct audit");
    let bouncer = TestPgBouncer::start(
        TestPostgres::shared().expect("test server"),
        PgBouncerOptions::default().default_pool_size(3),
    )
    .expect("PgBouncer (Debian: apt-get install pgbouncer)");
    let mut pooled = tenant_guard_audit::connect(&bouncer.url(&db))
        .await
        .expect("connect through PgBouncer");
    // Three runs: each transaction may land on any of the three server connections.
    for _ in 0..3 {
        let report = tenant_guard_audit::audit(&mut pooled, &config)
            .await
            .expect("audit through PgBouncer");
        assert_eq!(pairs(&report), pairs(&expected));
        assert!(
            !report.findings.is_empty(),
            "the leaky fixture has findings"
        );
    }
}
