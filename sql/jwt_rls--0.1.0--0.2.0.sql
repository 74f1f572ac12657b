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
