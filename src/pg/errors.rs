//! The one place where core errors become Postgres errors: SQLSTATE,
//! message, DETAIL and HINT. Nothing here ever formats the token.
//!
//! The core knows nothing of the extension; where an error is about a
//! setting, the DETAIL and HINT here name it.

use std::ffi::{c_char, CString};

use jwt_rls_core::error::DpopError;
use jwt_rls_core::{Class, Error};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// The SQLSTATE of each class of core error.
fn sqlstate(e: &Error) -> PgSqlErrorCode {
    class_sqlstate(e.class())
}

fn class_sqlstate(class: Class) -> PgSqlErrorCode {
    match class {
        Class::Malformed | Class::BadKey => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        Class::Rejected => PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
    }
}

/// The DETAIL line: the core's, except where the limit is a setting.
fn detail(e: &Error) -> Option<String> {
    Some(match e {
        Error::TooLarge { size, limit } => {
            format!("The token is {size} bytes; jwt_rls.max_token_bytes is {limit}.")
        }
        Error::LifetimeTooLong { lifetime, max } => {
            format!("exp - iat is {lifetime} s; jwt_rls.max_lifetime is {max} s.")
        }
        Error::Issuer => "The iss claim is not in jwt_rls.issuer.".into(),
        Error::Audience => "The aud claim names no audience in jwt_rls.audience.".into(),
        Error::UnexpectedAudience => {
            "The token has an aud claim and jwt_rls.audience is empty.".into()
        }
        Error::NotAccessToken(_) => format!(
            "{} jwt_rls.require_at_jwt is on.",
            e.detail().unwrap_or_default()
        ),
        _ => return e.detail(),
    })
}

/// The HINT line: what the user or an administrator can do about it.
fn hint(e: &Error) -> Option<&'static str> {
    use Error::*;
    Some(match e {
        Expired { .. } | KeyDisabled(_) | KeyNotInWindow(_) | Revoked | RevokedSubject | RevokedSubjectNoIat => {
            "Obtain a new token from the issuer."
        }
        NoKeys | UnknownKid(_) => {
            "An administrator adds the issuer's keys with jwt_rls.import_jwks() or jwt_rls.add_pem_key()."
        }
        TooLarge { .. } => "An administrator can raise jwt_rls.max_token_bytes.",
        EncryptedNotAccepted | UnknownDecryptionKid(_) => {
            "An administrator adds a decryption key with jwt_rls.add_decryption_key() or jwt_rls.add_decryption_secret() to accept encrypted (nested) tokens."
        }
        DecryptionKeyDisabled(_) | DecryptionKeyNotInWindow(_) => "Obtain a new token from the issuer.",
        NotNested(_) => "Encrypt a signed JWT (cty \"JWT\"), not bare claims: jwt_rls accepts claims only from a signed token.",
        Issuer | Audience => "Check jwt_rls.issuer and jwt_rls.audience against the token's issuer.",
        UnexpectedAudience => {
            "An administrator sets jwt_rls.audience to the audience this database serves, or jwt_rls.accept_any_audience = on to accept tokens for any audience."
        }
        BadCharacter => "Pass the bare token, without a \"Bearer \" prefix or whitespace.",
        NotAccessToken(_) => {
            "Present an OAuth access token (typ at+jwt), not an ID token; an administrator can turn jwt_rls.require_at_jwt off."
        }
        ProofRequired => {
            "Bind it with jwt_rls.authenticate(token, dpop_proof, http_method, http_url) and the request's DPoP proof."
        }
        NotSenderConstrained => {
            "Bind a token without cnf.jkt with jwt_rls.authenticate(token); a DPoP proof goes only with a token bound to its key."
        }
        _ => return None,
    })
}

/// Raises a core error as an ERROR, reported (in the LOCATION that
/// `VERBOSITY verbose` and the server log show) as coming from the caller's
/// function and line.
macro_rules! raise {
    ($e:expr) => {
        $crate::pg::errors::raise_in($e, pgrx::function_name!())
    };
}
pub(crate) use raise;

