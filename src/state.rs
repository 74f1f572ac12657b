//! The bound token and what it verifies to.
//!
//! Which token is bound is the value of the `jwt_rls.token` setting, defined
//! here: Postgres itself scopes it to the transaction (SET LOCAL), savepoint
//! or session, restores it at COMMIT, ROLLBACK and ROLLBACK TO SAVEPOINT,
//! clears it with RESET ALL / DISCARD ALL and copies it into parallel
//! workers. Its check hook verifies a new value so that a bad token fails
//! at SET time. This module answers "what does that value verify to, now?",
//! and answers it again whenever the value, the keys, the policy or the
//! statement changes, so claims never outlive any of them.
//!
//! Three memories keep repeated work off the hot paths:
//! - the verification cache (`jwt_rls_core::cache`, an LRU keyed by the whole
//!   token text, bounded by `jwt_rls.cache_entries` and `CACHE_BYTES`): a
//!   token seen before under the same keys and policy costs a lookup and a
//!   re-check of its time claims and key (0.09 µs in the core benchmark)
//!   instead of a signature check (1.7 µs HS256, 15-60 µs RSA/ECDSA). It is
//!   what makes a pooled connection's every-transaction re-bind cheap.
//! - `Backend.handed`: the verification the setting's check hook just did,
//!   handed to the reads of exactly the value it checked (same pointer, and
//!   the generation its assignment got), so that binding a token verifies
//!   its signature once even with the cache off (`jwt_rls.cache_entries =
//!   0`): authenticate() and every read of that binding reuse it, with time
//!   claims and key state re-checked.
//! - `Backend.current`: the answer of the last read with the conditions it
//!   holds under; reads in the same statement with the same token (a
//!   per-row `user_id()` policy, jwt_claims() and the claim functions of one
//!   query) cost a comparison of five words instead of hashing the token.
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
//! (`Verified::encoded`, see `claims.rs`), and the shared cache keeps it
//! beside the payload (`share_encoded`).

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use jwt_rls_core::cache::Cache;
use jwt_rls_core::cache::{token_digest, Fingerprint};
use jwt_rls_core::header::{algorithm, algorithm_name};
use jwt_rls_core::{DecryptionKeySet, Error, KeySet, Policy, Verified};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::catalog::{DECRYPTION_KEYS, KEYS};
use crate::counters::{self, Counter};
use crate::settings::{self, POLICY_GENERATION};
use crate::{
    clock, decryption, errors, fmgr, jwks_worker, keystore, revocation, roles, shared_cache,
};

/// Estimated bytes the verification cache may hold per backend; the
/// number of entries is the `jwt_rls.cache_entries` setting.
pub const CACHE_BYTES: usize = 512 * 1024;

/// Digests of tokens lately found in the shared cache that a backend
/// remembers, to copy into its own cache those it finds there again.
const SEEN: usize = 1024;

static TOKEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Bumped whenever `jwt_rls.token` takes a new value (including the
/// restores Postgres does at COMMIT, ROLLBACK and ROLLBACK TO SAVEPOINT).
static TOKEN_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The bound token as Postgres holds it, without copying; null when unset.
fn token_ptr() -> *const c_char {
    // SAFETY: the GUC machinery owns this pointer and only replaces it
    // between statements; we read it without keeping it.
    unsafe { *TOKEN.as_ptr() }
}

/// Everything a resolved claim depends on: the bound token value (its
/// pointer identifies it: Postgres allocates a new one per SET) and its
/// generation, the policy and key generations, and the statement.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Conditions {
    pub token: *const c_char,
    pub token_generation: u64,
    pub policy_generation: u64,
    pub keys_generation: u64,
    pub revocations_generation: u64,
    /// The role set by SET ROLE: claims may be readable under one role only.
    pub role: pg_sys::Oid,
    pub statement: pg_sys::TimestampTz,
}

unsafe extern "C" {
    /// `pg_sys::GetCurrentRoleId` without pgrx's error guard: it only reads
    /// a variable, and it runs on every jwt_claim() call.
    #[link_name = "GetCurrentRoleId"]
    fn current_role_unguarded() -> pg_sys::Oid;
}

