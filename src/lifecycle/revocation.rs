//! Revocation of access tokens: one token by its `jti`, or every token of a
//! subject issued before a moment ("log out everywhere").
//!
//! The lists are two tables that application roles cannot read. A verified
//! token is checked against them at bind and at every read, like a disabled
//! key: a change committed anywhere bumps the lists' generation in every
//! backend (and on hot standbys once replayed, `catalog.rs`), and a token
//! is looked up again when the generation it was last checked under is not
//! the current one. Between changes a cached token costs one comparison;
//! with both lists empty (the default) no lookup runs at all.
//!
//! What a list entry refuses is `jwt_rls_core::revocation`'s decision (the
//! OAuth login takes the same one over a copy of the lists).

use std::cell::Cell;
use std::sync::atomic::Ordering;

use jwt_rls_core::revocation;
use jwt_rls_core::{Error, Verified};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

use crate::pg::catalog::{self, REVOKED_SUBJECTS, REVOKED_TOKENS, SESSIONS};
use crate::pg::{clock, errors};
use crate::verification;

/// The generation of the lists together (revoked jtis, subjects and
/// sessions): each only grows, so their sum changes whenever one does.
pub fn generation() -> u64 {
    REVOKED_TOKENS.generation() + REVOKED_SUBJECTS.generation() + SESSIONS.generation()
}

/// Which lists hold anything, as of a generation.
#[derive(Clone, Copy)]
struct Occupancy {
    generation: u64,
    tokens: bool,
    subjects: bool,
    sessions: bool,
}

thread_local! {
    static OCCUPANCY: Cell<Option<Occupancy>> = const { Cell::new(None) };
}

fn occupancy(generation: u64) -> Occupancy {
    if let Some(o) = OCCUPANCY.get().filter(|o| o.generation == generation) {
        return o;
    }
    // The tables have the extension's owner; reading as one owner reads all.
    let lists = (
        REVOKED_TOKENS.relation(),
        REVOKED_SUBJECTS.relation(),
        SESSIONS.relation(),
    );
    let (Some(tokens), Some(subjects), Some(sessions)) = lists else {
        return Occupancy {
            generation,
            tokens: false,
            subjects: false,
            sessions: false,
        };
    };
    let query = format!(
        "SELECT EXISTS (SELECT FROM {}), EXISTS (SELECT FROM {}), \
                EXISTS (SELECT FROM {} WHERE revoked_at IS NOT NULL)",
        tokens.name(),
        subjects.name(),
        sessions.name()
    );
    let flags = catalog::as_owner_of(tokens.oid, || {
        Spi::connect(|client| {
            let row = client.select(&query, Some(1), &[])?.first();
            // Unknown (NULL) reads as "may hold entries": look the token up.
            Ok::<_, pgrx::spi::Error>([
                row.get::<bool>(1)?.unwrap_or(true),
                row.get::<bool>(2)?.unwrap_or(true),
                row.get::<bool>(3)?.unwrap_or(true),
            ])
        })
        .unwrap_or_else(|e| error!("jwt_rls could not read its revocation lists: {e}"))
    });
    let o = Occupancy {
        generation,
        tokens: flags[0],
        subjects: flags[1],
        sessions: flags[2],
    };
    if catalog::fresh() {
        OCCUPANCY.set(Some(o));
    }
    o
}

/// Microseconds since the Unix epoch of the subject's cutoff, if any.
fn subject_cutoff(sub: &str) -> Option<i64> {
    let table = REVOKED_SUBJECTS.relation()?;
    let query = format!(
        "SELECT (SELECT ((extract(epoch FROM issued_before) OPERATOR(pg_catalog.*) 1000000)::bigint) \
         FROM {} WHERE sub OPERATOR(pg_catalog.=) $1), NULL::pg_catalog.bool",
        table.name()
    );
    catalog::as_owner_of(table.oid, || {
        catalog::read_row::<i64, bool>(&query, &[sub.into()])
    })
    .0
}

/// Whether the session (refresh-token family) `sid` is revoked.
fn session_revoked(sid: &str) -> bool {
    let Some(table) = revocation::is_session_id(sid)
        .then(|| SESSIONS.relation())
        .flatten()
    else {
        return false;
    };
    let query = format!(
        "SELECT EXISTS (SELECT FROM {} WHERE revoked_at IS NOT NULL \
         AND id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid), NULL::pg_catalog.bool",
        table.name()
    );
    catalog::as_owner_of(table.oid, || {
        catalog::read_row::<bool, bool>(&query, &[sid.into()])
    })
    .0
    .unwrap_or(true)
}

