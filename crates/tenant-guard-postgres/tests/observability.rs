//! What the guard tells tracing (and, with the `metrics` feature, the metrics recorder): the
//! `tenant_tx` span's pool wait, scoping time and outcome, and the audit events of the
//! service-role path, captured in memory against a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod common;

use common::{TestError, env, two_orgs};
use tenant_guard_core::ServiceContext;
use tenant_guard_postgres::{GuardError, ScopeOptions, with_service_role, with_tenant_guard};
use tenant_guard_testkit::capture::{Capture, CapturedSpan};

/// The one `tenant_tx` span of a capture, closed.
fn tx_span(capture: &Capture) -> CapturedSpan {
    let spans = capture.spans_named("tenant_tx");
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = spans.into_iter().next().unwrap();
    assert!(
        span.closed,
        "the span closes with the transaction: {span:#?}"
    );
    span
}

fn millis(span: &CapturedSpan, field: &str) -> f64 {
    let value = span
        .field(field)
        .unwrap_or_else(|| panic!("{field} recorded: {span:#?}"));
    let ms: f64 = value.parse().unwrap();
    assert!(ms >= 0.0 && ms.is_finite(), "{field} = {ms}");
    ms
}

#[tokio::test]
async fn a_committed_transaction_records_pool_wait_scope_and_outcome() {
    let env = env(2).await;
    let (alice, _) = two_orgs(&env.issuer);
    let capture = Capture::new();
    {
        let _trace = capture.set_default();
        let request = tracing::info_span!("request");
        let _entered = request.enter();
        with_tenant_guard(&env.pool, &alice, async |tx| {
            tx.execute("INSERT INTO audit_log (note) VALUES ('traced')", &[])
                .await?;
            Ok::<_, GuardError>(())
        })
        .await
        .unwrap();
    }
    let span = tx_span(&capture);
    assert_eq!(
        span.parent,
        Some("request"),
        "a child of the request's span"
    );
    assert_eq!(span.field("outcome"), Some("committed"));
    assert_eq!(span.field("role"), Some("authenticated"));
    assert_eq!(
        span.field("node"),
        Some("primary"),
        "which server served it"
    );
    assert_eq!(
        span.field("org_id"),
        Some(alice.org_id().to_string().as_str())
    );
    assert_eq!(span.field("read_only"), Some("false"));
    let wait = millis(&span, "pool_wait_ms");
    let scope = millis(&span, "scope_ms");
    let total = millis(&span, "duration_ms");
    assert!(total >= wait + scope, "{total} >= {wait} + {scope}");
    // Ids only: no claims, no token in anything the guard logged.
    assert!(!capture.all_text().contains(alice.claims_json()));
    assert_eq!(span.field("service_reason"), None);
}

#[tokio::test]
async fn rolled_back_and_dropped_transactions_record_their_outcome() {
    let env = env(1).await;
    let (alice, _) = two_orgs(&env.issuer);

    let capture = Capture::new();
    {
        let _trace = capture.set_default();
        let result: Result<(), TestError> = with_tenant_guard(&env.pool, &alice, async |tx| {
            tx.execute("INSERT INTO audit_log (note) VALUES ('rolled')", &[])
                .await?;
            Err(TestError::Handler("handler failed"))
        })
        .await;
        assert!(result.is_err());
    }
    let span = tx_span(&capture);
    assert_eq!(span.field("outcome"), Some("rolled_back"));
    millis(&span, "scope_ms");
    millis(&span, "duration_ms");

    // Dropped without commit or rollback.
    let capture = Capture::new();
    {
        let _trace = capture.set_default();
        let tx = env
            .pool
            .begin(&alice, ScopeOptions::default())
            .await
            .unwrap();
        tx.query_one("SELECT 1", &[]).await.unwrap();
        drop(tx);
    }
    assert_eq!(tx_span(&capture).field("outcome"), Some("dropped"));

    // Never touched the database: no scoping happened, so no scope time either.
    let capture = Capture::new();
    {
        let _trace = capture.set_default();
        let tx = env
            .pool
            .begin(&alice, ScopeOptions::default())
            .await
            .unwrap();
        tx.rollback().await.unwrap();
    }
    let span = tx_span(&capture);
    assert_eq!(span.field("outcome"), Some("rolled_back"));
    assert_eq!(span.field("scope_ms"), None, "{span:#?}");
    millis(&span, "pool_wait_ms");
}

