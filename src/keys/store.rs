//! The key table, `jwt_rls.keys`: its DDL, loading it for verification,
//! noticing changes, and the admin functions that write it.
//!
//! Keys are read with the table owner's rights, and a change to the table
//! reaches every backend at commit (`catalog.rs`); the next read reloads
//! them.

use jwt_rls_core::keys::{check_kid, encode_secret, parse_jwks, Format};
use jwt_rls_core::login::KeyRow;
use jwt_rls_core::{Key, KeySet};
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::pg::catalog::{self, Relation, JWKS_SOURCES, KEYS};
use crate::pg::clock::unix_seconds;
use crate::pg::errors;
use crate::settings;

pub(crate) fn seconds(ts: Option<TimestampWithTimeZone>) -> Option<i64> {
    ts.filter(|t| t.is_finite())
        .map(|t| unix_seconds(pg_sys::TimestampTz::from(t)))
}

fn read_rows(keys: &Relation) -> Vec<KeyRow> {
    // The source's issuer binds a fetched key to it (a JWKS URL source has
    // none). Plain equality: search_path is pinned to pg_catalog for
    // owner-rights reads (catalog.rs). Before ALTER EXTENSION UPDATE to
    // 0.2.0 there are no sources.
    let query = match JWKS_SOURCES.relation() {
        Some(sources) => format!(
            "SELECT k.kid, k.alg, k.format, k.material, k.enabled, k.not_before, k.not_after, s.issuer \
             FROM {} k LEFT JOIN {} s ON s.id = k.source_id",
            keys.name(),
            sources.name()
        ),
        None => format!(
            "SELECT kid, alg, format, material, enabled, not_before, not_after, NULL::pg_catalog.text FROM {}",
            keys.name()
        ),
    };
    Spi::connect(|client| {
        let table = client.select(&query, None, &[])?;
        let mut rows = Vec::new();
        for row in table {
            rows.push(KeyRow {
                kid: row.get::<String>(1)?.unwrap_or_default(),
                alg: row.get::<String>(2)?.unwrap_or_default(),
                format: row.get::<String>(3)?.unwrap_or_default(),
                material: row.get::<String>(4)?.unwrap_or_default(),
                enabled: row.get::<bool>(5)?.unwrap_or(false),
                not_before: seconds(row.get::<TimestampWithTimeZone>(6)?),
                not_after: seconds(row.get::<TimestampWithTimeZone>(7)?),
                issuer: row.get::<String>(8)?,
            });
        }
        Ok::<_, pgrx::spi::Error>(rows)
    })
    .unwrap_or_else(|e| error!("jwt_rls could not read its key table: {e}"))
}

/// Every row of the key table as stored, read as the table owner (the
/// OAuth login's snapshot copies them).
pub fn rows() -> Vec<KeyRow> {
    let Some(keys) = KEYS.relation() else {
        return Vec::new();
    };
    catalog::as_owner_of(keys.oid, || read_rows(&keys))
}

/// Reads every key, as the table owner. Rows that fail the import checks
/// (written around the key functions) are skipped with a WARNING.
pub fn load() -> KeySet {
    let keys = rows()
        .into_iter()
        .filter_map(|row| errors::usable_key("jwt_rls.keys", &row.kid, row.key()));
    KeySet::new(keys.collect())
}

