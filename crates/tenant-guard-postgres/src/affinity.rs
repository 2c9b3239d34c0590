//! Role affinity: a checkout prefers an idle connection whose last transaction ran as the same
//! role.
//!
//! PostgreSQL keeps a statement's plan per connection, and a plan of a statement on a table with
//! Row Level Security is only valid for the role it was made for (the plan cache's
//! `dependsOnRLS`/`planRoleId`): a connection whose transactions alternate between two roles
//! re-plans every cached statement on every role change, about 1.9× the server work of one that
//! stays on one role (see `BENCHMARKS.md`, "Role affinity"). Mixed traffic (`authenticated`,
//! `anon`, an `org_admin`, `service_role`) pays that whenever a connection changes role.
//!
//! So idle connections wait here, not in deadpool's queue, each with the role of its last
//! transaction, and a checkout for role R takes:
//! 1. the most recently returned idle connection whose last transaction ran as R;
//! 2. else an idle one of unknown role (new), else the oldest idle one of the role with the
//!    most idle connections (so each role keeps its best chance of an affine checkout);
//! 3. else (none idle) whatever deadpool gives: a connection it opens (below the pool size) or
//!    the first one returned, whichever role (its role is remembered on the way through
//!    deadpool, so the checkout still knows it).
//!
//! Affinity only ever chooses among connections idle *now*: a checkout never waits for an affine
//! one longer than for any. Deadpool still owns the connections (size limit, timeouts, closing):
//! the idle ones here count as in use to it, and the pool's
//! [`status`](crate::TenantPool::status) adds them back to `available`.
//!
//! # No waiter starves
//!
//! A checkout that finds nothing idle registers as waiting *under the same lock* before it waits
//! in deadpool; a connection coming back while anyone is registered goes to deadpool (which wakes
//! its first waiter) instead of the idle list. So while a checkout waits the idle list is empty,
//! whatever the interleaving of returns and registrations, and a waiter dropped (cancelled,
//! timed out) unregisters on drop.
//!
//! # What a connection's role means
//!
//! Only a hint for the plan cache, never for scoping: every transaction sets its role, claims and
//! org transaction-locally whatever connection it got, and a connection only comes back here
//! after the session reset and check (see [`SessionReset`](crate::SessionReset)). A connection's
//! role is recorded when it comes back clean from a transaction that sent statements; a
//! connection returned without having sent anything keeps the one it had; a new one has none.
//! Roles are remembered as small indexes into a per-pool table (no allocation per transaction);
//! past 32 distinct roles, further ones get no affinity.
//!
//! Off behind a transaction-mode pooler (the client connection maps to any server connection)
//! and with [`SessionReset::DiscardAll`](crate::SessionReset::DiscardAll) (no plan survives a
//! transaction), or with [`role_affinity(false)`](crate::TenantPoolBuilder::role_affinity).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use deadpool_postgres::{Object, ObjectId, Pool, PoolError};
use tenant_guard_core::Role;

/// Distinct roles a pool remembers; a checkout for a role beyond them gets no affinity.
pub(crate) const MAX_ROLES: usize = 32;

/// Roles of connections handed to deadpool remembered at most.
const MAX_PARKED: usize = 64;

/// A role, as its index in the pool's role table; `None` when unknown.
type Tag = Option<u8>;

/// A deadpool pool with role affinity for its idle connections (see the module docs).
pub(crate) struct Affinity {
    /// Declared first: dropped before the pool, so idle connections are closed with it.
    idle: Mutex<Idle>,
    pool: Pool,
    enabled: bool,
    checkouts: AtomicU64,
    affine: AtomicU64,
}

#[derive(Default)]
struct Idle {
    /// Idle connections, oldest first, each with the role of its last transaction.
    conns: VecDeque<(Tag, Object)>,
    /// Checkouts waiting in deadpool. Non-zero only while `conns` is empty.
    waiting: usize,
    /// The roles of connections handed to deadpool for a waiter, until a checkout takes them
    /// (at most [`MAX_PARKED`]: a connection deadpool closed leaves its entry behind).
    parked: VecDeque<(ObjectId, Tag)>,
    /// The role table: a tag is an index into it.
    roles: Vec<Role>,
}

