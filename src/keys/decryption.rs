//! Encrypted tokens (JWE, RFC 7516): the decryption key table
//! `jwt_rls.decryption_keys`, loading it for verification, the admin
//! functions that write it, and `encrypt()` for tokens jwt_rls issues.
//!
//! A token with five segments is a JWE. Without a decryption key it is
//! refused, as it always was; with one, it is decrypted and its content
//! must be a signed JWT that verifies against `jwt_rls.keys` exactly as a
//! bare one would (a nested JWT, RFC 7519 section 5.2). Decryption keys are
//! private keys: nobody but the superuser can read them, like signing keys.

use jwt_rls_core::keys::{encode_secret, Format};
use jwt_rls_core::{DecryptionKey, DecryptionKeySet};
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};

use super::store::{check_or_raise, modify, seconds};
use crate::pg::catalog::{self, Relation, DECRYPTION_KEYS};
use crate::pg::errors;

struct Row {
    kid: String,
    alg: String,
    enc: Option<String>,
    format: String,
    material: String,
    enabled: bool,
    not_before: Option<i64>,
    not_after: Option<i64>,
}

fn read_rows(keys: &Relation) -> Vec<Row> {
    let query = format!(
        "SELECT kid, alg, enc, format, material, enabled, not_before, not_after FROM {}",
        keys.name()
    );
    Spi::connect(|client| {
        let table = client.select(&query, None, &[])?;
        let mut rows = Vec::new();
        for row in table {
            rows.push(Row {
                kid: row.get::<String>(1)?.unwrap_or_default(),
                alg: row.get::<String>(2)?.unwrap_or_default(),
                enc: row.get::<String>(3)?,
                format: row.get::<String>(4)?.unwrap_or_default(),
                material: row.get::<String>(5)?.unwrap_or_default(),
                enabled: row.get::<bool>(6)?.unwrap_or(false),
                not_before: seconds(row.get::<TimestampWithTimeZone>(7)?),
                not_after: seconds(row.get::<TimestampWithTimeZone>(8)?),
            });
        }
        Ok::<_, pgrx::spi::Error>(rows)
    })
    .unwrap_or_else(|e| error!("jwt_rls could not read its decryption key table: {e}"))
}

/// Reads every decryption key, as the table owner. Rows that fail the
/// import checks (written around the functions) are skipped with a WARNING.
pub fn load() -> DecryptionKeySet {
    let Some(keys) = DECRYPTION_KEYS.relation() else {
        return DecryptionKeySet::default();
    };
    let rows = catalog::as_owner_of(keys.oid, || read_rows(&keys));
    let keys = rows.into_iter().filter_map(|row| {
        let built = Format::from_name(&row.format)
            .and_then(|f| {
                DecryptionKey::new(&row.kid, &row.alg, row.enc.as_deref(), f, &row.material)
            })
            .map(|mut key| {
                key.enabled = row.enabled;
                key.not_before = row.not_before;
                key.not_after = row.not_after;
                key
            });
        errors::usable_key("jwt_rls.decryption_keys", &row.kid, built)
    });
    DecryptionKeySet::new(keys.collect())
}

