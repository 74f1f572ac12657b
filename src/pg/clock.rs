//! The clock for time claims: the start of the current statement.
//!
//! Stable within a statement (as a STABLE function must be), shared with
//! parallel workers, and new for every statement, so an expired token stops
//! working at the next statement even inside one transaction.

use pgrx::pg_sys;

unsafe extern "C" {
    /// The same symbol as `pg_sys::GetCurrentStatementStartTimestamp`, bound
    /// without pgrx's error guard: it only reads a variable, so it cannot
    /// raise an error, and it runs on every jwt_claim() call.
    #[link_name = "GetCurrentStatementStartTimestamp"]
    fn statement_start_unguarded() -> pg_sys::TimestampTz;
}

/// The start of the current statement as a Postgres timestamp; reads one
/// variable and never raises.
pub fn statement_start() -> pg_sys::TimestampTz {
    // SAFETY: GetCurrentStatementStartTimestamp takes no arguments and only
    // returns a backend-global variable; it cannot raise or longjmp.
    unsafe { statement_start_unguarded() }
}

/// Seconds between the Unix and Postgres epochs.
const PG_EPOCH_OFFSET: i64 = 946_684_800;

/// Unix seconds of a Postgres timestamp.
pub fn unix_seconds(ts: pg_sys::TimestampTz) -> i64 {
    ts.div_euclid(1_000_000) + PG_EPOCH_OFFSET
}

/// The Postgres timestamp of Unix seconds.
pub fn timestamp(unix_seconds: i64) -> pg_sys::TimestampTz {
    (unix_seconds - PG_EPOCH_OFFSET).saturating_mul(1_000_000)
}

/// "Now" for time claims, in Unix seconds.
pub fn now() -> i64 {
    unix_seconds(statement_start())
}

/// The wall clock now, in Unix seconds (not the statement's start), for
/// state shared between backends whose statements started at other times.
pub fn wall_seconds() -> i64 {
    // SAFETY: GetCurrentTimestamp reads the system clock; it cannot raise.
    unix_seconds(unsafe { pg_sys::GetCurrentTimestamp() })
}
