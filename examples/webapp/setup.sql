-- The reference app's own objects, installed by stack.py after the
-- two-tenant invoices schema (tests/support/schema.py: table invoices with
-- its row level security policy on the claim tenant_id, and the role `app`
-- that the API requests run as).

-- Users and their password hashes (passwords.mjs). Read by the login
-- service only; written by the database owner (add-user.mjs).
CREATE SCHEMA webapp;
CREATE TABLE webapp.users (
    username      text PRIMARY KEY CHECK (username ~ '^[a-z0-9._-]{1,64}$'),
    tenant_id     uuid NOT NULL,
    password_hash text NOT NULL CHECK (password_hash LIKE 'scrypt$%')
);

-- The login service: checks passwords, starts, refreshes and ends
-- sessions. It can read no invoice (no privilege on the table) and no
-- session or refresh token (jwt_rls's tables are readable by no role but
-- their owner); it gets only what these functions return.
CREATE ROLE webapp_login LOGIN;
GRANT USAGE ON SCHEMA webapp, jwt_rls TO webapp_login;
GRANT SELECT ON webapp.users TO webapp_login;
GRANT EXECUTE ON FUNCTION jwt_rls.verify_dpop_proof(text, text, text),
                          jwt_rls.start_session(text, jsonb, text),
                          jwt_rls.rotate_refresh_token(text, text, text, text),
                          jwt_rls.end_session(uuid),
                          jwt_rls.revoke_subject(text, timestamptz, text) TO webapp_login;
GRANT EXECUTE ON PROCEDURE jwt_rls.refresh_with_proof(text, text, text, text, text, text, uuid) TO webapp_login;

-- The key the sessions' access tokens are signed with, made inside the
-- database: its private half never leaves it.
SELECT jwt_rls.generate_signing_key('webapp-es256', 'ES256');
