//! Per-backend cache of verified tokens, keyed by the whole token text.
//!
//! An app usually presents the same token for many transactions on one
//! connection; re-checking its signature each time would cost 15-40 µs for
//! RSA and ECDSA. The cache is bounded in entries and in bytes, keeps only
//! successful verifications, and is emptied whenever keys or the policy
//! change. Time claims are re-checked by the caller on every hit, so an
//! entry never outlives its token's `exp`.
//!
//! Uses `verify` (the `Verified` it holds); the SHA-256 helpers it
//! re-exports live in the leaf `fingerprint`, so the key stores that
//! fingerprint themselves need not import the cache.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;

use crate::verify::Verified;

// The SHA-256 helpers moved to the leaf `fingerprint` (the key stores use
// them, and `cache` uses `verify`, which uses the key stores); re-exported
// because the extension knows them by this path.
pub use crate::fingerprint::{fingerprint, token_digest, Fingerprint};

pub struct Cache {
    /// None when the cache is configured with 0 entries (off).
    entries: Option<LruCache<String, Arc<Verified>>>,
    bytes: usize,
    max_bytes: usize,
}

fn entry_bytes(token: &str, v: &Verified) -> usize {
    token.len() + v.approx_bytes() + 64
}

impl Cache {
    pub fn new(max_entries: usize, max_bytes: usize) -> Cache {
        Cache {
            entries: NonZeroUsize::new(max_entries).map(LruCache::new),
            bytes: 0,
            max_bytes,
        }
    }

    pub fn get(&mut self, token: &str) -> Option<Arc<Verified>> {
        self.entries.as_mut()?.get(token).cloned()
    }

    pub fn insert(&mut self, token: &str, verified: Arc<Verified>) {
        let size = entry_bytes(token, &verified);
        let Some(entries) = self.entries.as_mut() else {
            return;
        };
        if size > self.max_bytes {
            return;
        }
        if let Some((old_token, old)) = entries.push(token.to_string(), verified) {
            self.bytes -= entry_bytes(&old_token, &old);
        }
        self.bytes += size;
        while self.bytes > self.max_bytes {
            match entries.pop_lru() {
                Some((t, v)) => self.bytes -= entry_bytes(&t, &v),
                None => break,
            }
        }
    }

    pub fn clear(&mut self) {
        if let Some(entries) = self.entries.as_mut() {
            entries.clear();
        }
        self.bytes = 0;
    }

    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, LruCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Estimated bytes held (tokens, payloads and decoded claims).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Times;

    fn verified(payload_len: usize) -> Arc<Verified> {
        Arc::new(Verified::new(
            "x".repeat(payload_len),
            Times {
                exp: 1,
                nbf: None,
                iat: None,
            },
            "k".into(),
            jsonwebtoken::Algorithm::HS256,
        ))
    }

    #[test]
    fn bounded_in_entries_and_bytes() {
        let mut c = Cache::new(3, 1 << 20);
        for i in 0..10 {
            c.insert(&format!("t{i}"), verified(10));
        }
        assert_eq!(c.len(), 3);
        assert!(c.get("t9").is_some() && c.get("t0").is_none());

        let mut c = Cache::new(1000, 10_000);
        for i in 0..100 {
            c.insert(&format!("t{i}"), verified(500));
        }
        assert!(c.bytes() <= 10_000, "{}", c.bytes());
        assert!(c.len() < 100 && !c.is_empty());
        c.insert("huge", verified(100_000));
        assert!(c.get("huge").is_none());
        c.clear();
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }

    #[test]
    fn zero_entries_is_off() {
        let mut c = Cache::new(0, 1 << 20);
        c.insert("t", verified(10));
        assert!(c.get("t").is_none() && c.is_empty() && c.bytes() == 0);
    }

    #[test]
    fn replacing_an_entry_keeps_the_count_right() {
        let mut c = Cache::new(10, 1 << 20);
        c.insert("t", verified(10));
        let once = c.bytes();
        c.insert("t", verified(10));
        assert_eq!(c.bytes(), once);
    }
}
