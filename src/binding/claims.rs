//! The SQL surface for applications: bind a token (`authenticate`) and read
//! its claims (`jwt_claim`, `jwt_claims`, `user_id`, `tenant_id`, and the
//! read-only setting `jwt_rls.claims`).
//!
//! `authenticate`, `jwt_claims` and `jwt_claim` are written against the C
//! calling convention (see `fmgr.rs`): in a policy such as
//! `tenant_id = jwt_rls.jwt_claim('tenant_id')` the function runs once per
//! row of a sequential scan, so its cost is the policy's cost.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::sync::Arc;

use jwt_rls_core::{Error, Verified};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::varlena::{text_to_rust_str, varsize_any};

use super::roles;
use super::token::{self, Conditions};
use crate::citus;
use crate::dpop;
use crate::pg::errors;
use crate::pg::fmgr::{copy_varlena, fmgr_v1, palloc_copy, return_text, text_arg, text_bytes};
use crate::settings;
use crate::shared::counters::{self, Counter};
use crate::verification;

/// The claims as a jsonb datum, parsed by Postgres from the payload exactly
/// as signed (so numbers of any size stay exact).
///
/// Parsing costs about 1.5 µs for a typical token; the result is kept with
/// the verification (`Verified::encoded`), so a token bound again from
/// this backend's cache returns a copy, and in the shared cache, so a token
/// another backend verified or bound returns a copy too.
fn claims_jsonb(verified: &Arc<Verified>) -> pg_sys::Datum {
    if let Some(bytes) = verified.encoded.get() {
        // Built here, or checked when it came from the shared cache.
        return palloc_copy(bytes);
    }
    counters::add(Counter::ClaimsParsed);
    // A verified payload is strict JSON, which cannot hold a NUL byte.
    let text = CString::new(verified.payload.as_str())
        .unwrap_or_else(|_| errors::internal("a verified payload contains a NUL byte"));
    // SAFETY: jsonb_in takes one cstring argument; direct_function_call
    // runs it under Postgres's error handling.
    let datum = unsafe {
        pgrx::direct_function_call_as_datum(pg_sys::jsonb_in, &[text.as_c_str().into_datum()])
            .unwrap_or_else(|| errors::internal("jsonb_in returned NULL"))
    };
    // SAFETY: jsonb_in returns a freshly palloc'd, untoasted varlena.
    let bytes = unsafe {
        let ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
        std::slice::from_raw_parts(ptr as *const u8, varsize_any(ptr))
    };
    if verified.encoded.set(bytes.into()).is_ok() {
        verification::share_encoded(verified);
    }
    datum
}

fmgr_v1!(pg_finfo_authenticate_c);

/// `jwt_rls.authenticate(token)`: verifies `token` now and binds it to the
/// current transaction, exactly as `SET LOCAL jwt_rls.token` would; returns
/// its claims. Raises 28000 when the token is not acceptable and 22023 when
/// it is malformed.
///
/// # Safety
/// Called by Postgres through the fmgr with one non-null text argument.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn authenticate_c(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    refuse_if_restricted();
    // SAFETY: the SQL function is STRICT with one text argument.
    let token = unsafe { text_to_rust_str(text_arg(fcinfo, 0)) }
        .unwrap_or_else(|_| errors::raise!(&Error::BadCharacter));
    bind(token)
}

fmgr_v1!(pg_finfo_authenticate_dpop_c);

/// `jwt_rls.authenticate(token, dpop_proof, http_method, http_url)`: as
/// `authenticate(token)`, for a token bound to a DPoP key: checks the proof
/// for this request (RFC 9449 section 4.3), records it so that it is never
/// accepted again, then binds the token. A proof that fails raises 28000,
/// a malformed one 22023.
///
/// # Safety
/// Called by Postgres through the fmgr with four text arguments, any of
/// which may be NULL (the function is not STRICT, so that a NULL proof is
/// an error rather than a NULL result that binds nothing).
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn authenticate_dpop_c(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    refuse_if_restricted();
    let arg = |n: usize, name: &str| -> &str {
        // SAFETY: fcinfo is the current call, with four arguments.
        if unsafe { pgrx::fcinfo::pg_arg_is_null(fcinfo, n) } {
            errors::null_argument(name);
        }
        // SAFETY: a non-null text argument.
        unsafe { text_to_rust_str(text_arg(fcinfo, n)) }
            .unwrap_or_else(|_| errors::raise!(&Error::BadCharacter))
    };
    let (token, proof, method, url) = (
        arg(0, "token"),
        arg(1, "dpop_proof"),
        arg(2, "http_method"),
        arg(3, "http_url"),
    );
    if token.is_empty() {
        errors::raise!(&Error::Empty);
    }
    let verified = token::verify_unbound(token).unwrap_or_else(|e| errors::raise!(&e));
    dpop::prove(token, &verified, proof, method, url);
    bind(token)
}