fn jti_revoked(jti: &str) -> bool {
    let Some(table) = REVOKED_TOKENS.relation() else {
        return false;
    };
    let query = format!(
        "SELECT EXISTS (SELECT FROM {} WHERE jti OPERATOR(pg_catalog.=) $1), NULL::pg_catalog.bool",
        table.name()
    );
    catalog::as_owner_of(table.oid, || {
        catalog::read_row::<bool, bool>(&query, &[jti.into()])
    })
    .0
    .unwrap_or(true)
}

/// The lists as this database's tables hold them, looked up one token at
/// a time.
impl revocation::Lists for Occupancy {
    fn has_tokens(&self) -> bool {
        self.tokens
    }
    fn has_sessions(&self) -> bool {
        self.sessions
    }
    fn has_subjects(&self) -> bool {
        self.subjects
    }
    fn jti_revoked(&self, jti: &str) -> bool {
        jti_revoked(jti)
    }
    fn session_revoked(&self, sid: &str) -> bool {
        session_revoked(sid)
    }
    fn subject_cutoff(&self, sub: &str) -> Option<i64> {
        subject_cutoff(sub)
    }
}

/// Refuses a verified token that a committed revocation names. The answer
/// is remembered with the token (its stamp) until the lists change.
pub fn check(verified: &Verified) -> Result<(), Error> {
    let generation = generation();
    if verified.stamp.load(Ordering::Relaxed) == generation + 1 {
        return Ok(());
    }
    revocation::check(verified, &occupancy(generation))?;
    // Stamps are generation + 1, so that 0 means "never checked". An answer
    // read under an older snapshot (parallel mode) is not kept.
    if catalog::fresh() {
        verified.stamp.store(generation + 1, Ordering::Relaxed);
    }
    Ok(())
}

/// Every entry of the three lists, read as their owner: what the OAuth
/// login's snapshot copies (`crate::oauth`). Revoked jtis are kept only
/// until their tokens expire, so that list stays short; revoked sessions
/// and subjects stay until an administrator deletes them.
pub struct Entries {
    pub jtis: Vec<String>,
    /// Lower-case uuids.
    pub sessions: Vec<String>,
    /// Subject and cutoff, in microseconds since the Unix epoch.
    pub subjects: Vec<(String, i64)>,
}

pub fn entries() -> Entries {
    let mut entries = Entries {
        jtis: Vec::new(),
        sessions: Vec::new(),
        subjects: Vec::new(),
    };
    let lists = (
        REVOKED_TOKENS.relation(),
        REVOKED_SUBJECTS.relation(),
        SESSIONS.relation(),
    );
    let (Some(tokens), Some(subjects), Some(sessions)) = lists else {
        return entries;
    };
    let queries = [
        format!(
            "SELECT jti, NULL::pg_catalog.int8 FROM {} \
             WHERE expires_at OPERATOR(pg_catalog.>) pg_catalog.now()",
            tokens.name()
        ),
        format!(
            "SELECT id::pg_catalog.text, NULL::pg_catalog.int8 FROM {} WHERE revoked_at IS NOT NULL",
            sessions.name()
        ),
        format!(
            "SELECT sub, ((extract(epoch FROM issued_before) OPERATOR(pg_catalog.*) 1000000)::bigint) FROM {}",
            subjects.name()
        ),
    ];
    catalog::as_owner_of(tokens.oid, || {
        Spi::connect(|client| {
            for (i, query) in queries.iter().enumerate() {
                for row in client.select(query, None, &[])? {
                    let name = row.get::<String>(1)?.unwrap_or_default();
                    match i {
                        0 => entries.jtis.push(name),
                        1 => entries.sessions.push(name),
                        _ => entries
                            .subjects
                            .push((name, row.get::<i64>(2)?.unwrap_or(i64::MAX))),
                    }
                }
            }
            Ok::<_, pgrx::spi::Error>(())
        })
        .unwrap_or_else(|e| error!("jwt_rls could not read its revocation lists: {e}"))
    });
    entries
}