impl Idle {
    fn tag(&mut self, role: &Role) -> Tag {
        if let Some(i) = self.roles.iter().position(|r| r == role) {
            return u8::try_from(i).ok();
        }
        if self.roles.len() >= MAX_ROLES {
            return None;
        }
        self.roles.push(role.clone());
        u8::try_from(self.roles.len() - 1).ok()
    }

    /// The idle connection a checkout for `want` gets (see the module docs), if any.
    fn take(&mut self, want: Tag) -> Option<(Tag, Object)> {
        if self.conns.is_empty() {
            return None;
        }
        let i = want
            .and_then(|w| self.conns.iter().rposition(|(t, _)| *t == Some(w)))
            .or_else(|| self.conns.iter().position(|(t, _)| t.is_none()))
            .unwrap_or_else(|| self.most_idle_role());
        self.conns.remove(i)
    }

    /// The oldest idle connection of the role with the most idle connections: taking it for
    /// another role leaves every role its best chance of an affine checkout.
    fn most_idle_role(&self) -> usize {
        let mut counts = [0u16; MAX_ROLES];
        for tag in self.conns.iter().filter_map(|(t, _)| *t) {
            counts[usize::from(tag)] += 1;
        }
        let count = |t: &Tag| t.map_or(0, |t| counts[usize::from(t)]);
        let most = self.conns.iter().map(|(t, _)| count(t)).max().unwrap_or(0);
        self.conns
            .iter()
            .position(|(t, _)| count(t) == most)
            .unwrap_or(0)
    }
}

/// How often checkouts got a connection whose last transaction ran as their role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AffinityStats {
    /// Checkouts for a role since the pool was built (counted only while affinity is on).
    pub checkouts: u64,
    /// Those that got a connection whose last transaction ran as the same role.
    pub affine: u64,
}

/// A connection out of an [`Affinity`] pool, with where it goes back to.
pub(crate) struct Checkout {
    pub(crate) conn: Object,
    pub(crate) home: Home,
    /// `Some(affine)` when affinity is on.
    pub(crate) affine: Option<bool>,
}

/// Where a checked-out connection goes back to and the role it is recorded with there. The
/// default returns it straight to deadpool (affinity off).
#[derive(Clone, Debug, Default)]
pub(crate) struct Home {
    stash: Weak<Affinity>,
    /// The role it goes back with.
    tag: Tag,
    /// The role of the checkout.
    role: Tag,
}

impl Home {
    /// The home of a connection that ran a transaction as the checkout's role.
    pub(crate) fn ran(&self) -> Home {
        Home {
            stash: self.stash.clone(),
            tag: self.role,
            role: self.role,
        }
    }

    /// Nothing will have run on the connection: it keeps the role it came with.
    pub(crate) fn untouched(&mut self) {
        self.role = self.tag;
    }

    /// Returns a connection whose session is clean (reset and checked, or never used) to the
    /// pool.
    pub(crate) fn put(&self, conn: Object) {
        match self.stash.upgrade() {
            Some(affinity) => affinity.put(conn, self.tag),
            None => drop(conn),
        }
    }
}

/// A checkout registered as waiting in deadpool; unregisters when dropped (cancellation
/// included) or [`served`](Self::served).
struct Waiting<'a>(Option<&'a Affinity>);

impl Waiting<'_> {
    /// Unregisters, and tells the role of the connection deadpool gave (if it was parked).
    fn served(mut self, conn: &Object) -> Tag {
        let affinity = self.0.take()?;
        let mut idle = affinity.lock();
        idle.waiting = idle.waiting.saturating_sub(1);
        let id = Object::id(conn);
        let i = idle.parked.iter().position(|(parked, _)| *parked == id)?;
        idle.parked.remove(i).and_then(|(_, tag)| tag)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(affinity) = self.0.take() {
            let mut idle = affinity.lock();
            idle.waiting = idle.waiting.saturating_sub(1);
        }
    }
}