#[tokio::test]
async fn a_failed_statement_makes_the_commit_a_rollback() {
    let env = env(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let capture = Capture::new();
    {
        let _trace = capture.set_default();
        let tx = env
            .pool
            .begin(&alice, ScopeOptions::default())
            .await
            .unwrap();
        assert!(tx.query_one("SELECT 1 / 0", &[]).await.is_err());
        assert!(matches!(tx.commit().await, Err(GuardError::RolledBack)));
    }
    assert_eq!(tx_span(&capture).field("outcome"), Some("rolled_back"));
}

#[tokio::test]
async fn a_service_role_job_is_audited_with_reason_and_job_id() {
    let env = env(1).await;
    let capture = Capture::new();
    {
        let _trace = capture.set_default();
        let job = ServiceContext::new("nightly-purge").with_job_id("job-2026-11-23");
        let purged = with_service_role(&env.pool, &job, async |tx| {
            tx.execute("DELETE FROM audit_log WHERE note = 'none'", &[])
                .await
        })
        .await
        .unwrap();
        assert_eq!(purged, 0);
    }
    let audit: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|e| e.target == "tenant_guard::audit")
        .collect();
    assert_eq!(
        audit.len(),
        2,
        "one event at the start, one at the end: {audit:#?}"
    );
    for event in &audit {
        assert_eq!(event.level, tracing::Level::INFO);
        assert_eq!(event.field("reason"), Some("nightly-purge"), "{event:#?}");
        assert_eq!(event.field("job_id"), Some("job-2026-11-23"), "{event:#?}");
        assert_eq!(event.field("role"), Some("service_role"), "{event:#?}");
    }
    assert_eq!(audit[1].field("outcome"), Some("committed"));
    assert_eq!(audit[1].spans, ["tenant_tx"]);
    let span = tx_span(&capture);
    assert_eq!(span.field("service_reason"), Some("nightly-purge"));
    assert_eq!(span.field("job_id"), Some("job-2026-11-23"));
    assert_eq!(span.field("org_id"), None, "the service role has no org");
    assert_eq!(span.field("outcome"), Some("committed"));
}

#[tokio::test]
async fn a_pool_timeout_is_a_failed_checkout() {
    let env = env(1).await;
    let pool = common::pool_builder(&env.db)
        .max_size(1)
        .wait_timeout(std::time::Duration::from_millis(50))
        .build()
        .unwrap();
    let (alice, _) = two_orgs(&env.issuer);
    let held = pool.begin(&alice, ScopeOptions::default()).await.unwrap();
    held.query_one("SELECT 1", &[]).await.unwrap();
    let capture = Capture::new();
    {
        let _trace = capture.set_default();
        let error = pool
            .begin(&alice, ScopeOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(error, GuardError::PoolTimeout), "{error:?}");
    }
    let span = tx_span(&capture);
    assert_eq!(span.field("outcome"), Some("checkout_failed"));
    assert_eq!(span.field("pool_wait_ms"), None);
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn metrics_record_pool_wait_scope_and_outcomes() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tenant_guard_core::metrics as names;

    let env = env(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    {
        let _local = metrics::set_default_local_recorder(&recorder);
        with_tenant_guard(&env.pool, &alice, async |tx| {
            tx.query_one("SELECT 1", &[]).await?;
            Ok::<_, GuardError>(())
        })
        .await
        .unwrap();
        let _: Result<(), TestError> = with_tenant_guard(&env.pool, &alice, async |tx| {
            tx.query_one("SELECT 1", &[]).await?;
            Err(TestError::Handler("no"))
        })
        .await;
    }
    let mut histograms = std::collections::BTreeMap::new();
    let mut outcomes = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        match value {
            DebugValue::Histogram(values) => {
                let label = key
                    .labels()
                    .map(|l| l.value().to_owned())
                    .collect::<Vec<_>>();
                histograms.insert((key.name().to_owned(), label), values.len());
            }
            DebugValue::Counter(n) if key.name() == names::TX_OUTCOMES => {
                let outcome = key.labels().next().unwrap().value().to_owned();
                outcomes.insert(outcome, n);
            }
            _ => {}
        }
    }
    assert_eq!(histograms[&(names::POOL_WAIT.to_owned(), vec![])], 2);
    assert_eq!(histograms[&(names::SCOPE_DURATION.to_owned(), vec![])], 2);
    assert_eq!(
        histograms[&(names::TX_DURATION.to_owned(), vec!["committed".to_owned()])],
        1
    );
    assert_eq!(outcomes["committed"], 1);
    assert_eq!(outcomes["rolled_back"], 1);
}
