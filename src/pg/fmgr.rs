//! Glue for functions written directly against Postgres's "version 1"
//! calling convention (fmgr), for the entry points whose per-call cost
//! matters: the `PG_FUNCTION_INFO_V1` record and the text helpers.

use pgrx::pg_sys;
use pgrx::varlena::{
    varatt_is_1b_e, varatt_is_4b_c, varatt_is_4b_u, vardata_any, varsize_any, varsize_any_exhdr,
};

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

/// The text argument `n`, detoasted when it is compressed or stored out of
/// line (short and plain headers are read in place).
///
/// # Safety
/// `fcinfo` is a valid call with a non-null text argument `n`.
pub unsafe fn text_arg(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> *mut pg_sys::varlena {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let arg: *mut pg_sys::varlena = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, n).cast_mut_ptr();
        if varatt_is_1b_e(arg) || varatt_is_4b_c(arg) {
            pg_sys::pg_detoast_datum_packed(arg)
        } else {
            arg
        }
    }
}

/// The bytes of a detoasted text.
///
/// # Safety
/// `t` is a valid, detoasted varlena that outlives `'a`.
pub unsafe fn text_bytes<'a>(t: *const pg_sys::varlena) -> &'a [u8] {
    // SAFETY: guaranteed by the caller; a varlena's payload is its size
    // minus the header, starting at vardata_any.
    unsafe { std::slice::from_raw_parts(vardata_any(t) as *const u8, varsize_any_exhdr(t)) }
}

/// A copy of the whole varlena `t` (header included) in `context`.
///
/// # Safety
/// `t` is a valid, detoasted varlena; `context` a live memory context.
pub unsafe fn copy_varlena(
    t: *const pg_sys::varlena,
    context: pg_sys::MemoryContext,
) -> *mut pg_sys::varlena {
    // SAFETY: guaranteed by the caller; the copy has the source's size.
    unsafe {
        let len = varsize_any(t);
        let copy = pg_sys::MemoryContextAlloc(context, len) as *mut pg_sys::varlena;
        std::ptr::copy_nonoverlapping(t as *const u8, copy as *mut u8, len);
        copy
    }
}

/// Whether `bytes` are a plain (4-byte header, uncompressed, inline)
/// varlena of exactly their length, as jsonb_in returns: checked before
/// bytes that came through shared memory are kept as a datum.
pub fn is_plain_varlena(bytes: &[u8]) -> bool {
    let Some(head) = bytes.first_chunk::<4>() else {
        return false;
    };
    // An aligned copy of the header, which is all the checks read.
    let header = [u32::from_ne_bytes(*head)];
    let ptr = header.as_ptr() as *const pg_sys::varlena;
    // SAFETY: `ptr` points to 4 aligned bytes; varatt_is_4b_u reads the
    // first, and varsize_any of a 4-byte-header varlena reads the 4.
    unsafe { varatt_is_4b_u(ptr) && varsize_any(ptr) == bytes.len() }
}

/// A palloc'd copy of `bytes` (a whole varlena) in the current context.
pub fn palloc_copy(bytes: &[u8]) -> pg_sys::Datum {
    // SAFETY: palloc returns at least `len` writable bytes or raises; the
    // source and the fresh allocation cannot overlap.
    unsafe {
        let out = pg_sys::palloc(bytes.len());
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out as *mut u8, bytes.len());
        pg_sys::Datum::from(out)
    }
}

/// Returns `result` (a text), or SQL NULL when it is null.
///
/// # Safety
/// `fcinfo` is the current call.
pub unsafe fn return_text(
    fcinfo: pg_sys::FunctionCallInfo,
    result: *mut pg_sys::varlena,
) -> pg_sys::Datum {
    if result.is_null() {
        // SAFETY: guaranteed by the caller.
        return unsafe { pgrx::fcinfo::pg_return_null(fcinfo) };
    }
    pg_sys::Datum::from(result)
}