extension_sql!(
    r#"
CREATE TABLE jwt_rls.revoked_tokens (
    jti        text PRIMARY KEY CHECK (octet_length(jti) BETWEEN 1 AND 1024),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    reason     text
);
CREATE INDEX revoked_tokens_expires_at ON jwt_rls.revoked_tokens (expires_at);
COMMENT ON TABLE jwt_rls.revoked_tokens IS
    'Access tokens revoked by jti, kept until they expire; readable by no application role';
REVOKE ALL ON jwt_rls.revoked_tokens FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('jwt_rls.revoked_tokens', '');
CREATE TRIGGER revoked_tokens_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON jwt_rls.revoked_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION jwt_rls.table_changed();

CREATE TABLE jwt_rls.revoked_subjects (
    sub           text PRIMARY KEY CHECK (octet_length(sub) BETWEEN 1 AND 1024),
    issued_before timestamptz NOT NULL,
    revoked_at    timestamptz NOT NULL DEFAULT now(),
    reason        text
);
COMMENT ON TABLE jwt_rls.revoked_subjects IS
    'Per subject: tokens issued before issued_before are revoked; readable by no application role';
REVOKE ALL ON jwt_rls.revoked_subjects FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('jwt_rls.revoked_subjects', '');
CREATE TRIGGER revoked_subjects_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON jwt_rls.revoked_subjects
    FOR EACH STATEMENT EXECUTE FUNCTION jwt_rls.table_changed();

-- Admin functions run as the extension owner, so that a login service
-- granted EXECUTE can revoke without being able to read or undo the lists.
CREATE FUNCTION jwt_rls.revoke_jti(jti text, expires_at timestamptz, reason text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jti IS NULL OR expires_at IS NULL THEN
        RAISE EXCEPTION 'jti and expires_at are required' USING ERRCODE = '22004';
    END IF;
    -- Entries are pruned here, once no token they name can still be
    -- accepted (exp plus the largest leeway, 300 s).
    DELETE FROM jwt_rls.revoked_tokens r WHERE r.expires_at < now() - interval '300 seconds';
    IF expires_at < now() - interval '300 seconds' THEN
        RETURN false;
    END IF;
    INSERT INTO jwt_rls.revoked_tokens AS r (jti, expires_at, reason)
        VALUES (revoke_jti.jti, revoke_jti.expires_at, revoke_jti.reason)
        ON CONFLICT ON CONSTRAINT revoked_tokens_pkey DO UPDATE
        SET expires_at = greatest(r.expires_at, excluded.expires_at),
            reason = coalesce(excluded.reason, r.reason);
    RETURN true;
END
$$;
COMMENT ON FUNCTION jwt_rls.revoke_jti(text, timestamptz, text) IS
    'Revokes the token with this jti until expires_at (its exp); false when it has already expired';

CREATE FUNCTION jwt_rls.revoke_subject(sub text, issued_before timestamptz DEFAULT now(), reason text DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF sub IS NULL OR issued_before IS NULL THEN
        RAISE EXCEPTION 'sub and issued_before are required' USING ERRCODE = '22004';
    END IF;
    INSERT INTO jwt_rls.revoked_subjects AS r (sub, issued_before, reason)
        VALUES (revoke_subject.sub, revoke_subject.issued_before, revoke_subject.reason)
        ON CONFLICT ON CONSTRAINT revoked_subjects_pkey DO UPDATE
        SET issued_before = greatest(r.issued_before, excluded.issued_before),
            -- The new row's default (now()): Citus refuses a function call here.
            revoked_at = excluded.revoked_at,
            reason = coalesce(excluded.reason, r.reason);
END
$$;
COMMENT ON FUNCTION jwt_rls.revoke_subject(text, timestamptz, text) IS
    'Revokes every token of this subject issued before issued_before (default: now)';
"#,
    name = "revocation",
    requires = [catalog::table_changed]
);

/// Revokes a token presented whole (a leaked token in an admin's hands):
/// verifies it with the key store, then revokes its jti until its exp.
/// Returns false when it has already expired.
#[pg_extern(volatile, parallel_unsafe)]
fn revoke_token(token: &str, reason: default!(Option<&str>, "NULL")) -> bool {
    let verified = match verification::verify_now(token) {
        Ok(v) => v,
        Err(Error::Expired { .. }) => return false,
        Err(e) => errors::raise!(&e),
    };
    let Some(jti) = verified.claim("jti") else {
        errors::raise!(&Error::NoJti);
    };
    let exp = TimestampWithTimeZone::try_from(clock::timestamp(verified.times.exp))
        .unwrap_or_else(|_| errors::internal("a verified exp is out of the timestamp range"));
    Spi::get_one_with_args::<bool>(
        "SELECT jwt_rls.revoke_jti($1, $2, $3)",
        &[jti.as_str().into(), exp.into(), reason.into()],
    )
    .unwrap_or_else(|e| error!("jwt_rls could not revoke the token: {e}"))
    .unwrap_or(false)
}