fn refuse_if_restricted() {
    // SAFETY: reads a backend-global flag.
    if unsafe { pg_sys::InSecurityRestrictedOperation() } {
        errors::forbidden("cannot bind a token during a security-restricted operation");
    }
}

/// Binds `token` to the current transaction (as `SET LOCAL jwt_rls.token`)
/// and returns its claims as jsonb.
fn bind(token: &str) -> pg_sys::Datum {
    // An empty value unbinds when SET; to authenticate() it is an error.
    if token.is_empty() {
        errors::raise!(&Error::Empty);
    }
    // Postgres text never holds a NUL byte.
    let value = CString::new(token)
        .unwrap_or_else(|_| errors::internal("a text argument contains a NUL byte"));
    // The setting's check hook verifies the token (raising our error with
    // its SQLSTATE, DETAIL and HINT when it does not verify) and hands the
    // result to the read below, so the signature is checked once.
    settings::set_local(c"jwt_rls.token", &value);
    let verified = token::current()
        .unwrap_or_else(|e| errors::raise!(&e))
        .unwrap_or_else(|| errors::internal("a token was bound but reads as none"));
    if citus::loaded() {
        // A worker never saw the DPoP proof, so it would refuse the token
        // (and log the statement that carries it): refused here instead.
        if dpop::is_bound(&verified) {
            errors::not_supported_on_citus(
                "DPoP-bound tokens are not supported on Citus yet",
                "The token's cnf.jkt needs a DPoP proof, which only this node checked; the workers cannot.",
            );
        }
        citus::forward_set_local("jwt_rls.token", &value);
    }
    roles::switch(&verified);
    claims_jsonb(&verified)
}

fmgr_v1!(pg_finfo_jwt_claims_c);

/// `jwt_rls.jwt_claims()`: all claims of the bound token, exactly as
/// signed; NULL when none is bound.
///
/// # Safety
/// Called by Postgres through the fmgr.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn jwt_claims_c(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    match token::current_or_raise() {
        Some(verified) => claims_jsonb(&verified),
        // SAFETY: fcinfo is the current call.
        None => unsafe { pgrx::fcinfo::pg_return_null(fcinfo) },
    }
}

/// What one `jwt_claim` call site remembers, allocated in its fn_mcxt.
///
/// Each call site (FmgrInfo) remembers the answer it gave together with
/// everything that answer depends on (`Conditions`: the bound token value
/// and its generation, the key and policy generations, the statement) and
/// the claim name; when all are unchanged the call is a few comparisons and
/// returns the remembered text: a sequential scan under a bare
/// `jwt_claim()` policy costs 1.28x the literal predicate with it (README
/// benchmarks), where a lookup through `token::current()` per row would
/// hash the token for every row. Anything else goes through
/// `token::current()`, which verifies (or finds in the cache) and re-checks
/// expiry.
///
/// The remembered text lives in the call site's memory context (the
/// query's) and is returned as is: Postgres functions never modify their
/// arguments, and the executor copies a value before it outlives the query.
/// The hit path calls nothing that can raise an error.
#[repr(C)]
struct CallSite {
    conditions: Conditions,
    /// Copy of the claim name (a text), to compare by content: a pointer to
    /// a row's value can be reused for another row.
    name: *mut pg_sys::varlena,
    /// The answer (a text), or null for SQL NULL.
    result: *mut pg_sys::varlena,
}

fmgr_v1!(pg_finfo_jwt_claim_c);

/// `jwt_rls.jwt_claim(name)`: a claim of the bound token as text.
///
/// # Safety
/// Called by Postgres through the fmgr with one non-null text argument
/// (the SQL function is STRICT).
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn jwt_claim_c(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is a valid call (STRICT, one text argument); fn_extra
    // is null or a CallSite this function allocated in fn_mcxt, which lives
    // as long as the FmgrInfo; the texts it points to live in the same
    // context.
    unsafe {
        let name = text_arg(fcinfo, 0);
        let now = token::conditions();
        let flinfo = (*fcinfo).flinfo;
        let site = (*flinfo).fn_extra as *mut CallSite;
        if !site.is_null() {
            let s = &*site;
            if s.conditions == now && text_bytes(s.name) == text_bytes(name) {
                return return_text(fcinfo, s.result);
            }
        }

        let value = std::str::from_utf8(text_bytes(name))
            .ok()
            .and_then(token::current_claim);
        let context = (*flinfo).fn_mcxt;
        let site = if site.is_null() {
            let fresh = pg_sys::MemoryContextAllocZero(context, std::mem::size_of::<CallSite>())
                as *mut CallSite;
            (*flinfo).fn_extra = fresh.cast();
            fresh
        } else {
            for old in [(*site).name, (*site).result] {
                if !old.is_null() {
                    pg_sys::pfree(old.cast());
                }
            }
            site
        };
        let result = match value {
            Some(v) => {
                let t =
                    pg_sys::cstring_to_text_with_len(v.as_ptr() as *const c_char, v.len() as i32);
                let kept = copy_varlena(t, context);
                pg_sys::pfree(t.cast());
                kept
            }
            None => std::ptr::null_mut(),
        };
        *site = CallSite {
            conditions: now,
            name: copy_varlena(name, context),
            result,
        };
        return_text(fcinfo, result)
    }
}

