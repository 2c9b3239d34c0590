//! [`OrgCap`]: at most so many pooled connections held at once by one org, so one tenant's slow
//! handlers cannot take the whole pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tenant_guard_core::OrgId;

/// Counts the connections each org holds; see
/// [`GuardConfig::max_connections_per_org`](crate::GuardConfig::max_connections_per_org).
#[derive(Debug)]
pub(crate) struct OrgCap {
    limit: usize,
    held: Mutex<HashMap<OrgId, usize>>,
}

/// One connection counted against its org; released when dropped.
#[derive(Debug)]
pub(crate) struct OrgPermit {
    cap: Arc<OrgCap>,
    org: OrgId,
}

impl OrgCap {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// A permit for one more connection of `org`, or `None` when it holds `limit` already.
    pub(crate) fn try_acquire(self: &Arc<Self>, org: &OrgId) -> Option<OrgPermit> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        // A clone of the id is a copy (UUID, integer) or a reference count (text).
        let count = held.entry(org.clone()).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(OrgPermit {
            cap: Arc::clone(self),
            org: org.clone(),
        })
    }

    /// [`try_acquire`](Self::try_acquire) under an optional cap (no cap: no permit needed),
    /// logging a refusal. `Err(())` means the org is at its cap: refuse the transaction (both
    /// backends answer 503 `database_busy`).
    pub(crate) fn admit(cap: Option<&Arc<Self>>, org: &OrgId) -> Result<Option<OrgPermit>, ()> {
        let Some(cap) = cap else {
            return Ok(None);
        };
        match cap.try_acquire(org) {
            Some(permit) => Ok(Some(permit)),
            None => {
                tracing::warn!(
                    org_id = %org,
                    "the org holds its maximum of connections; the transaction is refused"
                );
                Err(())
            }
        }
    }
}

impl Drop for OrgPermit {
    fn drop(&mut self) {
        let mut held = self.cap.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.org) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.org);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_org_gets_its_own_limit_and_permits_come_back() {
        let cap = Arc::new(OrgCap::new(2));
        let (a, b) = (OrgId::from(uuid::Uuid::from_u128(1)), OrgId::Int(1));
        let first = cap.try_acquire(&a).unwrap();
        let _second = cap.try_acquire(&a).unwrap();
        assert!(cap.try_acquire(&a).is_none(), "a third for org a");
        assert!(cap.try_acquire(&b).is_some(), "org b is unaffected");
        let text = OrgId::text("1").unwrap();
        assert!(
            cap.try_acquire(&text).is_some(),
            "another kind, another org"
        );
        drop(first);
        assert!(cap.try_acquire(&a).is_some(), "released on drop");
    }
}
