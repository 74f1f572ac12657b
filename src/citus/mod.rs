//! Citus: a table distributed over worker nodes is read and written by the
//! workers, each with its own copy of every function a policy calls, so
//! each worker must see the bound token and verify it itself.
//!
//! Citus forwards a `SET LOCAL` statement of a multi-statement transaction
//! to every worker connection the transaction uses, now and later, when
//! `citus.propagate_set_commands` is `local` (its ProcessUtility hook sees
//! the statement; a setting changed from C, as `set_config()` or a plain
//! `set_config_option` call does, is not seen). So where Citus is loaded,
//! binding, once the token is set and verified here, repeats it as a
//! `SET LOCAL jwt_rls.token = '...'` statement through SPI, after making
//! sure the propagation is on for the transaction. The worker's own check
//! hook verifies the token with the worker's keys and policy: no claim
//! crosses the network, only the token.
//!
//! The statement holds the token, so an error raised while it runs (a
//! worker refusing the token) would carry it in its CONTEXT line ("SQL
//! statement ..."): such an error is raised again with its SQLSTATE,
//! message, DETAIL and HINT only.
//!
//! Without Citus nothing here runs beyond one lookup of a setting's flags.
//! Uses `pg`; used by binding.

use std::ffi::{CStr, CString};

use pgrx::pg_sys;
use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;
use pgrx::spi::{quote_literal, Spi};

use crate::pg::errors;

mod sharing;

/// Citus's setting that turns SET LOCAL propagation on; it exists only in a
/// backend that loaded Citus.
const PROPAGATE: &CStr = c"citus.propagate_set_commands";

/// The value of Citus's propagation setting; None when Citus is not loaded
/// (a placeholder of that name, which any role can create with SET, is not
/// Citus).
fn propagation() -> Option<String> {
    // SAFETY: both take a NUL-terminated name and, with missing_ok, return
    // 0 / NULL for an unknown one; the value is a string Postgres owns
    // until the setting changes, copied at once.
    unsafe {
        let value = pg_sys::GetConfigOption(PROPAGATE.as_ptr(), true, false);
        if value.is_null() {
            return None;
        }
        let flags = pg_sys::GetConfigOptionFlags(PROPAGATE.as_ptr(), true);
        if flags & pg_sys::GUC_CUSTOM_PLACEHOLDER as i32 != 0 {
            return None;
        }
        Some(CStr::from_ptr(value).to_string_lossy().into_owned())
    }
}

/// Whether this backend serves a connection Citus opened from another node
/// (its `application_name` starts with `citus_internal`). A token it is
/// sent is checked when first read rather than when set: a refusal at SET
/// would make this node log the statement, token included (at the default
/// `log_min_error_statement`), while the read that refuses it logs only
/// the query. Anyone can claim that name, and nothing is lost by it: every
/// read verifies the token again.
pub fn forwarded_here() -> bool {
    // SAFETY: GetConfigOption returns a string Postgres owns (or NULL),
    // read at once.
    unsafe {
        let name = pg_sys::GetConfigOption(c"application_name".as_ptr(), true, false);
        !name.is_null()
            && CStr::from_ptr(name)
                .to_bytes()
                .starts_with(b"citus_internal")
    }
}

/// Whether this backend runs Citus.
pub fn loaded() -> bool {
    propagation().is_some()
}

/// Repeats `SET LOCAL name = value` as a statement Citus forwards to the
/// workers. Call only where `loaded()`, after setting the value here.
pub fn forward_set_local(name: &str, value: &CStr) {
    let Some(propagation) = propagation() else {
        return;
    };
    let value = value
        .to_str()
        .unwrap_or_else(|_| errors::internal("a setting value is not UTF-8"));
    let mut statements = Vec::with_capacity(2);
    if propagation != "local" {
        // For this transaction only; the administrator's value is back at
        // COMMIT. Without it the workers would see no token, and a query
        // would silently return no rows.
        statements.push(format!(
            "SET LOCAL {} = 'local'",
            PROPAGATE.to_string_lossy()
        ));
    }
    // The name is ours (a constant); the value is quoted.
    statements.push(format!("SET LOCAL {name} = {}", quote_literal(value)));
    for statement in statements {
        let statement = CString::new(statement)
            .unwrap_or_else(|_| errors::internal("a SET statement contains a NUL byte"));
        PgTryBuilder::new(|| {
            Spi::run(statement.to_str().unwrap_or_default())
                .unwrap_or_else(|e| errors::internal(&format!("SET LOCAL through SPI failed: {e}")))
        })
        .catch_others(|caught| {
            let report = match caught {
                CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
                CaughtError::RustPanic { ereport, .. } => ereport,
            };
            // Without the CONTEXT, which quotes the statement.
            let mut again = ErrorReport::new(
                report.sql_error_code(),
                report.message().to_string(),
                "jwt_rls",
            );
            if let Some(detail) = report.detail() {
                again = again.set_detail(detail.to_string());
            }
            if let Some(hint) = report.hint() {
                again = again.set_hint(hint.to_string());
            }
            again.report(PgLogLevel::ERROR);
            unreachable!("ERROR does not return")
        })
        .execute();
    }
}