extension_sql!(
    r#"
CREATE FUNCTION jwt_rls.authenticate(token text) RETURNS jsonb
    VOLATILE PARALLEL UNSAFE STRICT
    LANGUAGE c AS 'MODULE_PATHNAME', 'authenticate_c';
COMMENT ON FUNCTION jwt_rls.authenticate(text) IS
    'Verifies a JWT now, binds it to the current transaction and returns its claims';
CREATE FUNCTION jwt_rls.authenticate(token text, dpop_proof text, http_method text, http_url text)
    RETURNS jsonb
    VOLATILE PARALLEL UNSAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'authenticate_dpop_c';
COMMENT ON FUNCTION jwt_rls.authenticate(text, text, text, text) IS
    'Verifies a JWT bound to a DPoP key and the DPoP proof of this request (RFC 9449), binds the JWT to the current transaction and returns its claims';
CREATE FUNCTION jwt_rls.jwt_claims() RETURNS jsonb
    STABLE PARALLEL SAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'jwt_claims_c';
COMMENT ON FUNCTION jwt_rls.jwt_claims() IS 'All claims of the bound token; NULL when none is bound';
"#,
    name = "authenticate"
);

extension_sql!(
    r#"
CREATE FUNCTION jwt_rls.jwt_claim(name text) RETURNS text
    STABLE PARALLEL SAFE STRICT
    LANGUAGE c AS 'MODULE_PATHNAME', 'jwt_claim_c';
COMMENT ON FUNCTION jwt_rls.jwt_claim(text) IS
    'A claim of the bound token as text (dotted paths reach inside); NULL when absent, empty or no token is bound';
"#,
    name = "jwt_claim"
);

/// The claim named by `jwt_rls.user_id_claim` (default `sub`).
#[pg_extern(stable, parallel_safe)]
fn user_id() -> Option<String> {
    token::current_claim(&settings::user_id_claim())
}

/// The claim named by `jwt_rls.tenant_id_claim` (default `tenant_id`).
#[pg_extern(stable, parallel_safe)]
fn tenant_id() -> Option<String> {
    token::current_claim(&settings::tenant_id_claim())
}

/// `jwt_rls.claims`: the bound token's claims as a read-only setting, for
/// code that can only read settings (`current_setting('jwt_rls.claims')`).
/// Nobody can set it (PGC_INTERNAL); its value is computed when read, from
/// the bound token, so it is scoped exactly like the token.
static CLAIMS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

thread_local! {
    /// The text the show hook returned last; Postgres copies it before the
    /// next call.
    static SHOWN: RefCell<CString> = RefCell::new(CString::default());
}

/// Show hook of `jwt_rls.claims`: the bound token's payload, or empty.
#[pg_guard]
unsafe extern "C-unwind" fn show_claims() -> *const c_char {
    shown(payload_or(""))
}

/// The bound token's payload exactly as signed, or `none` when no token is
/// bound (for the show hooks of settings that mirror the claims).
pub(crate) fn payload_or(none: &str) -> String {
    match token::current_or_raise() {
        Some(verified) => verified.payload.clone(),
        None => none.to_string(),
    }
}

/// Hands `text` to Postgres as a show hook's result: kept until the next
/// call, by which time Postgres has copied it.
pub(crate) fn shown(text: String) -> *const c_char {
    // Claims come from strict JSON, which cannot hold a NUL byte.
    let text = CString::new(text)
        .unwrap_or_else(|_| errors::internal("a verified claim contains a NUL byte"));
    SHOWN.with_borrow_mut(|shown| {
        *shown = text;
        shown.as_ptr()
    })
}

/// Defines `jwt_rls.claims`.
pub fn init() {
    // SAFETY: called from _PG_init with 'static names and storage; the show
    // hook is a #[pg_guard] function.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"jwt_rls.claims",
            c"The claims of the bound token (read-only; empty when none is bound).",
            c"Computed from jwt_rls.token when read; cannot be set.",
            &CLAIMS,
            GucContext::Internal,
            GucFlags::NO_SHOW_ALL | GucFlags::DISALLOW_IN_FILE,
            None,
            None,
            Some(show_claims),
        );
    }
}