/// Raises `e` as an ERROR from `function` (use `raise!`).
#[track_caller]
pub fn raise_in(e: &Error, function: &'static str) -> ! {
    let mut report = ErrorReport::new(sqlstate(e), e.message(), function);
    if let Some(d) = detail(e) {
        report = report.set_detail(d);
    }
    if let Some(h) = hint(e) {
        report = report.set_hint(h);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises a refused DPoP proof as an ERROR: 22023 when it is malformed,
/// 28000 when it fails a check; the message never quotes the proof.
#[track_caller]
pub fn raise_dpop(e: &DpopError) -> ! {
    let mut report = ErrorReport::new(class_sqlstate(e.class()), e.message(), "jwt_rls");
    if let Some(d) = e.detail() {
        report = report.set_detail(d);
    }
    if let Some(h) = e.hint() {
        report = report.set_hint(h);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises the refusal of a proof that found no room in the replay table:
/// recording it would mean forgetting another proof early.
#[track_caller]
pub fn dpop_replay_full(slots: usize) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        "the DPoP replay table is full",
        "jwt_rls",
    )
    .set_detail(format!(
        "The proof was not accepted: every slot it may use holds a proof still inside its window ({slots} slots in all)."
    ))
    .set_hint("Retry with a new proof; an administrator can raise jwt_rls.dpop_replay_entries (takes effect at restart).")
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises the refusal of a proof whose key already holds its share of the
/// replay table (`jwt_rls.dpop_proofs_per_key`): one key flooding the
/// table is refused, not every other key.
#[track_caller]
pub fn dpop_over_share(counted: u32, window: i64) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        "too many DPoP proofs from one key",
        "jwt_rls",
    )
    .set_detail(format!(
        "The proof was not accepted: its key has {counted} proofs inside their window, the most one key may hold (jwt_rls.dpop_proofs_per_key); older ones leave it within {window} s."
    ))
    .set_hint("Slow the client down and retry with a new proof; an administrator can raise jwt_rls.dpop_proofs_per_key (takes effect at reload).")
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises the error of a token bound for the session where
/// `jwt_rls.allow_session_binding` is off (at the commit of the transaction
/// that bound it, which the error rolls back).
#[track_caller]
pub fn session_binding_refused() -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        "binding a token for the whole session is off in this database",
        "jwt_rls",
    )
    .set_detail("jwt_rls.allow_session_binding is off: SET jwt_rls.token and set_config('jwt_rls.token', ..., false) would leave the token on the server connection after this client, where a transaction pooler hands it to the next one. The transaction is rolled back.")
    .set_hint("Bind the token per transaction: SET LOCAL jwt_rls.token, set_config('jwt_rls.token', $1, true) or jwt_rls.authenticate($1), inside BEGIN ... COMMIT.")
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises the error of a DPoP proof presented where no replay table exists.
#[track_caller]
pub fn dpop_unavailable() -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "DPoP proofs need jwt_rls in shared_preload_libraries",
        "jwt_rls",
    )
    .set_detail("A proof is accepted once; the table of proofs already seen lives in shared memory, which jwt_rls has only when preloaded and jwt_rls.dpop_replay_entries is above 0.")
    .set_hint("An administrator adds jwt_rls to shared_preload_libraries and restarts the server.")
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises a feature of jwt_rls that Citus clusters do not have yet.
#[track_caller]
pub fn not_supported_on_citus(message: &str, detail: &str) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        message.to_string(),
        "jwt_rls",
    )
    .set_detail(detail)
    .set_hint("See docs/guides/citus.md for what works on Citus.")
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises: Citus shares jwt_rls's table `table`, but this node holds no
/// copy of it (fail closed: its keys and revocations cannot be read here).
pub fn no_local_copy(table: &str) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("this node holds no copy of jwt_rls.{table}"),
        "jwt_rls",
    )
    .set_detail(
        "Citus shares jwt_rls's tables with every node (share_with_citus()), and this node has no placement of \
         this one yet, so its keys and revocations cannot be read here.",
    )
    .set_hint("On the coordinator, run SELECT replicate_reference_tables(); (see docs/guides/citus.md).")
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises a NULL argument of a function that refuses one.
#[track_caller]
pub fn null_argument(name: &str) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        format!("{name} must not be null")
    );
}

/// A key row as built, or None after a WARNING naming it: one unusable row
/// (say, material an older version accepted) must not stop the other keys
/// of `table` from loading.
pub fn usable_key<T>(table: &str, kid: &str, built: Result<T, Error>) -> Option<T> {
    built
        .map_err(|e| {
            ereport!(
                WARNING,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("an unusable key in {table} is ignored"),
                format!("Key {}: {}.", jwt_rls_core::error::shown(kid), e.message())
            )
        })
        .ok()
}

/// Emits a WARNING with a DETAIL and a HINT (ereport! has no HINT).
#[track_caller]
pub fn warning(code: PgSqlErrorCode, message: &str, detail: &str, hint: &str) {
    ErrorReport::new(code, message.to_string(), "jwt_rls")
        .set_detail(detail)
        .set_hint(hint)
        .report(PgLogLevel::WARNING);
}

/// Raises the error of a session whose jwt_rls settings were written by a
/// role without the right to (settings::refuse_if_tampered).
pub fn settings_tampered(name: &str) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        "jwt_rls settings of this session were set by a role that may not set them",
        "jwt_rls",
    )
    .set_detail(format!(
        "{name} was given in the connection options, or with SET before jwt_rls was loaded, by a role without the right to set it; the value the administrator configured could not be restored."
    ))
    .set_hint("Reconnect without setting jwt_rls.* options, or load jwt_rls with shared_preload_libraries.")
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises a privilege error (SQLSTATE 42501).
#[track_caller]
pub fn forbidden(message: &str) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        message
    );
}

/// Raises an internal error (SQLSTATE XX000) for a case that cannot
/// happen, so that it is reported as a bug in jwt_rls and never mistaken
/// for a problem with the user's input.
#[track_caller]
pub fn internal(what: &str) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        "jwt_rls internal error",
        format!("{what}; please report this as a bug.")
    );
}

/// A palloc'd copy of `s` for the GUC check-hook error fields.
fn guc_string(s: &str) -> *mut c_char {
    let c = CString::new(s.replace('\0', "")).unwrap_or_default();
    // SAFETY: pstrdup copies a NUL-terminated string into the current
    // memory context, which is what the GUC_check_err*_string fields hold.
    unsafe { pg_sys::pstrdup(c.as_ptr()) }
}

/// Fills the GUC check-hook error fields, so that a refused SET reports
/// our message, DETAIL, HINT and SQLSTATE instead of quoting the value
/// (the token).
pub fn guc_check_failed(e: &Error) {
    // SAFETY: called only from a GUC check hook, which is when Postgres
    // reads these backend-global fields; the strings are palloc'd.
    unsafe {
        pg_sys::GUC_check_errcode(sqlstate(e) as i32);
        pg_sys::GUC_check_errmsg_string = guc_string(&e.message());
        if let Some(d) = detail(e) {
            pg_sys::GUC_check_errdetail_string = guc_string(&d);
        }
        if let Some(h) = hint(e) {
            pg_sys::GUC_check_errhint_string = guc_string(h);
        }
    }
}
