//! `jwt_rls.jwt_claim(name)`, written against the C calling convention.
//!
//! In a policy such as `tenant_id = jwt_rls.jwt_claim('tenant_id')` the
//! function runs once per row of a sequential scan, so its cost is the
//! policy's cost. Each call site (FmgrInfo) remembers the answer it gave
//! together with everything that answer depends on — the bound token value
//! and its generation, the key and policy generations, the statement — and
//! the claim name; when all are unchanged the call is a few comparisons and
//! returns the remembered text. Anything else goes through
//! `state::current()`, which verifies (or finds in the cache) and re-checks
//! expiry.
//!
//! The remembered text lives in the call site's memory context (the query's)
//! and is returned as is: Postgres functions never modify their arguments,
//! and the executor copies a value before it outlives the query. The hit
//! path calls nothing that can raise an error, so it needs none of pgrx's
//! per-call error guards, which would cost more than the rest of the call.

use std::ffi::c_char;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::varlena::{varatt_is_1b_e, varatt_is_4b_c, varsize_any, varsize_any_exhdr, vardata_any};

use crate::state::{self, Conditions};

/// What one call site remembers, allocated in its fn_mcxt.
#[repr(C)]
struct CallSite {
    conditions: Conditions,
    /// Copy of the claim name (a text), to compare by content: a pointer to
    /// a row's value can be reused for another row.
    name: *mut pg_sys::varlena,
    /// The answer (a text), or null for SQL NULL.
    result: *mut pg_sys::varlena,
}

/// Whether a text needs detoasting before its bytes can be read
/// (compressed or stored out of line); short and plain headers do not.
unsafe fn needs_detoast(t: *const pg_sys::varlena) -> bool {
    unsafe { varatt_is_1b_e(t) || varatt_is_4b_c(t) }
}

unsafe fn text_bytes<'a>(t: *const pg_sys::varlena) -> &'a [u8] {
    unsafe { std::slice::from_raw_parts(vardata_any(t) as *const u8, varsize_any_exhdr(t)) }
}

/// A copy of `t` in `context`.
unsafe fn copy_text(t: *const pg_sys::varlena, context: pg_sys::MemoryContext) -> *mut pg_sys::varlena {
    unsafe {
        let len = varsize_any(t);
        let copy = pg_sys::MemoryContextAlloc(context, len) as *mut pg_sys::varlena;
        std::ptr::copy_nonoverlapping(t as *const u8, copy as *mut u8, len);
        copy
    }
}

fn answer(name: &[u8]) -> Option<String> {
    state::current_claim(std::str::from_utf8(name).ok()?)
}

unsafe fn give(fcinfo: pg_sys::FunctionCallInfo, result: *mut pg_sys::varlena) -> pg_sys::Datum {
    unsafe {
        if result.is_null() {
            (*fcinfo).isnull = true;
            return pg_sys::Datum::from(0);
        }
        pg_sys::Datum::from(result)
    }
}

crate::api::fmgr_v1!(pg_finfo_jwt_claim_c);

/// # Safety
/// Called by Postgres through the fmgr with one non-null text argument
/// (the SQL function is STRICT).
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn jwt_claim_c(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let arg: *mut pg_sys::varlena = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).cast_mut_ptr();
        let name = if needs_detoast(arg) { pg_sys::pg_detoast_datum_packed(arg) } else { arg };
        let now = state::conditions();
        let flinfo = (*fcinfo).flinfo;
        let site = (*flinfo).fn_extra as *mut CallSite;
        if !site.is_null() {
            let s = &*site;
            if s.conditions == now && text_bytes(s.name) == text_bytes(name) {
                return give(fcinfo, s.result);
            }
        }

        let value = answer(text_bytes(name));
        let context = (*flinfo).fn_mcxt;
        let site = if site.is_null() {
            let fresh = pg_sys::MemoryContextAllocZero(context, std::mem::size_of::<CallSite>()) as *mut CallSite;
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
                let t = pg_sys::cstring_to_text_with_len(v.as_ptr() as *const c_char, v.len() as i32);
                let kept = copy_text(t, context);
                pg_sys::pfree(t.cast());
                kept
            }
            None => std::ptr::null_mut(),
        };
        *site = CallSite {
            conditions: now,
            name: copy_text(name, context),
            result,
        };
        give(fcinfo, result)
    }
}

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
