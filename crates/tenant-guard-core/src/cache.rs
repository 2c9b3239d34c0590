//! The verified-token cache: sharded, bounded, SIEVE eviction.
//!
//! Keyed on the full token bytes (a hash of the token's tail picks the shard and bucket; a hit
//! compares every byte), it stores the principal of a token that passed every check, plus its time
//! claims, which the verifier re-checks against the clock on every hit. Failures are never stored.
//! The cache lives inside the swapped key state, so replacing the keys starts an empty cache.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Mutex;

use crate::claims::Times;
use crate::principal::Principal;

/// Default number of cached tokens (PostgREST uses the same bound).
pub const DEFAULT_CACHE_CAPACITY: usize = 1000;

const SHARDS: usize = 16;
const NIL: u32 = u32::MAX;
/// Bytes at the end of the token (signature bytes: high entropy) that are hashed.
const HASHED_TAIL: usize = 32;

pub(crate) struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    seed: u64,
}

impl TokenCache {
    /// A cache for `capacity` tokens; `None` when `capacity` is 0.
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        if capacity == 0 {
            return None;
        }
        let shards = if capacity >= 4 * SHARDS { SHARDS } else { 1 };
        let per_shard = capacity.div_ceil(shards);
        Some(Self {
            shards: (0..shards)
                .map(|_| Mutex::new(Shard::new(per_shard)))
                .collect(),
            seed: std::collections::hash_map::RandomState::new().hash_one(0u8),
        })
    }

    fn locate(&self, token: &[u8]) -> (u64, &Mutex<Shard>) {
        // A multiply-xorshift mix of the token's tail (signature bytes) and length. Collisions
        // only cost a miss or an eviction: a hit compares every byte, and only tokens that passed
        // every check are ever stored, so there is nothing to gain from forging them.
        let tail = &token[token.len().saturating_sub(HASHED_TAIL)..];
        let mut hash = self.seed ^ (token.len() as u64);
        for chunk in tail.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            hash = (hash ^ u64::from_le_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            hash ^= hash >> 29;
        }
        // Shards from the high bits, buckets from all of them.
        let shard = (hash >> 58) as usize % self.shards.len();
        (hash, &self.shards[shard])
    }

    /// The cached principal and time claims of exactly this token.
    pub(crate) fn get(&self, token: &[u8]) -> Option<(Principal, Times)> {
        self.get_tagged(token).map(|(p, t, _)| (p, t))
    }

    /// Like [`TokenCache::get`], with the tag the entry was stored with.
    pub(crate) fn get_tagged(&self, token: &[u8]) -> Option<(Principal, Times, u64)> {
        let (hash, shard) = self.locate(token);
        let mut shard = shard.lock().ok()?;
        shard.get(hash, token)
    }

    /// Remembers a token that passed every check.
    #[cfg(test)]
    pub(crate) fn insert(&self, token: &[u8], principal: Principal, times: Times) {
        self.insert_tagged(token, principal, times, 0);
    }

    /// Like [`TokenCache::insert`], with a tag for the caller (which keys verified the token).
    pub(crate) fn insert_tagged(&self, token: &[u8], principal: Principal, times: Times, tag: u64) {
        let (hash, shard) = self.locate(token);
        if let Ok(mut shard) = shard.lock() {
            shard.insert(hash, token, principal, times, tag);
        }
    }

    /// Forgets a token (e.g. one found expired).
    pub(crate) fn remove(&self, token: &[u8]) {
        let (hash, shard) = self.locate(token);
        if let Ok(mut shard) = shard.lock() {
            shard.remove(hash, token);
        }
    }

    /// Number of cached tokens.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.map.len()))
            .sum()
    }
}

/// The key is already a hash: use it as is.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Entry {
    token: Box<[u8]>,
    principal: Principal,
    times: Times,
    tag: u64,
}

struct Slot {
    hash: u64,
    entry: Option<Entry>,
    visited: bool,
    /// Toward the head (newer entries).
    newer: u32,
    /// Toward the tail (older entries).
    older: u32,
}

