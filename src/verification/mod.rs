//! Verifying a token against the key store and the administrator's policy,
//! as of a moment, with the memories that keep repeated work off the hot
//! path. Says nothing of revocation or of which token is bound: binding
//! (`crate::binding`) asks here, then checks the revocation lists
//! (`crate::lifecycle::revocation`), which ask here too (revoke_token()).
//!
//! - the verification cache (`jwt_rls_core::cache`, an LRU keyed by the whole
//!   token text, bounded by `jwt_rls.cache_entries` and `CACHE_BYTES`): a
//!   token seen before under the same keys and policy costs a lookup and a
//!   re-check of its time claims and key (0.09 µs in the core benchmark)
//!   instead of a signature check (1.7 µs HS256, 15-60 µs RSA/ECDSA). It is
//!   what makes a pooled connection's every-transaction re-bind cheap.
//! - the shared cache (`crate::shared::cache`): a token verified by any
//!   backend of the server, used when this backend holds the very keys and
//!   policy it was verified with.
//!
//! A token found in the shared cache is copied into the backend's cache
//! only the second time this backend finds it there while it still
//! remembers the first (`Backend.seen`: up to 1,024 digests, about the
//! number of tokens the backend's cache holds), or at once when the entry
//! came without the claims' jsonb (too large to share it). Behind a pooler
//! with many users a server connection sees most tokens again only after
//! its own cache has evicted them, so copying each one cost an insert and
//! an eviction (1.3-1.5 µs, timed inside the backend with 2,000 users) for
//! a local hit that rarely came; a token the backend binds again and again
//! is copied at its second bind and is a local hit from then on.
//!
//! A verification also keeps the jsonb of its claims once built
//! (`Verified::encoded`, see `binding/claims.rs`), and the shared cache
//! keeps it beside the payload (`share_encoded`).
//!
//! Uses keys, shared memory, settings and `pg`; used by binding, lifecycle
//! and diagnostics.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use jwt_rls_core::cache::Cache;
use jwt_rls_core::cache::{token_digest, Fingerprint};
use jwt_rls_core::header::{algorithm, algorithm_name};
use jwt_rls_core::{DecryptionKeySet, Error, KeySet, Policy, Verified};

use crate::keys::{decryption, jwks_worker, store as keystore};
use crate::pg::catalog::{DECRYPTION_KEYS, JWKS_SOURCES, KEYS};
use crate::pg::{clock, fmgr};
use crate::settings::{self, POLICY_GENERATION};
use crate::shared::cache as shared_cache;
use crate::shared::counters::{self, Counter};

/// Estimated bytes the verification cache may hold per backend; the
/// number of entries is the `jwt_rls.cache_entries` setting.
pub const CACHE_BYTES: usize = 512 * 1024;

/// Digests of tokens lately found in the shared cache that a backend
/// remembers, to copy into its own cache those it finds there again.
const SEEN: usize = 1024;

/// The keys a token is checked with: signature keys, and the decryption
/// keys of encrypted (nested) tokens.
struct Keys {
    verify: KeySet,
    decrypt: DecryptionKeySet,
}

/// Changes whenever either key table changes, or the JWKS sources whose
/// issuers bind fetched keys: the generations only grow, so their sum moves
/// whenever one does.
pub fn keys_generation() -> u64 {
    KEYS.generation()
        .wrapping_add(DECRYPTION_KEYS.generation())
        .wrapping_add(JWKS_SOURCES.generation())
}
struct Backend {
    keys: Option<(u64, Rc<Keys>)>,
    /// The policy with its fingerprint (for the shared cache).
    policy: Option<(u64, Rc<(Policy, Fingerprint)>)>,
    cache: Cache,
    /// The last verification put into or found in the shared cache without
    /// the claims' encoding, with its token's digest: the first to build
    /// the encoding adds it there (`share_encoded`).
    unencoded: Option<([u8; 32], Arc<Verified>)>,
    /// A word of the digest of tokens lately found in the shared cache, two
    /// at each place that word picks, the latest first (a third token at
    /// the same place pushes out the older of the two).
    seen: Vec<u64>,
}

