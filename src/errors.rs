//! The one place where core errors become Postgres errors: SQLSTATE,
//! message, DETAIL and HINT. Nothing here ever formats the token.

use std::ffi::CString;

use jwt_rls_core::{Class, Error};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

fn sqlstate(e: &Error) -> PgSqlErrorCode {
    match e.class() {
        Class::Malformed | Class::BadKey => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        Class::Rejected => PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
    }
}

fn hint(e: &Error) -> Option<&'static str> {
    use Error::*;
    Some(match e {
        Expired { .. } | KeyDisabled(_) | KeyNotInWindow(_) => "Obtain a new token from the issuer.",
        NoKeys | UnknownKid(_) => {
            "An administrator adds the issuer's keys with jwt_rls.import_jwks() or jwt_rls.add_pem_key()."
        }
        TooLarge { .. } => "An administrator can raise jwt_rls.max_token_bytes.",
        Issuer | Audience => "Check jwt_rls.issuer and jwt_rls.audience against the token's issuer.",
        BadCharacter => "Pass the bare token, without a \"Bearer \" prefix or whitespace.",
        _ => return None,
    })
}

/// Raises `e` as an ERROR.
pub fn raise(e: &Error) -> ! {
    let mut report = ErrorReport::new(sqlstate(e), e.message(), function_name!());
    if let Some(d) = e.detail() {
        report = report.set_detail(d);
    }
    if let Some(h) = hint(e) {
        report = report.set_hint(h);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises a privilege error (SQLSTATE 42501).
pub fn forbidden(message: &str) -> ! {
    ereport!(ERROR, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, message);
}

fn guc_string(s: &str) -> *mut std::ffi::c_char {
    let c = CString::new(s.replace('\0', "")).unwrap_or_default();
    // SAFETY: the GUC machinery expects palloc'd strings here.
    unsafe { pg_sys::pstrdup(c.as_ptr()) }
}

/// Fills the GUC check-hook error fields, so that a refused SET reports
/// our message and SQLSTATE instead of quoting the value (the token).
pub fn guc_check_failed(e: &Error) {
    let code = match e.class() {
        Class::Rejected => PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        _ => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
    };
    unsafe {
        pg_sys::GUC_check_errcode(code as i32);
        pg_sys::GUC_check_errmsg_string = guc_string(&e.message());
        if let Some(d) = e.detail() {
            pg_sys::GUC_check_errdetail_string = guc_string(&d);
        }
        if let Some(h) = hint(e) {
            pg_sys::GUC_check_errhint_string = guc_string(h);
        }
    }
}
