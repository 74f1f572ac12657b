//! DPoP (RFC 9449): sender-constrained access tokens. A token whose
//! `cnf.jkt` names a key is bound only together with a proof, signed by
//! that key, for this very request, and never seen before.
//!
//! - `prove` checks a proof for a token about to be bound
//!   (`jwt_rls_core::dpop::verify_proof`), records it in the replay table
//!   (`replay`), and marks the token as proven for the transaction.
//! - `verify_dpop_proof()` (SQL) checks and records a proof sent without an
//!   access token (a login or a refresh) and names its key.
//! - `admit` is asked whenever a bound token is admitted (at SET and at
//!   every read that verifies it again): a token naming a key is refused
//!   unless it was proven in this transaction (or an administrator turned
//!   `jwt_rls.dpop_require_proof` off).
//!
//! The mark is the setting `jwt_rls.dpop_proven`: the `ath` (SHA-256) of
//! the proven token, set LOCAL beside `jwt_rls.token`, so Postgres scopes
//! both alike (COMMIT, ROLLBACK, savepoints, RESET ALL) and copies both into
//! parallel workers. It is superuser-only: a caller cannot set it, and
//! jwt_rls writes it with a superuser's right, only after a proof passed.
//! The mark names one token: binding another token naming a key in the
//! same transaction needs a proof of its own.
//!
//! Uses settings and `pg`; used by binding, which calls `prove` before it
//! binds and `admit` when it admits.

pub mod replay;

use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicU64, Ordering};

use jwt_rls_core::dpop::{access_token_hash, verify_proof, ProofPolicy, Request};
use jwt_rls_core::error::DpopError;
use jwt_rls_core::limits::MAX_DPOP_PROOF_BYTES;
use jwt_rls_core::replay::{replay_key, Outcome};
use jwt_rls_core::replay_quota::{owner_key, Share};
use jwt_rls_core::{Error, Verified};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;

use crate::pg::{clock, errors};
use crate::settings;
use crate::shared::counters::{self, Counter};

static PROVEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Seconds a proof's `iat` may lie in the future (a client's clock ahead of
/// the server's). A constant, like `jwt_rls.dpop_max_age` server-wide: the
/// replay table's entries must outlive every backend's window.
const MAX_AHEAD: i64 = 10;

/// Bumped whenever the mark takes a new value (set, or restored at COMMIT,
/// ROLLBACK and ROLLBACK TO SAVEPOINT): binding's memory of what the bound
/// token verified to holds only while it stands still, since the mark can
/// end while the token setting (a session-level SET) does not change.
static PROVEN_GENERATION: AtomicU64 = AtomicU64::new(0);

/// See `PROVEN_GENERATION`.
pub fn proven_generation() -> u64 {
    PROVEN_GENERATION.load(Ordering::Relaxed)
}

