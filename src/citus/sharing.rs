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
    unready text;
    holding text;
    counted text;
    listed text;
    triggers text := pg_catalog.current_setting('citus.enable_unsafe_triggers', true);
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
    -- Every node must get a copy and know it has one: the coordinator in
    -- Citus's metadata (reference tables are placed only on nodes there),
    -- every primary active with its metadata synced (a node without it
    -- would read its own, stale tables).
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_node n WHERE n.groupid = 0) THEN
        RAISE EXCEPTION 'the coordinator is not in Citus''s node metadata'
            USING ERRCODE = '55000',
                  DETAIL = 'Reference tables are placed only on nodes in pg_dist_node; without a copy here the coordinator could not read the keys.',
                  HINT = 'Run SELECT citus_set_coordinator_host(''<this host>'', <port>); then call share_with_citus() again.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('%s:%s', n.nodename, n.nodeport), ', ' ORDER BY n.nodeid) INTO unready
      FROM pg_catalog.pg_dist_node n
     WHERE n.noderole = 'primary' AND n.groupid <> 0 AND NOT (n.isactive AND n.hasmetadata AND n.metadatasynced);
    IF unready IS NOT NULL THEN
        RAISE EXCEPTION 'not every worker is active with Citus''s metadata synced'
            USING ERRCODE = '55000', DETAIL = pg_catalog.format('Not ready: %s.', unready),
                  HINT = 'Activate the nodes and let Citus sync its metadata to them (SELECT start_metadata_sync_to_node(...)), then call share_with_citus() again.';
    END IF;
    -- Rows a worker holds in its own tables (added there before sharing)
    -- would be neither read nor removed once the copies are read: a
    -- revocation recorded only there would be lifted, a private key left
    -- behind. Refused until they are moved to the coordinator.
    SELECT pg_catalog.string_agg(pg_catalog.format('(SELECT pg_catalog.count(*) FROM %s)', u.t), ' + '),
           pg_catalog.string_agg(u.t::text, ', ')
      INTO counted, listed
      FROM pg_catalog.unnest(tables) u(t);
    SELECT pg_catalog.string_agg(pg_catalog.format('%s:%s (%s)', r.nodename, r.nodeport,
                                 CASE WHEN r.success THEN r.result || ' rows' ELSE 'unreachable' END), ', ') INTO holding
      FROM pg_catalog.run_command_on_workers('SELECT ' || counted) r
     WHERE NOT r.success OR r.result <> '0';
    IF holding IS NOT NULL THEN
        RAISE EXCEPTION 'workers hold rows in their own jwt_rls tables'
            USING ERRCODE = '55000', DETAIL = pg_catalog.format('Workers: %s.', holding),
                  HINT = pg_catalog.format('Add what they hold (keys, revocations) on the coordinator, empty the tables on each worker (TRUNCATE %s CASCADE;), then call share_with_citus() again.', listed);
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

    -- Citus refuses tables with triggers unless told; ours only queue a
    -- relcache invalidation of their own relation. Restored below.
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
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', coalesce(triggers, 'off'), true);
END
$share$;
COMMENT ON FUNCTION jwt_rls.share_with_citus() IS
    'On a Citus coordinator: makes the key, revocation and session tables reference tables, one copy on every node; returns the tables it shared';
REVOKE EXECUTE ON FUNCTION jwt_rls.share_with_citus() FROM PUBLIC;
"#,
    name = "share_with_citus",
    requires = ["jwks_sources", "sessions"]
);