extension_sql!(
    r#"
CREATE TABLE jwt_rls.decryption_keys (
    kid        text PRIMARY KEY CHECK (octet_length(kid) BETWEEN 1 AND 256),
    alg        text NOT NULL CHECK (alg IN ('RSA-OAEP-256', 'ECDH-ES', 'ECDH-ES+A256KW', 'A256KW', 'dir')),
    enc        text CHECK (enc IN ('A256GCM', 'A128CBC-HS256')),
    format     text NOT NULL CHECK (format IN ('secret', 'pem', 'jwk')),
    material   text NOT NULL,
    enabled    boolean NOT NULL DEFAULT true,
    not_before timestamptz,
    not_after  timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((alg = 'dir') = (enc IS NOT NULL)),
    CHECK (not_before IS NULL OR not_after IS NULL OR not_before < not_after)
);
COMMENT ON TABLE jwt_rls.decryption_keys IS 'Private keys that decrypt encrypted tokens (JWE); readable by no application role';
REVOKE ALL ON jwt_rls.decryption_keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('jwt_rls.decryption_keys', '');

CREATE VIEW jwt_rls.decryption_key_list AS
    SELECT kid, alg, enc, format, enabled, not_before, not_after, created_at FROM jwt_rls.decryption_keys;
COMMENT ON VIEW jwt_rls.decryption_key_list IS 'The decryption key table without key material';
REVOKE ALL ON jwt_rls.decryption_key_list FROM PUBLIC;

CREATE TRIGGER decryption_keys_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON jwt_rls.decryption_keys
    FOR EACH STATEMENT EXECUTE FUNCTION jwt_rls.table_changed();

-- plpgsql with FOUND rather than SQL counting a modifying CTE: Citus
-- cannot plan the CTE once the table is shared (share_with_citus()).
CREATE FUNCTION jwt_rls.disable_decryption_key(kid text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE jwt_rls.decryption_keys k SET enabled = false
     WHERE k.kid = disable_decryption_key.kid;
    RETURN FOUND;
END
$$;
CREATE FUNCTION jwt_rls.enable_decryption_key(kid text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE jwt_rls.decryption_keys k SET enabled = true
     WHERE k.kid = enable_decryption_key.kid;
    RETURN FOUND;
END
$$;
CREATE FUNCTION jwt_rls.remove_decryption_key(kid text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM jwt_rls.decryption_keys k
     WHERE k.kid = remove_decryption_key.kid;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION jwt_rls.disable_decryption_key(text) IS 'Stops a decryption key from decrypting, from the next transaction in every backend';
COMMENT ON FUNCTION jwt_rls.enable_decryption_key(text) IS 'Lets a disabled decryption key decrypt again';
COMMENT ON FUNCTION jwt_rls.remove_decryption_key(text) IS 'Deletes a decryption key';
REVOKE EXECUTE ON FUNCTION jwt_rls.disable_decryption_key(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.enable_decryption_key(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.remove_decryption_key(text) FROM PUBLIC;
"#,
    name = "decryption_key_table",
    requires = [catalog::table_changed]
);

fn insert(
    kid: &str,
    alg: &str,
    enc: Option<&str>,
    format: Format,
    material: &str,
    not_before: Option<TimestampWithTimeZone>,
    not_after: Option<TimestampWithTimeZone>,
) {
    // DecryptionKey::new checks the kid first, as the key table does.
    check_or_raise(DecryptionKey::new(kid, alg, enc, format, material));
    let args: [DatumWithOid; 7] = [
        kid.into(),
        alg.into(),
        enc.into(),
        format.name().into(),
        material.into(),
        not_before.into(),
        not_after.into(),
    ];
    modify(
        "INSERT INTO jwt_rls.decryption_keys (kid, alg, enc, format, material, not_before, not_after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &args,
    );
}

/// The members of the public JWK returned to whoever encrypts for us:
/// an allowlist, so nothing else of the private JWK (private members under
/// any name, `x5c`, `key_ops`) ever leaves the database.
const PUBLIC_MEMBERS: [&str; 6] = ["kty", "crv", "x", "y", "n", "e"];

/// Adds a private key that decrypts tokens: RSA-OAEP-256 (RSA, 2048 bits
/// or more), ECDH-ES or ECDH-ES+A256KW (P-256, P-384, P-521), as a private
/// JWK or a private PEM (PKCS#8, PKCS#1 for RSA, SEC1 for EC). Returns the
/// public JWK to give to whoever encrypts tokens for this database (NULL
/// for a PEM: derive it with your tools).
#[pg_extern(volatile, parallel_unsafe)]
fn add_decryption_key(
    kid: &str,
    alg: &str,
    private_key: &str,
    not_before: default!(Option<TimestampWithTimeZone>, "NULL"),
    not_after: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Option<JsonB> {
    let jwk = private_key.trim_start().starts_with('{');
    let format = if jwk { Format::Jwk } else { Format::Pem };
    insert(kid, alg, None, format, private_key, not_before, not_after);
    if !jwk {
        return None;
    }
    // The JWK parsed (DecryptionKey::new checked it); keep its public part.
    let private: Map<String, Value> = serde_json::from_str(private_key).unwrap_or_default();
    let mut public: Map<String, Value> = private
        .into_iter()
        .filter(|(m, _)| PUBLIC_MEMBERS.contains(&m.as_str()))
        .collect();
    public.insert("kid".into(), kid.into());
    public.insert("use".into(), "enc".into());
    public.insert("alg".into(), alg.into());
    Some(JsonB(Value::Object(public)))
}

/// Adds a 32-byte symmetric key: A256KW (any content encryption), or dir
/// with the one content encryption it is used for (A256GCM or
/// A128CBC-HS256).
#[pg_extern(volatile, parallel_unsafe)]
fn add_decryption_secret(
    kid: &str,
    alg: &str,
    secret: &[u8],
    enc: default!(Option<&str>, "NULL"),
    not_before: default!(Option<TimestampWithTimeZone>, "NULL"),
    not_after: default!(Option<TimestampWithTimeZone>, "NULL"),
) {
    insert(
        kid,
        alg,
        enc,
        Format::Secret,
        &encode_secret(secret),
        not_before,
        not_after,
    );
}

/// Encrypts a signed token for a recipient (the natural pair of `sign()`):
/// `encrypt(sign(claims), recipient_jwk, 'RSA-OAEP-256', 'A256GCM')`. The
/// JWK is the recipient's public key (RSA or EC), or a shared 32-byte `oct`
/// key for A256KW or dir; its `kid` goes into the header. Only a signed
/// token (JWS) is encrypted, never bare claims or another JWE.
// Volatile: a fresh content key and IV every call.
#[pg_extern(volatile, parallel_safe)]
fn encrypt(token: &str, recipient_jwk: JsonB, alg: &str, enc: &str) -> String {
    check_or_raise(jwt_rls_core::encrypt(
        token,
        &recipient_jwk.0.to_string(),
        alg,
        enc,
    ))
}
