//! jwt_rls: verify a JWT inside PostgreSQL and hand its claims to
//! row-level-security policies.
//!
//! This crate is the thin shell around `jwt_rls_core`: settings, the SQL
//! functions, the key table, and the mapping of core errors to SQLSTATEs.

use pgrx::prelude::*;

mod api;
mod claim_fn;
mod errors;
mod keystore;
mod settings;
mod state;

pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::init();
    keystore::init();
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
    requires = [keystore::keys_changed]
);

extension_sql!(
    r#"
-- Key administration is for whoever the superuser grants it to.
REVOKE EXECUTE ON FUNCTION jwt_rls.keys_changed() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.add_hmac_key(text, text, bytea, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.add_pem_key(text, text, text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.import_jwks(jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.disable_key(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.enable_key(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.remove_key(text) FROM PUBLIC;
"#,
    name = "privileges",
    finalize
);

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
