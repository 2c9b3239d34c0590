//! Read replicas: `READ ONLY` transactions served by hot standbys, everything else by the
//! primary.
//!
//! Configure with [`TenantPoolBuilder::replicas`](crate::TenantPoolBuilder::replicas) (or
//! [`replica_urls`](crate::TenantPoolBuilder::replica_urls)). Scoping is identical on a standby:
//! `BEGIN READ ONLY` and the transaction-local `set_config` calls (role included) are allowed on
//! a hot standby, so Row Level Security isolates tenants there exactly as on the primary (tested
//! against a real streaming standby).
//!
//! # Routing
//!
//! - A read-write transaction always goes to the primary.
//! - A read-only one ([`ScopeOptions::read_only`](crate::ScopeOptions::read_only), the adapters'
//!   `ReadOnly` mode) goes to the least busy replica (fewest connections in use, round-robin
//!   among equals), unless one of the rules below sends it to the primary.
//! - **Read your writes**: for [`read_your_writes`](crate::TenantPoolBuilder::read_your_writes)
//!   (default [`DEFAULT_READ_YOUR_WRITES`]) after a read-write transaction of a principal (same
//!   org and `sub`) *commits*, that principal's reads go to the primary, so a client that just
//!   wrote never reads an older state from a lagging replica. Other principals may, within the
//!   replica's lag: replication is asynchronous. Set the window above your worst expected lag
//!   (`pg_stat_replication.replay_lag`); `Duration::ZERO` turns the rule off. The record is kept
//!   in this process: behind a load balancer, route a client to one instance or use
//!   [`ScopeOptions::primary`](crate::ScopeOptions::primary).
//! - [`ScopeOptions::primary`](crate::ScopeOptions::primary) sends one read to the primary.
//! - **Replica down**: a replica whose checkout fails is skipped for
//!   [`REPLICA_RETRY_AFTER`], then tried again. When no replica can serve, the read goes to the
//!   primary ([`ReplicaFallback::Primary`], the default) or fails with
//!   [`GuardError::ReplicasUnavailable`](crate::GuardError::ReplicasUnavailable) (503, [`ReplicaFallback::Unavailable`]) to keep read
//!   load off the primary.
//!
//! The `tenant_tx` span's `node` field (`primary` or `replica`) and
//! [`TenantTx::node`](crate::TenantTx::node) say which served a transaction; with the `metrics`
//! feature, `tenant_guard_db_transactions_by_node_total{node}` counts them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tenant_guard_core::{OrgId, Role};

use crate::affinity::{Affinity, Checkout};

/// Default read-your-writes window: a principal's reads go to the primary this long after its
/// last committed write.
pub const DEFAULT_READ_YOUR_WRITES: Duration = Duration::from_secs(2);

/// How long a replica whose checkout failed is skipped before it is tried again.
pub const REPLICA_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Principals remembered for read-your-writes before expired entries are pruned.
const PRUNE_AT: usize = 10_000;

/// What a read-only transaction does when no replica can serve it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaFallback {
    /// Run it on the primary (the default): reads keep working, the primary takes their load.
    #[default]
    Primary,
    /// Fail with [`GuardError::ReplicasUnavailable`](crate::GuardError::ReplicasUnavailable)
    /// (503 with `Retry-After`): the primary is kept for writes.
    Unavailable,
}

/// When each principal (org, `sub`) last committed a write.
type WriteLog = Arc<Mutex<HashMap<(OrgId, Box<str>), Instant>>>;

/// One replica's pool and health.
struct Replica {
    /// With role affinity like the primary's (see [`crate::affinity`]).
    pool: Arc<Affinity>,
    /// Skipped until then after a failed checkout.
    down_until: Mutex<Option<Instant>>,
}

/// The replicas of a [`TenantPool`](crate::TenantPool) and the read-your-writes record.
pub(crate) struct Replicas {
    replicas: Vec<Replica>,
    next: AtomicUsize,
    pub(crate) fallback: ReplicaFallback,
    window: Duration,
    writes: WriteLog,
}

