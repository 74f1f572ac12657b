//! Counters of what jwt_rls does: binds, signature checks, cache hits and
//! refusals by reason. Server-wide (in shared memory) when jwt_rls is in
//! shared_preload_libraries, else this backend's own. An increment is one
//! relaxed atomic add, cheap enough to stay on (README benchmarks).

use std::sync::atomic::{AtomicU64, Ordering};

use jwt_rls_core::Error;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;

use crate::{shared_cache, shmem};

/// What is counted; the discriminant is the counter's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Token values checked for binding (SET jwt_rls.token, authenticate).
    Binds,
    /// Tokens verified from scratch (found in no cache), accepted or not.
    Verifications,
    /// Verifications found in this backend's cache.
    CacheHitsLocal,
    /// Verifications found in the shared cache (made by another backend).
    CacheHitsShared,
    /// Verifications stored in the shared cache.
    SharedInserts,
    /// Claims parsed into jsonb (authenticate(), jwt_claims()); other
    /// calls find the jsonb kept with the verification, in this backend's
    /// cache or the shared one.
    ClaimsParsed,
    Refused,
    RefusedMalformed,
    RefusedSignature,
    RefusedExpired,
    RefusedNotYetValid,
    RefusedIssuer,
    RefusedAudience,
    RefusedUnknownKid,
    RefusedKey,
    RefusedClaims,
    RefusedRevoked,
    RefusedEncryption,
}

use Counter::*;

const ALL: [Counter; 18] = [
    Binds,
    Verifications,
    CacheHitsLocal,
    CacheHitsShared,
    SharedInserts,
    ClaimsParsed,
    Refused,
    RefusedMalformed,
    RefusedSignature,
    RefusedExpired,
    RefusedNotYetValid,
    RefusedIssuer,
    RefusedAudience,
    RefusedUnknownKid,
    RefusedKey,
    RefusedClaims,
    RefusedRevoked,
    RefusedEncryption,
];

impl Counter {
    fn name(self) -> &'static str {
        match self {
            Binds => "binds",
            Verifications => "verifications",
            CacheHitsLocal => "cache_hits_local",
            CacheHitsShared => "cache_hits_shared",
            SharedInserts => "shared_cache_inserts",
            ClaimsParsed => "claims_parsed",
            Refused => "refused",
            RefusedMalformed => "refused_malformed",
            RefusedSignature => "refused_signature",
            RefusedExpired => "refused_expired",
            RefusedNotYetValid => "refused_not_yet_valid",
            RefusedIssuer => "refused_issuer",
            RefusedAudience => "refused_audience",
            RefusedUnknownKid => "refused_unknown_kid",
            RefusedKey => "refused_key",
            RefusedClaims => "refused_claims",
            RefusedRevoked => "refused_revoked",
            RefusedEncryption => "refused_encryption",
        }
    }
}

/// Bytes the counters take at the start of the shared segment (a whole
/// number of cache lines, so the cache after them starts on one).
pub const SHARED_BYTES: usize = ALL.len().div_ceil(8) * 64;

/// This backend's counters, used when there is no shared segment.
static LOCAL: [AtomicU64; ALL.len()] = [const { AtomicU64::new(0) }; ALL.len()];

fn counters() -> &'static [AtomicU64] {
    match shmem::base() {
        // SAFETY: the segment starts with SHARED_BYTES of zeroed memory
        // reserved for these counters, 64-byte aligned (Postgres aligns
        // ShmemInitStruct to cache lines), for as long as the server runs;
        // AtomicU64 has the size and alignment of u64.
        Some(base) => unsafe { std::slice::from_raw_parts(base as *const AtomicU64, ALL.len()) },
        None => &LOCAL,
    }
}

/// `jwt_rls.counters`: on by default; off only to measure what counting
/// costs (README benchmarks).
static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Defines `jwt_rls.counters`. Called from _PG_init.
pub fn init() {
    GucRegistry::define_bool_guc(
        c"jwt_rls.counters",
        c"Count binds, verifications, cache hits and refusals (jwt_rls.stats()).",
        c"",
        &ENABLED,
        GucContext::Suset,
        GucFlags::default(),
    );
}

pub fn add(counter: Counter) {
    if ENABLED.get() {
        counters()[counter as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a refusal under `Refused` and its reason.
pub fn refused(e: &Error) {
    use Error::*;
    let reason = match e {
        BadSignature => RefusedSignature,
        Expired { .. } => RefusedExpired,
        NotYetValid { .. } | IssuedInFuture { .. } => RefusedNotYetValid,
        Issuer => RefusedIssuer,
        Audience | UnexpectedAudience => RefusedAudience,
        UnknownKid(_) => RefusedUnknownKid,
        NoKeys | AmbiguousKey(_) | KeyDisabled(_) | KeyNotInWindow(_) | AlgMismatch { .. } => {
            RefusedKey
        }
        ClaimType { .. } | MissingClaim(_) | LifetimeTooLong { .. } => RefusedClaims,
        Revoked | RevokedSubject | RevokedSubjectNoIat => RefusedRevoked,
        EncryptedNotAccepted
        | UnsupportedKeyAlg(_)
        | UnsupportedEnc(_)
        | NotNested(_)
        | NestedJwe
        | UnknownDecryptionKid(_)
        | DecryptionKeyDisabled(_)
        | DecryptionKeyNotInWindow(_)
        | AmbiguousDecryptionKey(_)
        | EncMismatch { .. }
        | DecryptionFailed
        | JweLength { .. }
        | BadEpk(_) => RefusedEncryption,
        _ => RefusedMalformed,
    };
    add(Refused);
    add(reason);
}

/// `jwt_rls.stats()`: every counter, and the shared cache's size; `scope`
/// says whether they are the server's or this backend's.
#[pg_extern(volatile, parallel_safe)]
fn stats() -> TableIterator<
    'static,
    (
        name!(name, String),
        name!(value, i64),
        name!(scope, &'static str),
    ),
> {
    let scope = if shmem::base().is_some() {
        "server"
    } else {
        "backend"
    };
    let values = counters();
    let mut rows: Vec<(String, i64, &'static str)> = ALL
        .iter()
        .map(|c| {
            (
                c.name().to_string(),
                values[*c as usize].load(Ordering::Relaxed) as i64,
                scope,
            )
        })
        .collect();
    let (slots, used, bytes) = shared_cache::usage();
    rows.push(("shared_cache_slots".into(), slots as i64, scope));
    rows.push(("shared_cache_used".into(), used as i64, scope));
    rows.push(("shared_cache_bytes".into(), bytes as i64, scope));
    TableIterator::new(rows)
}

/// `jwt_rls.reset_stats()`: zeroes the counters (not the cache).
#[pg_extern(volatile, parallel_unsafe)]
fn reset_stats() {
    for c in counters() {
        c.store(0, Ordering::Relaxed);
    }
}