/// One shard: a hash index over a doubly linked list of slots, evicted by SIEVE
/// (Zhang et al., NSDI '24): new entries enter at the head, a hit only sets a bit, and the hand
/// walks from the tail toward the head, clearing bits, until it finds an unvisited entry.
struct Shard {
    map: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    hand: u32,
    capacity: usize,
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
            slots: Vec::with_capacity(capacity),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            hand: NIL,
            capacity,
        }
    }

    fn get(&mut self, hash: u64, token: &[u8]) -> Option<(Principal, Times, u64)> {
        let index = *self.map.get(&hash)?;
        let slot = &mut self.slots[index as usize];
        let entry = slot.entry.as_ref()?;
        if *entry.token != *token {
            return None;
        }
        slot.visited = true;
        Some((entry.principal.clone(), entry.times, entry.tag))
    }

    fn insert(&mut self, hash: u64, token: &[u8], principal: Principal, times: Times, tag: u64) {
        let entry = Entry {
            token: token.into(),
            principal,
            times,
            tag,
        };
        if let Some(&index) = self.map.get(&hash) {
            // Same hash: the same token verified twice concurrently, or (astronomically rarely)
            // another token; either way the newest result takes the slot.
            self.slots[index as usize].entry = Some(entry);
            return;
        }
        if self.map.len() >= self.capacity {
            self.evict();
        }
        let slot = Slot {
            hash,
            entry: Some(entry),
            visited: false,
            newer: NIL,
            older: self.head,
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index as usize] = slot;
                index
            }
            None => {
                self.slots.push(slot);
                // Capacity is far below u32::MAX; slots never outgrow it.
                u32::try_from(self.slots.len() - 1).unwrap_or(NIL - 1)
            }
        };
        if self.head != NIL {
            self.slots[self.head as usize].newer = index;
        } else {
            self.tail = index;
        }
        self.head = index;
        self.map.insert(hash, index);
    }

    fn remove(&mut self, hash: u64, token: &[u8]) {
        if let Some(&index) = self.map.get(&hash) {
            let slot = &self.slots[index as usize];
            if slot.entry.as_ref().is_some_and(|e| *e.token == *token) {
                self.unlink(index);
            }
        }
    }

    fn evict(&mut self) {
        let mut index = if self.hand != NIL {
            self.hand
        } else {
            self.tail
        };
        if index == NIL {
            return;
        }
        // Terminates: one pass clears every visited bit.
        while self.slots[index as usize].visited {
            self.slots[index as usize].visited = false;
            index = match self.slots[index as usize].newer {
                NIL => self.tail,
                newer => newer,
            };
        }
        self.unlink(index);
    }

    fn unlink(&mut self, index: u32) {
        let (newer, older, hash) = {
            let slot = &self.slots[index as usize];
            (slot.newer, slot.older, slot.hash)
        };
        if self.hand == index {
            self.hand = newer;
        }
        if newer != NIL {
            self.slots[newer as usize].older = older;
        } else {
            self.head = older;
        }
        if older != NIL {
            self.slots[older as usize].newer = newer;
        } else {
            self.tail = newer;
        }
        let slot = &mut self.slots[index as usize];
        slot.entry = None;
        slot.visited = false;
        slot.newer = NIL;
        slot.older = NIL;
        self.map.remove(&hash);
        self.free.push(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::Role;
    use uuid::Uuid;

    fn principal(n: u128) -> Principal {
        Principal::from_verified(
            format!("u{n}").into(),
            Uuid::from_u128(n + 1).into(),
            crate::OrgIdKind::Uuid,
            Role::new("authenticated").unwrap(),
            "{}".into(),
            100,
        )
    }

    const T: Times = Times {
        exp: 100,
        nbf: None,
        iat: None,
    };

    fn token(n: usize) -> Vec<u8> {
        format!("header.payload.signature-{n:08}").into_bytes()
    }

    #[test]
    fn hit_requires_identical_bytes() {
        let cache = TokenCache::new(10).unwrap();
        cache.insert(&token(1), principal(1), T);
        let (p, t) = cache.get(&token(1)).unwrap();
        assert_eq!(p.user_id(), "u1");
        assert_eq!(t, T);
        assert!(cache.get(&token(2)).is_none());
        let mut same_tail = b"other.".to_vec();
        same_tail.extend_from_slice(&token(1)[6..]);
        assert_eq!(same_tail.len(), token(1).len());
        assert!(
            cache.get(&same_tail).is_none(),
            "same hashed tail, different token"
        );
        cache.remove(&token(1));
        assert!(cache.get(&token(1)).is_none());
        assert_eq!(cache.len(), 0);
        assert!(TokenCache::new(0).is_none());
    }

    #[test]
    fn bounded_and_sieve_keeps_visited_entries() {
        let mut shard = Shard::new(3);
        for n in 0..3 {
            shard.insert(n as u64, &token(n), principal(n as u128), T, 0);
        }
        assert!(shard.get(0, &token(0)).is_some()); // oldest, but visited
        shard.insert(3, &token(3), principal(3), T, 0); // evicts 1: oldest unvisited
        assert!(shard.get(1, &token(1)).is_none());
        assert!(shard.get(0, &token(0)).is_some());
        assert!(shard.get(2, &token(2)).is_some());
        assert_eq!(shard.map.len(), 3);
        // The hand stopped after 1; 2 is visited again, so the hand clears it and takes 3.
        shard.insert(4, &token(4), principal(4), T, 0);
        assert_eq!(shard.map.len(), 3);
        assert!(shard.get(3, &token(3)).is_none());
        for n in [0, 2, 4] {
            assert!(shard.get(n as u64, &token(n)).is_some(), "{n}");
        }
    }

    #[test]
    fn many_inserts_stay_within_capacity_and_list_is_consistent() {
        let cache = TokenCache::new(100).unwrap();
        let mut rng = 0x1234_5678_u64;
        for n in 0..5000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let t = token((rng % 400) as usize);
            if n % 3 == 0 {
                cache.get(&t);
            } else if n % 17 == 0 {
                cache.remove(&t);
            } else {
                cache.insert(&t, principal(n), T);
            }
            assert!(cache.len() <= 16 * 100usize.div_ceil(16));
        }
        for shard in cache.shards.iter() {
            let shard = shard.lock().unwrap();
            let mut count = 0;
            let mut index = shard.tail;
            let mut prev = NIL;
            while index != NIL {
                let slot = &shard.slots[index as usize];
                assert_eq!(slot.older, prev);
                assert!(slot.entry.is_some());
                assert_eq!(shard.map[&slot.hash], index);
                prev = index;
                index = slot.newer;
                count += 1;
            }
            assert_eq!(prev, shard.head);
            assert_eq!(count, shard.map.len());
        }
    }

    #[test]
    fn shared_across_threads() {
        let cache = std::sync::Arc::new(TokenCache::new(1000).unwrap());
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for n in 0..500 {
                        let tok = token(t * 1000 + n);
                        cache.insert(&tok, principal(n as u128), T);
                        cache.get(&tok);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(cache.len() <= 1008);
        assert!(cache.len() > 0);
    }
}