#[pg_guard]
unsafe extern "C-unwind" fn assign_proven(_value: *const c_char, _extra: *mut c_void) {
    PROVEN_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// The key a token is bound to: the `jkt` of its `cnf` claim (RFC 9449
/// section 6.1), None when it has no `cnf` or a `cnf` without `jkt` (a
/// confirmation method the database cannot check, such as a client
/// certificate's `x5t#S256`). Read from the `cnf` member itself, not by the
/// dotted lookup policies use (which a top-level claim named "cnf.jkt"
/// would answer). A `cnf` that is not an object, or a `jkt` that is not a
/// non-empty string, names a key no proof can match: the token is bound,
/// and refused.
fn bound_key(verified: &Verified) -> Option<String> {
    let cnf = verified.claims().get(&verified.payload, "cnf")?;
    let Ok(serde_json::Value::Object(cnf)) = serde_json::from_str::<serde_json::Value>(cnf) else {
        return Some(String::new());
    };
    match cnf.get("jkt") {
        None => None,
        Some(serde_json::Value::String(jkt)) if !jkt.is_empty() => Some(jkt.clone()),
        Some(_) => Some(String::new()),
    }
}

/// Whether a token names a DPoP key (`cnf.jkt`).
pub fn is_bound(verified: &Verified) -> bool {
    bound_key(verified).is_some()
}

/// Checks `proof` for binding `token` (verified, not revoked) to the
/// request (`method`, `url`), records it so that it is never accepted
/// again, and marks `token` proven for the current transaction. Raises on
/// any failure, before anything is recorded or marked.
pub fn prove(token: &str, verified: &Verified, proof: &str, method: &str, url: &str) {
    if replay::slots() == 0 {
        errors::dpop_unavailable();
    }
    let Some(jkt) = bound_key(verified) else {
        counters::refused(&Error::NotSenderConstrained);
        errors::raise!(&Error::NotSenderConstrained);
    };
    check(proof, method, url, Some(token), Some(&jkt));
    let mark = CString::new(ath_of(token))
        .unwrap_or_else(|_| errors::internal("base64url holds a NUL byte"));
    settings::set_local_privileged(c"jwt_rls.dpop_proven", &mark);
}

/// Checks `proof` for the request (`method`, `url`; with `access_token`,
/// its `ath`; with `jkt`, its key) and records it so that it is never
/// accepted again; returns the thumbprint of its key. Raises on any
/// failure, before anything is recorded.
fn check(
    proof: &str,
    method: &str,
    url: &str,
    access_token: Option<&str>,
    jkt: Option<&str>,
) -> String {
    if replay::slots() == 0 {
        errors::dpop_unavailable();
    }
    let policy = ProofPolicy {
        max_bytes: MAX_DPOP_PROOF_BYTES,
        max_age: settings::dpop_max_age(),
        max_ahead: MAX_AHEAD,
    };
    // The wall clock, not the statement's start: the replay table is
    // shared, and an entry another backend finds expired by its clock must
    // be one this backend's clock also refuses as too old.
    let now = clock::wall_seconds();
    let request = Request {
        method,
        url,
        access_token,
        jkt,
    };
    let accepted = verify_proof(proof, &request, &policy, now).unwrap_or_else(|e| refuse(&e));
    // The clock again, for the record: had this backend stalled since the
    // check, another could already have reused the slot of an entry that
    // expired meanwhile; the proof must still be inside its window now.
    let now = clock::wall_seconds();
    if now - accepted.iat > policy.max_age {
        refuse(&DpopError::IatTooOld {
            iat: accepted.iat,
            now,
            max_age: policy.max_age,
        });
    }
    // A proof made before the table began recording (a restart, a crash or
    // a promotion emptied it) may have been accepted and forgotten; one
    // accepted just before could carry an iat up to MAX_AHEAD later.
    let since = replay::recording_since(now).unwrap_or_else(|| errors::dpop_unavailable());
    let accepted_from = since + MAX_AHEAD;
    if accepted.iat < accepted_from {
        refuse(&DpopError::MadeBeforeRecording {
            iat: accepted.iat,
            accepted_from,
        });
    }
    // Kept past the window a little, in case this server's clock steps back.
    let expires = accepted.iat + policy.max_age + MAX_AHEAD;
    let owner = owner_key(&accepted.jkt);
    match replay::record(
        &owner,
        &replay_key(&accepted.jkt, &accepted.jti),
        expires,
        now,
    ) {
        Some(Share::Asked(Outcome::Recorded)) => {}
        Some(Share::Asked(Outcome::Replay)) => refuse(&DpopError::Replayed),
        Some(Share::Asked(Outcome::Full) | Share::NoRoom) => {
            errors::dpop_replay_full(replay::slots())
        }
        Some(Share::OverShare { counted }) => {
            counters::add(Counter::Refused);
            counters::add(Counter::RefusedDpop);
            counters::add(Counter::RefusedDpopOverShare);
            errors::dpop_over_share(counted, policy.max_age + 2 * MAX_AHEAD)
        }
        None => errors::dpop_unavailable(),
    }
    counters::add(Counter::DpopProofs);
    accepted.jkt
}

/// `jwt_rls.verify_dpop_proof(dpop_proof, http_method, http_url)`: checks
/// a DPoP proof sent without an access token (to a login or token
/// endpoint: no `ath`), records it so that it is never accepted again, and
/// returns the RFC 7638 thumbprint of its key, the `jkt` to bind a session
/// to (`start_session`). Not executable by PUBLIC: each call spends a
/// replay-table entry.
#[pg_extern(volatile, parallel_unsafe)]
fn verify_dpop_proof(
    dpop_proof: Option<&str>,
    http_method: Option<&str>,
    http_url: Option<&str>,
) -> String {
    let (Some(proof), Some(method), Some(url)) = (dpop_proof, http_method, http_url) else {
        errors::null_argument("dpop_proof, http_method and http_url");
    };
    check(proof, method, url, None, None)
}

fn refuse(e: &DpopError) -> ! {
    counters::add(Counter::Refused);
    counters::add(Counter::RefusedDpop);
    errors::raise_dpop(e)
}

thread_local! {
    /// The last token whose `ath` this backend computed, and that `ath`: a
    /// DPoP-bound token is checked against the mark at its bind, its
    /// setting's check and its reads, and comparing a token (~1 KB) costs a
    /// memcmp where its SHA-256 costs ~34,000 instructions
    /// (`make bench-instructions`).
    static LAST_ATH: std::cell::RefCell<Option<(Box<str>, String)>> =
        const { std::cell::RefCell::new(None) };
}

/// `access_token_hash(token)`, computed once for the token bound lately.
fn ath_of(token: &str) -> String {
    LAST_ATH.with_borrow_mut(|last| match last {
        Some((t, ath)) if **t == *token => ath.clone(),
        _ => {
            let ath = access_token_hash(token);
            *last = Some((token.into(), ath.clone()));
            ath
        }
    })
}

/// Whether `token` (verified as `verified`) may be bound now: refused when
/// it names a DPoP key and was not proven in this transaction.
pub fn admit(token: &str, verified: &Verified) -> Result<(), Error> {
    if !settings::dpop_require_proof() || bound_key(verified).is_none() {
        return Ok(());
    }
    let proven = PROVEN.get();
    let proven = proven.as_ref().map(|p| p.to_bytes()).unwrap_or_default();
    // Not secret: the mark is the hash of a token the caller holds.
    if !proven.is_empty() && proven == ath_of(token).as_bytes() {
        Ok(())
    } else {
        Err(Error::ProofRequired)
    }
}

/// Defines `jwt_rls.dpop_proven`.
pub fn init() {
    // SAFETY: called from _PG_init with 'static names and storage; the
    // assign hook is a #[pg_guard] function.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"jwt_rls.dpop_proven",
            c"Set by jwt_rls: the token proven with a DPoP proof in this transaction (its ath).",
            c"Superuser-only; never grant SET on it: whoever can set it can bind a DPoP-bound token without its key.",
            &PROVEN,
            GucContext::Suset,
            GucFlags::NOT_WHILE_SEC_REST | GucFlags::NO_SHOW_ALL | GucFlags::DISALLOW_IN_FILE,
            None,
            Some(assign_proven),
            None,
        );
    }
}