extension_sql!(
    r#"
CREATE TABLE jwt_rls.keys (
    kid        text PRIMARY KEY CHECK (octet_length(kid) BETWEEN 1 AND 256),
    alg        text NOT NULL CHECK (alg IN ('HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512',
                                            'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'EdDSA')),
    format     text NOT NULL CHECK (format IN ('secret', 'pem', 'jwk')),
    material   text NOT NULL,
    enabled    boolean NOT NULL DEFAULT true,
    not_before timestamptz,
    not_after  timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (not_before IS NULL OR not_after IS NULL OR not_before < not_after)
);
COMMENT ON TABLE jwt_rls.keys IS 'Verification keys; secrets, readable by no application role';
REVOKE ALL ON jwt_rls.keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('jwt_rls.keys', '');

CREATE VIEW jwt_rls.key_list AS
    SELECT kid, alg, format, enabled, not_before, not_after, created_at FROM jwt_rls.keys;
COMMENT ON VIEW jwt_rls.key_list IS 'The key table without key material';
REVOKE ALL ON jwt_rls.key_list FROM PUBLIC;

CREATE TRIGGER keys_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON jwt_rls.keys
    FOR EACH STATEMENT EXECUTE FUNCTION jwt_rls.keys_changed();
"#,
    name = "key_table",
    requires = [keys_changed]
);

/// Statement trigger on jwt_rls.keys: queue the invalidation that tells
/// every backend to reload keys once this transaction commits.
#[pg_trigger]
fn keys_changed<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    // SAFETY: the trigger's relation OID names an existing relation; this
    // only queues an invalidation message sent at commit.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(trigger.relid()?) };
    Ok(None)
}

pub(crate) fn check_or_raise<T>(r: jwt_rls_core::Result<T>) -> T {
    r.unwrap_or_else(|e| errors::raise!(&e))
}

pub(crate) fn insert_key(
    kid: &str,
    alg: &str,
    format: Format,
    material: &str,
    not_before: Option<TimestampWithTimeZone>,
    not_after: Option<TimestampWithTimeZone>,
) {
    check_or_raise(Key::new(kid, alg, format, material));
    let args: [DatumWithOid; 6] = [
        kid.into(),
        alg.into(),
        format.name().into(),
        material.into(),
        not_before.into(),
        not_after.into(),
    ];
    modify(
        "INSERT INTO jwt_rls.keys (kid, alg, format, material, not_before, not_after) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &args,
    );
}

/// Adds an HMAC key (HS256/384/512). The secret must be at least as long
/// as the hash output (32, 48 or 64 bytes).
#[pg_extern(volatile, parallel_unsafe)]
fn add_hmac_key(
    kid: &str,
    alg: &str,
    secret: &[u8],
    not_before: default!(Option<TimestampWithTimeZone>, "NULL"),
    not_after: default!(Option<TimestampWithTimeZone>, "NULL"),
) {
    insert_key(
        kid,
        alg,
        Format::Secret,
        &encode_secret(secret),
        not_before,
        not_after,
    );
    warn_if_any_issuer();
}

/// Adds a public key in PEM (SubjectPublicKeyInfo, or PKCS#1 for RSA) for
/// RS*, PS*, ES256, ES384 or EdDSA.
#[pg_extern(volatile, parallel_unsafe)]
fn add_pem_key(
    kid: &str,
    alg: &str,
    pem: &str,
    not_before: default!(Option<TimestampWithTimeZone>, "NULL"),
    not_after: default!(Option<TimestampWithTimeZone>, "NULL"),
) {
    insert_key(kid, alg, Format::Pem, pem, not_before, not_after);
    warn_if_any_issuer();
}

/// Imports the signature keys of a JWKS document. New kids are added; a kid
/// already stored with the same key is left alone; a kid already stored
/// with a different key is an error (remove the old key first). Keys that
/// cannot be used are skipped with a WARNING each, encryption keys
/// silently; a document none of whose keys can be used is an error.
/// Returns the number of keys added.
#[pg_extern(volatile, parallel_unsafe)]
fn import_jwks(jwks: JsonB) -> i32 {
    let jwks = check_or_raise(parse_jwks(&jwks.0.to_string()));
    for skipped in &jwks.skipped {
        ereport!(
            WARNING,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "a key of the JWKS cannot be used and is skipped",
            format!("{}.", capitalized(&skipped.to_string()))
        );
    }
    let mut added = 0;
    for e in jwks.keys {
        let existing: Option<String> = Spi::get_one_with_args(
            "SELECT (SELECT alg OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) material FROM jwt_rls.keys WHERE kid OPERATOR(pg_catalog.=) $1)",
            &[e.kid.as_str().into()],
        )
        .unwrap_or_else(|e| error!("jwt_rls could not read its key table: {e}"));
        match existing {
            Some(stored) if stored == format!("{} {}", e.alg, e.material) => {}
            Some(_) => errors::raise!(&jwt_rls_core::Error::Key(jwt_rls_core::KeyError::KidTaken(
                e.kid.clone()
            ))),
            None => {
                insert_key(&e.kid, &e.alg, Format::Jwk, &e.material, None, None);
                added += 1;
            }
        }
    }
    warn_if_any_issuer();
    added
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// With jwt_rls.issuer empty, a key verifies tokens whatever their `iss`:
/// any token the key's owner ever signed, for any purpose. That is a
/// choice, and it is said out loud whenever a key is added.
fn warn_if_any_issuer() {
    if settings::policy().issuers.is_empty() {
        errors::warning(
            PgSqlErrorCode::ERRCODE_WARNING,
            "jwt_rls.issuer is empty: tokens from any issuer are accepted",
            "Every token these keys verify is accepted, whatever its iss claim.",
            "Set jwt_rls.issuer to the issuer this database trusts, e.g. ALTER DATABASE app SET jwt_rls.issuer = 'https://issuer.example/'.",
        );
    }
}

/// Runs a data-modifying statement to completion and returns how many rows
/// it touched. (A row limit, as `Spi::get_one` sets, would stop the
/// statement early and skip its AFTER STATEMENT trigger, which is what
/// tells other backends that keys changed.)
pub(crate) fn modify(query: &str, args: &[DatumWithOid]) -> usize {
    Spi::connect_mut(|client| client.update(query, None, args).map(|t| t.len()))
        .unwrap_or_else(|e| error!("jwt_rls could not change its tables: {e}"))
}

fn set_enabled(kid: &str, enabled: bool) -> bool {
    check_or_raise(check_kid(kid));
    modify(
        "UPDATE jwt_rls.keys SET enabled = $2 WHERE kid OPERATOR(pg_catalog.=) $1",
        &[kid.into(), enabled.into()],
    ) > 0
}

/// Stops a key from verifying tokens, from the first transaction after
/// this one commits, in every backend. Returns false if no key has `kid`.
#[pg_extern(volatile, parallel_unsafe)]
fn disable_key(kid: &str) -> bool {
    set_enabled(kid, false)
}

/// Lets a disabled key verify tokens again.
#[pg_extern(volatile, parallel_unsafe)]
fn enable_key(kid: &str) -> bool {
    set_enabled(kid, true)
}

/// Deletes a key. Returns false if no key has `kid`.
#[pg_extern(volatile, parallel_unsafe)]
fn remove_key(kid: &str) -> bool {
    check_or_raise(check_kid(kid));
    modify(
        "DELETE FROM jwt_rls.keys WHERE kid OPERATOR(pg_catalog.=) $1",
        &[kid.into()],
    ) > 0
}
