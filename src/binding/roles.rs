//! Role from a claim (opt-in, PostgREST's habit): with `jwt_rls.role_claim`
//! set, `authenticate()` switches the transaction to the role the token's
//! claim names, as `SET LOCAL ROLE` would, so grants decide what each kind
//! of user may touch and RLS decides which rows.
//!
//! - The session user must be a member of that role (as for SET ROLE), and
//!   it is never a superuser or a BYPASSRLS role: 42501 otherwise. A token
//!   without the claim is refused too (fail closed).
//! - The switch is transaction-local: gone at COMMIT/ROLLBACK, so it never
//!   outlives the transaction behind a pooler.
//! - Claims are readable only while the role in force (set by SET ROLE,
//!   or the session user when none is) is the claimed one: `RESET ROLE`
//!   or `SET ROLE` to another role inside the transaction leaves the
//!   token's claims unreadable (42501) instead of combining them with
//!   other privileges. (SECURITY DEFINER functions keep working: they
//!   change the current user, not the role set by SET ROLE.) A token bound
//!   with `SET jwt_rls.token` does not switch: its claims are readable only
//!   after the application itself sets the claimed role (or in a session
//!   logged in as that role).

use std::ffi::CString;

use jwt_rls_core::Verified;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::settings;

fn refuse(message: &str, detail: String, hint: &str) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        message.to_string(),
        "jwt_rls::roles",
    )
    .set_detail(detail)
    .set_hint(hint.to_string())
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// The role the token claims, when role switching is on: (name, oid).
fn claimed(verified: &Verified) -> Option<(String, pg_sys::Oid)> {
    let claim = settings::role_claim()?;
    let shown = jwt_rls_core::error::shown(&claim);
    let Some(name) = verified.claim(&claim) else {
        refuse(
            "token names no role",
            format!("jwt_rls.role_claim is {shown} and the token has no such claim."),
            "Issue the token with the role claim, or unset jwt_rls.role_claim.",
        );
    };
    let oid = CString::new(name.as_str())
        .ok()
        // SAFETY: a NUL-terminated name; with missing_ok the lookup
        // returns InvalidOid instead of raising.
        .map(|c| unsafe { pg_sys::get_role_oid(c.as_ptr(), true) })
        .filter(|oid| *oid != pg_sys::InvalidOid);
    let Some(oid) = oid else {
        refuse(
            "token role does not exist",
            format!(
                "The token's {shown} claim names role {}.",
                jwt_rls_core::error::shown(&name)
            ),
            "Create the role, or issue tokens with an existing one.",
        );
    };
    Some((name, oid))
}

/// At bind (authenticate): switches the transaction to the claimed role.
pub fn switch(verified: &Verified) {
    let Some((name, oid)) = claimed(verified) else {
        return;
    };
    let shown = jwt_rls_core::error::shown(&name);
    // SAFETY: catalog lookups of an existing role's attributes.
    if unsafe { pg_sys::superuser_arg(oid) || pg_sys::has_bypassrls_privilege(oid) } {
        refuse(
            "token role is not allowed",
            format!("Role {shown} is a superuser or bypasses row level security."),
            "Claim roles must be ordinary roles that row level security applies to.",
        );
    }
    // SAFETY: both are existing roles' OIDs; the check reads the catalog.
    if !unsafe { pg_sys::is_member_of_role(pg_sys::GetSessionUserId(), oid) } {
        refuse(
            "session user is not a member of the token's role",
            format!("The token names role {shown}."),
            "GRANT the role to the role the application logs in as.",
        );
    }
    let value = CString::new(name).unwrap_or_default();
    // "role"'s own check hook checks membership again and refuses inside a
    // security-restricted operation.
    settings::set_local(c"role", &value);
}

/// At every read: the token's claims are readable only under its role.
pub fn check(verified: &Verified) {
    let Some((name, oid)) = claimed(verified) else {
        return;
    };
    // The role in force: the one SET ROLE set, or without one the session
    // user (an OAuth login whose token chose its role, `crate::oauth`).
    // SAFETY: both read backend-global variables.
    let in_force = unsafe {
        match pg_sys::GetCurrentRoleId() {
            pg_sys::InvalidOid => pg_sys::GetSessionUserId(),
            set => set,
        }
    };
    if in_force != oid {
        refuse(
            "the bound token's claims are readable only under its role",
            format!(
                "The token names role {}; the role set now differs (RESET ROLE or SET ROLE since binding).",
                jwt_rls_core::error::shown(&name)
            ),
            "Bind the token with jwt_rls.authenticate(), which sets its role for the transaction.",
        );
    }
}
