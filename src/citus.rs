//! Citus: a table distributed over worker nodes is read and written by the
//! workers, each with its own copy of every function a policy calls, so
//! each worker must see the bound token and verify it itself.
//!
//! Citus forwards a `SET LOCAL` statement of a multi-statement transaction
//! to every worker connection the transaction uses, now and later, when
//! `citus.propagate_set_commands` is `local` (its ProcessUtility hook sees
//! the statement; a setting changed from C, as `set_config()` or a plain
//! `set_config_option` call does, is not seen). So where Citus is loaded,
//! binding runs `SET LOCAL jwt_rls.token = '...'` as a statement, through
//! SPI, after making sure the propagation is on for the transaction. The
//! worker's own check hook verifies the token with the worker's keys and
//! policy: no claim crosses the network, only the token.
//!
//! Without Citus nothing here runs beyond one lookup of a setting name.
//! Uses `pg` and settings; used by binding.

use std::ffi::{CStr, CString};

use pgrx::pg_sys;
use pgrx::spi::{quote_literal, Spi};

use crate::pg::errors;

/// Citus's setting that turns SET LOCAL propagation on; it exists only in a
/// backend that loaded Citus.
const PROPAGATE: &CStr = c"citus.propagate_set_commands";

/// The value of Citus's propagation setting; None when Citus is not loaded.
fn propagation() -> Option<String> {
    // SAFETY: GetConfigOption with missing_ok returns NULL for an unknown
    // name, else a string Postgres owns until the setting changes; it is
    // copied at once.
    unsafe {
        let value = pg_sys::GetConfigOption(PROPAGATE.as_ptr(), true, false);
        (!value.is_null()).then(|| CStr::from_ptr(value).to_string_lossy().into_owned())
    }
}

/// `SET LOCAL name = value` as a statement Citus forwards to the workers,
/// when Citus is loaded: true when done, false when Citus is not loaded
/// (the caller sets it the ordinary way).
pub fn set_local_on_every_node(name: &str, value: &CStr) -> bool {
    let Some(propagation) = propagation() else {
        return false;
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
        Spi::run(statement.to_str().unwrap_or_default())
            .unwrap_or_else(|e| errors::internal(&format!("SET LOCAL through SPI failed: {e}")));
    }
    true
}
