//! Counters of what jwt_rls does: binds, signature checks, cache hits and
//! refusals by reason. Server-wide (in shared memory) when jwt_rls is in
//! shared_preload_libraries, else this backend's own. An increment is one
//! relaxed atomic add, cheap enough to stay on (README benchmarks).

use std::sync::atomic::{AtomicU64, Ordering};

use jwt_rls_core::Error;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

use crate::pg::region::Region;

/// This part's region of the shared segment.
pub static REGION: Region = Region::new();

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
    /// DPoP proofs accepted (and recorded against replay).
    DpopProofs,
    /// DPoP refusals: a proof that failed, or a token naming a DPoP key
    /// bound without one.
    RefusedDpop,
    /// DPoP proofs refused because their key held its share of the replay
    /// table already (`jwt_rls.dpop_proofs_per_key`); also in RefusedDpop.
    RefusedDpopOverShare,
    /// OAuth logins admitted by the validator (PostgreSQL 18 and later).
    OauthLogins,
    /// OAuth logins refused by the validator, for any reason.
    RefusedOauth,
}

use Counter::*;

const ALL: [Counter; 23] = [
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
    DpopProofs,
    RefusedDpop,
    RefusedDpopOverShare,
    OauthLogins,
    RefusedOauth,
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
            DpopProofs => "dpop_proofs",
            RefusedDpop => "refused_dpop",
            RefusedDpopOverShare => "refused_dpop_over_share",
            OauthLogins => "oauth_logins",
            RefusedOauth => "refused_oauth",
        }
    }
}

/// Bytes the counters ask of the shared segment.
pub const SHARED_BYTES: usize = ALL.len().div_ceil(8) * 64;

/// This backend's counters, used when there is no shared segment.
static LOCAL: [AtomicU64; ALL.len()] = [const { AtomicU64::new(0) }; ALL.len()];

fn counters() -> &'static [AtomicU64] {
    match REGION.base() {
        // SAFETY: the region is SHARED_BYTES of zeroed memory reserved for
        // these counters, 64-byte aligned, for as long as the server runs;
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
        ProofRequired | NotSenderConstrained => RefusedDpop,
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

/// Whether the counters are the server's (in shared memory) or this
/// backend's own.
pub fn server_wide() -> bool {
    REGION.base().is_some()
}

/// Every counter's name and value.
pub fn values() -> Vec<(&'static str, u64)> {
    let values = counters();
    ALL.iter()
        .map(|c| (c.name(), values[*c as usize].load(Ordering::Relaxed)))
        .collect()
}

/// Zeroes every counter.
pub fn reset() {
    for c in counters() {
        c.store(0, Ordering::Relaxed);
    }
}
