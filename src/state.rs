//! Per-backend state: the loaded keys, the validation policy, the cache of
//! verified tokens, and the claims of the token bound right now.
//!
//! Nothing here decides *which* token is bound: that is the value of the
//! `jwt_rls.token` setting, which Postgres scopes to the transaction,
//! savepoint or session. This module only answers "what does that value
//! verify to, now?", and answers it again whenever the value, the keys, the
//! policy or the statement changes, so claims never outlive any of them.

use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use jwt_rls_core::cache::Cache;
use jwt_rls_core::{Error, KeySet, Policy, Verified};
use pgrx::pg_sys;

use crate::keystore::{self, KEYS_GENERATION};
use crate::errors;
use crate::settings::{self, POLICY_GENERATION, TOKEN_GENERATION};

/// Estimated bytes the verification cache may hold per backend; the
/// number of entries is the `jwt_rls.cache_entries` setting.
pub const CACHE_BYTES: usize = 512 * 1024;

/// Everything a resolved claim depends on: the bound token value (its
/// pointer identifies it: Postgres allocates a new one per SET) and its
/// generation, the policy and key generations, and the statement.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Conditions {
    pub token: *const c_char,
    pub token_generation: u64,
    pub policy_generation: u64,
    pub keys_generation: u64,
    pub statement: pg_sys::TimestampTz,
}

unsafe extern "C" {
    /// The same symbol as `pg_sys::GetCurrentStatementStartTimestamp`, bound
    /// without pgrx's error guard: it only reads a variable, so it cannot
    /// raise an error, and it runs on every jwt_claim() call.
    #[link_name = "GetCurrentStatementStartTimestamp"]
    fn statement_start_unguarded() -> pg_sys::TimestampTz;
}

/// The conditions right now; reads only variables, never raises.
pub fn conditions() -> Conditions {
    Conditions {
        token: settings::token_ptr(),
        token_generation: TOKEN_GENERATION.load(Ordering::Relaxed),
        policy_generation: POLICY_GENERATION.load(Ordering::Relaxed),
        keys_generation: KEYS_GENERATION.load(Ordering::Relaxed),
        statement: unsafe { statement_start_unguarded() },
    }
}

/// What the last read resolved, and under which conditions it holds.
struct Current {
    conditions: Conditions,
    verified: Option<Arc<Verified>>,
}

struct Backend {
    keys: Option<(u64, Rc<KeySet>)>,
    policy: Option<(u64, Rc<Policy>)>,
    cache: Cache,
    /// The token verified last, kept even when the cache is off or has
    /// evicted it: binding a token checks it in authenticate(), again in
    /// the setting's check hook, and again at the first read.
    last: Option<(String, Arc<Verified>)>,
    current: Option<Current>,
}

thread_local! {
    static BACKEND: RefCell<Backend> = RefCell::new(Backend {
        keys: None,
        policy: None,
        cache: Cache::new(0, CACHE_BYTES),
        last: None,
        current: None,
    });
}

/// Seconds between the Unix and Postgres epochs.
const PG_EPOCH_OFFSET: i64 = 946_684_800;

/// Unix seconds of a Postgres timestamp.
pub fn unix_seconds(ts: pg_sys::TimestampTz) -> i64 {
    ts.div_euclid(1_000_000) + PG_EPOCH_OFFSET
}

/// "Now" for time claims: the start of the current statement. Stable
/// within a statement (as a STABLE function must be), shared with parallel
/// workers, and new for every statement, so an expired token stops working
/// at the next statement even inside one transaction.
fn statement_start() -> pg_sys::TimestampTz {
    unsafe { statement_start_unguarded() }
}