impl fmt::Debug for Affinity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Affinity")
            .field("enabled", &self.enabled)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Affinity {
    pub(crate) fn new(pool: Pool, enabled: bool) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::default(),
            pool,
            enabled,
            checkouts: AtomicU64::new(0),
            affine: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection for a transaction as `role` (`None`: any), waiting at most the pool's wait
    /// timeout, exactly as long as deadpool alone would.
    pub(crate) async fn get(self: &Arc<Self>, role: Option<&Role>) -> Result<Checkout, PoolError> {
        if !self.enabled {
            let conn = self.pool.get().await?;
            return Ok(Checkout {
                conn,
                home: Home::default(),
                affine: None,
            });
        }
        let (want, waiting) = loop {
            if self.pool.is_closed() {
                return Err(PoolError::Closed);
            }
            let mut idle = self.lock();
            let want = role.and_then(|r| idle.tag(r));
            match idle.take(want) {
                Some((tag, conn)) => {
                    drop(idle);
                    if conn.is_closed() {
                        // Broken while idle: out of the pool (deadpool may open another).
                        drop(Object::take(conn));
                        continue;
                    }
                    let affine = want.is_some() && tag == want;
                    return Ok(self.checkout(conn, tag, want, role.is_some(), affine));
                }
                None => {
                    idle.waiting += 1;
                    break (want, Waiting(Some(self)));
                }
            }
        };
        // Nothing idle here: a connection deadpool holds idle (returned while a checkout
        // waited), a new one, or the first one returned.
        let conn = self.pool.get().await?;
        let tag = waiting.served(&conn);
        let affine = want.is_some() && tag == want;
        Ok(self.checkout(conn, tag, want, role.is_some(), affine))
    }

    fn checkout(
        self: &Arc<Self>,
        conn: Object,
        tag: Tag,
        want: Tag,
        counted: bool,
        affine: bool,
    ) -> Checkout {
        if counted {
            self.checkouts.fetch_add(1, Ordering::Relaxed);
            if affine {
                self.affine.fetch_add(1, Ordering::Relaxed);
            }
        }
        Checkout {
            conn,
            home: Home {
                stash: Arc::downgrade(self),
                tag,
                role: want,
            },
            affine: Some(affine),
        }
    }

    /// Takes back a clean connection whose last transaction ran as `tag`.
    fn put(&self, conn: Object, tag: Tag) {
        let mut idle = self.lock();
        if self.pool.is_closed() {
            drop(idle);
            drop(conn);
            return;
        }
        if idle.waiting > 0 {
            // Deadpool hands it to its first waiter, which learns its role from `parked`.
            if idle.parked.len() >= MAX_PARKED {
                idle.parked.pop_front();
            }
            idle.parked.push_back((Object::id(&conn), tag));
            drop(idle);
            drop(conn);
            return;
        }
        idle.conns.push_back((tag, conn));
    }

    /// Deadpool's status with the idle connections held here counted as available.
    pub(crate) fn status(&self) -> deadpool_postgres::Status {
        let mut status = self.pool.status();
        status.available += self.lock().conns.len();
        status
    }

    pub(crate) fn stats(&self) -> AffinityStats {
        AffinityStats {
            checkouts: self.checkouts.load(Ordering::Relaxed),
            affine: self.affine.load(Ordering::Relaxed),
        }
    }

    /// Closes the pool and every idle connection.
    pub(crate) fn close(&self) {
        self.pool.close();
        let idle = std::mem::take(&mut self.lock().conns);
        drop(idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_small_indexes_and_bounded() {
        let mut idle = Idle::default();
        let a = Role::new("authenticated").unwrap();
        let b = Role::new("anon").unwrap();
        assert_eq!(idle.tag(&a), Some(0));
        assert_eq!(idle.tag(&b), Some(1));
        assert_eq!(idle.tag(&a), Some(0));
        for i in 2..MAX_ROLES {
            assert!(idle.tag(&Role::new(&format!("r{i}")).unwrap()).is_some());
        }
        assert_eq!(idle.tag(&Role::new("one_too_many").unwrap()), None);
        assert_eq!(idle.tag(&b), Some(1));
    }

    #[test]
    fn a_default_home_is_no_affinity() {
        let home = Home::default();
        assert!(home.stash.upgrade().is_none());
        assert_eq!(home.ran().tag, None);
    }
}
