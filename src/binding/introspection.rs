//! `jwt_rls.introspect(token)`: for a service that asks the database
//! whether a token is good instead of verifying it itself, an answer shaped
//! like an OAuth token introspection response (RFC 7662 section 2.2).
//!
//! The token is verified and checked against the revocation lists exactly
//! as binding it would (keys, policy, revoked jti, subject and session),
//! but nothing is bound and no DPoP proof is asked for: a sender-
//! constrained token is reported with its `cnf`, and the service checks the
//! proof (RFC 9449 section 6.2). Anything that would be refused, for
//! whatever reason, is `{"active": false}` and nothing else: the reason
//! would tell a caller probing with stolen or forged tokens what to fix.

use jwt_rls_core::Verified;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::varlena::text_to_rust_str;

use super::token;
use crate::pg::errors;
use crate::pg::fmgr::{fmgr_v1, text_arg};

/// The response's JSON text: the claims exactly as signed (numbers of any
/// size stay exact) with `"active": true` written last, so that it wins
/// over a claim of that name when Postgres parses the text as jsonb.
fn active(verified: &Verified) -> String {
    let payload = verified.payload.trim_end();
    let body = payload
        .strip_suffix('}')
        .unwrap_or_else(|| errors::internal("a verified payload is not a JSON object"));
    if body.trim_start().trim_start_matches('{').trim().is_empty() {
        r#"{"active":true}"#.to_string()
    } else {
        format!(r#"{body},"active":true}}"#)
    }
}

fmgr_v1!(pg_finfo_introspect_c);

/// `jwt_rls.introspect(token text) RETURNS jsonb`.
///
/// # Safety
/// Called by Postgres through the fmgr with one non-null text argument
/// (the SQL function is STRICT).
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn introspect_c(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: the SQL function is STRICT with one text argument.
    let token = unsafe { text_to_rust_str(text_arg(fcinfo, 0)) };
    let text = match token.map(token::verify_unbound) {
        Ok(Ok(verified)) => active(&verified),
        _ => r#"{"active":false}"#.to_string(),
    };
    let text = std::ffi::CString::new(text)
        .unwrap_or_else(|_| errors::internal("a verified payload contains a NUL byte"));
    // SAFETY: jsonb_in takes one cstring argument; direct_function_call
    // runs it under Postgres's error handling.
    unsafe {
        pgrx::direct_function_call_as_datum(pg_sys::jsonb_in, &[text.as_c_str().into_datum()])
            .unwrap_or_else(|| errors::internal("jsonb_in returned NULL"))
    }
}

extension_sql!(
    r#"
CREATE FUNCTION jwt_rls.introspect(token text) RETURNS jsonb
    VOLATILE PARALLEL SAFE STRICT
    LANGUAGE c AS 'MODULE_PATHNAME', 'introspect_c';
COMMENT ON FUNCTION jwt_rls.introspect(text) IS
    'RFC 7662-shaped introspection: {"active": true} and the claims of a token that verifies and is not revoked, else {"active": false}';
REVOKE EXECUTE ON FUNCTION jwt_rls.introspect(text) FROM PUBLIC;
"#,
    name = "introspect",
    requires = ["authenticate"]
);
