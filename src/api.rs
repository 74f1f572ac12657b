//! The SQL surface for applications: bind a token, read its claims.

use std::ffi::CString;

use jwt_rls_core::{lookup, text};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use crate::{errors, settings, state};

/// Verifies `token` now and binds it to the current transaction, exactly as
/// `SET LOCAL jwt_rls.token` would; returns its claims. Raises 28000 when
/// the token is not acceptable and 22023 when it is malformed.
#[pg_extern(volatile, parallel_unsafe, strict)]
fn authenticate(token: &str) -> JsonB {
    if unsafe { pg_sys::InSecurityRestrictedOperation() } {
        errors::forbidden("cannot bind a token during a security-restricted operation");
    }
    let verified = state::verify_now(token).unwrap_or_else(|e| errors::raise(&e));
    // A token is base64url and dots only, so it holds no NUL.
    let value = CString::new(token).unwrap_or_else(|_| errors::raise(&jwt_rls_core::Error::BadCharacter));
    unsafe {
        pg_sys::set_config_option(
            c"jwt_rls.token".as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            pgrx::pg_sys::PGERROR as i32,
            false,
        );
    }
    JsonB(Value::Object(verified.claims().clone()))
}

fn claim(name: &str) -> Option<String> {
    let verified = state::current().unwrap_or_else(|e| errors::raise(&e))?;
    lookup(verified.claims(), name).and_then(text)
}

/// A claim of the bound token as text; dotted paths reach into objects and
/// arrays (`'org.id'`, `'roles.0'`). NULL when no token is bound, or the
/// claim is absent, JSON null or an empty string.
#[pg_extern(stable, parallel_safe, strict)]
fn jwt_claim(name: &str) -> Option<String> {
    claim(name)
}

/// All claims of the bound token, exactly as signed; NULL when none is bound.
#[pg_extern(stable, parallel_safe)]
fn jwt_claims() -> Option<JsonB> {
    let verified = state::current().unwrap_or_else(|e| errors::raise(&e))?;
    Some(JsonB(Value::Object(verified.claims().clone())))
}

/// The claim named by `jwt_rls.user_id_claim` (default `sub`).
#[pg_extern(stable, parallel_safe)]
fn user_id() -> Option<String> {
    claim(&settings::user_id_claim())
}

/// The claim named by `jwt_rls.tenant_id_claim` (default `tenant_id`).
#[pg_extern(stable, parallel_safe)]
fn tenant_id() -> Option<String> {
    claim(&settings::tenant_id_claim())
}

/// This backend's verification cache: entries and estimated bytes.
#[pg_extern(volatile, parallel_safe)]
fn cache_stats() -> TableIterator<'static, (name!(entries, i64), name!(bytes, i64))> {
    let (entries, bytes) = state::cache_usage();
    TableIterator::once((entries as i64, bytes as i64))
}
