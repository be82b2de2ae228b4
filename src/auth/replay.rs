//! The `jti` replay cache: a token is accepted once. Each `(iss, jti)` is remembered until the
//! token expires (plus the clock skew), which is at most an hour after it was issued.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// This issuer already used this `jti` in a token that has not expired.
    Replayed,
    /// The cache holds its capacity of unexpired tokens; new ones are refused, not forgotten.
    Full,
}

/// Remembers the `jti` of every accepted token until the token expires.
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    /// `(iss, jti)` -> the second (Unix time) after which it may be forgotten.
    seen: HashMap<(String, String), i64>,
    next_prune: i64,
}

/// Expired entries are swept at most this often (and whenever the cache is full).
const PRUNE_EVERY_SECONDS: i64 = 10;

impl ReplayCache {
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache { capacity, inner: Mutex::new(Inner { seen: HashMap::new(), next_prune: 0 }) }
    }

    /// Records `(iss, jti)` as used until `forget_after`; refuses it if it was already used.
    pub fn check_and_remember(&self, iss: &str, jti: &str, forget_after: i64, now: i64) -> Result<(), ReplayError> {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if now >= inner.next_prune || inner.seen.len() >= self.capacity {
            inner.seen.retain(|_, until| *until >= now);
            inner.next_prune = now + PRUNE_EVERY_SECONDS;
        }
        let key = (iss.to_owned(), jti.to_owned());
        match inner.seen.get(&key) {
            Some(until) if *until >= now => return Err(ReplayError::Replayed),
            _ => {}
        }
        if inner.seen.len() >= self.capacity && !inner.seen.contains_key(&key) {
            return Err(ReplayError::Full);
        }
        inner.seen.insert(key, forget_after);
        Ok(())
    }

    /// How many tokens are remembered (expired ones may linger until the next sweep).
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_accepted_once_while_its_token_lives() {
        let cache = ReplayCache::new(10);
        assert_eq!(cache.check_and_remember("ehr", "a", 1_300, 1_000), Ok(()));
        assert_eq!(cache.check_and_remember("ehr", "a", 1_300, 1_100), Err(ReplayError::Replayed));
    }

    #[test]
    fn the_same_jti_from_another_issuer_is_another_token() {
        let cache = ReplayCache::new(10);
        assert_eq!(cache.check_and_remember("ehr-1", "a", 1_300, 1_000), Ok(()));
        assert_eq!(cache.check_and_remember("ehr-2", "a", 1_300, 1_000), Ok(()));
    }

    #[test]
    fn a_jti_is_forgotten_once_its_token_expired() {
        let cache = ReplayCache::new(10);
        assert_eq!(cache.check_and_remember("ehr", "a", 1_300, 1_000), Ok(()));
        assert_eq!(cache.check_and_remember("ehr", "b", 2_000, 1_301), Ok(()));
        assert_eq!(cache.len(), 1, "the expired entry is swept");
        assert_eq!(cache.check_and_remember("ehr", "a", 1_700, 1_400), Ok(()));
    }

    #[test]
    fn a_full_cache_refuses_new_tokens_rather_than_forgetting_live_ones() {
        let cache = ReplayCache::new(2);
        assert_eq!(cache.check_and_remember("ehr", "a", 1_300, 1_000), Ok(()));
        assert_eq!(cache.check_and_remember("ehr", "b", 1_300, 1_000), Ok(()));
        assert_eq!(cache.check_and_remember("ehr", "c", 1_300, 1_000), Err(ReplayError::Full));
        assert_eq!(cache.check_and_remember("ehr", "a", 1_300, 1_001), Err(ReplayError::Replayed));
        assert_eq!(cache.check_and_remember("ehr", "c", 1_400, 1_301), Ok(()), "room again once they expired");
    }
}
