//! The bound token: the `jwt_rls.token` setting, and what it verifies to.
//!
//! Which token is bound is the value of the `jwt_rls.token` setting, defined
//! here: Postgres itself scopes it to the transaction (SET LOCAL), savepoint
//! or session, restores it at COMMIT, ROLLBACK and ROLLBACK TO SAVEPOINT,
//! clears it with RESET ALL / DISCARD ALL and copies it into parallel
//! workers. Its check hook verifies a new value so that a bad token fails
//! at SET time. This module answers "what does that value verify to, now?",
//! and answers it again whenever the value, the keys, the policy, the
//! revocation lists or the statement changes, so claims never outlive any
//! of them. Verifying is `crate::verification`'s; the revocation lists are
//! `crate::lifecycle::revocation`'s.
//!
//! Two memories keep repeated work off the hot paths:
//! - `Backend.handed`: the verification the setting's check hook just did,
//!   handed to the reads of exactly the value it checked (same pointer, and
//!   the generation its assignment got), so that binding a token verifies
//!   its signature once even with the cache off (`jwt_rls.cache_entries =
//!   0`): authenticate() and every read of that binding reuse it, with time
//!   claims and key state re-checked.
//! - `Backend.current`: the answer of the last read with the conditions it
//!   holds under; reads in the same statement with the same token (a
//!   per-row `user_id()` policy, jwt_claims() and the claim functions of one
//!   query) cost a comparison of a few words instead of hashing the token.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use jwt_rls_core::{Error, Verified};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::roles;
use crate::citus;
use crate::dpop;
use crate::lifecycle::revocation;
use crate::pg::{clock, errors};
use crate::settings::{self, POLICY_GENERATION};
use crate::shared::counters::{self, Counter};
use crate::verification::{self, keys_generation, verify_at};

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
    /// The DPoP mark's generation (`dpop::proven_generation`).
    pub proven_generation: u64,
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
        proven_generation: dpop::proven_generation(),
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

struct Backend {
    current: Option<Current>,
    handed: Option<Handed>,
}

thread_local! {
    static BACKEND: RefCell<Backend> = const {
        RefCell::new(Backend {
            current: None,
            handed: None,
        })
    };
}

/// A verified token, refused when a committed revocation names it, or
/// when it names a DPoP key and was not proven in this transaction.
fn admit(token: &str, verified: Arc<Verified>) -> Result<Arc<Verified>, Error> {
    if let Err(e) = revocation::check(&verified).and_then(|()| dpop::admit(token, &verified)) {
        counters::refused(&e);
        return Err(e);
    }
    Ok(verified)
}

/// `token` verified now and not revoked, without binding it: what a DPoP
/// proof is checked against before the token is bound.
pub fn verify_unbound(token: &str) -> Result<Arc<Verified>, Error> {
    let verified = verification::verify_now(token)?;
    if let Err(e) = revocation::check(&verified) {
        counters::refused(&e);
        return Err(e);
    }
    Ok(verified)
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
            let text = text.to_str().map_err(|_| Error::BadCharacter)?;
            let verified = match handed(&now) {
                Some(h) => verification::recheck_now(h, at)?,
                None => verify_at(text, at)?,
            };
            Some(admit(text, verified)?)
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
/// settings, while the backend starts), and on a Citus worker sent the token by the coordinator
/// (`citus::forwarded_here`), the value is accepted here and verified at
/// first read.
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
    // SAFETY: these read backend-global state and cannot raise. While the
    // backend starts (not yet in normal processing) the policy is not the
    // database's yet: an OAuth login binds its token before a database is
    // chosen (`crate::oauth`), and the connection's `-c jwt_rls.token` is
    // applied before the database's and role's settings (ALTER DATABASE
    // ... SET jwt_rls.audience) are.
    let deferred = unsafe {
        !pg_sys::IsTransactionState()
            || pg_sys::ParallelWorkerNumber >= 0
            || pg_sys::Mode != pg_sys::ProcessingMode::NormalProcessing
    } || citus::forwarded_here();
    BACKEND.with_borrow_mut(|b| b.handed = None);
    if deferred {
        return true;
    }
    counters::add(Counter::Binds);
    let (policy_generation, keys_generation) = verification::generations();
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
        Ok(token) => verify_at(token, clock::now()).and_then(|v| admit(token, v)),
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

/// The setting's record in the GUC table, found once it is defined.
static RECORD: std::sync::atomic::AtomicPtr<pg_sys::config_generic> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// With `jwt_rls.allow_session_binding` off, refuses at commit a
/// transaction that bound a token for the session (`SET jwt_rls.token`,
/// `set_config(..., false)`, in autocommit too: each statement is a
/// transaction), so that the error rolls the binding back and nothing is
/// left on the connection for a pooler's next client. The session's own
/// default (connection options, an OAuth login) and unbinding stay
/// allowed: what is refused is a non-empty value that differs from it.
/// Postgres keeps a setting's changes of the transaction on a stack: at
/// the top level, GUC_SET means a session-level SET is about to be
/// committed (GUC_SET_LOCAL: one, then SET LOCAL over it, which keeps the
/// former in `masked`).
#[pg_guard]
unsafe extern "C-unwind" fn refuse_session_binding(
    event: pg_sys::XactEvent::Type,
    _arg: *mut c_void,
) {
    if event != pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT || settings::allow_session_binding() {
        return;
    }
    let record = RECORD.load(Ordering::Relaxed);
    if record.is_null() {
        return;
    }
    // SAFETY: the record is jwt_rls.token's, a string setting (so a
    // config_string), alive for the server's life; its stack and values are
    // read between statements, when Postgres does not change them. A
    // stack's masked value is the string of a GUC_SET_LOCAL entry.
    unsafe {
        let stack = (*record).stack;
        if stack.is_null() {
            return;
        }
        let committed = match (*stack).state {
            pg_sys::GucStackState::GUC_SET => token_ptr(),
            pg_sys::GucStackState::GUC_SET_LOCAL => (*stack).masked.val.stringval.cast_const(),
            _ => return,
        };
        if committed.is_null() || *committed == 0 {
            return;
        }
        let default = (*record.cast::<pg_sys::config_string>()).reset_val;
        if !default.is_null() && CStr::from_ptr(default) == CStr::from_ptr(committed) {
            return;
        }
    }
    errors::session_binding_refused();
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
    RECORD.store(
        settings::guc_record(c"jwt_rls.token").unwrap_or(std::ptr::null_mut()),
        Ordering::Relaxed,
    );
    // SAFETY: registers a #[pg_guard] callback once per process (_PG_init).
    unsafe { pg_sys::RegisterXactCallback(Some(refuse_session_binding), std::ptr::null_mut()) };
}