/// The conditions right now; reads only variables, never raises.
pub fn conditions() -> Conditions {
    Conditions {
        token: token_ptr(),
        token_generation: TOKEN_GENERATION.load(Ordering::Relaxed),
        policy_generation: POLICY_GENERATION.load(Ordering::Relaxed),
        keys_generation: keys_generation(),
        revocations_generation: revocation::generation(),
        // SAFETY: GetCurrentRoleId only returns a backend-global variable.
        role: unsafe { current_role_unguarded() },
        statement: clock::statement_start(),
    }
}

/// What the last read resolved, and under which conditions it holds.
struct Current {
    conditions: Conditions,
    verified: Option<Arc<Verified>>,
}

/// A verification done by the check hook, for the value it checked.
struct Handed {
    token: *const c_char,
    /// The token generation its assignment got; None until assigned.
    token_generation: Option<u64>,
    policy_generation: u64,
    keys_generation: u64,
    verified: Arc<Verified>,
}

/// The keys a token is checked with: signature keys, and the decryption
/// keys of encrypted (nested) tokens.
struct Keys {
    verify: KeySet,
    decrypt: DecryptionKeySet,
}

/// Changes whenever either key table changes: both generations only grow,
/// so their sum moves whenever one does.
fn keys_generation() -> u64 {
    KEYS.generation().wrapping_add(DECRYPTION_KEYS.generation())
}