impl Backend {
    /// Whether this backend found the token with `digest` in the shared
    /// cache before and still remembers it; remembers it from now on.
    fn found_again(&mut self, digest: &[u8; 32]) -> bool {
        let mut word = [0u8; 8];
        word.copy_from_slice(&digest[24..]);
        let word = u64::from_le_bytes(word);
        if self.seen.is_empty() {
            self.seen = vec![0; SEEN];
        }
        // Two per place, so that two tokens a connection binds in turn
        // and that pick the same place do not push each other out forever.
        let at = (word % (SEEN as u64 / 2)) as usize * 2;
        let place = &mut self.seen[at..at + 2];
        if place[0] == word {
            return true;
        }
        let again = place[1] == word;
        place[1] = place[0];
        place[0] = word;
        again
    }
}

thread_local! {
    static BACKEND: RefCell<Backend> = RefCell::new(Backend {
        keys: None,
        policy: None,
        cache: Cache::new(0, CACHE_BYTES),
        unencoded: None,
        seen: Vec::new(),
    });
}

/// The policy and keys for this moment, reloaded when their generation
/// moved. Loading runs SPI, so no RefCell borrow is held across it.
fn policy_and_keys() -> (Rc<(Policy, Fingerprint)>, Rc<Keys>) {
    settings::refuse_if_tampered();
    let policy_generation = POLICY_GENERATION.load(Ordering::Relaxed);
    let keys_generation = keys_generation();
    let (policy, keys) = BACKEND.with_borrow(|b| {
        (
            b.policy
                .as_ref()
                .filter(|(g, _)| *g == policy_generation)
                .map(|(_, p)| p.clone()),
            b.keys
                .as_ref()
                .filter(|(g, _)| *g == keys_generation)
                .map(|(_, k)| k.clone()),
        )
    });
    let policy = policy.unwrap_or_else(|| {
        let policy = settings::policy();
        let fingerprint = policy.fingerprint();
        let p = Rc::new((policy, fingerprint));
        BACKEND.with_borrow_mut(|b| {
            b.policy = Some((policy_generation, p.clone()));
            b.cache = Cache::new(settings::cache_entries(), CACHE_BYTES);
        });
        p
    });
    let keys = keys.unwrap_or_else(|| {
        let k = Rc::new(Keys {
            verify: keystore::load(),
            decrypt: decryption::load(),
        });
        BACKEND.with_borrow_mut(|b| {
            b.keys = Some((keys_generation, k.clone()));
            b.cache.clear();
        });
        k
    });
    (policy, keys)
}

/// Re-checks a token verified earlier: its time claims at `now` and the
/// state of its key (disabled, outside its window, removed).
fn recheck(
    verified: Arc<Verified>,
    policy: &Policy,
    keys: &Keys,
    now: i64,
) -> Result<Arc<Verified>, Error> {
    verified.times.check(now, policy.leeway)?;
    keys.verify.select(Some(&verified.kid), now)?;
    if let Some(kid) = &verified.decryption_kid {
        keys.decrypt.select(Some(kid), now)?;
    }
    Ok(verified)
}

/// The policy and key generations a verification is made under (a
/// verification handed on must be used only while both still hold).
pub fn generations() -> (u64, u64) {
    (POLICY_GENERATION.load(Ordering::Relaxed), keys_generation())
}

/// Re-checks, at `now`, a verification made earlier in this backend: its
/// time claims and its keys' state under the current policy and keys.
pub fn recheck_now(verified: Arc<Verified>, now: i64) -> Result<Arc<Verified>, Error> {
    let (policy, keys) = policy_and_keys();
    recheck(verified, &policy.0, &keys, now)
}

/// Verifies a token as of the current statement without consulting the
/// revocation lists (binding checks them; revoke_token() revokes what it
/// verifies).
pub fn verify_now(token: &str) -> Result<Arc<Verified>, Error> {
    verify_at(token, clock::now())
}

/// Verifies `token` at `now`, from a cache when it was verified before
/// under the same keys and policy; counts what happened.
pub fn verify_at(token: &str, now: i64) -> Result<Arc<Verified>, Error> {
    let result = verify_or_find(token, now);
    if let Err(e) = &result {
        counters::refused(e);
        if matches!(e, Error::UnknownKid(_)) {
            // The provider may have rotated its keys: ask the refresh
            // worker (if there is one) to look now.
            jwks_worker::unknown_kid();
        }
    }
    result
}