/// The policy and keys for this moment, reloaded when their generation
/// moved. Loading runs SPI, so no RefCell borrow is held across it.
fn policy_and_keys() -> (Rc<Policy>, Rc<KeySet>) {
    let policy_generation = POLICY_GENERATION.load(Ordering::Relaxed);
    let keys_generation = KEYS_GENERATION.load(Ordering::Relaxed);
    let (policy, keys) = BACKEND.with_borrow(|b| {
        (
            b.policy.as_ref().filter(|(g, _)| *g == policy_generation).map(|(_, p)| p.clone()),
            b.keys.as_ref().filter(|(g, _)| *g == keys_generation).map(|(_, k)| k.clone()),
        )
    });
    let policy = policy.unwrap_or_else(|| {
        let p = Rc::new(settings::policy());
        BACKEND.with_borrow_mut(|b| {
            b.policy = Some((policy_generation, p.clone()));
            b.cache = Cache::new(settings::cache_entries(), CACHE_BYTES);
            b.last = None;
        });
        p
    });
    let keys = keys.unwrap_or_else(|| {
        let k = Rc::new(keystore::load());
        BACKEND.with_borrow_mut(|b| {
            b.keys = Some((keys_generation, k.clone()));
            b.cache.clear();
            b.last = None;
        });
        k
    });
    (policy, keys)
}

/// Verifies `token` at `now`, from the cache when it was verified before
/// under the same keys and policy; time claims and the key's state are
/// checked again on every hit.
fn verify_at(token: &str, now: i64) -> Result<Arc<Verified>, Error> {
    let (policy, keys) = policy_and_keys();
    let hit = BACKEND.with_borrow_mut(|b| match &b.last {
        Some((last, v)) if last == token => Some(v.clone()),
        _ => b.cache.get(token),
    });
    let verified = match hit {
        Some(hit) => {
            hit.times.check(now, policy.leeway)?;
            keys.select(Some(&hit.kid), now)?;
            hit
        }
        None => {
            let verified = Arc::new(jwt_rls_core::verify(token, &keys, &policy, now)?);
            BACKEND.with_borrow_mut(|b| b.cache.insert(token, verified.clone()));
            verified
        }
    };
    BACKEND.with_borrow_mut(|b| {
        if b.last.as_ref().is_none_or(|(last, _)| last != token) {
            b.last = Some((token.to_string(), verified.clone()));
        }
    });
    Ok(verified)
}

/// Verifies a token as of the current statement.
pub fn verify_now(token: &str) -> Result<Arc<Verified>, Error> {
    verify_at(token, unix_seconds(statement_start()))
}

/// The claims of the token bound right now; None when no token is bound.
/// A bound token that no longer verifies (expired, key disabled) is an
/// error, never "no claims" that a careless policy could read as "all".
pub fn current() -> Result<Option<Arc<Verified>>, Error> {
    let now = conditions();
    let fresh = BACKEND.with_borrow(|b| match &b.current {
        Some(c) if c.conditions == now => Some(c.verified.clone()),
        _ => None,
    });
    if let Some(verified) = fresh {
        return Ok(verified);
    }

    let verified = if now.token.is_null() {
        None
    } else {
        // SAFETY: a GUC string value is a NUL-terminated C string.
        let text = unsafe { CStr::from_ptr(now.token) };
        if text.is_empty() {
            None
        } else {
            let text = text.to_str().map_err(|_| Error::BadCharacter)?;
            Some(verify_at(text, unix_seconds(now.statement))?)
        }
    };
    BACKEND.with_borrow_mut(|b| b.current = Some(Current { conditions: now, verified: verified.clone() }));
    Ok(verified)
}

/// A claim of the bound token as text (NULL semantics of jwt_claim); raises
/// when the bound token no longer verifies.
pub fn current_claim(name: &str) -> Option<String> {
    current().unwrap_or_else(|e| errors::raise(&e))?.claim(name)
}

/// Entries and estimated bytes held by this backend's cache.
pub fn cache_usage() -> (usize, usize) {
    BACKEND.with_borrow(|b| (b.cache.len(), b.cache.bytes()))
}