impl Replicas {
    pub(crate) fn new(
        pools: Vec<Arc<Affinity>>,
        fallback: ReplicaFallback,
        window: Duration,
    ) -> Self {
        Self {
            replicas: pools
                .into_iter()
                .map(|pool| Replica {
                    pool,
                    down_until: Mutex::new(None),
                })
                .collect(),
            next: AtomicUsize::new(0),
            fallback,
            window,
            writes: Arc::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.replicas.len()
    }

    /// Whether `principal` (org, sub) committed a write within the read-your-writes window.
    pub(crate) fn wrote_recently(&self, org: &OrgId, sub: &str) -> bool {
        if self.window.is_zero() {
            return false;
        }
        let writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        writes
            .get(&(org.clone(), Box::from(sub)))
            .is_some_and(|at| at.elapsed() < self.window)
    }

    /// A callback recording a committed write of (org, sub); `None` when the rule is off.
    pub(crate) fn recorder(
        &self,
        org: &OrgId,
        sub: &str,
    ) -> Option<impl FnOnce() + Send + Sync + use<>> {
        if self.window.is_zero() {
            return None;
        }
        let writes = Arc::clone(&self.writes);
        let window = self.window;
        let key = (org.clone(), Box::<str>::from(sub));
        Some(move || {
            let mut writes = writes.lock().unwrap_or_else(PoisonError::into_inner);
            if writes.len() >= PRUNE_AT {
                writes.retain(|_, at| at.elapsed() < window);
            }
            writes.insert(key, Instant::now());
        })
    }

    /// A connection for `role` from the least busy healthy replica, trying the others when its
    /// checkout fails; `None` when none could serve.
    pub(crate) async fn checkout(&self, role: &Role) -> Option<Checkout> {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut order: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
        // Least busy first (stable: round-robin among equals).
        order.sort_by_key(|&i| {
            let status = self.replicas[i].pool.status();
            status.size.saturating_sub(status.available) + status.waiting
        });
        for i in order {
            let replica = &self.replicas[i];
            {
                let down = replica
                    .down_until
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if down.is_some_and(|until| Instant::now() < until) {
                    continue;
                }
            }
            match replica.pool.get(Some(role)).await {
                Ok(conn) => {
                    *replica
                        .down_until
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = None;
                    return Some(conn);
                }
                Err(error) => {
                    tracing::warn!(
                        replica = i,
                        %error,
                        retry_after_ms = REPLICA_RETRY_AFTER.as_millis() as u64,
                        "read replica unavailable; skipping it"
                    );
                    *replica
                        .down_until
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) =
                        Some(Instant::now() + REPLICA_RETRY_AFTER);
                }
            }
        }
        None
    }

    pub(crate) fn close(&self) {
        for replica in &self.replicas {
            replica.pool.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_remembered_for_the_window_only() {
        let replicas = Replicas::new(
            Vec::new(),
            ReplicaFallback::Primary,
            Duration::from_millis(50),
        );
        let org = OrgId::Int(7);
        assert!(!replicas.wrote_recently(&org, "alice"));
        (replicas.recorder(&org, "alice").unwrap())();
        assert!(replicas.wrote_recently(&org, "alice"));
        assert!(!replicas.wrote_recently(&org, "bob"));
        assert!(!replicas.wrote_recently(&OrgId::Int(8), "alice"));
        assert!(!replicas.wrote_recently(&OrgId::text("7").unwrap(), "alice"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!replicas.wrote_recently(&org, "alice"));
    }

    #[test]
    fn a_zero_window_turns_the_rule_off() {
        let replicas = Replicas::new(Vec::new(), ReplicaFallback::Primary, Duration::ZERO);
        assert!(replicas.recorder(&OrgId::NIL, "a").is_none());
        assert!(!replicas.wrote_recently(&OrgId::NIL, "a"));
    }
}
