//! One key store, one revocation list and one session store for a Citus
//! cluster: `share_with_citus()` makes the extension's tables Citus
//! reference tables, so that every node holds a copy (a placement) and
//! every change made through any node is written to all of them in one
//! two-phase commit. A key added, disabled or removed, a token or subject
//! revoked, a session started, rotated or ended: on every node from the
//! next transaction after the commit, or on none. A node added later gets
//! the copies when Citus adds it. The verification path reads the local
//! placement (`pg::catalog`).
//!
//! Why reference tables and not another mechanism: they are Citus's own
//! way to keep a small table identical on every node, with the atomicity
//! the issue asks for (2PC through the coordinated transaction, recovered
//! by Citus's maintenance daemon if a node fails between the phases), a
//! node added later catches up by Citus's own copy, and writes from a
//! worker (metadata is on every node) go through the same path. Copying
//! rows ourselves would mean a second replication protocol next to
//! Citus's.
//!
//! Citus rebuilds a local table that has a foreign key to or from a table
//! it manages, and an extension's member table cannot be rebuilt (its
//! views and sequence belong to the extension). So the foreign keys
//! between the extension's tables are dropped first and made again once
//! every table is a reference table, when Citus makes them on every node.
//! The statement triggers that queue the invalidations stay: Citus creates
//! them on every placement (citus.enable_unsafe_triggers, set for the
//! call: they only queue a relcache invalidation of their own relation).

use pgrx::prelude::*;

extension_sql!(
    r#"
CREATE FUNCTION jwt_rls.share_with_citus()
    RETURNS SETOF regclass
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $share$
DECLARE
    tables regclass[] := ARRAY['jwt_rls.jwks_sources', 'jwt_rls.keys', 'jwt_rls.signing_keys',
                               'jwt_rls.decryption_keys', 'jwt_rls.revoked_tokens',
                               'jwt_rls.revoked_subjects', 'jwt_rls.sessions',
                               'jwt_rls.refresh_tokens']::regclass[];
    t regclass;
    k int;
    rels regclass[];
    names name[];
    defs text[];
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'citus is not installed in this database'
            USING ERRCODE = '0A000',
                  HINT = 'Run CREATE EXTENSION citus and add the workers first; share_with_citus() is for Citus clusters.';
    END IF;
    IF NOT pg_catalog.citus_is_coordinator() THEN
        RAISE EXCEPTION 'share_with_citus() runs on the coordinator'
            USING ERRCODE = '0A000',
                  HINT = 'Connect to the coordinator and call it there.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.unnest(tables) u(t)
                    WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
                                       WHERE p.logicalrelid OPERATOR(pg_catalog.=) u.t)) THEN
        RETURN;
    END IF;

    SELECT coalesce(pg_catalog.array_agg(c.conrelid::regclass ORDER BY c.conname), '{}'),
           coalesce(pg_catalog.array_agg(c.conname ORDER BY c.conname), '{}'),
           coalesce(pg_catalog.array_agg(pg_catalog.pg_get_constraintdef(c.oid) ORDER BY c.conname), '{}')
      INTO rels, names, defs
      FROM pg_catalog.pg_constraint c
     WHERE c.contype = 'f' AND c.conrelid OPERATOR(pg_catalog.=) ANY (tables);
    FOR k IN 1 .. pg_catalog.cardinality(rels) LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', rels[k], names[k]);
    END LOOP;

    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    FOREACH t IN ARRAY tables LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
                        WHERE p.logicalrelid OPERATOR(pg_catalog.=) t) THEN
            PERFORM pg_catalog.create_reference_table(t);
            -- The rows now live in the placements; the copy Citus leaves
            -- in the table itself (key material among them) goes.
            PERFORM pg_catalog.truncate_local_data_after_distributing_table(t);
            RETURN NEXT t;
        END IF;
    END LOOP;

    -- The workers' own tables, made by CREATE EXTENSION there, still have
    -- the keys: dropped there too now that Citus sends the DDL to every
    -- node, then made again on every node and placement.
    FOR k IN 1 .. pg_catalog.cardinality(rels) LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', rels[k], names[k]);
        EXECUTE pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s', rels[k], names[k], defs[k]);
    END LOOP;
END
$share$;
COMMENT ON FUNCTION jwt_rls.share_with_citus() IS
    'On a Citus coordinator: makes the key, revocation and session tables reference tables, one copy on every node; returns the tables it shared';
REVOKE EXECUTE ON FUNCTION jwt_rls.share_with_citus() FROM PUBLIC;
"#,
    name = "share_with_citus",
    requires = ["jwks_sources", "sessions"]
);
