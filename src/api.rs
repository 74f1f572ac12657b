//! The SQL surface for applications: bind a token, read its claims.

use std::cell::RefCell;
use std::ffi::CString;
use std::sync::Arc;

use jwt_rls_core::{Error, Verified};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::varlena::{text_to_rust_str, varsize_any};

use crate::{errors, settings, state};

/// Declares the Postgres "version 1" calling convention for a function
/// written directly against the fmgr (the `PG_FUNCTION_INFO_V1` macro).
macro_rules! fmgr_v1 {
    ($finfo:ident) => {
        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1_API: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1_API
        }
    };
}
pub(crate) use fmgr_v1;

thread_local! {
    /// The jsonb form of the claims of the token bound last. Binding the
    /// same token again (every transaction of a pooled connection) returns
    /// a copy instead of parsing the payload again.
    static LAST_JSONB: RefCell<Option<(Arc<Verified>, Vec<u8>)>> = const { RefCell::new(None) };
}

/// The claims as a jsonb datum, parsed by Postgres from the payload exactly
/// as signed (so numbers of any size stay exact).
fn claims_jsonb(verified: &Arc<Verified>) -> pg_sys::Datum {
    let copy = |bytes: &[u8]| unsafe {
        let out = pg_sys::palloc(bytes.len());
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out as *mut u8, bytes.len());
        pg_sys::Datum::from(out)
    };
    if let Some(datum) = LAST_JSONB.with_borrow(|last| match last {
        Some((v, bytes)) if Arc::ptr_eq(v, verified) => Some(copy(bytes)),
        _ => None,
    }) {
        return datum;
    }
    let text = CString::new(verified.payload.as_str()).unwrap_or_else(|_| errors::raise(&Error::BadCharacter));
    let datum = unsafe {
        pgrx::direct_function_call_as_datum(pg_sys::jsonb_in, &[text.as_c_str().into_datum()])
            .unwrap_or_else(|| error!("jsonb_in returned NULL"))
    };
    let bytes = unsafe {
        let ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
        std::slice::from_raw_parts(ptr as *const u8, varsize_any(ptr)).to_vec()
    };
    LAST_JSONB.with_borrow_mut(|last| *last = Some((verified.clone(), bytes)));
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
    if unsafe { pg_sys::InSecurityRestrictedOperation() } {
        errors::forbidden("cannot bind a token during a security-restricted operation");
    }
    let arg: *mut pg_sys::varlena = unsafe { pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).cast_mut_ptr() };
    let token = unsafe { text_to_rust_str(pg_sys::pg_detoast_datum_packed(arg)) }
        .unwrap_or_else(|_| errors::raise(&Error::BadCharacter));
    let verified = state::verify_now(token).unwrap_or_else(|e| errors::raise(&e));
    // A verified token is base64url and dots only, so it holds no NUL.
    let value = CString::new(token).unwrap_or_else(|_| errors::raise(&Error::BadCharacter));
    unsafe {
        pg_sys::set_config_option(
            c"jwt_rls.token".as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            pg_sys::PGERROR as i32,
            false,
        );
    }
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
    match state::current().unwrap_or_else(|e| errors::raise(&e)) {
        Some(verified) => claims_jsonb(&verified),
        None => unsafe { pgrx::fcinfo::pg_return_null(fcinfo) },
    }
}

extension_sql!(
    r#"
CREATE FUNCTION jwt_rls.authenticate(token text) RETURNS jsonb
    VOLATILE PARALLEL UNSAFE STRICT
    LANGUAGE c AS 'MODULE_PATHNAME', 'authenticate_c';
COMMENT ON FUNCTION jwt_rls.authenticate(text) IS
    'Verifies a JWT now, binds it to the current transaction and returns its claims';
CREATE FUNCTION jwt_rls.jwt_claims() RETURNS jsonb
    STABLE PARALLEL SAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'jwt_claims_c';
COMMENT ON FUNCTION jwt_rls.jwt_claims() IS 'All claims of the bound token; NULL when none is bound';
"#,
    name = "authenticate"
);


/// The claim named by `jwt_rls.user_id_claim` (default `sub`).
#[pg_extern(stable, parallel_safe)]
fn user_id() -> Option<String> {
    state::current_claim(&settings::user_id_claim())
}

/// The claim named by `jwt_rls.tenant_id_claim` (default `tenant_id`).
#[pg_extern(stable, parallel_safe)]
fn tenant_id() -> Option<String> {
    state::current_claim(&settings::tenant_id_claim())
}

/// This backend's verification cache: entries and estimated bytes.
#[pg_extern(volatile, parallel_safe)]
fn cache_stats() -> TableIterator<'static, (name!(entries, i64), name!(bytes, i64))> {
    let (entries, bytes) = state::cache_usage();
    TableIterator::once((entries as i64, bytes as i64))
}