fn verify_or_find(token: &str, now: i64) -> Result<Arc<Verified>, Error> {
    let (policy, keys) = policy_and_keys();
    let (policy, policy_fp) = (&policy.0, policy.1);
    if let Some(hit) = BACKEND.with_borrow_mut(|b| b.cache.get(token)) {
        counters::add(Counter::CacheHitsLocal);
        return recheck(hit, policy, &keys, now);
    }
    let digest = shared_cache::enabled().then(|| token_digest(token));
    if let Some(d) = digest {
        if let Some(hit) = from_shared(&d, &keys, policy_fp, now) {
            counters::add(Counter::CacheHitsShared);
            let hit = Arc::new(hit);
            BACKEND.with_borrow_mut(|b| {
                // An entry without the claims' jsonb (it did not fit in the
                // slot, or is not there yet) is kept at once, so that the
                // jsonb this backend builds for it is built once.
                let unencoded = hit.encoded.get().is_none();
                if b.found_again(&d) || unencoded {
                    b.cache.insert(token, hit.clone());
                }
                if unencoded {
                    b.unencoded = Some((d, hit.clone()));
                }
            });
            return recheck(hit, policy, &keys, now);
        }
    }
    counters::add(Counter::Verifications);
    let verified = Arc::new(jwt_rls_core::verify_any(
        token,
        &keys.verify,
        &keys.decrypt,
        policy,
        now,
    )?);
    if let Some(d) = digest {
        if to_shared(&d, &verified, &keys, policy_fp, now) {
            BACKEND.with_borrow_mut(|b| b.unencoded = Some((d, verified.clone())));
        }
    }
    BACKEND.with_borrow_mut(|b| b.cache.insert(token, verified.clone()));
    Ok(verified)
}

/// Called when `verified`'s encoding was just built: if it is the shared
/// verification that lacked it, add it to the shared entry.
pub fn share_encoded(verified: &Arc<Verified>) {
    let pending = BACKEND.with_borrow_mut(|b| {
        b.unencoded
            .take_if(|(_, v)| Arc::ptr_eq(v, verified))
            .map(|(d, _)| d)
    });
    if let (Some(digest), Some(encoded)) = (pending, verified.encoded.get()) {
        shared_cache::attach(&digest, encoded);
    }
}

/// A verification another backend shared, if it was made with the very
/// keys this backend holds under those kids and under the same policy
/// (see `shared/cache.rs` for why that is enough).
fn from_shared(
    digest: &[u8; 32],
    keys: &Keys,
    policy_fp: Fingerprint,
    now: i64,
) -> Option<Verified> {
    let e = shared_cache::get(digest)?;
    let key = keys.verify.select(Some(&e.kid), now).ok()?;
    if key.fingerprint != e.key_fp || policy_fp != e.policy_fp {
        return None;
    }
    if let Some(dkid) = &e.decryption_kid {
        let dkey = keys.decrypt.select(Some(dkid), now).ok()?;
        if dkey.fingerprint != e.decryption_key_fp {
            return None;
        }
    }
    let alg = algorithm(&e.alg)?;
    let mut verified = Verified::new(e.payload, e.times, e.kid, alg);
    verified.decryption_kid = e.decryption_kid;
    // The claims' jsonb, if another backend kept it: returned as a datum
    // as is, so it must at least be framed as one.
    if fmgr::is_plain_varlena(&e.encoded) {
        let _ = verified.encoded.set(e.encoded.into_boxed_slice());
    }
    Some(verified)
}

/// Shares a verification; false when it may not be shared or was not
/// stored.
fn to_shared(
    digest: &[u8; 32],
    v: &Verified,
    keys: &Keys,
    policy_fp: Fingerprint,
    now: i64,
) -> bool {
    // A token without kid was verified with the only active key here; in a
    // backend (or database) with more keys it must be refused, so it is
    // never shared.
    if !v.kid_named {
        return false;
    }
    let Ok(key) = keys.verify.select(Some(&v.kid), now) else {
        return false;
    };
    let decryption_key_fp = match &v.decryption_kid {
        Some(dkid) => match keys.decrypt.select(Some(dkid), now) {
            Ok(k) => k.fingerprint,
            Err(_) => return false,
        },
        None => Fingerprint::default(),
    };
    shared_cache::put(
        digest,
        &shared_cache::Entry {
            payload: v.payload.clone(),
            kid: v.kid.clone(),
            alg: algorithm_name(v.alg).to_string(),
            decryption_kid: v.decryption_kid.clone(),
            times: v.times,
            key_fp: key.fingerprint,
            decryption_key_fp,
            policy_fp,
            encoded: v.encoded.get().map(|b| b.to_vec()).unwrap_or_default(),
        },
    )
}

/// Entries and estimated bytes held by this backend's cache.
pub fn cache_usage() -> (usize, usize) {
    BACKEND.with_borrow(|b| (b.cache.len(), b.cache.bytes()))
}
