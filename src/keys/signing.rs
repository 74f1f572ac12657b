//! Issuing tokens: signing keys in the key store and `jwt_rls.sign()`.
//!
//! A signing key is a row of `jwt_rls.signing_keys` (the private half,
//! readable by no application role) tied to the row of `jwt_rls.keys` with
//! the same kid (its public half, or the HMAC secret), which is what
//! verifies the tokens it signs: disabling, windowing or removing that key
//! stops both signing and verification. `sign()` reads the private key as
//! the table owner, so a login service needs only EXECUTE on it.

use jwt_rls_core::sign::{self, SigningKey};
use jwt_rls_core::{Error, KeyError};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};

use super::store::{check_or_raise, insert_key, modify};
use crate::pg::catalog::{self, Relation, KEYS, SIGNING_KEYS};
use crate::pg::{clock, errors};
use crate::settings;

extension_sql!(
    r#"
CREATE TABLE jwt_rls.signing_keys (
    kid         text PRIMARY KEY REFERENCES jwt_rls.keys (kid) ON DELETE CASCADE ON UPDATE CASCADE,
    private_key text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE jwt_rls.signing_keys IS
    'Private halves of the keys jwt_rls.sign() uses; secrets, readable by no application role';
REVOKE ALL ON jwt_rls.signing_keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('jwt_rls.signing_keys', '');
"#,
    name = "signing_keys",
    requires = ["key_table"]
);

/// Stores a signing key: its public half (or secret) in jwt_rls.keys, its
/// private half in jwt_rls.signing_keys. Returns the public JWK (kid and
/// alg only for HMAC, whose secret is never returned).
fn store(
    kid: &str,
    alg: &str,
    private: &str,
    not_before: Option<TimestampWithTimeZone>,
    not_after: Option<TimestampWithTimeZone>,
) -> JsonB {
    let key = check_or_raise(SigningKey::checked(kid, alg, private));
    let (format, public) = check_or_raise(key.verification_key());
    insert_key(kid, alg, format, &public, not_before, not_after);
    modify(
        "INSERT INTO jwt_rls.signing_keys (kid, private_key) VALUES ($1, $2)",
        &[kid.into(), private.into()],
    );
    JsonB(match format {
        jwt_rls_core::Format::Jwk => serde_json::from_str(&public).unwrap_or(Value::Null),
        _ => serde_json::json!({ "kid": kid, "alg": alg }),
    })
}

/// Generates a signing key inside the database; returns its public JWK.
#[pg_extern(volatile, parallel_unsafe)]
fn generate_signing_key(
    kid: &str,
    alg: &str,
    not_before: default!(Option<TimestampWithTimeZone>, "NULL"),
    not_after: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> JsonB {
    let private = check_or_raise(sign::generate(alg));
    store(kid, alg, &private, not_before, not_after)
}

/// Imports a private key (PKCS#8 PEM; PKCS#1 for RSA) as a signing key;
/// returns its public JWK.
#[pg_extern(volatile, parallel_unsafe)]
fn import_signing_key(
    kid: &str,
    alg: &str,
    private_pem: &str,
    not_before: default!(Option<TimestampWithTimeZone>, "NULL"),
    not_after: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> JsonB {
    store(kid, alg, private_pem, not_before, not_after)
}

/// Imports an HMAC secret as a signing key (it verifies too).
#[pg_extern(volatile, parallel_unsafe)]
fn import_signing_secret(
    kid: &str,
    alg: &str,
    secret: &[u8],
    not_before: default!(Option<TimestampWithTimeZone>, "NULL"),
    not_after: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> JsonB {
    store(
        kid,
        alg,
        &jwt_rls_core::keys::encode_secret(secret),
        not_before,
        not_after,
    )
}

/// The signing keys and the key table, where this backend reads them
/// (their Citus placements on a node that shares them, catalog.rs).
fn tables() -> Option<(Relation, Relation)> {
    Some((SIGNING_KEYS.relation()?, KEYS.relation()?))
}

fn signing_key(kid: Option<&str>) -> SigningKey {
    let Some((signing, keys)) = tables() else {
        errors::raise!(&Error::Key(KeyError::NoSigningKey));
    };
    // Enabled signing keys usable now, newest first: (kid, alg, private key).
    let usable = format!(
        "SELECT k.kid, k.alg, s.private_key FROM {} s \
         JOIN {} k ON k.kid OPERATOR(pg_catalog.=) s.kid \
         WHERE k.enabled \
           AND (k.not_before IS NULL OR k.not_before OPERATOR(pg_catalog.<=) pg_catalog.statement_timestamp()) \
           AND (k.not_after IS NULL OR k.not_after OPERATOR(pg_catalog.>) pg_catalog.statement_timestamp()) \
           AND ($1 IS NULL OR k.kid OPERATOR(pg_catalog.=) $1) \
         ORDER BY s.created_at DESC, k.kid LIMIT 1",
        signing.name(),
        keys.name()
    );
    let row = catalog::as_owner_of(signing.oid, || {
        Spi::connect(|client| {
            let rows = client.select(&usable, Some(1), &[kid.into()])?;
            let mut found = None;
            for row in rows {
                found = Some((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<String>(3)?.unwrap_or_default(),
                ));
            }
            Ok::<_, pgrx::spi::Error>(found)
        })
        .unwrap_or_else(|e| error!("jwt_rls could not read its signing keys: {e}"))
    });
    let Some((kid, alg, private)) = row else {
        errors::raise!(&Error::Key(KeyError::NoSigningKey));
    };
    check_or_raise(SigningKey::new(&kid, &alg, &private))
}

/// Signs `claims` with the newest enabled signing key (or the one named by
/// `kid`), filling what the claims leave out: `iat` (now), `exp` (`iat` +
/// `jwt_rls.sign_lifetime`), `jti` (128 random bits) and `iss` (the first
/// of `jwt_rls.issuer`, when set).
#[pg_extern(volatile, parallel_unsafe)]
fn sign(claims: JsonB, kid: default!(Option<&str>, "NULL")) -> String {
    let Value::Object(mut claims) = claims.0 else {
        errors::raise!(&Error::NotObject(jwt_rls_core::error::Part::Payload));
    };
    let now = clock::unix_seconds(pgrx::pg_sys::TimestampTz::from(
        // SAFETY: reads the transaction's start timestamp; cannot raise.
        unsafe { pgrx::pg_sys::GetCurrentTransactionStartTimestamp() },
    ));
    fill(&mut claims, now);
    let key = signing_key(kid);
    let text = serde_json::to_string(&claims)
        .unwrap_or_else(|_| errors::internal("claims do not serialize"));
    check_or_raise(key.sign_as(&text, settings::sign_typ()))
}

fn fill(claims: &mut Map<String, Value>, now: i64) {
    let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(now);
    claims.entry("iat").or_insert(iat.into());
    claims
        .entry("exp")
        .or_insert((iat + settings::sign_lifetime()).into());
    if !claims.contains_key("jti") {
        claims.insert("jti".into(), check_or_raise(sign::new_jti()).into());
    }
    if let Some(iss) = settings::policy().issuers.into_iter().next() {
        claims.entry("iss").or_insert(iss.into());
    }
}

/// The public halves of the enabled asymmetric signing keys as a JWKS
/// document, for services that verify what jwt_rls issues. HMAC secrets
/// are never included.
#[pg_extern(stable, parallel_safe)]
fn jwks() -> JsonB {
    let Some((signing, keys)) = tables() else {
        return JsonB(serde_json::json!({ "keys": [] }));
    };
    let query = format!(
        "SELECT k.material FROM {} k JOIN {} s ON s.kid OPERATOR(pg_catalog.=) k.kid \
         WHERE k.enabled AND k.format OPERATOR(pg_catalog.=) 'jwk' ORDER BY k.kid",
        keys.name(),
        signing.name()
    );
    let keys: Vec<Value> = catalog::as_owner_of(signing.oid, || {
        Spi::connect(|client| {
            let rows = client.select(&query, None, &[])?;
            let mut out = Vec::new();
            for row in rows {
                if let Some(material) = row.get::<String>(1)? {
                    out.push(serde_json::from_str(&material).unwrap_or(Value::Null));
                }
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
        .unwrap_or_else(|e| error!("jwt_rls could not read its signing keys: {e}"))
    });
    JsonB(serde_json::json!({ "keys": keys }))
}
