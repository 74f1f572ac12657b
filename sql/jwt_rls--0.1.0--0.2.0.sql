-- jwt_rls 0.1.0 -> 0.2.0 (unreleased: this file may still change until
-- 0.2.0 is tagged; after that it is never edited).
\echo Use "ALTER EXTENSION jwt_rls UPDATE TO '0.2.0'" to load this file. \quit

-- Which library a backend runs: version, commit, debug or release build.
CREATE FUNCTION jwt_rls."build_info"() RETURNS TABLE (
	"version" TEXT,
	"git_commit" TEXT,
	"debug_build" bool,
	"pg_major" INT
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'build_info_wrapper';

-- The statement trigger of the extension's tables other than keys.
CREATE FUNCTION jwt_rls."table_changed"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'table_changed_wrapper';

-- Revocation.
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
            revoked_at = now(),
            reason = coalesce(excluded.reason, r.reason);
END
$$;
COMMENT ON FUNCTION jwt_rls.revoke_subject(text, timestamptz, text) IS
    'Revokes every token of this subject issued before issued_before (default: now)';

CREATE FUNCTION jwt_rls."revoke_token"(
	"token" TEXT,
	"reason" TEXT DEFAULT NULL
) RETURNS bool
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'revoke_token_wrapper';

REVOKE EXECUTE ON FUNCTION jwt_rls.table_changed() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.revoke_jti(text, timestamptz, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.revoke_subject(text, timestamptz, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.revoke_token(text, text) FROM PUBLIC;

-- Signing: private keys and the functions that issue tokens.
CREATE TABLE jwt_rls.signing_keys (
    kid         text PRIMARY KEY REFERENCES jwt_rls.keys (kid) ON DELETE CASCADE ON UPDATE CASCADE,
    private_key text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE jwt_rls.signing_keys IS
    'Private halves of the keys jwt_rls.sign() uses; secrets, readable by no application role';
REVOKE ALL ON jwt_rls.signing_keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('jwt_rls.signing_keys', '');

CREATE FUNCTION jwt_rls."generate_signing_key"(
	"kid" TEXT,
	"alg" TEXT,
	"not_before" timestamp with time zone DEFAULT NULL,
	"not_after" timestamp with time zone DEFAULT NULL
) RETURNS jsonb
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'generate_signing_key_wrapper';

CREATE FUNCTION jwt_rls."import_signing_key"(
	"kid" TEXT,
	"alg" TEXT,
	"private_pem" TEXT,
	"not_before" timestamp with time zone DEFAULT NULL,
	"not_after" timestamp with time zone DEFAULT NULL
) RETURNS jsonb
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'import_signing_key_wrapper';

CREATE FUNCTION jwt_rls."import_signing_secret"(
	"kid" TEXT,
	"alg" TEXT,
	"secret" bytea,
	"not_before" timestamp with time zone DEFAULT NULL,
	"not_after" timestamp with time zone DEFAULT NULL
) RETURNS jsonb
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'import_signing_secret_wrapper';

CREATE FUNCTION jwt_rls."jwks"() RETURNS jsonb
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'jwks_wrapper';

CREATE FUNCTION jwt_rls."sign"(
	"claims" jsonb,
	"kid" TEXT DEFAULT NULL
) RETURNS TEXT
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'sign_wrapper';

REVOKE EXECUTE ON FUNCTION jwt_rls.generate_signing_key(text, text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.import_signing_key(text, text, text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.import_signing_secret(text, text, bytea, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.sign(jsonb, text) FROM PUBLIC;