struct Backend {
    keys: Option<(u64, Rc<Keys>)>,
    /// The policy with its fingerprint (for the shared cache).
    policy: Option<(u64, Rc<(Policy, Fingerprint)>)>,
    cache: Cache,
    current: Option<Current>,
    handed: Option<Handed>,
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
        current: None,
        handed: None,
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

/// Verifies a token as of the current statement without consulting the
/// revocation lists (for revoke_token(), which revokes what it verifies).
pub fn verify_ignoring_revocation(token: &str) -> Result<Arc<Verified>, Error> {
    verify_at(token, clock::now())
}

/// A verified token, refused when a committed revocation names it.
fn admit(verified: Arc<Verified>) -> Result<Arc<Verified>, Error> {
    if let Err(e) = revocation::check(&verified) {
        counters::refused(&e);
        return Err(e);
    }
    Ok(verified)
}

/// Verifies `token` at `now`, from a cache when it was verified before
/// under the same keys and policy; counts what happened.
fn verify_at(token: &str, now: i64) -> Result<Arc<Verified>, Error> {
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
/// (see `shared_cache.rs` for why that is enough).
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

/// The check hook's verification of the value bound now, if it still
/// holds for `now`'s token, keys and policy.
fn handed(now: &Conditions) -> Option<Arc<Verified>> {
    BACKEND.with_borrow(|b| {
        let h = b.handed.as_ref()?;
        let same = h.token == now.token
            && h.token_generation == Some(now.token_generation)
            && h.policy_generation == now.policy_generation
            && h.keys_generation == now.keys_generation;
        same.then(|| h.verified.clone())
    })
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
        // SAFETY: a GUC string value is a NUL-terminated C string, alive
        // until the setting changes, which cannot happen during this call.
        let text = unsafe { CStr::from_ptr(now.token) };
        if text.is_empty() {
            None
        } else {
            let at = clock::unix_seconds(now.statement);
            let verified = match handed(&now) {
                Some(h) => {
                    let (policy, keys) = policy_and_keys();
                    recheck(h, &policy.0, &keys, at)?
                }
                None => verify_at(text.to_str().map_err(|_| Error::BadCharacter)?, at)?,
            };
            Some(admit(verified)?)
        }
    };
    BACKEND.with_borrow_mut(|b| {
        b.current = Some(Current {
            conditions: now,
            verified: verified.clone(),
        })
    });
    Ok(verified)
}

/// The bound token's claims for a reader, raising when it no longer
/// verifies or (with `jwt_rls.role_claim`) the role set now is not its role.
pub fn current_or_raise() -> Option<Arc<Verified>> {
    let verified = current().unwrap_or_else(|e| errors::raise!(&e))?;
    roles::check(&verified);
    Some(verified)
}

/// A claim of the bound token as text (NULL semantics of jwt_claim); raises
/// when the bound token no longer verifies.
pub fn current_claim(name: &str) -> Option<String> {
    current_or_raise()?.claim(name)
}

/// Entries and estimated bytes held by this backend's cache.
pub fn cache_usage() -> (usize, usize) {
    BACKEND.with_borrow(|b| (b.cache.len(), b.cache.bytes()))
}

#[pg_guard]
unsafe extern "C-unwind" fn assign_token(value: *const c_char, _extra: *mut c_void) {
    let generation = TOKEN_GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
    // The value the check hook just verified is assigned right after the
    // check, as the same pointer; stamp it so reads can recognise it.
    BACKEND.with_borrow_mut(|b| {
        if let Some(h) = b
            .handed
            .as_mut()
            .filter(|h| h.token == value && h.token_generation.is_none())
        {
            h.token_generation = Some(generation);
        }
    });
}

/// Verifies a token being SET so that a forged or expired one is refused
/// loudly. Returning false makes Postgres report our message (never the
/// value, which it would otherwise quote). Where no verification can run
/// (outside a transaction, while a parallel worker restores the leader's
/// settings) the value is accepted here and verified at first read.
#[pg_guard]
unsafe extern "C-unwind" fn check_token(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: Postgres passes a valid pointer to the candidate value, which
    // is null or a NUL-terminated string it owns for this call.
    let value = unsafe { *newval };
    if value.is_null() {
        return true;
    }
    // SAFETY: non-null, NUL-terminated (see above).
    let token = unsafe { CStr::from_ptr(value) };
    if token.is_empty() {
        return true;
    }
    // SAFETY: both read backend-global state and cannot raise.
    let deferred = unsafe { !pg_sys::IsTransactionState() || pg_sys::ParallelWorkerNumber >= 0 };
    BACKEND.with_borrow_mut(|b| b.handed = None);
    if deferred {
        return true;
    }
    counters::add(Counter::Binds);
    let (policy_generation, keys_generation) =
        (POLICY_GENERATION.load(Ordering::Relaxed), keys_generation());
    // Reading the key store needs a snapshot. A SET statement, and the
    // startup options of a session that preloads jwt_rls, run without one;
    // an error below aborts the transaction, which pops it.
    // SAFETY: inside a transaction (checked above); the snapshot pushed here
    // is popped right after, or by the abort cleanup on error.
    let pushed = unsafe {
        let missing = !pg_sys::ActiveSnapshotSet();
        if missing {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        missing
    };
    let verified = match token.to_str() {
        Ok(token) => verify_at(token, clock::now()).and_then(admit),
        Err(_) => Err(Error::BadCharacter),
    };
    if pushed {
        // SAFETY: pops the snapshot pushed above.
        unsafe { pg_sys::PopActiveSnapshot() };
    }
    match verified {
        Ok(verified) => {
            let token = value.cast_const();
            let handed = Handed {
                token,
                token_generation: None,
                policy_generation,
                keys_generation,
                verified,
            };
            BACKEND.with_borrow_mut(|b| b.handed = Some(handed));
            true
        }
        Err(e) => {
            errors::guc_check_failed(&e);
            false
        }
    }
}

/// Defines `jwt_rls.token`. Called last in _PG_init: defining it converts a
/// value stored before the library loaded, and runs the check hook on it,
/// which must see the configured policy and the key store.
pub fn init() {
    // SAFETY: called from _PG_init (the only time GUCs may be defined) with
    // 'static names and storage; both hooks are #[pg_guard] functions.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"jwt_rls.token",
            c"The JWT bound to this transaction (SET LOCAL) or session (SET).",
            c"Verified when set and at every read; jwt_claim() returns its claims.",
            &TOKEN,
            GucContext::Userset,
            GucFlags::NOT_WHILE_SEC_REST | GucFlags::NO_SHOW_ALL | GucFlags::DISALLOW_IN_FILE,
            Some(check_token),
            Some(assign_token),
            None,
        );
    }
}
